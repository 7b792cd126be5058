//! The console a domU has: a ring page (`xencons_interface`) and an event channel from
//! start_info, served by xenconsoled in dom0. Release builds of Xen drop a domU's
//! `console_io` writes, so this ring is the only way out.
//!
//! The runtime attaches the ring first thing at start of day (before any step that can
//! fail); anything printed before that waits in a 4 KiB buffer and goes out first, and if
//! that buffer overflows the count of lost bytes is kept ([`lost_bytes`]) and said on the
//! ring. A write waits for room as long as the backend takes bytes; a backend that takes
//! nothing for [`STALL_TIMEOUT_NS`] makes the write fail, and later writes fail fast
//! until it moves again (`xenpv_protocol::console_out`): counted, never reordered.
//!
//! The panic and fault handlers never wait for the ring's lock (`failing`): the code
//! that failed may hold it, in the middle of a write, and would never let it go.

use crate::ring::DuplexError;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use xenpv_protocol::console_out::ConsoleOut;

/// How long a console write waits for a backend that takes nothing.
pub const STALL_TIMEOUT_NS: u64 = 2_000_000_000;

static EXPECT_RING: AtomicBool = AtomicBool::new(false);
static LOST: AtomicUsize = AtomicUsize::new(0);
static EARLY: spin::Mutex<heapless::Vec<u8, 4096>> = spin::Mutex::new(heapless::Vec::new());

type Live = ConsoleOut<crate::ring_page::PageLink>;

static RING: spin::Mutex<Option<Live>> = spin::Mutex::new(None);

/// Set by the panic and fault handlers ([`failing`]): writes stop waiting for the ring's
/// lock, which the code that failed may hold.
static FAILING: AtomicBool = AtomicBool::new(false);
/// The failing path has taken the ring's lock from its holder once; a second time (a
/// failure while the report itself was being written) its message is dropped instead.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The guest is failing (a panic or a fault is being reported, then it exits): from now
/// on a write never waits for the ring's lock. If the lock is held, the holder is code
/// that will never run again; the lock is taken from it, once.
pub(crate) fn failing() {
    FAILING.store(true, Ordering::SeqCst);
}

/// The console's event channel changed (a resume in a new domain): signal it from now
/// on, and once now (output written meanwhile was not signalled on a live port).
#[cfg(feature = "suspend")]
pub(crate) fn set_port(port: crate::evtchn::Port) {
    if let Some(r) = RING.lock().as_mut() {
        r.link().set_port(port);
        let _ = crate::evtchn::send(port);
    }
}

/// The ring, locked: waiting for the lock normally; on the failing path without waiting
/// (`None`: drop the message).
fn lock_ring() -> Option<spin::MutexGuard<'static, Option<Live>>> {
    if !FAILING.load(Ordering::SeqCst) {
        return Some(RING.lock());
    }
    if let Some(r) = RING.try_lock() {
        return Some(r);
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: there is one vCPU and nothing preempts: the lock is held by a frame below
    // the panic or fault handler that called `failing`, and those never return (no
    // unwinding, they end in `exit::deliver`), so its guard is never used or dropped
    // again. The ring's indices are published with each write, so what it half wrote is
    // overwritten, not corrupting.
    unsafe { RING.force_unlock() };
    RING.try_lock()
}

/// Console bytes that could not be delivered (early-buffer overflow, stalled backend).
pub fn lost_bytes() -> usize {
    let ring = RING
        .try_lock()
        .map_or(0, |r| r.as_ref().map_or(0, |c| c.lost()));
    LOST.load(Ordering::Relaxed) + ring as usize
}

/// This guest's console is a ring: hold output until [`attach`] (the runtime says so
/// first thing for a domU, before anything is printed).
pub fn expect_ring() {
    EXPECT_RING.store(true, Ordering::Relaxed);
}

/// Is the ring console attached?
pub fn attached() -> bool {
    RING.lock().is_some()
}

/// Start using the ring; the early buffer goes out first. The runtime calls this at start
/// of day for a domU, with start_info's console page and event channel; calling it again
/// replaces the ring.
pub fn attach(link: crate::ring_page::PageLink) {
    let mut r = RING.lock();
    *r = Some(ConsoleOut::new(link, STALL_TIMEOUT_NS));
    let early = core::mem::take(&mut *EARLY.lock());
    if let Some(d) = r.as_mut() {
        // Losses are counted by send and said just below.
        let _ = send(d, &early);
        let lost = LOST.load(Ordering::Relaxed);
        if lost > 0 {
            let mut s: heapless::String<96> = heapless::String::new();
            let _ = core::fmt::write(
                &mut s,
                format_args!("xenpv-rt: {lost} console bytes lost before the ring was up\n"),
            );
            let _ = send(d, s.as_bytes());
        }
    }
}

/// Write to the ring; bytes that did not go out are counted (by the ring's policy).
fn send(d: &mut Live, bytes: &[u8]) -> Result<(), DuplexError> {
    d.send(bytes)
}

/// Route `bytes` to the ring if this guest has one (`None`: use console_io). Before the
/// ring is attached they wait in the early buffer; what does not fit there is lost and
/// reported as `Stalled`.
pub(crate) fn write(bytes: &[u8]) -> Option<Result<(), DuplexError>> {
    if !EXPECT_RING.load(Ordering::Relaxed) {
        return None;
    }
    let dropped = DuplexError::Stalled {
        written: 0,
        len: bytes.len(),
    };
    let Some(mut r) = lock_ring() else {
        return Some(Err(dropped));
    };
    Some(match r.as_mut() {
        Some(d) => send(d, bytes),
        None => {
            // On the failing path the early buffer's lock is not waited for either.
            let early = match FAILING.load(Ordering::SeqCst) {
                false => Some(EARLY.lock()),
                true => EARLY.try_lock(),
            };
            let Some(mut early) = early else {
                return Some(Err(dropped));
            };
            let room = early.capacity() - early.len();
            let n = room.min(bytes.len());
            let _ = early.extend_from_slice(&bytes[..n]);
            LOST.fetch_add(bytes.len() - n, Ordering::Relaxed);
            if n == bytes.len() {
                Ok(())
            } else {
                Err(DuplexError::Stalled {
                    written: n,
                    len: bytes.len(),
                })
            }
        }
    })
}

/// Run `f` while holding the ring's lock, as a console write does: for the boot tests
/// of a panic or a fault in the middle of a ring write (the sample app's `hold-console`).
#[doc(hidden)]
pub fn _with_ring_locked<R>(f: impl FnOnce() -> R) -> R {
    let _ring = RING.lock();
    f()
}

/// Input from the ring (0 if none), or `None` if this guest has no ring console.
pub fn read(out: &mut [u8]) -> Option<Result<usize, DuplexError>> {
    RING.lock().as_mut().map(|d| d.read(out))
}
