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

#[test]
fn pending_counts_across_the_wrap_and_refuses_more_than_the_ring() {
    assert_eq!(pending(7, 7, 16), Ok(0));
    assert_eq!(pending(16, 0, 16), Ok(16), "a full ring is not corrupt");
    assert_eq!(
        pending(2, u32::MAX - 13, 16),
        Ok(16),
        "full across the u32 wrap"
    );
    assert_eq!(
        pending(17, 0, 16),
        Err(RingError::Corrupt {
            prod: 17,
            cons: 0,
            size: 16
        })
    );
    assert!(
        pending(0, 1, 16).is_err(),
        "a consumer past the producer is corrupt"
    );
}

proptest! {
    #[test]
    fn pending_is_the_wrapping_distance_when_it_fits(cons in any::<u32>(), n in 0u32..=64) {
        prop_assert_eq!(pending(cons.wrapping_add(n), cons, 64), Ok(n));
        prop_assert!(pending(cons.wrapping_add(65 + n), cons, 64).is_err());
    }
}

#[test]
fn partial_transfers_report_what_moved_and_where_the_index_is() {
    let mut r = VecRing(vec![0; 8]);
    // 5 bytes already in flight: room for 3.
    assert_eq!(produce(&mut r, 5, 0, b"abcdef").unwrap(), (3, 8));
    // A reader with a 2-byte buffer takes 2 of the 8.
    let mut out = [0; 2];
    assert_eq!(consume(&r, 0, 8, &mut out).unwrap(), (2, 2));
    // Reading an empty ring moves nothing.
    assert_eq!(consume(&r, 8, 8, &mut out).unwrap(), (0, 8));
    assert_eq!(produce(&mut r, 8, 8, b"").unwrap(), (0, 8));
}

#[test]
fn a_read_with_nothing_there_returns_at_once() {
    let mut d = Duplex::new(Peer::new(16, 16, Behaviour::Stalled));
    let mut buf = [0; 4];
    assert_eq!(d.read(&mut buf), Ok(0));
    assert_eq!(d.link().waits, 0, "read never waits");
    assert_eq!(d.link().notifies, 0, "nothing consumed, nothing signalled");
}

/// A whole 4 KiB page laid out as `PageLayout` says, the peer's side poked by hand.
struct Page {
    mem: Vec<u8>,
    l: PageLayout,
}

impl Page {
    fn new(l: PageLayout) -> Self {
        Page {
            mem: vec![0; 4096],
            l,
        }
    }
    fn word(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.mem[off..off + 4].try_into().unwrap())
    }
    fn set_word(&mut self, off: usize, v: u32) {
        self.mem[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn ring(&self, side: Side) -> (usize, u32) {
        match side {
            Side::Tx => self.l.tx,
            Side::Rx => self.l.rx,
        }
    }
}

impl Link for Page {
    fn size(&self, side: Side) -> u32 {
        self.ring(side).1
    }
    fn index(&self, i: Idx) -> u32 {
        self.word(self.l.idx[i as usize])
    }
    fn set_index(&mut self, i: Idx, v: u32) {
        self.set_word(self.l.idx[i as usize], v);
    }
    fn load(&self, side: Side, i: u32) -> u8 {
        self.mem[self.ring(side).0 + i as usize]
    }
    fn store(&mut self, side: Side, i: u32, b: u8) {
        let at = self.ring(side).0 + i as usize;
        self.mem[at] = b;
    }
    fn notify(&mut self) {}
    fn wait(&mut self, _: u64) {}
    fn now_ns(&self) -> u64 {
        0
    }
}

/// Through a real page layout, our bytes land in the ring the header says we write, our
/// index words are the ones the header names, and the peer's are read from its words.
fn check_page(
    l: PageLayout,
    out_off: usize,
    out_prod: usize,
    in_off: usize,
    in_prod: usize,
    in_cons: usize,
) {
    let mut d = Duplex::new(Page::new(l));
    d.write_all(b"hello", 0).unwrap();
    let p = d.link();
    assert_eq!(&p.mem[out_off..out_off + 5], b"hello");
    assert_eq!(p.word(out_prod), 5);
    p.mem[in_off..in_off + 2].copy_from_slice(b"hi");
    p.set_word(in_prod, 2);
    let mut buf = [0; 8];
    assert_eq!(d.read(&mut buf), Ok(2));
    assert_eq!(&buf[..2], b"hi");
    assert_eq!(d.link().word(in_cons), 2);
}

#[test]
fn the_console_page_is_used_as_io_console_h_lays_it_out() {
    // struct xencons_interface: in[1024] @0, out[2048] @1024, in_cons @3072,
    // in_prod @3076, out_cons @3080, out_prod @3084; the guest writes `out`.
    check_page(CONSOLE_PAGE, 1024, 3084, 0, 3076, 3072);
}

#[test]
fn the_xenstore_page_is_used_as_io_xs_wire_h_lays_it_out() {
    // struct xenstore_domain_interface: req[1024] @0, rsp[1024] @1024, req_cons @2048,
    // req_prod @2052, rsp_cons @2056, rsp_prod @2060; the guest writes `req`.
    check_page(XENSTORE_PAGE, 0, 2052, 1024, 2060, 2056);
}

#[test]
fn rings_and_index_words_do_not_overlap() {
    for l in [CONSOLE_PAGE, XENSTORE_PAGE] {
        let mut spans = vec![
            (l.tx.0, l.tx.0 + l.tx.1 as usize),
            (l.rx.0, l.rx.0 + l.rx.1 as usize),
        ];
        spans.extend(l.idx.iter().map(|&o| (o, o + 4)));
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
        }
        assert!(spans.last().unwrap().1 <= 4096);
    }
}
