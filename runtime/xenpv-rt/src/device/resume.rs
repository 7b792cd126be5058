//! The device layer across a suspend: the gate the suspend sequence asks before its
//! window ([`Devices::begin_suspend`]) and opens after it ([`Devices::end_suspend`]),
//! and the new-domain signal ([`Devices::resumed_new`]) that the vif, disk, metrics and
//! balloon tasks wait for ([`Devices::new_domain`]) to let go of what belonged to the old
//! domain and connect again.
//!
//! On a cancelled suspend (the same domain: a failed save, `xl save -c`) nothing
//! changes: rings, grants and ports are intact, and the tasks carry on where they were.
//!
//! The order on a new domain is the suspend sequence's: the grant table, event
//! channels, xenstore and the console come back first, then [`Devices::resumed_new`]
//! wakes the device tasks, so that they find a working grant table and xenstore.

use super::Devices;
use core::fmt;
use core::task::Poll;

pub use crate::suspend::ResumeKind;

/// Why the devices refuse a suspend now (the suspend is cancelled and reported with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendRefusal {
    /// The guest is ending: its devices are closing.
    Closing,
    /// A device's handshake with its backend (a connect or a close) is half done: its
    /// xenstore keys and the backend's state are between two steps.
    Handshake {
        /// How many handshakes are under way.
        under_way: u32,
    },
    /// A suspend is under way already.
    Suspending,
}

impl fmt::Display for SuspendRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuspendRefusal::Closing => f.write_str("devices-closing"),
            SuspendRefusal::Handshake { under_way } => {
                write!(f, "device-handshake under_way={under_way} limit=0")
            }
            SuspendRefusal::Suspending => f.write_str("suspend-under-way"),
        }
    }
}

/// A device handshake under way, counted while it lives (a suspend is refused
/// meanwhile).
pub(crate) struct Handshake<'a>(&'a Devices);

impl Drop for Handshake<'_> {
    fn drop(&mut self) {
        self.0
            .handshakes
            .set(self.0.handshakes.get().saturating_sub(1));
    }
}

impl Devices {
    /// Before the suspend window: may the guest suspend now? Refused while the devices
    /// close (the guest is ending) or a handshake is half done. Once accepted, no device
    /// task starts a connect or a close, and none asks xenstore about its backend, until
    /// [`Self::end_suspend`]; the balloon takes no new batch.
    pub fn begin_suspend(&self) -> Result<(), SuspendRefusal> {
        if self.is_closing() {
            return Err(SuspendRefusal::Closing);
        }
        if self.suspending.get() {
            return Err(SuspendRefusal::Suspending);
        }
        let under_way = self.handshakes.get();
        if under_way > 0 {
            return Err(SuspendRefusal::Handshake { under_way });
        }
        self.suspending.set(true);
        crate::balloon::gate(true);
        Ok(())
    }

    /// After either resume: the device tasks may connect and close again. On a new
    /// domain, [`Self::resumed_new`] came first.
    pub fn end_suspend(&self, kind: ResumeKind) {
        self.suspending.set(false);
        crate::balloon::gate(false);
        // Cancelled (or refused after the gate): nothing to redo, rings and grants are
        // intact. New: the tasks woken by `resumed_new` may start their handshakes now.
        let _ = kind;
        self.wake_resume();
    }

    /// The guest runs in a new domain of suspend epoch `epoch` (grant table, event
    /// channels, xenstore and console are back): wake every device task to let go of
    /// the old domain's backends and connect to the new ones, the metrics to publish
    /// everything again, the balloon to check itself.
    pub fn resumed_new(&self, epoch: u32) {
        self.epoch.set(epoch);
        self.resumed_at.set(crate::time::now_ns());
        crate::balloon::resumed_new(epoch);
        self.wake_resume();
    }

    /// The suspend epoch the devices are in: 0 until the first new domain, then
    /// [`Self::resumed_new`]'s.
    pub fn epoch(&self) -> u32 {
        self.epoch.get()
    }

    /// Resolves with the new epoch once the devices are in another epoch than `seen`
    /// (the guest moved to a new domain since the caller looked).
    pub async fn new_domain(&self, seen: u32) -> u32 {
        core::future::poll_fn(|cx| {
            let now = self.epoch.get();
            if now != seen {
                return Poll::Ready(now);
            }
            let mut w = self.resume_wakers.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Resolves once no suspend is under way (at once if none is).
    pub(crate) async fn settled(&self) {
        core::future::poll_fn(|cx| {
            if !self.suspending.get() {
                return Poll::Ready(());
            }
            let mut w = self.resume_wakers.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Is a suspend under way (between [`Self::begin_suspend`] and
    /// [`Self::end_suspend`])?
    pub fn is_suspending(&self) -> bool {
        self.suspending.get()
    }

    /// The xenstore client's event channel changed (a new domain binds a new one):
    /// device tasks wait on this one from now on.
    pub fn set_store_port(&self, port: crate::evtchn::Port) {
        self.store_port.set(port);
        self.wake_resume();
    }

    /// When the guest woke in the current epoch's domain (Xen system time, ns; 0 before
    /// the first new domain): what a device's `ms` after a new domain counts from.
    pub(crate) fn resumed_at(&self) -> u64 {
        self.resumed_at.get()
    }

    /// Count a handshake under way until the guard drops.
    pub(crate) fn handshake(&self) -> Handshake<'_> {
        self.handshakes.set(self.handshakes.get() + 1);
        Handshake(self)
    }

    fn wake_resume(&self) {
        for w in self.resume_wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}
