//! blkback in miniature: the backend half of a blkif ring, with the frontend's pages, a
//! grant table, a disk and a clock, all in ordinary memory. It implements
//! [`xenpv_protocol::blkfront::Io`] itself, so the host tests drive the real
//! [`Queue`](xenpv_protocol::blkfront::Queue) against it.
//!
//! The backend acts when the frontend waits ([`Io::wait`]): it takes the requests pushed
//! (only once notified, as a sleeping blkback would), checks each as Linux's
//! `xen-blkback` does (segments `first_sect <= last_sect <= 7`, grants that exist, a
//! read's pages writable, indirect segments read through their page's grant, no I/O
//! misaligned to the disk's sector size or past its end), moves the data between its disk
//! and the granted pages, and answers as its [`Mode`] says. Every wait advances the clock
//! by [`Blkback::step_ns`] when the backend did something, or to the deadline when it has
//! nothing to do, never past the deadline: a silent backend makes the caller's deadline
//! come, and a wait never blocks.
//!
//! ```
//! use xenpv_protocol::blkfront::{Io, Queue, Shape};
//! use xenpv_testkit::blkback::Blkback;
//!
//! let mut bb = Blkback::new(vec![0; 1 << 20], 512);
//! let offer = bb.offer();
//! let mut q = Queue::new(bb.ring(), offer, Shape::for_offer(&offer, 64, 4), 51712);
//! q.write(&mut bb, 8, &[7; 4096], 1_000_000_000).unwrap();
//! let mut back = [0; 4096];
//! q.read(&mut bb, 8, &mut back, 1_000_000_000).unwrap();
//! assert_eq!(back, [7; 4096]);
//! assert_eq!(&bb.disk[4096..8192], &[7; 4096][..]);
//! assert_eq!(bb.live_grants(), 0, "every grant ended");
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use xenpv_protocol::blkfront::{Io, Offer, PageRef};
use xenpv_protocol::blkif::{
    DecodedRequest, Response, Segment, VdiskInfo, DIRECT_SEGMENTS, INDIRECT_PAGES,
    OP_FLUSH_DISKCACHE, OP_INDIRECT, OP_READ, OP_WRITE, OP_WRITE_BARRIER, REQ_SLOT, RING_SLOTS,
    RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY, RSP_SLOT, SEGMENTS_PER_INDIRECT_PAGE,
};
use xenpv_protocol::shared_ring::{PageMem, SLOTS_AT};

const PAGE: usize = 4096;
/// The most data pages the model holds (32 ids of 256 pages).
const MAX_DATA_PAGES: usize = 32 * 256;
/// Where a ring's indices are.
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// The shared ring page in ordinary memory (4096 bytes).
pub struct RingPage(pub Vec<u8>);

impl PageMem for RingPage {
    fn load_u32(&self, at: usize) -> u32 {
        self.0[..].load_u32(at)
    }
    fn store_u32(&mut self, at: usize, v: u32) {
        self.0[..].store_u32(at, v)
    }
    fn read(&self, at: usize, out: &mut [u8]) {
        self.0[..].read(at, out)
    }
    fn write(&mut self, at: usize, data: &[u8]) {
        self.0[..].write(at, data)
    }
}

/// How a [`Mode::WrongIds`] backend picks the id it answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrongId {
    /// The request's id plus this much.
    Offset(u64),
    /// The id of the next request the backend holds (in flight, not yet answered), whose
    /// own answer then names its own id (a duplicate); the last one held is answered
    /// with its id + 300.
    OtherInFlight,
}

/// How the model answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As blkback does: every request answered at the next wait.
    Honest,
    /// Answers one request every `every`th wait, the clock advancing a step each wait.
    Slow {
        /// Waits per response (1 answers one request per wait).
        every: u32,
    },
    /// Does the I/O, but the responses name other ids.
    WrongIds(WrongId),
    /// Answers one request twice (its own response and the next request's), and so the
    /// next request never; then honest again.
    DuplicateIds,
    /// Does the I/O, but every response carries this status.
    BadStatus(i16),
    /// Does the I/O, but every response names another operation (a read's a write, any
    /// other's a read).
    BadOperation,
    /// Takes requests and never answers them (until the mode changes).
    Silent,
    /// Answers honestly, but `rsp_prod` jumps 1000 past the responses written.
    RspProdAhead,
    /// Answers honestly, but keeps every grant it mapped: those grants never end.
    KeepsGrants,
}

/// A grant the frontend made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The page granted.
    pub page: PageRef,
    /// Granted read-only.
    pub readonly: bool,
}

/// A request as the backend took it off the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its wire id.
    pub id: u64,
    /// The operation (for an indirect request, the inner one).
    pub operation: u8,
    /// Its segments were in indirect pages.
    pub indirect: bool,
    /// The first 512-byte sector.
    pub sector: u64,
    /// The device handle.
    pub handle: u16,
    /// `nr_segments` as the request has it.
    pub nr_segments: u16,
    /// The segments (read from the indirect pages for an indirect request, as far as
    /// their grants allowed).
    pub segments: Vec<Segment>,
    /// What each segment's grant was when the request was taken (`None`: no such grant).
    pub grants: Vec<Option<Grant>>,
    /// The indirect pages' grants.
    pub indirect_grants: Vec<Option<Grant>>,
    /// Requests the frontend had pushed and the backend not yet answered, this one
    /// included, when it was taken.
    pub outstanding: u32,
}

impl Seen {
    /// 512-byte sectors the segments name.
    pub fn sectors(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| u64::from(s.last_sect.saturating_sub(s.first_sect)) + 1)
            .sum()
    }
}

/// A request taken and not yet answered.
#[derive(Clone, Debug)]
struct Held {
    req: DecodedRequest,
}

/// The model backend, its disk, the frontend's pages, the grant table and the clock.
pub struct Blkback {
    /// The ring page.
    pub ring: RingPage,
    data: Vec<Vec<u8>>,
    indirect: Vec<Vec<u8>>,
    grants: BTreeMap<u32, Grant>,
    kept: BTreeSet<u32>,
    next_gref: u32,
    /// The most grants live at once (`grant` answers `None` beyond it).
    pub grant_limit: usize,
    /// The disk's bytes (a whole number of sectors).
    pub disk: Vec<u8>,
    /// The disk's sector size (512..=4096).
    pub sector_size: u32,
    /// `info` has `VDISK_READONLY`: writes fail.
    pub read_only: bool,
    /// Offers (and does) `feature-flush-cache`.
    pub flush_cache: bool,
    /// Offers (and does) `feature-barrier`.
    pub barrier: bool,
    /// Offers `feature-max-indirect-segments` (0: no indirect requests).
    pub max_indirect: u32,
    /// Answers an indirect request with `OP_INDIRECT` rather than the inner operation
    /// (both are what backends do).
    pub indirect_answer_outer: bool,
    /// The clock, ns.
    pub now: u64,
    /// How far the clock moves in a wait in which the backend does something.
    pub step_ns: u64,
    /// How it answers (may be changed at any time).
    pub mode: Mode,
    req_cons: u32,
    rsp_prod_pvt: u32,
    rsp_published: u32,
    awake: bool,
    held: VecDeque<Held>,
    waits: u64,
    /// Notifications from the frontend.
    pub notifies: u64,
    /// Notifications the backend sent (as `rsp_event` asked).
    pub events: u64,
    /// Every request taken, in order.
    pub log: Vec<Seen>,
    /// The most requests outstanding at once.
    pub max_outstanding: u32,
    /// Requests refused (answered `RSP_ERROR` or `RSP_EOPNOTSUPP` by the checks): id
    /// and why.
    pub refused: Vec<(u64, &'static str)>,
    /// Flushes and barriers done.
    pub flushes: u64,
    /// Grants the frontend made.
    pub grants_made: u64,
    /// `end_grant` calls for a grant that was not live (a frontend bug).
    pub bad_end_grants: u64,
    /// Copies into or out of a page while it was granted (a frontend bug but with
    /// [`Mode::KeepsGrants`], where the frontend reads a kept page once).
    pub copies_while_granted: u64,
    /// Times the backend was replaced ([`Blkback::replace_backend`]).
    pub replaced: u32,
}

impl Blkback {
    /// A backend over `disk` (cut to whole sectors of `sector_size`), honest, offering
    /// no flush and no indirect requests, its clock at 0 stepping 1 ms.
    pub fn new(mut disk: Vec<u8>, sector_size: u32) -> Blkback {
        disk.truncate(disk.len() - disk.len() % sector_size.max(1) as usize);
        Blkback {
            ring: RingPage(vec![0; PAGE]),
            data: vec![],
            indirect: vec![],
            grants: BTreeMap::new(),
            kept: BTreeSet::new(),
            next_gref: 8,
            grant_limit: usize::MAX,
            disk,
            sector_size,
            read_only: false,
            flush_cache: false,
            barrier: false,
            max_indirect: 0,
            indirect_answer_outer: false,
            now: 0,
            step_ns: 1_000_000,
            mode: Mode::Honest,
            req_cons: 0,
            rsp_prod_pvt: 0,
            rsp_published: 0,
            awake: false,
            held: VecDeque::new(),
            waits: 0,
            notifies: 0,
            events: 0,
            log: vec![],
            max_outstanding: 0,
            refused: vec![],
            flushes: 0,
            grants_made: 0,
            bad_end_grants: 0,
            copies_while_granted: 0,
            replaced: 0,
        }
    }

    /// The keys it writes: `sectors` (512-byte units), `sector-size`, `info`, and the
    /// features it offers (`None` when not).
    pub fn keys(&self) -> [Option<String>; 6] {
        let on = |b: bool| b.then(|| "1".to_string());
        [
            Some((self.disk.len() / 512).to_string()),
            Some(self.sector_size.to_string()),
            Some(
                if self.read_only {
                    VdiskInfo::READONLY
                } else {
                    VdiskInfo::empty()
                }
                .bits()
                .to_string(),
            ),
            on(self.flush_cache),
            on(self.barrier),
            (self.max_indirect != 0).then(|| self.max_indirect.to_string()),
        ]
    }

    /// [`Offer::parse`] of its [`Self::keys`].
    ///
    /// # Panics
    /// If the parse refuses them (a sector size the frontend does not take).
    pub fn offer(&self) -> Offer {
        let k = self.keys();
        let b = |i: usize| k[i].as_deref().map(str::as_bytes);
        Offer::parse(
            b(0).unwrap_or_default(),
            b(1).unwrap_or_default(),
            b(2).unwrap_or_default(),
            b(3),
            b(4),
            b(5),
        )
        .expect("the model's keys parse")
    }

    /// The guest moved to a new domain, and this is the new domain's backend for the same
    /// disk (the same bytes: the image is shared storage), freshly at Initialising: it
    /// never saw the old ring, so the requests the old one held are never answered, and
    /// the old domain's grants are gone with it (Xen empties the table; references start
    /// over at 8). The frontend's pages are the guest's memory and stay. A test changes
    /// the features afterwards ([`Self::flush_cache`], [`Self::max_indirect`]…) to model a
    /// host that offers others. Returns the requests that were held unanswered.
    pub fn replace_backend(&mut self) -> usize {
        let lost = self.held.len() + self.unconsumed() as usize;
        self.ring = RingPage(vec![0; PAGE]);
        self.grants.clear();
        self.kept.clear();
        self.next_gref = 8;
        self.held.clear();
        self.req_cons = 0;
        self.rsp_prod_pvt = 0;
        self.rsp_published = 0;
        self.awake = false;
        self.mode = Mode::Honest;
        self.replaced += 1;
        lost
    }

    /// Grants live (made and not ended).
    pub fn live_grants(&self) -> usize {
        self.grants.len()
    }
    /// A live grant.
    pub fn grant_of(&self, gref: u32) -> Option<Grant> {
        self.grants.get(&gref).copied()
    }
    /// Map grant `gref` as soon as the frontend makes it, before any request names it
    /// (a hostile backend guessing the next reference), and keep it: its end is refused.
    pub fn map_early(&mut self, gref: u32) {
        self.kept.insert(gref);
    }
    /// Grants the backend keeps ([`Mode::KeepsGrants`], [`Blkback::map_early`]).
    pub fn kept_grants(&self) -> usize {
        self.kept.len()
    }
    /// Requests taken and not yet answered.
    pub fn held(&self) -> usize {
        self.held.len()
    }
    /// Requests the frontend pushed that the backend has not taken.
    pub fn unconsumed(&self) -> u32 {
        self.ring.load_u32(REQ_PROD).wrapping_sub(self.req_cons)
    }
    /// Responses written.
    pub fn responses(&self) -> u32 {
        self.rsp_prod_pvt
    }
    /// One of the frontend's pages.
    pub fn page(&self, page: PageRef) -> Option<&[u8]> {
        match page {
            PageRef::Data(n) => self.data.get(n as usize),
            PageRef::Indirect(i) => self.indirect.get(i as usize),
        }
        .map(Vec::as_slice)
    }

    fn page_mut(&mut self, page: PageRef) -> &mut Vec<u8> {
        let (pages, n, most) = match page {
            PageRef::Data(n) => (&mut self.data, n as usize, MAX_DATA_PAGES),
            PageRef::Indirect(i) => (&mut self.indirect, i as usize, 32),
        };
        assert!(n < most, "frontend names {page:?}, past the pool");
        if pages.len() <= n {
            pages.resize(n + 1, vec![0; PAGE]);
        }
        &mut pages[n]
    }

    fn granted(&self, page: PageRef) -> bool {
        self.grants.values().any(|g| g.page == page)
    }

    /// Take every request pushed, if the frontend woke us; go back to sleep as
    /// `RING_FINAL_CHECK_FOR_REQUESTS` does.
    fn consume(&mut self) {
        if !self.awake {
            return;
        }
        loop {
            let prod = self.ring.load_u32(REQ_PROD);
            let outstanding = prod.wrapping_sub(self.rsp_prod_pvt);
            assert!(
                outstanding <= RING_SLOTS,
                "frontend bug: req_prod {prod} is {outstanding} requests past the responses \
                 ({} written): it reused slots not yet answered",
                self.rsp_prod_pvt
            );
            while self.req_cons != prod {
                let at = SLOTS_AT + (self.req_cons % RING_SLOTS) as usize * REQ_SLOT;
                let mut b = [0u8; REQ_SLOT];
                self.ring.read(at, &mut b);
                self.req_cons = self.req_cons.wrapping_add(1);
                let req = DecodedRequest::decode(&b);
                let seen = self.see(&req, outstanding);
                self.max_outstanding = self.max_outstanding.max(seen.outstanding);
                self.log.push(seen);
                self.held.push_back(Held { req });
            }
            self.ring
                .store_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
            if self.ring.load_u32(REQ_PROD) == self.req_cons {
                self.awake = false;
                return;
            }
        }
    }

    /// What a request names, as seen when it was taken.
    fn see(&self, req: &DecodedRequest, outstanding: u32) -> Seen {
        let indirect_grants: Vec<Option<Grant>> =
            req.pages.iter().map(|g| self.grant_of(*g)).collect();
        let segments = if req.indirect {
            self.indirect_segments(req).unwrap_or_default()
        } else {
            req.segments.to_vec()
        };
        Seen {
            id: req.id,
            operation: req.operation,
            indirect: req.indirect,
            sector: req.sector,
            handle: req.handle,
            nr_segments: req.nr_segments,
            grants: segments.iter().map(|s| self.grant_of(s.gref)).collect(),
            segments,
            indirect_grants,
            outstanding,
        }
    }

    /// An indirect request's segments, read through its pages' grants.
    fn indirect_segments(&self, req: &DecodedRequest) -> Result<Vec<Segment>, &'static str> {
        let n = req.nr_segments as usize;
        if n.div_ceil(SEGMENTS_PER_INDIRECT_PAGE) > INDIRECT_PAGES {
            return Err("more segments than indirect pages hold");
        }
        let mut segs = Vec::with_capacity(n);
        for k in 0..n {
            let gref = req.pages[k / SEGMENTS_PER_INDIRECT_PAGE];
            let g = self.grant_of(gref).ok_or("indirect page not granted")?;
            let page = self.page(g.page).ok_or("indirect page not granted")?;
            let at = (k % SEGMENTS_PER_INDIRECT_PAGE) * 8;
            let d = &page[at..at + 8];
            segs.push(Segment {
                gref: u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                first_sect: d[4],
                last_sect: d[5],
            });
        }
        Ok(segs)
    }

    /// Check a request as blkback does and do it; the status.
    fn process(&mut self, req: &DecodedRequest) -> i16 {
        match self.check_and_do(req) {
            Ok(()) => RSP_OKAY,
            Err((status, why)) => {
                self.refused.push((req.id, why));
                status
            }
        }
    }

    fn check_and_do(&mut self, req: &DecodedRequest) -> Result<(), (i16, &'static str)> {
        let err = |why| (RSP_ERROR, why);
        let op = req.operation;
        match op {
            OP_FLUSH_DISKCACHE | OP_WRITE_BARRIER if !req.indirect => {
                let offered = if op == OP_FLUSH_DISKCACHE {
                    self.flush_cache
                } else {
                    self.barrier
                };
                if !offered {
                    return Err((RSP_EOPNOTSUPP, "flush or barrier not offered"));
                }
                if req.nr_segments != 0 {
                    return Err(err("a flush with segments"));
                }
                self.flushes += 1;
                return Ok(());
            }
            OP_READ | OP_WRITE => {}
            _ => return Err((RSP_EOPNOTSUPP, "unknown operation")),
        }
        let segs = if req.indirect {
            if self.max_indirect == 0 {
                return Err(err("indirect request, none offered"));
            }
            if req.nr_segments == 0 || u32::from(req.nr_segments) > self.max_indirect {
                return Err(err("indirect segments out of 1..=max-indirect-segments"));
            }
            self.indirect_segments(req).map_err(err)?
        } else {
            if req.nr_segments == 0 || req.nr_segments as usize > DIRECT_SEGMENTS {
                return Err(err("direct segments out of 1..=11"));
            }
            req.segments.to_vec()
        };
        if op == OP_WRITE && self.read_only {
            return Err(err("write to a read-only disk"));
        }
        let mask = u64::from(self.sector_size / 512) - 1;
        let mut total = 0u64;
        let mut pages = Vec::with_capacity(segs.len());
        for s in &segs {
            if s.last_sect >= 8 || s.first_sect > s.last_sect {
                return Err(err("segment sectors out of first <= last <= 7"));
            }
            let nsec = sectors_of(s);
            if (req.sector | nsec) & mask != 0 {
                return Err(err("misaligned to the disk's sector size"));
            }
            let g = self.grant_of(s.gref).ok_or(err("segment not granted"))?;
            // Reads are mapped writable, writes read-only.
            if op == OP_READ && g.readonly {
                return Err(err("a read into a read-only grant"));
            }
            pages.push((g.page, *s));
            total += nsec;
        }
        let disk_sectors = (self.disk.len() / 512) as u64;
        if req.sector > disk_sectors || total > disk_sectors - req.sector {
            return Err(err("past the end of the disk"));
        }
        if self.mode == Mode::KeepsGrants {
            self.kept.extend(segs.iter().map(|s| s.gref));
            self.kept.extend(req.pages.iter().copied());
        }
        let mut at = req.sector as usize * 512;
        for (page, s) in pages {
            let (from, n) = (s.first_sect as usize * 512, sectors_of(&s) as usize * 512);
            if op == OP_READ {
                let src = self.disk[at..at + n].to_vec();
                self.page_mut(page)[from..from + n].copy_from_slice(&src);
            } else {
                let src = self.page_mut(page)[from..from + n].to_vec();
                self.disk[at..at + n].copy_from_slice(&src);
            }
            at += n;
        }
        Ok(())
    }

    fn respond(&mut self, r: Response) {
        let at = SLOTS_AT + (self.rsp_prod_pvt % RING_SLOTS) as usize * REQ_SLOT;
        let b: [u8; RSP_SLOT] = r.encode();
        self.ring.write(at, &b);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
    }

    /// Answer what the mode says; how many responses were written.
    fn answer(&mut self) -> usize {
        let n = match self.mode {
            Mode::Silent => 0,
            Mode::Slow { every } => usize::from(self.waits.is_multiple_of(u64::from(every.max(1)))),
            _ => self.held.len(),
        }
        .min(self.held.len());
        for _ in 0..n {
            let Some(Held { req }) = self.held.pop_front() else {
                break;
            };
            let mut status = self.process(&req);
            let mut operation = if req.indirect && self.indirect_answer_outer {
                OP_INDIRECT
            } else {
                req.operation
            };
            let mut id = req.id;
            match self.mode {
                Mode::WrongIds(WrongId::Offset(k)) => id = id.wrapping_add(k),
                Mode::WrongIds(WrongId::OtherInFlight) => {
                    id = self.held.front().map_or(id.wrapping_add(300), |h| h.req.id);
                }
                Mode::DuplicateIds => {
                    // This request answered, then the next one answered with this id (so
                    // this one twice, the next never); alone, it waits for a next.
                    if let Some(Held { req: next }) = self.held.pop_front() {
                        self.respond(Response {
                            id,
                            operation,
                            status,
                        });
                        status = self.process(&next);
                        operation = next.operation;
                        self.mode = Mode::Honest;
                    }
                }
                Mode::BadStatus(s) => status = s,
                Mode::BadOperation => {
                    operation = if req.operation == OP_READ {
                        OP_WRITE
                    } else {
                        OP_READ
                    };
                }
                _ => {}
            }
            self.respond(Response {
                id,
                operation,
                status,
            });
        }
        if n > 0 {
            let ahead = if self.mode == Mode::RspProdAhead {
                1000
            } else {
                0
            };
            let (old, new) = (self.rsp_published, self.rsp_prod_pvt);
            self.ring.store_u32(RSP_PROD, new.wrapping_add(ahead));
            self.rsp_published = new;
            // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY.
            let event = self.ring.load_u32(RSP_EVENT);
            if new.wrapping_sub(event) < new.wrapping_sub(old) {
                self.events += 1;
            }
        }
        n
    }
}

/// A checked segment's sectors.
fn sectors_of(s: &Segment) -> u64 {
    u64::from(s.last_sect - s.first_sect) + 1
}

impl Io for Blkback {
    fn ring(&mut self) -> &mut dyn PageMem {
        &mut self.ring
    }
    fn copy_in(&mut self, page: PageRef, at: usize, data: &[u8]) {
        if self.granted(page) {
            self.copies_while_granted += 1;
        }
        self.page_mut(page)[at..at + data.len()].copy_from_slice(data);
    }
    fn copy_out(&mut self, page: PageRef, at: usize, out: &mut [u8]) {
        if self.granted(page) {
            self.copies_while_granted += 1;
        }
        let n = out.len();
        out.copy_from_slice(&self.page_mut(page)[at..at + n]);
    }
    fn grant(&mut self, page: PageRef, readonly: bool) -> Option<u32> {
        if self.grants.len() >= self.grant_limit {
            return None;
        }
        let gref = self.next_gref;
        self.next_gref += 1;
        self.grants.insert(gref, Grant { page, readonly });
        self.grants_made += 1;
        Some(gref)
    }
    fn end_grant(&mut self, gref: u32) -> bool {
        if self.kept.contains(&gref) {
            return false;
        }
        if self.grants.remove(&gref).is_none() {
            self.bad_end_grants += 1;
        }
        true
    }
    fn notify(&mut self) {
        self.notifies += 1;
        self.awake = true;
    }
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn wait(&mut self, deadline: u64) {
        self.waits += 1;
        self.consume();
        let answered = self.answer();
        let busy =
            answered > 0 || (matches!(self.mode, Mode::Slow { .. }) && !self.held.is_empty());
        self.now = if busy {
            self.now.saturating_add(self.step_ns).min(deadline)
        } else {
            deadline
        }
        .max(self.now);
    }
}
