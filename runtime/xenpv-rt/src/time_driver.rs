//! The embassy-time driver (features `async` or `net`): Xen system time
//! ([`now_ns`](crate::time::now_ns)) in 1 MHz ticks, and its timer queue (a list of
//! deadlines and wakers that the async executor's idle loop waits for and fires).

use alloc::vec::Vec;
use core::task::Waker;
use embassy_time_driver::Driver;

/// Ticks per second of the driver (embassy-time's `tick-hz-1_000_000`).
pub const TICK_HZ: u64 = 1_000_000;
const NS_PER_TICK: u64 = 1_000_000_000 / TICK_HZ;

/// Deadlines (ticks) and the wakers they wake.
static QUEUE: spin::Mutex<Vec<(u64, Waker)>> = spin::Mutex::new(Vec::new());

struct XenTime;

impl Driver for XenTime {
    fn now(&self) -> u64 {
        crate::time::now_ns() / NS_PER_TICK
    }
    fn schedule_wake(&self, at: u64, waker: &Waker) {
        let mut q = QUEUE.lock();
        // One entry per waker: a task that re-arms moves its deadline (the earlier one
        // wins; an early wake is only a spurious poll).
        match q.iter_mut().find(|(_, w)| w.will_wake(waker)) {
            Some(e) => e.0 = e.0.min(at),
            None => q.push((at, waker.clone())),
        }
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: XenTime = XenTime);

/// The earliest deadline queued, in Xen system time (ns).
pub fn next_deadline_ns() -> Option<u64> {
    let q = QUEUE.lock();
    q.iter().map(|(at, _)| at.saturating_mul(NS_PER_TICK)).min()
}

/// Wake (and drop) every timer due at Xen system time `now_ns`.
pub fn wake_due(now_ns: u64) {
    let now = now_ns / NS_PER_TICK;
    let mut due: Vec<Waker> = Vec::new();
    QUEUE.lock().retain(|(at, w)| {
        let fire = *at <= now;
        if fire {
            due.push(w.clone());
        }
        !fire
    });
    for w in due {
        w.wake();
    }
}
