//! A xenstore client over the xenstore ring page (a domU's `store_mfn`/`store_evtchn`
//! from start_info): read, write, directory, watch and its events.
//!
//! Replies come from dom0's xenstored and are untrusted: a bad header, a payload over
//! the limit, a reply to another request, a stall — each is an error value, never a
//! panic or an endless wait (every wait has a deadline). Watch events that arrive while
//! a reply is awaited are queued in order (a full queue is an error, not a silent drop).

pub mod wire;

use crate::ring::{Duplex, DuplexError, Link};
use wire::{Header, MsgType, WireError, HEADER_LEN, PAYLOAD_MAX};

/// How long a request waits for its reply.
pub const REPLY_TIMEOUT_NS: u64 = 5_000_000_000;
/// Watch events held while waiting for replies.
pub const EVENT_QUEUE: usize = 8;
/// Longest watch path kept (the protocol allows 3072; longer ones are an error here).
pub const EVENT_PATH_MAX: usize = 512;

pub type Payload = heapless::Vec<u8, PAYLOAD_MAX>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsError {
    Wire(WireError),
    Ring(DuplexError),
    /// xenstored answered with an error (its errno name, e.g. "ENOENT").
    Xenstore(heapless::String<32>),
    /// A reply that does not answer our request.
    Protocol {
        want: (u32, u32),
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
            XsError::Xenstore(errno) => write!(f, "xenstore: {errno}"),
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
    pub path: heapless::String<EVENT_PATH_MAX>,
    pub token: heapless::String<64>,
}

pub struct Xenstore<L: Link> {
    ring: Duplex<L>,
    next_id: u32,
    events: heapless::Deque<WatchEvent, EVENT_QUEUE>,
    overflowed: bool,
}

impl<L: Link> Xenstore<L> {
    pub fn new(link: L) -> Self {
        Xenstore {
            ring: Duplex::new(link),
            next_id: 1,
            events: heapless::Deque::new(),
            overflowed: false,
        }
    }

    pub fn link(&mut self) -> &mut L {
        self.ring.link()
    }

    /// One message from the ring (header checked, payload read whole).
    fn receive(&mut self, deadline: u64) -> Result<(Header, Payload), XsError> {
        let mut hb = [0u8; HEADER_LEN];
        self.ring.read_exact(&mut hb, deadline)?;
        let h = Header::decode(&hb)?;
        let mut p = Payload::new();
        // len <= PAYLOAD_MAX, checked by decode.
        let _ = p.resize(h.len as usize, 0);
        self.ring.read_exact(&mut p, deadline)?;
        Ok((h, p))
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
                max: 64,
            })?,
        };
        if self.events.push_back(ev).is_err() {
            self.overflowed = true;
        }
        Ok(())
    }

    fn transact(&mut self, ty: MsgType, strings: &[&str], raw: &[u8]) -> Result<Payload, XsError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let msg = wire::request(ty, id, strings, raw)?;
        let now = self.ring.link().now_ns();
        self.ring.write_all(&msg, REPLY_TIMEOUT_NS)?;
        let deadline = now.saturating_add(REPLY_TIMEOUT_NS);
        loop {
            let (h, p) = self.receive(deadline)?;
            if h.ty == MsgType::WatchEvent as u32 {
                self.queue_event(&p)?;
                continue;
            }
            if h.req_id != id {
                return Err(XsError::Protocol {
                    want: (ty as u32, id),
                    got: (h.ty, h.req_id),
                });
            }
            if h.ty == MsgType::Error as u32 {
                let name = wire::strings(&p, "error reply")?.next().unwrap_or("");
                let mut s = heapless::String::new();
                let _ = s.push_str(&name[..name.len().min(32)]);
                return Err(XsError::Xenstore(s));
            }
            if h.ty != ty as u32 {
                return Err(XsError::Protocol {
                    want: (ty as u32, id),
                    got: (h.ty, h.req_id),
                });
            }
            return Ok(p);
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
        if token.is_empty() || token.len() > 64 || token.contains('\0') {
            return Err(WireError::BadString("watch token (1..=64 bytes, no NUL)").into());
        }
        self.transact(MsgType::Watch, &[path, token], &[])
            .map(|_| ())
    }

    /// The next watch event, waiting until Xen system time `deadline` (`Ok(None)` then).
    pub fn next_event(&mut self, deadline: u64) -> Result<Option<WatchEvent>, XsError> {
        if self.overflowed {
            self.overflowed = false;
            return Err(XsError::EventQueueFull);
        }
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        match self.receive(deadline) {
            Ok((h, p)) if h.ty == MsgType::WatchEvent as u32 => {
                self.queue_event(&p)?;
                Ok(self.events.pop_front())
            }
            Ok((h, _)) => Err(XsError::Protocol {
                want: (MsgType::WatchEvent as u32, 0),
                got: (h.ty, h.req_id),
            }),
            Err(XsError::Ring(DuplexError::TimedOut { got: 0, .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
