//! vmalloc-like mapping in module space: fresh frames mapped at a virtual range handed
//! out by [`RangeAllocator`], L1 tables made on demand and given back when empty.
//!
//! The planner is pure: it reads page tables through [`VmapEnv`] (the direct map on the
//! live system, the model in host tests), takes frames from the [`FrameAllocator`] and
//! emits [`MmuOp`]s into a sink, which batches them. Sequences follow Xen's PV rules as
//! Mini-OS `arch/x86/mm.c` and Linux `mmu_pv.c` apply them:
//!
//! * new L1: zeroed through the direct map while still writable, its direct-map PTE made
//!   read-only, then hooked into the L2 (Xen validates it as an L1 at that moment); all
//!   plain `mmu_update`s, so one hypercall carries the hook and up to 510 PTEs with it.
//! * every PTE is checked to be none *before* anything is written — the check Linux's
//!   `vmap_pte_range` warns on, and exactly what the 2014 bug tripped. A non-none entry
//!   refuses the whole request, names the address and the old entry, and the range is
//!   poisoned (never handed out again) instead of overwritten.
//! * unmap: PTEs cleared; an L1 whose last PTE went is unhooked and made writable again
//!   in the same batch (the unhook drops Xen's type reference first); then a TLB flush
//!   (INVLPG per page for small areas, a full local flush above [`INVLPG_MAX`]) before
//!   any frame can be handed out again. Guests run with one vCPU, so local flushes do.

use crate::frames::FrameAllocator;
use crate::layout::{index, Split, KERNEL_VIRT_BASE, L2_SPAN, L3_KERNEL, MODULES_END, PAGE_SIZE};
use crate::ops::{pte, Level, Maddr, Mfn, MmuOp, MmuSink, Pfn};
use crate::vrange::{RangeAllocator, RangeError};
use x86_64::VirtAddr;

/// L2 slots under `level3_kernel[510]` and `[511]` together.
const KERNEL_MAP_SLOTS: usize = 1024;
/// Above this many pages an unmap flushes the whole TLB instead of page by page.
pub const INVLPG_MAX: u64 = 32;

/// The runtime's tables vmap writes into.
#[derive(Clone, Copy, Debug)]
pub struct VmapTables {
    /// level2_kernel (L3\[510\]) and level2_fixmap (L3\[511\]).
    pub level2: [Pfn; 2],
    /// First direct-map L1 (pfn p's entry is in `direct_l1 + p/512`, slot `p%512`).
    pub direct_l1: Pfn,
}

/// How the planner reads and zeroes memory.
pub trait VmapEnv {
    /// pfn -> mfn (the p2m list), `None` past its end.
    fn mfn(&self, pfn: Pfn) -> Option<Mfn>;
    /// mfn -> pfn, `None` if the frame is not ours.
    fn pfn(&self, mfn: Mfn) -> Option<Pfn>;
    /// Word `index` of frame `pfn` (through the direct map).
    fn word(&self, pfn: Pfn, index: usize) -> u64;
    /// Zero frame `pfn`, which is mapped writable in the direct map.
    fn zero(&mut self, pfn: Pfn);
}

/// A mapped area. Not `Clone`: [`Vmap::unmap`] consumes it, so a freed area cannot be
/// touched or freed again through it.
#[derive(Debug, PartialEq, Eq)]
pub struct VmArea {
    va: VirtAddr,
    pages: u64,
}

impl VmArea {
    /// First address of the area.
    pub fn va(&self) -> VirtAddr {
        self.va
    }
    /// Pages mapped (the guard page after them not counted).
    pub fn pages(&self) -> u64 {
        self.pages
    }
    /// Bytes mapped.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
    /// An area token for `va` and `pages`, as a caller outside the planner holds it
    /// (the platform wraps areas it handed out; tests forge ones it never did, to see
    /// them refused). A token grants no access to memory.
    pub fn forge(va: VirtAddr, pages: u64) -> Self {
        VmArea { va, pages }
    }
}

/// Why [`Vmap::map`] or [`Vmap::unmap`] failed; `E` is the sink's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmapError<E> {
    /// No virtual range (module space exhausted, or fragmented), or a bad area handed back.
    Range(RangeError),
    /// A PTE (or, for a table that is not ours, the L2 entry) that should be none is not.
    /// Nothing was written; the range is poisoned.
    NotNone {
        /// The first address whose entry is not none.
        va: VirtAddr,
        /// That entry.
        old: u64,
        /// Its level: L1 for a PTE, L2 when the L2 entry points at a table not ours.
        level: Level,
        /// Non-none entries in the whole request.
        count: u64,
    },
    /// Not enough free frames for the pages and their new L1 tables. Nothing was written.
    OutOfFrames {
        /// Frames needed: the pages and the new L1s.
        need: u64,
        /// Frames free.
        free: u64,
    },
    /// The request is larger than module space could ever hold.
    TooLarge {
        /// Pages asked for.
        pages: u64,
        /// The most one area can have (module space less its guard page).
        max: u64,
    },
    /// Our own bookkeeping and the page tables disagree (found while unmapping), or a
    /// frame the plan needs has no valid mfn.
    Inconsistent {
        /// The address concerned (a direct-map address for a frame without mfn).
        va: VirtAddr,
        /// The entry found there; for a frame, its mfn (`!0` if none) or its pfn.
        entry: u64,
    },
    /// Xen (or the model) refused an operation. What was applied of the batch is unknown
    /// to the bookkeeping, so the vmap stops: every later call fails with `Halted`.
    Sink(E),
    /// An earlier call met a refusal from Xen.
    Halted,
}

impl<E: core::fmt::Display> core::fmt::Display for VmapError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmapError::Range(e) => write!(f, "{e}"),
            VmapError::NotNone {
                va,
                old,
                level,
                count,
            } => write!(
                f,
                "refused: {level:?} entry for {va:#x} is {old:#018x}, not none ({count} such entries in the request); range poisoned"
            ),
            VmapError::OutOfFrames { need, free } => {
                write!(f, "out of frames: {need} needed, {free} free")
            }
            VmapError::TooLarge { pages, max } => {
                write!(f, "{pages} pages asked for, module space holds at most {max}")
            }
            VmapError::Inconsistent { va, entry } => {
                write!(f, "unmap found entry {entry:#x} at {va:#x}, not a page this area mapped")
            }
            VmapError::Sink(e) => write!(f, "{e}"),
            VmapError::Halted => write!(f, "vmap halted after Xen refused an earlier update"),
        }
    }
}

/// Counters for the stress summary and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmapStats {
    /// Successful [`Vmap::map`] calls.
    pub maps: u64,
    /// Successful [`Vmap::unmap`] calls.
    pub unmaps: u64,
    /// Pages mapped, in total.
    pub pages_mapped: u64,
    /// Pages mapped now.
    pub pages_in_use: u64,
    /// Most pages mapped at once.
    pub peak_pages: u64,
    /// L1 tables made.
    pub l1_made: u64,
    /// L1 tables given back (emptied by an unmap).
    pub l1_freed: u64,
    /// PTEs checked to be none before writing.
    pub ptes_checked: u64,
    /// Entries met that were not none (each a refused write).
    pub non_none_met: u64,
    /// Requests refused for a non-none entry.
    pub refused: u64,
    /// PTE updates emitted.
    pub pt_updates: u64,
    /// TLB flushes (one per unmap: INVLPGs or a full flush).
    pub flushes: u64,
}

/// The vmap planner: module space of one [`Split`], with the L1 tables it made there.
///
/// The live system keeps one (in the platform crate's `Memory`); every call goes through
/// a [`VmapEnv`], the [`FrameAllocator`] and an [`MmuSink`] passed in, so the planner owns
/// no memory itself.
pub struct Vmap {
    t: VmapTables,
    data: pte::PageTableFlags,
    ranges: RangeAllocator,
    /// Our L1 per kernel-map L2 slot (pfn; 0 = none: pfn 0 is the kernel image).
    l1: [u32; KERNEL_MAP_SLOTS],
    /// PTEs in use in that L1.
    used: [u16; KERNEL_MAP_SLOTS],
    /// Counters, for reports.
    pub stats: VmapStats,
    halted: bool,
}

/// Global kernel-map L2 slot of `va` (0..1024: 0..512 under `L3[510]`, the rest `L3[511]`).
fn slot(va: VirtAddr) -> usize {
    ((va - KERNEL_VIRT_BASE) / L2_SPAN) as usize
}

/// End of L2 slot `g`'s span, or `end` if that comes first.
fn slot_end(g: usize, end: VirtAddr) -> VirtAddr {
    (KERNEL_VIRT_BASE + (g as u64 + 1) * L2_SPAN).min(end)
}

fn put<S: MmuSink>(sink: &mut S, table: Mfn, idx: usize, val: u64) -> Result<(), S::Error> {
    sink.submit(MmuOp::PtUpdate {
        ptr: Maddr(table.maddr().0 + idx as u64 * 8),
        val,
    })
}

/// What [`Vmap::scan`] found in a range about to be mapped.
struct Scan {
    /// Entries that are not none.
    met: u64,
    /// The first of them: its address, the entry and its level.
    first: Option<(VirtAddr, u64, Level)>,
    /// L2 slots with no table yet (a fresh L1 each).
    new_l1: u64,
}

impl Vmap {
    /// Module space of `split`, empty.
    pub fn new(split: Split, t: VmapTables, nx: bool) -> Self {
        Vmap {
            t,
            data: pte::PRESENT
                | pte::RW
                | pte::ACCESSED
                | pte::DIRTY
                | if nx {
                    pte::NX
                } else {
                    pte::PageTableFlags::empty()
                },
            ranges: RangeAllocator::new(split.modules_start(), MODULES_END),
            l1: [0; KERNEL_MAP_SLOTS],
            used: [0; KERNEL_MAP_SLOTS],
            stats: VmapStats::default(),
            halted: false,
        }
    }

    /// The virtual ranges of module space (live and poisoned areas).
    pub fn ranges(&self) -> &RangeAllocator {
        &self.ranges
    }

    /// Is `pfn` an L1 this vmap made (and still uses)?
    pub fn owns_l1(&self, pfn: Pfn) -> bool {
        pfn != Pfn(0) && u32::try_from(pfn.0).is_ok_and(|p| self.l1.contains(&p))
    }

    fn l2_pfn(&self, g: usize) -> Pfn {
        self.t.level2[g / 512]
    }

    /// The entry for `va` that a new mapping would replace: our L1's PTE, a foreign L1's
    /// PTE, or the L2 entry itself when it points at a frame that is not ours.
    fn current(&self, env: &impl VmapEnv, va: VirtAddr) -> (u64, Level) {
        let g = slot(va);
        let idx = index(va, 1);
        if self.l1[g] != 0 {
            return (env.word(Pfn(self.l1[g].into()), idx), Level::L1);
        }
        let l2e = env.word(self.l2_pfn(g), g % 512);
        if l2e == 0 {
            return (0, Level::L1);
        }
        match env.pfn(pte::frame(l2e)) {
            Some(p) if pte::present(l2e) && !pte::flags(l2e).contains(pte::PSE) => {
                (env.word(p, idx), Level::L1)
            }
            _ => (l2e, Level::L2),
        }
    }

    /// Every entry `[va, end)` would replace: how many are not none, the first such, and
    /// how many fresh L1s the range needs.
    fn scan(&mut self, env: &impl VmapEnv, va: VirtAddr, end: VirtAddr) -> Scan {
        let (mut met, mut first) = (0u64, None);
        let mut new_l1 = 0u64;
        let mut p = va;
        while p < end {
            let g = slot(p);
            let slot_va = p;
            let slot_end = slot_end(g, end);
            let l2e = env.word(self.l2_pfn(g), g % 512);
            if self.l1[g] == 0 && l2e == 0 {
                // No table yet: nothing can be there. A fresh L1 will be made.
                new_l1 += 1;
                self.stats.ptes_checked += (slot_end - p) / PAGE_SIZE;
                p = slot_end;
                continue;
            }
            let before = met;
            while p < slot_end {
                let (old, level) = self.current(env, p);
                self.stats.ptes_checked += 1;
                if old != 0 {
                    met += 1;
                    first.get_or_insert((p, old, level));
                }
                p += PAGE_SIZE;
            }
            if self.l1[g] == 0 && met == before {
                // A table that is not ours: its entries happen to be none here, but we
                // would have to replace the L2 entry itself.
                met += 1;
                first.get_or_insert((slot_va, l2e, Level::L2));
            }
        }
        Scan { met, first, new_l1 }
    }

    /// Map `pages` fresh frames read-write (NX) at a new area of module space.
    pub fn map<E: VmapEnv, S: MmuSink>(
        &mut self,
        env: &mut E,
        sink: &mut S,
        frames: &mut FrameAllocator<'_>,
        pages: u64,
    ) -> Result<VmArea, VmapError<S::Error>> {
        if self.halted {
            return Err(VmapError::Halted);
        }
        let max = (self.ranges.end() - self.ranges.base()) / PAGE_SIZE - 1;
        if pages > max {
            return Err(VmapError::TooLarge { pages, max });
        }
        let va = self.ranges.alloc(pages).map_err(VmapError::Range)?;
        let end = va + pages * PAGE_SIZE;

        // 1. Every entry we would write must be none: check them all before writing any.
        let Scan { met, first, new_l1 } = self.scan(env, va, end);
        if let Some((bad_va, old, level)) = first {
            self.ranges.poison(va, pages).map_err(VmapError::Range)?;
            self.stats.non_none_met += met;
            self.stats.refused += 1;
            return Err(VmapError::NotNone {
                va: bad_va,
                old,
                level,
                count: met,
            });
        }
        let need = pages + new_l1;
        if frames.free_frames() < need {
            self.ranges.free(va, pages).map_err(VmapError::Range)?;
            return Err(VmapError::OutOfFrames {
                need,
                free: frames.free_frames(),
            });
        }

        // 2. Write: per L2 slot, its new L1 (if any) and then its PTEs.
        let mut done = 0u64;
        let mut p = va;
        let res = (|| {
            while p < end {
                let g = slot(p);
                if self.l1[g] == 0 {
                    let (l1, l1_mfn) = self.take_frame(env, frames)?;
                    env.zero(l1);
                    let dl1 = self.mfn_of(env, self.t.direct_l1 + l1.0 / 512)?;
                    put(
                        sink,
                        dl1,
                        (l1.0 % 512) as usize,
                        pte::entry(l1_mfn, self.data - pte::RW),
                    )
                    .map_err(VmapError::Sink)?;
                    let l2 = self.mfn_of(env, self.l2_pfn(g))?;
                    put(sink, l2, g % 512, pte::entry(l1_mfn, pte::TABLE))
                        .map_err(VmapError::Sink)?;
                    // pfns stay below 2^27 (the direct map spans 512 GiB): they fit a u32.
                    self.l1[g] = l1.0 as u32;
                    self.stats.l1_made += 1;
                    self.stats.pt_updates += 2;
                }
                let l1_mfn = self.mfn_of(env, Pfn(self.l1[g].into()))?;
                let slot_end = slot_end(g, end);
                while p < slot_end {
                    let (_, m) = self.take_frame(env, frames)?;
                    put(sink, l1_mfn, index(p, 1), pte::entry(m, self.data))
                        .map_err(VmapError::Sink)?;
                    self.used[g] += 1;
                    self.stats.pt_updates += 1;
                    done += 1;
                    p += PAGE_SIZE;
                }
            }
            sink.flush().map_err(VmapError::Sink)
        })();
        if let Err(e) = res {
            if matches!(e, VmapError::Sink(_)) {
                self.halted = true;
                return Err(e);
            }
            // A frame shortage (frames with no valid mfn were skipped) or a bookkeeping
            // mismatch: undo what was written so the state stays consistent.
            if sink.flush().is_err() {
                self.halted = true;
                return Err(e);
            }
            let _ = self.clear(env, sink, frames, va, done);
            let _ = self.ranges.free(va, pages);
            return Err(e);
        }
        self.stats.maps += 1;
        self.stats.pages_mapped += pages;
        self.stats.pages_in_use += pages;
        self.stats.peak_pages = self.stats.peak_pages.max(self.stats.pages_in_use);
        Ok(VmArea { va, pages })
    }

    fn mfn_of<E: VmapEnv, X>(&self, env: &E, pfn: Pfn) -> Result<Mfn, VmapError<X>> {
        match env.mfn(pfn) {
            Some(m) if m <= Mfn::MAX => Ok(m),
            other => Err(VmapError::Inconsistent {
                va: crate::layout::direct_map_va(pfn),
                entry: other.unwrap_or(Mfn(!0)).0,
            }),
        }
    }

    /// A free frame with a valid mfn (frames without one stay allocated: never usable).
    fn take_frame<E: VmapEnv, X>(
        &self,
        env: &E,
        frames: &mut FrameAllocator<'_>,
    ) -> Result<(Pfn, Mfn), VmapError<X>> {
        loop {
            let Some(p) = frames.alloc() else {
                return Err(VmapError::OutOfFrames { need: 1, free: 0 });
            };
            if let Some(m) = env.mfn(p).filter(|&m| m <= Mfn::MAX) {
                return Ok((p, m));
            }
        }
    }

    /// Unmap an area and give its frames (and emptied L1s) back.
    pub fn unmap<E: VmapEnv, S: MmuSink>(
        &mut self,
        env: &mut E,
        sink: &mut S,
        frames: &mut FrameAllocator<'_>,
        area: VmArea,
    ) -> Result<(), VmapError<S::Error>> {
        if self.halted {
            return Err(VmapError::Halted);
        }
        self.ranges
            .check(area.va, area.pages)
            .map_err(VmapError::Range)?;
        let r = self.clear(env, sink, frames, area.va, area.pages);
        if matches!(r, Err(VmapError::Sink(_))) {
            self.halted = true;
            return r;
        }
        self.ranges
            .free(area.va, area.pages)
            .map_err(VmapError::Range)?;
        r?;
        self.stats.unmaps += 1;
        self.stats.pages_in_use -= area.pages;
        Ok(())
    }

    /// Clear `pages` PTEs from `va`, free their frames and emptied L1s, flush the TLB.
    fn clear<E: VmapEnv, S: MmuSink>(
        &mut self,
        env: &mut E,
        sink: &mut S,
        frames: &mut FrameAllocator<'_>,
        va: VirtAddr,
        pages: u64,
    ) -> Result<(), VmapError<S::Error>> {
        let mut bad = None;
        for i in 0..pages {
            let p = va + i * PAGE_SIZE;
            let g = slot(p);
            let l1 = Pfn(self.l1[g].into());
            let e = if l1 == Pfn(0) {
                0
            } else {
                env.word(l1, index(p, 1))
            };
            let data = env.pfn(pte::frame(e)).filter(|_| pte::present(e));
            let Some(data) = data else {
                bad.get_or_insert(VmapError::Inconsistent { va: p, entry: e });
                continue;
            };
            put(sink, self.mfn_of(env, l1)?, index(p, 1), 0).map_err(VmapError::Sink)?;
            self.stats.pt_updates += 1;
            if frames.free(data).is_err() {
                bad.get_or_insert(VmapError::Inconsistent { va: p, entry: e });
            }
            self.used[g] -= 1;
            if self.used[g] == 0 {
                // Unhook first (drops Xen's L1 type reference), then writable again.
                let l1_mfn = self.mfn_of(env, l1)?;
                put(sink, self.mfn_of(env, self.l2_pfn(g))?, g % 512, 0)
                    .map_err(VmapError::Sink)?;
                let dl1 = self.mfn_of(env, self.t.direct_l1 + l1.0 / 512)?;
                put(
                    sink,
                    dl1,
                    (l1.0 % 512) as usize,
                    pte::entry(l1_mfn, self.data),
                )
                .map_err(VmapError::Sink)?;
                self.stats.pt_updates += 2;
                self.l1[g] = 0;
                self.stats.l1_freed += 1;
                if frames.free(l1).is_err() {
                    bad.get_or_insert(VmapError::Inconsistent { va: p, entry: l1.0 });
                }
            }
        }
        if pages <= INVLPG_MAX {
            for i in 0..pages {
                sink.submit(MmuOp::InvlpgLocal {
                    va: va + i * PAGE_SIZE,
                })
                .map_err(VmapError::Sink)?;
            }
        } else {
            sink.submit(MmuOp::TlbFlushLocal).map_err(VmapError::Sink)?;
        }
        self.stats.flushes += 1;
        sink.flush().map_err(VmapError::Sink)?;
        bad.map_or(Ok(()), Err)
    }

    /// L2 slot of the kernel map (as `(l3, slot)`) and whether vmap has an L1 there, for
    /// reports.
    pub fn l1_slots(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.l1
            .iter()
            .enumerate()
            .filter(|(_, &p)| p != 0)
            .map(|(g, _)| (L3_KERNEL + g / 512, g % 512))
    }
}
