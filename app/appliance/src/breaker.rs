//! The disk's circuit breaker: after a disk call fails (its deadline passed, or an
//! error), `GET /files/…` is refused with a 503 for a back-off period instead of calling
//! the disk again, so a disk that stalls or crawls costs the serving loop at most one
//! call's deadline per back-off. The back-off starts at [`BACKOFF_NS`] and doubles while
//! the disk keeps failing, up to [`BACKOFF_MAX_NS`]; a call that succeeds resets it.
//!
//! ```
//! use xenpv_appliance::breaker::{Breaker, BACKOFF_NS};
//! let mut b = Breaker::new();
//! assert!(b.allow(0).is_ok());
//! b.failed(5);
//! assert_eq!(b.allow(6), Err(BACKOFF_NS - 1), "open: the disk is not called");
//! assert!(b.allow(5 + BACKOFF_NS).is_ok(), "tried again after the back-off");
//! assert_eq!(b.trips(), 1);
//! ```

/// The first back-off after a failed disk call: 30 s.
pub const BACKOFF_NS: u64 = 30_000_000_000;
/// The longest back-off (the disk still failing after several tries): 480 s.
pub const BACKOFF_MAX_NS: u64 = 16 * BACKOFF_NS;

/// The default deadline of one disk call (`disk_timeout=` in ms): 5 s. (An honest disk
/// under QEMU's emulation, the host busy, was seen to take 1.9 s for one call: 1 s
/// would refuse files from a disk that only is slow.)
pub const DISK_TIMEOUT_MS: u64 = 5000;

/// Whether the disk may be called now, and its record of failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    /// Refusing until then (ns), after a failure.
    open_until: Option<u64>,
    /// The back-off the next failure opens it for.
    backoff_ns: u64,
    trips: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

impl Breaker {
    /// Closed: the disk may be called.
    pub const fn new() -> Self {
        Breaker {
            open_until: None,
            backoff_ns: BACKOFF_NS,
            trips: 0,
        }
    }

    /// May the disk be called at `now` (ns)? `Err(ns)`: not for that long yet.
    pub fn allow(&self, now: u64) -> Result<(), u64> {
        match self.open_until {
            Some(until) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A disk call failed at `now` (ns): refuse for the back-off, and double the next.
    /// A failure while already open (another connection's call made before it opened)
    /// neither trips it again nor lengthens it.
    pub fn failed(&mut self, now: u64) {
        if self.allow(now).is_err() {
            return;
        }
        self.trips += 1;
        self.open_until = Some(now.saturating_add(self.backoff_ns));
        self.backoff_ns = self.backoff_ns.saturating_mul(2).min(BACKOFF_MAX_NS);
    }

    /// A disk call succeeded: the next failure backs off [`BACKOFF_NS`] again.
    pub fn succeeded(&mut self) {
        self.open_until = None;
        self.backoff_ns = BACKOFF_NS;
    }

    /// How many times a failure opened it.
    pub fn trips(&self) -> u64 {
        self.trips
    }
}

/// The 503's body while the breaker is open for `left_ns` more: the disk is not
/// answering, and when it will be tried again (the smallest whole back-off that covers
/// `left_ns`, so the text is static).
pub fn unavailable_body(left_ns: u64) -> &'static [u8] {
    const BODIES: [&[u8]; 5] = [
        b"disk not answering: tried again within 30 s\n",
        b"disk not answering: tried again within 60 s\n",
        b"disk not answering: tried again within 120 s\n",
        b"disk not answering: tried again within 240 s\n",
        b"disk not answering: tried again within 480 s\n",
    ];
    let mut bound = BACKOFF_NS;
    for b in BODIES {
        if left_ns <= bound {
            return b;
        }
        bound *= 2;
    }
    BODIES[BODIES.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_doubling_up_to_the_cap_and_resets_on_success() {
        let mut b = Breaker::new();
        let mut now = 1_000;
        let mut expect = BACKOFF_NS;
        for trip in 1..=8 {
            b.failed(now);
            assert_eq!(b.trips(), trip);
            assert_eq!(b.allow(now), Err(expect), "trip {trip}");
            assert_eq!(b.allow(now + expect - 1), Err(1));
            now += expect;
            assert!(b.allow(now).is_ok(), "half-open after the back-off");
            expect = (expect * 2).min(BACKOFF_MAX_NS);
        }
        assert_eq!(expect, BACKOFF_MAX_NS, "capped");
        b.succeeded();
        b.failed(now);
        assert_eq!(b.allow(now), Err(BACKOFF_NS), "reset by a success");
    }

    #[test]
    fn failures_while_open_count_once() {
        let mut b = Breaker::new();
        b.failed(0);
        b.failed(10);
        b.failed(BACKOFF_NS - 1);
        assert_eq!(b.trips(), 1);
        assert_eq!(b.allow(10), Err(BACKOFF_NS - 10), "not lengthened");
    }

    #[test]
    fn the_body_says_when_the_disk_is_tried_again() {
        let s = |ns| core::str::from_utf8(unavailable_body(ns)).unwrap();
        assert!(s(1).contains("within 30 s"));
        assert!(s(BACKOFF_NS).contains("within 30 s"));
        assert!(s(BACKOFF_NS + 1).contains("within 60 s"));
        assert!(s(BACKOFF_MAX_NS).contains("within 480 s"));
        assert!(s(u64::MAX).contains("within 480 s"));
        assert!(s(0).starts_with("disk not answering"));
    }

    #[test]
    fn a_clock_near_its_end_does_not_overflow() {
        let mut b = Breaker::new();
        b.failed(u64::MAX - 5);
        assert_eq!(b.allow(u64::MAX - 5), Err(5));
    }
}
