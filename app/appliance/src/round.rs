//! One round of the appliance's loop, bounded: how many received frames it takes
//! ([`ingress`]) before the services, egress, xenstore and the other vifs get their turn.
//!
//! smoltcp's `Interface::poll` takes frames for as long as the device has any, and
//! netfront posts its RX buffers again as it goes: a flood (or a backend that answers
//! every refill at once) kept the loop in ingress forever. The appliance takes them one
//! at a time (`poll_ingress_single`) through [`ingress`], at most [`INGRESS`] a round;
//! frames left over wait in the ring, and the next round comes at once.
//!
//! ```
//! use xenpv_appliance::round::{ingress, INGRESS};
//! let mut ring = 1000; // a device that has 1000 frames
//! let r = ingress(&INGRESS, || 0, || { ring -= 1; true });
//! assert_eq!((r.frames, r.cut), (INGRESS.frames, true));
//! ```

/// An ingress budget: frames, and nanoseconds of the caller's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most frames a round.
    pub frames: usize,
    /// Most time a round spends in ingress.
    pub ns: u64,
}

/// The appliance's: 64 frames or 10 ms, whichever comes first.
pub const INGRESS: Budget = Budget {
    frames: 64,
    ns: 10_000_000,
};

/// What a round's ingress did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// Frames taken.
    pub frames: usize,
    /// The budget ran out (frames may be left: poll again at once).
    pub cut: bool,
}

/// Take frames with `step` (one frame a call; `false`: there was none) until there are
/// none or budget `b` is spent; `now` is the clock (ns).
pub fn ingress(b: &Budget, now: impl Fn() -> u64, mut step: impl FnMut() -> bool) -> Ingested {
    let t0 = now();
    let mut frames = 0;
    loop {
        if frames >= b.frames || now().saturating_sub(t0) >= b.ns {
            return Ingested { frames, cut: true };
        }
        if !step() {
            return Ingested { frames, cut: false };
        }
        frames += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_flood_is_taken_a_budget_at_a_time() {
        // M3: a device that always has a frame (a flood, or a backend that refills at
        // once) must not keep the round in ingress.
        let mut ring = 10_000u32;
        let r = ingress(
            &INGRESS,
            || 0,
            || {
                if ring == 0 {
                    return false;
                }
                ring -= 1;
                true
            },
        );
        assert!(
            r.frames <= INGRESS.frames,
            "one round took {} frames (budget {})",
            r.frames,
            INGRESS.frames
        );
        assert!(r.cut);
        // Slow frames: the time budget ends the round first.
        let t = Cell::new(0u64);
        let r = ingress(
            &INGRESS,
            || t.get(),
            || {
                t.set(t.get() + 4_000_000);
                true
            },
        );
        assert_eq!(
            r,
            Ingested {
                frames: 3,
                cut: true
            }
        );
        // A quiet device: all of it, not cut.
        let mut ring = 5;
        let r = ingress(
            &INGRESS,
            || 0,
            || {
                ring -= 1;
                ring >= 0
            },
        );
        assert_eq!(
            r,
            Ingested {
                frames: 5,
                cut: false
            }
        );
    }
}
