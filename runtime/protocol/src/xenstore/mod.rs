//! A xenstore client over the xenstore ring page (a domU's `store_mfn`/`store_evtchn`
//! from start_info): read, write, directory, watch and its events.
//!
//! Replies come from dom0's xenstored and are untrusted: a bad header, a payload over
//! the limit, a reply of the wrong type, a stall — each is an error value, never a
//! panic or an endless wait (every wait has a deadline). The stream stays in step after
//! such an error: an oversized message is drained before it is refused, and a reply
//! that arrives after its request gave up is discarded as stale (counted by
//! [`Xenstore::stale_replies`]) instead of being taken for the answer to the next
//! request. Watch events that arrive while a reply is awaited are queued in order (a
//! full queue is an error, not a silent drop).
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
/// Bytes of an error reply's errno name kept in [`XsError::Xenstore`] (the names in
/// xs_wire.h's `xsd_errors` are far shorter; a longer one is cut on a char boundary).
pub const ERRNO_MAX: usize = 32;
/// Most payload bytes drained after a header that claims more than [`PAYLOAD_MAX`]
/// (16 times the limit): enough to step over a real oversized message, bounded so that
/// a corrupt length cannot make the client discard without end.
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
    /// Watch events came faster than they were taken.
    EventQueueFull,
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
            XsError::EventQueueFull => {
                write!(
                    f,
                    "xenstore: more than {EVENT_QUEUE} watch events not taken"
                )
            }
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

/// A xenstore connection: one request in flight at a time, over the ring page behind
/// `L`.
pub struct Xenstore<L: Link> {
    ring: Duplex<L>,
    next_id: u32,
    events: heapless::Deque<WatchEvent, EVENT_QUEUE>,
    overflowed: bool,
    stale: u64,
    events_dropped: u64,
}

impl<L: Link> Xenstore<L> {
    /// A client on a ring page whose indices the toolstack initialised.
    pub fn new(link: L) -> Self {
        Xenstore {
            ring: Duplex::new(link),
            next_id: 1,
            events: heapless::Deque::new(),
            overflowed: false,
            stale: 0,
            events_dropped: 0,
        }
    }

    /// Replies discarded because they answered no request in flight (they arrived after
    /// their request's deadline).
    pub fn stale_replies(&self) -> u64 {
        self.stale
    }

    /// Watch events dropped because the queue was full (each drop is also reported once
    /// by [`next_event`](Self::next_event) as [`XsError::EventQueueFull`]).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// The link underneath (the model peer, in tests).
    pub fn link(&mut self) -> &mut L {
        self.ring.link()
    }

    /// One message from the ring (header checked, payload read whole).
    ///
    /// A header that claims more than [`PAYLOAD_MAX`] is refused, but its payload is
    /// drained first (up to [`DRAIN_MAX`] bytes, until `deadline`) so that the next
    /// message is read from its header, not from the middle of this one.
    ///
    /// `deadline` bounds the wait for a message to *begin*. Once its first byte is taken,
    /// the rest is read until at least [`MESSAGE_REST_NS`] later: giving up in the middle
    /// would leave the stream inside a message, and every later header would be read
    /// from its payload (xenstored writes whole messages; a short ring only splits them).
    fn receive(&mut self, deadline: u64) -> Result<(Header, Payload), XsError> {
        let mut hb = [0u8; HEADER_LEN];
        let rest = match self.ring.read_exact(&mut hb, deadline) {
            Ok(()) => deadline.max(self.ring.link().now_ns().saturating_add(MESSAGE_REST_NS)),
            Err(DuplexError::TimedOut { got, .. }) if got > 0 => {
                let rest = self.ring.link().now_ns().saturating_add(MESSAGE_REST_NS);
                match self.ring.read_exact(&mut hb[got..], rest) {
                    Ok(()) => rest,
                    Err(DuplexError::TimedOut { got: more, .. }) => {
                        return Err(XsError::Ring(DuplexError::TimedOut {
                            got: got + more,
                            want: HEADER_LEN,
                        }))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let deadline = rest;
        let h = match Header::decode(&hb) {
            Ok(h) => h,
            Err(e) => {
                if let WireError::TooLong { len, .. } = e {
                    self.drain(len.min(DRAIN_MAX), deadline);
                }
                return Err(e.into());
            }
        };
        let mut p = Payload::new();
        // len <= PAYLOAD_MAX, checked by decode.
        let _ = p.resize(h.len as usize, 0);
        self.ring.read_exact(&mut p, deadline)?;
        Ok((h, p))
    }

    /// Read and discard `len` bytes, giving up at `deadline`.
    fn drain(&mut self, mut len: usize, deadline: u64) {
        let mut buf = [0u8; 256];
        while len > 0 {
            let n = len.min(buf.len());
            if self.ring.read_exact(&mut buf[..n], deadline).is_err() {
                return;
            }
            len -= n;
        }
    }

    fn queue_event(&mut self, p: &[u8]) -> Result<(), XsError> {
        let mut it = wire::strings(p, "watch event")?;
        let (path, token) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        let ev = WatchEvent {
            path: heapless::String::try_from(path).map_err(|_| WireError::TooLong {
                what: "watch path",
                len: path.len(),
                max: EVENT_PATH_MAX,
            })?,
            token: heapless::String::try_from(token).map_err(|_| WireError::TooLong {
                what: "watch token",
                len: token.len(),
                max: TOKEN_MAX,
            })?,
        };
        if self.events.push_back(ev).is_err() {
            self.overflowed = true;
            self.events_dropped += 1;
        }
        Ok(())
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
        self.ring.write_all(&msg, REPLY_TIMEOUT_NS)?;
        let deadline = now.saturating_add(REPLY_TIMEOUT_NS);
        loop {
            let (h, p) = self.receive(deadline)?;
            if h.ty == MsgType::WatchEvent as u32 {
                self.queue_event(&p)?;
            } else if h.req_id != id {
                // The answer to a request that timed out: taking it for this one would
                // shift every later reply by one.
                self.stale += 1;
            } else if h.ty == MsgType::Error as u32 {
                let name = wire::strings(&p, "error reply")?.next().unwrap_or("");
                let mut s = heapless::String::new();
                let _ = s.push_str(floor_char_boundary(name, ERRNO_MAX));
                return Err(XsError::Xenstore(s));
            } else if h.ty != ty as u32 {
                return Err(XsError::Protocol {
                    want: (ty as u32, id),
                    got: (h.ty, h.req_id),
                });
            } else {
                return Ok(p);
            }
            // A peer that keeps sending other messages cannot hold us past the deadline.
            if self.ring.link().now_ns() >= deadline {
                return Err(XsError::Ring(DuplexError::TimedOut {
                    got: 0,
                    want: HEADER_LEN,
                }));
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
        wire::check_path(path)?;
        if token.is_empty() || token.len() > TOKEN_MAX || token.contains('\0') {
            return Err(WireError::BadString("watch token (1..=64 bytes, no NUL)").into());
        }
        self.transact(MsgType::Watch, &[path, token], &[])
            .map(|_| ())
    }

    /// The next watch event, waiting until Xen system time `deadline` (`Ok(None)` then).
    /// A reply that arrives meanwhile answers no request: it is discarded as stale.
    pub fn next_event(&mut self, deadline: u64) -> Result<Option<WatchEvent>, XsError> {
        if self.overflowed {
            self.overflowed = false;
            return Err(XsError::EventQueueFull);
        }
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        loop {
            match self.receive(deadline) {
                Ok((h, p)) if h.ty == MsgType::WatchEvent as u32 => {
                    self.queue_event(&p)?;
                    return Ok(self.events.pop_front());
                }
                // No request is in flight: any reply is a late one.
                Ok(_) => self.stale += 1,
                Err(XsError::Ring(DuplexError::TimedOut { got: 0, .. })) => return Ok(None),
                Err(e) => return Err(e),
            }
            if self.ring.link().now_ns() >= deadline {
                return Ok(None);
            }
        }
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
