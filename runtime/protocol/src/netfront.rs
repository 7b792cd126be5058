//! netfront's queue: one TX and one RX ring with persistent buffer pages, as a frontend
//! drives them. Pure: the rings are [`PageMem`]s and the buffer pages a [`Buffers`], so
//! the host tests run it against a model netback and the platform's driver only maps
//! pages, grants them and signals.
//!
//! Buffers are persistent (Unikraft's way, not Mini-OS's grant per packet): TX id `i`
//! and RX id `i` each own buffer page `i`, granted once (TX read-only, RX writable) for
//! as long as the queue lives. A frame is sent from offset 0 of its TX pages, one page
//! per slot (`NETTXF_more_data` chains them; a TCP packet of several segments carries a
//! GSO extra-info slot, [`ExtraInfo`]); a received one is copied out of its RX pages
//! (the backend may write them at any time, so the bytes are copied before anything
//! looks at them) into one buffer, and the pages posted again. A packet arrives over
//! several slots when the backend uses `feature-sg`/`feature-gso-tcpv4`; it is taken
//! only once all its slots are published, and a chain longer than any frame needs
//! ([`MAX_CHAIN`]) is dropped and counted.
//!
//! Everything the backend writes is checked by [`TxIds`]/[`RxIds`]: a bad response is
//! dropped and counted in [`Counters`], never followed; a corrupt `rsp_prod` stops the
//! ring ([`SharedRingError::Corrupt`]) and the driver reports it.
//!
//! ```
//! use xenpv_protocol::netfront::{Buffers, Queue};
//! use xenpv_protocol::netif::TxFlags;
//! use xenpv_protocol::offload::TxOffload;
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
//! // A 10,000-byte TCP packet of 1,448-byte segments goes over three pages.
//! let o = TxOffload { flags: TxFlags::empty(), gso_mss: Some(1448) };
//! q.send_copy(&mut tx[..], &mut bufs, &[7u8; 10_000], o).unwrap();
//! assert_eq!(q.tx_in_flight(), 4);
//! let notify = q.flush(&mut tx[..]);
//! assert!(notify, "the first request crosses req_event 1");
//! ```

use crate::netif::{
    Bad, Counters, ExtraFlags, ExtraInfo, RxFlags, RxIds, RxRequest, RxResponse, TxFlags, TxIds,
    TxRequest, TxResponse, PAGE, RSP_OKAY, RX_SLOT, TX_SLOT,
};
pub use crate::offload::TxOffload;
use crate::shared_ring::{FrontRing, PageMem, SharedRingError};

/// The largest frame sent without segmentation offload: an Ethernet frame of MTU 1500
/// without its FCS.
pub const MAX_FRAME: usize = 1514;
/// The largest frame sent with segmentation offload: the first request's size field is
/// 16 bits; 16 pages.
pub const GSO_FRAME_MAX: usize = 65_535;
/// The largest packet received: a 64 KiB IPv4 packet (GSO) and its Ethernet header.
pub const RX_FRAME_MAX: usize = 65_535 + 14;
/// The most slots one received packet may use: the data of [`RX_FRAME_MAX`] bytes (17
/// pages) and an extra-info slot, with room for one more extra.
pub const MAX_CHAIN: u32 = 20;
/// The most TX slots one frame uses: [`GSO_FRAME_MAX`] over pages, and the GSO slot.
pub const TX_MAX_SLOTS: usize = GSO_FRAME_MAX.div_ceil(PAGE as usize) + 1;

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
    /// TX pages `first..first + n` as one slice, if they lie at consecutive addresses, so
    /// that a long frame is written straight into them ([`Queue::send_in_place`]); `None`
    /// (the default) if they do not.
    fn tx_run(&mut self, first: u16, n: usize) -> Option<&mut [u8]> {
        let _ = (first, n);
        None
    }
}

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Longer than the limit for its kind ([`MAX_FRAME`], or [`GSO_FRAME_MAX`] with
    /// segmentation offload).
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not enough TX buffers or ring slots free: reap responses first.
    Full,
    /// No run of free TX buffers with consecutive ids at consecutive addresses is long
    /// enough: [`Queue::send_in_place`] cannot write the frame in place; copy it.
    NoRun {
        /// Pages the frame needs.
        pages: usize,
    },
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendError::TooLong { len, limit } => {
                write!(f, "a frame of {len} bytes, the limit is {limit}")
            }
            SendError::Full => write!(f, "every TX buffer is in flight"),
            SendError::NoRun { pages } => {
                write!(f, "no {pages} free TX buffers lie at consecutive addresses")
            }
        }
    }
}

/// Packets and bytes through the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames sent (a frame over several slots counts once).
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames sent for segmentation by the backend's side (GSO).
    pub tx_gso: u64,
    /// Frames longer than a page written straight into their TX pages (no copy).
    pub tx_in_place: u64,
    /// Frames longer than a page copied over their TX pages ([`Queue::send_copy`]).
    pub tx_copied: u64,
    /// Frames received and handed on.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames received over more than one slot.
    pub rx_multi: u64,
    /// Times the backend asked to be notified of new requests.
    pub notifies: u64,
}

/// A packet received, copied into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its bytes.
    pub len: usize,
    /// Its `NETRXF_data_validated` / `NETRXF_csum_blank` flags.
    pub csum_flags: RxFlags,
    /// The segment size of a GSO packet (its extra-info slot).
    pub gso_size: Option<u16>,
}

/// What an RX slot of a packet holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Data (the first slot: also the packet's flags).
    Data,
    /// Extra info.
    Extra,
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

    /// Can a one-page frame be sent now (a TX buffer and a ring slot free)?
    pub fn can_send(&self) -> bool {
        self.can_send_slots(1)
    }

    /// Are `slots` ring slots and as many TX buffers free (a frame of that many pages,
    /// or one page fewer and its GSO slot)?
    pub fn can_send_slots(&self, slots: usize) -> bool {
        self.tx.free() as usize >= slots && self.tx_ids.free() >= slots
    }

    /// Send a frame of `len` bytes (at most [`MAX_FRAME`]) that `fill` writes into its
    /// buffer, with no offload (not visible to the backend until [`Queue::flush`]).
    pub fn send<R>(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &mut impl Buffers,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        if len > MAX_FRAME {
            return Err(SendError::TooLong {
                len,
                limit: MAX_FRAME,
            });
        }
        self.send_one(tx_ring, bufs, len, 1, |b| (fill(b), TxOffload::default()))
    }

    /// Send a frame of `len` bytes (at most a page) that `fill` writes straight into its
    /// buffer page, with the offload `fill` returns (see [`crate::offload::prepare_tx`]).
    /// Needs two free slots and buffers (the page, and a GSO slot if `fill` asks for one).
    pub fn send_page<R>(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &mut impl Buffers,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, TxOffload),
    ) -> Result<R, SendError> {
        let limit = PAGE as usize;
        if len > limit {
            return Err(SendError::TooLong { len, limit });
        }
        // Room for a GSO slot too: `fill` decides whether there is one.
        self.send_one(tx_ring, bufs, len, 2, fill)
    }

    /// Send a one-page frame if `slots` slots and buffers are free.
    fn send_one<R>(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &mut impl Buffers,
        len: usize,
        slots: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, TxOffload),
    ) -> Result<R, SendError> {
        if !self.can_send_slots(slots) {
            return Err(SendError::Full);
        }
        let id = self.tx_ids.take().ok_or(SendError::Full)?;
        let (r, o) = fill(&mut bufs.tx_page(id)[..len]);
        self.put_first(tx_ring, bufs, id, len, o.flags, o.gso_mss, false);
        Ok(r)
    }

    /// Send `frame` (at most [`GSO_FRAME_MAX`] bytes) copied over as many buffer pages as
    /// it needs, with offload `o`.
    pub fn send_copy(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &mut impl Buffers,
        frame: &[u8],
        o: TxOffload,
    ) -> Result<(), SendError> {
        let limit = GSO_FRAME_MAX;
        if frame.len() > limit {
            return Err(SendError::TooLong {
                len: frame.len(),
                limit,
            });
        }
        let page = PAGE as usize;
        let pages = frame.len().div_ceil(page).max(1);
        if !self.can_send_slots(pages + usize::from(o.gso_mss.is_some())) {
            return Err(SendError::Full);
        }
        let mut chunks = frame.chunks(page);
        let first = chunks.next().unwrap_or(&[]);
        let Some(id) = self.tx_ids.take() else {
            return Err(SendError::Full);
        };
        bufs.tx_page(id)[..first.len()].copy_from_slice(first);
        self.put_first(
            tx_ring,
            bufs,
            id,
            frame.len(),
            o.flags,
            o.gso_mss,
            pages > 1,
        );
        let rest = pages - 1;
        for (i, c) in chunks.enumerate() {
            // Cannot fail: ids and slots were counted above.
            let Some(id) = self.tx_ids.take() else { break };
            bufs.tx_page(id)[..c.len()].copy_from_slice(c);
            self.put_more(tx_ring, bufs, id, c.len(), i + 1 < rest);
        }
        if pages > 1 {
            self.traffic.tx_copied += 1;
        }
        Ok(())
    }

    /// Send a frame of `len` bytes (at most [`GSO_FRAME_MAX`]) that `fill` writes straight
    /// into as many TX buffer pages as it needs, with the offload `fill` returns: no copy.
    /// The pages are free ones with consecutive ids ([`TxIds::find_run`]) that lie at
    /// consecutive addresses ([`Buffers::tx_run`]); otherwise `fill` is handed back unrun with
    /// [`SendError::NoRun`] (or `Full`, `TooLong`), nothing taken, for the caller to build
    /// the frame elsewhere and [`Queue::send_copy`] it. Needs a free slot more than its
    /// pages (the GSO slot, if `fill` asks for one).
    pub fn send_in_place<R, F: FnOnce(&mut [u8]) -> (R, TxOffload)>(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &mut impl Buffers,
        len: usize,
        fill: F,
    ) -> Result<R, (SendError, F)> {
        let limit = GSO_FRAME_MAX;
        if len > limit {
            return Err((SendError::TooLong { len, limit }, fill));
        }
        let page = PAGE as usize;
        let pages = len.div_ceil(page).max(1);
        if !self.can_send_slots(pages + 1) {
            return Err((SendError::Full, fill));
        }
        let Some(first) = self.tx_ids.find_run(pages) else {
            return Err((SendError::NoRun { pages }, fill));
        };
        let Some(buf) = bufs.tx_run(first, pages) else {
            return Err((SendError::NoRun { pages }, fill));
        };
        let (r, o) = fill(&mut buf[..len]);
        self.tx_ids.take_run(first, pages);
        self.put_first(tx_ring, bufs, first, len, o.flags, o.gso_mss, pages > 1);
        for k in 1..pages {
            let size = (len - k * page).min(page);
            // `first + k` < IDS: find_run checked the run.
            self.put_more(tx_ring, bufs, first + k as u16, size, k + 1 < pages);
        }
        if pages > 1 {
            self.traffic.tx_in_place += 1;
        }
        Ok(r)
    }

    /// Put a frame's next request: `size` bytes of page `id`, more after it or not.
    fn put_more(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &impl Buffers,
        id: u16,
        size: usize,
        more: bool,
    ) {
        let req = TxRequest {
            gref: bufs.tx_gref(id),
            offset: 0,
            flags: if more {
                TxFlags::MORE_DATA
            } else {
                TxFlags::empty()
            },
            id,
            size: size as u16,
        };
        // Cannot fail: the callers checked the slots.
        let _ = self.tx.put(tx_ring, &req.encode());
    }

    /// Put a frame's first request (`size` is the whole frame's) and its GSO slot.
    #[allow(clippy::too_many_arguments)]
    fn put_first(
        &mut self,
        tx_ring: &mut (impl PageMem + ?Sized),
        bufs: &impl Buffers,
        id: u16,
        len: usize,
        flags: TxFlags,
        gso: Option<u16>,
        more: bool,
    ) {
        let mut flags = flags;
        if more {
            flags |= TxFlags::MORE_DATA;
        }
        if gso.is_some() {
            flags |= TxFlags::EXTRA_INFO;
        }
        let req = TxRequest {
            gref: bufs.tx_gref(id),
            offset: 0,
            flags,
            id,
            size: len as u16,
        };
        // Cannot fail: the callers checked the slots.
        let _ = self.tx.put(tx_ring, &req.encode());
        if let Some(mss) = gso {
            let _ = self.tx.put(tx_ring, &ExtraInfo::gso_tcpv4(mss).encode());
            self.tx_ids.sent_extra();
            self.traffic.tx_gso += 1;
        }
        self.traffic.tx_packets += 1;
        self.traffic.tx_bytes += len as u64;
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
            let Some(id) = self.rx_ids.post(self.rx.next_req()) else {
                break;
            };
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
                Ok(Some(_)) if r.status != RSP_OKAY => self.counters.failed += 1,
                Ok(_) => {}
                Err(e) => self.counters.count(e),
            }
        }
        Ok(n)
    }

    /// The next packet received, copied into `out`; `Ok(None)` when none is waiting
    /// whole. Bad responses and failed receives on the way are counted and skipped (a
    /// packet with one bad slot is dropped whole); a packet longer than `out` is dropped
    /// and counted as [`Bad::TooLong`]. Its buffers go back to the free ids:
    /// [`Queue::refill`] posts them again.
    pub fn recv(
        &mut self,
        rx_ring: &mut (impl PageMem + ?Sized),
        bufs: &impl Buffers,
        out: &mut [u8],
    ) -> Result<Option<Received>, SharedRingError> {
        loop {
            let mut avail = self.rx.pending(rx_ring)?;
            if avail == 0 {
                avail = self.rx.final_check(rx_ring)?;
                if avail == 0 {
                    return Ok(None);
                }
            }
            // Copy the next packet's slots out, and find where it ends, before
            // consuming any (its last slots may not be published yet).
            let mut slots = [[0u8; RX_SLOT]; MAX_CHAIN as usize];
            let mut kinds = [Slot::Data; MAX_CHAIN as usize];
            let (mut n, mut end) = (0usize, None);
            let (mut extra, mut more_data) = (false, false);
            while (n as u32) < avail.min(MAX_CHAIN) {
                self.rx.peek(rx_ring, n as u32, &mut slots[n]);
                kinds[n] = if extra { Slot::Extra } else { Slot::Data };
                if extra {
                    extra = ExtraInfo::decode(&slots[n])
                        .flags
                        .contains(ExtraFlags::MORE);
                } else {
                    let r = RxResponse::decode(&slots[n]);
                    more_data = r.flags.contains(RxFlags::MORE_DATA);
                    extra = n == 0 && r.flags.contains(RxFlags::EXTRA_INFO);
                }
                n += 1;
                if !extra && !more_data {
                    end = Some(n);
                    break;
                }
            }
            let Some(n) = end else {
                if n as u32 >= MAX_CHAIN {
                    let first = self.rx.rsp_cons();
                    self.rx.skip(n as u32);
                    for i in 0..n as u32 {
                        self.rx_ids.retire(first.wrapping_add(i));
                    }
                    self.counters.count(Bad::Chain { slots: n as u32 });
                    continue;
                }
                return Ok(None);
            };
            let first = self.rx.rsp_cons();
            self.rx.skip(n as u32);
            let (mut bad, mut failed) = (None, false);
            let (mut len, mut csum_flags, mut gso_size) = (0usize, RxFlags::empty(), None);
            for i in 0..n {
                let slot = first.wrapping_add(i as u32);
                if kinds[i] == Slot::Extra {
                    self.rx_ids.retire(slot);
                    let e = ExtraInfo::decode(&slots[i]);
                    match e.check() {
                        Ok(()) => gso_size = Some(e.gso_size),
                        Err(b) => bad = bad.or(Some(b)),
                    }
                    continue;
                }
                match self.rx_ids.receive(slot, RxResponse::decode(&slots[i])) {
                    Err(b) => bad = bad.or(Some(b)),
                    Ok(p) if p.failed => failed = true,
                    Ok(p) => {
                        if i == 0 {
                            csum_flags = p.flags & (RxFlags::DATA_VALIDATED | RxFlags::CSUM_BLANK);
                        }
                        let to = len + usize::from(p.len);
                        if bad.is_none() && !failed {
                            if to > out.len() {
                                bad = Some(Bad::TooLong {
                                    len: to,
                                    limit: out.len(),
                                });
                            } else {
                                debug_assert!(u32::from(p.offset) + u32::from(p.len) <= PAGE);
                                bufs.rx_read(p.id, p.offset, &mut out[len..to]);
                            }
                        }
                        len = to;
                    }
                }
            }
            if let Some(b) = bad {
                self.counters.count(b);
                continue;
            }
            if failed {
                self.counters.failed += 1;
                continue;
            }
            self.traffic.rx_packets += 1;
            self.traffic.rx_bytes += len as u64;
            self.traffic.rx_multi += u64::from(n > 1);
            return Ok(Some(Received {
                len,
                csum_flags,
                gso_size,
            }));
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
/// receive by copy (netback refuses a frontend without it), notify on RX refills,
/// checksum offload (packets made in the backend's domain may come with blank checksums,
/// flagged; [`crate::offload`]), scatter-gather and TCP/IPv4 GSO on receive (a packet of
/// up to 64 KiB over several pages, [`Queue::recv`]). Sending with GSO also needs the
/// backend's `feature-sg` and `feature-gso-tcpv4` ([`BACKEND_GSO_KEYS`]).
pub const FEATURES: [(&str, &[u8]); 5] = [
    ("request-rx-copy", b"1"),
    ("feature-rx-notify", b"1"),
    ("feature-no-csum-offload", b"0"),
    ("feature-sg", b"1"),
    ("feature-gso-tcpv4", b"1"),
];

/// The backend's keys that must all read `1` before frames are sent for segmentation.
pub const BACKEND_GSO_KEYS: [&str; 2] = ["feature-sg", "feature-gso-tcpv4"];

/// Does the backend at `backend` (its xenstore directory) take frames for segmentation
/// (GSO): every one of [`BACKEND_GSO_KEYS`] reads `1`? A key missing or unreadable
/// turns the feature off. Read at every connect: a new domain's backend (after a
/// restore or a migration) may offer less or more than the old one did.
pub fn backend_gso<L: crate::ring::Link>(
    xs: &mut crate::xenstore::Xenstore<L>,
    backend: &str,
) -> bool {
    BACKEND_GSO_KEYS.iter().all(|k| {
        let mut key: heapless::String<{ crate::xenbus::PATH_MAX }> = heapless::String::new();
        if core::fmt::Write::write_fmt(&mut key, format_args!("{backend}/{k}")).is_err() {
            return false;
        }
        xs.read(&key)
            .is_ok_and(|v| v.strip_suffix(b"\0").unwrap_or(&v) == b"1")
    })
}
