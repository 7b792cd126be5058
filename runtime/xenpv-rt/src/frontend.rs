//! What every front-end driver (netfront, blkfront) shares: its deadlines, what closing
//! left behind, and pages a backend may still write.

use crate::xenstore::Xenstore;
use crate::PageLink;
use core::ops::ControlFlow::{self, Break, Continue};

/// How long the handshake may take (the backend waits for its hotplug script first:
/// seconds under emulation).
pub const CONNECT_NS: u64 = 60_000_000_000;
/// How long closing may take.
pub const CLOSE_NS: u64 = 20_000_000_000;

/// What closing a device left behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// Pages whose grant the backend still held at the deadline: never freed while it
    /// may write them; handed to the grant table's deferred list, which ends their
    /// grants and frees them once the backend lets go (`GrantTable::retry_deferred`).
    pub pages_kept: usize,
    /// The handshake's close step failed (the backend never acknowledged): the grants
    /// were still ended where the backend allowed it.
    pub unacknowledged: bool,
}

/// Step `s` to its end (`step` breaks with the result, or continues with the next state
/// and when to step it again), waiting between steps for a xenstore watch event or that
/// time: a blocking caller's loop. Events stay queued for their owner.
pub(crate) fn drive<S, T>(
    xs: &mut Xenstore<PageLink>,
    mut s: S,
    mut step: impl FnMut(S, &mut Xenstore<PageLink>) -> ControlFlow<T, (S, u64)>,
) -> T {
    loop {
        let mark = xs.events_arrived();
        match step(s, xs) {
            Continue((next, wake_at)) => {
                s = next;
                if wake_at > crate::time::now_ns() {
                    // A failed wait (a corrupt ring) shows at the next step's requests.
                    let _ = xs.wait_event(mark, wake_at);
                }
            }
            Break(done) => return done,
        }
    }
}
