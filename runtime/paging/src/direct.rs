//! The on-demand direct map: start of day maps only the chunks it needs (see
//! [`crate::takeover`]); every other 2 MiB chunk of pseudo-physical memory is mapped here,
//! one L1 at a time, when the frame allocator needs its frames. The work of start of day
//! is then proportional to the memory it uses, not to the memory the domain has.
//!
//! A chunk is what one direct-map L1 maps ([`CHUNK_PAGES`] frames). The takeover reserves
//! an L1 frame for every chunk (`Tables::direct_l1`, chunk `c` at `direct_l1 + c`); an
//! unused one is mapped read-write once the chunk holding it (its *host*,
//! [`DirectMap::host_of`]) is mapped, and that host is mapped first when needed. Mapping
//! chunk `c` is:
//! 1. write its 512 entries into L1 frame `direct_l1 + c`, with plain stores through the
//!    direct map ([`PtWrite::Stores`], Linux's way in `xen_setup_kernel_pagetable`: the
//!    frame is still an ordinary writable page) or with one `mmu_update` per entry
//!    ([`PtWrite::Mmu`], how the eager takeover used to write every L1; also the way
//!    for a chunk that holds its own L1);
//! 2. make the L1 frame's own direct-map entry read-only (Xen types no frame that is
//!    mapped writable as a page table);
//! 3. hook it into level2_ident (Xen validates the 512 entries in one go);
//! 4. tell the allocator ([`FrameAllocator`]): only now do the chunk's frames become free.
//!
//! Steps 2 and 3 go to Xen in one batch. A frame the allocator hands out is therefore
//! always mapped: the allocator's frames of an unmapped chunk count as taken, and only
//! this module can release them (`chunk_mapped` is private to the crate).
//!
//! ```
//! use xenpv_paging::direct::{DirectEnv, DirectMap, GrowError, PtWrite, TableStore};
//! use xenpv_paging::frames::{bitmap_words, chunk_words, FrameAllocator, Regions};
//! use xenpv_paging::ops::{MmuOp, MmuSink};
//! use xenpv_paging::tables::Tables;
//! use xenpv_paging::{Mfn, Pfn};
//!
//! // 1024 frames = 2 chunks; chunk 0 mapped at start, chunk 1 on demand.
//! struct Flat;
//! impl TableStore for Flat {
//!     fn store_table(&mut self, _: Pfn, _: &[u64; 512]) {}
//! }
//! impl DirectEnv for Flat {
//!     fn mfn(&self, pfn: Pfn) -> Option<Mfn> { Some(Mfn(0x1000 + pfn.0)) }
//! }
//! struct Count(usize);
//! impl MmuSink for Count {
//!     type Error = ();
//!     fn submit(&mut self, _: MmuOp) -> Result<(), ()> { self.0 += 1; Ok(()) }
//!     fn flush(&mut self) -> Result<(), ()> { Ok(()) }
//! }
//! let mut b = vec![0; bitmap_words(1024)];
//! let c: Vec<_> = (0..chunk_words(1024)).map(|_| Default::default()).collect();
//! let mut frames = FrameAllocator::new_on_demand(&mut b, &c, 1024, Regions::new(), &[(0, 1)]).unwrap();
//! let t = Tables {
//!     l4: Pfn(10), level3_ident: Pfn(11), level3_kernel: Pfn(12), level2_kernel: Pfn(13),
//!     level2_fixmap: Pfn(14), level1_fixmap: Pfn(15), level2_ident: (Pfn(16), 1),
//!     direct_l1: (Pfn(20), 2),
//! };
//! let mut dm = DirectMap::new(&t, 1024, true, PtWrite::Stores);
//! assert_eq!((dm.l1_of(1), dm.host_of(1)), (Pfn(21), 0));
//! assert_eq!(frames.free_frames(), 512);
//! let mut sink = Count(0);
//! assert_eq!(dm.grow(&mut frames, &mut Flat, &mut sink), Ok(1));
//! // Stores write the L1: Xen sees two updates (the L1 read-only, then hooked).
//! assert_eq!(sink.0, 2);
//! assert_eq!(frames.free_frames(), 1024);
//! assert_eq!(dm.grow(&mut frames, &mut Flat, &mut sink), Err(GrowError::AllMapped));
//! ```

use crate::frames::{FrameAllocator, CHUNK_PAGES};
use crate::ops::{pte, Maddr, Mfn, MmuOp, MmuSink, Pfn};
use crate::tables::Tables;

/// How a chunk's L1 is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtWrite {
    /// Plain stores through the direct map while the frame is still writable, then Xen
    /// validates the table once when it is hooked (2 requests per chunk).
    Stores,
    /// One `mmu_update` per entry (514 requests per chunk): the eager takeover's old way,
    /// kept to measure against.
    Mmu,
}

impl PtWrite {
    /// The command-line word's value (`pt_write=stores|mmu`).
    pub fn parse(s: &str) -> Option<PtWrite> {
        match s {
            "stores" => Some(PtWrite::Stores),
            "mmu" => Some(PtWrite::Mmu),
            _ => None,
        }
    }
    /// The name [`PtWrite::parse`] takes.
    pub const fn name(self) -> &'static str {
        match self {
            PtWrite::Stores => "stores",
            PtWrite::Mmu => "mmu",
        }
    }
}

/// Plain stores into a frame through the direct map.
pub trait TableStore {
    /// Write `entries` into frame `pfn` with plain stores through its direct-map mapping,
    /// which is read-write ([`PtWrite::Stores`] only).
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]);
}

/// What the direct map reads and writes memory through.
pub trait DirectEnv: TableStore {
    /// The p2m entry of `pfn` (`None` past the end of the list).
    fn mfn(&self, pfn: Pfn) -> Option<Mfn>;
    /// The p2m entries of `first..first + out.len()` (`!0` past the end of the list).
    /// A chunk reads 512 at a time: the live system overrides this with one bounds check
    /// and a plain copy.
    fn mfns(&self, first: Pfn, out: &mut [Mfn]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.mfn(first + i as u64).unwrap_or(Mfn(!0));
        }
    }
}

/// Why a chunk could not be mapped. The allocator is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError<E> {
    /// Every chunk is mapped already.
    AllMapped,
    /// The chunk's L1 frame has no valid mfn.
    BadP2m {
        /// The L1 frame.
        pfn: Pfn,
        /// Its p2m entry (`!0` if none).
        mfn: Mfn,
    },
    /// The L1 frame of the chunk lies in a chunk that is not mapped itself (the takeover
    /// maps the table frames' chunks; this would be a planner bug, refused not faulted).
    TableUnmapped {
        /// The L1 frame.
        pfn: Pfn,
    },
    /// Xen (or the model) refused an update.
    Sink(E),
    /// An earlier chunk failed half-way: no further chunk is mapped (its L1 may be
    /// read-only already, so plain stores into it would fault).
    Halted,
}

impl<E: core::fmt::Display> core::fmt::Display for GrowError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrowError::AllMapped => write!(f, "every chunk of the direct map is mapped"),
            GrowError::BadP2m { pfn, mfn } => {
                write!(f, "direct-map L1 pfn {pfn:#x} has p2m entry {mfn:#x}")
            }
            GrowError::TableUnmapped { pfn } => {
                write!(f, "direct-map L1 pfn {pfn:#x} is not mapped itself")
            }
            GrowError::Sink(e) => write!(f, "mapping a direct-map chunk: {e}"),
            GrowError::Halted => write!(f, "the direct map stopped growing after an error"),
        }
    }
}

/// Counters, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectStats {
    /// Chunks mapped after start of day.
    pub chunks_mapped: u64,
    /// `mmu_update` requests they took.
    pub pt_updates: u64,
    /// Frames of those chunks with no valid mfn (left unmapped).
    pub holes: u64,
}

/// The direct map's tables and how to write them.
#[derive(Clone, Debug)]
pub struct DirectMap {
    /// The root, the fixed tables and level2_ident: `[start, end)`, always page tables.
    upper: (Pfn, Pfn),
    level2_ident: Pfn,
    direct_l1: Pfn,
    nr_pages: u64,
    data: pte::PageTableFlags,
    pt_write: PtWrite,
    halted: bool,
    /// Chunks hooked in the sink's queue, not flushed yet (so not yet the allocator's).
    pending: heapless::Vec<u64, PENDING_MAX>,
    /// Counters so far.
    pub stats: DirectStats,
}

/// Chunks [`DirectMap::map_all`] queues before it flushes: two updates each, one
/// hypercall's worth (the executor's 512).
const PENDING_MAX: usize = 256;

/// Chunks a host-chunk chain may need before the chunk asked for (see [`DirectMap::host_of`]).
const MAX_DEPTH: u32 = 8;

impl DirectMap {
    /// The direct map over the takeover's tables for `nr_pages` frames.
    pub fn new(t: &Tables, nr_pages: u64, nx: bool, pt_write: PtWrite) -> Self {
        DirectMap {
            upper: (t.l4, t.level2_ident.0 + t.level2_ident.1),
            level2_ident: t.level2_ident.0,
            direct_l1: t.direct_l1.0,
            nr_pages,
            data: pte::PRESENT
                | pte::RW
                | pte::ACCESSED
                | pte::DIRTY
                | if nx {
                    pte::NX
                } else {
                    pte::PageTableFlags::empty()
                },
            pt_write,
            halted: false,
            pending: heapless::Vec::new(),
            stats: DirectStats::default(),
        }
    }

    /// Are the direct map's data mappings NX?
    pub fn nx(&self) -> bool {
        self.data.contains(pte::NX)
    }

    /// How L1s are written.
    pub fn pt_write(&self) -> PtWrite {
        self.pt_write
    }

    /// The L1 frame that maps chunk `c`.
    pub fn l1_of(&self, c: u64) -> Pfn {
        self.direct_l1 + c
    }

    /// The chunk holding chunk `c`'s L1 frame: it must be mapped before the L1 can be
    /// written with plain stores (when it is `c` itself, the L1 is written with
    /// `mmu_update`s instead).
    pub fn host_of(&self, c: u64) -> u64 {
        self.l1_of(c).0 / CHUNK_PAGES
    }

    /// Is `pfn` a page table once chunk `c` is hooked, given which chunks' L1s are
    /// hooked (`mapped`)? The upper tables always, a chunk L1 once its chunk is mapped.
    fn is_table(&self, pfn: Pfn, c: u64, mapped: &dyn Fn(u64) -> bool) -> bool {
        if (self.upper.0..self.upper.1).contains(&pfn) {
            return true;
        }
        match pfn.0.checked_sub(self.direct_l1.0) {
            Some(i) if i < self.nr_pages.div_ceil(CHUNK_PAGES) => i == c || mapped(i),
            _ => false,
        }
    }

    /// The entries of chunk `c`'s L1, from the p2m entries of its frames (`mfns`), and
    /// the count of holes: frames read-write, except page tables (see `mapped`) and what
    /// `ro` names (at the takeover: Xen's boot tables and the image's text and read-only
    /// data), which are read-only; holes and frames past `nr_pages` empty.
    pub fn chunk_entries(
        &self,
        c: u64,
        mfns: &[Mfn],
        mapped: &dyn Fn(u64) -> bool,
        ro: Option<&dyn Fn(Pfn) -> bool>,
    ) -> ([u64; 512], u64) {
        let mut e = [0u64; 512];
        let mut holes = 0;
        let first = c * CHUNK_PAGES;
        let n = (self.nr_pages.saturating_sub(first)).min(CHUNK_PAGES) as usize;
        // Only a chunk holding table frames needs the per-frame question (most do not).
        let last = Pfn(first + CHUNK_PAGES);
        let l1_end = self.direct_l1 + self.nr_pages.div_ceil(CHUNK_PAGES);
        let tables_here = (Pfn(first) < self.upper.1 && self.upper.0 < last)
            || (Pfn(first) < l1_end && self.direct_l1 < last);
        let n = n.min(mfns.len());
        if !tables_here && ro.is_none() {
            // Plain memory, the common case: one branch-free pass (it vectorises).
            let data = self.data;
            for (slot, &m) in e[..n].iter_mut().zip(&mfns[..n]) {
                *slot = if m <= Mfn::MAX {
                    pte::entry(m, data)
                } else {
                    0
                };
            }
            holes = mfns[..n].iter().filter(|&&m| m > Mfn::MAX).count() as u64;
        } else {
            for (i, (slot, &m)) in e[..n].iter_mut().zip(&mfns[..n]).enumerate() {
                if m > Mfn::MAX {
                    holes += 1;
                    continue;
                }
                let pfn = Pfn(first + i as u64);
                let read_only =
                    (tables_here && self.is_table(pfn, c, mapped)) || ro.is_some_and(|ro| ro(pfn));
                let flags = if read_only {
                    self.data - pte::RW
                } else {
                    self.data
                };
                *slot = pte::entry(m, flags);
            }
        }
        (e, holes)
    }

    /// Write chunk `c`'s L1 and queue the two updates that hook it into level2_ident;
    /// `mapped` says which chunks are mapped already, or queued before this one (the
    /// chunk holding `c`'s L1 must be mapped and flushed, unless it is `c`). The caller
    /// flushes `sink`, and records `c` as mapped once the flush succeeded. Used by the
    /// takeover for its start chunks; the allocator's growth goes through
    /// [`DirectMap::grow`] and [`DirectMap::map_all`].
    pub fn write_chunk<S: MmuSink>(
        &mut self,
        c: u64,
        env: &mut dyn DirectEnv,
        mapped: &dyn Fn(u64) -> bool,
        ro: Option<&dyn Fn(Pfn) -> bool>,
        sink: &mut S,
    ) -> Result<(), GrowError<S::Error>> {
        if self.halted {
            return Err(GrowError::Halted);
        }
        let l1 = self.l1_of(c);
        let host = self.host_of(c);
        let mfn = |pfn: Pfn| match env.mfn(pfn) {
            Some(m) if m <= Mfn::MAX => Ok(m),
            other => Err(GrowError::BadP2m {
                pfn,
                mfn: other.unwrap_or(Mfn(!0)),
            }),
        };
        let l2i = self.level2_ident + c / 512;
        let (l1_mfn, host_mfn, l2i_mfn) = (mfn(l1)?, mfn(self.l1_of(host))?, mfn(l2i)?);
        let self_hosted = host == c;
        if !self_hosted && !mapped(host) {
            return Err(GrowError::TableUnmapped { pfn: l1 });
        }
        let mut mfns = [Mfn(!0); 512];
        env.mfns(Pfn(c * CHUNK_PAGES), &mut mfns);
        let (entries, holes) = self.chunk_entries(c, &mfns, mapped, ro);
        let halted = &mut self.halted;
        let mut put = |sink: &mut S, table: Mfn, slot: u64, val: u64| {
            sink.submit(MmuOp::PtUpdate {
                ptr: Maddr(table.maddr().0 + slot * 8),
                val,
            })
            .map_err(|e| {
                *halted = true;
                GrowError::Sink(e)
            })
        };
        let mut updates = 1;
        if self.pt_write == PtWrite::Stores && !self_hosted {
            env.store_table(l1, &entries);
        } else {
            // A chunk holding its own L1 cannot reach it through the direct map yet.
            for (i, &v) in entries.iter().enumerate() {
                put(sink, l1_mfn, i as u64, v)?;
            }
            updates += 512;
        }
        if !self_hosted {
            // The L1's own mapping read-only (in a self-hosted chunk it is so already).
            put(
                sink,
                host_mfn,
                l1.0 % CHUNK_PAGES,
                pte::entry(l1_mfn, self.data - pte::RW),
            )?;
            updates += 1;
        }
        put(sink, l2i_mfn, c % 512, pte::entry(l1_mfn, pte::TABLE))?;
        self.stats.pt_updates += updates;
        self.stats.holes += holes;
        Ok(())
    }

    /// Map the lowest chunk not mapped yet (and the chunks holding its L1 first, if they
    /// are not mapped); its index.
    pub fn grow<E: DirectEnv, S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        env: &mut E,
        sink: &mut S,
    ) -> Result<u64, GrowError<S::Error>> {
        let c = frames.next_unmapped_chunk().ok_or(GrowError::AllMapped)?;
        self.map(c, frames, env, sink, 0)?;
        self.flush(frames, sink)?;
        Ok(c)
    }

    /// Queue chunk `c` (its host chain first if needed); flush when the queue is full.
    fn map<E: DirectEnv, S: MmuSink>(
        &mut self,
        c: u64,
        frames: &mut FrameAllocator<'_>,
        env: &mut E,
        sink: &mut S,
        depth: u32,
    ) -> Result<(), GrowError<S::Error>> {
        let host = self.host_of(c);
        if host != c && !frames.is_mapped_chunk(host) {
            if !self.pending.contains(&host) {
                if depth >= MAX_DEPTH {
                    return Err(GrowError::TableUnmapped { pfn: self.l1_of(c) });
                }
                self.map(host, frames, env, sink, depth + 1)?;
            }
            // The store into `c`'s L1 goes through the host's mapping: it must be live.
            self.flush(frames, sink)?;
        }
        // Queued chunks count as mapped: their hooks run before this one's.
        let pending = core::mem::take(&mut self.pending);
        let mapped = |i: u64| frames.is_mapped_chunk(i) || pending.contains(&i);
        let r = self.write_chunk(c, env, &mapped, None, sink);
        self.pending = pending;
        r?;
        if self.pending.push(c).is_err() {
            // Full: flush the queue, then this chunk is the first of the next.
            self.flush(frames, sink)?;
            let _ = self.pending.push(c);
        }
        Ok(())
    }

    /// Send the queued updates; the chunks they hook become the allocator's.
    fn flush<S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        sink: &mut S,
    ) -> Result<(), GrowError<S::Error>> {
        if let Err(e) = sink.flush() {
            self.halted = true;
            self.pending.clear();
            return Err(GrowError::Sink(e));
        }
        for &c in &self.pending {
            frames.chunk_mapped(c);
        }
        self.stats.chunks_mapped += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Map chunks until `enough` holds of the allocator or every chunk is mapped; whether
    /// `enough` holds.
    pub fn grow_until<E: DirectEnv, S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        env: &mut E,
        sink: &mut S,
        enough: impl Fn(&FrameAllocator<'_>) -> bool,
    ) -> Result<bool, GrowError<S::Error>> {
        while !enough(frames) {
            match self.grow(frames, env, sink) {
                Ok(_) => {}
                Err(GrowError::AllMapped) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Map every chunk (the eager direct map), 256 chunks per flush; how many
    /// were mapped.
    pub fn map_all<E: DirectEnv, S: MmuSink>(
        &mut self,
        frames: &mut FrameAllocator<'_>,
        env: &mut E,
        sink: &mut S,
    ) -> Result<u64, GrowError<S::Error>> {
        let before = self.stats.chunks_mapped;
        let n = self.nr_pages.div_ceil(CHUNK_PAGES);
        for c in 0..n {
            if !frames.is_mapped_chunk(c) && !self.pending.contains(&c) {
                self.map(c, frames, env, sink, 0)?;
            }
        }
        self.flush(frames, sink)?;
        Ok(self.stats.chunks_mapped - before)
    }
}
