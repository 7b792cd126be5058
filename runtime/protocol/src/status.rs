//! Exit statuses: what the guest's status means, and what the exit channel can carry.

/// Status after a panic (Rust's convention for a panicking process).
pub const STATUS_PANIC: i32 = 101;
/// Status when the runtime refuses to go on (bad start_info, a layout that cannot fit...).
pub const STATUS_FATAL: i32 = 102;
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
}
