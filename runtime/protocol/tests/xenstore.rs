//! The client against a model xenstored on the other end of the ring, honest and not.

use proptest::prelude::*;
use xenpv_protocol::ring::{DuplexError, Link};
use xenpv_protocol::xenstore::wire::{self, MsgType};
use xenpv_protocol::xenstore::*;
use xenpv_testkit::ring_peer::{Behaviour, Peer};
use xenpv_testkit::strategies::xs_reply_stream;
use xenpv_testkit::xenstored::{Mode, Xenstored};

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
fn remove_takes_the_subtree_and_a_missing_path_is_no_error() {
    let mut x = xs(Mode::Honest);
    x.write("attr/vif/0", b"").unwrap();
    x.write("attr/vif/0/ipv4/0", b"10.0.0.1").unwrap();
    x.write("attr/vif/1", b"").unwrap();
    x.remove("attr/vif/0").unwrap();
    assert!(x.read("attr/vif/0/ipv4/0").is_err());
    assert_eq!(&x.read("attr/vif/1").unwrap()[..], b"");
    x.remove("attr/vif/0").unwrap();
    assert!(matches!(x.remove(""), Err(XsError::Wire(_))));
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
fn a_watch_event_taken_during_a_request_is_told_to_the_link() {
    // The runtime's link wakes the tasks awaiting the port: the request's read took the
    // event and the port's signal with it.
    let mut x = xs(Mode::Honest);
    x.watch("data", "t1").unwrap();
    let _ = x.next_event(u64::MAX).unwrap().unwrap();
    let (mark, told) = (x.events_arrived(), x.link().taken);
    x.write("data/a", b"1").unwrap();
    x.read("domid").unwrap(); // the write's event arrives behind its reply
    assert_eq!(x.events_arrived(), mark + 1);
    assert_eq!(x.link().taken, told + 1, "one event, told once");
    x.read("domid").unwrap();
    assert_eq!(x.link().taken, told + 1, "a reply is not an event");
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
    // A reply to another id answers nothing: discarded, and the request times out.
    let mut x = xs(Mode::WrongId);
    assert_eq!(
        x.read("domid"),
        Err(XsError::Ring(DuplexError::TimedOut { got: 0, want: 16 }))
    );
    assert_eq!(x.stale_replies(), 1);
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
    let epoch = x.lost_epoch();
    assert!(epoch > 0, "the loss moves the epoch on");
    assert_eq!(x.next_event(u64::MAX), Err(XsError::EventsLost));
    assert_eq!(x.events_dropped(), 4);
    // The ones that were queued are still delivered in order.
    assert_eq!(
        x.next_event(u64::MAX).unwrap().unwrap().path.as_str(),
        "x/0"
    );
}

#[test]
fn an_error_name_is_cut_on_a_char_boundary() {
    // 31 ASCII bytes then a two-byte `é`: byte 32 lies inside it.
    let mut x = xs(Mode::ErrorNameMultibyte);
    let want: heapless::String<32> = "E".repeat(31).as_str().try_into().unwrap();
    assert_eq!(x.read("domid"), Err(XsError::Xenstore(want)));
}

#[test]
fn a_reply_after_the_deadline_is_discarded_not_taken_for_the_next() {
    let mut x = xs(Mode::LateFirstReply);
    assert_eq!(
        x.read("domid"),
        Err(XsError::Ring(DuplexError::TimedOut { got: 0, want: 16 }))
    );
    // The late reply to request 1 arrives first; it must not answer request 2.
    assert_eq!(&x.read("name").unwrap()[..], b"xenpv-app");
    assert_eq!(x.stale_replies(), 1);
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(x.stale_replies(), 1);
}

#[test]
fn an_oversized_reply_is_drained_and_the_next_request_succeeds() {
    let mut x = xs(Mode::OversizedOnce);
    assert!(matches!(
        x.read("domid"),
        Err(XsError::Wire(wire::WireError::TooLong { len: 5000, .. }))
    ));
    assert_eq!(&x.read("name").unwrap()[..], b"xenpv-app");
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
}

#[test]
fn a_late_reply_while_waiting_for_events_is_discarded() {
    let mut p = Peer::new(1024, 1024, Behaviour::Honest { per_step: 64 });
    for (ty, body) in [
        (MsgType::Read, &b"late"[..]),
        (MsgType::WatchEvent, b"data/x\0tok\0"),
    ] {
        let h = wire::Header {
            ty: ty as u32,
            req_id: 9,
            tx_id: 0,
            len: body.len() as u32,
        };
        p.to_send.extend(h.encode());
        p.to_send.extend(body);
    }
    let mut x = Xenstore::new(p);
    let ev = x.next_event(1_000_000_000).unwrap().unwrap();
    assert_eq!((ev.path.as_str(), ev.token.as_str()), ("data/x", "tok"));
    assert_eq!(x.stale_replies(), 1);
    let soon = x.link().clock + 5_000_000;
    assert_eq!(x.next_event(soon), Ok(None));
}

#[test]
fn a_header_only_oversized_reply_is_refused_by_the_deadline() {
    // The header claims 5000 bytes and none follow: the drain gives up at the deadline.
    let mut x = xs(Mode::OversizedReply);
    assert!(matches!(
        x.read("domid"),
        Err(XsError::Wire(wire::WireError::TooLong { len: 5000, .. }))
    ));
    assert!(x.link().clock <= REPLY_TIMEOUT_NS);
}

proptest! {
    /// Whatever a hostile xenstored sends, each request ends (answer or error) by its
    /// deadline, without a panic: a message begun before the deadline gets at most
    /// MESSAGE_REST_NS more to finish.
    #[test]
    fn any_reply_stream_ends_each_request_by_its_deadline(stream in xs_reply_stream()) {
        let mut p = Peer::new(1024, 1024, Behaviour::Honest { per_step: 4096 });
        p.to_send.extend(stream);
        let mut x = Xenstore::new(p);
        for _ in 0..3 {
            let start = x.link().clock;
            let _ = x.read("domid");
            prop_assert!(x.link().clock <= start + REPLY_TIMEOUT_NS + MESSAGE_REST_NS);
        }
        let soon = x.link().clock + 10_000_000;
        let _ = x.next_event(soon);
        prop_assert!(x.link().clock <= soon + MESSAGE_REST_NS);
    }
}

#[test]
fn watch_tokens_are_checked_at_their_limit_before_sending() {
    let mut x = xs(Mode::Honest);
    let at = "t".repeat(TOKEN_MAX);
    x.watch("data", &at).unwrap();
    let sent = x.link().idx[0];
    for bad in ["t".repeat(TOKEN_MAX + 1), "a\0b".to_string()] {
        assert!(matches!(
            x.watch("data", &bad),
            Err(XsError::Wire(wire::WireError::BadString(_)))
        ));
    }
    assert_eq!(x.link().idx[0], sent, "the refused watches were not sent");
    let ev = x.next_event(u64::MAX).unwrap().unwrap();
    assert_eq!(ev.token.as_str(), at);
}

#[test]
fn an_event_path_over_the_limit_is_dropped_counted_and_the_stream_stays_in_step() {
    let mut x = xs(Mode::Honest);
    x.watch("data", "t").unwrap();
    assert_eq!(
        x.next_event(u64::MAX).unwrap().unwrap().path.as_str(),
        "data"
    );
    let long = format!("data/{}", "x".repeat(EVENT_PATH_MAX));
    x.write(&long, b"1").unwrap(); // its event follows the reply
    assert_eq!(x.next_event(u64::MAX), Err(XsError::EventsLost));
    assert_eq!(x.malformed_events(), 1);
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(x.stale_replies(), 0);
}

#[test]
fn transaction_writes_land_at_commit_and_not_at_abort_or_eagain() {
    let mut x = xs(Mode::Honest);
    let t = x.transaction_start().unwrap();
    x.write_in(t, "data/a", b"1").unwrap();
    assert!(
        matches!(x.read("data/a"), Err(XsError::Xenstore(e)) if e == "ENOENT"),
        "invisible before the commit"
    );
    assert_eq!(x.transaction_end(t, true), Ok(true));
    assert_eq!(&x.read("data/a").unwrap()[..], b"1");
    let t = x.transaction_start().unwrap();
    x.write_in(t, "data/a", b"2").unwrap();
    assert_eq!(x.transaction_end(t, false), Ok(true));
    assert_eq!(&x.read("data/a").unwrap()[..], b"1", "aborted");
    x.link().eagain = 1;
    let t = x.transaction_start().unwrap();
    x.write_in(t, "data/a", b"3").unwrap();
    assert_eq!(x.transaction_end(t, true), Ok(false), "EAGAIN: start again");
    assert_eq!(&x.read("data/a").unwrap()[..], b"1");
}

#[test]
fn a_message_split_by_a_short_ring_is_read_whole_even_past_the_deadline() {
    // An 8-byte ring: the event's 16-byte header and payload come in pieces. A poll
    // with its deadline already passed that finds the first piece must finish the
    // message, not leave the stream in its middle.
    let mut p = Peer::new(1024, 8, Behaviour::Honest { per_step: 64 });
    for path in ["control/shutdown", "device/vif/1"] {
        let body = format!("{path}\0tok\0");
        let h = wire::Header {
            ty: MsgType::WatchEvent as u32,
            req_id: 0,
            tx_id: 0,
            len: body.len() as u32,
        };
        p.to_send.extend(h.encode());
        p.to_send.extend(body.as_bytes());
    }
    let mut x = Xenstore::new(p);
    let mut got = vec![];
    for _ in 0..100 {
        // The peer's next piece, then a poll that does not wait for a new message.
        x.link().wait(u64::MAX);
        let now = x.link().clock;
        if let Some(ev) = x.next_event(now).unwrap() {
            got.push(ev.path.to_string());
        }
    }
    assert_eq!(got, ["control/shutdown", "device/vif/1"]);
}

/// L3: a watch event too long to keep that arrives before a reply is dropped (and
/// counted); the request xenstored applied succeeds.
#[test]
fn a_long_watch_event_before_a_reply_does_not_fail_the_applied_request() {
    let mut x = xs(Mode::Honest);
    x.watch("backend", "be").unwrap();
    let now = x.link().clock;
    while x.next_event(now).unwrap().is_some() {}
    // Another domain creates a node with a long name under the watched path.
    let long = format!("backend/{}", "x".repeat(600));
    x.link().set(&long, b"1");
    let r = x.write("data/state", b"6");
    assert_eq!(x.link().get("data/state"), Some(&b"6"[..]));
    assert_eq!(r, Ok(()), "xenstored applied the write");
    assert_eq!(x.malformed_events(), 1);
    assert_eq!(
        x.next_event(now),
        Err(XsError::EventsLost),
        "the loss is reported"
    );
}

/// L4: a request that stalls half-written (xenstored stops reading its ring) fails, and
/// the requests after it are not read as its tail: the client finishes the stalled
/// message first (its late reply is stale) and every later request is answered right.
#[test]
fn a_request_stalled_half_written_does_not_desynchronise_the_stream() {
    let mut x = xs(Mode::Honest);
    let t0 = x.link().clock;
    x.link().stall_req_until = t0 + REPLY_TIMEOUT_NS + 1_000_000_000;
    let big = vec![b'v'; 2000]; // more than the 1024-byte ring
    assert!(matches!(
        x.write("data/big", &big),
        Err(XsError::Ring(DuplexError::Stalled { written: 1024, .. }))
    ));
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(&x.read("name").unwrap()[..], b"xenpv-app");
    x.write("data/small", b"1").unwrap();
    assert_eq!(x.link().get("data/small"), Some(&b"1"[..]));
}

/// L4: a reply that stops mid-payload past the deadline fails its request, and the
/// stream stays in step: the rest of that reply, when it comes, is skipped as stale.
#[test]
fn a_reply_stopped_mid_payload_does_not_desynchronise_the_stream() {
    let mut x = xs(Mode::Honest);
    let t0 = x.link().clock;
    x.link().out_budget = Some(wire::HEADER_LEN + 2);
    x.link().out_resume_at = t0 + REPLY_TIMEOUT_NS + MESSAGE_REST_NS + 1_000_000_000;
    assert!(matches!(
        x.read("name"),
        Err(XsError::Ring(DuplexError::TimedOut { .. }))
    ));
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(&x.read("name").unwrap()[..], b"xenpv-app");
    assert_eq!(x.stale_replies(), 1);
}

/// A header no message can have (a length past DRAIN_MAX) resets the receive side: what
/// arrived is discarded, the reset and the possible loss of events are reported, and the
/// next request is answered right.
#[test]
fn a_header_that_frames_nothing_resets_the_stream() {
    let mut x = xs(Mode::Honest);
    let mut junk = wire::Header {
        ty: MsgType::Read as u32,
        req_id: 77,
        tx_id: 0,
        len: 0,
    }
    .encode()
    .to_vec();
    junk[12..].copy_from_slice(&u32::MAX.to_le_bytes());
    junk.extend_from_slice(&[0xee; 300]);
    x.link().inject(&junk);
    assert!(matches!(
        x.read("domid"),
        Err(XsError::Wire(wire::WireError::TooLong { .. }))
    ));
    assert_eq!(x.resyncs(), 1);
    assert_eq!(x.lost_epoch(), 1);
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    assert_eq!(&x.read("name").unwrap()[..], b"xenpv-app");
    let now = x.link().clock;
    assert_eq!(x.next_event(now), Err(XsError::EventsLost));
}

#[derive(Clone, Debug)]
enum StallOp {
    ReadDomid,
    ReadName,
    Write(u16),
    BigWrite,
    /// Replies stop after this many bytes, for this many ms.
    PauseReplies(u8, u16),
    /// xenstored stops reading requests for this many ms.
    StallRequests(u16),
}

fn stall_op() -> impl Strategy<Value = StallOp> {
    prop_oneof![
        2 => Just(StallOp::ReadDomid),
        2 => Just(StallOp::ReadName),
        2 => any::<u16>().prop_map(StallOp::Write),
        1 => Just(StallOp::BigWrite),
        1 => (0u8..60, 0u16..8000).prop_map(|(b, ms)| StallOp::PauseReplies(b, ms)),
        1 => (0u16..8000).prop_map(StallOp::StallRequests),
    ]
}

proptest! {
    /// L4, generalised: whatever pauses a xenstored makes mid-reply or mid-request, a
    /// request either fails or gets its own answer (never another's), and once it
    /// answers again every request is answered right.
    #[test]
    fn stalls_never_desynchronise_the_stream(ops in proptest::collection::vec(stall_op(), 1..30)) {
        let mut x = xs(Mode::Honest);
        for op in &ops {
            let now = x.link().clock;
            match op {
                StallOp::ReadDomid => {
                    if let Ok(v) = x.read("domid") {
                        prop_assert_eq!(&v[..], b"5");
                    }
                }
                StallOp::ReadName => {
                    if let Ok(v) = x.read("name") {
                        prop_assert_eq!(&v[..], b"xenpv-app");
                    }
                }
                StallOp::Write(n) => {
                    let v = format!("{n}");
                    if x.write("data/w", v.as_bytes()).is_ok() {
                        prop_assert_eq!(x.link().get("data/w"), Some(v.as_bytes()));
                    }
                }
                StallOp::BigWrite => {
                    let _ = x.write("data/big", &[b'b'; 2000]);
                }
                StallOp::PauseReplies(b, ms) => {
                    x.link().out_budget = Some(*b as usize);
                    x.link().out_resume_at = now + *ms as u64 * 1_000_000;
                }
                StallOp::StallRequests(ms) => {
                    x.link().stall_req_until = now + *ms as u64 * 1_000_000;
                }
            }
        }
        // xenstored answers again: everything is in step.
        let later = x.link().clock + 10_000_000_000;
        x.link().clock = later;
        for _ in 0..2 {
            let (d, n) = (x.read("domid"), x.read("name"));
            prop_assert_eq!(d.as_deref(), Ok(&b"5"[..]));
            prop_assert_eq!(n.as_deref(), Ok(&b"xenpv-app"[..]));
            x.write("data/end", b"1").unwrap();
            prop_assert_eq!(x.link().get("data/end"), Some(&b"1"[..]));
        }
    }
}

/// A new domain's xenstored (after a restore): the same ring page (its indices as the
/// old one left them, with a half reply it never finished), a new store without our
/// watches.
fn restart(x: &mut Xenstore<Xenstored>) {
    let mut idx = x.link().idx;
    // The old xenstored had produced 7 bytes of a reply we never read.
    idx[3] = idx[3].wrapping_add(7);
    let mut fresh = Xenstored::new(Mode::Honest);
    fresh.idx = idx;
    fresh.clock = x.link().clock;
    *x.link() = fresh;
}

#[test]
fn a_new_domain_gets_every_registered_watch_again_and_nothing_else() {
    let mut x = xs(Mode::Honest);
    x.watch("control/shutdown", "c").unwrap();
    x.watch("memory/target", "m").unwrap();
    x.watch("device/vif/0", "v").unwrap();
    // Twice: xenstored refuses it, and it stays registered once.
    assert!(x.watch("memory/target", "m").is_err());
    x.unwatch("device/vif/0", "v").unwrap();
    while let Ok(Some(_)) = x.next_event(0) {}
    assert!(x.quiescent());
    assert_eq!(
        x.watches().collect::<Vec<_>>(),
        [("control/shutdown", "c"), ("memory/target", "m")]
    );
    let epoch = x.lost_epoch();
    restart(&mut x);
    assert_eq!(x.link().watch_count(), 0);
    assert_eq!(x.resume_new(9), (2, 0));
    assert_eq!(x.link().watch_count(), 2);
    assert!(x.lost_epoch() > epoch, "watchers must re-read");
    // The stale bytes were skipped: requests and events work on the new xenstored.
    assert_eq!(x.next_event(u64::MAX), Err(XsError::EventsLost));
    let mut fired: Vec<String> = (0..2)
        .map(|_| x.next_event(u64::MAX).unwrap().unwrap().token.to_string())
        .collect();
    fired.sort();
    assert_eq!(fired, ["c", "m"]);
    x.write("memory/target", b"65536").unwrap();
    let e = x.next_event(u64::MAX).unwrap().unwrap();
    assert_eq!((e.path.as_str(), e.token.as_str()), ("memory/target", "m"));
    assert_eq!(&x.read("domid").unwrap()[..], b"5");
    // A second restore re-sends the same set again.
    restart(&mut x);
    assert_eq!(x.resume_new(11), (2, 0));
    assert_eq!(x.link().watch_count(), 2);
}

#[test]
fn a_half_sent_request_is_not_quiescent() {
    let mut x = xs(Mode::Honest);
    assert!(x.quiescent());
    x.link().stall_req_until = u64::MAX;
    let long = "data/".to_string() + &"x".repeat(1500);
    assert!(x.write(&long, b"v").is_err());
    assert!(!x.quiescent(), "a request stalled half-written");
}
