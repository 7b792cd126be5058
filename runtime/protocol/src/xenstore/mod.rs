//! A xenstore client over the xenstore ring page (a domU's `store_mfn`/`store_evtchn`
//! from start_info): read, write, directory, watch and its events.
//!
//! Replies come from dom0's xenstored and are untrusted: a bad header, a payload over
//! the limit, a reply of the wrong type, a stall — each is an error value, never a
//! panic or an endless wait (every wait has a deadline). The stream stays in step after
//! such an error:
//! - a message is read resumably: one that stops mid-header or mid-payload at a deadline
//!   is finished by the next call (and, if it was a reply, discarded as stale), never
//!   left for the next header to be read from its middle;
//! - a request that stalls half-written (xenstored stops reading) is finished before the
//!   next request goes out, so that xenstored reads that one from its header;
//! - an oversized message is skipped whole; a header no message can have (a length over
//!   [`DRAIN_MAX`]) resets the stream: what has arrived is discarded
//!   ([`Xenstore::resyncs`] counts it);
//! - a reply that arrives after its request gave up is discarded as stale (counted by
//!   [`Xenstore::stale_replies`]) instead of being taken for the answer to the next
//!   request.
//!
//! Watch events that arrive while a reply is awaited are queued in order for
//! [`Xenstore::next_event`]; nothing else takes them ([`Xenstore::wait_event`] only
//! waits for one to arrive). An event that cannot be kept (the queue is full, or it is
//! malformed: a path over [`EVENT_PATH_MAX`], a token over [`TOKEN_MAX`], not UTF-8) is
//! dropped without failing the request in flight, counted, and reported: `next_event`
//! answers [`XsError::EventsLost`] once, and [`Xenstore::lost_epoch`] moves on. Whoever
//! watches something must then read again what it watches, since a change may be lost.
//!
//! The client is generic over [`Link`], so the host tests run it against the model
//! xenstored in `xenpv-testkit`; here, against canned bytes:
//!
//! ```
//! use xenpv_protocol::ring::{Idx, Link, Side};
//! use xenpv_protocol::xenstore::{wire::{Header, MsgType}, Xenstore, XsError};
//!
//! /// Our requests go nowhere; the response ring holds canned replies.
//! struct Canned { rsp: Vec<u8>, idx: [u32; 4], req: [u8; 1024] }
//! impl Link for Canned {
//!     fn size(&self, _: Side) -> u32 { 1024 }
//!     fn index(&self, i: Idx) -> u32 {
//!         match i {
//!             // The peer consumes requests as soon as they are written.
//!             Idx::TxCons => self.idx[Idx::TxProd as usize],
//!             _ => self.idx[i as usize],
//!         }
//!     }
//!     fn set_index(&mut self, i: Idx, v: u32) { self.idx[i as usize] = v }
//!     fn load(&self, _: Side, i: u32) -> u8 { self.rsp[i as usize] }
//!     fn store(&mut self, _: Side, i: u32, b: u8) { self.req[i as usize] = b }
//!     fn notify(&mut self) {}
//!     fn wait(&mut self, _: u64) { unreachable!("every reply is already in the ring") }
//!     fn now_ns(&self) -> u64 { 0 }
//! }
//! let mut rsp = vec![];
//! for (ty, id, body) in [(MsgType::Read, 1, &b"5"[..]), (MsgType::Error, 2, b"ENOENT\0")] {
//!     let h = Header { ty: ty as u32, req_id: id, tx_id: 0, len: body.len() as u32 };
//!     rsp.extend_from_slice(&h.encode());
//!     rsp.extend_from_slice(body);
//! }
//! let n = rsp.len() as u32;
//! rsp.resize(1024, 0);
//! let mut xs = Xenstore::new(Canned { rsp, idx: [0, 0, 0, n], req: [0; 1024] });
//! assert_eq!(&xs.read("domid").unwrap()[..], b"5");
//! assert_eq!(xs.read("nope"), Err(XsError::Xenstore("ENOENT".try_into().unwrap())));
//! ```

pub mod wire;

use crate::ring::{Duplex, DuplexError, Link};
use wire::{Header, MsgType, WireError, HEADER_LEN, PAYLOAD_MAX};

/// How long a request waits for its reply.
pub const REPLY_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long the rest of a message that has begun to arrive is waited for.
pub const MESSAGE_REST_NS: u64 = 1_000_000_000;
/// Watch events held while waiting for replies.
pub const EVENT_QUEUE: usize = 8;
/// Longest watch path kept (the protocol allows 3072; longer ones are an error here).
pub const EVENT_PATH_MAX: usize = 512;
/// Longest watch token, ours or in an event.
pub const TOKEN_MAX: usize = 64;
/// Watches the client keeps to re-send after a restore ([`Xenstore::resume_new`]); a
/// watch past it is still set, but counted ([`Xenstore::watches_unregistered`]) and
/// not re-sent.
pub const WATCHES_MAX: usize = 32;

/// A watch set and not removed: what a new domain's xenstored is told again.
type Registered = (
    heapless::String<EVENT_PATH_MAX>,
    heapless::String<TOKEN_MAX>,
);
/// Bytes of an error reply's errno name kept in [`XsError::Xenstore`] (the names in
/// xs_wire.h's `xsd_errors` are far shorter; a longer one is cut on a char boundary).
pub const ERRNO_MAX: usize = 32;
/// Most payload bytes skipped after a header that claims more than [`PAYLOAD_MAX`]
/// (16 times the limit): enough to step over a real oversized message, bounded so that
/// a corrupt length cannot make the client discard without end (a longer claim resets
/// the receive side instead; also the most bytes such a reset discards).
pub const DRAIN_MAX: usize = 16 * PAYLOAD_MAX;

/// A reply's payload: at most [`PAYLOAD_MAX`] bytes, held inline.
pub type Payload = heapless::Vec<u8, PAYLOAD_MAX>;

/// Why a xenstore request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsError {
    /// A request we would not send, or a reply that breaks the wire format.
    Wire(WireError),
    /// The ring failed: corrupt indices, a stalled peer, or no reply before the deadline
    /// (`TimedOut`).
    Ring(DuplexError),
    /// xenstored answered with an error (its errno name, e.g. "ENOENT", at most
    /// [`ERRNO_MAX`] bytes).
    Xenstore(heapless::String<ERRNO_MAX>),
    /// A reply with our request's id but another type than the request's.
    Protocol {
        /// Type and id of our request.
        want: (u32, u32),
        /// Type and id of the reply.
        got: (u32, u32),
    },
    /// Watch events were lost since the last call (the queue was full, an event was
    /// malformed, or the stream was reset): read again whatever is watched.
    EventsLost,
}

impl core::fmt::Display for XsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            XsError::Wire(e) => write!(f, "xenstore: {e}"),
            XsError::Ring(e) => write!(f, "xenstore ring: {e}"),
            // xenstored's bytes: escaped, as every peer string on the console.
            XsError::Xenstore(errno) => write!(f, "xenstore: {}", crate::escape::Escaped(errno)),
            XsError::Protocol { want, got } => write!(
                f,
                "xenstore: reply type {} id {} while waiting for type {} id {}",
                got.0, got.1, want.0, want.1
            ),
            XsError::EventsLost => write!(
                f,
                "xenstore: watch events lost (more than {EVENT_QUEUE} not taken, or malformed)"
            ),
        }
    }
}

impl From<WireError> for XsError {
    fn from(e: WireError) -> Self {
        XsError::Wire(e)
    }
}
impl From<DuplexError> for XsError {
    fn from(e: DuplexError) -> Self {
        XsError::Ring(e)
    }
}

/// A fired watch: the path that changed and the token given to [`Xenstore::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed (the watched path or one below it).
    pub path: heapless::String<EVENT_PATH_MAX>,
    /// The token the watch was set with.
    pub token: heapless::String<TOKEN_MAX>,
}

/// A message being received: kept across calls, so that one cut by a deadline is
/// finished later instead of leaving the stream in its middle.
#[derive(Default)]
struct Rx {
    /// Header bytes taken so far.
    head: [u8; HEADER_LEN],
    hgot: usize,
    /// The header, once whole, while its payload arrives.
    hdr: Option<Header>,
    body: Payload,
    pgot: usize,
    /// Payload bytes of an oversized message still to discard.
    skip: usize,
}

/// A whole message, or one too long to keep (its payload is discarded).
// Made and taken apart at once, never stored.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Whole(Header, Payload),
    Oversized { ty: u32, req_id: u32, len: usize },
}

/// A request: header and payload.
type Request = wire::Message;

/// A xenstore connection: one request in flight at a time, over the ring page behind
/// `L`.
pub struct Xenstore<L: Link> {
    ring: Duplex<L>,
    next_id: u32,
    events: heapless::Deque<WatchEvent, EVENT_QUEUE>,
    /// Events were lost and `next_event` has not said so yet.
    lost_unreported: bool,
    lost_epoch: u64,
    arrived: u64,
    stale: u64,
    events_dropped: u64,
    malformed: u64,
    resyncs: u64,
    rx: Rx,
    /// The unsent rest of a request that stalled half-written.
    tx_rest: Request,
    /// The watches set and not removed, re-sent by [`Xenstore::resume_new`].
    watches: heapless::Vec<Registered, WATCHES_MAX>,
    unregistered: u64,
}

impl<L: Link> Xenstore<L> {
    /// A client on a ring page whose indices the toolstack initialised.
    pub fn new(link: L) -> Self {
        Xenstore {
            ring: Duplex::new(link),
            next_id: 1,
            events: heapless::Deque::new(),
            lost_unreported: false,
            lost_epoch: 0,
            arrived: 0,
            stale: 0,
            events_dropped: 0,
            malformed: 0,
            resyncs: 0,
            rx: Rx::default(),
            tx_rest: Request::new(),
            watches: heapless::Vec::new(),
            unregistered: 0,
        }
    }

    /// The watches set and not removed (path, token), as [`resume_new`](Self::resume_new)
    /// re-sends them.
    pub fn watches(&self) -> impl Iterator<Item = (&str, &str)> {
        self.watches.iter().map(|(p, t)| (p.as_str(), t.as_str()))
    }

    /// Watches set while the registry was full ([`WATCHES_MAX`]): not re-sent after a
    /// restore.
    pub fn watches_unregistered(&self) -> u64 {
        self.unregistered
    }

    /// Nothing is half done on the ring: no message half received, no request half
    /// sent. Requests are synchronous, so between two calls none is waiting for its
    /// reply; what this adds is the pieces a deadline cut. A guest suspends only then.
    pub fn quiescent(&self) -> bool {
        self.tx_rest.is_empty() && self.rx.hgot == 0 && self.rx.hdr.is_none() && self.rx.skip == 0
    }

    /// Carry on in a new domain (the guest was restored or migrated): the ring page is
    /// the same but its peer is a new xenstored, reached through `port`, that knows none
    /// of our watches. The link signals `port` from now on; what the old xenstored left
    /// unread on the ring is dropped, and any half-received message with it (their
    /// requests are gone); every registered watch is set again (in order; each one's
    /// error is counted in `failed` and the rest still go); and the lost-events epoch
    /// moves on, so that every watcher reads what it watches again (xenstored also fires
    /// each watch once when it is set). Returns `(re-sent, failed)`.
    pub fn resume_new(&mut self, port: u32) -> (usize, usize) {
        self.ring.link().set_port(port);
        if self.ring.resume_new() > 0 {
            self.resyncs += 1;
        }
        self.rx = Rx::default();
        self.tx_rest.clear();
        self.events.clear();
        self.lose_events();
        let watches = core::mem::take(&mut self.watches);
        let (mut sent, mut failed) = (0, 0);
        for (path, token) in watches.iter() {
            match self.transact(MsgType::Watch, &[path, token], &[]) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
        self.watches = watches;
        (sent, failed)
    }

    /// Replies discarded because they answered no request in flight (they arrived after
    /// their request's deadline).
    pub fn stale_replies(&self) -> u64 {
        self.stale
    }

    /// Watch events dropped because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Watch events dropped because they were malformed (a path over
    /// [`EVENT_PATH_MAX`], a token over [`TOKEN_MAX`], not UTF-8, oversized).
    pub fn malformed_events(&self) -> u64 {
        self.malformed
    }

    /// Times the stream was put back in step: a stalled request finished late, or the
    /// receive side reset after a header no message can have.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// How many times watch events were lost (dropped, malformed, discarded by a
    /// reset). An owner of a watch remembers the value it last saw: when it has moved
    /// on, a change to what it watches may have gone unreported, so it reads it again.
    pub fn lost_epoch(&self) -> u64 {
        self.lost_epoch
    }

    /// Watch events that arrived so far (kept, dropped or malformed): a mark for
    /// [`wait_event`](Self::wait_event).
    pub fn events_arrived(&self) -> u64 {
        self.arrived
    }

    /// The link underneath (the model peer, in tests).
    pub fn link(&mut self) -> &mut L {
        self.ring.link()
    }

    fn lose_events(&mut self) {
        self.lost_unreported = true;
        self.lost_epoch += 1;
    }

    /// One message from the ring, resuming one begun earlier.
    ///
    /// `deadline` bounds the wait for a message to *begin*. Once it has begun, the rest
    /// is read until at least [`MESSAGE_REST_NS`] later (xenstored writes whole
    /// messages; a short ring only splits them). A message still unfinished then is kept
    /// and finished by the next call.
    ///
    /// A header that claims more than [`PAYLOAD_MAX`] is reported as
    /// [`Msg::Oversized`], and its payload discarded; one that claims more than
    /// [`DRAIN_MAX`] frames nothing: the stream is reset.
    fn receive(&mut self, deadline: u64) -> Result<Msg, XsError> {
        let mut rest: Option<u64> = None;
        loop {
            let begun = self.rx.hgot > 0 || self.rx.hdr.is_some() || self.rx.skip > 0;
            let until = if begun {
                let now = self.ring.link().now_ns();
                *rest.get_or_insert(deadline.max(now.saturating_add(MESSAGE_REST_NS)))
            } else {
                deadline
            };
            if self.rx.skip > 0 {
                let mut buf = [0u8; 256];
                let n = self.rx.skip.min(buf.len());
                let (got, done) = fill(&mut self.ring, &mut buf[..n], until)?;
                self.rx.skip -= got;
                if !done {
                    return Err(timed_out(0, HEADER_LEN));
                }
                continue;
            }
            if let Some(h) = self.rx.hdr {
                let (got, done) = fill(&mut self.ring, &mut self.rx.body[self.rx.pgot..], until)?;
                self.rx.pgot += got;
                if !done {
                    return Err(timed_out(self.rx.pgot, h.len as usize));
                }
                self.rx.hdr = None;
                self.rx.pgot = 0;
                return Ok(Msg::Whole(h, core::mem::take(&mut self.rx.body)));
            }
            let (got, done) = fill(&mut self.ring, &mut self.rx.head[self.rx.hgot..], until)?;
            self.rx.hgot += got;
            if !done {
                if self.rx.hgot > 0 && rest.is_none() {
                    continue; // begun just now: wait for its rest
                }
                return Err(timed_out(self.rx.hgot, HEADER_LEN));
            }
            self.rx.hgot = 0;
            let hb = self.rx.head;
            match Header::decode(&hb) {
                Ok(h) => {
                    self.rx.body.clear();
                    // len <= PAYLOAD_MAX, checked by decode.
                    let _ = self.rx.body.resize(h.len as usize, 0);
                    self.rx.hdr = Some(h);
                }
                Err(WireError::TooLong { len, .. }) if len <= DRAIN_MAX => {
                    self.rx.skip = len;
                    let w = |i: usize| u32::from_le_bytes([hb[i], hb[i + 1], hb[i + 2], hb[i + 3]]);
                    return Ok(Msg::Oversized {
                        ty: w(0),
                        req_id: w(4),
                        len,
                    });
                }
                Err(e) => {
                    self.reset_rx();
                    return Err(e.into());
                }
            }
        }
    }

    /// The receive side lost its framing: discard what has arrived (bounded: a peer
    /// that keeps producing cannot hold us here) and start again from the next byte as
    /// a header. Events among the discarded bytes are lost: say so.
    fn reset_rx(&mut self) {
        let mut buf = [0u8; 256];
        let mut n = 0;
        while n < DRAIN_MAX {
            match self.ring.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        self.rx = Rx::default();
        self.resyncs += 1;
        self.lose_events();
    }

    /// A watch event's payload: queued, or dropped and counted (never an error: the
    /// request in flight, if any, is not the event's concern).
    fn take_event(&mut self, p: &[u8]) {
        self.note_arrival();
        match parse_event(p) {
            Some(ev) => {
                if self.events.push_back(ev).is_err() {
                    self.events_dropped += 1;
                    self.lose_events();
                }
            }
            None => {
                self.malformed += 1;
                self.lose_events();
            }
        }
    }

    /// A watch event arrived (kept or not): counted, and the link told (another waiter
    /// on its port may be waiting for exactly this, and the read took the signal).
    fn note_arrival(&mut self) {
        self.arrived += 1;
        self.ring.link().message_taken();
    }

    /// A message that is no reply to a request in flight: an event, or a stale reply.
    fn take_unsolicited(&mut self, m: &Msg) {
        match *m {
            Msg::Whole(h, ref p) if h.ty == MsgType::WatchEvent as u32 => self.take_event(p),
            Msg::Oversized { ty, .. } if ty == MsgType::WatchEvent as u32 => {
                self.note_arrival();
                self.malformed += 1;
                self.lose_events();
            }
            _ => self.stale += 1,
        }
    }

    /// Write a request whole, after the rest of any earlier one that stalled
    /// half-written (xenstored reads the ring as one stream: the new request must not
    /// become the old one's tail). A request that stalls after its first byte keeps
    /// its rest for the next call.
    fn send(&mut self, msg: &[u8]) -> Result<(), XsError> {
        let deadline = self.ring.link().now_ns().saturating_add(REPLY_TIMEOUT_NS);
        if !self.tx_rest.is_empty() {
            let rest = core::mem::take(&mut self.tx_rest);
            match self.ring.write_all(&rest, REPLY_TIMEOUT_NS) {
                Ok(()) => self.resyncs += 1,
                Err(e) => {
                    if let DuplexError::Stalled { written, .. } = e {
                        let _ = self.tx_rest.extend_from_slice(&rest[written..]);
                    }
                    return Err(e.into());
                }
            }
        }
        let left = deadline.saturating_sub(self.ring.link().now_ns()).max(1);
        match self.ring.write_all(msg, left) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let DuplexError::Stalled { written, .. } = e {
                    if written > 0 {
                        let _ = self.tx_rest.extend_from_slice(&msg[written..]);
                    }
                }
                Err(e.into())
            }
        }
    }

    /// Send one request and wait for its reply, queueing watch events and discarding
    /// stale replies (to requests that timed out earlier) on the way.
    fn transact(&mut self, ty: MsgType, strings: &[&str], raw: &[u8]) -> Result<Payload, XsError> {
        self.transact_in(0, ty, strings, raw)
    }

    /// [`Self::transact`] inside transaction `tx` (0: none).
    fn transact_in(
        &mut self,
        tx: u32,
        ty: MsgType,
        strings: &[&str],
        raw: &[u8],
    ) -> Result<Payload, XsError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let msg = wire::request_in(ty, id, tx, strings, raw)?;
        let now = self.ring.link().now_ns();
        self.send(&msg)?;
        let deadline = now.saturating_add(REPLY_TIMEOUT_NS);
        loop {
            let m = self.receive(deadline)?;
            let (mty, mid) = match &m {
                Msg::Whole(h, _) => (h.ty, h.req_id),
                Msg::Oversized { ty, req_id, .. } => (*ty, *req_id),
            };
            if mty == MsgType::WatchEvent as u32 || mid != id {
                // An event, or the answer to a request that timed out: taking it for
                // this one would shift every later reply by one.
                self.take_unsolicited(&m);
            } else {
                let p = match m {
                    Msg::Whole(_, p) => p,
                    Msg::Oversized { len, .. } => {
                        return Err(WireError::TooLong {
                            what: "reply payload",
                            len,
                            max: PAYLOAD_MAX,
                        }
                        .into())
                    }
                };
                if mty == MsgType::Error as u32 {
                    let name = wire::strings(&p, "error reply")?.next().unwrap_or("");
                    let mut s = heapless::String::new();
                    let _ = s.push_str(floor_char_boundary(name, ERRNO_MAX));
                    return Err(XsError::Xenstore(s));
                } else if mty != ty as u32 {
                    return Err(XsError::Protocol {
                        want: (ty as u32, id),
                        got: (mty, mid),
                    });
                }
                return Ok(p);
            }
            // A peer that keeps sending other messages cannot hold us past the deadline.
            if self.ring.link().now_ns() >= deadline {
                return Err(timed_out(0, HEADER_LEN));
            }
        }
    }

    /// The value at `path`.
    pub fn read(&mut self, path: &str) -> Result<Payload, XsError> {
        wire::check_path(path)?;
        self.transact(MsgType::Read, &[path], &[])
    }

    /// Set `path` to `value`.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        wire::check_path(path)?;
        self.transact(MsgType::Write, &[path], value).map(|_| ())
    }

    /// Start a transaction: its id, for [`Xenstore::write_in`] and
    /// [`Xenstore::transaction_end`].
    pub fn transaction_start(&mut self) -> Result<u32, XsError> {
        let p = self.transact(MsgType::TransactionStart, &[""], &[])?;
        let id = wire::strings(&p, "transaction id")?.next().unwrap_or("");
        match id.parse::<u32>() {
            Ok(id) if id != 0 => Ok(id),
            _ => Err(WireError::BadString("transaction id (a decimal number, not 0)").into()),
        }
    }

    /// Set `path` to `value` inside transaction `tx`.
    pub fn write_in(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<(), XsError> {
        wire::check_path(path)?;
        self.transact_in(tx, MsgType::Write, &[path], value)
            .map(|_| ())
    }

    /// Remove `path` and everything under it. A path that is not there is no error
    /// (xenstored answers `ENOENT` when its parent is missing too: nothing to remove).
    pub fn remove(&mut self, path: &str) -> Result<(), XsError> {
        self.remove_in(0, path)
    }

    /// [`Self::remove`] inside transaction `tx` (0: none).
    pub fn remove_in(&mut self, tx: u32, path: &str) -> Result<(), XsError> {
        wire::check_path(path)?;
        match self.transact_in(tx, MsgType::Rm, &[path], &[]) {
            Ok(_) => Ok(()),
            Err(XsError::Xenstore(e)) if e == "ENOENT" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// End transaction `tx`, committing it or not: `Ok(false)` if xenstored answered
    /// `EAGAIN` (another writer got in first: nothing was written, start again).
    pub fn transaction_end(&mut self, tx: u32, commit: bool) -> Result<bool, XsError> {
        let flag = if commit { "T" } else { "F" };
        match self.transact_in(tx, MsgType::TransactionEnd, &[flag], &[]) {
            Ok(_) => Ok(true),
            Err(XsError::Xenstore(e)) if e == "EAGAIN" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The children of `path` as NUL-separated names (iterate with [`wire::strings`]).
    pub fn directory(&mut self, path: &str) -> Result<Payload, XsError> {
        wire::check_path(path)?;
        let p = self.transact(MsgType::Directory, &[path], &[])?;
        wire::strings(&p, "directory")?.for_each(drop); // validated once here
        Ok(p)
    }

    /// Watch `path`; events carry `token`. xenstored fires the watch once at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        check_watch(path, token)?;
        self.transact(MsgType::Watch, &[path, token], &[])?;
        if !self.watches().any(|w| w == (path, token)) {
            let entry = heapless::String::try_from(path)
                .ok()
                .zip(heapless::String::try_from(token).ok());
            let kept = entry.is_some_and(|e| self.watches.push(e).is_ok());
            if !kept {
                self.unregistered += 1;
            }
        }
        Ok(())
    }

    /// Remove the watch on `path` with `token` (xenstored counts watches against a
    /// quota). Events it fired before are still queued.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        check_watch(path, token)?;
        // Forgotten first: a watch xenstored may or may not have removed is not re-sent.
        self.watches
            .retain(|(p, t)| (p.as_str(), t.as_str()) != (path, token));
        self.transact(MsgType::Unwatch, &[path, token], &[])
            .map(|_| ())
    }

    /// The next watch event, waiting until Xen system time `deadline` (`Ok(None)` then).
    /// A reply that arrives meanwhile answers no request: it is discarded as stale.
    /// [`XsError::EventsLost`] (once) if events were lost since the last call.
    pub fn next_event(&mut self, deadline: u64) -> Result<Option<WatchEvent>, XsError> {
        if self.lost_unreported {
            self.lost_unreported = false;
            return Err(XsError::EventsLost);
        }
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        loop {
            match self.receive(deadline) {
                Ok(m) => self.take_unsolicited(&m),
                Err(XsError::Ring(DuplexError::TimedOut { .. })) => return Ok(None),
                Err(e) => return Err(e),
            }
            if self.lost_unreported {
                self.lost_unreported = false;
                return Err(XsError::EventsLost);
            }
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if self.ring.link().now_ns() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Wait until a watch event arrives after mark `since` (from
    /// [`events_arrived`](Self::events_arrived)), or until `deadline`, taking none:
    /// events stay queued for [`next_event`](Self::next_event). `Ok(true)` if one did.
    /// Replies that arrive meanwhile answer no request: they are discarded as stale.
    pub fn wait_event(&mut self, since: u64, deadline: u64) -> Result<bool, XsError> {
        loop {
            if self.arrived != since {
                return Ok(true);
            }
            match self.receive(deadline) {
                Ok(m) => self.take_unsolicited(&m),
                Err(XsError::Ring(DuplexError::TimedOut { .. })) => return Ok(false),
                Err(e) => return Err(e),
            }
            if self.arrived == since && self.ring.link().now_ns() >= deadline {
                return Ok(false);
            }
        }
    }
}

fn check_watch(path: &str, token: &str) -> Result<(), XsError> {
    wire::check_path(path)?;
    if token.is_empty() || token.len() > TOKEN_MAX || token.contains('\0') {
        return Err(WireError::BadString("watch token (1..=64 bytes, no NUL)").into());
    }
    Ok(())
}

/// A watch event's path and token, if they are UTF-8 and within the limits.
fn parse_event(p: &[u8]) -> Option<WatchEvent> {
    let mut it = wire::strings(p, "watch event").ok()?;
    let (path, token) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    Some(WatchEvent {
        path: heapless::String::try_from(path).ok()?,
        token: heapless::String::try_from(token).ok()?,
    })
}

fn timed_out(got: usize, want: usize) -> XsError {
    XsError::Ring(DuplexError::TimedOut { got, want })
}

/// Read into `buf` until it is full or `until`: the bytes taken, and whether it is full.
fn fill<L: Link>(
    ring: &mut Duplex<L>,
    buf: &mut [u8],
    until: u64,
) -> Result<(usize, bool), XsError> {
    match ring.read_exact(buf, until) {
        Ok(()) => Ok((buf.len(), true)),
        Err(DuplexError::TimedOut { got, .. }) => Ok((got, false)),
        Err(e) => Err(e.into()),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn floor_char_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_char_boundaries() {
        assert_eq!(floor_char_boundary("ENOENT", ERRNO_MAX), "ENOENT");
        assert_eq!(floor_char_boundary("", 4), "");
        assert_eq!(floor_char_boundary("abcdef", 4), "abcd");
        // 'é' is 2 bytes, '€' 3, '😀' 4: a cut inside any of them backs off to its start.
        for (s, max, want) in [
            ("aé", 2, "a"),
            ("aé", 3, "aé"),
            ("a€", 2, "a"),
            ("a€", 3, "a"),
            ("a€", 4, "a€"),
            ("😀", 3, ""),
            ("😀x", 4, "😀"),
        ] {
            assert_eq!(floor_char_boundary(s, max), want, "{s:?} at {max}");
        }
    }
}
