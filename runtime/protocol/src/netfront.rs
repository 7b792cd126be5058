//! netfront's queue: one TX and one RX ring with persistent buffer pages, as a frontend
//! drives them. Pure: the rings are [`PageMem`]s and the buffer pages a [`Buffers`], so
//! the host tests run it against a model netback and the platform's driver only maps
//! pages, grants them and signals.
//!
//! Buffers are persistent (Unikraft's way, not Mini-OS's grant per packet): TX id `i`
//! and RX id `i` each own buffer page `i`, granted once (TX read-only, RX writable) for
//! as long as the queue lives. A packet is sent from offset 0 of its TX page; a received
//! one is copied out of its RX page (the backend may write that page at any time, so
//! the bytes are copied before anything looks at them) and the page posted again.
//!
//! Everything the backend writes is checked by [`TxIds`]/[`RxIds`]: a bad response is
//! dropped and counted in [`Counters`], never followed; a corrupt `rsp_prod` stops the
//! ring ([`SharedRingError::Corrupt`]) and the driver reports it.
//!
//! ```
//! use xenpv_protocol::netfront::{Buffers, Queue};
//!
//! struct Pages(Vec<[u8; 4096]>);
//! impl Buffers for Pages {
//!     fn tx_page(&mut self, id: u16) -> &mut [u8; 4096] { &mut self.0[id as usize] }
//!     fn rx_read(&self, id: u16, offset: u16, out: &mut [u8]) {
//!         let o = offset as usize;
//!         out.copy_from_slice(&self.0[id as usize][o..o + out.len()]);
//!     }
//!     fn tx_gref(&self, id: u16) -> u32 { 8 + u32::from(id) }
//!     fn rx_gref(&self, id: u16) -> u32 { 300 + u32::from(id) }
//! }
//! let (mut tx, mut rx) = ([0u8; 4096], [0u8; 4096]);
//! let mut bufs = Pages(vec![[0; 4096]; 256]);
//! let mut q = Queue::new(&mut tx[..], &mut rx[..]);
//! q.send(&mut tx[..], &mut bufs, 60, |b| b.fill(0xff)).unwrap();
//! let notify = q.flush(&mut tx[..]);
//! assert!(notify, "the first request crosses req_event 1");
//! ```

use crate::netif::{
    Bad, Counters, RxIds, RxRequest, RxResponse, TxIds, TxRequest, TxResponse, PAGE, RSP_OKAY,
    RX_SLOT, TX_SLOT,
};
use crate::shared_ring::{FrontRing, PageMem, SharedRingError};

/// The largest frame sent: an Ethernet frame of MTU 1500 without its FCS.
pub const MAX_FRAME: usize = 1514;

/// The buffer pages, one per id on each ring.
pub trait Buffers {
    /// TX page `id` (ours; the backend may only read it).
    fn tx_page(&mut self, id: u16) -> &mut [u8; 4096];
    /// Copy `out.len()` bytes from RX page `id` at `offset` (inside the page: the caller
    /// checked it). The backend may be writing the page: copy with volatile reads.
    fn rx_read(&self, id: u16, offset: u16, out: &mut [u8]);
    /// The grant reference of TX page `id`.
    fn tx_gref(&self, id: u16) -> u32;
    /// The grant reference of RX page `id`.
    fn rx_gref(&self, id: u16) -> u32;
}

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Longer than [`MAX_FRAME`].
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Every TX buffer is in flight: reap responses first.
    Full,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendError::TooLong { len } => {
                write!(f, "a frame of {len} bytes, the limit is {MAX_FRAME}")
            }
            SendError::Full => write!(f, "every TX buffer is in flight"),
        }
    }
}

/// Packets and bytes through the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames sent (requests pushed).
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames received and handed on.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Times the backend asked to be notified of new requests.
    pub notifies: u64,
}

/// One TX/RX ring pair with its ids, counters and traffic figures.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: FrontRing,
    rx: FrontRing,
    tx_ids: TxIds,
    rx_ids: RxIds,
    counters: Counters,
    traffic: Traffic,
}

impl Queue {
    /// A queue over freshly initialised ring pages.
    pub fn new(
        tx_ring: &mut (impl PageMem + ?Sized),
        rx_ring: &mut (impl PageMem + ?Sized),
    ) -> Self {
        Queue {
            tx: FrontRing::new(TX_SLOT, tx_ring),
            rx: FrontRing::new(RX_SLOT, rx_ring),
            tx_ids: TxIds::new(),
            rx_ids: RxIds::new(),
            counters: Counters::default(),
            traffic: Traffic::default(),
        }
    }

    /// Responses refused and packets the backend failed.
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// Packets and bytes through the queue.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }
    /// TX buffers in flight.
    pub fn tx_in_flight(&self) -> usize {
        self.tx_ids.in_flight()
    }
    /// RX buffers posted.
    pub fn rx_posted(&self) -> usize {
        self.rx_ids.posted()
    }

    /// Can a frame be sent now (a TX buffer and a ring slot free)?
    pub fn can_send(&self) -> bool {
        self.tx.free() > 0 && self.tx_ids.in_flight() < crate::netif::IDS
    }

    /// Send a frame of `len` bytes that `fill` writes into its buffer (not visible to the
    /// backend until [`Queue::flush`]).
    pub fn send<R>(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &mut impl Buffers,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        if len > MAX_FRAME {
            return Err(SendError::TooLong { len });
        }
        if self.tx.free() == 0 {
            return Err(SendError::Full);
        }
        let id = self.tx_ids.take().ok_or(SendError::Full)?;
        let r = fill(&mut bufs.tx_page(id)[..len]);
        let req = TxRequest {
            gref: bufs.tx_gref(id),
            offset: 0,
            flags: 0,
            id,
            size: len as u16,
        };
        // Cannot fail: a slot was free above and nothing was put since.
        let _ = self.tx.put(tx_ring, &req.encode());
        self.traffic.tx_packets += 1;
        self.traffic.tx_bytes += len as u64;
        Ok(r)
    }

    /// Publish the frames sent; whether to notify the backend.
    pub fn flush(&mut self, tx_ring: &mut (impl PageMem + ?Sized)) -> bool {
        let n = self.tx.push(tx_ring);
        self.traffic.notifies += u64::from(n);
        n
    }

    /// Post every free RX buffer; whether to notify the backend.
    pub fn refill(&mut self, rx_ring: &mut (impl PageMem + ?Sized), bufs: &impl Buffers) -> bool {
        let mut posted = false;
        while self.rx.free() > 0 {
            let Some(id) = self.rx_ids.take() else { break };
            let req = RxRequest {
                id,
                gref: bufs.rx_gref(id),
            };
            let _ = self.rx.put(rx_ring, &req.encode());
            posted = true;
        }
        if !posted {
            return false;
        }
        let n = self.rx.push(rx_ring);
        self.traffic.notifies += u64::from(n);
        n
    }

    /// Take every TX response (freeing its buffer); how many were taken.
    pub fn reap_tx(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
    ) -> Result<u32, SharedRingError> {
        let mut n = 0;
        while self.tx.final_check(tx_ring)? > 0 {
            let mut b = [0u8; TX_SLOT];
            self.tx.take(tx_ring, &mut b);
            n += 1;
            let r = TxResponse::decode(&b);
            match self.tx_ids.complete(r) {
                Ok(_) if r.status != RSP_OKAY => self.counters.failed += 1,
                Ok(_) => {}
                Err(e) => self.counters.count(e),
            }
        }
        Ok(n)
    }

    /// The next packet received, copied into `out` (its length); `Ok(None)` when none is
    /// waiting. Bad responses and failed receives on the way are counted and skipped, a
    /// packet longer than `out` is dropped and counted as [`Bad::OutOfPage`]. The
    /// buffer goes back to the free ids: [`Queue::refill`] posts it again.
    pub fn recv(
        &mut self,
        rx_ring: &mut (impl PageMem + ?Sized),
        bufs: &impl Buffers,
        out: &mut [u8],
    ) -> Result<Option<usize>, SharedRingError> {
        loop {
            if self.rx.pending(rx_ring)? == 0 && self.rx.final_check(rx_ring)? == 0 {
                return Ok(None);
            }
            let mut b = [0u8; RX_SLOT];
            self.rx.take(rx_ring, &mut b);
            match self.rx_ids.receive(RxResponse::decode(&b)) {
                Ok(p) if p.failed => self.counters.failed += 1,
                Ok(p) if usize::from(p.len) > out.len() => self.counters.count(Bad::OutOfPage {
                    id: p.id,
                    offset: p.offset,
                    len: p.len,
                }),
                Ok(p) => {
                    let len = usize::from(p.len);
                    debug_assert!(u32::from(p.offset) + u32::from(p.len) <= PAGE);
                    bufs.rx_read(p.id, p.offset, &mut out[..len]);
                    self.traffic.rx_packets += 1;
                    self.traffic.rx_bytes += len as u64;
                    return Ok(Some(len));
                }
                Err(e) => self.counters.count(e),
            }
        }
    }
}

/// A MAC address as xenstore writes it (`mac` in the frontend's directory:
/// `00:16:3e:00:00:02`); `None` for anything else (six two-digit hex bytes, `:`
/// between them, nothing more).
///
/// ```
/// use xenpv_protocol::netfront::parse_mac;
/// assert_eq!(parse_mac(b"00:16:3e:0a:ff:02"), Some([0, 0x16, 0x3e, 0x0a, 0xff, 2]));
/// assert_eq!(parse_mac(b"00:16:3e:0a:ff"), None);
/// assert_eq!(parse_mac(b"00:16:3e:0a:ff:02:"), None);
/// ```
pub fn parse_mac(v: &[u8]) -> Option<[u8; 6]> {
    if v.len() != 17 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, m) in mac.iter_mut().enumerate() {
        let at = i * 3;
        if i > 0 && v[at - 1] != b':' {
            return None;
        }
        let hex = core::str::from_utf8(&v[at..at + 2]).ok()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *m = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(mac)
}

/// The keys a netfront publishes in its directory (besides its rings and event channel):
/// receive by copy (netback refuses a frontend without it), notify on RX refills, and no
/// checksum offload (we check and fill in every checksum; without the key netback would
/// hand over packets with blank checksums). No scatter-gather, no GSO: one packet, one
/// buffer page.
pub const FEATURES: [(&str, &[u8]); 5] = [
    ("request-rx-copy", b"1"),
    ("feature-rx-notify", b"1"),
    ("feature-no-csum-offload", b"1"),
    ("feature-sg", b"0"),
    ("feature-gso-tcpv4", b"0"),
];
