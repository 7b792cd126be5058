//! blkfront: one virtual disk, its ring granted to the backend's domain, an event channel
//! to it, the xenbus handshake, and sectors in and out.
//!
//! The decisions are `xenpv_protocol`'s: the handshake ([`xenbus`], blkback's flavour:
//! Initialised first), what the backend offers ([`Offer`]) and the request queue with
//! every check of what the backend writes ([`Queue`]). This module allocates the pages,
//! grants them (per request, through references reserved at connect), binds the event
//! channel and waits on it (masked, `SCHEDOP_poll`).

// BlkError carries the handshake's error, which names the device's and key's full paths;
// it comes once per failed bring-up, and no_std has no Box (as in `xenbus`).
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use crate::evtchn::{self, EvtchnError, Port};
use crate::frontend::{drive, end_by};
pub use crate::frontend::{Closed, CLOSE_NS, CONNECT_NS};
use crate::gnttab::{GntError, GrantRef, GrantTable, GrantedPage, ReservedRef};
use crate::mm::Memory;
use crate::shared_page::SharedPage;
use crate::xenstore::{Xenstore, XsError};
use crate::PageLink;
use core::fmt::{self, Write as _};
use core::ops::ControlFlow::{Break, Continue};
use core::sync::atomic::{AtomicUsize, Ordering};
use xenpv_protocol::blkfront::{BadKey, Io, Offer, PageRef, Queue, Shape, IDS};
pub use xenpv_protocol::blkfront::{Counters, Traffic, Transfer};
use xenpv_protocol::blkif::{parse_number, DIRECT_SEGMENTS, REQ_SLOT};
use xenpv_protocol::block::{BlockDevice, BlockError, Geometry};
use xenpv_protocol::shared_ring::{FrontRing, PageMem};
use xenpv_protocol::xenbus::{self, Backend, Connecting, Device, Flavor, State, XenbusError};

mod steps;
use steps::Parts;
pub use steps::{CloseStep, ClosingBlkfront, ConnectStep, PendingBlkfront};

/// How long one call (read, write, flush) may take by default
/// ([`Blkfront::set_timeout`]).
pub const CALL_NS: u64 = 30_000_000_000;
/// Data pages a disk moves its bytes through at most (4 MiB): four requests of 1 MiB in
/// flight with indirect segments, or 32 of 44 KiB without.
pub const MAX_POOL: usize = 1024;
/// Requests kept in flight at least (the pool is split so that this many fit).
const MIN_IN_FLIGHT: usize = 4;
/// Pages a disk takes besides its data pool: its ring, and an indirect page per request
/// id at most.
pub const OVERHEAD_PAGES: usize = 1 + IDS;
/// The data pages a disk brought up from now on may use ([`set_pool_pages`]).
static POOL_PAGES: AtomicUsize = AtomicUsize::new(MAX_POOL);

/// Let every disk brought up from now on move its bytes through at most `pages` data
/// pages (clamped to 4..=[`MAX_POOL`]; [`MAX_POOL`] until set): a small domain trades
/// disk throughput (fewer or smaller requests in flight) for memory. A disk already up
/// keeps its pool.
pub fn set_pool_pages(pages: usize) {
    POOL_PAGES.store(pages.clamp(MIN_IN_FLIGHT, MAX_POOL), Ordering::Relaxed);
}

/// The data pages a disk brought up now may use ([`set_pool_pages`]).
pub fn pool_pages() -> usize {
    POOL_PAGES.load(Ordering::Relaxed)
}
/// Most disks [`Blkfront::list`] returns.
pub const MAX_DISKS: usize = 16;

/// Why a disk could not be brought up (or listed).
#[derive(Debug)]
pub enum BlkError {
    /// The xenbus handshake failed (the error names the device, key and state).
    Xenbus(XenbusError<XsError>),
    /// A xenstore operation outside the handshake failed.
    Xenstore(XsError),
    /// A key the backend wrote is missing or refused.
    Key {
        /// The device (`device/vbd/51712`).
        device: heapless::String<32>,
        /// The key and why.
        bad: BadKey,
    },
    /// Granting a page to the backend failed.
    Grant(GntError),
    /// The event channel could not be allocated.
    Evtchn(EvtchnError),
    /// No free frame for the ring or the data pages.
    NoMemory {
        /// Pages the disk needs in all.
        need: usize,
    },
    /// A read, write or flush failed.
    Io(BlockError),
}

impl From<BlockError> for BlkError {
    fn from(e: BlockError) -> Self {
        BlkError::Io(e)
    }
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::Xenbus(e) => write!(f, "{e}"),
            BlkError::Xenstore(e) => write!(f, "xenstore: {e}"),
            BlkError::Key { device, bad } => write!(f, "{device}: backend key {bad}"),
            BlkError::Grant(e) => write!(f, "granting a page: {e:?}"),
            BlkError::Evtchn(e) => write!(f, "event channel: {e:?}"),
            BlkError::NoMemory { need } => {
                write!(f, "no free frame (a disk needs {need} pages)")
            }
            BlkError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A page of the disk's, owned by the grant reference reserved for it.
type Pooled = ReservedRef;

/// The live side of the queue: ring, pages, grants, event channel, clock.
struct Live<'a> {
    ring: &'a mut GrantedPage,
    data: &'a mut [Pooled],
    indirect: &'a mut [Pooled],
    /// (grant reference, page) sorted by reference, to end a grant by its number.
    by_ref: &'a [(GrantRef, PageRef)],
    domid: u16,
    port: Port,
}

impl Live<'_> {
    fn pooled(&mut self, p: PageRef) -> &mut Pooled {
        match p {
            PageRef::Data(i) => &mut self.data[i as usize],
            PageRef::Indirect(i) => &mut self.indirect[i as usize],
        }
    }
}

impl Io for Live<'_> {
    fn ring(&mut self) -> &mut dyn PageMem {
        self.ring
    }
    fn copy_in(&mut self, page: PageRef, at: usize, data: &[u8]) {
        // The page is not granted now (the queue fills it before granting, and never
        // reuses a page whose grant the backend kept): plain stores are ours alone. A
        // page still granted is not written (and its grant is then refused too).
        if let Some(b) = self.pooled(page).bytes_mut() {
            b[at..at + data.len()].copy_from_slice(data);
        }
    }
    fn copy_out(&mut self, page: PageRef, at: usize, out: &mut [u8]) {
        // Volatile: if the backend kept the grant, it may still be writing the page.
        self.pooled(page).page().read_bytes(at, out);
    }
    fn grant(&mut self, page: PageRef, readonly: bool) -> Option<u32> {
        let domid = self.domid;
        let p = self.pooled(page);
        p.grant(domid, readonly).ok()?;
        Some(p.gref())
    }
    fn end_grant(&mut self, gref: u32) -> bool {
        let Ok(i) = self.by_ref.binary_search_by_key(&gref, |&(r, _)| r) else {
            return false;
        };
        let page = self.by_ref[i].1;
        self.pooled(page).end().is_ok()
    }
    fn notify(&mut self) {
        // A failed send only delays the backend until our next notification.
        let _ = evtchn::send(self.port);
    }
    fn now_ns(&mut self) -> u64 {
        crate::time::now_ns()
    }
    fn wait(&mut self, deadline: u64) {
        // An error here (cannot happen for one bound port) ends in the caller's deadline.
        if evtchn::wait(&[self.port], deadline).is_err() {
            crate::hypercall::yield_now();
        }
    }
}

/// One connected virtual disk.
pub struct Blkfront {
    id: u32,
    dev: Device,
    backend: Backend,
    port: Port,
    ring: GrantedPage,
    data: heapless::Vec<Pooled, MAX_POOL>,
    indirect: heapless::Vec<Pooled, IDS>,
    by_ref: heapless::Vec<(GrantRef, PageRef), { MAX_POOL + IDS }>,
    queue: Queue,
    timeout_ns: u64,
}

impl Blkfront {
    /// The disks the toolstack gave this domain: the ids under `device/vbd` (e.g. 51712
    /// for xvda), at most [`MAX_DISKS`], in ascending order.
    pub fn list(xs: &mut Xenstore<PageLink>) -> Result<heapless::Vec<u32, MAX_DISKS>, BlkError> {
        let mut out = heapless::Vec::new();
        let names = match xs.directory("device/vbd") {
            Ok(n) => n,
            Err(XsError::Xenstore(e)) if e == "ENOENT" => return Ok(out),
            Err(e) => return Err(BlkError::Xenstore(e)),
        };
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if let Some(id) = parse_number(name).and_then(|v| u32::try_from(v).ok()) {
                if out.push(id).is_err() {
                    break;
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Bring up disk `id` (`device/vbd/<id>`): read its backend, grant the ring to the
    /// backend's domain, allocate an event channel for it, publish the keys, wait for
    /// Connected (at most [`CONNECT_NS`]), read what the backend offers, and set up the
    /// data pages (up to [`MAX_POOL`]) with a grant reference reserved for each.
    ///
    /// Everything taken is given back on failure (a grant the backend holds stays
    /// granted, and its page is kept). This blocks until the backend answers: a loop
    /// serving other devices meanwhile uses [`Blkfront::begin_connect`].
    pub fn connect(
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
        id: u32,
    ) -> Result<Blkfront, BlkError> {
        let p = Blkfront::begin_connect(mem, gt, xs, id)?;
        let r = drive(xs, p, |p, xs| match p.step(mem, gt, xs) {
            ConnectStep::Pending(next, wake_at) => Continue((next, wake_at)),
            ConnectStep::Connected(disk) => Break(Ok(disk)),
            ConnectStep::Failed(e, closing) => Break(Err((e, closing))),
        });
        r.map_err(|(e, closing)| {
            closing.finish(mem, gt, xs);
            e
        })
    }

    /// Start bringing up disk `id` without waiting for its backend: read its backend,
    /// grant the ring, allocate the event channel. The handshake is then
    /// [`PendingBlkfront::step`]ped, a few xenstore requests at a time.
    pub fn begin_connect(
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
        id: u32,
    ) -> Result<PendingBlkfront, BlkError> {
        let dev = Device::new("vbd", id);
        let backend = xenbus::probe(xs, &dev).map_err(BlkError::Xenbus)?;
        let handle = read_key(xs, &dev, dev.dir(), "virtual-device")?
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(id as u16);
        // Pages an earlier backend kept may have been let go by now.
        gt.retry_deferred(mem);
        let Some(mut ring) = SharedPage::alloc(mem) else {
            return Err(BlkError::NoMemory { need: 1 });
        };
        // SHARED_RING_INIT before the backend maps it (the queue writes the same again).
        FrontRing::new(REQ_SLOT, &mut ring);
        let ring = match gt.grant(backend.domid, ring, false) {
            Ok(g) => g,
            Err((ring, e)) => {
                ring.free(mem);
                return Err(BlkError::Grant(e));
            }
        };
        let port = match evtchn::alloc_unbound(backend.domid) {
            Ok(p) => p,
            Err(e) => {
                // Never published: the backend cannot have mapped it.
                end_by(ring, mem, gt, crate::time::now_ns());
                return Err(BlkError::Evtchn(e));
            }
        };
        let _ = evtchn::mask(port);
        let handshake = Connecting::new(
            &dev,
            &backend,
            Flavor::InitialisedFirst,
            crate::time::now_ns() + CONNECT_NS,
        );
        Ok(PendingBlkfront {
            id,
            dev,
            backend,
            handle,
            port,
            ring,
            handshake,
        })
    }

    /// The rest of a bring-up once the backend is Connected: what it offers, the data
    /// pages and their references. On failure, what to close.
    fn finish(
        p: PendingBlkfront,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> Result<Blkfront, (BlkError, ClosingBlkfront)> {
        let offer = match read_offer(xs, &p.dev, &p.backend) {
            Ok(o) => o,
            Err(e) => return Err((e, p.abort())),
        };
        let shape = Shape::for_offer(&offer, pool_pages(), MIN_IN_FLIGHT);
        let indirect_pages = if shape.segments > DIRECT_SEGMENTS {
            shape.ids
        } else {
            0
        };
        let mut parts = Parts {
            port: p.port,
            ring: p.ring,
            data: heapless::Vec::new(),
            indirect: heapless::Vec::new(),
        };
        let mut by_ref = heapless::Vec::new();
        let need = 1 + shape.pages() + indirect_pages;
        for i in 0..shape.pages() + indirect_pages {
            let Some(page) = SharedPage::alloc(mem) else {
                let closing = ClosingBlkfront::new(&p.dev, &p.backend, parts);
                return Err((BlkError::NoMemory { need }, closing));
            };
            let r = match gt.reserve(page) {
                Ok(r) => r,
                Err((page, e)) => {
                    page.free(mem);
                    let closing = ClosingBlkfront::new(&p.dev, &p.backend, parts);
                    return Err((BlkError::Grant(e), closing));
                }
            };
            let which = if i < shape.pages() {
                PageRef::Data(i as u16)
            } else {
                PageRef::Indirect((i - shape.pages()) as u16)
            };
            let _ = by_ref.push((r.gref(), which));
            let _ = match which {
                PageRef::Data(_) => parts.data.push(r).map_err(|_| ()),
                PageRef::Indirect(_) => parts.indirect.push(r).map_err(|_| ()),
            };
        }
        by_ref.sort_unstable_by_key(|&(r, _)| r);
        let queue = Queue::new(&mut parts.ring, offer, shape, p.handle);
        let Parts {
            port,
            ring,
            data,
            indirect,
        } = parts;
        Ok(Blkfront {
            id: p.id,
            dev: p.dev,
            backend: p.backend,
            port,
            ring,
            data,
            indirect,
            by_ref,
            queue,
            timeout_ns: CALL_NS,
        })
    }

    /// The disk's id (`device/vbd/<id>`).
    pub fn id(&self) -> u32 {
        self.id
    }
    /// The backend's directory and domain.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    /// What the backend offered (flush, indirect segments).
    pub fn offer(&self) -> Offer {
        self.queue.offer()
    }
    /// Bytes one request carries at most.
    pub fn request_bytes(&self) -> usize {
        self.queue.request_bytes()
    }
    /// Responses refused and requests failed.
    pub fn counters(&self) -> Counters {
        self.queue.counters()
    }
    /// Requests and bytes.
    pub fn traffic(&self) -> Traffic {
        self.queue.traffic()
    }
    /// How long one call may wait for the backend, from now on.
    pub fn set_timeout(&mut self, ns: u64) {
        self.timeout_ns = ns;
    }
    /// How long one call may wait for the backend ([`Self::set_timeout`]).
    pub fn timeout(&self) -> u64 {
        self.timeout_ns
    }
    /// The event channel (masked; the calls wait on it themselves).
    pub fn port(&self) -> Port {
        self.port
    }

    fn live(&mut self) -> (&mut Queue, Live<'_>, u64) {
        let deadline = crate::time::now_ns().saturating_add(self.timeout_ns);
        (
            &mut self.queue,
            Live {
                ring: &mut self.ring,
                data: &mut self.data,
                indirect: &mut self.indirect,
                by_ref: &self.by_ref,
                domid: self.backend.domid,
                port: self.port,
            },
            deadline,
        )
    }

    /// Start a read of `len` bytes (whole sectors) from sector `sector` on, to be
    /// finished by [`Self::step_read`] within the disk's timeout from now: for a caller
    /// that waits for the event channel ([`Self::port`]) its own way, an async task say.
    pub fn begin_read(&mut self, sector: u64, len: usize) -> Result<Transfer, BlockError> {
        let (q, mut io, deadline) = self.live();
        q.begin_read(&mut io, sector, len, deadline)
    }

    /// Advance a read begun by [`Self::begin_read`] into `buf` (the same buffer every
    /// step), never waiting: `None` until it is over (step again after an event on
    /// [`Self::port`] or at [`Transfer::deadline`]), then its result.
    pub fn step_read(
        &mut self,
        t: &mut Transfer,
        buf: &mut [u8],
    ) -> Option<Result<(), BlockError>> {
        let (q, mut io, _) = self.live();
        q.step_read(&mut io, t, buf)
    }

    /// Give up on a stepped read before its end: its requests in flight are abandoned
    /// (their answers only free their slots) and counted as timed out.
    pub fn cancel(&mut self, t: &mut Transfer) {
        self.queue.cancel(t);
    }

    /// The guest moved to a new domain: requests in flight will never be answered. The
    /// queue drops them and ends every transfer, one begun before included, in
    /// [`BlockError::Resumed`]. Returns the requests
    /// that were in flight.
    pub fn mark_resumed(&mut self) -> usize {
        self.queue.abandon_for_resume()
    }

    /// The guest moved to a new domain: let go of the ring, the pool and the event
    /// channel without a word to the old backend (see `Netfront::abandon`): every grant
    /// guard forgotten ([`GrantTable::forget_stale`]), its page freed. Returns the
    /// requests that were in flight and the pages freed.
    pub fn abandon(mut self, mem: &mut Memory, gt: &mut GrantTable) -> (usize, usize) {
        let in_flight = self.queue.abandon_for_resume();
        let mut freed = 1;
        gt.forget_stale(self.ring).free(mem);
        for r in self.data.into_iter().chain(self.indirect) {
            gt.forget_stale_reserved(r).free(mem);
            freed += 1;
        }
        (in_flight, freed)
    }

    /// The backend's state now (`None`: its directory is gone).
    pub fn backend_state(&self, xs: &mut Xenstore<PageLink>) -> Result<Option<State>, BlkError> {
        xenbus::backend_state(xs, &self.dev, &self.backend).map_err(BlkError::Xenbus)
    }

    /// Close: Closing, wait for the backend (at most [`CLOSE_NS`]), Closed; then end
    /// every grant the backend lets go of and free those pages. This blocks until the
    /// backend answers: a loop serving other devices meanwhile steps
    /// [`Blkfront::begin_close`].
    pub fn close(
        self,
        mem: &mut Memory,
        gt: &mut GrantTable,
        xs: &mut Xenstore<PageLink>,
    ) -> Closed {
        self.begin_close().finish(mem, gt, xs)
    }

    /// Start closing, a step at a time ([`ClosingBlkfront::step`]).
    pub fn begin_close(self) -> ClosingBlkfront {
        let parts = Parts {
            port: self.port,
            ring: self.ring,
            data: self.data,
            indirect: self.indirect,
        };
        ClosingBlkfront::new(&self.dev, &self.backend, parts)
    }
}

impl BlockDevice for Blkfront {
    fn geometry(&self) -> Geometry {
        self.queue.geometry()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let (q, mut io, deadline) = self.live();
        q.read(&mut io, sector, buf, deadline)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        let (q, mut io, deadline) = self.live();
        q.write(&mut io, sector, buf, deadline)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        let (q, mut io, deadline) = self.live();
        q.flush(&mut io, deadline)
    }
}

/// A numeric key under `base` (the frontend's or the backend's directory): `Ok(None)`
/// when it is missing, `BadKey` when it is not a number.
fn read_key(
    xs: &mut Xenstore<PageLink>,
    dev: &Device,
    base: &str,
    key: &'static str,
) -> Result<Option<u64>, BlkError> {
    match read_raw(xs, base, key)? {
        None => Ok(None),
        Some(v) => parse_number(&v).map(Some).ok_or_else(|| BlkError::Key {
            device: short(dev.dir()),
            bad: BadKey {
                key,
                why: "not a decimal number",
            },
        }),
    }
}

fn read_raw(
    xs: &mut Xenstore<PageLink>,
    base: &str,
    key: &str,
) -> Result<Option<heapless::Vec<u8, 24>>, BlkError> {
    let mut path: heapless::String<{ xenbus::PATH_MAX }> = heapless::String::new();
    let _ = write!(path, "{base}/{key}");
    match xs.read(&path) {
        Ok(v) => {
            let v = v.strip_suffix(b"\0").unwrap_or(&v);
            // Longer than any number we read: kept as a value that fails to parse.
            Ok(Some(
                heapless::Vec::from_slice(&v[..v.len().min(24)]).unwrap_or_default(),
            ))
        }
        Err(XsError::Xenstore(e)) if e == "ENOENT" => Ok(None),
        Err(e) => Err(BlkError::Xenstore(e)),
    }
}

/// The backend's keys, read once it is Connected, checked by [`Offer::parse`].
fn read_offer(xs: &mut Xenstore<PageLink>, dev: &Device, be: &Backend) -> Result<Offer, BlkError> {
    let key = |xs: &mut Xenstore<PageLink>, k| read_raw(xs, &be.path, k);
    let missing = |key| BlkError::Key {
        device: short(dev.dir()),
        bad: BadKey {
            key,
            why: "missing",
        },
    };
    let sectors = key(xs, "sectors")?.ok_or_else(|| missing("sectors"))?;
    let sector_size = key(xs, "sector-size")?.ok_or_else(|| missing("sector-size"))?;
    let info = key(xs, "info")?.unwrap_or_else(|| heapless::Vec::from_slice(b"0").unwrap());
    let flush = key(xs, "feature-flush-cache")?;
    let barrier = key(xs, "feature-barrier")?;
    let indirect = key(xs, "feature-max-indirect-segments")?;
    Offer::parse(
        &sectors,
        &sector_size,
        &info,
        flush.as_deref(),
        barrier.as_deref(),
        indirect.as_deref(),
    )
    .map_err(|bad| BlkError::Key {
        device: short(dev.dir()),
        bad,
    })
}

fn short(s: &str) -> heapless::String<32> {
    let mut out = heapless::String::new();
    let _ = out.push_str(&s[..s.len().min(32)]);
    out
}

/// Give back the data and indirect pages and their references (retrying while the
/// backend unmaps, up to `deadline`: [`release_deadline`](crate::frontend::release_deadline));
/// pages still granted are kept: how many.
fn release_pool(
    mem: &mut Memory,
    gt: &mut GrantTable,
    data: heapless::Vec<Pooled, MAX_POOL>,
    indirect: heapless::Vec<Pooled, IDS>,
    deadline: u64,
) -> usize {
    data.into_iter()
        .chain(indirect)
        .map(|p| end_by(p, mem, gt, deadline))
        .filter(|freed| !freed)
        .count()
}
