//! netif's rings and response checks against a model netback: honest traffic through
//! the ring many times over, and every hostile response field dropped and counted.

use proptest::prelude::*;
use xenpv_protocol::netfront::{Buffers, Queue, SendError, MAX_FRAME};
use xenpv_protocol::netif::*;
use xenpv_protocol::shared_ring::{FrontRing, SharedRingError};
use xenpv_testkit::netback::{NetMode, Netback};

/// The buffer pages: RX page `i` holds byte `i` everywhere (what a backend copied in),
/// so a packet copied out of the wrong page or offset shows.
struct Pages {
    tx: Vec<[u8; 4096]>,
    rx: Vec<[u8; 4096]>,
}

impl Buffers for Pages {
    fn tx_page(&mut self, id: u16) -> &mut [u8; 4096] {
        &mut self.tx[id as usize]
    }
    fn rx_read(&self, id: u16, offset: u16, out: &mut [u8]) {
        let o = offset as usize;
        out.copy_from_slice(&self.rx[id as usize][o..o + out.len()]);
    }
    fn tx_gref(&self, id: u16) -> u32 {
        1000 + u32::from(id)
    }
    fn rx_gref(&self, id: u16) -> u32 {
        2000 + u32::from(id)
    }
}

/// The frontend's side: the library's queue, its buffers, what it received.
struct Front {
    q: Queue,
    bufs: Pages,
    received: Vec<u16>,
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
        let mut out = [0u8; MAX_FRAME];
        while let Some(n) = self.q.recv(&mut nb.rx[..], &self.bufs, &mut out)? {
            // Every byte from one page (page i holds byte i).
            assert!(out[..n].iter().all(|&b| b == out[0]), "one page per packet");
            self.received.push(n as u16);
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
        // One TX and one RX id answered twice (the second refused).
        (NetMode::Duplicate, |c| c.bad_id == 2),
        (NetMode::OutOfPage, |c| c.out_of_page == 20),
        (NetMode::BadStatus, |c| c.bad_status == 60),
        (NetMode::Flags, |c| c.bad_flags == 20),
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
    /// Whatever 8 bytes the backend writes into an RX slot, the check never panics and
    /// accepts only a posted id with a packet inside its page.
    #[test]
    fn any_rx_response_is_checked(
        mut bytes in prop::array::uniform8(any::<u8>()),
        id in 0u16..300,
        posted in 0usize..256,
    ) {
        let mut ids = RxIds::new();
        for _ in 0..posted {
            ids.take();
        }
        // Ids near the ring's, so that most responses reach the field checks.
        bytes[..2].copy_from_slice(&id.to_le_bytes());
        let r = RxResponse::decode(&bytes);
        match ids.receive(r) {
            Ok(p) => {
                prop_assert!((p.id as usize) < posted);
                prop_assert!(u32::from(p.offset) + u32::from(p.len) <= PAGE);
            }
            Err(Bad::IdOutOfRange { id }) => prop_assert!(id as usize >= IDS),
            Err(Bad::NotInFlight { id }) => prop_assert!(id as usize >= posted),
            Err(_) => prop_assert!((r.id as usize) < posted),
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
        Err(SendError::TooLong { len: 1515 })
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
    assert_eq!(f.q.recv(&mut nb.rx[..], &f.bufs, &mut small), Ok(Some(64)));
    assert_eq!(f.q.counters().out_of_page, 1);
    assert_eq!(f.q.recv(&mut nb.rx[..], &f.bufs, &mut small), Ok(None));
    assert_eq!(f.q.rx_posted(), 254, "both buffers back for reposting");
    f.post(&mut nb);
    assert_eq!(f.q.rx_posted(), 256);
}
