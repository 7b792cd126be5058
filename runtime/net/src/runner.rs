//! The task that moves a stack's packets through a device.

use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::{Context, Poll};

use embassy_time::Timer;

use crate::{Driver, Stack};

/// Why [`Runner::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The device's link went down ([`Driver::link_up`] is false): take the device back
    /// with [`Runner::into_device`], and plug a new one into the same stack later.
    LinkDown,
}

/// Drives a [`Stack`] over a device `D`: polls the interface whenever the device, a
/// socket or the stack's timers say so. One runner per stack at a time.
///
/// ```no_run
/// # async fn f<D: xenpv_net::Driver>(device: D) {
/// use xenpv_net::{Config, Runner, Stack};
/// let stack = Stack::new(Config::dhcp(), device.mac());
/// let mut runner = Runner::new(stack.clone(), device);
/// runner.run().await; // in a task of its own; sockets use `stack`
/// let device = runner.into_device(); // the link went down
/// # }
/// ```
pub struct Runner<D: Driver> {
    stack: Stack,
    device: D,
    timer: Option<Timer>,
}

impl<D: Driver> Runner<D> {
    /// Plug `device` into `stack` (a fresh interface with the device's capabilities and
    /// Ethernet address; the stack's sockets and address carry over).
    pub fn new(stack: Stack, mut device: D) -> Runner<D> {
        stack.with(|inner| inner.attach(&mut device));
        Runner {
            stack,
            device,
            timer: None,
        }
    }

    /// Move packets until the device's link goes down.
    pub async fn run(&mut self) -> RunEnd {
        poll_fn(|cx| self.round(cx)).await
    }

    /// The device, back (after `run` returned, to close it).
    pub fn into_device(self) -> D {
        self.device
    }

    /// The stack this runner drives.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// One round of the stack, then sleep until the device, a socket or a timer wakes us.
    fn round(&mut self, cx: &mut Context<'_>) -> Poll<RunEnd> {
        if !self.device.link_up() {
            return Poll::Ready(RunEnd::LinkDown);
        }
        let next = self.stack.with(|inner| {
            inner.runner.register(cx.waker());
            inner.poll(&mut self.device)
        });
        // After the round: a device with work left (frames it queued itself) wakes at once.
        self.device.register_waker(cx.waker());
        self.timer = next.map(Timer::at);
        if let Some(t) = self.timer.as_mut() {
            // The first poll of a timer never completes: it registers the wake-up.
            let _ = Pin::new(t).poll(cx);
        }
        Poll::Pending
    }
}
