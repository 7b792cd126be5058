//! Network devices (features `async` and `net`): a vif connected without blocking the
//! executor, netfront as a xenpv-net [`Driver`], a [`Stack`] with the vif's address from
//! `ip=`, and a task per vif that runs the stack, notices a backend that goes away
//! (`xl network-detach`), closes the vif, and re-attaches when a backend returns.

use super::{DeviceError, Devices};
use crate::exec;
use crate::net::netfront::{CloseStep, ClosingNetfront, ConnectStep, Counters, Netfront};
use crate::xenbus::{self, Backend, Device, State};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt::Write as _;
use core::task::{Poll, Waker};
use embassy_futures::select::{select, select3, Either3};
use embassy_time::{Duration, Timer};
use xenpv_net::smoltcp;
use xenpv_net::{Addressing, Config, Driver, Ipv4Address, Ipv4Cidr, Runner, Stack, TcpConfig};
pub use xenpv_protocol::vif::VifEvent;
use xenpv_protocol::vif::{detach_reason, garp_frame, EventQueue};

/// How often a vif's task looks at its backend's state besides on xenstore events.
pub const BACKEND_CHECK_NS: u64 = 1_000_000_000;
/// How often a detached vif tries to connect again.
pub const REATTACH_EVERY_NS: u64 = 1_000_000_000;
/// The most vifs the runtime runs at once (tasks in its pool).
pub const MAX_VIFS: usize = 8;
/// When the guest ends, how long a vif keeps running after its connections were reset
/// (their RSTs out, and a little more for the backend to take them off the ring) before
/// it closes: a peer mid-transfer sees the connection reset, not a silence.
pub const RESET_FLUSH_NS: u64 = 300_000_000;
/// Of [`RESET_FLUSH_NS`], how long the vif runs on once the RSTs have left the stack.
const RESET_SETTLE_NS: u64 = 50_000_000;
/// Events a vif queues for its [`VifEvents`] (the oldest are dropped beyond, and counted).
pub const VIF_EVENTS: usize = 16;

/// How a vif's first connection went (what [`Net::connected`] returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// How long the first handshake took, in milliseconds.
    pub ms: u64,
    /// The backend's directory in xenstore (the current backend's, after a re-attach).
    pub backend_path: String,
    /// The backend's domain (the current backend's, after a re-attach).
    pub backend_domain: u16,
    /// Does the backend take frames for segmentation (GSO)?
    pub gso: bool,
}

impl Connected {
    fn new(ms: u64, nf: &Netfront) -> Connected {
        Connected {
            ms,
            backend_path: String::from(nf.backend().path.as_str()),
            backend_domain: nf.backend().domid,
            gso: nf.gso(),
        }
    }
}

/// What a vif's task shares with its [`Net`]: events, the connection, the counters.
struct Shared {
    events: RefCell<EventQueue<VIF_EVENTS>>,
    /// Tasks waiting in [`VifEvents::next`].
    waiters: RefCell<Vec<Waker>>,
    connected: RefCell<Connected>,
    /// The counters of the netfronts closed so far, summed.
    closed: Cell<Counters>,
    /// The connected netfront's counters, as of its last round.
    current: Cell<Counters>,
    /// Is a backend connected (not between a detach and a re-attach)?
    attached: Cell<bool>,
    /// Are long frames written straight into TX pages ([`Net::set_tx_in_place`])?
    tx_in_place: Cell<bool>,
}

/// A vif handed out, as the metrics see it: its number, its stack (for the address), and
/// whether it is attached.
pub(super) struct Registered {
    index: u32,
    stack: Stack,
    shared: Rc<Shared>,
}

impl Shared {
    fn push(&self, ev: VifEvent) {
        self.events.borrow_mut().push(ev);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// A netfront connected again (after a detach or in a new domain): the backend's
    /// directory and features now, the first handshake's time kept.
    fn reconnected(&self, nf: &Netfront) {
        {
            let mut c = self.connected.borrow_mut();
            let first_ms = c.ms;
            *c = Connected::new(first_ms, nf);
        }
        self.attached.set(true);
    }

    /// A netfront closed: its last counters join the sum.
    fn close(&self, last: Counters) {
        self.closed.set(self.closed.get().add(&last));
        self.current.set(Counters::default());
    }
}

/// A vif's events ([`Net::events`]): its backend going away and coming back.
pub struct VifEvents {
    shared: Rc<Shared>,
}

impl VifEvents {
    /// The next event (the oldest queued; waits for one). The vif queues at most
    /// [`VIF_EVENTS`]: older ones are dropped meanwhile and counted in [`Self::lost`].
    /// Each event goes to one taker: hold one `VifEvents` per vif.
    pub async fn next(&mut self) -> VifEvent {
        core::future::poll_fn(|cx| {
            if let Some(ev) = self.shared.events.borrow_mut().pop() {
                return Poll::Ready(ev);
            }
            let mut w = self.shared.waiters.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Events dropped because nobody took them before the queue filled.
    pub fn lost(&self) -> u64 {
        self.shared.events.borrow().lost()
    }
}

/// A connected vif's network stack (derefs to the [`Stack`]: bind listeners and
/// sockets on it). The runtime's task for the vif keeps it running, through detaches
/// and re-attaches, until the guest ends.
pub struct Net {
    stack: Stack,
    index: u32,
    mac: [u8; 6],
    shared: Rc<Shared>,
}

impl Net {
    /// The vif's events: detaches and re-attaches, queued since it connected.
    pub fn events(&self) -> VifEvents {
        VifEvents {
            shared: self.shared.clone(),
        }
    }
    /// How the first handshake went, and the backend now.
    pub fn connected(&self) -> Connected {
        self.shared.connected.borrow().clone()
    }
    /// The vif's netfront counters, summed over every connection it had (as of the
    /// stack's last round).
    pub fn counters(&self) -> Counters {
        self.shared.closed.get().add(&self.shared.current.get())
    }
    /// Write frames longer than a page straight into the vif's TX pages (the default),
    /// or build each in a scratch buffer and copy it over them (`false`: the older way,
    /// kept to measure the copy it saves). Holds across re-attaches.
    pub fn set_tx_in_place(&self, on: bool) {
        self.shared.tx_in_place.set(on);
    }
    /// The stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }
    /// The vif's number (`device/vif/<index>`).
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Its Ethernet address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

impl core::ops::Deref for Net {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

/// A connected vif as the stack's device: netfront, whose counters are copied for
/// [`Net::counters`] after every round.
struct Vif {
    nf: Netfront,
    shared: Rc<Shared>,
}

impl smoltcp::phy::Device for Vif {
    type RxToken<'a> = <Netfront as smoltcp::phy::Device>::RxToken<'a>;
    type TxToken<'a> = <Netfront as smoltcp::phy::Device>::TxToken<'a>;

    fn receive(
        &mut self,
        t: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.nf.receive(t)
    }
    fn transmit(&mut self, t: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.nf.transmit(t)
    }
    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        self.nf.capabilities()
    }
}

/// netfront drives a xenpv-net stack: its event channel wakes the stack's runner, and
/// its link is down once a ring is broken (the vif's task closes it then).
impl Driver for Vif {
    fn register_waker(&mut self, waker: &Waker) {
        // Reap TX responses and repost RX buffers after every round of the stack.
        self.nf.poll();
        self.nf.set_tx_in_place(self.shared.tx_in_place.get());
        self.shared.current.set(self.nf.snapshot());
        exec::wake_on(self.nf.port(), waker);
    }
    fn mac(&self) -> [u8; 6] {
        self.nf.mac()
    }
    fn link_up(&self) -> bool {
        self.nf.broken().is_none()
    }
    fn tx_full(&mut self) -> bool {
        self.nf.tx_full()
    }
}

/// Vif `index`'s addressing from `ip=` (DHCP if it has no entry).
fn addressing(cmdline: crate::Cmdline<'_>, index: u32) -> Result<Addressing, DeviceError> {
    use crate::cmdline::IpWord;
    match cmdline.ip(index as usize) {
        Ok(None) | Ok(Some(IpWord::Dhcp)) => Ok(Addressing::Dhcp),
        Ok(Some(IpWord::Static { addr, prefix })) => Ok(Addressing::Static {
            cidr: Ipv4Cidr::new(Ipv4Address::from_octets(addr), prefix),
            gateway: None,
        }),
        Err(e) => Err(DeviceError::Config(alloc::format!("{e}"))),
    }
}

impl Devices {
    /// Connect vif `index` (`device/vif/<index>`, the `index`-th `--net` of xenpv-run or
    /// `vif=` entry of xl), give it a network stack with its `ip=` entry (`dhcp` or
    /// `A.B.C.D/PREFIX`; DHCP if none), and keep it running in a task of the runtime's.
    ///
    /// The handshake waits for the backend without blocking other tasks, at most 60 s.
    /// Later, a backend that goes away (`xl network-detach`) closes the vif, and a
    /// backend that returns is connected to the same stack: sockets see the link come
    /// and go, the stack stays.
    ///
    /// ```no_run
    /// # async fn f(rt: &'static xenpv_rt::Runtime) -> Result<(), xenpv_rt::device::DeviceError> {
    /// let net = rt.devices().net(0).await?;
    /// net.wait_config_up().await; // a DHCP lease, or the static address
    /// xenpv_rt::println!("vif0 at {:?}", net.ipv4());
    /// # Ok(()) }
    /// ```
    pub async fn net(&'static self, index: u32) -> Result<Net, DeviceError> {
        self.net_with(index, TcpConfig::default()).await
    }

    /// [`Self::net`] with the stack's TCP settings (buffers, backlog, timeouts) chosen.
    pub async fn net_with(&'static self, index: u32, tcp: TcpConfig) -> Result<Net, DeviceError> {
        if self.is_closing() {
            return Err(DeviceError::Closing);
        }
        if self.vifs.borrow().contains(&index) {
            return Err(DeviceError::InUse);
        }
        let addressing = addressing(self.boot.borrow().cmdline(), index)?;
        let t0 = crate::time::now_ns();
        let nf = self.connect(index).await?;
        let ms = (crate::time::now_ns() - t0) / 1_000_000;
        let mac = nf.mac();
        let stack = Stack::new(
            Config {
                addressing,
                tcp,
                reassembly_timeout: xenpv_net::config::DEFAULT_REASSEMBLY_TIMEOUT,
            },
            mac,
        );
        let shared = Rc::new(Shared {
            events: RefCell::new(EventQueue::new()),
            waiters: RefCell::new(Vec::new()),
            connected: RefCell::new(Connected::new(ms, &nf)),
            closed: Cell::new(Counters::default()),
            current: Cell::new(Counters::default()),
            attached: Cell::new(true),
            tx_in_place: Cell::new(true),
        });
        let vif = Vif {
            nf,
            shared: shared.clone(),
        };
        let token = match vif_task(self, index, stack.clone(), vif) {
            Ok(t) => t,
            Err(_) => return Err(DeviceError::TooMany),
        };
        self.vifs.borrow_mut().push(index);
        self.registered.borrow_mut().push(Registered {
            index,
            stack: stack.clone(),
            shared: shared.clone(),
        });
        self.open.set(self.open.get() + 1);
        self.spawner.spawn(token);
        // dom0 sees the vif (and its static address) at once.
        crate::metrics::refresh_soon();
        crate::println!(
            "xenpv-rt: vif{index} connected mac={} ip={}",
            MacFmt(mac),
            AddrFmt(addressing)
        );
        Ok(Net {
            stack,
            index,
            mac,
            shared,
        })
    }

    /// Each attached vif's number and IPv4 address now (static, or DHCP's once leased),
    /// for the metrics: a detached vif is left out (its keys go, as a Linux guest's
    /// interface does when its device is unplugged).
    pub(crate) fn vif_addresses(&self) -> Vec<xenpv_protocol::metrics::VifAddrs> {
        self.registered
            .borrow()
            .iter()
            .filter(|r| r.shared.attached.get())
            .map(|r| {
                let addrs: Vec<[u8; 4]> = r
                    .stack
                    .ipv4()
                    .map(|c| c.address().octets())
                    .into_iter()
                    .collect();
                xenpv_protocol::metrics::VifAddrs::new(r.index, &addrs)
            })
            .collect()
    }

    /// Bring vif `index` up, a step at a time: between steps, wait for a xenstore event
    /// or the step's time (the handshake's own deadline bounds the whole).
    async fn connect(&self, index: u32) -> Result<Netfront, DeviceError> {
        self.settled().await;
        let _h = self.handshake();
        let mut p = self.with(|c| {
            Netfront::begin_connect(c.memory, c.grants, c.xenstore, index)
                .map_err(|e| DeviceError::Frontend(alloc::format!("{e}")))
        })??;
        loop {
            let mark = self.store_mark();
            match self.with(move |c| p.step(c.xenstore))? {
                ConnectStep::Pending(next, wake_at) => {
                    p = next;
                    self.wait_store_since(mark, wake_at).await;
                }
                ConnectStep::Connected(nf) => return Ok(nf),
                ConnectStep::Failed(e, closing) => {
                    self.close(closing).await;
                    return Err(DeviceError::Frontend(alloc::format!("{e}")));
                }
            }
        }
    }

    /// Close a vif a step at a time (the close's own deadline bounds the whole); the
    /// pages a backend still holds stay granted (the grant table's deferred list).
    async fn close(&self, mut c: ClosingNetfront) -> u32 {
        self.settled().await;
        let _h = self.handshake();
        loop {
            let mark = self.store_mark();
            match self.with(move |x| c.step(x.memory, x.grants, x.xenstore)) {
                Ok(CloseStep::Pending(next, wake_at)) => {
                    c = next;
                    self.wait_store_since(mark, wake_at).await;
                }
                Ok(CloseStep::Closed(closed)) => return closed.pages_kept as u32,
                Err(e) => {
                    crate::warn!("xenpv-rt: closing a vif: {e}");
                    return 0;
                }
            }
        }
    }

    /// Why the vif's backend is no longer serving it (`Some(state)`: closing or closed;
    /// `None`: its directory vanished), or the devices' close (`Err`).
    async fn backend_gone(&self, dev: &Device, backend: &Backend) -> Result<Option<State>, ()> {
        loop {
            if self.is_closing() {
                return Err(());
            }
            // No xenstore request inside a suspend's window.
            self.settled().await;
            let state = self.with(|c| xenbus::backend_state(c.xenstore, dev, backend).ok());
            match state {
                Ok(Some(None)) => return Ok(None),
                Ok(Some(Some(s))) if s.closing() => return Ok(Some(s)),
                _ => {}
            }
            self.wait_store(crate::time::now_ns() + BACKEND_CHECK_NS)
                .await;
        }
    }
}

/// A vif's life: run the stack over it until the backend goes, the ring breaks, the
/// guest moves to a new domain or the guest ends; close it (or, in a new domain, let go
/// of it and connect to the new backend at once); connect again when a backend returns.
/// Each detach, re-attach and resume is queued for the vif's [`VifEvents`] (not the
/// close at the guest's end).
#[embassy_executor::task(pool_size = MAX_VIFS)]
async fn vif_task(devices: &'static Devices, index: u32, stack: Stack, first: Vif) {
    let shared = first.shared.clone();
    let mut vif = Some(first);
    let dev = Device::new("vif", index);
    let mut seen = devices.epoch();
    loop {
        if let Some(v) = vif.take() {
            let backend = v.nf.backend().clone();
            let mut runner = Runner::new(stack.clone(), v);
            // The new domain first: its old backend is gone too, and must not be closed.
            let ended = select3(
                devices.new_domain(seen),
                runner.run(),
                devices.backend_gone(&dev, &backend),
            )
            .await;
            if devices.epoch() != seen {
                seen = devices.epoch();
                let old = runner.into_device().nf;
                vif = resume_vif(devices, index, &stack, &shared, old, seen).await;
                continue;
            }
            let (why, state) = match ended {
                Either3::First(_) | Either3::Second(_) => {
                    ("a broken ring", Some(detach_reason(None, true)))
                }
                Either3::Third(Ok(s)) => ("its backend went away", Some(detach_reason(s, false))),
                Either3::Third(Err(())) => {
                    reset_connections(index, &stack, &mut runner).await;
                    ("the guest is ending", None)
                }
            };
            let t0 = crate::time::now_ns();
            let n = runner.into_device().nf;
            shared.close(n.snapshot());
            shared.attached.set(false);
            crate::metrics::refresh_soon();
            // Its port is closed next: no idle poll may name it.
            exec::forget(n.port());
            let kept = devices.close(n.begin_close()).await;
            let closed_ms = (crate::time::now_ns() - t0) / 1_000_000;
            crate::println!(
                "xenpv-rt: vif{index} closed ({why}) in {closed_ms} ms pages_kept={kept}"
            );
            if let Some(backend_state) = state {
                shared.push(VifEvent::Detached {
                    pages_kept: kept,
                    backend_state,
                    closed_ms,
                });
            }
        }
        if devices.is_closing() {
            devices.open.set(devices.open.get() - 1);
            return;
        }
        devices
            .wait_store(crate::time::now_ns() + REATTACH_EVERY_NS)
            .await;
        if devices.is_closing() {
            continue;
        }
        let t0 = crate::time::now_ns();
        // A detached vif connects to whatever domain it is in now.
        seen = devices.epoch();
        match devices.connect(index).await {
            Ok(nf) => {
                let ms = (crate::time::now_ns() - t0) / 1_000_000;
                crate::println!("xenpv-rt: vif{index} reattached");
                shared.reconnected(&nf);
                shared.push(VifEvent::Reattached { ms });
                crate::metrics::refresh_soon();
                vif = Some(Vif {
                    nf,
                    shared: shared.clone(),
                });
            }
            // No backend yet (the usual case while detached): try again later.
            Err(_) => Timer::after(Duration::from_nanos(REATTACH_EVERY_NS)).await,
        }
    }
}

/// The guest moved to a new domain of epoch `epoch`: let go of the old netfront without
/// a word to its backend ([`Netfront::abandon`]), connect to the new domain's backend at
/// once under the same stack (TCP connections carry on), and announce the address with
/// a gratuitous ARP. `None` if no backend could be connected: the vif is detached then,
/// and the task's re-attach loop takes over.
async fn resume_vif(
    devices: &'static Devices,
    index: u32,
    stack: &Stack,
    shared: &Rc<Shared>,
    old: Netfront,
    epoch: u32,
) -> Option<Vif> {
    let t0 = match devices.resumed_at() {
        0 => crate::time::now_ns(),
        t => t,
    };
    shared.close(old.snapshot());
    shared.attached.set(false);
    // The port's number may be bound to something else in the new domain.
    exec::forget(old.port());
    let mut old = Some(old);
    let freed = devices.with(|c| old.take().map_or(0, |n| n.abandon(c.memory, c.grants)));
    if let Some(n) = old.take() {
        // Never ended nor deferred (its grants are stale): its pages are lost, counted.
        crate::warn!("xenpv-rt: vif{index} not abandoned: {:?}", freed.err());
        core::mem::forget(n);
    }
    let t_connect = crate::time::now_ns();
    match devices.connect(index).await {
        Ok(mut nf) => {
            let handshake_ms = crate::time::now_ns().saturating_sub(t_connect) / 1_000_000;
            let garp = stack.ipv4().is_some_and(|c| {
                let f = garp_frame(nf.mac(), c.address().octets());
                nf.send(f.len(), |b| b.copy_from_slice(&f)).is_ok()
            });
            let ms = (crate::time::now_ns().saturating_sub(t0)) / 1_000_000;
            shared.reconnected(&nf);
            shared.push(VifEvent::Resumed { epoch, ms });
            crate::metrics::refresh_soon();
            crate::println!(
                "xenpv-rt: vif{index} resumed epoch={epoch} ms={ms} garp={} handshake_ms={handshake_ms}",
                u8::from(garp)
            );
            Some(Vif {
                nf,
                shared: shared.clone(),
            })
        }
        Err(e) => {
            crate::println!("xenpv-rt: vif{index} resume failed epoch={epoch}: {e}");
            shared.push(VifEvent::Detached {
                pages_kept: 0,
                backend_state: "gone",
                closed_ms: 0,
            });
            crate::metrics::refresh_soon();
            None
        }
    }
}

/// The guest is ending: reset the stack's connections and run the vif until their RSTs
/// are out (at most [`RESET_FLUSH_NS`]), saying how many there were.
async fn reset_connections(index: u32, stack: &Stack, runner: &mut Runner<Vif>) {
    let n = stack.reset_all();
    if n == 0 {
        return;
    }
    let t0 = crate::time::now_ns();
    let sent = async {
        while stack.resets_pending() {
            Timer::after(Duration::from_millis(5)).await;
        }
        Timer::after(Duration::from_nanos(RESET_SETTLE_NS)).await;
    };
    let bound = Timer::after(Duration::from_nanos(RESET_FLUSH_NS));
    select(runner.run(), select(sent, bound)).await;
    crate::println!(
        "xenpv-rt: vif{index} reset connections={n} flushed_ms={} pending={}",
        (crate::time::now_ns() - t0) / 1_000_000,
        stack.resets_pending()
    );
}

/// `aa:bb:cc:dd:ee:ff`.
struct MacFmt([u8; 6]);
impl core::fmt::Display for MacFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(':')?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `dhcp` or `A.B.C.D/P`.
struct AddrFmt(Addressing);
impl core::fmt::Display for AddrFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Addressing::Dhcp => f.write_str("dhcp"),
            Addressing::Static { cidr, .. } => write!(f, "{cidr}"),
        }
    }
}
