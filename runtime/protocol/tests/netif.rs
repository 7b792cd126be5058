//! netif's rings and response checks against a model netback: honest traffic through
//! the ring many times over, and every hostile response field dropped and counted.

use proptest::prelude::*;
use xenpv_protocol::netfront::{
    Queue, Received, SendError, TxOffload, MAX_CHAIN, MAX_FRAME, RX_FRAME_MAX,
};
use xenpv_protocol::netif::*;
use xenpv_protocol::shared_ring::{FrontRing, SharedRingError};
use xenpv_testkit::netback::{NetMode, Netback, Pages};

/// The frontend's side: the library's queue, its buffers, what it received.
struct Front {
    q: Queue,
    bufs: Pages,
    received: Vec<u16>,
    /// Multi-slot packets: length, GSO segment size, checksum flags.
    received_big: Vec<(usize, Option<u16>, RxFlags)>,
}

impl Front {
    fn new(nb: &mut Netback) -> Front {
        Front {
            q: Queue::new(&mut nb.tx[..], &mut nb.rx[..]),
            bufs: Pages {
                tx: vec![[0; 4096]; IDS],
                rx: (0..IDS).map(|i| [i as u8; 4096]).collect(),
            },
            received: vec![],
            received_big: vec![],
        }
    }

    /// Send up to `n` packets (as many as ids and slots allow); how many.
    fn send(&mut self, nb: &mut Netback, n: usize) -> usize {
        let mut sent = 0;
        while sent < n && self.q.can_send() {
            let len = 60 + self.q.tx_in_flight();
            self.q
                .send(&mut nb.tx[..], &mut self.bufs, len, |b| b.fill(7))
                .unwrap();
            sent += 1;
        }
        self.q.flush(&mut nb.tx[..]);
        sent
    }

    /// Post every free RX id.
    fn post(&mut self, nb: &mut Netback) {
        self.q.refill(&mut nb.rx[..], &self.bufs);
    }

    /// Take every response; the ring's error if its indices are corrupt.
    fn reap(&mut self, nb: &mut Netback) -> Result<(), SharedRingError> {
        self.q.reap_tx(&mut nb.tx[..])?;
        let mut out = vec![0u8; RX_FRAME_MAX];
        while let Some(p) = self.q.recv(&mut nb.rx[..], &self.bufs, &mut out)? {
            let n = p.len;
            if n <= 4096 && p.gso_size.is_none() {
                // Every byte from one page (page i holds byte i).
                assert!(out[..n].iter().all(|&b| b == out[0]), "one page per packet");
                self.received.push(n as u16);
            } else {
                // Each page's bytes whole, in order, from a different page each.
                let chunks: Vec<&[u8]> = out[..n].chunks(4096).collect();
                for c in &chunks {
                    assert!(c.iter().all(|&b| b == c[0]), "a page copied whole");
                }
                assert!(
                    chunks.windows(2).all(|w| w[0][0] != w[1][0]),
                    "pages in turn"
                );
                self.received_big.push((n, p.gso_size, p.csum_flags));
            }
        }
        Ok(())
    }
}

#[test]
fn honest_traffic_goes_round_the_rings_many_times() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut f = Front::new(&mut nb);
    let (mut sent, mut want_rx) = (0, vec![]);
    for round in 0..20u16 {
        sent += f.send(&mut nb, 200);
        let lens: Vec<u16> = (0..150).map(|i| 1 + (round * 150 + i) % 1514).collect();
        nb.incoming.extend(&lens);
        want_rx.extend(lens);
        f.post(&mut nb);
        nb.serve();
        f.reap(&mut nb).unwrap();
    }
    assert_eq!(sent, 4000);
    assert_eq!(nb.sent.len(), 4000);
    assert!(nb.sent.iter().all(|r| r.gref == 1000 + u32::from(r.id)));
    assert_eq!(f.received, want_rx, "every packet, in order, its length");
    assert_eq!(f.q.counters(), Counters::default());
    assert_eq!(f.q.tx_in_flight(), 0);
    // All 256 buffers were posted before the last round; its 150 packets freed 150.
    assert_eq!(f.q.rx_posted(), 256 - 150);
}

#[test]
fn hostile_responses_are_dropped_and_counted_never_followed() {
    for (mode, check) in [
        (
            NetMode::IdOutOfRange,
            (|c: &Counters| c.bad_id == 60) as fn(&Counters) -> bool,
        ),
        // One TX id answered twice (the second refused); on RX every response after
        // the first names the buffer of the slot before its own (19 refused).
        (NetMode::Duplicate, |c| c.bad_id == 1 + 19),
        (NetMode::OutOfPage, |c| c.out_of_page == 20),
        (NetMode::BadStatus, |c| c.bad_status == 60),
        (NetMode::Flags, |c| c.bad_flags == 20),
        // Every TX response is RSP_NULL with no extra slot sent: refused.
        (NetMode::NullStatus, |c| {
            c.bad_status == 40 && c.refused() == 40
        }),
        (NetMode::Failing, |c| c.failed == 60 && c.refused() == 0),
    ] {
        let mut nb = Netback::new(mode);
        let mut f = Front::new(&mut nb);
        assert_eq!(f.send(&mut nb, 40), 40);
        nb.incoming.extend([100u16; 20]);
        f.post(&mut nb);
        nb.serve();
        f.reap(&mut nb).unwrap();
        assert!(check(&f.q.counters()), "{mode:?}: {:?}", f.q.counters());
        assert!(f.received.iter().all(|&l| l == 100), "{mode:?}");
    }
}

#[test]
fn a_response_index_past_the_requests_is_refused() {
    let mut nb = Netback::new(NetMode::RspProdAhead);
    let mut f = Front::new(&mut nb);
    f.send(&mut nb, 3);
    nb.serve();
    assert_eq!(
        f.reap(&mut nb),
        Err(SharedRingError::Corrupt {
            rsp_prod: 1003,
            rsp_cons: 0,
            outstanding: 3
        })
    );
    assert_eq!(f.q.tx_in_flight(), 3, "nothing taken from a corrupt ring");
}

#[test]
fn the_ring_refuses_a_request_when_full_and_notifies_as_ring_h_says() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut r = FrontRing::new(TX_SLOT, &mut nb.tx[..]);
    for _ in 0..256 {
        r.put(&mut nb.tx[..], &[0; TX_SLOT]).unwrap();
    }
    assert_eq!(
        r.put(&mut nb.tx[..], &[0; TX_SLOT]),
        Err(SharedRingError::Full)
    );
    // req_event 1: the first push crosses it.
    assert!(r.push(&mut nb.tx[..]));
    // The backend asks for the next notification far ahead: pushing nothing new, or
    // pushing short of it, does not notify.
    nb.tx[4..8].copy_from_slice(&1000u32.to_le_bytes());
    assert!(!r.push(&mut nb.tx[..]));
}

proptest! {
    /// Whatever 8 bytes the backend writes into an RX slot, the check never panics,
    /// frees the buffer posted in that slot, and accepts only that buffer's id with a
    /// packet inside its page.
    #[test]
    fn any_rx_response_is_checked(
        mut bytes in prop::array::uniform8(any::<u8>()),
        id in 0u16..300,
        posted in 1usize..256,
        slot in 0u32..1000,
    ) {
        let mut ids = RxIds::new();
        let mut at = None;
        for i in 0..posted as u32 {
            let s = slot.wrapping_sub(posted as u32 - 1).wrapping_add(i);
            let got = ids.post(s).unwrap();
            if s == slot {
                at = Some(got);
            }
        }
        let at = at.unwrap();
        // Ids near the ring's, so that most responses reach the field checks.
        bytes[..2].copy_from_slice(&id.to_le_bytes());
        let r = RxResponse::decode(&bytes);
        let got = ids.receive(slot, r);
        prop_assert_eq!(ids.posted(), posted - 1, "the slot's buffer is free again");
        match got {
            Ok(p) => {
                prop_assert_eq!(p.id, at);
                prop_assert!(u32::from(p.offset) + u32::from(p.len) <= PAGE);
                prop_assert_eq!(p.flags - RXF_KNOWN, RxFlags::empty());
            }
            Err(Bad::IdOutOfRange { id }) => prop_assert!(id as usize >= IDS),
            Err(Bad::NotInFlight { id }) => prop_assert_ne!(id, at),
            Err(_) => prop_assert_eq!(r.id, at),
        }
    }
}

#[test]
fn frames_go_out_of_their_own_page_and_refusals_are_values() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut f = Front::new(&mut nb);
    let tx = &mut nb.tx[..];
    assert_eq!(
        f.q.send(tx, &mut f.bufs, MAX_FRAME + 1, |_| ()),
        Err(SendError::TooLong {
            len: 1515,
            limit: MAX_FRAME
        })
    );
    for i in 0..256u16 {
        f.q.send(tx, &mut f.bufs, 100, |b| b.fill(i as u8)).unwrap();
    }
    assert!(!f.q.can_send());
    assert_eq!(f.q.send(tx, &mut f.bufs, 60, |_| ()), Err(SendError::Full));
    f.q.flush(tx);
    nb.serve();
    // Each request names its own page's grant, which holds that frame's bytes.
    for r in &nb.sent {
        assert_eq!(r.gref, 1000 + u32::from(r.id));
        assert!(f.bufs.tx[r.id as usize][..100]
            .iter()
            .all(|&b| b == r.id as u8));
        assert_eq!((r.offset, r.size), (0, 100));
    }
    f.reap(&mut nb).unwrap();
    assert!(f.q.can_send(), "responses free the buffers");
    assert_eq!(f.q.traffic().tx_packets, 256);
    assert_eq!(f.q.traffic().tx_bytes, 25_600);
}

#[test]
fn a_packet_longer_than_the_callers_buffer_is_dropped_and_counted() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut f = Front::new(&mut nb);
    nb.incoming.extend([2000u16, 64]);
    f.post(&mut nb);
    nb.serve();
    let mut small = [0u8; 1514];
    let got = f.q.recv(&mut nb.rx[..], &f.bufs, &mut small).unwrap();
    assert_eq!(got.map(|p| p.len), Some(64));
    assert_eq!(f.q.counters().too_long, 1);
    assert_eq!(f.q.recv(&mut nb.rx[..], &f.bufs, &mut small), Ok(None));
    assert_eq!(f.q.rx_posted(), 254, "both buffers back for reposting");
    f.post(&mut nb);
    assert_eq!(f.q.rx_posted(), 256);
}

#[test]
fn gso_packets_arrive_whole_over_several_pages_between_small_ones() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut f = Front::new(&mut nb);
    let big = [20_000u32, RX_FRAME_MAX as u32, 4097];
    for round in 0..30 {
        nb.incoming.extend([60u16, 1514]);
        nb.incoming_gso.extend(big.iter().map(|&l| (l, 1448)));
        f.post(&mut nb);
        nb.serve();
        f.reap(&mut nb).unwrap();
        assert_eq!(f.q.counters(), Counters::default(), "round {round}");
    }
    assert_eq!(f.received.len(), 60);
    let want: Vec<_> = (0..30)
        .flat_map(|_| {
            big.iter().map(|&l| {
                (
                    l as usize,
                    Some(1448),
                    RxFlags::DATA_VALIDATED | RxFlags::CSUM_BLANK,
                )
            })
        })
        .collect();
    assert_eq!(
        f.received_big, want,
        "every GSO packet, whole, with its segment size"
    );
    assert_eq!(f.q.traffic().rx_multi, 90);
    // Every buffer the packets used (extra-info slots' too) is free or posted again.
    f.post(&mut nb);
    assert_eq!(f.q.rx_posted(), IDS);
}

#[test]
fn a_packet_not_yet_published_whole_waits_and_one_that_never_ends_is_dropped() {
    // Fewer slots than the longest chain published, all saying more_data: nothing is
    // consumed (the rest may come).
    let mut nb = Netback::new(NetMode::EndlessChain);
    let mut f = Front::new(&mut nb);
    nb.incoming.extend([100u16; 5]);
    f.post(&mut nb);
    nb.serve();
    let mut out = vec![0u8; RX_FRAME_MAX];
    assert_eq!(f.q.recv(&mut nb.rx[..], &f.bufs, &mut out), Ok(None));
    assert_eq!(f.q.rx_posted(), IDS, "nothing consumed");
    // More of the same: past MAX_CHAIN slots the chain is dropped and counted, each
    // time, and the buffers come back.
    nb.incoming.extend([100u16; 60]);
    nb.serve();
    assert_eq!(f.q.recv(&mut nb.rx[..], &f.bufs, &mut out), Ok(None));
    let chains = 65 / MAX_CHAIN as u64;
    assert_eq!(f.q.counters().too_long, chains);
    assert_eq!(
        f.q.rx_posted(),
        IDS - (chains * u64::from(MAX_CHAIN)) as usize
    );
}

#[test]
fn an_extra_info_slot_not_negotiated_drops_its_packet_only() {
    let mut nb = Netback::new(NetMode::BadExtra);
    let mut f = Front::new(&mut nb);
    nb.incoming_gso.extend([(9000u32, 1448u16); 3]);
    nb.incoming.extend([70u16; 4]);
    f.post(&mut nb);
    nb.serve();
    f.reap(&mut nb).unwrap();
    assert_eq!(f.q.counters().bad_extra, 3);
    assert_eq!(f.q.counters().refused(), 3);
    assert!(f.received_big.is_empty());
    assert_eq!(f.received, [70; 4]);
}

/// A frame's bytes as the backend reads them: its first request's size, over the pages
/// its requests name, in turn.
fn frame_bytes(bufs: &Pages, slots: &[TxRequest]) -> Vec<u8> {
    let mut got = vec![];
    let mut left = slots.first().map_or(0, |r| r.size as usize);
    for r in slots {
        let n = left.min(4096);
        got.extend_from_slice(&bufs.tx[r.id as usize][..n]);
        left -= n;
    }
    got
}

#[test]
fn a_gso_frame_goes_over_its_pages_with_its_extra_slot_and_all_come_back() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut f = Front::new(&mut nb);
    let frame: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let o = TxOffload {
        flags: TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED,
        gso_mss: Some(1448),
    };
    let mut last_round = 0;
    for _ in 0..40 {
        last_round = nb.frames.len();
        while f.q.can_send_slots(4) {
            f.q.send_copy(&mut nb.tx[..], &mut f.bufs, &frame, o)
                .unwrap();
        }
        f.q.send_page(&mut nb.tx[..], &mut f.bufs, 60, |b| {
            b.fill(1);
            ((), TxOffload::default())
        })
        .unwrap_or(());
        f.q.flush(&mut nb.tx[..]);
        nb.serve();
        f.reap(&mut nb).unwrap();
        assert_eq!(f.q.tx_in_flight(), 0);
        assert_eq!(
            f.q.counters(),
            Counters::default(),
            "RSP_NULL answers accepted"
        );
    }
    let gso = nb.frames.iter().filter(|fr| fr.gso.is_some()).count();
    assert!(gso >= 40 * 60, "{gso}");
    // The last round's frames (the pages are written again each round).
    let last: Vec<_> = nb.frames[last_round..]
        .iter()
        .filter(|fr| fr.gso.is_some())
        .collect();
    assert!(last.len() >= 60);
    for fr in last {
        assert_eq!(fr.gso, Some(ExtraInfo::gso_tcpv4(1448)));
        let sizes: Vec<u16> = fr.slots.iter().map(|r| r.size).collect();
        assert_eq!(
            sizes,
            [10_000, 4096, 1808],
            "the first says the frame's size"
        );
        let flags: Vec<TxFlags> = fr.slots.iter().map(|r| r.flags).collect();
        let first = TxFlags::CSUM_BLANK
            | TxFlags::DATA_VALIDATED
            | TxFlags::MORE_DATA
            | TxFlags::EXTRA_INFO;
        assert_eq!(flags, [first, TxFlags::MORE_DATA, TxFlags::empty()]);
        // The bytes: the pages the requests name, in turn, hold the frame.
        assert_eq!(frame_bytes(&f.bufs, &fr.slots), frame);
    }
    assert_eq!(
        f.q.send_copy(&mut nb.tx[..], &mut f.bufs, &vec![0; 65_536], o),
        Err(SendError::TooLong {
            len: 65_536,
            limit: 65_535
        })
    );
}

/// The frame of `a_gso_frame_goes_over_its_pages…`, sent in place: the same requests,
/// the bytes written straight into pages with consecutive ids. With the backend answering
/// in order or out of order (ids come back scrambled), runs are still found among the
/// free ids; `fill` handed back unrun when there is none (all copied then).
fn gso_in_place(mode: NetMode) -> (u64, u64) {
    let mut nb = Netback::new(mode);
    let mut f = Front::new(&mut nb);
    let frame: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let o = TxOffload {
        flags: TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED,
        gso_mss: Some(1448),
    };
    let fill = |b: &mut [u8]| {
        b.copy_from_slice(&frame);
        ((), o)
    };
    // The backend takes what was sent, its GSO frames checked before their pages are
    // written again.
    let mut checked = 0;
    let mut serve = |f: &mut Front, nb: &mut Netback| {
        f.q.flush(&mut nb.tx[..]);
        nb.serve();
        for fr in nb.frames[checked..].iter().filter(|fr| fr.gso.is_some()) {
            assert_eq!(fr.gso, Some(ExtraInfo::gso_tcpv4(1448)));
            let sizes: Vec<u16> = fr.slots.iter().map(|r| r.size).collect();
            assert_eq!(sizes, [10_000, 4096, 1808]);
            assert!(
                frame_bytes(&f.bufs, &fr.slots) == frame,
                "the pages the requests name hold the frame"
            );
        }
        checked = nb.frames.len();
        f.reap(nb).unwrap();
    };
    for round in 0..40 {
        // A few single pages between, so the ids taken are not all runs; the backend
        // answers part way, so frames are in flight beside free ids.
        let mut k = 0;
        while f.q.can_send_slots(4) && k < 200 {
            k += 1;
            if k % 7 == 0 {
                serve(&mut f, &mut nb);
            }
            if (k + round) % 5 == 0 {
                f.q.send(&mut nb.tx[..], &mut f.bufs, 60, |b| b.fill(1))
                    .unwrap();
                continue;
            }
            if let Err((e, fill)) =
                f.q.send_in_place(&mut nb.tx[..], &mut f.bufs, frame.len(), fill)
            {
                assert_eq!(e, SendError::NoRun { pages: 3 });
                let mut b = vec![0; frame.len()];
                fill(&mut b);
                f.q.send_copy(&mut nb.tx[..], &mut f.bufs, &b, o).unwrap();
            }
        }
        serve(&mut f, &mut nb);
        assert_eq!(f.q.tx_in_flight(), 0);
        assert_eq!(f.q.counters(), Counters::default());
    }
    let t = f.q.traffic();
    assert_eq!(t.tx_in_place + t.tx_copied, t.tx_gso);
    (t.tx_in_place, t.tx_copied)
}

#[test]
fn a_gso_frame_is_written_in_place_in_free_pages_with_consecutive_ids() {
    let (in_place, copied) = gso_in_place(NetMode::Honest);
    eprintln!("in order: {in_place} in place, {copied} copied");
    assert!(in_place >= 40 * 45, "{in_place} in place, {copied} copied");
    // Answered out of order, the free ids are scrambled; runs are still found.
    let (in_place, copied) = gso_in_place(NetMode::Reordered);
    eprintln!("out of order: {in_place} in place, {copied} copied");
    assert!(
        in_place >= 40 * 45 && copied * 20 <= in_place,
        "{in_place} in place, {copied} copied"
    );
    let mut nb = Netback::new(NetMode::Honest);
    let mut f = Front::new(&mut nb);
    let o = TxOffload::default();
    let mut big = |len| {
        f.q.send_in_place(&mut nb.tx[..], &mut f.bufs, len, |_| ((), o))
            .map_err(|(e, _)| e)
    };
    assert_eq!(
        big(65_536),
        Err(SendError::TooLong {
            len: 65_536,
            limit: 65_535
        })
    );
}

#[test]
fn tx_ids_find_a_run_of_free_ids_anywhere_but_across_the_end() {
    let mut ids = TxIds::new();
    assert_eq!(ids.find_run(3), Some(0));
    ids.take_run(0, 3);
    // Looked for after the last run.
    assert_eq!(ids.find_run(IDS - 3), Some(3));
    assert_eq!(ids.find_run(IDS - 2), None, "fewer free");
    assert_eq!(ids.find_run(0), None);
    ids.take_run(3, IDS - 4);
    // Free: IDS - 1 only; then 1 and 0 come back (out of order).
    for id in [1u16, 0] {
        ids.complete(TxResponse {
            id,
            status: RSP_OKAY,
        })
        .unwrap();
    }
    assert_eq!(
        ids.find_run(2),
        Some(0),
        "0 and 1, whatever order they came back"
    );
    assert_eq!(ids.find_run(3), None, "IDS - 1, 0, 1 crosses the end");
    ids.take_run(0, 2);
    assert_eq!(ids.find_run(1), Some(IDS as u16 - 1));
    ids.take_run(IDS as u16 - 1, 1);
    assert_eq!(ids.free(), 0);
    assert_eq!(ids.take(), None);
}

#[test]
fn received_is_a_plain_value() {
    let r = Received {
        len: 1,
        csum_flags: RxFlags::empty(),
        gso_size: None,
    };
    assert_eq!(r, r.clone());
}
