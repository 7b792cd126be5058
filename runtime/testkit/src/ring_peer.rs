//! Model peers for Xen's shared byte rings: the other side of a console or xenstore page
//! in ordinary memory, stepped whenever our side waits, with knobs for bad behaviour
//! (honest and slow, stalled, hostile indices).
//!
//! ```
//! use xenpv_protocol::ring::Duplex;
//! use xenpv_testkit::ring_peer::{Behaviour, Peer};
//!
//! let mut peer = Peer::new(2048, 1024, Behaviour::Honest { per_step: 16 });
//! peer.to_send.extend(b"pong");
//! let mut d = Duplex::new(peer);
//! d.write_all(b"ping", 1_000_000_000).unwrap();
//! let mut got = [0; 4];
//! d.read_exact(&mut got, 1_000_000_000).unwrap(); // the peer steps while we wait
//! assert_eq!(&got, b"pong");
//! assert_eq!(d.link().received, b"ping");
//! ```

use xenpv_protocol::ring::{consume, produce, Idx, Link, RingMem, Side};

/// A ring in ordinary memory.
pub struct VecRing(pub Vec<u8>);

impl RingMem for VecRing {
    fn size(&self) -> u32 {
        self.0.len() as u32
    }
    fn load(&self, i: u32) -> u8 {
        self.0[i as usize]
    }
    fn store(&mut self, i: u32, b: u8) {
        self.0[i as usize] = b;
    }
}

/// What the peer does each time our side waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Consumes up to `per_step` bytes of what we wrote per step, and produces as much of
    /// [`Peer::to_send`] as fits.
    Honest {
        /// Bytes taken off our ring per step.
        per_step: usize,
    },
    /// Never consumes or produces.
    Stalled,
    /// Writes garbage into its indices.
    Hostile {
        /// What it writes into its consumer index on our ring.
        tx_cons: u32,
        /// What it writes into its producer index on its ring.
        rx_prod: u32,
    },
}

/// The other end of a duplex page, in ordinary memory; a [`Link`] for our side.
pub struct Peer {
    /// The ring we write (`Side::Tx`).
    pub tx: Vec<u8>,
    /// The ring we read (`Side::Rx`).
    pub rx: Vec<u8>,
    /// The index words, in [`Idx`] order.
    pub idx: [u32; 4],
    /// Everything the peer has consumed from our ring, in order.
    pub received: Vec<u8>,
    /// Bytes the peer will send us, in order, as room allows.
    pub to_send: std::collections::VecDeque<u8>,
    /// How it behaves on each step.
    pub behaviour: Behaviour,
    /// Xen system time as our side sees it: 1 ms per wait, never past the deadline.
    pub clock: u64,
    /// Times our side signalled the peer.
    pub notifies: u64,
    /// Times our side waited (each wait is one step of the peer).
    pub waits: u64,
}

impl Peer {
    /// A peer with rings of `tx` and `rx` bytes (powers of two), all indices 0.
    pub fn new(tx: usize, rx: usize, behaviour: Behaviour) -> Self {
        Peer {
            tx: vec![0; tx],
            rx: vec![0; rx],
            idx: [0; 4],
            received: vec![],
            to_send: Default::default(),
            behaviour,
            clock: 0,
            notifies: 0,
            waits: 0,
        }
    }
    fn step(&mut self) {
        match self.behaviour {
            Behaviour::Honest { per_step } => {
                let mut buf = vec![0; per_step];
                let r = VecRing(self.tx.clone());
                let (n, c) = consume(&r, self.idx[1], self.idx[0], &mut buf).unwrap();
                self.received.extend_from_slice(&buf[..n]);
                self.idx[1] = c;
                let data: Vec<u8> = self.to_send.iter().copied().collect();
                let mut r = VecRing(std::mem::take(&mut self.rx));
                let (m, p) = produce(&mut r, self.idx[3], self.idx[2], &data).unwrap();
                self.rx = r.0;
                self.to_send.drain(..m);
                self.idx[3] = p;
            }
            Behaviour::Stalled => {}
            Behaviour::Hostile { tx_cons, rx_prod } => {
                self.idx[1] = tx_cons;
                self.idx[3] = rx_prod;
            }
        }
    }
}

fn slot(i: Idx) -> usize {
    i as usize
}

impl Link for Peer {
    fn size(&self, side: Side) -> u32 {
        match side {
            Side::Tx => self.tx.len() as u32,
            Side::Rx => self.rx.len() as u32,
        }
    }
    fn index(&self, i: Idx) -> u32 {
        self.idx[slot(i)]
    }
    fn set_index(&mut self, i: Idx, v: u32) {
        assert!(
            matches!(i, Idx::TxProd | Idx::RxCons),
            "we write only our own indices"
        );
        self.idx[slot(i)] = v;
    }
    fn load(&self, side: Side, i: u32) -> u8 {
        match side {
            Side::Tx => self.tx[i as usize],
            Side::Rx => self.rx[i as usize],
        }
    }
    fn store(&mut self, side: Side, i: u32, b: u8) {
        assert_eq!(side, Side::Tx, "we write only the ring we produce on");
        self.tx[i as usize] = b;
    }
    fn notify(&mut self) {
        self.notifies += 1;
    }
    fn wait(&mut self, deadline_ns: u64) {
        self.waits += 1;
        self.clock = (self.clock + 1_000_000).min(deadline_ns.max(self.clock));
        self.step();
    }
    fn now_ns(&self) -> u64 {
        self.clock
    }
}
