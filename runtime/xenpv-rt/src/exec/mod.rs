//! The async executor (feature `async`): embassy-executor's raw executor, driven by the
//! runtime's own loop.
//!
//! The loop polls the executor while there is work (the `__pender` this module exports
//! sets a flag), then idles in `SCHEDOP_poll` on the event channel ports that futures
//! registered with [`wake_on`], until the next embassy-time deadline ([`time_driver`]).
//! When it returns, every registered port whose pending bit is set is cleared and its
//! wakers woken, and every timer whose deadline passed fires. No upcall is ever taken:
//! events are read from shared_info's bitmaps at these points only.
//!
//! Applications usually start it through [`main!`](crate::main) and spawn tasks with
//! [`spawner`]:
//!
//! ```no_run
//! # async fn f() {
//! use xenpv_rt::exec::embassy_time::{Duration, Timer};
//! Timer::after(Duration::from_millis(10)).await; // SCHEDOP_poll until then
//! # }
//! ```

use crate::time_driver;

use crate::evtchn::{self, Port};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use core::task::Waker;
use embassy_executor::raw;

/// The executor crate, for [`main!`](crate::main)'s task and for applications that name
/// its types ([`Spawner`], `SpawnToken`) without depending on it.
pub use embassy_executor;
/// Define a task (`#[xenpv_rt::exec::task(embassy_executor = xenpv_rt::exec::embassy_executor)]`,
/// or `#[embassy_executor::task]` with a dependency of your own).
pub use embassy_executor::task;
pub use embassy_executor::{SpawnError, SpawnToken, Spawner};
/// `select`, `join`, `block_on` for futures (embassy-futures).
pub use embassy_futures;
/// embassy-time, driven by Xen system time: `Timer`, `Duration`, `Instant`,
/// `with_timeout`.
pub use embassy_time;

/// The most ports one `SCHEDOP_poll` takes (Xen refuses more than 128). With more
/// registered, the wait is cut into slices of [`SLICE_NS`] so the rest are looked at too.
pub const POLL_PORTS_MAX: usize = 128;
/// How long one idle wait lasts at most when more than [`POLL_PORTS_MAX`] ports are
/// registered.
pub const SLICE_NS: u64 = 10_000_000;
/// The longest idle wait: a backstop, so a waker registered on no port still runs now
/// and then.
pub const IDLE_MAX_NS: u64 = 1_000_000_000;

/// While tasks keep the executor busy, events and due timers are let in at least this
/// often (they are at every idle wait anyway).
pub const LET_IN_NS: u64 = 1_000_000;

/// Set by the pender: the executor has tasks to poll.
static PENDED: AtomicBool = AtomicBool::new(false);
/// The one executor, leaked at start (null before).
static EXECUTOR: AtomicPtr<raw::Executor> = AtomicPtr::new(core::ptr::null_mut());
/// Wakers waiting for a port's event, one-shot.
static PORT_WAKERS: spin::Mutex<Vec<(Port, Waker)>> = spin::Mutex::new(Vec::new());
/// How many times each port fired (its registrations woken), for [`event`].
static FIRED: spin::Mutex<Fired> = spin::Mutex::new(Fired::new());

/// Per port, how many times it fired (wrapping). A short list: a guest has a few ports.
struct Fired {
    counts: Vec<(Port, u64)>,
}

impl Fired {
    const fn new() -> Fired {
        Fired { counts: Vec::new() }
    }

    /// Times `port` fired so far.
    fn count(&self, port: Port) -> u64 {
        self.counts
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(0, |(_, n)| *n)
    }

    /// `port` fired once more.
    fn bump(&mut self, port: Port) {
        match self.counts.iter_mut().find(|(p, _)| *p == port) {
            Some((_, n)) => *n = n.wrapping_add(1),
            None => self.counts.push((port, 1)),
        }
    }
}

/// The executor's pender: only a flag, since the loop runs on the one vCPU and polls
/// again before idling whenever it is set.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::SeqCst);
}

/// Resolve at the next event on `port` (or when its registrations are dropped: [`forget`],
/// a refused poll). A poll of the task for another reason (a timer in the same `select`,
/// a socket's wake) does not end it: a future that polls this in a loop next to a busy
/// one (a vif's backend check next to its runner) does its work once per event, not once
/// per wake of the task. Callers re-check what they wait for.
pub async fn event(port: Port) {
    // A port out of range wakes at once and never fires: resolve at the next poll.
    let valid = evtchn::checked(port).is_ok();
    let mut armed_at: Option<u64> = None;
    core::future::poll_fn(|cx| {
        let fired = FIRED.lock().count(port);
        match armed_at {
            Some(n) if n != fired || !valid => return core::task::Poll::Ready(()),
            Some(_) => {}
            None => armed_at = Some(fired),
        }
        wake_on(port, cx.waker());
        core::task::Poll::Pending
    })
    .await
}

/// Wake `waker` once the next event arrives on `port` (one-shot: the idle loop clears the
/// port's pending bit and wakes every waker registered for it). Register before checking
/// the condition the event signals, or after (the pending bit stays set until the loop
/// clears it, so an event in between is not lost). A port out of range wakes at once.
pub fn wake_on(port: Port, waker: &Waker) {
    if evtchn::checked(port).is_err() {
        waker.wake_by_ref();
        return;
    }
    let mut list = PORT_WAKERS.lock();
    if !list.iter().any(|(p, w)| *p == port && w.will_wake(waker)) {
        list.push((port, waker.clone()));
    }
}

/// Every port is gone (the guest resumed in a new domain): every registration is dropped
/// and its waker woken, and every [`event`] future resolves at its next poll (its port
/// counted as fired once more). The tasks re-check what they waited for, and wait on
/// their new ports.
pub fn reset_ports() {
    let all: Vec<(Port, Waker)> = core::mem::take(&mut *PORT_WAKERS.lock());
    {
        let mut fired = FIRED.lock();
        let known: Vec<Port> = fired.counts.iter().map(|(p, _)| *p).collect();
        for p in known.into_iter().chain(all.iter().map(|(p, _)| *p)) {
            fired.bump(p);
        }
    }
    for (_, w) in all {
        w.wake();
    }
}

/// Drop every registration on `port`, waking its wakers: call it before closing the
/// port (Xen refuses to poll a closed one; the idle loop would drop them anyway, after
/// a refused poll).
pub fn forget(port: Port) {
    FIRED.lock().bump(port);
    wake_registered(port);
}

/// `port` fired, but a blocking wait took its signal (the xenstore client reading a
/// watch event during a request): wake its registrations as the idle loop would.
/// Nothing to do (and nothing allocated: it may run before the heap) if none.
pub fn fire(port: Port) {
    if PORT_WAKERS.lock().iter().any(|(p, _)| *p == port) {
        FIRED.lock().bump(port);
        wake_registered(port);
    }
}

/// Drop `port`'s registrations, waking them (outside the lock: a woken future may
/// register again at once).
fn wake_registered(port: Port) {
    let mut gone: Vec<Waker> = Vec::new();
    PORT_WAKERS.lock().retain(|(p, w)| {
        let keep = *p != port;
        if !keep {
            gone.push(w.clone());
        }
        keep
    });
    for w in gone {
        w.wake();
    }
}

/// The executor's spawner (for tasks defined with [`task`]).
///
/// # Panics
///
/// Before the executor started ([`main!`](crate::main) starts it before the application
/// runs).
pub fn spawner() -> Spawner {
    let p = EXECUTOR.load(Ordering::Acquire);
    // SAFETY: EXECUTOR is null or a leaked (never freed) executor that `start` stored.
    match unsafe { p.as_ref() } {
        Some(e) => e.spawner(),
        None => panic!("xenpv_rt::exec::spawner before the executor started"),
    }
}

/// Create the executor (once; later calls return the same one).
pub(crate) fn start() -> &'static raw::Executor {
    let p = EXECUTOR.load(Ordering::Acquire);
    // SAFETY: as in `spawner`.
    if let Some(e) = unsafe { p.as_ref() } {
        return e;
    }
    let e: &'static mut raw::Executor =
        Box::leak(Box::new(raw::Executor::new(core::ptr::null_mut())));
    EXECUTOR.store(e, Ordering::Release);
    e
}

/// Run the executor until `done` returns `Some`: poll while tasks are ready, idle in
/// `SCHEDOP_poll` otherwise, until `deadline()` (Xen system time, ns) at the latest.
pub(crate) fn run<T>(
    executor: &'static raw::Executor,
    mut done: impl FnMut() -> Option<T>,
    mut deadline: impl FnMut() -> Option<u64>,
) -> T {
    let mut let_in_at = crate::time::now_ns();
    loop {
        PENDED.store(false, Ordering::SeqCst);
        // SAFETY: `run` is the only caller of `poll`, never re-entered (the pender only
        // sets a flag).
        unsafe { executor.poll() };
        if let Some(t) = done() {
            return t;
        }
        if PENDED.load(Ordering::SeqCst) {
            // Work is ready, so no sleep; but events and due timers are let in at least
            // every LET_IN_NS: a task that wakes itself each poll (a yield loop, a stack
            // that wants to send again at once) must not starve every other task. Not on
            // every pass: a stack's "now" timer would then run its runner before the
            // tasks its round woke (their output would go out a round later, after a
            // bare ACK).
            let now = crate::time::now_ns();
            if now.saturating_sub(let_in_at) >= LET_IN_NS {
                let_in_at = now;
                wake_pending();
                time_driver::wake_due(now);
            }
        } else {
            let_in_at = crate::time::now_ns();
            idle(deadline());
        }
    }
}

/// Wait for a registered port's event or the next deadline, then wake what is due.
fn idle(extra_deadline: Option<u64>) {
    let now = crate::time::now_ns();
    let mut until = now.saturating_add(IDLE_MAX_NS);
    if let Some(t) = time_driver::next_deadline_ns() {
        until = until.min(t);
    }
    if let Some(t) = extra_deadline {
        until = until.min(t);
    }
    let mut ports: Vec<Port> = PORT_WAKERS.lock().iter().map(|(p, _)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    let any_pending = ports.iter().any(|&p| evtchn::is_pending(p));
    if !any_pending && until > now {
        if ports.len() > POLL_PORTS_MAX {
            until = until.min(now.saturating_add(SLICE_NS));
        }
        let n = ports.len().min(POLL_PORTS_MAX);
        // Returns on an event of a port given (Xen checks their bits after arming the
        // poll, so none is missed), at `until`, or early: the caller loops either way.
        if let Err(e) = crate::hypercall::poll(&mut ports[..n], crate::time::to_xen(until)) {
            poll_failed(e, &ports[..n]);
        }
    }
    wake_pending();
    time_driver::wake_due(crate::time::now_ns());
}

/// Polls Xen refused (a port closed under a registered waker, say).
static POLL_ERRORS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Xen refused the poll: say so (the first few times), and wake and drop every port
/// registration, so that a stale one (its port closed) goes away: the wakers still
/// waiting register again when polled.
fn poll_failed(e: crate::XenError, ports: &[Port]) {
    if POLL_ERRORS.fetch_add(1, Ordering::Relaxed) < 4 {
        crate::warn!("exec: SCHEDOP_poll on ports {ports:?}: {e}");
    }
    let all: Vec<(Port, Waker)> = core::mem::take(&mut *PORT_WAKERS.lock());
    {
        let mut fired = FIRED.lock();
        for (p, _) in &all {
            fired.bump(*p);
        }
    }
    for (_, w) in all {
        w.wake();
    }
}

/// Polls Xen refused since boot (see the idle loop: their registrations are dropped).
pub fn poll_errors() -> u64 {
    POLL_ERRORS.load(Ordering::Relaxed)
}

/// Clear every registered port that is pending and wake its wakers (outside the lock:
/// a woken future may register again at once).
fn wake_pending() {
    let mut due: Vec<Waker> = Vec::new();
    {
        let mut list = PORT_WAKERS.lock();
        let mut fired: Vec<Port> = Vec::new();
        list.retain(|(p, w)| {
            let on = fired.contains(p) || evtchn::is_pending(*p);
            if on {
                if !fired.contains(p) {
                    fired.push(*p);
                }
                due.push(w.clone());
            }
            !on
        });
        let mut counts = FIRED.lock();
        for p in fired {
            evtchn::clear(p);
            counts.bump(p);
        }
    }
    for w in due {
        w.wake();
    }
}

/// A critical section on one vCPU that never takes upcalls: nothing can preempt the code
/// inside it, so there is nothing to mask.
struct NoPreemption;
critical_section::set_impl!(NoPreemption);

// SAFETY: the runtime runs on one vCPU with event delivery masked (no upcall is
// registered) and its trap handlers end the guest, so code inside a critical section is
// never interrupted by other Rust code: acquire and release have nothing to do.
unsafe impl critical_section::Impl for NoPreemption {
    unsafe fn acquire() -> critical_section::RawRestoreState {}
    unsafe fn release(_: critical_section::RawRestoreState) {}
}
