//! blkfront's step machines, as netfront has them: a disk being brought up
//! ([`PendingBlkfront`]) and one being closed ([`ClosingBlkfront`]), each stepped a few
//! xenstore requests at a time without waiting for the backend
//! (`crate::frontend::drive` steps them for a caller that blocks until the end).

use super::{release_pool, BlkError, Blkfront, Pooled, MAX_POOL};
use crate::evtchn::{self, Port};
use crate::frontend::{drive, end_by, release_deadline, Closed, CLOSE_NS};
use crate::gnttab::{GrantTable, GrantedPage};
use crate::mm::Memory;
use crate::xenstore::Xenstore;
use crate::PageLink;
use core::fmt::Write as _;
use core::ops::ControlFlow::{Break, Continue};
use xenpv_protocol::blkfront::IDS;
use xenpv_protocol::xenbus::{Backend, Closing, Connecting, Device, Step};

/// What a disk holds of the backend's: the ring, the event channel, the data pages.
pub(super) struct Parts {
    pub(super) port: Port,
    pub(super) ring: GrantedPage,
    pub(super) data: heapless::Vec<Pooled, MAX_POOL>,
    pub(super) indirect: heapless::Vec<Pooled, IDS>,
}

/// What a step of [`PendingBlkfront`] says.
pub enum ConnectStep {
    /// Not yet: step it again at the given Xen system time, or when a xenstore watch
    /// event arrives, whichever comes first.
    Pending(PendingBlkfront, u64),
    /// The disk is up.
    Connected(Blkfront),
    /// The bring-up failed: the disk must be closed (its backend may have mapped the
    /// ring) by stepping the [`ClosingBlkfront`].
    Failed(BlkError, ClosingBlkfront),
}

/// A disk being brought up: its ring granted, the xenbus handshake in progress
/// ([`Connecting`], blkback's flavour). Each [`step`](Self::step) makes a few xenstore
/// requests and never waits for the backend; the last one reads the backend's offer and
/// sets up the data pages.
pub struct PendingBlkfront {
    pub(super) id: u32,
    pub(super) dev: Device,
    pub(super) backend: Backend,
    pub(super) handle: u16,
    pub(super) port: Port,
    pub(super) ring: GrantedPage,
    pub(super) handshake: Connecting,
}

impl PendingBlkfront {
    /// The disk's id (`device/vbd/<id>`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// One step of the handshake (the last one also sets up the data pages).
    pub fn step(
        mut self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> ConnectStep {
        let (ring_ref, port) = (self.ring.gref(), self.port);
        let r = self.handshake.step(xs, &mut |t| {
            let mut v: heapless::String<12> = heapless::String::new();
            let _ = write!(v, "{ring_ref}");
            t.write("ring-ref", v.as_bytes())?;
            v.clear();
            let _ = write!(v, "{port}");
            t.write("event-channel", v.as_bytes())?;
            t.write("protocol", b"x86_64-abi")
        });
        match r {
            Step::Pending { wake_at } => ConnectStep::Pending(self, wake_at),
            Step::Done => match Blkfront::finish(self, mem, gt, xs) {
                Ok(disk) => ConnectStep::Connected(disk),
                Err((e, closing)) => ConnectStep::Failed(e, closing),
            },
            Step::Failed(e) => ConnectStep::Failed(BlkError::Xenbus(e), self.abort()),
        }
    }

    /// Give up: close what was set up (the backend may have mapped the ring).
    pub fn abort(self) -> ClosingBlkfront {
        let parts = Parts {
            port: self.port,
            ring: self.ring,
            data: heapless::Vec::new(),
            indirect: heapless::Vec::new(),
        };
        ClosingBlkfront::new(&self.dev, &self.backend, parts)
    }
}

/// What a step of [`ClosingBlkfront`] says.
pub enum CloseStep {
    /// Not yet: step it again at the given Xen system time, or when a xenstore watch
    /// event arrives, whichever comes first.
    Pending(ClosingBlkfront, u64),
    /// Closed: what it left behind.
    Closed(Closed),
}

/// A disk being closed: the xenbus handshake ([`Closing`]) a step at a time, then, in
/// the step that sees it over (or failed: the backend never acknowledged), its grants
/// ended and pages freed. A backend that has acknowledged the close has unmapped them,
/// so that last step is quick; pages still granted are retried there until the close's
/// one deadline, [`CLOSE_NS`] from its start (a second after the handshake at least),
/// then left to the grant table's deferred list. (Not stepped like netfront's release:
/// the pool is tens of KiB, and every state carried through the steps costs stack.)
pub struct ClosingBlkfront {
    handshake: Closing,
    parts: Parts,
    deadline: u64,
}

impl ClosingBlkfront {
    pub(super) fn new(dev: &Device, backend: &Backend, parts: Parts) -> ClosingBlkfront {
        let deadline = crate::time::now_ns() + CLOSE_NS;
        ClosingBlkfront {
            handshake: Closing::new(dev, backend, deadline),
            parts,
            deadline,
        }
    }

    /// One step (see the type).
    pub fn step(
        mut self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> CloseStep {
        let unacknowledged = match self.handshake.step(xs) {
            Step::Pending { wake_at } => return CloseStep::Pending(self, wake_at),
            Step::Done => false,
            Step::Failed(_) => true,
        };
        let Parts {
            port,
            ring,
            data,
            indirect,
        } = self.parts;
        let _ = evtchn::close(port);
        let deadline = release_deadline(self.deadline);
        let mut kept = release_pool(mem, gt, data, indirect, deadline);
        if !end_by(ring, mem, gt, deadline) {
            kept += 1;
        }
        CloseStep::Closed(Closed {
            pages_kept: kept,
            unacknowledged,
        })
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
