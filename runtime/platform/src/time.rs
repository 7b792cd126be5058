//! Xen system time, read live from vCPU 0's `vcpu_time_info` (the arithmetic is
//! `xenpv_protocol::clock`).

pub use xenpv_protocol::clock::Clock;

/// The TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects; Xen lets PV guests read the TSC.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Read vCPU 0's clock (version-checked: Xen bumps it to odd while it updates the fields).
pub fn clock() -> Clock {
    use crate::mm::layout::Fixmap;
    let si = Fixmap::SharedInfo.va() as *const xen_sys::shared_info;
    loop {
        // SAFETY: the takeover maps shared_info at fixmap slot 0 before anything calls
        // this; the fields are read volatile because Xen writes them at any time.
        let (v0, c, v1) = unsafe {
            let t = core::ptr::addr_of!((*si).vcpu_info[0].time);
            let v0 = core::ptr::addr_of!((*t).version).read_volatile();
            core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Acquire);
            let c = Clock {
                tsc_timestamp: core::ptr::addr_of!((*t).tsc_timestamp).read_volatile(),
                system_time: core::ptr::addr_of!((*t).system_time).read_volatile(),
                mul: core::ptr::addr_of!((*t).tsc_to_system_mul).read_volatile(),
                shift: core::ptr::addr_of!((*t).tsc_shift).read_volatile(),
            };
            core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Acquire);
            (v0, c, core::ptr::addr_of!((*t).version).read_volatile())
        };
        if v0 == v1 && v0 & 1 == 0 {
            return c;
        }
    }
}

/// Xen system time now, in nanoseconds.
pub fn now_ns() -> u64 {
    clock().at(rdtsc())
}
