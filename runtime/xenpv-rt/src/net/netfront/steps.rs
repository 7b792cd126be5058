//! netfront's step machines: a vif being brought up ([`PendingNetfront`]) and one being
//! closed ([`ClosingNetfront`]), each stepped a few xenstore requests at a time without
//! waiting for the backend (`crate::frontend::drive` steps them for a caller that
//! blocks until the end).

#[cfg(feature = "net")]
use super::{Frames, GSO_FRAME_MAX, RX_FRAME_MAX};
use super::{NetError, Netfront, Parts, CLOSE_NS, PAGES};
use crate::evtchn;
pub(super) use crate::frontend::drive;
use crate::frontend::{Closed, Releasing, RELEASE_RETRY_NS};
use crate::gnttab::{GrantTable, GrantedPage};
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
            tx_in_place: true,
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
    /// The whole close's deadline (handshake and release).
    deadline: u64,
    phase: ClosePhase,
}

enum ClosePhase {
    /// The xenbus handshake, the parts still whole.
    Handshake(Closing, Parts),
    /// Ending the grants; whether the backend failed to acknowledge the close.
    Releasing(Releasing, heapless::Vec<GrantedPage, PAGES>, bool),
}

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
            deadline,
            phase: ClosePhase::Handshake(Closing::new(dev, backend, deadline), parts),
        }
    }

    /// One step: of the handshake, then (once it is over, or failed: the backend never
    /// acknowledged) one try at ending every grant left, freeing the pages let go. Grants
    /// still mapped [`CLOSE_NS`] after the close began (or a second after the handshake,
    /// if later) go to the grant table's deferred list.
    pub fn step(
        self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> CloseStep {
        let (index, deadline) = (self.index, self.deadline);
        let (mut releasing, mut left, unacknowledged) = match self.phase {
            ClosePhase::Handshake(mut handshake, parts) => {
                let unacknowledged = match handshake.step(xs) {
                    Step::Pending { wake_at } => {
                        let phase = ClosePhase::Handshake(handshake, parts);
                        let c = ClosingNetfront {
                            index,
                            deadline,
                            phase,
                        };
                        return CloseStep::Pending(c, wake_at);
                    }
                    Step::Done => false,
                    Step::Failed(_) => true,
                };
                (Releasing::new(deadline), release(parts), unacknowledged)
            }
            ClosePhase::Releasing(r, left, unacknowledged) => (r, left, unacknowledged),
        };
        if releasing.step(&mut left, mem, gt) {
            CloseStep::Closed(Closed {
                pages_kept: releasing.kept(),
                unacknowledged,
            })
        } else {
            let phase = ClosePhase::Releasing(releasing, left, unacknowledged);
            let wake_at = crate::time::now_ns() + RELEASE_RETRY_NS;
            let c = ClosingNetfront {
                index,
                deadline,
                phase,
            };
            CloseStep::Pending(c, wake_at)
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

/// Close the event channel of a closed vif: its granted pages, to end.
fn release(parts: Parts) -> heapless::Vec<GrantedPage, PAGES> {
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
    left
}
