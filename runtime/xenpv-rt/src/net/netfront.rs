//! netfront: one vif, its rings and buffers granted to the backend's domain, an event
//! channel to it, the xenbus handshake, and packets in and out.
//!
//! The decisions are `xenpv_protocol`'s: the handshake ([`xenbus`]), the ring pair and
//! every check of what the backend writes ([`Queue`]). This module allocates and grants
//! the pages, binds the event channel and signals. The event channel stays masked: the
//! driver is polled, and an application waits for it with [`evtchn::wait`]
//! (`SCHEDOP_poll`) on [`Netfront::port`], for as long as
//! [`phy::poll_delay_ns`](super::phy::poll_delay_ns) says with smoltcp.

// NetError carries the handshake's error, which names the device's and key's full paths;
// it comes once per failed bring-up, and no_std has no Box (as in `xenbus`).
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use crate::evtchn::{self, EvtchnError, Port};
pub use crate::frontend::{Closed, CLOSE_NS, CONNECT_NS};
use crate::gnttab::{GntError, GrantTable, GrantedPage};
use crate::mm::Memory;
use crate::shared_page::SharedPage;
use crate::xenstore::{Xenstore, XsError};
use crate::PageLink;
use core::fmt::{self, Write as _};
use xenpv_protocol::netfront::{self as nf, parse_mac, Buffers, Queue, SendError, Traffic};
pub use xenpv_protocol::netfront::{Received, GSO_FRAME_MAX, RX_FRAME_MAX};
use xenpv_protocol::netif::{Counters as RingCounters, IDS};
use xenpv_protocol::shared_ring::SharedRingError;
pub use xenpv_protocol::vif::Counters;
use xenpv_protocol::xenbus::{self, Backend, Connecting, Device, Flavor, State, XenbusError};

mod steps;
use core::ops::ControlFlow::{Break, Continue};
pub use steps::{CloseStep, ClosingNetfront, ConnectStep, PendingNetfront};

pub use xenpv_protocol::netfront::MAX_FRAME;

/// RX buffers posted again once fewer than this many are posted.
const REFILL_BELOW: usize = IDS * 3 / 4;

/// Why a vif could not be brought up (or was taken down).
#[derive(Debug)]
pub enum NetError {
    /// The xenbus handshake failed (the error names the device, key and state).
    Xenbus(XenbusError<XsError>),
    /// A xenstore operation outside the handshake failed.
    Xenstore(XsError),
    /// Granting a page to the backend failed.
    Grant(GntError),
    /// The event channel could not be allocated or signalled.
    Evtchn(EvtchnError),
    /// No free frame for a ring or buffer page.
    NoMemory {
        /// Pages the vif needs in all.
        need: usize,
    },
    /// The `mac` key is missing or not six hex bytes.
    BadMac(heapless::String<32>),
    /// The backend corrupted a ring's indices: the vif stopped.
    Ring(SharedRingError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Xenbus(e) => write!(f, "{e}"),
            NetError::Xenstore(e) => write!(f, "xenstore: {e}"),
            NetError::Grant(e) => write!(f, "granting a page: {e:?}"),
            NetError::Evtchn(e) => write!(f, "event channel: {e:?}"),
            NetError::NoMemory { need } => write!(f, "no free frame (a vif needs {need} pages)"),
            NetError::BadMac(v) => write!(f, "mac {v:?} is not six hex bytes"),
            NetError::Ring(e) => write!(f, "ring: {e}"),
        }
    }
}

/// The buffer pages, granted.
struct Bufs {
    tx: heapless::Vec<GrantedPage, IDS>,
    rx: heapless::Vec<GrantedPage, IDS>,
}

impl Buffers for Bufs {
    fn tx_page(&mut self, id: u16) -> &mut [u8; 4096] {
        self.tx[id as usize].bytes_mut()
    }
    fn rx_read(&self, id: u16, offset: u16, out: &mut [u8]) {
        self.rx[id as usize].page().read_bytes(offset as usize, out)
    }
    fn tx_gref(&self, id: u16) -> u32 {
        self.tx[id as usize].gref()
    }
    fn rx_gref(&self, id: u16) -> u32 {
        self.rx[id as usize].gref()
    }
    fn tx_run(&mut self, first: u16, n: usize) -> Option<&mut [u8]> {
        let first = first as usize;
        let pages = self.tx.get(first..first.checked_add(n)?)?;
        let va = pages.first()?.page().va();
        let in_turn = pages
            .iter()
            .enumerate()
            .all(|(k, g)| g.page().va() == va + k as u64 * 4096);
        // SAFETY: the n pages are `self.tx[first..first + n]`, each owned by its grant
        // guard and mapped read-write in the direct map for as long as it lives; their
        // addresses were just checked to follow one another, so the slice covers exactly
        // them. The backend may only read TX pages (granted read-only), and `&mut self`
        // makes this the only reference to them in the guest until it ends.
        in_turn.then(|| unsafe { core::slice::from_raw_parts_mut(va.as_mut_ptr::<u8>(), n * 4096) })
    }
}

/// One connected vif.
pub struct Netfront {
    index: u32,
    dev: Device,
    backend: Backend,
    mac: [u8; 6],
    port: Port,
    tx_ring: GrantedPage,
    rx_ring: GrantedPage,
    bufs: Bufs,
    queue: Queue,
    broken: Option<SharedRingError>,
    dropped: u64,
    /// The backend takes frames for segmentation (its `feature-sg` and
    /// `feature-gso-tcpv4`).
    gso: bool,
    /// Long frames written straight into TX pages (else built in the scratch and copied).
    tx_in_place: bool,
    bad_checksums: u64,
    #[cfg(feature = "net")]
    frames: Frames,
}

/// The stack's frame buffers (feature `net`): a received packet is copied into `rx`
/// whole (up to [`RX_FRAME_MAX`] bytes over several pages); a frame longer than a page is
/// written straight into free TX pages in a row, or, when there is no such run (or the
/// vif's TX buffers got no run of memory), built in `tx` and copied over its pages.
#[cfg(feature = "net")]
struct Frames {
    rx: alloc::boxed::Box<[u8]>,
    tx: alloc::boxed::Box<[u8]>,
}

/// The sending half of a `Netfront` (`$nf`) with `$scratch` as its buffer for long frames:
/// a macro, not a method, so that it borrows only the fields it names (the received frame
/// in `frames.rx` stays readable beside it).
#[cfg(feature = "net")]
macro_rules! tx_path {
    ($nf:ident, $scratch:expr) => {
        TxPath {
            queue: &mut $nf.queue,
            tx_ring: &mut $nf.tx_ring,
            bufs: &mut $nf.bufs,
            port: $nf.port,
            broken: &mut $nf.broken,
            dropped: &mut $nf.dropped,
            gso: $nf.gso,
            in_place: $nf.tx_in_place,
            scratch: $scratch,
        }
    };
}

/// Pages a vif uses: both rings and a buffer per id on each.
pub const PAGES: usize = 2 + 2 * IDS;

impl Netfront {
    /// Bring up vif `index` (`device/vif/<index>`): read its backend and MAC, grant the
    /// rings and [`PAGES`] buffers to the backend's domain, allocate an event channel for
    /// it, publish the keys and wait for Connected (at most [`CONNECT_NS`]).
    ///
    /// Everything taken is given back on failure (a grant the backend holds stays
    /// granted, and its page is kept). This blocks until the backend answers: a loop
    /// serving other devices meanwhile uses [`Netfront::begin_connect`].
    pub fn connect(
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
        index: u32,
    ) -> Result<Netfront, NetError> {
        let p = Netfront::begin_connect(mem, gt, xs, index)?;
        let r = steps::drive(xs, p, |p, xs| match p.step(xs) {
            ConnectStep::Pending(next, wake_at) => Continue((next, wake_at)),
            ConnectStep::Connected(nic) => Break(Ok(nic)),
            ConnectStep::Failed(e, closing) => Break(Err((e, closing))),
        });
        r.map_err(|(e, closing)| {
            closing.finish(mem, gt, xs);
            e
        })
    }

    /// Start bringing up vif `index` without waiting for its backend: read its backend
    /// and MAC, grant the pages, allocate the event channel. The handshake is then
    /// stepped with [`PendingNetfront::step`] (at most [`CONNECT_NS`] from now).
    pub fn begin_connect(
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
        index: u32,
    ) -> Result<PendingNetfront, NetError> {
        let dev = Device::new("vif", index);
        let backend = xenbus::probe(xs, &dev).map_err(NetError::Xenbus)?;
        let mac = read_mac(xs, &dev)?;
        let gso = nf::BACKEND_GSO_KEYS.iter().all(|k| {
            let mut key: heapless::String<{ xenbus::PATH_MAX }> = heapless::String::new();
            let _ = write!(key, "{}/{k}", backend.path);
            // A key that is missing or unreadable: the feature is off.
            xs.read(&key)
                .is_ok_and(|v| v.strip_suffix(b"\0").unwrap_or(&v) == b"1")
        });
        // Pages an earlier backend kept may have been let go by now.
        gt.retry_deferred(mem);
        let parts = Parts::take(mem, gt, backend.domid)?;
        let deadline = crate::time::now_ns() + CONNECT_NS;
        let handshake = Connecting::new(&dev, &backend, Flavor::ConnectAtOnce, deadline);
        Ok(PendingNetfront {
            index,
            dev,
            backend,
            mac,
            gso,
            parts,
            handshake,
        })
    }

    /// The vif's number (`device/vif/<index>`).
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Its MAC address, from xenstore.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    /// The backend's directory and domain.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    /// The event channel to wait on (masked; see [`evtchn::wait`]).
    pub fn port(&self) -> Port {
        self.port
    }
    /// Responses refused and packets the backend failed.
    pub fn counters(&self) -> RingCounters {
        self.queue.counters()
    }
    /// Every counter of the vif at once ([`Counters`]: traffic, responses refused,
    /// packets failed, frames not sent, bad checksums), copied.
    pub fn snapshot(&self) -> Counters {
        Counters::from_parts(
            &self.queue.traffic(),
            &self.queue.counters(),
            self.dropped,
            self.bad_checksums,
        )
    }
    /// Packets and bytes through the vif.
    pub fn traffic(&self) -> Traffic {
        self.queue.traffic()
    }
    /// The ring error that stopped the vif, if the backend corrupted one.
    pub fn broken(&self) -> Option<SharedRingError> {
        self.broken
    }
    /// Frames handed to the vif that could not go out (no TX buffer free at that moment,
    /// or the vif stopped), counted by [`Netfront::count_dropped`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    /// Count a frame that could not be sent (the caller dropped it).
    pub fn count_dropped(&mut self) {
        self.dropped += 1;
    }

    fn notify(&self) {
        // A failed send only delays the backend until our next notification.
        let _ = evtchn::send(self.port);
    }

    /// Reap TX responses and post free RX buffers (notifying the backend if it asked).
    pub fn poll(&mut self) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = self.queue.reap_tx(&mut self.tx_ring) {
            self.broken = Some(e);
            return;
        }
        self.refill();
    }

    /// Post the free RX buffers once fewer than [`REFILL_BELOW`] are posted (notifying the
    /// backend if it asked).
    fn refill(&mut self) {
        if self.queue.rx_posted() < REFILL_BELOW && self.queue.refill(&mut self.rx_ring, &self.bufs)
        {
            self.notify();
        }
    }

    /// Can a frame be sent now? (Reaps TX responses first.)
    pub fn can_send(&mut self) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if !self.queue.can_send() {
            self.poll();
        }
        self.broken.is_none() && self.queue.can_send()
    }

    /// Send a frame of `len` bytes written by `fill` into its buffer.
    pub fn send<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        if !self.can_send() {
            return Err(SendError::Full);
        }
        let r = self
            .queue
            .send(&mut self.tx_ring, &mut self.bufs, len, fill)?;
        if self.queue.flush(&mut self.tx_ring) {
            self.notify();
        }
        Ok(r)
    }

    /// The next packet received, copied into `out` whole, or `None`. With the backend's
    /// scatter-gather and GSO a packet may be up to [`RX_FRAME_MAX`] bytes (a longer one
    /// than `out` is dropped and counted in [`Self::counters`]); its checksum may be
    /// blank if [`Received::csum_flags`] says so (see `xenpv_protocol::offload`).
    pub fn recv(&mut self, out: &mut [u8]) -> Option<Received> {
        if self.broken.is_some() {
            return None;
        }
        match self.queue.recv(&mut self.rx_ring, &self.bufs, out) {
            Ok(p) => {
                self.refill();
                p
            }
            Err(e) => {
                self.broken = Some(e);
                None
            }
        }
    }

    /// Write frames longer than a page straight into TX pages in a row (`true`, the
    /// default), or build each in the scratch buffer and copy it over them (to measure
    /// the copy that saves).
    pub fn set_tx_in_place(&mut self, on: bool) {
        self.tx_in_place = on;
    }

    /// Does the backend take frames for segmentation (GSO)?
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Is every TX buffer or ring slot that the largest frame needs in flight (after
    /// taking the backend's responses), so that nothing can be sent until the backend
    /// returns some? Its next response raises the vif's event then. Also `true` once
    /// the vif is broken.
    #[cfg(feature = "net")]
    pub fn tx_full(&mut self) -> bool {
        let mut path = self.tx_path();
        let slots = path.max_slots();
        !path.ready(slots)
    }

    /// Frames the stack's device dropped for a wrong TCP or UDP checksum.
    pub fn bad_checksums(&self) -> u64 {
        self.bad_checksums
    }

    /// The next received packet with a right checksum, in the frame buffer, and the
    /// sending half (smoltcp holds both at once).
    #[cfg(feature = "net")]
    pub(super) fn next_frame(&mut self) -> Option<(&[u8], TxPath<'_>)> {
        let len = loop {
            // The frame buffer lent to `recv` (an empty box takes its place meanwhile).
            let mut rx = core::mem::take(&mut self.frames.rx);
            let got = self.recv(&mut rx);
            self.frames.rx = rx;
            let p = got?;
            if xenpv_protocol::offload::rx_checksum_ok(&self.frames.rx[..p.len], p.csum_flags) {
                break p.len;
            }
            self.bad_checksums += 1;
        };
        let Frames { rx, tx } = &mut self.frames;
        Some((&rx[..len], tx_path!(self, tx)))
    }

    /// The sending half, for the stack's device.
    #[cfg(feature = "net")]
    pub(super) fn tx_path(&mut self) -> TxPath<'_> {
        tx_path!(self, &mut self.frames.tx)
    }

    /// The backend's state now (`None`: its directory is gone).
    pub fn backend_state(&self, xs: &mut Xenstore<PageLink>) -> Result<Option<State>, NetError> {
        xenbus::backend_state(xs, &self.dev, &self.backend).map_err(NetError::Xenbus)
    }

    /// Close: Closing, wait for the backend (at most [`CLOSE_NS`]), Closed; then end
    /// every grant the backend lets go of and free those pages. This blocks until the
    /// backend answers: a loop serving other devices meanwhile uses
    /// [`Netfront::begin_close`].
    pub fn close(
        self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> Closed {
        self.begin_close().finish(mem, gt, xs)
    }

    /// The guest moved to a new domain: the backend, the event channel and every grant
    /// belong to the old one. Let go of it all without a word to anyone (the old
    /// backend is on the old host; a xenstore write would land in the new domain's
    /// device directory): every grant guard is forgotten ([`GrantTable::forget_stale`]:
    /// the entry is not touched, it may be granted again in the new epoch) and its page
    /// freed; the port is neither closed nor signalled (its number may be bound to
    /// something else now). The caller forgets the port in the executor first. Returns
    /// the pages freed.
    pub fn abandon(self, mem: &mut Memory, gt: &mut GrantTable) -> usize {
        let Bufs { tx, rx } = self.bufs;
        let guards = [self.tx_ring, self.rx_ring].into_iter().chain(tx).chain(rx);
        let mut freed = 0;
        for g in guards {
            gt.forget_stale(g).free(mem);
            freed += 1;
        }
        freed
    }

    /// Start closing without waiting for the backend: stepped with
    /// [`ClosingNetfront::step`] (the handshake at most [`CLOSE_NS`] from now).
    pub fn begin_close(self) -> ClosingNetfront {
        let parts = Parts {
            port: self.port,
            tx_ring: self.tx_ring,
            rx_ring: self.rx_ring,
            bufs: self.bufs,
        };
        ClosingNetfront::new(self.index, &self.dev, &self.backend, parts)
    }
}

/// A vif's sending half, borrowed apart from its receive buffer (feature `net`). Every
/// TCP and UDP/IPv4 frame goes out with its checksum left to the backend's side and, when the
/// backend takes it, a TCP packet of several segments whole for segmentation
/// (`xenpv_protocol::offload::prepare_tx`).
#[cfg(feature = "net")]
pub(super) struct TxPath<'a> {
    queue: &'a mut Queue,
    tx_ring: &'a mut GrantedPage,
    bufs: &'a mut Bufs,
    port: Port,
    broken: &'a mut Option<SharedRingError>,
    dropped: &'a mut u64,
    gso: bool,
    in_place: bool,
    scratch: &'a mut [u8],
}

#[cfg(feature = "net")]
impl TxPath<'_> {
    /// Are `slots` ring slots and buffers free (after reaping TX responses if not)?
    pub(super) fn ready(&mut self, slots: usize) -> bool {
        if self.broken.is_none() && !self.queue.can_send_slots(slots) {
            if let Err(e) = self.queue.reap_tx(&mut *self.tx_ring) {
                *self.broken = Some(e);
            }
        }
        self.broken.is_none() && self.queue.can_send_slots(slots)
    }

    /// The slots the largest frame needs.
    pub(super) fn max_slots(&self) -> usize {
        if self.gso {
            nf::TX_MAX_SLOTS
        } else {
            2
        }
    }

    /// Send a frame of `len` bytes that `fill` writes, TCP segments of `mss` payload
    /// bytes if it is longer (see the type). `fill` always runs: a frame that finds no
    /// room, or is longer than the backend takes, is built in the scratch buffer,
    /// dropped and counted (TCP retransmits; [`Netfront::dropped`]).
    pub(super) fn send<R>(
        mut self,
        len: usize,
        mss: Option<u16>,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        let page = xenpv_protocol::netif::PAGE as usize;
        let limit = if self.gso { GSO_FRAME_MAX } else { MAX_FRAME };
        let mss = mss.filter(|_| self.gso);
        let slots = if len <= page {
            2
        } else {
            len.div_ceil(page) + 1
        };
        let mut fill = Some(fill);
        let mut sent = None;
        if len <= limit && self.ready(slots) {
            if len <= page {
                let r = self
                    .queue
                    .send_page(&mut *self.tx_ring, &mut *self.bufs, len, |b| {
                        let r = (fill.take().expect("called once"))(b);
                        (r, xenpv_protocol::offload::prepare_tx(b, mss))
                    });
                sent = r.ok();
            } else {
                // Straight into TX pages in turn if the next free ones are; else built
                // in the scratch buffer and copied over them.
                let f = fill.take().expect("called once");
                let fill = |b: &mut [u8]| {
                    let r = f(b);
                    (r, xenpv_protocol::offload::prepare_tx(b, mss))
                };
                let r = if self.in_place {
                    self.queue
                        .send_in_place(&mut *self.tx_ring, &mut *self.bufs, len, fill)
                } else {
                    Err((SendError::NoRun { pages: 0 }, fill))
                };
                sent = Some(match r {
                    Ok(r) => r,
                    Err((_, f)) => {
                        let b = &mut self.scratch[..len];
                        let (r, o) = f(b);
                        if self
                            .queue
                            .send_copy(&mut *self.tx_ring, &mut *self.bufs, b, o)
                            .is_err()
                        {
                            *self.dropped += 1;
                        }
                        r
                    }
                });
            }
            if self.queue.flush(&mut *self.tx_ring) {
                // A failed send only delays the backend until our next notification.
                let _ = evtchn::send(self.port);
            }
        }
        match sent {
            Some(r) => r,
            None => {
                *self.dropped += 1;
                let n = len.min(self.scratch.len());
                (fill.take().expect("not called yet"))(&mut self.scratch[..n])
            }
        }
    }
}

/// The mac key, strictly parsed.
fn read_mac(xs: &mut Xenstore<PageLink>, dev: &Device) -> Result<[u8; 6], NetError> {
    let mut key: heapless::String<{ xenbus::PATH_MAX }> = heapless::String::new();
    let _ = write!(key, "{}/mac", dev.dir());
    let v = xs.read(&key).map_err(NetError::Xenstore)?;
    let v = v.strip_suffix(b"\0").unwrap_or(&v);
    parse_mac(v).ok_or_else(|| {
        let mut s = heapless::String::new();
        for &b in v.iter().take(32) {
            let _ = s.push(if b.is_ascii_graphic() { b as char } else { '?' });
        }
        NetError::BadMac(s)
    })
}

/// A vif's resources while it is being set up or torn down.
struct Parts {
    port: Port,
    tx_ring: GrantedPage,
    rx_ring: GrantedPage,
    bufs: Bufs,
}

impl Parts {
    /// Allocate and grant everything to `domid`, and allocate the event channel.
    fn take(mem: &mut Memory, gt: &mut GrantTable, domid: u16) -> Result<Parts, NetError> {
        let mut granted: heapless::Vec<GrantedPage, PAGES> = heapless::Vec::new();
        // TX buffers at consecutive addresses if memory has such a run: a long frame is
        // then written straight across them (`Queue::send_in_place`), not copied.
        let mut tx_run = mem.alloc_run(IDS as u64);
        let undo = |mem: &mut Memory, gt: &mut GrantTable, granted: heapless::Vec<_, PAGES>| {
            // Never mapped by the backend yet, so ending is not refused; if it were, the
            // page goes to the deferred list.
            for g in granted {
                if let Ok(p) = gt.end(g) {
                    p.free(mem);
                }
            }
        };
        for i in 0..PAGES {
            let p = match tx_run.as_mut().filter(|_| i >= 2 + IDS) {
                Some(run) => run.next().map(|page| SharedPage::from_page(mem, page)),
                None => SharedPage::alloc(mem),
            };
            let Some(p) = p else {
                undo(mem, gt, granted);
                return Err(NetError::NoMemory { need: PAGES });
            };
            // Rings and RX buffers writable by the backend, TX buffers read-only.
            let readonly = i >= 2 + IDS;
            match gt.grant(domid, p, readonly) {
                // Cannot fail: PAGES fit.
                Ok(g) => drop(granted.push(g)),
                Err((p, e)) => {
                    p.free(mem);
                    undo(mem, gt, granted);
                    return Err(NetError::Grant(e));
                }
            }
        }
        let port = match evtchn::alloc_unbound(domid) {
            Ok(p) => p,
            Err(e) => {
                undo(mem, gt, granted);
                return Err(NetError::Evtchn(e));
            }
        };
        let _ = evtchn::mask(port);
        let mut it = granted.into_iter();
        let (tx_ring, rx_ring) = match (it.next(), it.next()) {
            (Some(t), Some(r)) => (t, r),
            _ => unreachable!("PAGES >= 2"),
        };
        let mut bufs = Bufs {
            rx: heapless::Vec::new(),
            tx: heapless::Vec::new(),
        };
        for (i, g) in it.enumerate() {
            // Cannot fail: IDS of each.
            let _ = if i < IDS {
                bufs.rx.push(g)
            } else {
                bufs.tx.push(g)
            };
        }
        Ok(Parts {
            port,
            tx_ring,
            rx_ring,
            bufs,
        })
    }
}
