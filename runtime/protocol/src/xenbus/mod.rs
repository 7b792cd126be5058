//! The xenbus frontend handshake, generic over the device class (netfront and blkfront
//! both use it): find the backend, publish the frontend's keys in a transaction, walk
//! the states to Connected, notice the backend closing, and close.
//!
//! The keys and states follow `xen/include/public/io/xenbus.h` and what Linux's backends
//! expect (`drivers/net/xen-netback/xenbus.c`, `drivers/block/xen-blkback/xenbus.c`):
//! - the frontend's directory is `device/<class>/<id>`; the toolstack writes its
//!   `backend` (the backend's directory) and `backend-id` (the backend's domain: grant
//!   the rings and bind the event channel to *that* domain, never to a hard-coded 0);
//! - the frontend goes Initialising, waits for the backend's InitWait, writes its keys
//!   (ring-ref, event-channel, features...) and its next state in one transaction,
//!   retried when xenstored answers `EAGAIN`; netback connects when the frontend says
//!   Connected, blkback when it says Initialised ([`Flavor`]);
//! - either side closes by going Closing, then Closed.
//!
//! Everything the backend and the toolstack write is hostile: paths and ids are
//! bounded and parsed strictly, an unknown state is an error naming the key, and every
//! wait has a deadline whose error names the device, the key and the last state seen.
//! The logic runs over the [`Store`] trait, implemented for the wire client
//! ([`crate::xenstore::Xenstore`]); the host tests drive it against a model xenstored
//! with honest, slow, silent, jumping, stuck and closing backends.
//!
//! Connecting and closing are step machines ([`Connecting`], [`Closing`]): each
//! [`step`](Connecting::step) does a few non-blocking xenstore requests and says when to
//! step again ([`Step::Pending`]), so that an application's single loop can bring several
//! devices up and down at once and a backend that never answers costs the others
//! nothing. [`connect`] and [`close`] are the blocking loops over them. Neither takes
//! watch events: they stay queued for their owner (the machines re-read the state they
//! wait on every [`RECHECK_NS`] anyway, so a lost event only delays them).

// The errors carry the device's and the key's full paths (what a user needs to find the
// fault), so they are large; they come once per failed handshake, and no_std has no Box.
#![allow(clippy::result_large_err)]

mod control;
mod shutdown;
mod steps;
pub use control::{Action, Control, FEATURES, FEATURES_SUSPEND, SHUTDOWN_KEY, SYSRQ_KEY};
pub use shutdown::{ShutdownReason, ShutdownRequest};
pub use steps::{close, connect, Closing, Connecting, Step};

use crate::ring::Link;
use crate::xenstore::{Xenstore, XsError};
use core::fmt::{self, Write as _};

/// Longest xenstore path this module builds or accepts from the backend.
pub const PATH_MAX: usize = 128;
/// A path, bounded.
pub type Path = heapless::String<PATH_MAX>;
/// Transactions tried before giving up when xenstored keeps answering `EAGAIN`.
pub const TXN_TRIES: u32 = 16;
/// Domain ids a backend can have: below `DOMID_FIRST_RESERVED` (xen.h).
pub const DOMID_MAX: u32 = 0x7fef;
/// The token of the watch on a backend's state (set at connect, removed at close).
pub const BACKEND_TOKEN: &str = "xenbus-backend";
/// Longest a handshake waits before reading the backend's state again without a watch
/// event (an event may have been lost, or taken by no one).
pub const RECHECK_NS: u64 = 500_000_000;

/// A xenbus state (`enum xenbus_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// 0: not yet set.
    Unknown = 0,
    /// 1: starting up.
    Initialising = 1,
    /// 2: the backend waits for the frontend's keys.
    InitWait = 2,
    /// 3: the frontend's keys are written.
    Initialised = 3,
    /// 4: running.
    Connected = 4,
    /// 5: going away.
    Closing = 5,
    /// 6: gone.
    Closed = 6,
    /// 7: reconfiguring (pci only).
    Reconfiguring = 7,
    /// 8: reconfigured (pci only).
    Reconfigured = 8,
}

impl State {
    /// The state a value written in xenstore names (a decimal number, nothing else).
    ///
    /// ```
    /// use xenpv_protocol::xenbus::State;
    /// assert_eq!(State::parse(b"4"), Some(State::Connected));
    /// assert_eq!(State::parse(b"4\0"), Some(State::Connected));
    /// assert_eq!(State::parse(b"9"), None);
    /// assert_eq!(State::parse(b" 4"), None);
    /// ```
    pub fn parse(v: &[u8]) -> Option<State> {
        let v = v.strip_suffix(b"\0").unwrap_or(v);
        Some(match v {
            b"0" => State::Unknown,
            b"1" => State::Initialising,
            b"2" => State::InitWait,
            b"3" => State::Initialised,
            b"4" => State::Connected,
            b"5" => State::Closing,
            b"6" => State::Closed,
            b"7" => State::Reconfiguring,
            b"8" => State::Reconfigured,
            _ => return None,
        })
    }
    /// The value to write.
    pub fn value(self) -> &'static [u8] {
        &[b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8"][self as usize][..]
    }
    /// Is this the backend leaving (Closing or Closed)?
    pub fn closing(self) -> bool {
        matches!(self, State::Closing | State::Closed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The state a frontend writes with its keys: what its backend connects on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Connected at once (netback connects when the frontend says Connected).
    ConnectAtOnce,
    /// Initialised, then Connected once the backend is (blkback).
    InitialisedFirst,
}

/// What a frontend knows of its backend, read once at [`probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The backend's directory (e.g. `/local/domain/0/backend/vif/5/0`).
    pub path: Path,
    /// The backend's domain: rings are granted and the event channel allocated to it.
    pub domid: u16,
}

/// Why a xenbus step failed: the device, and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenbusError<E> {
    /// The frontend's directory (`device/vif/0`).
    pub device: Path,
    /// What went wrong.
    pub kind: ErrorKind<E>,
}

/// What went wrong in a xenbus step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind<E> {
    /// The store failed (the ring, xenstored's answer).
    Store(E),
    /// A key is missing.
    Missing {
        /// The key.
        key: Path,
    },
    /// A key holds a value this frontend refuses.
    BadValue {
        /// The key.
        key: Path,
        /// Why.
        why: &'static str,
    },
    /// The deadline passed while waiting for `key` to reach `want`.
    Timeout {
        /// The key waited on.
        key: Path,
        /// What was waited for.
        want: &'static str,
        /// The last state read there, if any.
        last: Option<State>,
    },
    /// The backend went Closing or Closed during the handshake.
    BackendClosed {
        /// Its state.
        state: State,
    },
    /// xenstored answered `EAGAIN` to every one of [`TXN_TRIES`] transactions.
    Conflicts {
        /// Transactions tried.
        tries: u32,
    },
}

impl<E: fmt::Display> fmt::Display for XenbusError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::escape::Escaped;
        // Keys may hold a backend's path (a peer's bytes): escaped.
        let d = Escaped(&self.device);
        match &self.kind {
            ErrorKind::Store(e) => write!(f, "{d}: {e}"),
            ErrorKind::Missing { key } => {
                write!(f, "{d}: {} is missing", Escaped(key))?;
                match missing_device_fix(&self.device, key) {
                    Some(fix) => write!(f, " ({fix})"),
                    None => Ok(()),
                }
            }
            ErrorKind::BadValue { key, why } => write!(f, "{d}: {}: {why}", Escaped(key)),
            ErrorKind::Timeout { key, want, last } => match (Escaped(key), last) {
                (key, Some(s)) => write!(f, "{d}: {key} did not reach {want} in time (last {s})"),
                (key, None) => write!(f, "{d}: {key} did not reach {want} in time (never set)"),
            },
            ErrorKind::BackendClosed { state } => {
                write!(f, "{d}: the backend went {state} during the handshake")
            }
            ErrorKind::Conflicts { tries } => {
                write!(
                    f,
                    "{d}: xenstore answered EAGAIN to {tries} transactions in a row"
                )
            }
        }
    }
}

/// What to do when a device's `backend` key is missing: the domain was booted without that
/// device, so say which runner option gives it one.
fn missing_device_fix(device: &str, key: &str) -> Option<&'static str> {
    if key.strip_prefix(device)? != "/backend" {
        return None;
    }
    if device.starts_with("device/vif/") {
        Some("the domain has no such vif: boot it with --net, or --net N for N vifs")
    } else if device.starts_with("device/vbd/") {
        Some("the domain has no such disk: boot it with --disk FILE")
    } else {
        None
    }
}

/// A transaction's writes, handed to the frontend's `publish` step.
pub trait Txn {
    /// The store's error.
    type Error;
    /// Set `key` (relative to the frontend's directory) to `value`.
    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), Self::Error>;
}

/// A frontend's publishing step: its writes inside the handshake's transaction.
pub type Publish<'a, E> = dyn FnMut(&mut dyn Txn<Error = E>) -> Result<(), E> + 'a;

/// The xenstore operations the handshake needs.
pub trait Store {
    /// The store's error.
    type Error: fmt::Debug;
    /// The value at `path`, `Ok(None)` if there is none, at most `out.len()` bytes
    /// (`Ok(Some(n))`); a longer value is an error (`BadValue` upstream).
    fn read(&mut self, path: &str, out: &mut [u8]) -> Result<Option<usize>, Self::Error>;
    /// Set `path` to `value`, outside any transaction.
    fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Start a transaction.
    fn start(&mut self) -> Result<u32, Self::Error>;
    /// Set `path` to `value` inside transaction `tx`.
    fn write_in(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// End transaction `tx`; `Ok(false)` for `EAGAIN` (nothing written).
    fn end(&mut self, tx: u32, commit: bool) -> Result<bool, Self::Error>;
    /// Watch `path` (events wake [`Store::wait`]).
    fn watch(&mut self, path: &str, token: &str) -> Result<(), Self::Error>;
    /// Remove the watch on `path` with `token`.
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Self::Error>;
    /// A mark of the watch events that arrived so far, for [`Store::wait`].
    fn mark(&mut self) -> u64;
    /// Wait until a watch event arrives after mark `since` (something watched may have
    /// changed) or `deadline` passes. Events are not taken: they stay for their owner.
    fn wait(&mut self, since: u64, deadline: u64) -> Result<(), Self::Error>;
    /// Xen system time, ns.
    fn now(&mut self) -> u64;
}

impl<L: Link> Store for Xenstore<L> {
    type Error = XsError;
    fn read(&mut self, path: &str, out: &mut [u8]) -> Result<Option<usize>, XsError> {
        match Xenstore::read(self, path) {
            Ok(v) => {
                let v = v.strip_suffix(b"\0").unwrap_or(&v);
                if v.len() > out.len() {
                    return Ok(Some(usize::MAX));
                }
                out[..v.len()].copy_from_slice(v);
                Ok(Some(v.len()))
            }
            Err(XsError::Xenstore(e)) if e == "ENOENT" => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        Xenstore::write(self, path, value)
    }
    fn start(&mut self) -> Result<u32, XsError> {
        self.transaction_start()
    }
    fn write_in(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<(), XsError> {
        Xenstore::write_in(self, tx, path, value)
    }
    fn end(&mut self, tx: u32, commit: bool) -> Result<bool, XsError> {
        self.transaction_end(tx, commit)
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        match Xenstore::watch(self, path, token) {
            // The same watch is still in place (an earlier connect to this backend set
            // it, and xenstored keeps it): that is what the caller asked for.
            Err(XsError::Xenstore(e)) if e == "EEXIST" => Ok(()),
            r => r,
        }
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        Xenstore::unwatch(self, path, token)
    }
    fn mark(&mut self) -> u64 {
        self.events_arrived()
    }
    fn wait(&mut self, since: u64, deadline: u64) -> Result<(), XsError> {
        self.wait_event(since, deadline).map(|_| ())
    }
    fn now(&mut self) -> u64 {
        self.link().now_ns()
    }
}

/// A frontend device: `device/<class>/<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    dir: Path,
}

impl Device {
    /// The device `class` (`vif`, `vbd`) number `id`.
    ///
    /// ```
    /// use xenpv_protocol::xenbus::Device;
    /// assert_eq!(Device::new("vif", 0).dir(), "device/vif/0");
    /// ```
    pub fn new(class: &str, id: u32) -> Device {
        let mut dir = Path::new();
        // "device/" + a class name + a u32 fit in PATH_MAX for any class we use.
        let _ = write!(dir, "device/{}/{id}", &class[..class.len().min(64)]);
        Device { dir }
    }
    /// The frontend's directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }
    fn err<E>(&self, kind: ErrorKind<E>) -> XenbusError<E> {
        XenbusError {
            device: self.dir.clone(),
            kind,
        }
    }
    fn key<E>(&self, base: &str, key: &str) -> Result<Path, XenbusError<E>> {
        let mut p = Path::new();
        write!(p, "{base}/{key}").map_err(|_| {
            self.err(ErrorKind::BadValue {
                key: self.dir.clone(),
                why: "a key path longer than 128 bytes",
            })
        })?;
        Ok(p)
    }
}

/// Read the backend's directory and domain from the frontend's keys.
pub fn probe<S: Store>(s: &mut S, dev: &Device) -> Result<Backend, XenbusError<S::Error>> {
    let mut buf = [0u8; PATH_MAX];
    let key = dev.key(dev.dir(), "backend")?;
    let path = read_value(s, dev, &key, &mut buf)?;
    let path = core::str::from_utf8(path)
        .ok()
        .filter(|p| p.starts_with('/') && !p.contains('\0') && p.is_ascii())
        .ok_or_else(|| {
            dev.err(ErrorKind::BadValue {
                key: key.clone(),
                why: "not an absolute ASCII path",
            })
        })?;
    let path = Path::try_from(path).map_err(|_| {
        dev.err(ErrorKind::BadValue {
            key: key.clone(),
            why: "longer than 128 bytes",
        })
    })?;
    let key = dev.key(dev.dir(), "backend-id")?;
    let mut buf = [0u8; 8];
    let v = read_value(s, dev, &key, &mut buf)?;
    let domid = core::str::from_utf8(v)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&d| d <= DOMID_MAX)
        .ok_or_else(|| {
            dev.err(ErrorKind::BadValue {
                key,
                why: "not a domain id (decimal, at most 32751)",
            })
        })?;
    Ok(Backend {
        path,
        domid: domid as u16,
    })
}

fn read_value<'b, S: Store>(
    s: &mut S,
    dev: &Device,
    key: &Path,
    buf: &'b mut [u8],
) -> Result<&'b [u8], XenbusError<S::Error>> {
    match s.read(key, buf).map_err(|e| dev.err(ErrorKind::Store(e)))? {
        None => Err(dev.err(ErrorKind::Missing { key: key.clone() })),
        Some(n) if n > buf.len() => Err(dev.err(ErrorKind::BadValue {
            key: key.clone(),
            why: "a value longer than this frontend reads",
        })),
        Some(n) => Ok(&buf[..n]),
    }
}

/// The state at `key`, `None` if it is not set; a value that is no state is an error.
pub fn read_state<S: Store>(
    s: &mut S,
    dev: &Device,
    key: &Path,
) -> Result<Option<State>, XenbusError<S::Error>> {
    let mut buf = [0u8; 4];
    match s
        .read(key, &mut buf)
        .map_err(|e| dev.err(ErrorKind::Store(e)))?
    {
        None => Ok(None),
        Some(n) => buf
            .get(..n)
            .and_then(State::parse)
            .map(Some)
            .ok_or_else(|| {
                dev.err(ErrorKind::BadValue {
                    key: key.clone(),
                    why: "not a xenbus state (0..=8)",
                })
            }),
    }
}

/// The backend's state now (for a frontend watching it during traffic).
pub fn backend_state<S: Store>(
    s: &mut S,
    dev: &Device,
    be: &Backend,
) -> Result<Option<State>, XenbusError<S::Error>> {
    let key = dev.key(&be.path, "state")?;
    read_state(s, dev, &key)
}
