//! netback in miniature: the backend half of the two netif rings over byte arrays,
//! answering honestly or in the ways a broken or hostile backend can.
//!
//! It consumes TX requests (recording them as "sent") and RX requests (buffers offered),
//! and answers when [`Netback::serve`] runs: every TX request, and as many queued
//! incoming packets as there are buffers.

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
    /// RX responses carry `more_data | extra_info`.
    Flags,
    /// TX and RX fail with `RSP_ERROR`.
    Failing,
    /// `rsp_prod` jumps 1000 ahead of the responses written.
    RspProdAhead,
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
    /// Lengths of packets waiting for RX buffers.
    pub incoming: VecDeque<u16>,
    /// RX buffers offered and not yet used.
    rx_posted: VecDeque<RxRequest>,
    /// The last ids answered (`Duplicate`).
    last: (Option<u16>, Option<u16>),
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
            incoming: VecDeque::new(),
            rx_posted: VecDeque::new(),
            last: (None, None),
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

    /// Take every request pushed and answer as the mode says.
    pub fn serve(&mut self) {
        let dup = self.mode == NetMode::Duplicate;
        // `Duplicate`: answer with the id before this one.
        let prev = |last: &mut Option<u16>, id: u16| {
            let answer = last.unwrap_or(id);
            *last = Some(id);
            if dup {
                answer
            } else {
                id
            }
        };
        while self.tx_cons != self.tx.load_u32(0) {
            let mut b = [0u8; TX_SLOT];
            self.tx
                .read(SLOTS_AT + (self.tx_cons % SLOTS) as usize * TX_SLOT, &mut b);
            self.tx_cons = self.tx_cons.wrapping_add(1);
            let req = TxRequest::decode(&b);
            self.sent.push(req);
            let (id, status) = match self.mode {
                NetMode::IdOutOfRange => (req.id + 300, RSP_OKAY),
                NetMode::BadStatus => (req.id, 7),
                NetMode::Failing => (req.id, RSP_ERROR),
                _ => (prev(&mut self.last.0, req.id), RSP_OKAY),
            };
            self.tx_rsp(TxResponse { id, status });
        }
        while self.rx_cons != self.rx.load_u32(0) {
            let mut b = [0u8; RX_SLOT];
            self.rx
                .read(SLOTS_AT + (self.rx_cons % SLOTS) as usize * RX_SLOT, &mut b);
            self.rx_cons = self.rx_cons.wrapping_add(1);
            self.rx_posted.push_back(RxRequest::decode(&b));
        }
        while !self.rx_posted.is_empty() && !self.incoming.is_empty() {
            let req = self.rx_posted.pop_front().unwrap();
            let len = self.incoming.pop_front().unwrap();
            let mut r = RxResponse {
                id: prev(&mut self.last.1, req.id),
                offset: 0,
                flags: 0,
                status: len as i16,
            };
            match self.mode {
                NetMode::IdOutOfRange => r.id += 300,
                NetMode::OutOfPage => (r.offset, r.status) = (200, 4000),
                NetMode::BadStatus => r.status = -9,
                NetMode::Flags => r.flags = RXF_MORE_DATA | RXF_EXTRA_INFO,
                NetMode::Failing => r.status = RSP_ERROR,
                _ => {}
            }
            self.rx_rsp(r);
        }
        let ahead = if self.mode == NetMode::RspProdAhead {
            1000
        } else {
            0
        };
        self.tx.store_u32(8, self.tx_prod.wrapping_add(ahead));
        self.rx.store_u32(8, self.rx_prod.wrapping_add(ahead));
    }
}
