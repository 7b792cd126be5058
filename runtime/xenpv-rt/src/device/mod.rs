//! The device layer the runtime owns (feature `async`): one context holding memory, the
//! grant table and xenstore, so front-ends take it instead of three arguments, and the
//! runtime closes what is connected when the guest ends.
//!
//! The grant table is set up on first use with as many frames as Xen allows (up to
//! [`GRANT_FRAMES`]), so devices connected later find references without anyone sizing
//! it by hand.

mod disk;
pub use disk::{Disk, DiskError, DEFAULT_TIMEOUT_NS, MAX_OPEN_DISKS};
mod resume;
pub use resume::{ResumeKind, SuspendRefusal};
#[cfg(feature = "net")]
mod net;
#[cfg(feature = "net")]
pub use net::{
    Connected, Net, VifEvent, VifEvents, BACKEND_CHECK_NS, MAX_VIFS, REATTACH_EVERY_NS, VIF_EVENTS,
};

use crate::exec::{self, Spawner};
use crate::gnttab::{GntError, GrantTable};
use crate::xenstore::{Xenstore, XsError};
use crate::{Boot, PageLink};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::task::{Poll, Waker};
use embassy_futures::select::select;
use embassy_time::{Instant, Timer};

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
    /// The guest is ending: devices are being closed.
    Closing,
    /// The device is connected already.
    InUse,
    /// More devices than the runtime runs at once.
    TooMany,
    /// The command line's setting for the device is wrong (what is wrong).
    Config(alloc::string::String),
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
            DeviceError::Closing => f.write_str("the guest is ending: devices are closing"),
            DeviceError::InUse => f.write_str("the device is connected already"),
            DeviceError::TooMany => f.write_str("more devices than the runtime runs at once"),
            DeviceError::Config(e) => f.write_str(e),
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
    spawner: Spawner,
    /// The xenstore client's event channel (0 for dom0, which has none; a new domain
    /// binds another: [`Devices::set_store_port`]).
    store_port: Cell<crate::evtchn::Port>,
    /// Vifs handed out (their tasks keep them, through detaches, until the end).
    #[cfg_attr(not(feature = "net"), allow(dead_code))]
    vifs: RefCell<Vec<u32>>,
    /// The vifs handed out, for the metrics' addresses.
    #[cfg(feature = "net")]
    registered: RefCell<Vec<net::Registered>>,
    /// Disks handed out or connecting (`device/vbd` ids; their tasks close them at the
    /// end).
    disks: RefCell<Vec<u32>>,
    /// Device tasks still running.
    open: Cell<u32>,
    closing: Cell<bool>,
    closing_wakers: RefCell<Vec<Waker>>,
    /// The suspend epoch the devices are in (0 until the first new domain).
    epoch: Cell<u32>,
    /// When the current epoch's domain woke (Xen system time, ns).
    resumed_at: Cell<u64>,
    /// Between `begin_suspend` and `end_suspend`.
    suspending: Cell<bool>,
    /// Device handshakes (connects and closes) under way.
    handshakes: Cell<u32>,
    /// Tasks waiting for a new domain or the end of a suspend.
    resume_wakers: RefCell<Vec<Waker>>,
}

impl Devices {
    pub(crate) fn new(boot: &'static RefCell<&'static mut Boot>, spawner: Spawner) -> Devices {
        let store_port = boot
            .borrow_mut()
            .xenstore()
            .map_or(0, |xs| xs.link().port());
        Devices {
            boot,
            grants: RefCell::new(None),
            spawner,
            store_port: Cell::new(store_port),
            vifs: RefCell::new(Vec::new()),
            #[cfg(feature = "net")]
            registered: RefCell::new(Vec::new()),
            disks: RefCell::new(Vec::new()),
            open: Cell::new(0),
            closing: Cell::new(false),
            closing_wakers: RefCell::new(Vec::new()),
            epoch: Cell::new(0),
            resumed_at: Cell::new(0),
            suspending: Cell::new(false),
            handshakes: Cell::new(0),
            resume_wakers: RefCell::new(Vec::new()),
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

    /// Run `f` with the boot state and the grant table (`None` if no device set it up
    /// yet), if neither is borrowed elsewhere right now: the suspend sequence.
    #[cfg(feature = "suspend")]
    pub(crate) fn with_boot_and_grants<R>(
        &self,
        f: impl FnOnce(&mut Boot, Option<&mut GrantTable>) -> R,
    ) -> Result<R, DeviceError> {
        let mut boot = self.boot.try_borrow_mut().map_err(|_| DeviceError::Busy)?;
        let mut grants = self
            .grants
            .try_borrow_mut()
            .map_err(|_| DeviceError::Busy)?;
        Ok(f(&mut boot, grants.as_mut()))
    }

    /// Run `f` with the boot state, if it is not borrowed elsewhere right now.
    pub(crate) fn with_boot<R>(&self, f: impl FnOnce(&mut Boot) -> R) -> Result<R, DeviceError> {
        let mut boot = self.boot.try_borrow_mut().map_err(|_| DeviceError::Busy)?;
        Ok(f(&mut boot))
    }

    /// No vifs without the `net` feature: nothing for the metrics.
    #[cfg(not(feature = "net"))]
    pub(crate) fn vif_addresses(&self) -> Vec<xenpv_protocol::metrics::VifAddrs> {
        Vec::new()
    }

    /// Is the guest ending (devices closing)?
    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Resolves once the devices start closing.
    fn closing(&self) -> impl core::future::Future<Output = ()> + '_ {
        core::future::poll_fn(|cx| {
            if self.closing.get() {
                return Poll::Ready(());
            }
            let mut w = self.closing_wakers.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Wait for a xenstore event, Xen system time `until_ns`, or the devices' close.
    pub(crate) async fn wait_store(&self, until_ns: u64) {
        self.wait_store_since(self.store_mark(), until_ns).await
    }

    /// The xenstore watch events taken off the ring so far: a mark for
    /// [`Self::wait_store_since`], taken before a handshake's step.
    pub(crate) fn store_mark(&self) -> u64 {
        self.boot
            .try_borrow_mut()
            .ok()
            .and_then(|mut b| b.xenstore().map(|xs| xs.events_arrived()))
            .unwrap_or(0)
    }

    /// As [`Self::wait_store`], but not at all if a watch event arrived since `mark`:
    /// the step that took the mark read it itself (its requests took the event, and
    /// the port's signal with it), and what it watches may have changed since it read.
    pub(crate) async fn wait_store_since(&self, mark: u64, until_ns: u64) {
        if self.is_closing() || self.store_mark() != mark {
            return;
        }
        let timer = Timer::at(Instant::from_micros(until_ns / 1000));
        select(
            select(exec::event(self.store_port.get()), timer),
            self.closing(),
        )
        .await;
    }

    /// Tell every device task to close its device (the runtime does it when the guest
    /// ends); [`Self::all_closed`] says when they are done.
    pub(crate) fn begin_close(&self) {
        self.closing.set(true);
        for w in self.closing_wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Have all device tasks closed their devices?
    pub(crate) fn all_closed(&self) -> bool {
        self.open.get() == 0
    }
}
