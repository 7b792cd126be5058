//! Xen system time: nanoseconds since the machine booted, from the vCPU's
//! `vcpu_time_info` in shared_info (the pvclock, xen.h). TSC deltas are scaled as Xen's
//! `scale_delta` does: shift, then multiply by a 32.32 fixed-point factor.
//!
//! ```
//! use xenpv_protocol::clock::Clock;
//!
//! // A 2 GHz TSC: shift 0, mul 2^31 (half a nanosecond per tick).
//! let c = Clock { tsc_timestamp: 1_000, system_time: 5_000, mul: 1 << 31, shift: 0 };
//! assert_eq!(c.at(3_000), 6_000);
//! // A TSC read just behind the stamp counts as no time elapsed.
//! assert_eq!(c.at(900), 5_000);
//! ```

/// One consistent copy of the pvclock fields (`struct vcpu_time_info`, xen.h), taken
/// between two reads of an even, unchanged `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// TSC value at which Xen computed `system_time`.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// `tsc_to_system_mul`: nanoseconds per (shifted) tick as a 32.32 fixed-point factor.
    pub mul: u32,
    /// `tsc_shift`: the power of two applied to a TSC delta before the multiply.
    pub shift: i8,
}

impl Clock {
    /// Nanoseconds for a TSC delta: shifted by `shift` (left if positive; as in Xen's
    /// `scale_delta`, bits shifted out are dropped; a left shift of 64 or more gives 0),
    /// then multiplied by `mul / 2^32`. Never panics, whatever the fields hold.
    pub fn scale(&self, delta: u64) -> u64 {
        let d = if self.shift >= 0 {
            delta.checked_shl(self.shift as u32).unwrap_or(0)
        } else {
            delta >> (-(self.shift as i32)).min(63)
        };
        ((d as u128 * self.mul as u128) >> 32) as u64
    }
    /// System time at TSC value `tsc`.
    ///
    /// A TSC before `tsc_timestamp` reads as `system_time`: no time elapsed. That happens
    /// when the TSC was read on a pCPU slightly behind the one Xen stamped on, or just
    /// before Xen's update. Scaling it backwards would make time go back by up to the gap
    /// (or drop to 0 near boot), and subtracting unsigned as Linux's
    /// `__pvclock_read_cycles` and Mini-OS do wraps to an enormous delta (Linux then relies
    /// on a global last-value clamp). Clamping to the stamp keeps readings monotonic across
    /// Xen's updates.
    pub fn at(&self, tsc: u64) -> u64 {
        match tsc.checked_sub(self.tsc_timestamp) {
            Some(delta) => self.system_time.saturating_add(self.scale(delta)),
            None => self.system_time,
        }
    }
}

/// The offset from Xen system time to the guest's monotonic time after a resume in a
/// new domain (`guest = raw + offset`), so that the guest's clock goes on from where it
/// stopped: `mono_saved` (the guest time read just before suspending) plus 1 ns at
/// `raw_now` (Xen system time on the new host, read just after resuming), whatever the
/// new host's system time is (it may be far behind or far ahead). The time the guest
/// spent saved does not count (pause semantics, as Linux's `xen_sched_clock_offset`).
///
/// ```
/// use xenpv_protocol::clock::{resume_offset, guest_time};
/// // Saved at guest time 5 s, resumed on a host that booted 1 s ago.
/// let off = resume_offset(5_000_000_000, 1_000_000_000);
/// assert_eq!(guest_time(1_000_000_000, off), 5_000_000_001);
/// ```
pub fn resume_offset(mono_saved: u64, raw_now: u64) -> i64 {
    let off = i128::from(mono_saved) + 1 - i128::from(raw_now);
    off.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Guest time for Xen system time `raw` under `offset` (saturating at 0 and `u64::MAX`).
pub fn guest_time(raw: u64, offset: i64) -> u64 {
    (i128::from(raw) + i128::from(offset)).clamp(0, i128::from(u64::MAX)) as u64
}

/// The Xen system time to hand Xen for guest-time deadline `deadline` under `offset`
/// (`set_timer_op`, `SCHEDOP_poll`): 0 stays 0 (it means "none" to both), a deadline
/// already past on Xen's clock becomes 1 (past: at once), the rest saturates.
pub fn to_xen(deadline: u64, offset: i64) -> u64 {
    if deadline == 0 {
        return 0;
    }
    (i128::from(deadline) - i128::from(offset)).clamp(1, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_time_never_goes_back_across_resumes_on_any_host() {
        // Raw host clocks at resume: far behind, equal, far ahead, and up to Xen's limit
        // (system time is an s_time_t: at most i64::MAX, 292 years of uptime).
        let hosts = [0u64, 1, 7_000_000_000, 90_000_000_000, 1 << 61, 1 << 62];
        let mut offset = 0i64;
        let mut raw = 3_000_000_000u64;
        let mut last = guest_time(raw, offset);
        for (i, &host) in hosts.iter().cycle().take(24).enumerate() {
            // Run a while on this host, then save.
            raw = raw.saturating_add(1_000_000 * (i as u64 + 1));
            let saved = guest_time(raw, offset);
            assert!(saved >= last, "went back before save {i}");
            // Resume on the next host.
            offset = resume_offset(saved, host);
            raw = host;
            let after = guest_time(raw, offset);
            assert!(
                after > saved || saved == u64::MAX,
                "resume {i}: {saved} -> {after}"
            );
            last = after;
        }
    }

    #[test]
    fn deadlines_round_trip_and_keep_their_special_values() {
        for off in [0i64, -5_000_000_000, 5_000_000_000, i64::MIN, i64::MAX] {
            assert_eq!(to_xen(0, off), 0, "0 means none to Xen");
            for raw in [1u64, 1_000, 10_000_000_000] {
                let g = guest_time(raw, off);
                if g != 0 && g != u64::MAX {
                    assert_eq!(to_xen(g, off), raw, "offset {off}");
                }
            }
        }
        // A deadline before Xen's time 0 is past: at once, not "none".
        assert_eq!(to_xen(5, 100), 1);
        assert_eq!(to_xen(u64::MAX, -10), u64::MAX);
        assert_eq!(resume_offset(u64::MAX, 0), i64::MAX);
        assert_eq!(resume_offset(0, u64::MAX), i64::MIN);
    }

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
        assert_eq!(
            c.at(0),
            5_000,
            "an earlier TSC value is the stamp, not earlier"
        );
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

    /// A 2 GHz clock stamped at TSC `ts` and system time `sys`.
    fn ghz2(ts: u64, sys: u64) -> Clock {
        Clock {
            tsc_timestamp: ts,
            system_time: sys,
            mul: 1 << 31,
            shift: 0,
        }
    }

    #[test]
    fn a_tsc_just_behind_the_stamp_reads_as_the_stamp() {
        let c = ghz2(1_000_000, 5_000);
        for behind in 1..=1000 {
            assert_eq!(c.at(1_000_000 - behind), 5_000, "{behind} ticks behind");
        }
        // Never a drop to 0, never a wrap to a huge value.
        let c = ghz2(u64::MAX - 10, 100);
        assert_eq!(c.at(0), 100);
        assert_eq!(c.at(u64::MAX - 11), 100);
        assert_eq!(c.at(u64::MAX), 105);
    }

    #[test]
    fn time_never_goes_back_when_the_stamp_moves_past_the_tsc() {
        // Xen restamps every 2000 ticks (1000 ns); each read after a restamp sees a TSC up
        // to 999 ticks behind the new stamp (another pCPU's TSC, a read before the update).
        let mut last = 0;
        let mut behind = 7u64;
        for k in 0..200u64 {
            let old = ghz2(1_000 + 2_000 * k, 5_000 + 1_000 * k);
            let new = ghz2(1_000 + 2_000 * (k + 1), 5_000 + 1_000 * (k + 1));
            behind = (behind * 31 + 17) % 999 + 1;
            for t in [
                old.at(old.tsc_timestamp + 1_999),
                new.at(new.tsc_timestamp - behind),
                new.at(new.tsc_timestamp),
                new.at(new.tsc_timestamp + 1),
            ] {
                assert!(t >= last, "step {k}: {t} after {last} ({behind} behind)");
                last = t;
            }
        }
    }
}
