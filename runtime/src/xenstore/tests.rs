//! The client against a model xenstored on the other end of the ring, honest and not.

use super::wire::{self, Header, MsgType, HEADER_LEN};
use super::*;
use crate::ring::{Idx, Link, Side};
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Honest,
    /// Replies with a header claiming 5000 bytes.
    OversizedReply,
    /// Replies to request id + 1.
    WrongId,
    /// Sends half a header, then nothing.
    Truncated,
    /// Never answers.
    Silent,
    /// Sends 20 watch events before every reply.
    EventStorm,
}

/// xenstored in miniature: a key/value map and watches, speaking over the page rings.
struct Xenstored {
    req: Vec<u8>,
    rsp: Vec<u8>,
    idx: [u32; 4],
    store: BTreeMap<String, Vec<u8>>,
    watches: Vec<(String, String)>,
    pending_out: std::collections::VecDeque<u8>,
    /// Bytes taken off the req ring, not yet a whole request (xenstored buffers too).
    inbox: Vec<u8>,
    mode: Mode,
    clock: u64,
}

impl Xenstored {
    fn new(mode: Mode) -> Self {
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
            clock: 0,
        }
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
        // Send what fits.
        let room = 1024 - self.idx[3].wrapping_sub(self.idx[2]) as usize;
        for _ in 0..room.min(self.pending_out.len()) {
            let b = self.pending_out.pop_front().unwrap();
            self.rsp[self.idx[3] as usize % 1024] = b;
            self.idx[3] = self.idx[3].wrapping_add(1);
        }
    }
    fn handle(&mut self, h: Header, p: &[u8]) {
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
            Mode::Honest => {}
        }
        let parts: Vec<&[u8]> = p.split(|&b| b == 0).collect();
        let path = String::from_utf8_lossy(parts[0]).to_string();
        match MsgType::from_u32(h.ty) {
            Some(MsgType::Read) => match self.store.get(&path).cloned() {
                Some(v) => self.reply(h.ty, id, &v),
                None => self.reply(MsgType::Error as u32, id, b"ENOENT\0"),
            },
            Some(MsgType::Write) => {
                let v = p[path.len() + 1..].to_vec();
                self.store.insert(path.clone(), v);
                self.reply(h.ty, id, b"OK\0");
                self.fire(&path);
            }
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

fn xs(mode: Mode) -> Xenstore<Xenstored> {
    Xenstore::new(Xenstored::new(mode))
}

#[test]
fn read_write_directory_against_an_honest_xenstored() {
    let mut x = xs(Mode::Honest);
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(&x.read("name").unwrap()[..], b"xenpv-app");
    x.write("data/status", b"running").unwrap();
    assert_eq!(&x.read("data/status").unwrap()[..], b"running");
    let d = x.directory("device").unwrap();
    assert_eq!(wire::strings(&d, "d").unwrap().collect::<Vec<_>>(), ["vif"]);
    assert_eq!(
        x.read("nope"),
        Err(XsError::Xenstore("ENOENT".try_into().unwrap()))
    );
    // A value as big as the protocol allows goes through the 1 KiB rings intact.
    let big: Vec<u8> = (0..4096 - "data/big\0".len())
        .map(|i| (i % 200) as u8 + 1)
        .collect();
    x.write("data/big", &big).unwrap();
    assert_eq!(&x.read("data/big").unwrap()[..], &big[..]);
}

#[test]
fn watches_fire_and_events_queue_behind_replies() {
    let mut x = xs(Mode::Honest);
    x.watch("data", "t1").unwrap();
    let first = x.next_event(u64::MAX).unwrap().unwrap();
    assert_eq!((first.path.as_str(), first.token.as_str()), ("data", "t1"));
    x.write("data/a", b"1").unwrap(); // its event arrives after the reply
    x.write("data/b", b"2").unwrap();
    let paths: Vec<_> = (0..2)
        .map(|_| x.next_event(u64::MAX).unwrap().unwrap().path.to_string())
        .collect();
    assert_eq!(paths, ["data/a", "data/b"]);
    let soon = x.link().clock + 50_000_000;
    assert_eq!(
        x.next_event(soon),
        Ok(None),
        "no event: a deadline, not a hang"
    );
}

#[test]
fn bad_requests_are_refused_before_sending() {
    let mut x = xs(Mode::Honest);
    assert!(matches!(x.read(""), Err(XsError::Wire(_))));
    assert!(matches!(
        x.write("p", &[0; 4096]),
        Err(XsError::Wire(wire::WireError::TooLong { .. }))
    ));
    assert!(x.watch("p", "").is_err());
    assert_eq!(x.link().idx[0], 0, "nothing was written to the ring");
}

#[test]
fn a_hostile_or_silent_xenstored_gives_errors_not_panics_or_hangs() {
    let mut x = xs(Mode::OversizedReply);
    assert!(matches!(
        x.read("domid"),
        Err(XsError::Wire(wire::WireError::TooLong { len: 5000, .. }))
    ));
    let mut x = xs(Mode::WrongId);
    assert!(matches!(x.read("domid"), Err(XsError::Protocol { .. })));
    let mut x = xs(Mode::Truncated);
    assert!(matches!(
        x.read("domid"),
        Err(XsError::Ring(DuplexError::TimedOut { got: 6, want: 16 }))
    ));
    let mut x = xs(Mode::Silent);
    let e = x.read("domid").unwrap_err();
    assert_eq!(e, XsError::Ring(DuplexError::TimedOut { got: 0, want: 16 }));
    assert!(x.link().clock <= REPLY_TIMEOUT_NS + 10_000_000);
}

#[test]
fn an_event_storm_is_an_error_not_a_silent_drop() {
    let mut x = xs(Mode::EventStorm);
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(x.next_event(u64::MAX), Err(XsError::EventQueueFull));
    // The ones that were queued are still delivered in order.
    assert_eq!(
        x.next_event(u64::MAX).unwrap().unwrap().path.as_str(),
        "x/0"
    );
}
