//! Exit statuses: what the guest's status means, what the exit channel can carry, and
//! the console's exit line (one writer, [`exit_line`], and one reader,
//! [`parse_exit_line`]).
//!
//! ```
//! use xenpv_contract::status::{clamp_status, exit_line, parse_exit_line, STATUS_MAX};
//!
//! assert_eq!(clamp_status(3), (3, false));
//! assert_eq!(clamp_status(300), (STATUS_MAX, true)); // flagged, not wrapped to 44
//! let line = format!("{}", exit_line(3));
//! assert_eq!(line, "xenpv-rt: exit status 3");
//! assert_eq!(parse_exit_line(&line), Some(3));
//! ```

use core::fmt;

/// How the guest's last line starts: the runtime prints `EXIT_LINE` and the status
/// ([`exit_line`]), and the host reads the status back from it ([`parse_exit_line`]).
pub const EXIT_LINE: &str = "xenpv-rt: exit status";

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

/// The exit line for `status`: `xenpv-rt: exit status N` (no newline).
pub const fn exit_line(status: i32) -> ExitLine {
    ExitLine(status)
}

/// The exit line of a status, as [`Display`](fmt::Display) (see [`exit_line`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitLine(pub i32);

impl fmt::Display for ExitLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{EXIT_LINE} {}", self.0)
    }
}

/// The status an exit line names, or `None` for any other line. Surrounding whitespace
/// (a `\r` from a serial console) is ignored; anything after the number is not an exit
/// line (the runtime's `... exit status 300 is outside 0..=127; reporting 127` note).
pub fn parse_exit_line(line: &str) -> Option<i32> {
    let rest = line.trim().strip_prefix(EXIT_LINE)?;
    rest.strip_prefix(' ')?.trim_start().parse().ok()
}

/// The statuses of the sample app (`app/`), each one check's failure. The runtime's own
/// are [`STATUS_PANIC`], [`STATUS_FATAL`] and [`STATUS_FAULT`]; 0 is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum AppStatus {
    /// A check failed: a corrupt initrd, a disk that read back wrong, a fault that did not
    /// fault.
    Failed = 1,
    /// The command line or the setup was refused (a bad number, no xenstore, no grant
    /// table, an unknown fault kind).
    Usage = 2,
    /// The memory layout report found a problem.
    Layout = 3,
    /// The page-table stress failed.
    Stress = 4,
    /// The timer-event check failed.
    Events = 5,
    /// The grant-table check failed.
    Grants = 6,
    /// The xenstore check failed.
    Xenstore = 7,
    /// The heap check failed.
    Heap = 8,
    /// A device (vif, vbd) could not be listed or connected.
    Device = 9,
    /// What was asked does not fit in the domain's memory (the appliance's socket
    /// buffers and pools after its vifs and disks): said at startup, before any of it.
    Memory = 10,
}

impl AppStatus {
    /// Every status, in order.
    pub const ALL: [AppStatus; 10] = [
        AppStatus::Failed,
        AppStatus::Usage,
        AppStatus::Layout,
        AppStatus::Stress,
        AppStatus::Events,
        AppStatus::Grants,
        AppStatus::Xenstore,
        AppStatus::Heap,
        AppStatus::Device,
        AppStatus::Memory,
    ];

    /// The status as the exit channel carries it.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

impl From<AppStatus> for i32 {
    fn from(s: AppStatus) -> i32 {
        s.code()
    }
}

impl TryFrom<i32> for AppStatus {
    type Error = i32;
    /// The app status `code` is, or the code itself if it is none.
    fn try_from(code: i32) -> Result<Self, i32> {
        AppStatus::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .ok_or(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_line_round_trips_and_nothing_else_parses() {
        for s in [0, 1, 7, 101, 102, 103, 127, -1, i32::MAX] {
            let l = format!("{}", exit_line(s));
            assert_eq!(parse_exit_line(&l), Some(s), "{l}");
            assert_eq!(parse_exit_line(&format!("  {l}\r")), Some(s));
        }
        for l in [
            "xenpv-rt: exit status",
            "xenpv-rt: exit status ",
            "xenpv-rt: exit status x",
            "xenpv-rt: exit statu 3",
            "xenpv-rt: exit status3",
            "xenpv-rt: exit status 300 is outside 0..=127; reporting 127",
            "domU| xenpv-rt: exit status 0",
            "xenpv-rt: exit status 0 0",
        ] {
            assert_eq!(parse_exit_line(l), None, "{l:?}");
        }
    }

    #[test]
    fn app_statuses_are_distinct_from_the_runtimes_and_convert_both_ways() {
        for s in AppStatus::ALL {
            let c = i32::from(s);
            assert!((1..=STATUS_MAX).contains(&c));
            assert!(![STATUS_PANIC, STATUS_FATAL, STATUS_FAULT].contains(&c));
            assert_eq!(AppStatus::try_from(c), Ok(s));
        }
        assert_eq!(AppStatus::try_from(0), Err(0));
        assert_eq!(AppStatus::try_from(101), Err(101));
        assert_eq!(AppStatus::Stress.code(), 4);
        assert_eq!(AppStatus::Heap.code(), 8);
    }
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
