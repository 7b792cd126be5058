//! netfront's step machines: a vif being brought up ([`PendingNetfront`]) and one being
//! closed ([`ClosingNetfront`]), each stepped a few xenstore requests at a time without
//! waiting for the backend (`crate::frontend::drive` steps them for a caller that
//! blocks until the end).

#[cfg(feature = "net")]
use super::{Frames, GSO_FRAME_MAX, RX_FRAME_MAX};
use super::{NetError, Netfront, Parts, CLOSE_NS, PAGES};
use crate::evtchn;
pub(super) use crate::frontend::drive;
use crate::frontend::Closed;
use crate::gnttab::{GntError, GrantTable, GrantedPage};
use crate::mm::Memory;
use crate::xenstore::Xenstore;
use crate::PageLink;
use core::fmt::Write as _;
use core::ops::ControlFlow::{Break, Continue};
use xenpv_protocol::netfront::{self as nf, Queue};
use xenpv_protocol::xenbus::{Backend, Closing, Connecting, Device, Step};

/// What a step of [`PendingNetfront`] says.
pub enum ConnectStep {
    /// Not yet: step it again at the given Xen system time, or when a xenstore watch
    /// event arrives, whichever comes first.
    Pending(PendingNetfront, u64),
    /// The vif is up.
    Connected(Netfront),
    /// The handshake failed: the vif must be closed (its backend may have mapped the
    /// rings) by stepping the [`ClosingNetfront`].
    Failed(NetError, ClosingNetfront),
}

/// A vif being brought up: its pages granted, the xenbus handshake in progress
/// ([`Connecting`]). Each [`step`](Self::step) makes a few xenstore requests and
/// never waits for the backend, so one whose backend never answers costs the others
/// nothing.
pub struct PendingNetfront {
    pub(super) index: u32,
    pub(super) dev: Device,
    pub(super) backend: Backend,
    pub(super) mac: [u8; 6],
    pub(super) gso: bool,
    pub(super) parts: Parts,
    pub(super) handshake: Connecting,
}

impl PendingNetfront {
    /// The vif's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Its backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// One step of the handshake.
    pub fn step(mut self, xs: &mut Xenstore<PageLink>) -> ConnectStep {
        let (p, refs) = (
            self.parts.port,
            [self.parts.tx_ring.gref(), self.parts.rx_ring.gref()],
        );
        let r = self.handshake.step(xs, &mut |t| {
            let mut v: heapless::String<12> = heapless::String::new();
            for (key, n) in [
                ("tx-ring-ref", refs[0]),
                ("rx-ring-ref", refs[1]),
                ("event-channel", p),
            ] {
                v.clear();
                let _ = write!(v, "{n}");
                t.write(key, v.as_bytes())?;
            }
            for (key, value) in nf::FEATURES {
                t.write(key, value)?;
            }
            Ok(())
        });
        match r {
            Step::Pending { wake_at } => ConnectStep::Pending(self, wake_at),
            Step::Done => ConnectStep::Connected(self.finish()),
            Step::Failed(e) => ConnectStep::Failed(NetError::Xenbus(e), self.abort()),
        }
    }

    /// Give up: close what was set up (the backend may have mapped the rings).
    pub fn abort(self) -> ClosingNetfront {
        ClosingNetfront::new(self.index, &self.dev, &self.backend, self.parts)
    }

    /// The connected vif.
    fn finish(self) -> Netfront {
        let PendingNetfront {
            index,
            dev,
            backend,
            mac,
            gso,
            parts,
            ..
        } = self;
        let Parts {
            port,
            mut tx_ring,
            mut rx_ring,
            bufs,
        } = parts;
        let queue = Queue::new(&mut tx_ring, &mut rx_ring);
        let mut nic = Netfront {
            index,
            dev,
            backend,
            mac,
            port,
            tx_ring,
            rx_ring,
            bufs,
            queue,
            broken: None,
            dropped: 0,
            gso,
            bad_checksums: 0,
            #[cfg(feature = "net")]
            frames: Frames {
                rx: alloc::vec![0; RX_FRAME_MAX].into_boxed_slice(),
                tx: alloc::vec![0; GSO_FRAME_MAX].into_boxed_slice(),
            },
        };
        nic.poll();
        nic
    }
}

/// What a step of [`ClosingNetfront`] says.
pub enum CloseStep {
    /// Not yet: step it again at the given Xen system time, or when a xenstore watch
    /// event arrives, whichever comes first.
    Pending(ClosingNetfront, u64),
    /// Closed: what it left behind.
    Closed(Closed),
}

/// A vif being closed: the xenbus handshake ([`Closing`]) a step at a time,
/// then its grants ended and pages freed, also a step at a time (a backend that
/// acknowledges the close but keeps its mappings for a while holds no loop up).
pub struct ClosingNetfront {
    index: u32,
    phase: ClosePhase,
}

enum ClosePhase {
    /// The xenbus handshake, the parts still whole.
    Handshake(Closing, Parts),
    /// Ending the grants; whether the backend failed to acknowledge the close.
    Releasing(Releasing, bool),
}

/// How long a close waits between tries at ending the grants a backend still maps.
const RELEASE_RETRY_NS: u64 = 10_000_000;

impl ClosingNetfront {
    /// The vif's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    pub(super) fn new(
        index: u32,
        dev: &Device,
        backend: &Backend,
        parts: Parts,
    ) -> ClosingNetfront {
        let deadline = crate::time::now_ns() + CLOSE_NS;
        ClosingNetfront {
            index,
            phase: ClosePhase::Handshake(Closing::new(dev, backend, deadline), parts),
        }
    }

    /// One step: of the handshake, then (once it is over, or failed: the backend never
    /// acknowledged) one try at ending every grant left, freeing the pages let go. Grants
    /// still mapped [`CLOSE_NS`] after the handshake go to the grant table's deferred
    /// list.
    pub fn step(
        self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> CloseStep {
        let index = self.index;
        let (mut releasing, unacknowledged) = match self.phase {
            ClosePhase::Handshake(mut handshake, parts) => {
                let unacknowledged = match handshake.step(xs) {
                    Step::Pending { wake_at } => {
                        let phase = ClosePhase::Handshake(handshake, parts);
                        return CloseStep::Pending(ClosingNetfront { index, phase }, wake_at);
                    }
                    Step::Done => false,
                    Step::Failed(_) => true,
                };
                (Releasing::new(parts), unacknowledged)
            }
            ClosePhase::Releasing(r, unacknowledged) => (r, unacknowledged),
        };
        match releasing.step(mem, gt) {
            Some(pages_kept) => CloseStep::Closed(Closed {
                pages_kept,
                unacknowledged,
            }),
            None => {
                let phase = ClosePhase::Releasing(releasing, unacknowledged);
                let wake_at = crate::time::now_ns() + RELEASE_RETRY_NS;
                CloseStep::Pending(ClosingNetfront { index, phase }, wake_at)
            }
        }
    }

    /// Step it to the end, waiting for the backend between steps.
    pub fn finish(
        self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> Closed {
        drive(xs, self, |c, xs| match c.step(mem, gt, xs) {
            CloseStep::Pending(next, wake_at) => Continue((next, wake_at)),
            CloseStep::Closed(closed) => Break(closed),
        })
    }
}

/// A closed vif's granted pages, their grants being ended ([`ClosingNetfront`]).
struct Releasing {
    left: heapless::Vec<GrantedPage, PAGES>,
    deadline: u64,
}

impl Releasing {
    /// Close the event channel; every page is left to end (within [`CLOSE_NS`]).
    fn new(parts: Parts) -> Releasing {
        let _ = evtchn::close(parts.port);
        let Parts {
            tx_ring,
            rx_ring,
            bufs,
            ..
        } = parts;
        let mut left: heapless::Vec<GrantedPage, PAGES> = heapless::Vec::new();
        // Cannot fail: PAGES of them.
        let _ = left.push(tx_ring);
        let _ = left.push(rx_ring);
        for g in bufs.rx.into_iter().chain(bufs.tx) {
            let _ = left.push(g);
        }
        Releasing {
            left,
            deadline: crate::time::now_ns() + CLOSE_NS,
        }
    }

    /// One try at ending every grant left, freeing the pages let go: `Some(pages)` once
    /// done, the pages still granted at the deadline handed to the grant table's
    /// deferred list (retried later; the backend may still write them).
    fn step(&mut self, mem: &mut Memory, gt: &mut GrantTable) -> Option<usize> {
        let mut still: heapless::Vec<GrantedPage, PAGES> = heapless::Vec::new();
        for g in core::mem::take(&mut self.left) {
            match gt.end(g) {
                Ok(p) => p.free(mem),
                Err((g, GntError::InUse { .. })) => {
                    let _ = still.push(g);
                }
                // Not ours to end (cannot happen for refs we granted): deferred.
                Err((g, _)) => gt.defer(g),
            }
        }
        if still.is_empty() {
            return Some(0);
        }
        if crate::time::now_ns() >= self.deadline {
            let n = still.len();
            still.into_iter().for_each(|g| gt.defer(g));
            return Some(n);
        }
        self.left = still;
        None
    }
}
