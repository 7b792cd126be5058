//! Taking over paging from Xen: the whole sequence of MMU operations, planned by one pure
//! function and emitted into a [`MmuSink`] (the executor, or the model in host tests).
//!
//! Sequence (Linux `xen_setup_kernel_pagetable` and Mini-OS `build_pagetable` are the
//! models; the tables here are built in frames Xen never mapped, so no page needs to be
//! made read-only before it becomes a page table). The direct map is built in 2 MiB
//! chunks ([`crate::direct`]) and only the *start chunks* are mapped here: those holding
//! the image and Xen's boot region, the p2m list, the initrd, the new tables and bitmaps,
//! a domU's rings, and [`START_FREE_CHUNKS`] chunk of free frames. The work is
//! proportional to them, not to memory; the allocator maps the other chunks on demand.
//! When the run of new frames (step 1) fits in the free tail of Xen's boot region, the
//! tables go there and steps 1-3 are `in_boot`'s: every upper table and every start
//! chunk's L1 written with plain stores through the boot mapping, their boot mappings
//! (and every chunk L1's) made read-only, then the pin and the switch; steps 4 and 5 as
//! below. Otherwise:
//! 1. Pick one run of free frames above Xen's boot region: the upper tables
//!    (level2_ident included), the frame allocator's bitmaps, and an L1 for every chunk
//!    (used or not). `ClearPage` the upper tables (untyped frames: plain writes).
//! 2. Write the first chunks' L1s entry by entry (nothing maps them yet): the chunks of
//!    the run's front (the upper tables, the bitmaps, the first chunk L1s) and, only if it
//!    lies under L3\[511\], the p2m's. Page tables read-only, the chunk L1s not in use yet
//!    read-write. Then level3_ident, level1_fixmap (shared_info), level2_kernel and
//!    level2_fixmap (the graft), level3_kernel and the new L4.
//! 3. Pin the new L4 (Xen validates the whole tree), switch to it, unpin Xen's. Then the
//!    other start chunks, each L1 written with plain stores through the new direct map
//!    and hooked with two `mmu_update`s (the p2m still read through the boot mapping).
//! 4. Retire the boot region from the kernel map: level2_kernel slots past the image,
//!    the grafted level2_fixmap slots, and the image's last L1 past its end. Flush.
//! 5. Reclaim Xen's boot page-table frames nobody references any more (direct map RW
//!    again) and the rest of the boot region (stack, padding); start_info is kept.

mod above;
mod chunks;
mod in_boot;

use crate::direct::{DirectEnv, DirectMap, PtWrite, TableStore};
use crate::frames::{bitmap_words, chunk_words, chunks, Region, Regions, Use, CHUNK_PAGES};
use crate::graft::{graft, Graft, LayoutError};
use crate::layout::{
    index, Split, DIRECT_MAP_MAX_BYTES, FIXMAP_L2_BASE, FIXMAP_L2_SLOT, KERNEL_VIRT_BASE,
    MODULES_END, PAGE_SIZE,
};
use crate::ops::{pte, Level, Maddr, Mfn, MmuOp, MmuSink, Pfn};
use crate::snapshot::BootSnapshot;
use crate::tables::Tables;
pub use chunks::ChunkRanges;
use chunks::{in_range, start_chunks};
use pte::PageTableFlags;
use x86_64::VirtAddr;

/// The p2m list as the planner reads it. The boot mapping it lives in is retired by the
/// takeover itself, so after the switch the runtime reads it through the direct map.
pub trait P2m {
    /// The mfn of `pfn`; `switched` says whether the new tables are live.
    fn mfn(&self, pfn: Pfn, switched: bool) -> Option<Mfn>;
}

impl P2m for [Mfn] {
    fn mfn(&self, pfn: Pfn, _switched: bool) -> Option<Mfn> {
        self.get(pfn.0 as usize).copied()
    }
}

/// Chunks of free frames the takeover maps besides the ones start of day needs, so the
/// first allocations need no further mapping.
pub const START_FREE_CHUNKS: u64 = 1;

/// What the takeover needs to know: start_info, the boot snapshot and the settings.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// Pseudo-physical frames of the domain (start_info.nr_pages).
    pub nr_pages: u64,
    /// pfn -> mfn (start_info.mfn_list).
    pub p2m: &'a dyn P2m,
    /// First address after the kernel image (.bss included).
    pub kernel_end: VirtAddr,
    /// Xen's boot tables, read by [`crate::snapshot::read`].
    pub snapshot: &'a BootSnapshot,
    /// Xen's boot L4 (pinned, current).
    pub xen_l4: Mfn,
    /// Xen's boot page-table frames `[start, end)` (pt_base, nr_pt_frames).
    pub xen_pt: (Pfn, Pfn),
    /// Frames of the p2m list `[start, end)`.
    pub p2m_pfns: (Pfn, Pfn),
    /// Frames of the initrd `[start, end)`, if any, mapped by Xen or not (with
    /// `SIF_MOD_START_PFN` they lie past the boot region; the new tables avoid them).
    pub module: Option<(Pfn, Pfn)>,
    /// A domU's xenstore and console ring frames: never reclaimed.
    pub shared_rings: [Option<Pfn>; 2],
    /// The start_info page (in the boot region): never reclaimed, as suspend names it to
    /// Xen and a restore writes the new domain's start_info into the same pfn.
    pub start_info: Pfn,
    /// Machine frame of shared_info (mapped at fixmap slot 0).
    pub shared_info: Mfn,
    /// Where module space begins.
    pub split: Split,
    /// Module space the application needs at least (bytes; 0 for no requirement).
    pub module_space_min: u64,
    /// Set NX on data mappings (the CPU supports it).
    pub nx: bool,
    /// The image's sections, to map them by permission (W^X); `None` keeps Xen's
    /// mappings of the image as they are (read-write and executable).
    pub image: Option<ImageLayout<'a>>,
}

/// Where the image's sections end, so the takeover can map each by what it is: text
/// read + execute, read-only data read-only + NX, data and .bss read-write + NX (what
/// Linux does with `mark_rodata_ro` and NX after it takes over), and their direct-map
/// aliases of text and read-only data read-only. Addresses are in the kernel map.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout<'a> {
    /// End of the text (the hypercall page included): `[KERNEL_VIRT_BASE, text_end)`.
    pub text_end: VirtAddr,
    /// End of the read-only data (and Xen's notes): `[text_end, rodata_end)`.
    pub rodata_end: VirtAddr,
    /// Pages left unmapped: the guard pages below stacks.
    pub guard_pages: &'a [VirtAddr],
    /// Pages whose entries are left as they are: mapped by the platform before the
    /// takeover (a domU's console window maps the console ring there).
    pub keep: &'a [VirtAddr],
}

impl ImageLayout<'_> {
    /// The entry flags of image page `va` (`None`: leave it alone; `Some(0)`: unmap it).
    fn flags(&self, va: VirtAddr, nx: PageTableFlags) -> Option<PageTableFlags> {
        if self.keep.contains(&va) {
            None
        } else if self.guard_pages.contains(&va) {
            Some(PageTableFlags::empty())
        } else if va < self.text_end {
            Some(pte::PRESENT | pte::ACCESSED)
        } else if va < self.rodata_end {
            Some(pte::PRESENT | pte::ACCESSED | nx)
        } else {
            Some(pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY | nx)
        }
    }
}

/// What the takeover did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Where the new page tables are.
    pub tables: Tables,
    /// The frame allocator's bitmaps `[start, end)`: [`bitmap_words`] words of frame bits,
    /// then [`chunk_words`] words of chunk bits.
    pub bitmap: (Pfn, Pfn),
    /// The chunks the takeover mapped in the direct map.
    pub start_chunks: ChunkRanges,
    /// What was grafted from Xen's boot tables, and retired again. Copies of Xen's boot
    /// PTEs (machine frames): a record of start of day only, stale once the domain has
    /// been saved and restored.
    pub graft: Graft,
    /// Reserved regions to seed the frame allocator with.
    pub regions: Regions,
    /// First pfn past Xen's boot region (its mapping ended at the snapshot's `boot_end`).
    pub boot_end_pfn: Pfn,
    /// Frames of the boot region and of Xen's boot tables given back.
    pub reclaimed: u64,
    /// pfns of the start chunks whose p2m entry is not a valid mfn (left unmapped).
    pub direct_map_holes: u64,
    /// `mmu_update` requests the plan emitted.
    pub pt_updates: u64,
    /// `mmuext_op` requests the plan emitted.
    pub mmuext_ops: u64,
    /// The new tables lie in the free tail of Xen's boot region (written with plain
    /// stores before the switch) rather than above it.
    pub in_boot_region: bool,
}

/// Why the takeover stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeoverError<E> {
    /// Refused before anything was written.
    Layout(LayoutError),
    /// A frame the plan must use has no valid mfn in the p2m.
    BadP2m {
        /// The frame.
        pfn: Pfn,
        /// Its p2m entry (`!0` if there is none).
        mfn: Mfn,
    },
    /// The sink (Xen, or the model) refused an operation of this step.
    Sink {
        /// The step of the sequence (`"pin and switch"`, ...).
        step: &'static str,
        /// The sink's error.
        error: E,
    },
}

/// Page-table pages needed to direct-map `nr_pages`: (level2_ident pages, L1 pages).
pub(crate) const fn direct_map_tables(nr_pages: u64) -> (u64, u64) {
    (nr_pages.div_ceil(512 * 512), nr_pages.div_ceil(512))
}

/// The p2m through Xen's boot mapping (still live until step 4), or through the direct
/// map if the p2m's chunks were mapped before the switch, and the caller's plain stores:
/// what the direct map writes the start chunks with.
struct BootEnv<'a> {
    p2m: &'a dyn P2m,
    via_direct_map: bool,
    store: &'a mut dyn TableStore,
}

impl TableStore for BootEnv<'_> {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        self.store.store_table(pfn, entries)
    }
}

impl DirectEnv for BootEnv<'_> {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        self.p2m.mfn(pfn, self.via_direct_map)
    }
}

struct Emitter<'s, S: MmuSink> {
    sink: &'s mut S,
    step: &'static str,
    pt_updates: u64,
    mmuext_ops: u64,
}

/// The emitter as a sink (for the direct map's chunks): counted like the rest.
impl<S: MmuSink> MmuSink for Emitter<'_, S> {
    type Error = S::Error;
    fn submit(&mut self, op: MmuOp) -> Result<(), S::Error> {
        match op {
            MmuOp::PtUpdate { .. } => self.pt_updates += 1,
            _ => self.mmuext_ops += 1,
        }
        self.sink.submit(op)
    }
    fn flush(&mut self) -> Result<(), S::Error> {
        self.sink.flush()
    }
}

impl<S: MmuSink> Emitter<'_, S> {
    fn op(&mut self, op: MmuOp) -> Result<(), TakeoverError<S::Error>> {
        match op {
            MmuOp::PtUpdate { .. } => self.pt_updates += 1,
            _ => self.mmuext_ops += 1,
        }
        let step = self.step;
        self.sink
            .submit(op)
            .map_err(|error| TakeoverError::Sink { step, error })
    }
    fn put(&mut self, table: Mfn, slot: usize, val: u64) -> Result<(), TakeoverError<S::Error>> {
        self.op(MmuOp::PtUpdate {
            ptr: Maddr(table.maddr().0 + slot as u64 * 8),
            val,
        })
    }
    fn flush(&mut self) -> Result<(), TakeoverError<S::Error>> {
        let step = self.step;
        self.sink
            .flush()
            .map_err(|error| TakeoverError::Sink { step, error })
    }
}

/// Plan and emit the takeover. A [`TakeoverError::Layout`] refusal, or a bad p2m entry
/// for a frame of the new tables, comes before the first operation is emitted; after a
/// [`TakeoverError::Sink`] error the sequence is done up to the step it names.
///
/// `store` writes a chunk L1 with plain stores through the new direct map (after the
/// switch, into frames it maps read-write): the start chunks other than the first few
/// are written that way, each with two `mmu_update`s instead of 513. `boot_store` writes
/// a frame of the boot region with plain stores through Xen's boot mapping (before the
/// switch): when the new tables fit in the boot region's free tail, every table is
/// written so (`in_boot`).
pub fn run<S: MmuSink>(
    input: &Input<'_>,
    sink: &mut S,
    store: &mut dyn TableStore,
    boot_store: &mut dyn TableStore,
) -> Result<Outcome, TakeoverError<S::Error>> {
    let g = check_layout(input).map_err(TakeoverError::Layout)?;
    let plan = reserve_tables(input, g).map_err(TakeoverError::Layout)?;
    for pfn in plan.start.up_to(plan.start + plan.need) {
        plan.mfn(pfn)?;
    }
    let mut dm = DirectMap::new(&plan.t, input.nr_pages, input.nx, PtWrite::Stores);
    let mut e = Emitter {
        sink,
        step: "clear new frames",
        pt_updates: 0,
        mmuext_ops: 0,
    };
    let (mut holes, mapped) = if plan.in_boot {
        let holes = in_boot::write_tables(&plan, &dm, boot_store, &mut e)?;
        switch(&plan, &mut e)?;
        (holes, plan.wanted.clone())
    } else {
        above::clear_tables(&plan, &mut e)?;
        let holes = above::map_first_chunks(&plan, &mut dm, &mut e)?;
        above::build_kernel_map(&plan, &mut e)?;
        switch(&plan, &mut e)?;
        (
            holes,
            above::map_start_chunks(&plan, &mut dm, store, &mut e)?,
        )
    };
    holes += dm.stats.holes;
    retire_boot_region(&plan, &mut e)?;
    if let Some(image) = input.image {
        map_image_wx(&plan, &image, &mut e)?;
    }
    e.op(MmuOp::TlbFlushLocal)?;
    e.flush()?;
    let (regions, reclaimed) = reclaim(&plan, &dm, &mut e)?;
    Ok(Outcome {
        tables: plan.t,
        bitmap: plan.bitmap,
        start_chunks: mapped,
        graft: plan.g,
        regions,
        boot_end_pfn: plan.boot_end_pfn,
        reclaimed,
        direct_map_holes: holes,
        pt_updates: e.pt_updates,
        mmuext_ops: e.mmuext_ops,
        in_boot_region: plan.in_boot,
    })
}

/// What the steps share: the input, the graft, where the new tables go, and which
/// chunks start of day maps.
struct Plan<'i, 'a> {
    input: &'i Input<'a>,
    g: Graft,
    t: Tables,
    /// First frame of the run of new frames, and its length.
    start: Pfn,
    need: u64,
    /// End of the upper tables (the fixed ones and level2_ident) in the run.
    upper_end: Pfn,
    bitmap: (Pfn, Pfn),
    boot_end_pfn: Pfn,
    /// All start chunks, and the first of them (written with `mmu_update` before the
    /// switch).
    wanted: ChunkRanges,
    first: ChunkRanges,
    /// The p2m reaches into L3\[511\]: it is mapped before the switch and read through
    /// the direct map from then on.
    p2m_high: bool,
    /// Flags of a data mapping (NX when the CPU has it).
    data: PageTableFlags,
    /// Frames below this pfn hold the image's text and read-only data.
    image_ro_end: Pfn,
    /// The run lies in the boot region's free tail (`in_boot`).
    in_boot: bool,
    /// The new tables are live (the p2m is read through them).
    switched: core::cell::Cell<bool>,
}

impl Plan<'_, '_> {
    /// The mfn of `pfn`, which must be valid (the plan writes it into an entry).
    fn mfn<E>(&self, pfn: Pfn) -> Result<Mfn, TakeoverError<E>> {
        match self.input.p2m.mfn(pfn, self.switched.get()) {
            Some(m) if m <= Mfn::MAX => Ok(m),
            other => Err(TakeoverError::BadP2m {
                pfn,
                mfn: other.unwrap_or(Mfn(!0)),
            }),
        }
    }
    /// Mapped read-only in the direct map besides the page tables: Xen's boot tables and
    /// the image's text and read-only data (their direct-map aliases).
    fn read_only(&self, pfn: Pfn) -> bool {
        in_range(pfn, self.input.xen_pt) || pfn < self.image_ro_end
    }
}

/// Refusals before anything is planned: the graft, module space, and (with an image
/// layout) every image page mapped through a 4 KiB boot L1 entry.
fn check_layout(input: &Input<'_>) -> Result<Graft, LayoutError> {
    let g = graft(input.snapshot, input.kernel_end, input.split)?;
    let have = MODULES_END - input.split.modules_start();
    if input.module_space_min > have {
        return Err(LayoutError::ModuleSpaceTooSmall {
            have_bytes: have,
            want_bytes: input.module_space_min,
            split: input.split,
        });
    }
    debug_assert!(input.nr_pages * PAGE_SIZE <= DIRECT_MAP_MAX_BYTES);
    if input.image.is_some() {
        let mut va = KERNEL_VIRT_BASE;
        while va < input.kernel_end {
            let l2e = g.level2_kernel[index(va, 2)];
            if !pte::present(l2e) || pte::flags(l2e).contains(pte::PSE) {
                return Err(LayoutError::ImageNotMapped { va });
            }
            va += PAGE_SIZE;
        }
    }
    Ok(g)
}

/// Step 1: one run of frames past the boot region (and past an unmapped initrd) for all
/// new tables and the bitmap, and the chunks start of day maps.
fn reserve_tables<'i, 'a>(input: &'i Input<'a>, g: Graft) -> Result<Plan<'i, 'a>, LayoutError> {
    let nr = input.nr_pages;
    let boot_end_pfn = Pfn((input.snapshot.boot_end - KERNEL_VIRT_BASE) / PAGE_SIZE);
    let (n_l2i, n_l1) = direct_map_tables(nr);
    let bitmap_pages = ((bitmap_words(nr) + chunk_words(nr)) as u64 * 8).div_ceil(PAGE_SIZE);
    let need = Tables::FIXED + n_l2i + n_l1 + bitmap_pages;
    let tail = in_boot::boot_tail(input, boot_end_pfn);
    let mut start = boot_end_pfn.max(input.p2m_pfns.1);
    if let Some(m) = input.module {
        if start < m.1 && m.0 < start + need {
            start = m.1;
        }
    }
    let in_boot = tail.1 .0.saturating_sub(tail.0 .0) >= need;
    if in_boot {
        start = tail.0;
    } else if start.0 + need > nr {
        return Err(LayoutError::OutOfFrames {
            need,
            have: nr
                .saturating_sub(start.0)
                .max(tail.1 .0.saturating_sub(tail.0 .0)),
        });
    }
    // The run: the fixed tables and level2_ident, the bitmaps, then the chunk L1s (so
    // the chunks start of day must map first are at its front).
    let upper_end = start + Tables::FIXED + n_l2i;
    let bitmap = (upper_end, upper_end + bitmap_pages);
    let t = Tables {
        l4: start,
        level3_ident: start + 1,
        level3_kernel: start + 2,
        level2_kernel: start + 3,
        level2_fixmap: start + 4,
        level1_fixmap: start + 5,
        level2_ident: (start + Tables::FIXED, n_l2i),
        direct_l1: (bitmap.1, n_l1),
    };
    let n_chunks = chunks(nr);
    // What start of day reads or writes through the direct map, by chunk.
    let mut want = [(Pfn(0), Pfn(0)); 8];
    want[0] = (Pfn(0), boot_end_pfn.min(Pfn(nr)));
    want[1] = input.p2m_pfns;
    want[2] = input.module.unwrap_or((Pfn(0), Pfn(0)));
    want[3] = (start, bitmap.1);
    for (i, r) in input.shared_rings.iter().enumerate() {
        if let Some(r) = *r {
            want[4 + i] = (r, r + 1);
        }
    }
    let wanted = start_chunks(&want, START_FREE_CHUNKS, n_chunks)?;
    // Written with mmu_update before the switch: the chunks of the upper tables and
    // bitmaps and of the first chunk L1s (through which the rest is written with
    // plain stores after the switch).
    // After the switch the p2m is read through the boot mapping as grafted into our
    // tables. Under L3[510] that is level2_kernel's plain copy; a p2m reaching into
    // L3[511] (behind a big initrd) would be read through level2_fixmap's graft, the
    // piece the 2014 bug got wrong, so such a p2m is mapped before the switch instead.
    let p2m_high = KERNEL_VIRT_BASE + input.p2m_pfns.1 .0 * PAGE_SIZE > FIXMAP_L2_BASE;
    let p2m_first = if p2m_high {
        input.p2m_pfns
    } else {
        (Pfn(0), Pfn(0))
    };
    let first = start_chunks(&[(start, t.direct_l1.0 + 1), p2m_first], 0, n_chunks)?;
    let nx = if input.nx {
        pte::NX
    } else {
        PageTableFlags::empty()
    };
    let image_ro_end = input.image.map_or(Pfn(0), |i| {
        Pfn((i.rodata_end.max(KERNEL_VIRT_BASE) - KERNEL_VIRT_BASE).div_ceil(PAGE_SIZE))
    });
    Ok(Plan {
        input,
        g,
        t,
        start,
        need,
        upper_end,
        bitmap,
        boot_end_pfn,
        wanted,
        first,
        p2m_high,
        data: pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY | nx,
        image_ro_end,
        in_boot,
        switched: core::cell::Cell::new(false),
    })
}

type Step<S> = Result<(), TakeoverError<<S as MmuSink>::Error>>;

/// Step 3: pin the new root (Xen validates the whole tree), switch to it, let go of
/// Xen's.
fn switch<S: MmuSink>(p: &Plan<'_, '_>, e: &mut Emitter<'_, S>) -> Step<S> {
    e.step = "pin and switch";
    let l4 = p.mfn(p.t.l4)?;
    e.op(MmuOp::Pin {
        level: Level::L4,
        mfn: l4,
    })?;
    e.op(MmuOp::NewBaseptr { mfn: l4 })?;
    e.op(MmuOp::Unpin {
        mfn: p.input.xen_l4,
    })?;
    e.flush()?;
    p.switched.set(true);
    Ok(())
}

/// Step 4: retire the boot region from the kernel map: level2_kernel slots past the
/// image, the grafted level2_fixmap slots, and the image's last L1 past its end.
fn retire_boot_region<S: MmuSink>(p: &Plan<'_, '_>, e: &mut Emitter<'_, S>) -> Step<S> {
    e.step = "retire boot mappings";
    let (t, g) = (&p.t, &p.g);
    for slot in g.retire_kernel.iter() {
        e.put(p.mfn(t.level2_kernel)?, slot, 0)?;
    }
    for slot in g.retire_fixmap.iter() {
        e.put(p.mfn(t.level2_fixmap)?, slot, 0)?;
    }
    let (tail_l1, tail) = p.input.snapshot.kernel_tail_l1;
    let last_kernel_pte = index(p.input.kernel_end - PAGE_SIZE, 1);
    if pte::frame(g.level2_kernel[g.kernel_last_slot]) == tail_l1 {
        for (i, &v) in tail.iter().enumerate().skip(last_kernel_pte + 1) {
            if pte::present(v) {
                e.put(tail_l1, i, 0)?;
            }
        }
    }
    Ok(())
}

/// The image by permission (W^X): its PTEs live in Xen's boot L1s, which the graft kept
/// for the image; the image maps pfn i at `KERNEL_VIRT_BASE` + i pages.
fn map_image_wx<S: MmuSink>(
    p: &Plan<'_, '_>,
    image: &ImageLayout<'_>,
    e: &mut Emitter<'_, S>,
) -> Step<S> {
    e.step = "map the image by section";
    let nx = if p.input.nx {
        pte::NX
    } else {
        PageTableFlags::empty()
    };
    let mut va = KERNEL_VIRT_BASE;
    while va < p.input.kernel_end {
        let l2e = p.g.level2_kernel[index(va, 2)];
        if let Some(flags) = image.flags(va, nx) {
            let pfn = Pfn((va - KERNEL_VIRT_BASE) / PAGE_SIZE);
            let val = if flags.is_empty() {
                0
            } else {
                pte::entry(p.mfn(pfn)?, flags)
            };
            e.put(pte::frame(l2e), index(va, 1), val)?;
        }
        va += PAGE_SIZE;
    }
    Ok(())
}

/// Add `[start, end)` to `regions`, coalesced with the previous region of the same use.
fn push_region(regions: &mut Regions, start: Pfn, end: Pfn, what: Use) {
    if start >= end {
        return;
    }
    if let Some(last) = regions.last_mut() {
        if last.what == what && last.end == start {
            last.end = end;
            return;
        }
    }
    // Capacity is ample for what the runtime pushes; an overflow keeps the frames
    // unreserved only if we drop them, so widen the previous region instead.
    if regions.push(Region { start, end, what }).is_err() {
        if let Some(last) = regions.last_mut() {
            last.end = last.end.max(end);
        }
    }
}

/// Step 5: Xen's table frames no kernel-map entry references any more become data
/// (direct map RW again), and the rest of the boot region (stack, padding) is free; the
/// start_info page stays reserved. Returns the reserved regions and the frames reclaimed.
fn reclaim<S: MmuSink>(
    p: &Plan<'_, '_>,
    dm: &DirectMap,
    e: &mut Emitter<'_, S>,
) -> Result<(Regions, u64), TakeoverError<S::Error>> {
    e.step = "reclaim boot frames";
    let (input, t, g) = (p.input, &p.t, &p.g);
    let mut final_l2 = [g.level2_kernel, g.level2_fixmap];
    for s in g.retire_kernel.iter() {
        final_l2[0][s] = 0;
    }
    for s in g.retire_fixmap.iter() {
        final_l2[1][s] = 0;
    }
    final_l2[1][FIXMAP_L2_SLOT] = 0; // our own level1_fixmap, not Xen's
    let referenced = |m: Mfn| {
        final_l2
            .iter()
            .flatten()
            .any(|&v| pte::present(v) && pte::frame(v) == m)
    };
    let mut regions = Regions::new();
    let kernel_end_pfn = Pfn((input.kernel_end - KERNEL_VIRT_BASE).div_ceil(PAGE_SIZE));
    push_region(&mut regions, Pfn(0), kernel_end_pfn, Use::Kernel);
    push_region(&mut regions, input.p2m_pfns.0, input.p2m_pfns.1, Use::P2m);
    if let Some(m) = input.module {
        push_region(&mut regions, m.0, m.1, Use::Initrd);
    }
    push_region(&mut regions, t.l4, p.bitmap.0, Use::PageTables);
    push_region(&mut regions, p.bitmap.0, p.bitmap.1, Use::Bitmap);
    let l1_end = t.direct_l1.0 + t.direct_l1.1;
    push_region(&mut regions, t.direct_l1.0, l1_end, Use::PageTables);
    for r in input.shared_rings.iter().flatten() {
        push_region(&mut regions, *r, *r + 1, Use::SharedRing);
    }
    let si = input.start_info;
    if si.0 < input.nr_pages {
        push_region(&mut regions, si, si + 1, Use::StartInfo);
    }
    let mut reclaimed = 0;
    for pfn in input.xen_pt.0.up_to(input.xen_pt.1) {
        let m = p.mfn(pfn)?;
        if referenced(m) {
            push_region(&mut regions, pfn, pfn + 1, Use::BootL1);
        } else {
            e.put(
                p.mfn(dm.l1_of(pfn.0 / CHUNK_PAGES))?,
                (pfn.0 % CHUNK_PAGES) as usize,
                pte::entry(m, p.data),
            )?;
            reclaimed += 1;
        }
    }
    e.flush()?;
    let kept = |pfn: Pfn| {
        pfn < kernel_end_pfn
            || in_range(pfn, (p.start, p.start + p.need))
            || in_range(pfn, input.xen_pt)
            || in_range(pfn, input.p2m_pfns)
            || input.module.is_some_and(|m| in_range(pfn, m))
            || input.shared_rings.contains(&Some(pfn))
            || pfn == input.start_info
    };
    reclaimed += kernel_end_pfn
        .up_to(p.boot_end_pfn.min(Pfn(input.nr_pages)))
        .filter(|&pfn| !kept(pfn))
        .count() as u64;
    Ok((regions, reclaimed))
}

#[cfg(test)]
mod tests {
    use super::chunks::insert_range;
    use super::*;

    #[test]
    fn chunk_ranges_stay_sorted_disjoint_and_merged() {
        let mut set = ChunkRanges::new();
        for (s, e) in [
            (10, 12),
            (20, 21),
            (0, 1),
            (12, 13),
            (5, 5),
            (15, 20),
            (1, 2),
        ] {
            insert_range(&mut set, s, e).unwrap();
        }
        // Touching ranges merge: 10..12 + 12..13, 15..20 + 20..21, 0..1 + 1..2.
        assert_eq!(&set[..], &[(0, 2), (10, 13), (15, 21)]);
        // One range covering several swallows them.
        insert_range(&mut set, 1, 16).unwrap();
        assert_eq!(&set[..], &[(0, 21)]);
        // Full: refused by name, nothing changed.
        let mut set = ChunkRanges::new();
        for c in 0..set.capacity() as u64 {
            insert_range(&mut set, 2 * c, 2 * c + 1).unwrap();
        }
        let before = set.clone();
        assert_eq!(
            insert_range(&mut set, 1000, 1001),
            Err(LayoutError::StartChunks { max: 32 })
        );
        assert_eq!(set, before);
        // The start set: the ranges' chunks, then the lowest free one.
        let s = start_chunks(&[(Pfn(0), Pfn(600)), (Pfn(2048), Pfn(2049))], 1, 8).unwrap();
        assert_eq!(&s[..], &[(0, 3), (4, 5)]);
    }
}
