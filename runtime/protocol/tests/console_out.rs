//! The console's output policy against model backends: a stalled backend costs one
//! timeout, not one per write, and every byte that did not go out is counted.
use xenpv_protocol::console_out::ConsoleOut;
use xenpv_protocol::ring::Link;
use xenpv_testkit::ring_peer::{Behaviour, Peer};

const TIMEOUT: u64 = 50_000_000;

#[test]
fn after_a_stall_writes_fail_fast_until_the_backend_moves() {
    let mut c = ConsoleOut::new(Peer::new(2048, 1024, Behaviour::Stalled), TIMEOUT);
    // Fill the ring, then one write that must wait the timeout out.
    assert!(c.send(&[b'a'; 2048]).is_ok());
    let waits0 = c.link().waits;
    assert!(c.send(b"first line after the ring filled\n").is_err());
    let waited = c.link().waits - waits0;
    assert!(
        waited > 10,
        "the first stalled write waits ({waited} waits)"
    );
    // Every later write while stalled: no waiting at all.
    for _ in 0..100 {
        let before = c.link().waits;
        assert!(c.send(b"another line\n").is_err());
        assert_eq!(
            c.link().waits,
            before,
            "a stalled console does not wait again"
        );
    }
    assert!(c.stalled());
    assert_eq!(
        c.lost(),
        33 + 100 * 13,
        "every byte that did not go out is counted"
    );
    // The backend comes back: output flows again and the stall is over.
    c.link().behaviour = Behaviour::Honest { per_step: 4096 };
    c.link().wait(u64::MAX); // the backend drains the ring
    assert!(c.send(b"back\n").is_ok());
    assert!(!c.stalled());
    assert_eq!(c.lost(), 33 + 100 * 13, "nothing more lost");
}

#[test]
fn an_honest_slow_backend_loses_nothing() {
    let mut c = ConsoleOut::new(
        Peer::new(2048, 1024, Behaviour::Honest { per_step: 64 }),
        10_000_000_000,
    );
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in data.chunks(300) {
        c.send(chunk).unwrap();
    }
    for _ in 0..100 {
        c.link().wait(u64::MAX);
    }
    assert_eq!(c.link().received, data);
    assert_eq!(c.lost(), 0);
}
