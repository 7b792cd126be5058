//! What every front-end driver (netfront, blkfront) shares: its deadlines, what closing
//! left behind, and pages a backend may still write.

use crate::xenstore::Xenstore;
use crate::PageLink;
use xenpv_protocol::xenbus::{self, Backend, Device};

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

/// The xenbus side of closing: Closing, the backend's answer (at most [`CLOSE_NS`]),
/// Closed. Whether the backend failed to acknowledge.
pub(crate) fn close_handshake(xs: &mut Xenstore<PageLink>, dev: &Device, be: &Backend) -> bool {
    xenbus::close(xs, dev, be, crate::time::now_ns() + CLOSE_NS).is_err()
}
