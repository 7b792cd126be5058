//! netback in miniature: the backend half of the two netif rings over byte arrays,
//! answering honestly or in the ways a broken or hostile backend can.
//!
//! It consumes TX requests (recording them as "sent", and each frame's slots and GSO
//! extra info as netback reads them) and RX requests (buffers offered), and answers when
//! [`Netback::serve`] runs: every TX request (an extra-info slot with `RSP_NULL`), and as
//! many queued incoming packets as there are buffers, a packet over a page spread over
//! several, with a GSO extra-info slot after its first as netback's `xenvif_rx_skb`
//! writes them (each response in the slot of the request it used).

use std::collections::VecDeque;
use xenpv_protocol::netif::*;
use xenpv_protocol::shared_ring::{PageMem, SLOTS_AT};

/// How the model answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NetMode {
    /// As netback does.
    Honest,
    /// Every response carries the request's id + 300 (past the ring's ids).
    IdOutOfRange,
    /// Every response after the first carries the previous request's id: one id is
    /// answered twice, the last never.
    Duplicate,
    /// RX packets claim 4000 bytes at offset 200.
    OutOfPage,
    /// Statuses no response has (TX 7, RX -9).
    BadStatus,
    /// RX responses carry `NETRXF_gso_prefix` (not negotiated).
    Flags,
    /// TX and RX fail with `RSP_ERROR`.
    Failing,
    /// `rsp_prod` jumps 1000 ahead of the responses written.
    RspProdAhead,
    /// Every RX response says `more_data`: a packet that never ends.
    EndlessChain,
    /// GSO packets' extra-info slots say TCP/IPv6 (not negotiated).
    BadExtra,
    /// TX answered with `RSP_NULL` (the answer to an extra slot) in place of a status.
    NullStatus,
    /// Honest, but each round's TX requests answered last first, as netback answers out
    /// of order when it lets go of grant-mapped pages as their packets are freed.
    Reordered,
}

/// A frame the frontend sent, as netback reads it: its requests and GSO extra info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxFrame {
    /// Its data requests, first to last (the first's size is the frame's).
    pub slots: Vec<TxRequest>,
    /// The GSO slot, if it had one.
    pub gso: Option<ExtraInfo>,
}

/// The model backend and both ring pages.
pub struct Netback {
    /// The TX ring page.
    pub tx: Vec<u8>,
    /// The RX ring page.
    pub rx: Vec<u8>,
    tx_cons: u32,
    tx_prod: u32,
    rx_cons: u32,
    rx_prod: u32,
    /// How it answers.
    pub mode: NetMode,
    /// TX requests consumed, in order.
    pub sent: Vec<TxRequest>,
    /// Frames consumed, in order.
    pub frames: Vec<TxFrame>,
    /// Lengths of packets waiting for RX buffers.
    pub incoming: VecDeque<u16>,
    /// GSO packets waiting for RX buffers: length and segment size.
    pub incoming_gso: VecDeque<(u32, u16)>,
    /// RX buffers offered and not yet used.
    rx_posted: VecDeque<RxRequest>,
    /// The last ids answered (`Duplicate`).
    last: (Option<u16>, Option<u16>),
    /// Times the backend was replaced ([`Netback::replace_backend`]).
    pub replaced: u32,
}

const SLOTS: u32 = 256;

impl Netback {
    /// Two fresh pages (the frontend initialises them).
    pub fn new(mode: NetMode) -> Self {
        Netback {
            tx: vec![0; 4096],
            rx: vec![0; 4096],
            tx_cons: 0,
            tx_prod: 0,
            rx_cons: 0,
            rx_prod: 0,
            mode,
            sent: vec![],
            frames: vec![],
            incoming: VecDeque::new(),
            incoming_gso: VecDeque::new(),
            rx_posted: VecDeque::new(),
            last: (None, None),
            replaced: 0,
        }
    }

    fn tx_rsp(&mut self, r: TxResponse) {
        let at = SLOTS_AT + (self.tx_prod % SLOTS) as usize * TX_SLOT;
        self.tx.write(at, &r.encode());
        self.tx_prod = self.tx_prod.wrapping_add(1);
    }

    fn rx_rsp(&mut self, r: RxResponse) {
        let at = SLOTS_AT + (self.rx_prod % SLOTS) as usize * RX_SLOT;
        self.rx.write(at, &r.encode());
        self.rx_prod = self.rx_prod.wrapping_add(1);
    }

    /// The guest moved to a new domain, and this is the new domain's netback for the
    /// vif: fresh ring pages (the frontend initialises them again), every index at 0,
    /// none of the old buffers posted (their grants went with the old domain), honest.
    /// Packets waiting for buffers stay queued (the peer's traffic arrives at the new
    /// host). The log of what was sent stays, for the test. Returns the RX buffers that
    /// were posted to the old backend and are lost with it.
    pub fn replace_backend(&mut self) -> usize {
        let lost = self.rx_posted.len();
        self.tx = vec![0; 4096];
        self.rx = vec![0; 4096];
        self.tx_cons = 0;
        self.tx_prod = 0;
        self.rx_cons = 0;
        self.rx_prod = 0;
        self.rx_posted.clear();
        self.last = (None, None);
        self.mode = NetMode::Honest;
        self.replaced += 1;
        lost
    }

    /// Take every request pushed and answer as the mode says.
    pub fn serve(&mut self) {
        self.serve_tx();
        self.take_rx_requests();
        self.answer_rx();
        self.answer_rx_gso();
        self.publish();
    }

    /// Read every TX request, gather them into frames (and their GSO slots), answer each.
    fn serve_tx(&mut self) {
        let mut extra_next = false;
        let mut held = Vec::new();
        while self.tx_cons != self.tx.load_u32(0) {
            let mut b = [0u8; TX_SLOT];
            self.tx
                .read(SLOTS_AT + (self.tx_cons % SLOTS) as usize * TX_SLOT, &mut b);
            self.tx_cons = self.tx_cons.wrapping_add(1);
            if extra_next {
                extra_next = false;
                if let Some(f) = self.frames.last_mut() {
                    f.gso = Some(ExtraInfo::decode(&b));
                }
                self.tx_rsp(TxResponse {
                    id: 0xffff,
                    status: RSP_NULL,
                });
                continue;
            }
            let req = TxRequest::decode(&b);
            self.sent.push(req);
            // A frame starts where the previous one's last request had no more_data.
            let continues = self
                .frames
                .last()
                .and_then(|f| f.slots.last())
                .is_some_and(|r| r.flags.contains(TxFlags::MORE_DATA));
            if continues {
                self.frames.last_mut().unwrap().slots.push(req);
            } else {
                self.frames.push(TxFrame {
                    slots: vec![req],
                    gso: None,
                });
                extra_next = req.flags.contains(TxFlags::EXTRA_INFO);
            }
            let (id, status) = match self.mode {
                NetMode::IdOutOfRange => (req.id + 300, RSP_OKAY),
                NetMode::BadStatus => (req.id, 7),
                NetMode::Failing => (req.id, RSP_ERROR),
                NetMode::NullStatus => (req.id, RSP_NULL),
                _ => (answer_id(self.mode, &mut self.last.0, req.id), RSP_OKAY),
            };
            if self.mode == NetMode::Reordered {
                held.push(TxResponse { id, status });
            } else {
                self.tx_rsp(TxResponse { id, status });
            }
        }
        for r in held.into_iter().rev() {
            self.tx_rsp(r);
        }
    }

    /// Queue every RX request (a buffer) posted.
    fn take_rx_requests(&mut self) {
        while self.rx_cons != self.rx.load_u32(0) {
            let mut b = [0u8; RX_SLOT];
            self.rx
                .read(SLOTS_AT + (self.rx_cons % SLOTS) as usize * RX_SLOT, &mut b);
            self.rx_cons = self.rx_cons.wrapping_add(1);
            self.rx_posted.push_back(RxRequest::decode(&b));
        }
    }

    /// Deliver the queued one-slot packets into posted buffers, spoiled as the mode says.
    fn answer_rx(&mut self) {
        while !self.rx_posted.is_empty() && !self.incoming.is_empty() {
            let req = self.rx_posted.pop_front().unwrap();
            let len = self.incoming.pop_front().unwrap();
            let mut r = RxResponse {
                id: answer_id(self.mode, &mut self.last.1, req.id),
                offset: 0,
                flags: RxFlags::empty(),
                status: len as i16,
            };
            match self.mode {
                NetMode::IdOutOfRange => r.id += 300,
                NetMode::OutOfPage => (r.offset, r.status) = (200, 4000),
                NetMode::BadStatus => r.status = -9,
                NetMode::Flags => r.flags = RxFlags::GSO_PREFIX,
                NetMode::EndlessChain => r.flags = RxFlags::MORE_DATA,
                NetMode::Failing => r.status = RSP_ERROR,
                _ => {}
            }
            self.rx_rsp(r);
        }
    }

    /// Deliver the queued GSO packets, each over its pages with an extra-info slot after
    /// the first, once enough buffers are posted.
    fn answer_rx_gso(&mut self) {
        while let Some(&(len, mss)) = self.incoming_gso.front() {
            let data = len.div_ceil(4096) as usize;
            if self.rx_posted.len() < data + 1 {
                break;
            }
            self.incoming_gso.pop_front();
            let mut left = len;
            for k in 0..data {
                let req = self.rx_posted.pop_front().unwrap();
                let chunk = left.min(4096);
                left -= chunk;
                let mut flags = if left > 0 {
                    RxFlags::MORE_DATA
                } else {
                    RxFlags::empty()
                };
                if k == 0 {
                    flags |= RxFlags::EXTRA_INFO | RxFlags::DATA_VALIDATED | RxFlags::CSUM_BLANK;
                }
                if self.mode == NetMode::EndlessChain {
                    flags |= RxFlags::MORE_DATA;
                }
                self.rx_rsp(RxResponse {
                    id: req.id,
                    offset: 0,
                    flags,
                    status: chunk as i16,
                });
                if k == 0 {
                    self.put_gso_slot(mss);
                }
            }
        }
    }

    /// The extra-info slot after a GSO packet's first: it uses up the next request, and
    /// says nothing of it.
    fn put_gso_slot(&mut self, mss: u16) {
        self.rx_posted.pop_front();
        let mut e = ExtraInfo::gso_tcpv4(mss);
        if self.mode == NetMode::BadExtra {
            e.gso_type = 2;
        }
        let at = SLOTS_AT + (self.rx_prod % SLOTS) as usize * RX_SLOT;
        self.rx.write(at, &e.encode());
        self.rx_prod = self.rx_prod.wrapping_add(1);
    }

    /// Publish both rings' responses (`rsp_prod`), past the truth with `RspProdAhead`.
    fn publish(&mut self) {
        let ahead = if self.mode == NetMode::RspProdAhead {
            1000
        } else {
            0
        };
        self.tx.store_u32(8, self.tx_prod.wrapping_add(ahead));
        self.rx.store_u32(8, self.rx_prod.wrapping_add(ahead));
    }
}

/// The id a response carries: the request's, or with `Duplicate` the one before it.
fn answer_id(mode: NetMode, last: &mut Option<u16>, id: u16) -> u16 {
    let answer = last.unwrap_or(id);
    *last = Some(id);
    if mode == NetMode::Duplicate {
        answer
    } else {
        id
    }
}

/// Netfront's buffer pages for a test ([`xenpv_protocol::netfront::Buffers`]): TX page
/// `id` is `tx[id]`, RX page `id` is `rx[id]`; grant references are 1000 + id (TX) and
/// 2000 + id (RX).
pub struct Pages {
    /// The TX pages, one per id.
    pub tx: Vec<[u8; 4096]>,
    /// The RX pages, one per id (what the backend copied in).
    pub rx: Vec<[u8; 4096]>,
}

impl xenpv_protocol::netfront::Buffers for Pages {
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
    /// The pages of a `Vec` are consecutive: any run of ids is.
    fn tx_run(&mut self, first: u16, n: usize) -> Option<&mut [u8]> {
        let first = first as usize;
        self.tx
            .get_mut(first..first.checked_add(n)?)
            .map(|s| s.as_flattened_mut())
    }
}
