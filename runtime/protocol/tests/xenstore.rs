//! The client against a model xenstored on the other end of the ring, honest and not.

use xenpv_protocol::ring::DuplexError;
use xenpv_protocol::xenstore::wire::{self, MsgType};
use xenpv_protocol::xenstore::*;
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
