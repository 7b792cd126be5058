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
            ErrorKind::Missing { key } => write!(f, "{d}: {} is missing", Escaped(key)),
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

/// What a step of a handshake says.
// The error is large (see the module's note); a step's result is moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Step<E> {
    /// Not finished: step again at `wake_at` (Xen system time) or when a watch event
    /// arrives, whichever comes first (stepping earlier is harmless).
    Pending {
        /// When to step again at the latest.
        wake_at: u64,
    },
    /// Finished.
    Done,
    /// Failed (stepping again does nothing).
    Failed(XenbusError<E>),
}

/// The frontend's and the backend's `state` keys; an empty key if it would be longer
/// than [`PATH_MAX`] (refused by [`keys_fit`] at the first step). The frontend's always
/// fits: [`Device::new`] bounds it.
fn state_keys(dev: &Device, be: &Backend) -> (Path, Path) {
    let key = |base: &str| dev.key::<()>(base, "state").unwrap_or_default();
    (key(dev.dir()), key(&be.path))
}

/// Refuse a backend path too long for its `state` key.
fn keys_fit<E>(dev: &Device, back_state: &Path) -> Result<(), XenbusError<E>> {
    if back_state.is_empty() {
        return Err(dev.err(ErrorKind::BadValue {
            key: dev.dir.clone(),
            why: "a key path longer than 128 bytes",
        }));
    }
    Ok(())
}

/// Where a [`Connecting`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Connect {
    Start,
    AwaitInitWait,
    Publish,
    AwaitConnected,
    Over,
}

/// The handshake from Initialising to Connected, a step at a time: watch the backend's
/// state and say Initialising; when the backend is ready (InitWait, or Connected if it
/// jumped ahead: it was connected to an earlier instance of us and has not noticed
/// yet), publish the keys and the next state in a transaction (one try per step, retried
/// on `EAGAIN` up to [`TXN_TRIES`]); then wait for Connected. Each step does at most
/// three requests besides the transaction, and never waits.
#[derive(Clone, Debug)]
pub struct Connecting {
    dev: Device,
    front_state: Path,
    back_state: Path,
    flavor: Flavor,
    deadline: u64,
    phase: Connect,
    last: Option<State>,
    tries: u32,
}

impl Connecting {
    /// Connect `dev` to `be`; everything must happen before `deadline` (Xen system
    /// time, ns). Nothing is sent before the first step.
    pub fn new(dev: &Device, be: &Backend, flavor: Flavor, deadline: u64) -> Connecting {
        let (front_state, back_state) = state_keys(dev, be);
        Connecting {
            front_state,
            back_state,
            dev: dev.clone(),
            flavor,
            deadline,
            phase: Connect::Start,
            last: None,
            tries: 0,
        }
    }

    /// The device being connected.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// One step. `publish` writes the frontend's keys (relative to its directory)
    /// inside the transaction; it may run more than once (on `EAGAIN`), so it must only
    /// write.
    pub fn step<S: Store>(
        &mut self,
        s: &mut S,
        publish: &mut Publish<'_, S::Error>,
    ) -> Step<S::Error> {
        let r = self.advance(s, publish);
        if !matches!(r, Step::Pending { .. }) {
            self.phase = Connect::Over;
        }
        r
    }

    fn advance<S: Store>(
        &mut self,
        s: &mut S,
        publish: &mut Publish<'_, S::Error>,
    ) -> Step<S::Error> {
        let st = |dev: &Device, e| Step::Failed(dev.err(ErrorKind::Store(e)));
        match self.phase {
            Connect::Over => return Step::Done,
            Connect::Start => {
                if let Err(e) = keys_fit(&self.dev, &self.back_state) {
                    return Step::Failed(e);
                }
                if let Err(e) = s.watch(&self.back_state, BACKEND_TOKEN) {
                    return st(&self.dev, e);
                }
                if let Err(e) = s.write(&self.front_state, State::Initialising.value()) {
                    return st(&self.dev, e);
                }
                self.phase = Connect::AwaitInitWait;
                return self.advance(s, publish);
            }
            Connect::AwaitInitWait => {
                return match self.check(s, "InitWait", |x| {
                    matches!(x, Some(State::InitWait | State::Connected))
                }) {
                    Ok(true) => {
                        self.phase = Connect::Publish;
                        Step::Pending { wake_at: s.now() }
                    }
                    Ok(false) => self.pending(s),
                    Err(e) => Step::Failed(e),
                };
            }
            Connect::Publish => {}
            Connect::AwaitConnected => {
                return match self.check(s, "Connected", |x| x == Some(State::Connected)) {
                    Ok(true) if self.flavor == Flavor::InitialisedFirst => {
                        match s.write(&self.front_state, State::Connected.value()) {
                            Ok(()) => Step::Done,
                            Err(e) => st(&self.dev, e),
                        }
                    }
                    Ok(true) => Step::Done,
                    Ok(false) => self.pending(s),
                    Err(e) => Step::Failed(e),
                };
            }
        }
        let next = match self.flavor {
            Flavor::ConnectAtOnce => State::Connected,
            Flavor::InitialisedFirst => State::Initialised,
        };
        match try_transaction(s, &self.dev, &mut |t| {
            publish(t)?;
            t.write("state", next.value())
        }) {
            Ok(true) => {
                self.phase = Connect::AwaitConnected;
                Step::Pending { wake_at: s.now() }
            }
            Ok(false) => {
                self.tries += 1;
                if self.tries >= TXN_TRIES {
                    return Step::Failed(self.dev.err(ErrorKind::Conflicts { tries: self.tries }));
                }
                Step::Pending { wake_at: s.now() }
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// Read the backend's state: `Ok(true)` once `done` holds; an error if it is
    /// closing, or if the deadline passed.
    fn check<S: Store>(
        &mut self,
        s: &mut S,
        want: &'static str,
        done: impl Fn(Option<State>) -> bool,
    ) -> Result<bool, XenbusError<S::Error>> {
        let x = read_state(s, &self.dev, &self.back_state)?;
        if let Some(state) = x.filter(|x| x.closing()) {
            return Err(self.dev.err(ErrorKind::BackendClosed { state }));
        }
        if done(x) {
            return Ok(true);
        }
        self.last = x.or(self.last);
        if s.now() >= self.deadline {
            return Err(self.dev.err(ErrorKind::Timeout {
                key: self.back_state.clone(),
                want,
                last: self.last,
            }));
        }
        Ok(false)
    }

    fn pending<S: Store>(&self, s: &mut S) -> Step<S::Error> {
        Step::Pending {
            wake_at: s.now().saturating_add(RECHECK_NS).min(self.deadline),
        }
    }
}

/// Where a [`Closing`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    Start,
    Await,
    Over,
}

/// Closing, a step at a time: say Closing, wait for the backend to go Closing or
/// Closed (or to vanish: the toolstack removed its directory), then say Closed and
/// remove the watch on the backend's state. A backend that does neither before the
/// deadline is a timeout (we stay Closing; the watch is removed all the same). Each
/// step does at most three requests, and never waits.
#[derive(Clone, Debug)]
pub struct Closing {
    dev: Device,
    front_state: Path,
    back_state: Path,
    deadline: u64,
    phase: Close,
    last: Option<State>,
}

impl Closing {
    /// Close `dev`, whose backend is `be`, before `deadline`. Nothing is sent before
    /// the first step.
    pub fn new(dev: &Device, be: &Backend, deadline: u64) -> Closing {
        let (front_state, back_state) = state_keys(dev, be);
        Closing {
            front_state,
            back_state,
            dev: dev.clone(),
            deadline,
            phase: Close::Start,
            last: None,
        }
    }

    /// The device being closed.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// One step.
    pub fn step<S: Store>(&mut self, s: &mut S) -> Step<S::Error> {
        let dev = &self.dev;
        let st = |e| Step::Failed(dev.err(ErrorKind::Store(e)));
        if self.phase == Close::Over {
            return Step::Done;
        }
        if self.phase == Close::Start {
            if let Err(e) = keys_fit(&self.dev, &self.back_state) {
                self.phase = Close::Over;
                return Step::Failed(e);
            }
            if let Err(e) = s.write(&self.front_state, State::Closing.value()) {
                self.phase = Close::Over;
                let _ = s.unwatch(&self.back_state, BACKEND_TOKEN);
                return st(e);
            }
            self.phase = Close::Await;
        }
        let x = match read_state(s, &self.dev, &self.back_state) {
            Ok(x) => x,
            Err(e) => {
                self.phase = Close::Over;
                let _ = s.unwatch(&self.back_state, BACKEND_TOKEN);
                return Step::Failed(e);
            }
        };
        if x.is_none_or(State::closing) {
            self.phase = Close::Over;
            let r = s.write(&self.front_state, State::Closed.value());
            // Gone from xenstored's list already if the toolstack removed the
            // backend's directory (or we never watched it): nothing to undo.
            let _ = s.unwatch(&self.back_state, BACKEND_TOKEN);
            return match r {
                Ok(()) => Step::Done,
                Err(e) => Step::Failed(self.dev.err(ErrorKind::Store(e))),
            };
        }
        self.last = x.or(self.last);
        let now = s.now();
        if now >= self.deadline {
            self.phase = Close::Over;
            let _ = s.unwatch(&self.back_state, BACKEND_TOKEN);
            return Step::Failed(self.dev.err(ErrorKind::Timeout {
                key: self.back_state.clone(),
                want: "Closing or Closed",
                last: self.last,
            }));
        }
        Step::Pending {
            wake_at: now.saturating_add(RECHECK_NS).min(self.deadline),
        }
    }
}

/// Step a machine until it is done or fails, waiting (for a watch event, or its
/// `wake_at`) between steps.
fn drive<S: Store>(
    s: &mut S,
    dev: &Device,
    mut step: impl FnMut(&mut S) -> Step<S::Error>,
) -> Result<(), XenbusError<S::Error>> {
    loop {
        // Taken before the step's reads: an event that arrives during them wakes the
        // wait at once.
        let mark = s.mark();
        match step(s) {
            Step::Done => return Ok(()),
            Step::Failed(e) => return Err(e),
            Step::Pending { wake_at } => {
                if wake_at > s.now() {
                    s.wait(mark, wake_at)
                        .map_err(|e| dev.err(ErrorKind::Store(e)))?;
                }
            }
        }
    }
}

/// The handshake, from Initialising to Connected ([`Connecting`], blocking). `publish`
/// writes the frontend's keys (relative to its directory) inside the transaction, which
/// is retried on `EAGAIN` (so `publish` may run more than once: it must only write).
/// Everything must happen before `deadline` (Xen system time, ns).
pub fn connect<S: Store>(
    s: &mut S,
    dev: &Device,
    be: &Backend,
    flavor: Flavor,
    deadline: u64,
    publish: &mut Publish<'_, S::Error>,
) -> Result<(), XenbusError<S::Error>> {
    let mut c = Connecting::new(dev, be, flavor, deadline);
    drive(s, dev, |s| c.step(s, publish))
}

/// The transaction's writes, keys relative to the device's directory.
struct DevTxn<'a, S: Store> {
    s: &'a mut S,
    dev: &'a Device,
    tx: u32,
}

impl<S: Store> Txn for DevTxn<'_, S> {
    type Error = S::Error;
    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), S::Error> {
        let mut p = Path::new();
        // A key too long for PATH_MAX is cut; xenstore then refuses nothing we meant.
        let _ = write!(p, "{}/{key}", self.dev.dir());
        self.s.write_in(self.tx, &p, value)
    }
}

/// One try of the transaction: `Ok(false)` if xenstored answered `EAGAIN`.
fn try_transaction<S: Store>(
    s: &mut S,
    dev: &Device,
    body: &mut Publish<'_, S::Error>,
) -> Result<bool, XenbusError<S::Error>> {
    let tx = s.start().map_err(|e| dev.err(ErrorKind::Store(e)))?;
    let r = body(&mut DevTxn { s, dev, tx });
    if let Err(e) = r {
        let _ = s.end(tx, false);
        return Err(dev.err(ErrorKind::Store(e)));
    }
    s.end(tx, true).map_err(|e| dev.err(ErrorKind::Store(e)))
}

/// Close ([`Closing`], blocking): Closing, wait for the backend to go Closing or Closed
/// (or to vanish), then Closed. A backend that does neither before `deadline` is a
/// timeout (we are Closing).
pub fn close<S: Store>(
    s: &mut S,
    dev: &Device,
    be: &Backend,
    deadline: u64,
) -> Result<(), XenbusError<S::Error>> {
    let mut c = Closing::new(dev, be, deadline);
    drive(s, dev, |s| c.step(s))
}
