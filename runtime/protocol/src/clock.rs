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
