//! What every front-end driver (netfront, blkfront) shares: its deadlines, what closing
//! left behind, and pages a backend may still write.

use crate::gnttab::{GntError, GrantTable, GrantedPage, ReservedRef};
use crate::mm::Memory;
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

/// How long after the handshake a close still tries to end the grants, however little of
/// [`CLOSE_NS`] the handshake left: a backend that acknowledged has unmapped them by then.
const RELEASE_GRACE_NS: u64 = 1_000_000_000;

/// How long a close waits between tries at ending the grants a backend still maps.
pub(crate) const RELEASE_RETRY_NS: u64 = 10_000_000;

/// A granted page a closing device's backend may still map.
pub(crate) trait Held: Sized {
    /// End its grant and free its page: `Ok(true)`; `Ok(false)` if it was handed to the
    /// grant table's deferred list (not ours to end now); `Err(self)` while the backend
    /// still maps it.
    fn try_end(self, mem: &mut Memory, gt: &mut GrantTable) -> Result<bool, Self>;
    /// Hand it to the grant table's deferred list (ended and freed once the backend
    /// lets go: never reused before).
    fn defer(self, gt: &mut GrantTable);
}

impl Held for GrantedPage {
    fn try_end(self, mem: &mut Memory, gt: &mut GrantTable) -> Result<bool, Self> {
        match gt.end(self) {
            Ok(page) => {
                page.free(mem);
                Ok(true)
            }
            Err((g, GntError::InUse { .. })) => Err(g),
            Err((g, _)) => {
                gt.defer(g);
                Ok(false)
            }
        }
    }
    fn defer(self, gt: &mut GrantTable) {
        gt.defer(self)
    }
}

impl Held for ReservedRef {
    fn try_end(self, mem: &mut Memory, gt: &mut GrantTable) -> Result<bool, Self> {
        match gt.release(self) {
            Ok(page) => {
                page.free(mem);
                Ok(true)
            }
            Err((r, GntError::InUse { .. })) => Err(r),
            Err((r, _)) => {
                drop(r);
                Ok(false)
            }
        }
    }
    fn defer(self, _: &mut GrantTable) {
        // Dropping a reserved reference hands it and its page to the deferred list.
        drop(self)
    }
}

/// When a close that must end by `close_deadline` stops trying to end grants: then, or
/// [`RELEASE_GRACE_NS`] from now if that is later (one deadline for the whole close,
/// handshake and release: a stalled backend costs [`CLOSE_NS`] once).
pub(crate) fn release_deadline(close_deadline: u64) -> u64 {
    close_deadline.max(crate::time::now_ns().saturating_add(RELEASE_GRACE_NS))
}

/// End `p`'s grant and free its page, yielding the CPU while the backend still maps it,
/// until `deadline` (from [`release_deadline`]); then it goes to the grant table's
/// deferred list. `true` if it was freed. For a caller that blocks (blkfront's close,
/// whose pool is too large to carry through a stepped state).
pub(crate) fn end_by<T: Held>(p: T, mem: &mut Memory, gt: &mut GrantTable, deadline: u64) -> bool {
    let mut p = p;
    loop {
        match p.try_end(mem, gt) {
            Ok(freed) => return freed,
            Err(back) if crate::time::now_ns() < deadline => {
                p = back;
                crate::hypercall::yield_now();
            }
            Err(back) => {
                back.defer(gt);
                return false;
            }
        }
    }
}

/// The release of a closed device's granted pages, a try at a time (never waiting in
/// between: the caller steps it again after [`RELEASE_RETRY_NS`]), over a list the
/// caller keeps (ended in place, not copied): netfront's close.
pub(crate) struct Releasing {
    deadline: u64,
    /// Pages handed to the deferred list so far.
    kept: usize,
}

impl Releasing {
    /// Pages to end by the close's own deadline `close_deadline` ([`release_deadline`]).
    pub(crate) fn new(close_deadline: u64) -> Releasing {
        Releasing {
            deadline: release_deadline(close_deadline),
            kept: 0,
        }
    }

    /// One try at ending every grant in `left`, freeing the pages let go; `true` once
    /// `left` is empty: the pages still granted at the deadline are handed to the grant
    /// table's deferred list (retried later; the backend may still write them).
    pub(crate) fn step<T: Held, const N: usize>(
        &mut self,
        left: &mut heapless::Vec<T, N>,
        mem: &mut Memory,
        gt: &mut GrantTable,
    ) -> bool {
        // From the end down: everything past `i` has been tried, and a page put back
        // goes to the end, so each page is tried once.
        for i in (0..left.len()).rev() {
            let p = left.swap_remove(i);
            match p.try_end(mem, gt) {
                Ok(true) => {}
                Ok(false) => self.kept += 1,
                // Cannot fail: it came out of `left`.
                Err(p) => {
                    let _ = left.push(p);
                }
            }
        }
        if !left.is_empty() && crate::time::now_ns() >= self.deadline {
            self.kept += left.len();
            while let Some(p) = left.pop() {
                p.defer(gt);
            }
        }
        left.is_empty()
    }

    /// Pages handed to the deferred list.
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }
}
