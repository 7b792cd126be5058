//! Issue 24's acceptance property for the xenstore client: whatever mix of watch events,
//! replies, stale replies and malformed messages the model xenstored sends, and whatever
//! xenbus handshakes run meanwhile, an application that reads `control/shutdown` again
//! when its watch fires or when events were lost never misses a change to it, and no
//! request that xenstored applied fails.

use proptest::prelude::*;
use xenpv_protocol::ring::Link;
use xenpv_protocol::xenbus::{close, connect, probe, Device, Flavor, Txn};
use xenpv_protocol::xenstore::wire::MsgType;
use xenpv_protocol::xenstore::{Xenstore, XsError};
use xenpv_testkit::xenstored::{BackendKind, Xenstored};

/// A message the application did not ask for.
#[derive(Clone, Debug)]
enum Junk {
    /// A reply to a request that gave up long ago (`req_id` no request in flight has).
    Stale,
    /// The same, with a payload over the protocol's 4096 bytes.
    StaleOversized,
    /// A watch event whose path is longer than the client keeps.
    LongPath,
    /// A watch event whose token is longer than any token.
    LongToken,
    /// A watch event that is not UTF-8.
    NotUtf8,
    /// A watch event without its final NUL.
    Unterminated,
    /// A watch event with a payload over 4096 bytes.
    OversizedEvent,
    /// A well-formed event for a watch the application does not have.
    Foreign,
}

impl Junk {
    fn bytes(&self, k: u32) -> Vec<u8> {
        let ev = MsgType::WatchEvent as u32;
        let stale_id = 0x4000_0000 + k;
        match self {
            Junk::Stale => Xenstored::message(MsgType::Read as u32, stale_id, b"stale"),
            Junk::StaleOversized => {
                Xenstored::message(MsgType::Write as u32, stale_id, &[b'x'; 5000])
            }
            Junk::LongPath => {
                let p = format!("data/noise/{}\0noise\0", "x".repeat(600));
                Xenstored::message(ev, 0, p.as_bytes())
            }
            Junk::LongToken => {
                let p = format!("data/noise\0{}\0", "t".repeat(100));
                Xenstored::message(ev, 0, p.as_bytes())
            }
            Junk::NotUtf8 => Xenstored::message(ev, 0, b"data/\xff\xfe\0noise\0"),
            Junk::Unterminated => Xenstored::message(ev, 0, b"data/noise\0noise"),
            Junk::OversizedEvent => Xenstored::message(ev, 0, &[b'a'; 4500]),
            Junk::Foreign => Xenstored::message(ev, 0, b"elsewhere\0other-token\0"),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// The toolstack writes `control/shutdown` (`xl shutdown`, or its acknowledgement).
    Shutdown,
    /// The toolstack changes `n` watched nodes (more than the event queue holds, at
    /// times).
    Noise(u8),
    /// The application writes a node: it must succeed (xenstored applies it).
    Write,
    /// The application reads a node.
    Read,
    /// Junk arrives just before the reply to the application's next request.
    BeforeReply(Junk),
    /// Junk arrives now (the application may be waiting for events).
    Now(Junk),
    /// The application handles its watch events.
    Drain,
    /// vif0 is connected and closed again (blocking xenbus handshakes), as at a
    /// detach and re-attach.
    Cycle,
}

fn junk() -> impl Strategy<Value = Junk> {
    prop_oneof![
        Just(Junk::Stale),
        Just(Junk::StaleOversized),
        Just(Junk::LongPath),
        Just(Junk::LongToken),
        Just(Junk::NotUtf8),
        Just(Junk::Unterminated),
        Just(Junk::OversizedEvent),
        Just(Junk::Foreign),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Shutdown),
        2 => (1u8..14).prop_map(Op::Noise),
        2 => Just(Op::Write),
        1 => Just(Op::Read),
        3 => junk().prop_map(Op::BeforeReply),
        2 => junk().prop_map(Op::Now),
        3 => Just(Op::Drain),
        1 => Just(Op::Cycle),
    ]
}

/// What the application knows of `control/shutdown`, and how it learns it.
struct App {
    known: Option<Vec<u8>>,
    epoch: u64,
}

impl App {
    fn reread(&mut self, x: &mut Xenstore<Xenstored>) -> Result<(), TestCaseError> {
        self.known = match x.read("control/shutdown") {
            Ok(v) => Some(v.to_vec()),
            Err(XsError::Xenstore(e)) if e == "ENOENT" => None,
            Err(e) => return Err(TestCaseError::fail(format!("reading it again: {e}"))),
        };
        Ok(())
    }

    /// The application's loop: take every event; read `control/shutdown` again when
    /// its watch fired or when events were lost.
    fn drain(&mut self, x: &mut Xenstore<Xenstored>) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            let now = x.link().clock;
            // xenstore's event channel fired: what xenstored sent is in the ring.
            x.link().wait(now);
            match x.next_event(now) {
                Ok(Some(ev)) if ev.token.as_str() == "shutdown" => self.reread(x)?,
                Ok(Some(_)) => {}
                Ok(None) if x.link().quiet() => break,
                Ok(None) => {}
                Err(XsError::EventsLost) => self.reread(x)?,
                Err(e) => return Err(TestCaseError::fail(format!("next_event: {e}"))),
            }
        }
        if x.lost_epoch() != self.epoch {
            self.epoch = x.lost_epoch();
            self.reread(x)?;
        }
        Ok(())
    }
}

fn keys(t: &mut dyn Txn<Error = XsError>) -> Result<(), XsError> {
    t.write("tx-ring-ref", b"8")?;
    t.write("event-channel", b"3")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn no_shutdown_change_is_lost_and_no_applied_request_fails(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let mut x = Xenstore::new(Xenstored::with_backend(BackendKind::Honest));
        x.watch("control/shutdown", "shutdown").unwrap();
        x.watch("data/noise", "noise").unwrap();
        let mut app = App { known: None, epoch: 0 };
        app.drain(&mut x)?;
        let dev = Device::new("vif", 0);
        for (i, op) in ops.iter().enumerate() {
            let i = i as u32;
            match op {
                Op::Shutdown => x.link().set("control/shutdown", format!("v{i}").as_bytes()),
                Op::Noise(n) => {
                    for k in 0..*n {
                        x.link().set(&format!("data/noise/{i}-{k}"), b"1");
                    }
                }
                Op::Write => {
                    let v = format!("w{i}");
                    let r = x.write("data/app", v.as_bytes());
                    let applied = x.link().get("data/app") == Some(v.as_bytes());
                    prop_assert!(r.is_ok() || !applied, "an applied write failed: {r:?}");
                    prop_assert!(r.is_ok(), "the write failed: {r:?}");
                }
                Op::Read => {
                    let r = x.read("domid");
                    prop_assert_eq!(r.as_deref(), Ok(&b"5"[..]));
                }
                Op::BeforeReply(j) => {
                    let b = j.bytes(i);
                    x.link().before_next_reply.extend(b);
                }
                Op::Now(j) => {
                    let b = j.bytes(i);
                    x.link().inject(&b);
                }
                Op::Drain => {
                    app.drain(&mut x)?;
                    let truth = x.link().get("control/shutdown").map(|v| v.to_vec());
                    prop_assert_eq!(&app.known, &truth, "after op {}", i);
                }
                Op::Cycle => {
                    let be = probe(&mut x, &dev).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let deadline = x.link().clock + 10_000_000_000;
                    connect(&mut x, &dev, &be, Flavor::ConnectAtOnce, deadline, &mut keys)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let deadline = x.link().clock + 10_000_000_000;
                    close(&mut x, &dev, &be, deadline)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    // The toolstack re-attaches the backend.
                    let back = format!("{}/state", be.path);
                    x.link().set(&back, b"1");
                }
            }
        }
        // Whatever was still in flight arrives; the application's last look is right.
        app.drain(&mut x)?;
        let truth = x.link().get("control/shutdown").map(|v| v.to_vec());
        prop_assert_eq!(&app.known, &truth);
    }
}
