//! The xenbus frontend handshake through the real wire client, against a model xenstored
//! that plays the backend: honest, slow, silent, jumping states, writing garbage, and
//! closing mid-traffic (then coming back); transactions that conflict; hostile keys.

use xenpv_protocol::xenbus::{
    self, backend_state, close, connect, probe, Closing, Connecting, Device, ErrorKind, Flavor,
    State, Step, Txn, TXN_TRIES,
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
        format!("{FRONT}: {FRONT}/backend is missing (the domain has no such vif: boot it with --net, or --net N for N vifs)")
    );
    let mut xs = Xenstore::new(Xenstored::new(xenpv_testkit::xenstored::Mode::Honest));
    let e = probe(&mut xs, &Device::new("vbd", 51712)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "device/vbd/51712: device/vbd/51712/backend is missing (the domain has no such disk: boot it with --disk FILE)"
    );
}

/// Only a device's missing `backend` key means the domain was booted without it: any
/// other missing key, or another device's, is said as it is.
#[test]
fn only_a_missing_backend_names_the_runner_option() {
    let missing = |device: &str, key: &str| {
        xenbus::XenbusError::<XsError> {
            device: xenbus::Path::try_from(device).unwrap(),
            kind: ErrorKind::Missing {
                key: xenbus::Path::try_from(key).unwrap(),
            },
        }
        .to_string()
    };
    for (device, key) in [
        ("device/vif/0", "device/vif/0/mac"),
        ("device/vif/1", "device/vif/10/backend"),
        (
            "device/vbd/768",
            "/local/domain/0/backend/vbd/3/768/sectors",
        ),
        ("device/console/0", "device/console/0/backend"),
    ] {
        assert_eq!(missing(device, key), format!("{device}: {key} is missing"));
    }
    assert!(missing("device/vif/3", "device/vif/3/backend")
        .ends_with("(the domain has no such vif: boot it with --net, or --net N for N vifs)"));
}

/// M1: a `control/shutdown` event that arrives while connect waits for the backend is
/// not the handshake's: it is left queued for the application.
#[test]
fn a_shutdown_event_during_connect_is_left_for_its_owner() {
    let mut xs = store(BackendKind::Honest);
    xs.watch("control/shutdown", "shutdown").unwrap();
    let now = xs.link().clock;
    while xs.next_event(now).unwrap().is_some() {}
    // The toolstack asks for shutdown (xl shutdown) just as a vif (re)connects.
    xs.link().set("control/shutdown", b"poweroff");
    run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap();
    let now = xs.link().clock;
    let mut saw = false;
    while let Some(ev) = xs.next_event(now).unwrap() {
        saw |= ev.token.as_str() == "shutdown";
    }
    assert!(saw, "the shutdown event was consumed by xenbus::connect");
}

/// I3: closing removes the watch connect set on the backend's state (xenstored counts
/// watches against a quota; each backend path would use one up for good).
#[test]
fn close_removes_the_backend_state_watch() {
    let mut xs = store(BackendKind::Honest);
    run(&mut xs, Flavor::ConnectAtOnce, 5 * SECOND).unwrap();
    assert_eq!(xs.link().watch_count(), 1);
    let be = probe(&mut xs, &vif()).unwrap();
    let deadline = xs.link().clock + 5 * SECOND;
    close(&mut xs, &vif(), &be, deadline).unwrap();
    assert_eq!(xs.link().watch_count(), 0, "the backend watch is still set");
    // And a failed connect leaves none either (its caller closes).
    let mut xs = store(BackendKind::Silent);
    run(&mut xs, Flavor::ConnectAtOnce, SECOND).unwrap_err();
    let deadline = xs.link().clock + SECOND;
    let _ = close(&mut xs, &vif(), &be, deadline);
    assert_eq!(xs.link().watch_count(), 0, "the backend watch is still set");
}

/// M2: a backend stuck in InitWait costs each step of its connect a few requests and
/// no waiting; the step says when to come back, and the deadline ends it.
#[test]
fn a_stuck_backend_costs_each_connect_step_a_few_requests_and_no_wait() {
    let mut xs = store(BackendKind::StuckInInitWait);
    let be = probe(&mut xs, &vif()).unwrap();
    let t0 = xs.link().clock;
    let mut c = Connecting::new(&vif(), &be, Flavor::ConnectAtOnce, t0 + 3 * SECOND);
    let mut steps = 0;
    let e = loop {
        let (r0, c0) = (xs.link().requests(), xs.link().clock);
        let step = c.step(&mut xs, &mut keys);
        let cost = xs.link().requests() - r0;
        assert!(cost <= 3 + 6, "a step made {cost} requests");
        assert_eq!(xs.link().clock, c0, "a step waited");
        steps += 1;
        match step {
            Step::Pending { wake_at } => {
                assert!(wake_at <= t0 + 3 * SECOND);
                // The application does other work until then.
                xs.link().clock = wake_at.max(xs.link().clock + 1);
            }
            Step::Done => panic!("a stuck backend connected"),
            Step::Failed(e) => break e,
        }
    };
    assert!(steps < 20, "{steps} steps");
    assert!(matches!(
        e.kind,
        ErrorKind::Timeout {
            want: "Connected",
            last: Some(State::InitWait),
            ..
        }
    ));
    assert_eq!(
        c.step(&mut xs, &mut keys),
        Step::Done,
        "a finished machine does nothing"
    );
}

/// The backend of `device/vif/<n>` (n > 0) played by hand: InitWait for Initialising,
/// Connected for Connected, Closed for Closing.
fn play_backend(xs: &mut Xenstore<Xenstored>, n: u32) {
    let back = format!("/local/domain/0/backend/vif/5/{n}/state");
    let front = xs
        .link()
        .get(&format!("device/vif/{n}/state"))
        .map(|v| v.to_vec());
    let next = match front.as_deref() {
        Some(b"1") => b"2",
        Some(b"4") => b"4",
        Some(b"5") => b"6",
        _ => return,
    };
    if xs.link().get(&back) != Some(&next[..]) {
        xs.link().set(&back, next);
    }
}

/// M2: several devices stepped round-robin in one loop: the one whose backend is stuck
/// stays Pending, the others connect (and close) in the meantime.
#[test]
fn devices_stepped_round_robin_connect_while_one_backend_is_stuck() {
    let mut xs = store(BackendKind::StuckInInitWait);
    for n in 1..3u32 {
        let m = xs.link();
        m.set(
            &format!("device/vif/{n}/backend"),
            format!("/local/domain/0/backend/vif/5/{n}").as_bytes(),
        );
        m.set(&format!("device/vif/{n}/backend-id"), b"0");
        m.set(&format!("/local/domain/0/backend/vif/5/{n}/state"), b"1");
    }
    let t0 = xs.link().clock;
    let mut machines: Vec<(u32, Connecting, Option<bool>)> = (0..3)
        .map(|n| {
            let dev = Device::new("vif", n);
            let be = probe(&mut xs, &dev).unwrap();
            (
                n,
                Connecting::new(&dev, &be, Flavor::ConnectAtOnce, t0 + 60 * SECOND),
                None,
            )
        })
        .collect();
    for _round in 0..20 {
        for (n, c, done) in machines.iter_mut() {
            if done.is_some() {
                continue;
            }
            match c.step(&mut xs, &mut keys) {
                Step::Pending { .. } => {}
                Step::Done => *done = Some(true),
                Step::Failed(e) => panic!("vif{n}: {e}"),
            }
            if *n > 0 {
                play_backend(&mut xs, *n);
            }
        }
        // A round of the application's loop.
        xs.link().clock += SECOND / 100;
        let now = xs.link().clock;
        let _ = xs.next_event(now);
    }
    let took = xs.link().clock - t0;
    assert!(took < SECOND, "{took} ns");
    assert_eq!(machines[0].2, None, "vif0's backend is stuck");
    assert_eq!(machines[1].2, Some(true));
    assert_eq!(machines[2].2, Some(true));
    assert_eq!(xs.link().get("device/vif/1/state"), Some(&b"4"[..]));
    // vif1 closes step by step while vif0 is still stuck.
    let dev = Device::new("vif", 1);
    let be = probe(&mut xs, &dev).unwrap();
    let mut c = Closing::new(&dev, &be, xs.link().clock + 20 * SECOND);
    let mut steps = 0;
    loop {
        let r0 = xs.link().requests();
        let step = c.step(&mut xs);
        assert!(xs.link().requests() - r0 <= 3);
        play_backend(&mut xs, 1);
        steps += 1;
        match step {
            Step::Pending { .. } => xs.link().clock += SECOND / 100,
            Step::Done => break,
            Step::Failed(e) => panic!("{e}"),
        }
        assert!(steps < 10);
    }
    assert_eq!(xs.link().get("device/vif/1/state"), Some(&b"6"[..]));
    assert_eq!(
        machines[0].1.step(&mut xs, &mut keys),
        Step::Pending {
            wake_at: xs.link().clock + xenbus::RECHECK_NS
        }
    );
}
