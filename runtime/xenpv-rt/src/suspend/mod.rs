//! Suspend, for `xl save`, `xl restore` and `xl migrate` (feature `suspend`), and the
//! epoch every handle that does not survive a new domain is stamped with.
//!
//! The toolstack asks through `control/shutdown = "suspend"`; the control task
//! acknowledges and runs the sequence (`suspend::run`, feature `suspend`): the devices are
//! told first ([`crate::device::Devices`]), then, synchronously and without an
//! `.await`, the window: the guest's clock frozen, Xen's frames unmapped (grant table,
//! shared_info), the store and console frames written as PFNs into start_info, and
//! `SCHEDOP_shutdown(SHUTDOWN_suspend)`. It returns in the domain that goes on:
//! - the same domain ([`ResumeKind::Cancelled`]: `xl save -c`, a failed save or
//!   migration): everything is where it was; the frames are mapped again;
//! - a new domain ([`ResumeKind::New`]: a restore, a migration's receiver): new
//!   shared_info, event channels, grant table, xenstored and console ports, domid, host
//!   clock. The epoch ([`epoch`]) moves on, so that a handle from before (a grant
//!   reference) is an error, not a silent misuse; the clock goes on from where it
//!   stopped; xenstore watches are set again; the devices re-handshake.
//!
//! Without the feature, `suspend` is refused as before (left unacknowledged, said in a
//! line): the toolstack gives up and the guest goes on.

use core::sync::atomic::{AtomicU32, Ordering};

#[cfg(feature = "suspend")]
mod run;
#[cfg(feature = "suspend")]
pub(crate) use run::run;

/// The epoch: how many times the guest resumed in a new domain (0 at boot).
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// How many times this guest resumed in a new domain (0 at boot). Handles that do not
/// survive a new domain (grant references, event channels) are stamped with it.
pub fn epoch() -> u32 {
    EPOCH.load(Ordering::Acquire)
}

/// A new domain: the epoch moves on (returned).
#[cfg(feature = "suspend")]
fn next_epoch() -> u32 {
    EPOCH.fetch_add(1, Ordering::AcqRel).wrapping_add(1)
}

/// How a suspend ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeKind {
    /// In a new domain (restored or migrated): every port, grant and watch is new.
    New,
    /// In the same domain (a checkpoint, or the save failed or was cancelled).
    Cancelled,
}

impl ResumeKind {
    /// `new` or `cancelled`, as the report line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeKind::New => "new",
            ResumeKind::Cancelled => "cancelled",
        }
    }
}

/// A suspend that returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// Where it went on.
    pub kind: ResumeKind,
    /// The epoch after it ([`epoch`]).
    pub epoch: u32,
    /// What the suspend hypercall returned (0 new domain, 1 cancelled, < 0 refused).
    pub rc: i64,
    /// Milliseconds of guest time from entering the window to the end of the resume
    /// (a new domain does not count the time the guest was saved).
    pub ms: u64,
    /// Guest time ([`crate::time::now_ns`]) when the window was entered.
    pub mono_before: u64,
    /// Guest time at the end of the resume (never below `mono_before`).
    pub mono_after: u64,
}
