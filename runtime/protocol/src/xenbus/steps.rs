//! The handshake's step machines ([`Connecting`], [`Closing`], what a step says:
//! [`Step`]) and the blocking loops over them ([`connect`], [`close`]).

use super::{
    read_state, Backend, Device, ErrorKind, Flavor, Path, Publish, State, Store, Txn, XenbusError,
    BACKEND_TOKEN, RECHECK_NS, TXN_TRIES,
};
use core::fmt::Write as _;

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
/// than [`PATH_MAX`](super::PATH_MAX) (refused by [`keys_fit`] at the first step). The
/// frontend's always fits: [`Device::new`] bounds it.
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
