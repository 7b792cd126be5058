//! A loopback device and a harness that runs a host test over it (feature `loopback`,
//! which needs `std`: embassy-time's std driver keeps time).
//!
//! ```
//! use embedded_io_async::{Read, Write};
//! use xenpv_net::{loopback, TcpListener, TcpStream};
//!
//! let echoed = loopback::run(|stack| async move {
//!     let listener = TcpListener::bind(&stack, 7).unwrap();
//!     let server = async {
//!         let mut s = listener.accept().await.unwrap();
//!         let mut buf = [0u8; 64];
//!         let n = s.read(&mut buf).await.unwrap();
//!         s.write_all(&buf[..n]).await.unwrap();
//!         s.close().await;
//!     };
//!     let client = async {
//!         let mut c = TcpStream::connect(&stack, loopback::endpoint(7)).await.unwrap();
//!         c.write_all(b"hello").await.unwrap();
//!         let mut out = Vec::new();
//!         c.read_to_end(&mut out).await.unwrap();
//!         out
//!     };
//!     embassy_futures::join::join(server, client).await.1
//! });
//! assert_eq!(echoed, b"hello");
//! ```

extern crate std;

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::task::Wake;
use std::thread::{self, Thread};

use embassy_futures::select::{select, Either};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};

use crate::{Config, Driver, Runner, Stack};

/// The loopback device's Ethernet address.
pub const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// The loopback address, 127.0.0.1.
pub const ADDRESS: Ipv4Address = Ipv4Address::new(127, 0, 0, 1);

/// `127.0.0.1:port`.
pub fn endpoint(port: u16) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(ADDRESS), port)
}

/// A stack configuration at 127.0.0.1/8 with default TCP settings.
pub fn config() -> Config {
    Config::ipv4_static(Ipv4Cidr::new(ADDRESS, 8), None)
}

/// A [`Driver`] over smoltcp's [`Loopback`](phy::Loopback): every frame sent is received.
pub struct Loopback {
    inner: phy::Loopback,
    /// Frames were queued since the runner last looked: it must come back for them.
    queued: bool,
    /// Frames a test injects (see [`Loopback::injector`]), received before the rest.
    injected: Rc<RefCell<Injected>>,
}

struct Injected {
    frames: VecDeque<Vec<u8>>,
    waker: Option<Waker>,
    link_up: bool,
}

impl Default for Injected {
    fn default() -> Self {
        Injected {
            frames: VecDeque::new(),
            waker: None,
            link_up: true,
        }
    }
}

/// Puts hand-made frames into a [`Loopback`] as if they had arrived (a test's raw peer),
/// and takes its link down or up (as a backend going away would).
#[derive(Clone)]
pub struct Injector {
    injected: Rc<RefCell<Injected>>,
}

impl Injector {
    /// Deliver `frame` (a whole Ethernet frame) to the stack.
    pub fn inject(&self, frame: Vec<u8>) {
        let mut i = self.injected.borrow_mut();
        i.frames.push_back(frame);
        if let Some(w) = i.waker.take() {
            w.wake();
        }
    }

    /// Take the link down (`false`: the runner's `run` returns) or up again.
    pub fn set_link_up(&self, up: bool) {
        let mut i = self.injected.borrow_mut();
        i.link_up = up;
        if let Some(w) = i.waker.take() {
            w.wake();
        }
    }
}

impl Loopback {
    /// An empty loopback device.
    pub fn new() -> Loopback {
        Loopback {
            inner: phy::Loopback::new(Medium::Ethernet),
            queued: false,
            injected: Rc::default(),
        }
    }

    /// A handle that injects frames into this device.
    pub fn injector(&self) -> Injector {
        Injector {
            injected: self.injected.clone(),
        }
    }
}

impl Default for Loopback {
    fn default() -> Self {
        Loopback::new()
    }
}

impl Device for Loopback {
    type RxToken<'a> = <phy::Loopback as Device>::RxToken<'a>;
    type TxToken<'a> = <phy::Loopback as Device>::TxToken<'a>;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let injected = self.injected.borrow_mut().frames.pop_front();
        if let Some(frame) = injected {
            // Through the loopback's own queue: smoltcp's tokens are made only there.
            if let Some(tx) = self.inner.transmit(timestamp) {
                phy::TxToken::consume(tx, frame.len(), |b| b.copy_from_slice(&frame));
            }
        }
        self.inner.receive(timestamp)
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        // Replies made while receiving are taken in by the same round; frames sent from
        // here wait for the next one.
        self.queued = true;
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

impl Driver for Loopback {
    fn register_waker(&mut self, waker: &Waker) {
        let mut injected = self.injected.borrow_mut();
        if core::mem::take(&mut self.queued) || !injected.frames.is_empty() {
            waker.wake_by_ref();
        }
        injected.waker = Some(waker.clone());
    }

    fn mac(&self) -> [u8; 6] {
        MAC
    }

    fn link_up(&self) -> bool {
        self.injected.borrow().link_up
    }
}

/// One end of a [`wire`]: an Ethernet device whose frames arrive at the other end.
pub struct WireEnd {
    shared: Rc<RefCell<WireShared>>,
    side: usize,
    mac: [u8; 6],
}

#[derive(Default)]
struct WireShared {
    /// Frames waiting at each end.
    queues: [VecDeque<Vec<u8>>; 2],
    /// Each end's runner.
    wakers: [Option<Waker>; 2],
}

/// Two Ethernet devices joined by a wire (1500-byte MTU, checksums computed and checked):
/// two stacks on one host test, e.g. a client and a server with addresses of their own.
pub fn wire(mac_a: [u8; 6], mac_b: [u8; 6]) -> (WireEnd, WireEnd) {
    let shared = Rc::new(RefCell::new(WireShared::default()));
    (
        WireEnd {
            shared: shared.clone(),
            side: 0,
            mac: mac_a,
        },
        WireEnd {
            shared,
            side: 1,
            mac: mac_b,
        },
    )
}

#[doc(hidden)]
pub struct WireRx(Vec<u8>);

#[doc(hidden)]
pub struct WireTx<'a> {
    shared: &'a RefCell<WireShared>,
    to: usize,
}

impl phy::RxToken for WireRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for WireTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = alloc::vec![0u8; len];
        let r = f(&mut frame);
        let mut shared = self.shared.borrow_mut();
        shared.queues[self.to].push_back(frame);
        if let Some(w) = shared.wakers[self.to].take() {
            w.wake();
        }
        r
    }
}

impl Device for WireEnd {
    type RxToken<'a> = WireRx;
    type TxToken<'a> = WireTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(WireRx, WireTx<'_>)> {
        let frame = self.shared.borrow_mut().queues[self.side].pop_front()?;
        Some((
            WireRx(frame),
            WireTx {
                shared: &self.shared,
                to: 1 - self.side,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<WireTx<'_>> {
        Some(WireTx {
            shared: &self.shared,
            to: 1 - self.side,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

impl Driver for WireEnd {
    fn register_waker(&mut self, waker: &Waker) {
        let mut shared = self.shared.borrow_mut();
        if !shared.queues[self.side].is_empty() {
            waker.wake_by_ref();
        }
        shared.wakers[self.side] = Some(waker.clone());
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Run `fut` to completion on this thread, sleeping while it waits (unlike a spinning
/// executor, an idle test costs no CPU).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Run `test` with a stack at 127.0.0.1/8 (default TCP settings) over a loopback device,
/// driving the stack and the test together until the test ends; returns its output.
pub fn run<F, Fut>(test: F) -> Fut::Output
where
    F: FnOnce(Stack) -> Fut,
    Fut: Future,
{
    run_with(config(), test)
}

/// [`run`] with a configuration of your own (keep an address in 127.0.0.0/8).
pub fn run_with<F, Fut>(config: Config, test: F) -> Fut::Output
where
    F: FnOnce(Stack) -> Fut,
    Fut: Future,
{
    run_on(config, Loopback::new(), test)
}

/// [`run_with`] over a device of your own (one whose [`injector`](Loopback::injector)
/// the test keeps).
pub fn run_on<F, Fut>(config: Config, device: Loopback, test: F) -> Fut::Output
where
    F: FnOnce(Stack) -> Fut,
    Fut: Future,
{
    block_on(async move {
        let stack = Stack::new(config, MAC);
        let mut runner = Runner::new(stack.clone(), device);
        match select(runner.run(), test(stack)).await {
            Either::First(end) => panic!("the loopback runner ended: {end:?}"),
            Either::Second(out) => out,
        }
    })
}
