//! xenstored in miniature: a key/value map and watches, speaking the wire protocol over
//! the page rings, honest or misbehaving in the ways a real one can.
//!
//! It serves requests whenever our side notifies or waits; each wait advances its
//! clock by 10 ms, never past the waiter's deadline. Its store starts with `domid`
//! (`5`), `name` and `device/vif/0/state`.
//!
//! ```
//! use xenpv_protocol::xenstore::Xenstore;
//! use xenpv_testkit::xenstored::{Mode, Xenstored};
//!
//! let mut xs = Xenstore::new(Xenstored::new(Mode::Honest));
//! xs.write("data/x", b"1").unwrap();
//! assert_eq!(&xs.read("data/x").unwrap()[..], b"1");
//! assert_eq!(&xs.read("domid").unwrap()[..], b"5");
//! ```

use std::collections::BTreeMap;
use xenpv_protocol::ring::{Idx, Link, Side};
use xenpv_protocol::xenstore::wire::{Header, MsgType, HEADER_LEN};
use xenpv_protocol::xenstore::EVENT_QUEUE;

/// How the model behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Answers every request as xenstored would.
    Honest,
    /// Replies with a header claiming 5000 bytes, and sends none of them.
    OversizedReply,
    /// Replies to request id + 1.
    WrongId,
    /// Sends half a header, then nothing.
    Truncated,
    /// Never answers.
    Silent,
    /// Sends `EVENT_QUEUE + 4` watch events before every reply.
    EventStorm,
    /// Answers every request with an error whose errno name has a two-byte character
    /// straddling byte 32 (31 ASCII bytes, then `é`).
    ErrorNameMultibyte,
    /// Holds its reply to the first request back until the next request arrives (the
    /// client has given up on it by then), sends it late, then answers honestly.
    LateFirstReply,
    /// Answers the first request with a whole message whose payload is 5000 bytes (over
    /// `PAYLOAD_MAX`), then answers honestly.
    OversizedOnce,
}

/// How the model's backend (for `device/vif/0`) answers the frontend's states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BackendKind {
    /// InitWait when the frontend is Initialising, Connected when it is Initialised or
    /// Connected, Closing/Closed after it; each step one 10 ms tick later.
    Honest,
    /// As honest, each step 2 s later.
    Slow,
    /// Stays Initialising.
    Silent,
    /// Goes straight to Connected when the frontend is Initialising.
    Jumpy,
    /// Writes a state that is none ("9").
    Garbage,
    /// As honest, then goes Closing this many ns after it connected, and Closed once the
    /// frontend closes.
    ClosesAfter(u64),
}

/// The model's backend: its kind, and the transition it is about to make.
#[derive(Clone, Debug)]
pub struct BackendModel {
    /// How it behaves.
    pub kind: BackendKind,
    /// When it connected.
    pub connected_at: Option<u64>,
    /// `(time, state)`: the state it will write at that time.
    pending: Option<(u64, u8)>,
    /// Every state the frontend wrote, in order (as the backend saw them).
    pub front_history: Vec<u8>,
}

/// The frontend's directory the model's backend serves.
pub const FRONT: &str = "device/vif/0";
/// The model backend's directory.
pub const BACK: &str = "/local/domain/0/backend/vif/5/0";

/// The model xenstored.
pub struct Xenstored {
    req: Vec<u8>,
    rsp: Vec<u8>,
    /// The index words, in [`Idx`] order: req_prod, req_cons, rsp_cons, rsp_prod.
    pub idx: [u32; 4],
    store: BTreeMap<String, Vec<u8>>,
    watches: Vec<(String, String)>,
    pending_out: std::collections::VecDeque<u8>,
    /// Bytes taken off the req ring, not yet a whole request (xenstored buffers too).
    inbox: Vec<u8>,
    mode: Mode,
    /// Requests handled so far.
    handled: u32,
    /// A reply held back (`LateFirstReply`).
    held: Vec<u8>,
    /// Xen system time as our side sees it.
    pub clock: u64,
    /// Open transactions: their writes, applied at commit.
    txns: BTreeMap<u32, Vec<(String, Vec<u8>)>>,
    next_tx: u32,
    /// Commits still to refuse with `EAGAIN`.
    pub eagain: u32,
    /// The backend of `device/vif/0`, if the model plays one.
    pub backend: Option<BackendModel>,
}

impl Xenstored {
    /// A model behaving as `mode` says, with a small store and no watches.
    pub fn new(mode: Mode) -> Self {
        let mut store = BTreeMap::new();
        store.insert("domid".into(), b"5".to_vec());
        store.insert("name".into(), b"xenpv-app".to_vec());
        store.insert("device/vif/0/state".into(), b"1".to_vec());
        Xenstored {
            req: vec![0; 1024],
            rsp: vec![0; 1024],
            idx: [0; 4],
            store,
            watches: vec![],
            pending_out: Default::default(),
            inbox: vec![],
            mode,
            handled: 0,
            held: vec![],
            clock: 0,
            txns: BTreeMap::new(),
            next_tx: 1,
            eagain: 0,
            backend: None,
        }
    }

    /// An honest model that also plays the backend of [`FRONT`], behaving as `kind`:
    /// the toolstack's keys are written (`backend`, `backend-id` 0) and the backend is
    /// Initialising.
    pub fn with_backend(kind: BackendKind) -> Self {
        let mut x = Xenstored::new(Mode::Honest);
        x.store.remove(&format!("{FRONT}/state"));
        x.store
            .insert(format!("{FRONT}/backend"), BACK.as_bytes().to_vec());
        x.store.insert(format!("{FRONT}/backend-id"), b"0".to_vec());
        x.store.insert(format!("{BACK}/state"), b"1".to_vec());
        x.backend = Some(BackendModel {
            kind,
            connected_at: None,
            pending: None,
            front_history: vec![],
        });
        x
    }

    /// The value at `key` in the model's store.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.store.get(key).map(|v| v.as_slice())
    }

    /// Set `key` as the toolstack or the backend would (watches fire).
    pub fn set(&mut self, key: &str, value: &[u8]) {
        self.store.insert(key.into(), value.to_vec());
        self.fire(key);
    }

    /// The backend's next move, if it is time for one.
    fn step_backend(&mut self) {
        let Some(mut b) = self.backend.take() else {
            return;
        };
        let state = |x: &Self, k: &str| x.store.get(k).and_then(|v| v.first().copied());
        let fs = state(self, &format!("{FRONT}/state"));
        let bs = state(self, &format!("{BACK}/state"));
        let delay = match b.kind {
            BackendKind::Slow => 2_000_000_000,
            _ => 10_000_000,
        };
        let want = match (b.kind, fs, bs) {
            (BackendKind::Silent, ..) => None,
            (BackendKind::Garbage, Some(b'1'), Some(b'1')) => Some(b'9'),
            (BackendKind::Jumpy, Some(b'1'), Some(b'1')) => Some(b'4'),
            (_, Some(b'1'), Some(b'1' | b'6')) => Some(b'2'),
            (_, Some(b'3' | b'4'), Some(b'2')) => Some(b'4'),
            (BackendKind::ClosesAfter(t), _, Some(b'4'))
                if b.connected_at.is_some_and(|c| self.clock >= c + t) =>
            {
                Some(b'5')
            }
            (_, Some(b'5'), Some(b'4' | b'2')) => Some(b'5'),
            (_, Some(b'6'), Some(b'5')) => Some(b'6'),
            _ => None,
        };
        match (want, b.pending) {
            (None, _) => b.pending = None,
            (Some(w), Some((_, p))) if p == w => {}
            (Some(w), _) => b.pending = Some((self.clock + delay, w)),
        }
        if let Some((at, w)) = b.pending {
            if self.clock >= at {
                b.pending = None;
                if w == b'4' {
                    b.connected_at = Some(self.clock);
                }
                self.set(&format!("{BACK}/state"), &[w]);
            }
        }
        self.backend = Some(b);
    }
    fn reply(&mut self, ty: u32, id: u32, payload: &[u8]) {
        let h = Header {
            ty,
            req_id: id,
            tx_id: 0,
            len: payload.len() as u32,
        };
        self.pending_out.extend(h.encode());
        self.pending_out.extend(payload);
    }
    fn fire(&mut self, changed: &str) {
        let hits: Vec<_> = self
            .watches
            .iter()
            .filter(|(p, _)| changed.starts_with(p.as_str()))
            .cloned()
            .collect();
        for (_, tok) in hits {
            let p = format!("{changed}\0{tok}\0");
            self.reply(MsgType::WatchEvent as u32, 0, p.as_bytes());
        }
    }
    fn serve(&mut self) {
        // Drain the req ring, then handle every complete request.
        while self.idx[1] != self.idx[0] {
            self.inbox.push(self.req[self.idx[1] as usize % 1024]);
            self.idx[1] = self.idx[1].wrapping_add(1);
        }
        while self.inbox.len() >= HEADER_LEN {
            let h = Header::decode(self.inbox[..HEADER_LEN].try_into().unwrap()).unwrap();
            let end = HEADER_LEN + h.len as usize;
            if self.inbox.len() < end {
                break;
            }
            let p: Vec<u8> = self.inbox[HEADER_LEN..end].to_vec();
            self.inbox.drain(..end);
            self.handle(h, &p);
        }
        self.step_backend();
        // Send what fits.
        let room = 1024 - self.idx[3].wrapping_sub(self.idx[2]) as usize;
        for _ in 0..room.min(self.pending_out.len()) {
            let b = self.pending_out.pop_front().unwrap();
            self.rsp[self.idx[3] as usize % 1024] = b;
            self.idx[3] = self.idx[3].wrapping_add(1);
        }
    }
    fn handle(&mut self, h: Header, p: &[u8]) {
        let first = self.handled == 0;
        self.handled += 1;
        // A held reply goes out late, ahead of the answer to the request after it.
        let held = std::mem::take(&mut self.held);
        self.pending_out.extend(held);
        let id = h.req_id;
        match self.mode {
            Mode::Silent => return,
            Mode::OversizedReply => {
                let mut hb = Header {
                    ty: h.ty,
                    req_id: id,
                    tx_id: 0,
                    len: 0,
                }
                .encode();
                hb[12..].copy_from_slice(&5000u32.to_le_bytes());
                self.pending_out.extend(hb);
                return;
            }
            Mode::WrongId => return self.reply(h.ty, id + 1, b"OK\0"),
            Mode::Truncated => return self.pending_out.extend([1u8, 0, 0, 0, 9, 9]),
            Mode::EventStorm => {
                for i in 0..(EVENT_QUEUE + 4) {
                    self.reply(
                        MsgType::WatchEvent as u32,
                        0,
                        format!("x/{i}\0tok\0").as_bytes(),
                    );
                }
            }
            Mode::ErrorNameMultibyte => {
                let name = format!("{}é-and-more\0", "E".repeat(31));
                return self.reply(MsgType::Error as u32, id, name.as_bytes());
            }
            Mode::LateFirstReply if first => {
                let start = self.pending_out.len();
                self.answer(h, p);
                self.held = self.pending_out.drain(start..).collect();
                return;
            }
            Mode::OversizedOnce if first => return self.reply(h.ty, id, &[b'x'; 5000]),
            Mode::Honest | Mode::LateFirstReply | Mode::OversizedOnce => {}
        }
        self.answer(h, p);
    }
    /// A write lands: the store changes, watches fire, the backend notes our state.
    fn commit_write(&mut self, path: String, v: Vec<u8>) {
        if path == format!("{FRONT}/state") {
            if let Some(b) = self.backend.as_mut() {
                b.front_history.extend(v.first());
            }
        }
        self.store.insert(path.clone(), v);
        self.fire(&path);
    }

    /// The honest answer to a request.
    fn answer(&mut self, h: Header, p: &[u8]) {
        let id = h.req_id;
        let parts: Vec<&[u8]> = p.split(|&b| b == 0).collect();
        let path = String::from_utf8_lossy(parts[0]).to_string();
        match MsgType::from_u32(h.ty) {
            Some(MsgType::Read) => match self.store.get(&path).cloned() {
                Some(v) => self.reply(h.ty, id, &v),
                None => self.reply(MsgType::Error as u32, id, b"ENOENT\0"),
            },
            Some(MsgType::Write) if h.tx_id != 0 => {
                let v = p[path.len() + 1..].to_vec();
                match self.txns.get_mut(&h.tx_id) {
                    Some(t) => {
                        t.push((path, v));
                        self.reply(h.ty, id, b"OK\0");
                    }
                    None => self.reply(MsgType::Error as u32, id, b"ENOENT\0"),
                }
            }
            Some(MsgType::Write) => {
                let v = p[path.len() + 1..].to_vec();
                // The reply first, then the watch events (as the model always did).
                self.reply(h.ty, id, b"OK\0");
                self.commit_write(path, v);
            }
            Some(MsgType::TransactionStart) => {
                let t = self.next_tx;
                self.next_tx += 1;
                self.txns.insert(t, vec![]);
                self.reply(h.ty, id, format!("{t}\0").as_bytes());
            }
            Some(MsgType::TransactionEnd) => match self.txns.remove(&h.tx_id) {
                None => self.reply(MsgType::Error as u32, id, b"ENOENT\0"),
                Some(_) if path != "T" => self.reply(h.ty, id, b"OK\0"),
                Some(_) if self.eagain > 0 => {
                    self.eagain -= 1;
                    self.reply(MsgType::Error as u32, id, b"EAGAIN\0");
                }
                Some(writes) => {
                    self.reply(h.ty, id, b"OK\0");
                    for (k, v) in writes {
                        self.commit_write(k, v);
                    }
                }
            },
            Some(MsgType::Directory) => {
                let mut kids: Vec<String> = self
                    .store
                    .keys()
                    .filter_map(|k| {
                        k.strip_prefix(&format!("{path}/"))
                            .map(|r| r.split('/').next().unwrap().to_string())
                    })
                    .collect();
                kids.dedup();
                let body: String = kids.iter().map(|k| format!("{k}\0")).collect();
                self.reply(h.ty, id, body.as_bytes());
            }
            Some(MsgType::Watch) => {
                let tok = String::from_utf8_lossy(parts[1]).to_string();
                self.watches.push((path.clone(), tok));
                self.reply(h.ty, id, b"OK\0");
                self.fire(&path); // xenstored fires a new watch once
            }
            _ => self.reply(MsgType::Error as u32, id, b"EINVAL\0"),
        }
    }
}

impl Link for Xenstored {
    fn size(&self, _: Side) -> u32 {
        1024
    }
    fn index(&self, i: Idx) -> u32 {
        self.idx[i as usize]
    }
    fn set_index(&mut self, i: Idx, v: u32) {
        assert!(matches!(i, Idx::TxProd | Idx::RxCons));
        self.idx[i as usize] = v;
    }
    fn load(&self, side: Side, i: u32) -> u8 {
        match side {
            Side::Tx => self.req[i as usize],
            Side::Rx => self.rsp[i as usize],
        }
    }
    fn store(&mut self, side: Side, i: u32, b: u8) {
        assert_eq!(side, Side::Tx);
        self.req[i as usize] = b;
    }
    fn notify(&mut self) {
        self.serve();
    }
    fn wait(&mut self, deadline: u64) {
        self.clock = (self.clock + 10_000_000).min(deadline.max(self.clock));
        self.serve();
    }
    fn now_ns(&self) -> u64 {
        self.clock
    }
}
