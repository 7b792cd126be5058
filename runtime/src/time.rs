//! Xen system time: nanoseconds since the machine booted, from the vCPU's
//! `vcpu_time_info` in shared_info (the pvclock). TSC deltas are scaled as Xen's
//! `scale_delta` does: shift, then multiply by a 32.32 fixed-point factor.

/// One consistent copy of the pvclock fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub mul: u32,
    pub shift: i8,
}

impl Clock {
    /// Nanoseconds for a TSC delta.
    pub fn scale(&self, delta: u64) -> u64 {
        let d = if self.shift >= 0 {
            delta.checked_shl(self.shift as u32).unwrap_or(0)
        } else {
            delta >> (-(self.shift as i32)).min(63)
        };
        ((d as u128 * self.mul as u128) >> 32) as u64
    }
    /// System time at TSC value `tsc` (at or after the clock's timestamp; earlier TSC values
    /// are scaled backwards).
    pub fn at(&self, tsc: u64) -> u64 {
        if tsc >= self.tsc_timestamp {
            self.system_time
                .saturating_add(self.scale(tsc - self.tsc_timestamp))
        } else {
            self.system_time
                .saturating_sub(self.scale(self.tsc_timestamp - tsc))
        }
    }
}

/// The TSC.
#[cfg(all(feature = "rt", not(test)))]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects; Xen lets PV guests read the TSC.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Read vCPU 0's clock (version-checked: Xen bumps it to odd while it updates the fields).
#[cfg(all(feature = "rt", not(test)))]
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
#[cfg(all(feature = "rt", not(test)))]
pub fn now_ns() -> u64 {
    clock().at(rdtsc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_matches_xens_fixed_point() {
        // A 2 GHz TSC: shift 0, mul 2^31 (0.5 ns per tick).
        let c = Clock {
            tsc_timestamp: 1000,
            system_time: 5_000,
            mul: 1 << 31,
            shift: 0,
        };
        assert_eq!(c.at(3000), 6_000);
        assert_eq!(c.at(0), 4_500, "earlier TSC values scale backwards");
        // 500 MHz: shift 1, mul 2^32-1 ≈ 2 ns per tick.
        let c = Clock {
            tsc_timestamp: 0,
            system_time: 0,
            mul: u32::MAX,
            shift: 1,
        };
        assert_eq!(c.at(1_000_000), 1_999_999);
        let c = Clock {
            shift: -2,
            mul: 1 << 31,
            ..c
        };
        assert_eq!(c.scale(8), 1);
        // Nothing overflows or panics on any input from Xen.
        let c = Clock {
            tsc_timestamp: u64::MAX,
            system_time: u64::MAX,
            mul: u32::MAX,
            shift: 127,
        };
        assert_eq!(c.at(0), u64::MAX);
        let _ = Clock { shift: -128, ..c }.at(u64::MAX);
    }
}
