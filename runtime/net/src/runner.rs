//! The task that moves a stack's packets through a device.

use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::{Context, Poll};

use embassy_time::Timer;

use crate::{Driver, Stack};

/// The longest a runner waits for a device whose transmit slots are all in flight
/// ([`Driver::tx_full`]) before it polls again: the device's wake-up normally ends the
/// wait first; this bounds it if a wake-up is lost.
pub const TX_FULL_WAIT: embassy_time::Duration = embassy_time::Duration::from_millis(20);

/// When to poll again: the stack's `next`, except that "now" while the device cannot
/// send is `now + TX_FULL_WAIT` (the device wakes the runner when a slot frees up);
/// without it a runner whose stack wants to send spins until the backend catches up.
pub(crate) fn next_poll(
    next: Option<embassy_time::Instant>,
    now: embassy_time::Instant,
    tx_full: bool,
) -> Option<embassy_time::Instant> {
    match next {
        Some(at) if tx_full && at <= now => Some(now + TX_FULL_WAIT),
        other => other,
    }
}

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
        let next = next_poll(next, embassy_time::Instant::now(), self.device.tx_full());
        self.timer = next.map(Timer::at);
        if let Some(t) = self.timer.as_mut() {
            // The first poll of a timer never completes: it registers the wake-up.
            let _ = Pin::new(t).poll(cx);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_time::{Duration, Instant};

    #[test]
    fn a_full_device_defers_send_now_but_not_later_deadlines() {
        let now = Instant::from_millis(1000);
        assert_eq!(next_poll(Some(now), now, true), Some(now + TX_FULL_WAIT));
        assert_eq!(next_poll(Some(now), now, false), Some(now));
        let later = now + Duration::from_millis(5);
        assert_eq!(next_poll(Some(later), now, true), Some(later));
        assert_eq!(next_poll(None, now, true), None);
    }
}
