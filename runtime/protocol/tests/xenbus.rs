//! The xenbus frontend handshake through the real wire client, against a model xenstored
//! that plays the backend: honest, slow, silent, jumping states, writing garbage, and
//! closing mid-traffic (then coming back); transactions that conflict; hostile keys.

use xenpv_protocol::xenbus::{
    self, backend_state, close, connect, probe, Device, ErrorKind, Flavor, State, Txn, TXN_TRIES,
};
use xenpv_protocol::xenstore::{Xenstore, XsError};
use xenpv_testkit::xenstored::{BackendKind, Xenstored, BACK, FRONT};

const SECOND: u64 = 1_000_000_000;

fn store(kind: BackendKind) -> Xenstore<Xenstored> {
    Xenstore::new(Xenstored::with_backend(kind))
}

fn vif() -> Device {
    Device::new("vif", 0)
}

/// What netfront would publish (a ring and an event channel).
fn keys(t: &mut dyn Txn<Error = XsError>) -> Result<(), XsError> {
    t.write("tx-ring-ref", b"8")?;
    t.write("rx-ring-ref", b"9")?;
    t.write("event-channel", b"3")?;
    t.write("request-rx-copy", b"1")
}

#[allow(clippy::result_large_err)] // the error carries full paths (see xenbus.rs)
fn run(
    xs: &mut Xenstore<Xenstored>,
    flavor: Flavor,
    within: u64,
) -> Result<(), xenbus::XenbusError<XsError>> {
    let be = probe(xs, &vif())?;
    let deadline = xs.link().clock + within;
    connect(xs, &vif(), &be, flavor, deadline, &mut keys)
}

fn front_state(xs: &mut Xenstore<Xenstored>) -> Option<Vec<u8>> {
    xs.link().get(&format!("{FRONT}/state")).map(|v| v.to_vec())
}

#[test]
fn an_honest_backend_connects_and_gets_the_keys() {
    let mut xs = store(BackendKind::Honest);
    let be = probe(&mut xs, &vif()).unwrap();
    assert_eq!((be.path.as_str(), be.domid), (BACK, 0));
    let t0 = xs.link().clock;
    run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap();
    let m = xs.link();
    assert!(m.clock - t0 < SECOND / 2, "took {} ns", m.clock - t0);
    assert_eq!(m.get(&format!("{FRONT}/tx-ring-ref")), Some(&b"8"[..]));
    assert_eq!(m.get(&format!("{FRONT}/event-channel")), Some(&b"3"[..]));
    assert_eq!(m.get(&format!("{BACK}/state")), Some(&b"4"[..]));
    // Initialising, then Connected with the keys in one transaction.
    assert_eq!(m.backend.as_ref().unwrap().front_history, b"14");
    assert_eq!(
        backend_state(&mut xs, &vif(), &be).unwrap(),
        Some(State::Connected)
    );
}

#[test]
fn a_block_style_frontend_says_initialised_first() {
    let mut xs = store(BackendKind::Honest);
    run(&mut xs, Flavor::InitialisedFirst, 5 * SECOND).unwrap();
    assert_eq!(xs.link().backend.as_ref().unwrap().front_history, b"134");
    assert_eq!(front_state(&mut xs).as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_slow_backend_is_waited_for() {
    let mut xs = store(BackendKind::Slow);
    let t0 = xs.link().clock;
    run(&mut xs, Flavor::ConnectAtOnce, 10 * SECOND).unwrap();
    assert!(xs.link().clock - t0 >= 4 * SECOND);
}

#[test]
fn a_silent_backend_is_a_timeout_naming_device_key_and_state() {
    let mut xs = store(BackendKind::Silent);
    let t0 = xs.link().clock;
    let e = run(&mut xs, Flavor::ConnectAtOnce, 3 * SECOND).unwrap_err();
    let took = xs.link().clock - t0;
    assert!(
        (3 * SECOND..4 * SECOND).contains(&took),
        "gave up after {took} ns"
    );
    assert!(matches!(
        e.kind,
        ErrorKind::Timeout {
            want: "InitWait",
            last: Some(State::Initialising),
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        format!("{FRONT}: {BACK}/state did not reach InitWait in time (last Initialising)")
    );
}

#[test]
fn a_backend_that_jumps_to_connected_is_taken_as_ready() {
    let mut xs = store(BackendKind::Jumpy);
    run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap();
    assert_eq!(front_state(&mut xs).as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_state_that_is_none_is_refused_by_name() {
    let mut xs = store(BackendKind::Garbage);
    let e = run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{FRONT}: {BACK}/state: not a xenbus state (0..=8)")
    );
}

#[test]
fn a_backend_closing_mid_traffic_is_noticed_closed_and_reconnected() {
    let mut xs = store(BackendKind::ClosesAfter(2 * SECOND));
    run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap();
    let be = probe(&mut xs, &vif()).unwrap();
    // "Traffic": poll the backend's state as a driver does between batches.
    let mut polls = 0;
    while backend_state(&mut xs, &vif(), &be).unwrap() == Some(State::Connected) {
        let now = xs.link().clock;
        xs.next_event(now + SECOND / 10).unwrap();
        polls += 1;
        assert!(polls < 1000, "the backend never closed");
    }
    assert_eq!(
        backend_state(&mut xs, &vif(), &be).unwrap(),
        Some(State::Closing)
    );
    let deadline = xs.link().clock + 5 * SECOND;
    close(&mut xs, &vif(), &be, deadline).unwrap();
    assert_eq!(front_state(&mut xs).as_deref(), Some(&b"6"[..]));
    // The backend answers Closed; the toolstack re-attaches it (Initialising again).
    let deadline = xs.link().clock + SECOND;
    while backend_state(&mut xs, &vif(), &be).unwrap() != Some(State::Closed) {
        assert!(xs.link().clock < deadline, "the backend never went Closed");
        let now = xs.link().clock;
        xs.next_event(now + SECOND / 10).unwrap();
    }
    xs.link().set(&format!("{BACK}/state"), b"1");
    run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap();
    assert_eq!(
        backend_state(&mut xs, &vif(), &be).unwrap(),
        Some(State::Connected)
    );
    assert_eq!(
        xs.link().backend.as_ref().unwrap().front_history,
        b"1456".iter().chain(b"14").copied().collect::<Vec<_>>()
    );
}

#[test]
fn a_backend_closing_during_the_handshake_stops_it() {
    let mut xs = store(BackendKind::Honest);
    xs.link().set(&format!("{BACK}/state"), b"5");
    let e = run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::BackendClosed {
            state: State::Closing
        }
    );
}

#[test]
fn conflicting_transactions_are_retried_then_given_up() {
    let mut xs = store(BackendKind::Honest);
    xs.link().eagain = 3;
    let be = probe(&mut xs, &vif()).unwrap();
    let mut published = 0;
    let deadline = xs.link().clock + 5 * SECOND;
    connect(
        &mut xs,
        &vif(),
        &be,
        Flavor::ConnectAtOnce,
        deadline,
        &mut |t| {
            published += 1;
            keys(t)
        },
    )
    .unwrap();
    assert_eq!(published, 4, "three EAGAINs, then the commit");
    let mut xs = store(BackendKind::Honest);
    xs.link().eagain = u32::MAX;
    let e = run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflicts { tries: TXN_TRIES });
    // Nothing of the failed transactions landed.
    assert_eq!(xs.link().get(&format!("{FRONT}/tx-ring-ref")), None);
}

#[test]
fn hostile_backend_keys_are_refused_by_name() {
    for (key, value, why) in [
        ("backend-id", &b"70000"[..], "not a domain id"),
        ("backend-id", b"-1", "not a domain id"),
        ("backend-id", b"", "not a domain id"),
        ("backend-id", b"1x", "not a domain id"),
        (
            "backend-id",
            b"123456789",
            "longer than this frontend reads",
        ),
        ("backend", b"backend/vif/5/0", "not an absolute ASCII path"),
        ("backend", &[b'/'; 200], "longer than this frontend reads"),
        (
            "backend",
            "/local/é".as_bytes(),
            "not an absolute ASCII path",
        ),
    ] {
        let mut xs = store(BackendKind::Honest);
        xs.link().set(&format!("{FRONT}/{key}"), value);
        let e = probe(&mut xs, &vif()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{FRONT}: {FRONT}/{key}: ")) && text.contains(why),
            "{key}={value:?}: {text}"
        );
    }
    let mut xs = Xenstore::new(Xenstored::new(xenpv_testkit::xenstored::Mode::Honest));
    let e = probe(&mut xs, &vif()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{FRONT}: {FRONT}/backend is missing")
    );
}
