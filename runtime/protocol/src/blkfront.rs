//! blkfront's decisions: what the backend offers ([`Offer`], read from its keys and
//! checked), and the request queue ([`Queue`]) that splits a caller's read or write into
//! requests, keeps several in flight, checks every response and waits with a deadline.
//!
//! Pure: the ring page, the data pages, the grants, the event channel and the clock are
//! behind [`Io`], so the host tests drive the very same code against model backends
//! (honest, slow, wrong ids, duplicate ids, bad status, silent) and the platform's driver
//! only maps pages and makes hypercalls.
//!
//! Data moves through the driver's own pages (a bounce copy), never the caller's memory:
//! a backend that keeps a grant mapped can then only ever reach pages that are the
//! driver's, and a caller's buffer is free the moment a call returns, whatever the
//! backend does. Each request id owns `segments` data pages and one indirect page. A
//! request's pages are granted when it is sent (read-only for a write, writable for a
//! read) and the grants are ended when its response comes; a page whose grant the
//! backend will not give back is never used again (its id is retired and counted).
//!
//! Every response is checked: its id must name a request in flight (the id carries a
//! generation, so a duplicate or stale id is caught), its operation must be the
//! request's, and its status decides the request's result. A bad response is counted and
//! dropped; the request it failed to answer then runs into the call's deadline, which
//! is an error ([`BlockError::Timeout`]), never a hang. A corrupt `rsp_prod` stops the
//! device ([`BlockError::Broken`]).
//!
//! ```
//! use xenpv_protocol::blkfront::Offer;
//! let o = Offer::parse(b"524288", b"512", b"0", Some(b"1"), None, Some(b"256")).unwrap();
//! assert_eq!(o.geometry.sectors, 524288);
//! assert_eq!(o.segments(), 256, "indirect requests of 256 pages (1 MiB)");
//! assert!(Offer::parse(b"8", b"1000", b"0", None, None, None).is_err(), "not a power of two");
//! ```

use crate::blkif::{
    self, Request, Response, Segment, DIRECT_SEGMENTS, OP_INDIRECT, OP_READ, OP_WRITE, RING_SLOTS,
    RSP_OKAY, RSP_SLOT, SEGMENTS_PER_INDIRECT_PAGE,
};
use crate::block::{BlockError, Geometry};
use crate::shared_ring::{FrontRing, PageMem};

/// The most request ids (the ring's slots).
pub const IDS: usize = RING_SLOTS as usize;
/// The most segments we put in one request (1 MiB): one indirect page holds them.
pub const MAX_SEGMENTS: usize = 256;
const PAGE: usize = 4096;

mod offer;
pub use offer::{check_reattach, BadKey, GeometryChanged, Offer};

/// A page the queue moves data through: data page `n` of the pool, or request id
/// `id`'s indirect page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageRef {
    /// Data page `n` (id `i` owns pages `i * segments ..`).
    Data(u16),
    /// The indirect page of id `i`.
    Indirect(u16),
}

/// The live side of a queue: the shared ring page, the driver's pages and their grants,
/// the event channel and the clock.
pub trait Io {
    /// The ring page.
    fn ring(&mut self) -> &mut dyn PageMem;
    /// Copy `data` into a page at `at` (before it is granted).
    fn copy_in(&mut self, page: PageRef, at: usize, data: &[u8]);
    /// Copy bytes out of a page at `at` (after its grant ended).
    fn copy_out(&mut self, page: PageRef, at: usize, out: &mut [u8]);
    /// Grant a page to the backend, read-only or writable; `None` if no grant is free.
    fn grant(&mut self, page: PageRef, readonly: bool) -> Option<u32>;
    /// End a grant; `false` while the backend still has the page mapped.
    fn end_grant(&mut self, gref: u32) -> bool;
    /// Signal the backend.
    fn notify(&mut self);
    /// Xen system time, ns.
    fn now_ns(&mut self) -> u64;
    /// Wait for an event from the backend, or `deadline` (ns).
    fn wait(&mut self, deadline: u64);
}

/// Responses refused and other events worth a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Responses naming an id out of range.
    pub bad_id: u64,
    /// Responses naming an id not in flight (a duplicate, or a stale generation).
    pub not_in_flight: u64,
    /// Responses naming another operation than the request's.
    pub bad_operation: u64,
    /// Requests the backend failed (a status other than okay).
    pub failed: u64,
    /// Responses to requests a call had given up on (after its deadline).
    pub late: u64,
    /// Request ids retired because the backend kept one of their grants.
    pub retired: u64,
    /// Requests given up on at a deadline.
    pub timed_out: u64,
}

/// Requests and bytes through the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests sent.
    pub requests: u64,
    /// Of those, requests whose segments were in an indirect page (more than 11).
    pub indirect: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Flushes done.
    pub flushes: u64,
    /// Times the backend asked to be notified.
    pub notifies: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    /// Sent; the response is for a caller still waiting.
    InFlight(Flight),
    /// Sent; the caller gave up (its deadline passed): the response only frees the slot.
    Abandoned(Flight),
    /// A grant of this id's pages is still held by the backend: never used again.
    Retired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flight {
    wire_id: u64,
    operation: u8,
    /// Where in the caller's buffer the request's bytes are.
    tag: usize,
    len: usize,
    grefs: GrantSet,
}

/// The grants of one request: its data pages and (indirect) its indirect page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GrantSet {
    data: [u32; MAX_SEGMENTS],
    n: usize,
    indirect: Option<u32>,
}

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Done {
    len: usize,
    result: Result<(), BlockError>,
}

/// A transfer in progress ([`Queue::begin_read`], [`Queue::step_read`]): how far it
/// got, what is in flight, its first error.
#[derive(Clone, Debug)]
pub struct Transfer {
    op: u8,
    sector: u64,
    len: usize,
    deadline: u64,
    started: u64,
    next: usize,
    flush_sent: bool,
    outstanding: usize,
    first_err: Option<BlockError>,
}

impl Transfer {
    /// When it gives up (Xen system time, ns).
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

/// One ring of requests with its ids, counters and traffic figures.
#[derive(Clone, Debug)]
pub struct Queue {
    ring: FrontRing,
    slots: [Slot; IDS],
    ids: usize,
    segments: usize,
    handle: u16,
    offer: Offer,
    generation: u64,
    broken: bool,
    /// Abandoned for a new domain ([`Queue::abandon_for_resume`]).
    resumed: bool,
    counters: Counters,
    traffic: Traffic,
}

/// What a queue needs besides the ring: how many ids, pages per id, the device handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Request ids in use (1..=[`IDS`]).
    pub ids: usize,
    /// Data pages per id (segments per request, 1..=[`MAX_SEGMENTS`]).
    pub segments: usize,
}

impl Shape {
    /// The shape for an offer and a budget of data pages: the backend's segments (capped
    /// so that at least `min_ids` requests can be in flight), as many ids as the pages
    /// allow.
    ///
    /// ```
    /// use xenpv_protocol::blkfront::{Offer, Shape};
    /// let o = Offer::parse(b"8", b"512", b"0", None, None, Some(b"256")).unwrap();
    /// assert_eq!(Shape::for_offer(&o, 1024, 4), Shape { ids: 4, segments: 256 });
    /// let o = Offer::parse(b"8", b"512", b"0", None, None, None).unwrap();
    /// assert_eq!(Shape::for_offer(&o, 1024, 4), Shape { ids: 32, segments: 11 });
    /// ```
    pub fn for_offer(offer: &Offer, pages: usize, min_ids: usize) -> Shape {
        let min_ids = min_ids.clamp(1, IDS);
        let segments = offer.segments().min(pages / min_ids).max(1);
        Shape {
            ids: (pages / segments).clamp(1, IDS),
            segments,
        }
    }
    /// Data pages the shape uses.
    pub fn pages(&self) -> usize {
        self.ids * self.segments
    }
}

impl Queue {
    /// A queue over a freshly initialised ring page, for a device that offers `offer`,
    /// with `shape.ids` ids of `shape.segments` pages each, for device `handle`
    /// (`virtual-device`). A shape of more segments than the offer allows is cut to
    /// [`Offer::segments`] (the backend refuses larger requests); the pool's first
    /// `ids * segments` pages are then used.
    pub fn new(ring: &mut dyn PageMem, offer: Offer, shape: Shape, handle: u16) -> Queue {
        let segments = shape.segments.clamp(1, offer.segments());
        Queue {
            ring: FrontRing::new(blkif::REQ_SLOT, ring),
            slots: [Slot::Free; IDS],
            ids: shape.ids.clamp(1, IDS),
            segments,
            handle,
            offer,
            generation: 0,
            broken: false,
            resumed: false,
            counters: Counters::default(),
            traffic: Traffic::default(),
        }
    }

    /// The device's size and what it allows.
    pub fn geometry(&self) -> Geometry {
        self.offer.geometry
    }
    /// What the backend offered.
    pub fn offer(&self) -> Offer {
        self.offer
    }
    /// Bytes one request carries at most.
    pub fn request_bytes(&self) -> usize {
        self.segments * PAGE
    }
    /// Responses refused and failures.
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// Requests and bytes.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }
    /// Whether the backend corrupted the ring (the device stopped).
    pub fn broken(&self) -> bool {
        self.broken
    }
    /// Requests sent and not answered (including abandoned ones).
    pub fn in_flight(&self) -> usize {
        self.slots[..self.ids]
            .iter()
            .filter(|s| matches!(s, Slot::InFlight(_) | Slot::Abandoned(_)))
            .count()
    }

    /// Read `buf.len()` bytes from device sector `sector` on, waiting at most until
    /// `deadline` (ns).
    pub fn read(
        &mut self,
        io: &mut dyn Io,
        sector: u64,
        buf: &mut [u8],
        deadline: u64,
    ) -> Result<(), BlockError> {
        self.offer.geometry.check(sector, buf.len(), false)?;
        self.transfer(io, OP_READ, sector, Data::Read(buf), deadline)
    }

    /// Write `buf` from device sector `sector` on, waiting at most until `deadline`.
    pub fn write(
        &mut self,
        io: &mut dyn Io,
        sector: u64,
        buf: &[u8],
        deadline: u64,
    ) -> Result<(), BlockError> {
        self.offer.geometry.check(sector, buf.len(), true)?;
        self.transfer(io, OP_WRITE, sector, Data::Write(buf), deadline)
    }

    /// Flush (or write a barrier, if that is what the backend offers).
    pub fn flush(&mut self, io: &mut dyn Io, deadline: u64) -> Result<(), BlockError> {
        let op = self.offer.flush.ok_or(BlockError::FlushUnsupported)?;
        self.transfer(io, op, 0, Data::None, deadline)?;
        self.traffic.flushes += 1;
        Ok(())
    }

    /// Start a read of `len` bytes from device sector `sector` on, to be finished by
    /// [`Self::step_read`] (a caller that waits for the backend its own way, an async
    /// task say) before `deadline` (ns). Checked as [`Self::read`] checks.
    pub fn begin_read(
        &mut self,
        io: &mut dyn Io,
        sector: u64,
        len: usize,
        deadline: u64,
    ) -> Result<Transfer, BlockError> {
        self.offer.geometry.check(sector, len, false)?;
        self.begin(io, OP_READ, sector, len, deadline)
    }

    /// Advance a read begun by [`Self::begin_read`] into `buf` (the same length, and the
    /// same buffer every step): send what fits, take the responses there are. `None`:
    /// not finished, step again after an event from the backend or at the transfer's
    /// [`deadline`](Transfer::deadline), whichever comes first. `Some`: the read's
    /// result, and the transfer is over.
    pub fn step_read(
        &mut self,
        io: &mut dyn Io,
        t: &mut Transfer,
        buf: &mut [u8],
    ) -> Option<Result<(), BlockError>> {
        if self.resumed {
            // The ring belongs to the old domain: nothing in flight will be answered.
            t.outstanding = 0;
            return Some(Err(BlockError::Resumed));
        }
        if t.op != OP_READ || buf.len() != t.len {
            self.cancel(t);
            return Some(Err(BlockError::Unaligned {
                len: buf.len(),
                sector_size: self.offer.geometry.sector_size,
            }));
        }
        self.advance(io, t, &mut Data::Read(buf))
    }

    /// The guest moved to a new domain: the ring, its grants and the backend stayed with
    /// the old one. Every request in flight is dropped without waiting for an answer
    /// (none will come), and from now on every transfer, including one begun before, ends
    /// in [`BlockError::Resumed`] so that its caller re-issues it on the new backend's
    /// queue. Returns the requests that were in flight.
    pub fn abandon_for_resume(&mut self) -> usize {
        let n = self.in_flight();
        self.slots = [Slot::Free; IDS];
        self.resumed = true;
        n
    }

    /// Has the queue been abandoned for a new domain?
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// Give up on a transfer before its end (its caller went away): requests in flight
    /// are abandoned (their responses only free their slots) and counted in `timed_out`.
    pub fn cancel(&mut self, t: &mut Transfer) {
        if t.outstanding > 0 {
            self.counters.timed_out += t.outstanding as u64;
            self.abandon();
        }
        t.outstanding = 0;
        t.next = t.len;
        t.flush_sent = true;
    }

    fn transfer(
        &mut self,
        io: &mut dyn Io,
        op: u8,
        sector: u64,
        mut data: Data<'_>,
        deadline: u64,
    ) -> Result<(), BlockError> {
        let mut t = self.begin(io, op, sector, data.len(), deadline)?;
        loop {
            if let Some(r) = self.advance(io, &mut t, &mut data) {
                return r;
            }
            io.wait(deadline);
        }
    }

    /// A transfer's start: refused at once if nothing can be sent any more.
    fn begin(
        &mut self,
        io: &mut dyn Io,
        op: u8,
        sector: u64,
        len: usize,
        deadline: u64,
    ) -> Result<Transfer, BlockError> {
        if self.resumed {
            return Err(BlockError::Resumed);
        }
        // Stopped, or every id retired (the backend kept a grant of each): nothing can
        // be sent any more.
        if self.broken || self.usable_ids() == 0 {
            return Err(BlockError::Broken);
        }
        Ok(Transfer {
            op,
            sector,
            len,
            deadline,
            started: io.now_ns(),
            next: 0,
            flush_sent: false,
            outstanding: 0,
            first_err: None,
        })
    }

    /// Send what fits and take the responses there are: the result once the transfer
    /// is over, `None` while it waits for the backend (before its deadline).
    fn advance(
        &mut self,
        io: &mut dyn Io,
        t: &mut Transfer,
        data: &mut Data<'_>,
    ) -> Option<Result<(), BlockError>> {
        let (op, len) = (t.op, t.len);
        // A flush is one request with no data.
        if len == 0 && (op == OP_READ || op == OP_WRITE) {
            return Some(Ok(()));
        }
        let per_sector = u64::from(self.offer.geometry.sector_size / 512);
        loop {
            // Send what fits: ids free, ring slots free, no error so far.
            let mut sent = false;
            while t.first_err.is_none() && (t.next < len || (len == 0 && !t.flush_sent)) {
                let Some(slot) = self.free_slot() else { break };
                if self.ring.free() == 0 {
                    break;
                }
                let n = (len - t.next).min(self.request_bytes());
                let s512 = t.sector * per_sector + (t.next / 512) as u64;
                match self.send(io, slot, op, s512, data, t.next, n) {
                    Ok(()) => {
                        t.outstanding += 1;
                        sent = true;
                        t.next += n;
                        t.flush_sent = true;
                    }
                    // No grant free now: wait for a response to free some.
                    Err(()) if t.outstanding > 0 => break,
                    Err(()) => {
                        t.first_err = Some(BlockError::Timeout {
                            waited_ms: (io.now_ns() - t.started) / 1_000_000,
                        });
                        break;
                    }
                }
            }
            if sent && self.ring.push(io.ring()) {
                self.traffic.notifies += 1;
                io.notify();
            }
            if t.outstanding == 0 && (t.first_err.is_some() || t.next >= len) {
                return Some(t.first_err.map_or(Ok(()), Err));
            }
            match self.complete(io, data) {
                Err(()) => {
                    self.broken = true;
                    self.abandon();
                    t.outstanding = 0;
                    return Some(Err(BlockError::Broken));
                }
                Ok(Some(done)) => {
                    t.outstanding -= 1;
                    if let Err(e) = done.result {
                        t.first_err.get_or_insert(e);
                    } else if op == OP_READ {
                        self.traffic.read_bytes += done.len as u64;
                    } else if op == OP_WRITE {
                        self.traffic.written_bytes += done.len as u64;
                    }
                }
                Ok(None) => {
                    let now = io.now_ns();
                    if now >= t.deadline {
                        self.counters.timed_out += t.outstanding as u64;
                        self.abandon();
                        t.outstanding = 0;
                        // A request that failed says more than the ones that never came.
                        return Some(Err(t.first_err.unwrap_or(BlockError::Timeout {
                            waited_ms: (now - t.started) / 1_000_000,
                        })));
                    }
                    return None;
                }
            }
        }
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots[..self.ids].iter().position(|s| *s == Slot::Free)
    }

    /// Grant the pages of request `slot`, fill them (a write), put the request.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        io: &mut dyn Io,
        slot: usize,
        op: u8,
        sector: u64,
        data: &Data<'_>,
        at: usize,
        n: usize,
    ) -> Result<(), ()> {
        let pages = n.div_ceil(PAGE);
        let first = slot * self.segments;
        let mut grefs = GrantSet {
            data: [0; MAX_SEGMENTS],
            n: 0,
            indirect: None,
        };
        let mut segs = [Segment {
            gref: 0,
            first_sect: 0,
            last_sect: 0,
        }; MAX_SEGMENTS];
        for (k, seg) in segs.iter_mut().enumerate().take(pages) {
            let page = PageRef::Data((first + k) as u16);
            let bytes = (n - k * PAGE).min(PAGE);
            if let Data::Write(b) = data {
                io.copy_in(page, 0, &b[at + k * PAGE..at + k * PAGE + bytes]);
            }
            // A read's pages are written by the backend, a write's only read.
            let Some(g) = io.grant(page, op == OP_WRITE) else {
                self.abort_send(io, slot, &grefs);
                return Err(());
            };
            grefs.data[k] = g;
            grefs.n = k + 1;
            *seg = Segment {
                gref: g,
                first_sect: 0,
                last_sect: (bytes / 512) as u8 - 1,
            };
        }
        self.generation = self.generation.wrapping_add(1);
        let wire_id = (self.generation << 8) | slot as u64;
        let req = if pages > DIRECT_SEGMENTS {
            let ind = PageRef::Indirect(slot as u16);
            let mut off = 0;
            for s in &segs[..pages] {
                io.copy_in(ind, off, &s.encode());
                off += 8;
            }
            let Some(g) = io.grant(ind, true) else {
                self.abort_send(io, slot, &grefs);
                return Err(());
            };
            grefs.indirect = Some(g);
            self.traffic.indirect += 1;
            debug_assert!(pages <= SEGMENTS_PER_INDIRECT_PAGE);
            Request::Indirect {
                operation: op,
                nr_segments: pages as u16,
                id: wire_id,
                sector,
                handle: self.handle,
                pages: &[g],
            }
            .encode()
        } else {
            Request::Direct {
                operation: op,
                handle: self.handle,
                id: wire_id,
                sector,
                segments: &segs[..pages],
            }
            .encode()
        };
        // Cannot fail: the caller saw a free ring slot and nothing was put since.
        let _ = self.ring.put(io.ring(), &req);
        self.slots[slot] = Slot::InFlight(Flight {
            wire_id,
            operation: op,
            tag: at,
            len: n,
            grefs,
        });
        self.traffic.requests += 1;
        Ok(())
    }

    /// Undo a request that could not be sent: end the grants made so far; if the
    /// backend holds one (it may map a predictable reference before the request is
    /// published), the slot is retired, as for a kept grant at completion, so its pages
    /// are never refilled or granted again.
    fn abort_send(&mut self, io: &mut dyn Io, slot: usize, grefs: &GrantSet) {
        if !self.end_grants(io, grefs) {
            self.counters.retired += 1;
            self.slots[slot] = Slot::Retired;
        }
    }

    /// End a request's grants; whether all ended.
    fn end_grants(&mut self, io: &mut dyn Io, g: &GrantSet) -> bool {
        let mut all = true;
        for &r in g.data[..g.n].iter().chain(g.indirect.iter()) {
            all &= io.end_grant(r);
        }
        all
    }

    /// Take the next response (checked, counted), `Ok(None)` when none waits; `Err` when
    /// the ring is corrupt.
    fn complete(&mut self, io: &mut dyn Io, data: &mut Data<'_>) -> Result<Option<Done>, ()> {
        loop {
            let waiting = match self.ring.pending(io.ring()) {
                Ok(0) => self.ring.final_check(io.ring()),
                r => r,
            };
            match waiting {
                Err(_) => return Err(()),
                Ok(0) => return Ok(None),
                Ok(_) => {}
            }
            let mut b = [0u8; RSP_SLOT];
            self.ring.take(io.ring(), &mut b);
            let r = Response::decode(&b);
            let slot = (r.id & 0xff) as usize;
            if slot >= self.ids {
                self.counters.bad_id += 1;
                continue;
            }
            let (f, abandoned) = match self.slots[slot] {
                Slot::InFlight(f) if f.wire_id == r.id => (f, false),
                Slot::Abandoned(f) if f.wire_id == r.id => (f, true),
                _ => {
                    self.counters.not_in_flight += 1;
                    continue;
                }
            };
            // An indirect request may be answered as itself or as its inner operation.
            let indirect = f.grefs.indirect.is_some();
            if r.operation != f.operation && !(indirect && r.operation == OP_INDIRECT) {
                self.counters.bad_operation += 1;
                // The request is over either way: its grants go, the caller hears why.
            }
            let ok_op = r.operation == f.operation || (indirect && r.operation == OP_INDIRECT);
            self.slots[slot] = if self.end_grants(io, &f.grefs) {
                Slot::Free
            } else {
                self.counters.retired += 1;
                Slot::Retired
            };
            if abandoned {
                self.counters.late += 1;
                continue;
            }
            let result = if !ok_op {
                Err(BlockError::BadResponse {
                    operation: r.operation,
                })
            } else if r.status != RSP_OKAY {
                self.counters.failed += 1;
                Err(BlockError::Backend { status: r.status })
            } else {
                Ok(())
            };
            if result.is_ok() && f.operation == OP_READ {
                if let Data::Read(out) = data {
                    let first = slot * self.segments;
                    for k in 0..f.len.div_ceil(PAGE) {
                        let at = f.tag + k * PAGE;
                        let n = (f.len - k * PAGE).min(PAGE);
                        io.copy_out(PageRef::Data((first + k) as u16), 0, &mut out[at..at + n]);
                    }
                }
            }
            return Ok(Some(Done { len: f.len, result }));
        }
    }

    /// Give up on every request in flight: their responses will only free their slots.
    fn abandon(&mut self) {
        for s in &mut self.slots {
            if let Slot::InFlight(f) = *s {
                *s = Slot::Abandoned(f);
            }
        }
    }

    /// Ids usable (not retired).
    pub fn usable_ids(&self) -> usize {
        self.slots[..self.ids]
            .iter()
            .filter(|s| **s != Slot::Retired)
            .count()
    }
}

/// The caller's buffer for one call.
enum Data<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
    None,
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::Read(b) => b.len(),
            Data::Write(b) => b.len(),
            Data::None => 0,
        }
    }
}
