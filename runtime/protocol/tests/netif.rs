//! netif's rings and response checks against a model netback: honest traffic through
//! the ring many times over, and every hostile response field dropped and counted.

use proptest::prelude::*;
use xenpv_protocol::netif::*;
use xenpv_protocol::shared_ring::{FrontRing, SharedRingError};
use xenpv_testkit::netback::{NetMode, Netback};

/// The frontend's side: both rings, the ids, the counters.
struct Front {
    tx: FrontRing,
    rx: FrontRing,
    tx_ids: TxIds,
    rx_ids: RxIds,
    counters: Counters,
    received: Vec<u16>,
}

impl Front {
    fn new(nb: &mut Netback) -> Front {
        Front {
            tx: FrontRing::new(TX_SLOT, &mut nb.tx[..]),
            rx: FrontRing::new(RX_SLOT, &mut nb.rx[..]),
            tx_ids: TxIds::new(),
            rx_ids: RxIds::new(),
            counters: Counters::default(),
            received: vec![],
        }
    }

    /// Send up to `n` packets (as many as ids and slots allow); how many.
    fn send(&mut self, nb: &mut Netback, n: usize) -> usize {
        let mut sent = 0;
        while sent < n && self.tx.free() > 0 {
            let Some(id) = self.tx_ids.take() else { break };
            let req = TxRequest {
                gref: 1000 + u32::from(id),
                offset: 0,
                flags: 0,
                id,
                size: 60 + id,
            };
            self.tx.put(&mut nb.tx[..], &req.encode()).unwrap();
            sent += 1;
        }
        self.tx.push(&mut nb.tx[..]);
        sent
    }

    /// Post every free RX id.
    fn post(&mut self, nb: &mut Netback) {
        while self.rx.free() > 0 {
            let Some(id) = self.rx_ids.take() else { break };
            let req = RxRequest {
                id,
                gref: 2000 + u32::from(id),
            };
            self.rx.put(&mut nb.rx[..], &req.encode()).unwrap();
        }
        self.rx.push(&mut nb.rx[..]);
    }

    /// Take every response; the ring's error if its indices are corrupt.
    fn reap(&mut self, nb: &mut Netback) -> Result<(), SharedRingError> {
        while self.tx.final_check(&mut nb.tx[..])? > 0 {
            let mut b = [0u8; TX_SLOT];
            self.tx.take(&nb.tx[..], &mut b);
            let r = TxResponse::decode(&b);
            match self.tx_ids.complete(r) {
                Ok(_) if r.status != RSP_OKAY => self.counters.failed += 1,
                Ok(_) => {}
                Err(e) => self.counters.count(e),
            }
        }
        while self.rx.final_check(&mut nb.rx[..])? > 0 {
            let mut b = [0u8; RX_SLOT];
            self.rx.take(&nb.rx[..], &mut b);
            match self.rx_ids.receive(RxResponse::decode(&b)) {
                Ok(p) if p.failed => self.counters.failed += 1,
                Ok(p) => self.received.push(p.len),
                Err(e) => self.counters.count(e),
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
    assert_eq!(f.counters, Counters::default());
    assert_eq!(f.tx_ids.in_flight(), 0);
    // All 256 buffers were posted before the last round; its 150 packets freed 150.
    assert_eq!(f.rx_ids.posted(), 256 - 150);
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
        assert!(check(&f.counters), "{mode:?}: {:?}", f.counters);
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
    assert_eq!(f.tx_ids.in_flight(), 3, "nothing taken from a corrupt ring");
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
