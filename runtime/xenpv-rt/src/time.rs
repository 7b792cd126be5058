//! Xen system time, read live from vCPU 0's `vcpu_time_info` (the arithmetic is
//! `xenpv_protocol::clock`).

use core::sync::atomic::{AtomicBool, Ordering};
pub use xenpv_protocol::clock::Clock;

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
    if ready() {
        clock().at(rdtsc())
    } else {
        rdtsc()
    }
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
    Some(sec + (nsec + now_ns()) / 1_000_000_000)
}
