//! Xen system time, read live from vCPU 0's `vcpu_time_info` (the arithmetic is
//! `xenpv_protocol::clock`), and the guest's monotonic time on top of it.
//!
//! The guest's time ([`now_ns`]) is Xen system time plus an offset that is 0 until the
//! guest resumes in a new domain (a restore or a migration, feature `suspend`): there
//! Xen's system time is the new host's, and the offset makes the guest's time go on
//! from where it stopped ([`xenpv_protocol::clock::resume_offset`]). Every deadline
//! handed to Xen is converted back (`to_xen`: `evtchn::wait`, `evtchn::Timer::set` and the
//! executor's idle poll, the only callers of `set_timer_op` and `SCHEDOP_poll`).

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
pub use xenpv_protocol::clock::Clock;

/// Guest time minus Xen system time (0 until a resume in a new domain).
static OFFSET: AtomicI64 = AtomicI64::new(0);
/// Non-zero inside the suspend window: the guest time [`now_ns`] returns meanwhile
/// (shared_info is unmapped then, the clock cannot be read).
static FROZEN: AtomicU64 = AtomicU64::new(0);

/// shared_info is mapped (the takeover did it): the pvclock can be read.
static READY: AtomicBool = AtomicBool::new(false);

/// Called once the takeover has mapped shared_info at its fixmap slot.
pub(crate) fn mark_ready() {
    READY.store(true, Ordering::Release);
}

/// Can Xen system time (and event state in shared_info) be read yet?
pub fn ready() -> bool {
    READY.load(Ordering::Acquire)
}

/// The TSC (`rdtsc`), the raw counter Xen system time is computed from.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects; Xen lets PV guests read the TSC.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Read vCPU 0's clock, the `vcpu_time_info` in shared_info (`xen.h`): version-checked,
/// because Xen bumps the version to odd while it updates the fields.
///
/// Call it after the paging takeover has mapped shared_info (the application's `main`
/// always runs after it).
pub fn clock() -> Clock {
    use crate::mm::layout::Fixmap;
    let si = Fixmap::SharedInfo.va().as_ptr::<xen_sys::shared_info>();
    loop {
        // SAFETY: the takeover maps shared_info at fixmap slot 0 before anything calls
        // this; the fields are read volatile because Xen writes them at any time.
        let (v0, c, v1) = unsafe {
            let t = core::ptr::addr_of!((*si).vcpu_info[0].time);
            let v0 = core::ptr::addr_of!((*t).version).read_volatile();
            core::sync::atomic::compiler_fence(Ordering::Acquire);
            let c = Clock {
                tsc_timestamp: core::ptr::addr_of!((*t).tsc_timestamp).read_volatile(),
                system_time: core::ptr::addr_of!((*t).system_time).read_volatile(),
                mul: core::ptr::addr_of!((*t).tsc_to_system_mul).read_volatile(),
                shift: core::ptr::addr_of!((*t).tsc_shift).read_volatile(),
            };
            core::sync::atomic::compiler_fence(Ordering::Acquire);
            (v0, c, core::ptr::addr_of!((*t).version).read_volatile())
        };
        if v0 == v1 && v0 & 1 == 0 {
            return c;
        }
    }
}

/// Xen system time now, in nanoseconds since Xen started: the clock that
/// `set_timer_op` and `SCHEDOP_poll` deadlines are measured on.
///
/// Before the takeover maps shared_info (only the runtime's own start of day runs then,
/// e.g. a domU's early console output) it returns the raw TSC: deadlines then count
/// ticks, about a nanosecond each on the machines Xen runs on, which is close enough
/// for the stall timeouts that are all start of day uses.
pub fn now_ns() -> u64 {
    match FROZEN.load(Ordering::Acquire) {
        0 => xenpv_protocol::clock::guest_time(raw_now_ns(), OFFSET.load(Ordering::Acquire)),
        frozen => frozen,
    }
}

/// Xen system time now, without the guest's offset (what the wallclock is relative to).
fn raw_now_ns() -> u64 {
    if ready() {
        clock().at(rdtsc())
    } else {
        rdtsc()
    }
}

/// The Xen system time to hand Xen for guest-time deadline `deadline_ns` (0, "none",
/// stays 0).
pub(crate) fn to_xen(deadline_ns: u64) -> u64 {
    xenpv_protocol::clock::to_xen(deadline_ns, OFFSET.load(Ordering::Acquire))
}

/// Enter the suspend window: the guest time is frozen at its value now (returned), and
/// [`ready`] is false (shared_info is about to be unmapped) until [`leave_window`].
#[cfg(feature = "suspend")]
pub(crate) fn enter_window() -> u64 {
    let saved = now_ns().max(1);
    FROZEN.store(saved, Ordering::Release);
    READY.store(false, Ordering::Release);
    saved
}

/// Leave the suspend window (shared_info is mapped again). In a new domain
/// (`new_domain`) the offset is set so that the guest time goes on from where it was
/// frozen; in the same domain the clock is the same and the offset stays.
#[cfg(feature = "suspend")]
pub(crate) fn leave_window(new_domain: bool) {
    READY.store(true, Ordering::Release);
    let saved = FROZEN.load(Ordering::Acquire);
    if new_domain && saved != 0 {
        let off = xenpv_protocol::clock::resume_offset(saved, raw_now_ns());
        OFFSET.store(off, Ordering::Release);
    }
    FROZEN.store(0, Ordering::Release);
}

/// Wall-clock time now, in seconds since 1970 (UTC): shared_info's wallclock (the time
/// at Xen system time 0, version-checked like the clock) plus Xen system time. `None`
/// before shared_info is mapped, or if Xen does not know the time (a wallclock of 0).
pub fn wallclock_s() -> Option<u64> {
    use crate::mm::layout::Fixmap;
    if !ready() {
        return None;
    }
    let si = Fixmap::SharedInfo.va().as_ptr::<xen_sys::shared_info>();
    let (sec, nsec) = loop {
        // SAFETY: shared_info is mapped at its fixmap slot (`ready`); the fields are read
        // volatile because Xen writes them at any time.
        let (v0, sec, hi, nsec, v1) = unsafe {
            let v0 = core::ptr::addr_of!((*si).wc_version).read_volatile();
            core::sync::atomic::compiler_fence(Ordering::Acquire);
            let sec = core::ptr::addr_of!((*si).wc_sec).read_volatile();
            let hi = core::ptr::addr_of!((*si).wc_sec_hi).read_volatile();
            let nsec = core::ptr::addr_of!((*si).wc_nsec).read_volatile();
            core::sync::atomic::compiler_fence(Ordering::Acquire);
            (
                v0,
                sec,
                hi,
                nsec,
                core::ptr::addr_of!((*si).wc_version).read_volatile(),
            )
        };
        if v0 == v1 && v0 & 1 == 0 {
            break ((u64::from(hi) << 32) | u64::from(sec), u64::from(nsec));
        }
    };
    if sec == 0 {
        return None;
    }
    // Relative to Xen's own system time: the guest's offset plays no part.
    Some(sec + (nsec + raw_now_ns()) / 1_000_000_000)
}
