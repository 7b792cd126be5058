//! The balloon: give free frames back to Xen when the toolstack lowers the domain's
//! target (`memory/target`), take frames again when it raises it, keeping the p2m, the
//! M2P, the direct map and the frame allocator consistent — as Linux's
//! `drivers/xen/balloon.c` does for a PV guest.
//!
//! Giving back ([`Balloon::release`]), a batch at a time:
//! 1. choose free frames ([`Balloon::select`]): frames of chunks the direct map has not
//!    mapped first (no entry to clear), then free frames of mapped chunks, high pfns
//!    first; the allocator takes them and records them ballooned
//!    ([`FrameAllocator::balloon_take`]), so nothing hands them out;
//! 2. clear their direct-map entries, then flush the TLB (Xen frees a frame only once no
//!    mapping references it);
//! 3. set their p2m entries to [`INVALID_P2M`];
//! 4. `XENMEM_decrease_reservation` with their mfns. What Xen did not take (it may do a
//!    prefix, or fail) is put back: p2m entry, direct-map entry, free again; counted.
//!
//! Taking back ([`Balloon::populate`]): `XENMEM_populate_physmap` with ballooned pfns;
//! for a PV guest Xen writes each extent's mfn over its pfn and sets the M2P itself. Each
//! mfn is checked (below the highest machine frame, the M2P naming its pfn) before the
//! p2m names it and its direct-map entry is written; a bad one is left out of use and
//! counted (`leaked`: Xen counts it against the domain, the guest cannot use it).
//!
//! The floor ([`Goal`]): the guest gives no frame in use, and keeps [`RESERVE_PAGES`]
//! free so that it keeps serving; below that the shortfall is reported.
//!
//! [`Balloon::check`] is the guest's self-check after each change: p2m entry invalid ⇔
//! ballooned, `M2P[p2m[pfn]] == pfn` for every other frame, no direct-map entry for a
//! ballooned frame of a mapped chunk, every ballooned frame taken in the allocator, and
//! the count agrees with Xen's `XENMEM_current_reservation`.

use crate::frames::{FrameAllocator, CHUNK_PAGES};
use crate::ops::{pte, Maddr, Mfn, MmuOp, MmuSink, Pfn};
use crate::XenError;

/// Frames the balloon leaves free at its floor (4 MiB): room for the network's buffers
/// and the heap's next allocations, so that a guest at its floor keeps serving.
pub const RESERVE_PAGES: u64 = 1024;
/// Frames per hypercall batch: the platform yields between batches, so that a large
/// change does not stop the network.
pub const BATCH: usize = 256;
/// Linux's `INVALID_P2M_ENTRY`: the p2m entry of a frame given back to Xen.
pub const INVALID_P2M: Mfn = Mfn(!0);

/// The p2m list, read and written, and Xen's M2P, read.
pub trait P2mAccess {
    /// The p2m entry of `pfn` (`None` past the end of the list).
    fn mfn(&self, pfn: Pfn) -> Option<Mfn>;
    /// Set the p2m entry of `pfn` (below nr_pages).
    fn set_mfn(&mut self, pfn: Pfn, mfn: Mfn);
    /// Xen's M2P entry of `mfn` (`None` if the M2P does not cover it).
    fn m2p(&self, mfn: Mfn) -> Option<Pfn>;
    /// The highest machine frame (`XENMEM_maximum_ram_page`).
    fn max_mfn(&self) -> Mfn;
}

/// Xen's reservation calls, for this domain, order 0. Both return how many extents Xen
/// says it did (a prefix of the array): hostile, checked by the caller.
pub trait Reservation {
    /// `XENMEM_decrease_reservation` of these mfns.
    fn decrease(&mut self, mfns: &mut [u64]) -> Result<u64, XenError>;
    /// `XENMEM_populate_physmap` of these pfns: Xen writes each done extent's mfn over
    /// its pfn.
    fn populate(&mut self, frames: &mut [u64]) -> Result<u64, XenError>;
}

/// What the balloon did, counted since boot (hostile answers included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames given back to Xen.
    pub released: u64,
    /// Frames taken back from Xen and put in use.
    pub populated: u64,
    /// Extents Xen did not take in a decrease (put back in use).
    pub refused: u64,
    /// Extents Xen did not give in a populate.
    pub short: u64,
    /// Reservation calls that failed.
    pub errors: u64,
    /// Answers claiming more extents than asked (taken as all of them).
    pub overcounts: u64,
    /// mfns Xen gave that failed the checks (out of range, M2P not naming the pfn):
    /// never used; the domain pays for them.
    pub leaked: u64,
    /// Direct-map updates Xen refused (the frames stay out of use).
    pub pte_failures: u64,
}

/// Where the domain is and where it should go, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goal {
    /// The target, capped at nr_pages.
    pub target: u64,
    /// Pages the guest has now: nr_pages less the ballooned ones.
    pub current: u64,
    /// The least the guest can go to: every frame in use plus [`RESERVE_PAGES`].
    pub floor: u64,
    /// How far the target is below the floor (0 when it can be met).
    pub shortfall: u64,
}

/// The next step towards a [`Goal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Give back this many frames.
    Release(u64),
    /// Take this many frames back.
    Populate(u64),
    /// Nothing to do (the target is met, or the floor is reached).
    Done,
}

impl Goal {
    /// The goal for `target` pages, with the allocator as it is now.
    pub fn new(frames: &FrameAllocator<'_>, target: u64) -> Goal {
        let nr = frames.nr_pages();
        let current = nr - frames.ballooned_frames();
        let target = target.min(nr);
        let givable = frames.available_frames().saturating_sub(RESERVE_PAGES);
        let floor = current - givable.min(current);
        Goal {
            target,
            current,
            floor,
            shortfall: floor.saturating_sub(target),
        }
    }

    /// What to do next.
    pub fn step(&self) -> Step {
        if self.target < self.current {
            match self.current - self.target.max(self.floor).min(self.current) {
                0 => Step::Done,
                n => Step::Release(n),
            }
        } else if self.target > self.current {
            Step::Populate(self.target - self.current)
        } else {
            Step::Done
        }
    }
}

/// A batch's outcome: extents asked of Xen and done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Frames in the batch.
    pub asked: u64,
    /// Frames Xen took (release) or that are in use again (populate).
    pub done: u64,
}

/// Why a batch stopped early. The state is consistent (what was not done is put back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonFail<E> {
    /// Clearing the direct-map entries failed: nothing was given back.
    Sink(E),
    /// No frame to give or take.
    Nothing,
}

/// The self-check's findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The p2m entry and the balloon's record disagree.
    Record {
        /// The frame.
        pfn: Pfn,
        /// Recorded as ballooned.
        ballooned: bool,
        /// Its p2m entry.
        mfn: Mfn,
    },
    /// `M2P[p2m[pfn]]` is not `pfn`.
    M2p {
        /// The frame.
        pfn: Pfn,
        /// Its p2m entry.
        mfn: Mfn,
        /// What the M2P says.
        m2p: Option<Pfn>,
    },
    /// A ballooned frame is still mapped in the direct map.
    Mapped {
        /// The frame.
        pfn: Pfn,
        /// Its direct-map entry.
        pte: u64,
    },
    /// A ballooned frame is free in the allocator.
    Free {
        /// The frame.
        pfn: Pfn,
    },
    /// The allocator's count of ballooned frames is not what its record holds.
    Count {
        /// The allocator's count.
        counted: u64,
        /// Bits in the record.
        recorded: u64,
    },
    /// Xen's count of the domain's pages is not what the guest expects.
    Reservation {
        /// What the guest expects.
        expected: u64,
        /// What Xen says.
        xen: u64,
    },
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            CheckError::Record {
                pfn,
                ballooned,
                mfn,
            } => write!(f, "pfn {pfn:#x} ballooned={ballooned} but p2m {mfn:#x}"),
            CheckError::M2p { pfn, mfn, m2p } => {
                write!(f, "pfn {pfn:#x} p2m {mfn:#x} but m2p {m2p:x?}")
            }
            CheckError::Mapped { pfn, pte } => {
                write!(f, "ballooned pfn {pfn:#x} still mapped: pte {pte:#x}")
            }
            CheckError::Free { pfn } => write!(f, "ballooned pfn {pfn:#x} free in the allocator"),
            CheckError::Count { counted, recorded } => {
                write!(f, "{counted} ballooned counted, {recorded} recorded")
            }
            CheckError::Reservation { expected, xen } => {
                write!(f, "xen has {xen} pages, {expected} expected")
            }
        }
    }
}

/// What the self-check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Frames checked (nr_pages).
    pub pfns: u64,
    /// Ballooned frames.
    pub ballooned: u64,
    /// Direct-map entries of ballooned frames read (in mapped chunks).
    pub ptes: u64,
}

/// The balloon's planner: where the direct map's entries are, the cursors of its scans,
/// and its counters.
#[derive(Clone, Debug)]
pub struct Balloon {
    direct_l1: Pfn,
    data: pte::PageTableFlags,
    /// Where the next scan for unmapped-chunk frames starts (downwards; exclusive).
    unmapped_cursor: u64,
    /// Where the next scan for free mapped frames starts (downwards; exclusive).
    mapped_cursor: u64,
    /// What was done so far.
    pub counters: Counters,
}

/// Which chunk-L1 frame (`direct_l1 + pfn / CHUNK_PAGES`) and slot map `pfn`.
fn l1_slot(direct_l1: Pfn, pfn: Pfn) -> (Pfn, u64) {
    (direct_l1 + pfn.0 / CHUNK_PAGES, pfn.0 % CHUNK_PAGES)
}

impl Balloon {
    /// The balloon over the direct map whose chunk L1s start at `direct_l1`
    /// (`Tables::direct_l1`), with NX data mappings if `nx`.
    pub fn new(direct_l1: Pfn, nx: bool) -> Balloon {
        let mut data = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
        if nx {
            data |= pte::NX;
        }
        Balloon {
            direct_l1,
            data,
            unmapped_cursor: u64::MAX,
            mapped_cursor: u64::MAX,
            counters: Counters::default(),
        }
    }

    /// Start a new change: the scans start again from the top.
    pub fn begin(&mut self) {
        self.unmapped_cursor = u64::MAX;
        self.mapped_cursor = u64::MAX;
    }

    /// The machine address of `pfn`'s direct-map entry (its chunk's L1, through the p2m).
    fn pte_maddr(&self, pfn: Pfn, p2m: &dyn P2mAccess) -> Option<Maddr> {
        let (l1, slot) = l1_slot(self.direct_l1, pfn);
        let m = p2m.mfn(l1).filter(|&m| m <= Mfn::MAX)?;
        Some(Maddr(m.maddr().0 + slot * 8))
    }

    /// Up to `out.len()` frames to give back: frames of unmapped chunks first, then free
    /// frames of mapped chunks, high pfns first. Never a frame in use. How many.
    pub fn select(&mut self, frames: &FrameAllocator<'_>, out: &mut [Pfn]) -> usize {
        let nr = frames.nr_pages();
        let mut n = 0;
        // Unmapped chunks, a chunk at a time from the top.
        let mut p = self.unmapped_cursor.min(nr);
        while p > 0 && n < out.len() {
            let c = (p - 1) / CHUNK_PAGES;
            if frames.is_mapped_chunk(c) {
                p = c * CHUNK_PAGES;
                continue;
            }
            p -= 1;
            if frames.balloon_candidate(Pfn(p)) == Some(false) {
                out[n] = Pfn(p);
                n += 1;
            }
        }
        self.unmapped_cursor = p;
        let mut p = self.mapped_cursor.min(nr);
        while p > 0 && n < out.len() {
            p -= 1;
            if frames.balloon_candidate(Pfn(p)) == Some(true) {
                out[n] = Pfn(p);
                n += 1;
            }
        }
        self.mapped_cursor = p;
        n
    }

    /// Give up to `want` (at most [`BATCH`]) free frames back to Xen, one batch.
    pub fn release<S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        p2m: &mut dyn P2mAccess,
        sink: &mut S,
        xen: &mut dyn Reservation,
        want: u64,
    ) -> Result<Batch, BalloonFail<S::Error>> {
        let mut pfns = [Pfn(0); BATCH];
        let mut mfns = [0u64; BATCH];
        let want = want.min(BATCH as u64) as usize;
        let picked = self.select(frames, &mut pfns[..want]);
        // Take them (each has a valid mfn: a frame without one is not given).
        let mut n = 0;
        for i in 0..picked {
            let pfn = pfns[i];
            let Some(m) = p2m.mfn(pfn).filter(|&m| m <= Mfn::MAX) else {
                continue;
            };
            if frames.balloon_take(pfn).is_ok() {
                pfns[n] = pfn;
                mfns[n] = m.0;
                n += 1;
            }
        }
        if n == 0 {
            return Err(BalloonFail::Nothing);
        }
        let (pfns, mfns) = (&pfns[..n], &mut mfns[..n]);
        // No mapping may reference a frame Xen is to free.
        if let Err(e) = self.unmap(frames, p2m, sink, pfns) {
            self.restore(frames, p2m, sink, pfns, mfns);
            return Err(BalloonFail::Sink(e));
        }
        for &pfn in pfns {
            p2m.set_mfn(pfn, INVALID_P2M);
        }
        let done = self.answer(xen.decrease(mfns), n);
        self.counters.released += done as u64;
        self.counters.refused += (n - done) as u64;
        self.restore(frames, p2m, sink, &pfns[done..], &mfns[done..]);
        Ok(Batch {
            asked: n as u64,
            done: done as u64,
        })
    }

    /// Xen's count of extents done, as a number in `0..=asked` (counted if it is not).
    fn answer(&mut self, r: Result<u64, XenError>, asked: usize) -> usize {
        match r {
            Ok(k) if k <= asked as u64 => k as usize,
            Ok(_) => {
                self.counters.overcounts += 1;
                asked
            }
            Err(_) => {
                self.counters.errors += 1;
                0
            }
        }
    }

    /// Clear the direct-map entries of the mapped ones of `pfns`, then flush the TLB.
    fn unmap<S: MmuSink>(
        &self,
        frames: &FrameAllocator<'_>,
        p2m: &dyn P2mAccess,
        sink: &mut S,
        pfns: &[Pfn],
    ) -> Result<(), S::Error> {
        let mut any = false;
        for &pfn in pfns.iter().filter(|&&p| frames.is_mapped(p)) {
            if let Some(ptr) = self.pte_maddr(pfn, p2m) {
                sink.submit(MmuOp::PtUpdate { ptr, val: 0 })?;
                any = true;
            }
        }
        if any {
            sink.submit(MmuOp::TlbFlushLocal)?;
        }
        sink.flush()
    }

    /// Frames Xen did not take: p2m entry and direct-map entry back, free again (taken
    /// for good, and counted, if the entry cannot be written).
    fn restore<S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        p2m: &mut dyn P2mAccess,
        sink: &mut S,
        pfns: &[Pfn],
        mfns: &[u64],
    ) {
        let ok = self.map(frames, p2m, sink, pfns, mfns);
        self.settle(frames, pfns, ok);
    }

    /// Name `mfns` in the p2m for `pfns` and write their direct-map entries (mapped
    /// chunks); whether Xen took the entries.
    fn map<S: MmuSink>(
        &mut self,
        frames: &FrameAllocator<'_>,
        p2m: &mut dyn P2mAccess,
        sink: &mut S,
        pfns: &[Pfn],
        mfns: &[u64],
    ) -> bool {
        let mut ok = true;
        for (&pfn, &m) in pfns.iter().zip(mfns) {
            p2m.set_mfn(pfn, Mfn(m));
            if !frames.is_mapped(pfn) {
                continue;
            }
            match self.pte_maddr(pfn, p2m) {
                Some(ptr) => {
                    let val = pte::entry(Mfn(m), self.data);
                    ok &= sink.submit(MmuOp::PtUpdate { ptr, val }).is_ok();
                }
                None => ok = false,
            }
        }
        ok && sink.flush().is_ok()
    }

    /// Off the balloon's record: free if their entries were written (`ok`), else taken
    /// for good (mapped ones; counted).
    fn settle(&mut self, frames: &mut FrameAllocator<'_>, pfns: &[Pfn], ok: bool) {
        for &pfn in pfns {
            let usable = ok || !frames.is_mapped(pfn);
            if !usable {
                self.counters.pte_failures += 1;
            }
            let _ = frames.balloon_give(pfn, usable);
        }
    }

    /// Take up to `want` (at most [`BATCH`]) frames back from Xen, one batch: the lowest
    /// ballooned pfns.
    pub fn populate<S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        p2m: &mut dyn P2mAccess,
        sink: &mut S,
        xen: &mut dyn Reservation,
        want: u64,
    ) -> Result<Batch, BalloonFail<S::Error>> {
        let mut pfns = [Pfn(0); BATCH];
        let mut arr = [0u64; BATCH];
        let want = want.min(BATCH as u64) as usize;
        let mut n = 0;
        let mut from = Pfn(0);
        while n < want {
            let Some(p) = frames.next_ballooned(from) else {
                break;
            };
            pfns[n] = p;
            arr[n] = p.0;
            n += 1;
            from = p + 1;
        }
        if n == 0 {
            return Err(BalloonFail::Nothing);
        }
        let done = self.answer(xen.populate(&mut arr[..n]), n);
        self.counters.short += (n - done) as u64;
        // Keep the mfns that pass the checks, in place; the others are never used.
        let mut good = 0;
        for i in 0..done {
            let (pfn, m) = (pfns[i], Mfn(arr[i]));
            let valid = m <= Mfn::MAX && m <= p2m.max_mfn() && p2m.m2p(m) == Some(pfn);
            if valid {
                pfns[good] = pfn;
                arr[good] = m.0;
                good += 1;
            } else {
                self.counters.leaked += 1;
            }
        }
        let ok = self.map(frames, p2m, sink, &pfns[..good], &arr[..good]);
        self.settle(frames, &pfns[..good], ok);
        self.counters.populated += good as u64;
        Ok(Batch {
            asked: n as u64,
            done: good as u64,
        })
    }

    /// The self-check: see the module's doc. `pte(pfn)` reads `pfn`'s direct-map entry
    /// (`None` if its chunk is not mapped); `xen` is Xen's current reservation with the
    /// offset measured at boot (its pages less nr_pages then), if known.
    pub fn check(
        &self,
        frames: &FrameAllocator<'_>,
        p2m: &dyn P2mAccess,
        pte: &dyn Fn(Pfn) -> Option<u64>,
        xen: Option<(u64, i64)>,
    ) -> Result<CheckReport, CheckError> {
        let nr = frames.nr_pages();
        let mut r = CheckReport {
            pfns: nr,
            ..CheckReport::default()
        };
        for pfn in (0..nr).map(Pfn) {
            let ballooned = frames.is_ballooned(pfn);
            let mfn = p2m.mfn(pfn).unwrap_or(INVALID_P2M);
            if ballooned != (mfn == INVALID_P2M) {
                return Err(CheckError::Record {
                    pfn,
                    ballooned,
                    mfn,
                });
            }
            if !ballooned {
                let m2p = p2m.m2p(mfn);
                if m2p != Some(pfn) {
                    return Err(CheckError::M2p { pfn, mfn, m2p });
                }
                continue;
            }
            r.ballooned += 1;
            if !frames.is_taken(pfn) {
                return Err(CheckError::Free { pfn });
            }
            if let Some(e) = pte(pfn) {
                r.ptes += 1;
                if pte::present(e) {
                    return Err(CheckError::Mapped { pfn, pte: e });
                }
            }
        }
        if r.ballooned != frames.ballooned_frames() {
            return Err(CheckError::Count {
                counted: frames.ballooned_frames(),
                recorded: r.ballooned,
            });
        }
        if let Some((pages, offset)) = xen {
            let expected = ((nr - r.ballooned + self.counters.leaked) as i64 + offset) as u64;
            if pages != expected {
                return Err(CheckError::Reservation {
                    expected,
                    xen: pages,
                });
            }
        }
        Ok(r)
    }
}
