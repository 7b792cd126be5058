//! Ring index arithmetic and the duplex page, against in-memory rings and model peers.
use proptest::prelude::*;
use xenpv_protocol::ring::*;
use xenpv_testkit::ring_peer::{Behaviour, Peer, VecRing};

#[test]
fn bytes_go_round_the_wrap_in_order() {
    let mut r = VecRing(vec![0; 8]);
    let (mut prod, mut cons) = (u32::MAX - 3, u32::MAX - 3); // wraps the u32 too
    let mut out = vec![];
    for chunk in [&b"hello"[..], b"world", b"!!"] {
        let (n, p) = produce(&mut r, prod, cons, chunk).unwrap();
        assert_eq!(n, chunk.len());
        prod = p;
        let mut buf = [0; 8];
        let (m, c) = consume(&r, cons, prod, &mut buf).unwrap();
        out.extend_from_slice(&buf[..m]);
        cons = c;
    }
    assert_eq!(out, b"helloworld!!");
}

#[test]
fn a_full_ring_takes_nothing_more() {
    let mut r = VecRing(vec![0; 4]);
    let (n, prod) = produce(&mut r, 0, 0, b"abcdef").unwrap();
    assert_eq!((n, prod), (4, 4));
    assert_eq!(produce(&mut r, prod, 0, b"x").unwrap(), (0, 4));
}

#[test]
fn corrupt_indices_are_refused_not_followed() {
    let mut r = VecRing(vec![0; 16]);
    // Peer says it consumed bytes we never produced.
    assert_eq!(
        produce(&mut r, 10, 20, b"x"),
        Err(RingError::Corrupt {
            prod: 10,
            cons: 20,
            size: 16
        })
    );
    // Peer claims to have produced more than the ring holds.
    let mut out = [0; 64];
    assert!(consume(&r, 0, 17, &mut out).is_err());
    assert!(RingError::Corrupt {
        prod: 1,
        cons: 2,
        size: 16
    }
    .to_string()
    .contains("ring of 16"));
}

proptest! {
    /// Whatever indices a peer writes, nothing outside the ring is touched (VecRing
    /// would panic) and a sane pair never loses or reorders bytes.
    #[test]
    fn any_indices_stay_inside(prod in any::<u32>(), cons in any::<u32>(), len in 0usize..40) {
        let mut r = VecRing(vec![0; 16]);
        let data: Vec<u8> = (0..len as u8).collect();
        let _ = produce(&mut r, prod, cons, &data);
        let mut out = [0; 40];
        let _ = consume(&r, cons, prod, &mut out);
        if let Ok((n, p)) = produce(&mut r, prod, prod.wrapping_sub(3), &data) {
            prop_assert!(n <= 13);
            let (m, _) = consume(&r, prod, p, &mut out).unwrap();
            prop_assert_eq!(&out[..m], &data[..n]);
        }
    }
}

#[test]
fn a_long_burst_arrives_complete_and_in_order_through_a_slow_peer() {
    let mut d = Duplex::new(Peer::new(2048, 1024, Behaviour::Honest { per_step: 100 }));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    d.write_all(&data, 10_000_000_000).unwrap();
    // What is still in the ring arrives on later steps.
    for _ in 0..30 {
        d.link().wait(u64::MAX);
    }
    assert_eq!(d.link().received, data);
    assert!(d.link().waits > 900, "it waited for room, never dropped");
}

#[test]
fn a_stalled_peer_gives_an_error_after_the_deadline_not_a_hang() {
    let mut d = Duplex::new(Peer::new(2048, 1024, Behaviour::Stalled));
    let data = vec![7u8; 5000];
    let e = d.write_all(&data, 50_000_000).unwrap_err();
    assert_eq!(
        e,
        DuplexError::Stalled {
            written: 2048,
            len: 5000
        }
    );
    assert!(d.link().waits <= 51);
    let mut buf = [0; 4];
    assert_eq!(
        d.read_exact(&mut buf, 10_000_000),
        Err(DuplexError::TimedOut { got: 0, want: 4 })
    );
}

#[test]
fn hostile_indices_are_refused_whatever_they_are() {
    for (tx_cons, rx_prod) in [(5000, 0), (u32::MAX, 1 << 31), (3, 2000)] {
        let mut d = Duplex::new(Peer::new(
            2048,
            1024,
            Behaviour::Hostile { tx_cons, rx_prod },
        ));
        let _ = d.write_all(b"hello", 1_000_000); // first write may fit
        d.link().wait(u64::MAX); // the peer scribbles
        let w = d.write_all(&[1; 3000], 10_000_000);
        let mut buf = [0; 64];
        let r = d.read(&mut buf);
        assert!(
            matches!(
                w,
                Err(DuplexError::Ring(_)) | Err(DuplexError::Stalled { .. })
            ) || matches!(r, Err(DuplexError::Ring(_))),
            "{tx_cons} {rx_prod}: {w:?} {r:?}"
        );
    }
}

#[test]
fn page_layouts_match_the_headers() {
    // io/console.h: in[1024] out[2048] then in_cons in_prod out_cons out_prod.
    assert_eq!(
        CONSOLE_PAGE.idx,
        [
            1024 + 2048 + 12,
            1024 + 2048 + 8,
            1024 + 2048,
            1024 + 2048 + 4
        ]
    );
    // io/xs_wire.h: req[1024] rsp[1024] then req_cons req_prod rsp_cons rsp_prod.
    assert_eq!(XENSTORE_PAGE.idx, [2048 + 4, 2048, 2048 + 8, 2048 + 12]);
    for l in [CONSOLE_PAGE, XENSTORE_PAGE] {
        assert!(l.tx.1.is_power_of_two() && l.rx.1.is_power_of_two());
        assert!(l.idx.iter().all(|&o| o + 4 <= 4096 && o % 4 == 0));
    }
}

#[test]
fn input_is_read_in_order() {
    let mut p = Peer::new(2048, 16, Behaviour::Honest { per_step: 64 });
    p.to_send
        .extend(b"0123456789abcdefghijklmnopqrstuvwxyz".iter());
    let mut d = Duplex::new(p);
    let mut got = vec![0u8; 36];
    d.read_exact(&mut got, 1_000_000_000).unwrap();
    assert_eq!(&got, b"0123456789abcdefghijklmnopqrstuvwxyz");
}
