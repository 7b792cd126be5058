//! Exit statuses: what the guest's status means, and what the exit channel can carry.
//!
//! ```
//! use xenpv_protocol::status::{clamp_status, STATUS_MAX};
//!
//! assert_eq!(clamp_status(3), (3, false));
//! assert_eq!(clamp_status(300), (STATUS_MAX, true)); // flagged, not wrapped to 44
//! ```

/// Status after a panic (Rust's convention for a panicking process).
pub const STATUS_PANIC: i32 = 101;
/// Status when the runtime refuses to go on (bad start_info, a layout that cannot fit...).
pub const STATUS_FATAL: i32 = 102;
/// Status after a CPU exception the runtime reported (a fault line names the vector,
/// the addresses and, for a page fault, the address and cause).
pub const STATUS_FAULT: i32 = 103;
/// Largest status that survives QEMU's `(status << 1) | 1` in an 8-bit exit code.
pub const STATUS_MAX: i32 = 127;

/// Clamp to what the exit channel can carry, saying so rather than truncating silently.
pub fn clamp_status(status: i32) -> (i32, bool) {
    if (0..=STATUS_MAX).contains(&status) {
        (status, false)
    } else {
        (STATUS_MAX, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn statuses_outside_the_channel_are_clamped_and_flagged() {
        assert_eq!(clamp_status(0), (0, false));
        assert_eq!(clamp_status(127), (127, false));
        assert_eq!(clamp_status(128), (127, true));
        assert_eq!(clamp_status(-1), (127, true));
    }

    #[test]
    fn the_extremes_are_clamped_and_flagged() {
        for s in [i32::MIN, -128, 1000, i32::MAX] {
            assert_eq!(clamp_status(s), (STATUS_MAX, true), "{s}");
        }
    }

    #[test]
    fn every_status_up_to_the_max_survives_qemus_exit_code_and_128_does_not() {
        // isa-debug-exit makes QEMU exit with (value << 1) | 1, and an exit code has 8 bits.
        let through_qemu = |s: i32| (((s << 1) | 1) & 0xff) >> 1;
        for s in 0..=STATUS_MAX {
            assert_eq!(clamp_status(s), (s, false));
            assert_eq!(through_qemu(s), s);
        }
        assert_ne!(through_qemu(STATUS_MAX + 1), STATUS_MAX + 1);
        for s in [STATUS_PANIC, STATUS_FATAL] {
            assert_eq!(clamp_status(s), (s, false), "{s} passes unchanged");
            assert_ne!(s, 0);
        }
        assert_ne!(STATUS_PANIC, STATUS_FATAL);
    }
}
