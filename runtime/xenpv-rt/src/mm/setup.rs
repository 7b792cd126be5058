//! Start-of-day paging on the live system: gather the takeover's inputs from start_info
//! and Xen's boot tables, run the plan through the executor, then bring up the frame
//! allocator and read the layout back for the report.

use super::Xen;
use core::sync::atomic::AtomicU64;
use xenpv_paging::check::{self, Inspect, Report};
use xenpv_paging::direct::{DirectEnv, DirectMap, DirectStats, GrowError, PtWrite, TableStore};
use xenpv_paging::exec::{ExecError, Executor};
use xenpv_paging::frames::{
    bitmap_words, chunk_is_mapped, chunk_words, mapped_chunk_count, FrameAllocator, Use,
    CHUNK_PAGES,
};
use xenpv_paging::layout::{
    direct_map_va, Fixmap, Split, VirtAddr, DIRECT_MAP_BASE, KERNEL_VIRT_BASE, PAGE_SIZE,
};
use xenpv_paging::ops::{pte, Maddr, Mfn, Pfn};
use xenpv_paging::snapshot::{self, TableReader};
use xenpv_paging::takeover::{self, Outcome, P2m, TakeoverError};
use xenpv_paging::vmap::{self, Vmap, VmapEnv, VmapError, VmapStats, VmapTables};
use xenpv_protocol::start_info::{Module, StartInfo};

/// A mapped area of module space, handed out by [`Memory::vmap`] / [`Memory::vmalloc`]
/// only. Not `Clone`: [`Memory::vfree`] consumes it, so a freed area cannot be touched or
/// freed again through it.
#[derive(Debug)]
pub struct VmArea(vmap::VmArea);

impl VmArea {
    /// The area's first virtual address.
    pub fn va(&self) -> VirtAddr {
        self.0.va()
    }
    /// Pages mapped (the guard page after them not counted).
    pub fn pages(&self) -> u64 {
        self.0.pages()
    }
    /// Bytes mapped.
    pub fn bytes(&self) -> u64 {
        self.0.bytes()
    }
    /// The area's memory.
    pub fn as_mut_slice(&mut self) -> &mut [u64] {
        // SAFETY: this type is only built by `Memory::vmap` from an area the planner mapped
        // (PTEs written and flushed, RW) and is consumed by `Memory::vfree`, so the range
        // is mapped for as long as `self` lives; `&mut self` makes the borrow unique.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.va().as_mut_ptr::<u64>(),
                (self.bytes() / 8) as usize,
            )
        }
    }
}

extern "C" {
    static __xenpv_kernel_end: u8;
    static __xenpv_text_end: u8;
    static __xenpv_data_start: u8;
    static xenpv_boot_stack_guard: u8;
    static xenpv_console_window: u8;
}

/// Xen's read-only machine-to-phys table in every 64-bit PV guest (`MACH2PHYS_VIRT_START`).
const M2P: u64 = 0xffff_8000_0000_0000;

/// How start of day maps the direct map (`direct_map=` and `pt_write=` on the command
/// line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectMapMode {
    /// Map every chunk at start of day (`direct_map=eager`) instead of on demand.
    pub eager: bool,
    /// How chunk L1s are written.
    pub pt_write: PtWrite,
}

/// Paging as the runtime left it for the application.
pub struct Memory {
    // Private: safe code that could free a frame in use, or edit the tables' record,
    // could make the runtime hand out or map memory that is still in use. The frame
    // allocator itself lives in FRAMES, shared with the heap.
    outcome: Outcome,
    split: Split,
    kernel_end: VirtAddr,
    takeover_hypercalls: u64,
    rings: [Option<Pfn>; 2],
    direct: Direct,
    exec: Executor<Xen>,
    vmap: Vmap,
    mode: DirectMapMode,
}

/// The frame allocator and the direct map that grows under it, shared by [`Memory`] and
/// the heap (which takes runs of frames through the direct map). Locked only for the
/// length of one operation.
struct Frames {
    alloc: FrameAllocator<'static>,
    direct: DirectMap,
    env: Direct,
    /// The growth's own executor (the heap grows without a [`Memory`] at hand).
    exec: Executor<Xen>,
}

impl Frames {
    /// Map chunks until `enough` holds (or all are mapped): whether it holds. A failure
    /// is reported once and leaves the frames of the chunk unused.
    fn grow_until(&mut self, enough: impl Fn(&FrameAllocator<'_>) -> bool) -> bool {
        let r = self
            .direct
            .grow_until(&mut self.alloc, &mut self.env, &mut self.exec, enough);
        r.unwrap_or_else(|e| {
            grow_failed(&e);
            false
        })
    }

    /// A run of `n` consecutive free frames, mapping chunks until there is one.
    #[cfg(feature = "alloc")]
    fn alloc_run(&mut self, n: u64) -> Option<Pfn> {
        loop {
            if let Some(p) = self.alloc.alloc_run(n) {
                return Some(p);
            }
            match self
                .direct
                .grow(&mut self.alloc, &mut self.env, &mut self.exec)
            {
                Ok(_) => {}
                Err(GrowError::AllMapped) => return None,
                Err(e) => {
                    grow_failed(&e);
                    return None;
                }
            }
        }
    }
}

fn grow_failed(e: &GrowError<ExecError>) {
    // Halted is the echo of an earlier failure, already reported.
    if *e != GrowError::Halted {
        crate::warn!("direct map: {e}; the rest of memory stays unmapped and unused");
    }
}

static FRAMES: spin::Mutex<Option<Frames>> = spin::Mutex::new(None);

/// TSC stamps of the takeover's phases (boot tables read, the plan, the allocator, the
/// eager map, end) and the ticks spent in Xen during the plan and the eager map, for
/// [`Memory::phases`]: the clock is not up while they are taken.
static PHASES: spin::Mutex<Option<[u64; 7]>> = spin::Mutex::new(None);

/// Where start of day's paging time went ([`Memory::phases`]), in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingPhases {
    /// Reading Xen's boot tables and start_info's frames, and the checks.
    pub read_ns: u64,
    /// The takeover's plan, executed (tables, switch, start chunks, retire, reclaim).
    pub plan_ns: u64,
    /// Of which inside MMU hypercalls.
    pub plan_xen_ns: u64,
    /// Setting up the frame allocator.
    pub allocator_ns: u64,
    /// Mapping every other chunk (`direct_map=eager`; 0 on demand).
    pub eager_ns: u64,
    /// Of which inside MMU hypercalls.
    pub eager_xen_ns: u64,
}

/// The frame allocator, locked: read it through this guard (see [`Memory::frames`]).
pub struct FramesGuard(spin::MutexGuard<'static, Option<Frames>>);

impl core::ops::Deref for FramesGuard {
    type Target = FrameAllocator<'static>;
    fn deref(&self) -> &FrameAllocator<'static> {
        &self
            .0
            .as_ref()
            .expect("the takeover set up the frame allocator")
            .alloc
    }
}

/// The frames for one operation of the runtime's own.
fn frames_mut() -> impl core::ops::DerefMut<Target = Frames> {
    struct Mut(spin::MutexGuard<'static, Option<Frames>>);
    impl core::ops::Deref for Mut {
        type Target = Frames;
        fn deref(&self) -> &Frames {
            self.0
                .as_ref()
                .expect("the takeover set up the frame allocator")
        }
    }
    impl core::ops::DerefMut for Mut {
        fn deref_mut(&mut self) -> &mut Frames {
            self.0
                .as_mut()
                .expect("the takeover set up the frame allocator")
        }
    }
    Mut(FRAMES.lock())
}

/// `pages` frames in one run of consecutive pfns, for the heap: their first pfn, mapped
/// (chunks of the direct map are mapped as needed). `None` if no run is that long, or if
/// the allocator is in use right now (an allocation made while a [`FramesGuard`] is
/// held: the heap then cannot grow, rather than deadlock).
#[cfg(feature = "alloc")]
pub(crate) fn take_frame_run(pages: u64) -> Option<Pfn> {
    FRAMES.try_lock()?.as_mut()?.alloc_run(pages)
}

/// A frame the application owns (not Clone: freeing consumes it).
#[derive(Debug)]
pub struct Page {
    // Private: a Page is proof of ownership of its frame (`page_mut` hands out `&mut` to
    // it), so safe code must not be able to make one up.
    pfn: Pfn,
    mfn: Mfn,
}

impl Page {
    /// Its pseudo-physical frame number (its place in the direct map).
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }
    /// Its machine frame number (what Xen and peers name it by).
    pub fn mfn(&self) -> Mfn {
        self.mfn
    }
}

/// Frames through the direct map, the p2m list and Xen's M2P: what vmap reads with.
#[derive(Clone, Copy)]
struct Direct {
    nr_pages: u64,
    p2m_va: VirtAddr,
    /// The highest machine frame (`XENMEM_maximum_ram_page`): the M2P covers up to it.
    max_mfn: Mfn,
    /// The allocator's chunk bitmap (set = mapped), read without its lock: bits are only
    /// ever set, so a chunk seen mapped stays mapped.
    mapped: &'static [AtomicU64],
}

impl Direct {
    fn is_mapped(&self, pfn: Pfn) -> bool {
        pfn.0 < self.nr_pages && chunk_is_mapped(self.mapped, pfn.0 / CHUNK_PAGES)
    }
}

impl VmapEnv for Direct {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        if pfn.0 >= self.nr_pages {
            return None;
        }
        // SAFETY: pfn < nr_pages, and the p2m list is direct-mapped.
        Some(Mfn(unsafe {
            (self.p2m_va + pfn.0 * 8).as_ptr::<u64>().read_volatile()
        }))
    }
    fn pfn(&self, mfn: Mfn) -> Option<Pfn> {
        if mfn > self.max_mfn || mfn > Mfn::MAX {
            return None;
        }
        // SAFETY: Xen maps the M2P read-only for every PV guest, covering every machine
        // frame up to the maximum RAM page, which `mfn` does not exceed (checked above).
        let pfn = Pfn(unsafe { ((M2P + mfn.0 * 8) as *const u64).read_volatile() });
        (VmapEnv::mfn(self, pfn) == Some(mfn)).then_some(pfn)
    }
    fn word(&self, pfn: Pfn, index: usize) -> u64 {
        // vmap reads only page tables: the kernel map's and its own L1s, all mapped.
        assert!(
            self.is_mapped(pfn) && index < 512,
            "vmap read pfn {pfn:#x}, not direct-mapped"
        );
        // SAFETY: the frame's chunk is mapped (checked above), so it is readable.
        unsafe {
            (direct_map_va(pfn) + index as u64 * 8)
                .as_ptr::<u64>()
                .read_volatile()
        }
    }
    fn zero(&mut self, pfn: Pfn) {
        assert!(
            self.is_mapped(pfn),
            "vmap zeroes pfn {pfn:#x}, not direct-mapped"
        );
        // SAFETY: vmap zeroes only frames it just took from the allocator: the allocator
        // hands out only frames of mapped chunks, mapped writable, referenced by nothing
        // else.
        unsafe {
            core::ptr::write_bytes(direct_map_va(pfn).as_mut_ptr::<u8>(), 0, PAGE_SIZE as usize)
        }
    }
}

impl DirectEnv for Direct {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        VmapEnv::mfn(self, pfn)
    }
    fn mfns(&self, first: Pfn, out: &mut [Mfn]) {
        let n = (self.nr_pages.saturating_sub(first.0) as usize).min(out.len());
        // SAFETY: entries first..first + n lie below nr_pages, in the p2m list, which is
        // direct-mapped (its chunks are start chunks); `Mfn` is a transparent u64. The
        // guest's own list: only the runtime writes it, so a plain copy reads it whole.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self.p2m_va + first.0 * 8).as_ptr::<Mfn>(),
                out.as_mut_ptr(),
                n,
            )
        };
        out[n..].fill(Mfn(!0));
    }
}

impl TableStore for Direct {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        StartStores.store_table(pfn, entries)
    }
}

/// Plain stores into a chunk L1 through the direct map.
struct StartStores;

impl TableStore for StartStores {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        // SAFETY: the direct-map planner stores only into the L1 frame of a chunk it is
        // about to map: a frame of the takeover's reserved table run, not a page table yet,
        // whose chunk it mapped read-write first (and flushed), referenced by no Rust
        // reference. 4096 bytes, page-aligned.
        unsafe {
            core::ptr::copy_nonoverlapping(
                entries.as_ptr(),
                direct_map_va(pfn).as_mut_ptr::<u64>(),
                entries.len(),
            )
        }
    }
}

/// The p2m list: boot mapping before the switch, direct map after.
struct LiveP2m {
    boot: VirtAddr,
    nr_pages: u64,
}

impl LiveP2m {
    fn direct(&self) -> VirtAddr {
        DIRECT_MAP_BASE + (self.boot - KERNEL_VIRT_BASE)
    }
}

impl P2m for LiveP2m {
    fn mfn(&self, pfn: Pfn, switched: bool) -> Option<Mfn> {
        if pfn.0 >= self.nr_pages {
            return None;
        }
        let base = if switched { self.direct() } else { self.boot };
        // SAFETY: pfn < nr_pages; the list is mapped at `boot` until the switch (Xen's boot
        // mapping) and at `direct()` from the switch on (the direct map the takeover built).
        Some(Mfn(unsafe {
            (base + pfn.0 * 8).as_ptr::<u64>().read_volatile()
        }))
    }
}

/// Reads Xen's boot tables through the boot mapping, refusing any frame that is not one
/// of the boot page-table frames start_info names.
struct BootTables<'a> {
    p2m: &'a LiveP2m,
    pt: (Pfn, Pfn),
}

impl TableReader for BootTables<'_> {
    fn table(&self, mfn: Mfn) -> Option<[u64; 512]> {
        let pfn = self
            .pt
            .0
            .up_to(self.pt.1)
            .find(|&p| self.p2m.mfn(p, false) == Some(mfn))?;
        let va = KERNEL_VIRT_BASE + pfn.0 * PAGE_SIZE;
        // SAFETY: boot page-table frames are mapped (read-only) in the boot region at their
        // pfn's address; we only read.
        Some(unsafe { va.as_ptr::<[u64; 512]>().read_volatile() })
    }
}

fn pfn_range(va: VirtAddr, len: u64) -> (Pfn, Pfn) {
    (
        Pfn((va - KERNEL_VIRT_BASE) / PAGE_SIZE),
        Pfn((va - KERNEL_VIRT_BASE + len).div_ceil(PAGE_SIZE)),
    )
}

fn nx_supported() -> bool {
    // Leaf 0x80000001 exists on every CPU Xen 4.17 supports.
    let r = core::arch::x86_64::__cpuid(0x8000_0001);
    r.edx & (1 << 20) != 0
}

/// Take over paging. Refusals and hypercall failures are fatal (status 102) with a message
/// naming the sizes or the operation; refusals happen before anything is written.
/// `batch` caps operations per hypercall (512 normally; 1 for the bench's baseline).
pub(crate) fn take_over(
    info: &StartInfo,
    split: Split,
    module_space_min: u64,
    batch: usize,
    mode: DirectMapMode,
) -> Memory {
    // SAFETY: a linker-script symbol; only its address is used.
    let kernel_end = VirtAddr::from_ptr(unsafe { &__xenpv_kernel_end as *const u8 });
    let nr = info.nr_pages;
    let p2m = LiveP2m {
        boot: VirtAddr::new(info.mfn_list),
        nr_pages: nr,
    };
    let p2m_pfns = pfn_range(p2m.boot, nr * 8);
    let xen_pt = pfn_range(VirtAddr::new(info.pt_base), info.nr_pt_frames * PAGE_SIZE);
    if xen_pt.1 .0 > nr || p2m_pfns.1 .0 > nr {
        crate::fatal!(
            "start_info: boot tables (pfn {:#x}..{:#x}) or p2m list (pfn {:#x}..{:#x}) lie past nr_pages {nr:#x}",
            xen_pt.0, xen_pt.1, p2m_pfns.0, p2m_pfns.1
        );
    }
    let Some(xen_l4) = p2m.mfn(xen_pt.0, false) else {
        crate::fatal!("p2m has no entry for pt_base")
    };
    // Under PV the CPU's CR3 holds a machine address.
    let cr3 = Mfn(x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64()
        >> 12);
    if cr3 != xen_l4 {
        crate::fatal!("cr3 holds mfn {cr3:#x} but pt_base's frame is mfn {xen_l4:#x}");
    }
    let reader = BootTables {
        p2m: &p2m,
        pt: xen_pt,
    };
    let t_snap = crate::time::rdtsc();
    let snap = match snapshot::read(&reader, xen_l4, kernel_end) {
        Ok(s) => s,
        Err(e) => crate::fatal!("Xen's boot page tables: {e}"),
    };
    let module = info.module.map(|m| match m {
        Module::Mapped { va, len } => pfn_range(VirtAddr::new(va), len),
        Module::Pfn { pfn, len } => (Pfn(pfn), Pfn(pfn + len.div_ceil(PAGE_SIZE))),
    });
    // The rings' frames, found in the p2m: a frame that is not ours is refused here,
    // never looked up in Xen's M2P.
    let shared_rings = match info.ring_pfns(|p| p2m.mfn(p, false)) {
        Ok(r) => r,
        Err(e) => crate::fatal!("start_info refused: {e}"),
    };
    // Linker-script and start-of-day symbols: only their addresses are used.
    let (text_end, data_start, guard, window) = (
        VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_text_end)),
        VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_data_start)),
        VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_boot_stack_guard)),
        VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_console_window)),
    );
    let guard_pages = [guard];
    // A domU's console ring is mapped at the window page already: leave that entry be.
    let keep: &[VirtAddr] = if crate::console::ring::attached() {
        &[window]
    } else {
        &[]
    };
    let input = takeover::Input {
        nr_pages: nr,
        p2m: &p2m,
        kernel_end,
        snapshot: &snap,
        xen_l4,
        xen_pt,
        p2m_pfns,
        module,
        shared_rings,
        shared_info: Maddr(info.shared_info_maddr).mfn(),
        split,
        module_space_min,
        nx: nx_supported(),
        image: Some(takeover::ImageLayout {
            text_end: text_end.align_up(PAGE_SIZE),
            // .rodata and Xen's notes: everything up to .data.
            rodata_end: data_start,
            guard_pages: &guard_pages,
            keep,
        }),
    };
    let t_run = crate::time::rdtsc();
    let xen_run = super::xen::ticks_in_xen();
    let mut exec = Executor::new(Xen);
    if let Err(e) = exec.set_batch(batch) {
        crate::fatal!("paging: {e}");
    }
    let outcome = match takeover::run(&input, &mut exec, &mut StartStores) {
        Ok(o) => o,
        Err(TakeoverError::Layout(e)) => crate::fatal!("layout refused: {e}"),
        Err(TakeoverError::BadP2m { pfn, mfn }) => {
            crate::fatal!("p2m entry of pfn {pfn:#x} is {mfn:#x}, not a frame")
        }
        Err(TakeoverError::Sink { step, error }) => {
            crate::fatal!("paging takeover, step \"{step}\": {error}")
        }
    };
    crate::debug!(
        "paging: {} PTE updates and {} mmuext ops in {} hypercalls",
        outcome.pt_updates,
        outcome.mmuext_ops,
        exec.hypercalls
    );

    let t_alloc = crate::time::rdtsc();
    let xen_plan = super::xen::ticks_in_xen() - xen_run;
    let (words, cwords) = (bitmap_words(nr), chunk_words(nr));
    let bits_va = direct_map_va(outcome.bitmap.0);
    // SAFETY: the bitmap frames are ours (reserved by the takeover), contiguous in pfn and
    // so in the direct map (their chunks are start chunks), mapped read-write, referenced
    // nowhere else, and hold `words + cwords` words (the takeover sized them so). The
    // frame bits go to the allocator alone; the chunk bits are atomics, shared.
    let (bits, chunk_bits) = unsafe {
        (
            core::slice::from_raw_parts_mut(bits_va.as_mut_ptr::<u64>(), words),
            core::slice::from_raw_parts((bits_va + words as u64 * 8).as_ptr::<AtomicU64>(), cwords),
        )
    };
    let alloc = match FrameAllocator::new_on_demand(
        bits,
        chunk_bits,
        nr,
        outcome.regions.clone(),
        &outcome.start_chunks,
    ) {
        Ok(f) => f,
        Err(e) => crate::fatal!("frame allocator: {e}"),
    };
    let direct = Direct {
        nr_pages: nr,
        p2m_va: p2m.direct(),
        max_mfn: crate::hypercall::maximum_ram_page().map_or(Mfn::MAX, |m| m.min(Mfn::MAX)),
        mapped: chunk_bits,
    };
    let mut frames = Frames {
        alloc,
        direct: DirectMap::new(&outcome.tables, nr, input.nx, mode.pt_write),
        env: direct,
        exec,
    };
    let t_eager = crate::time::rdtsc();
    let xen_eager = super::xen::ticks_in_xen();
    if mode.eager {
        if let Err(e) = frames
            .direct
            .map_all(&mut frames.alloc, &mut frames.env, &mut frames.exec)
        {
            crate::fatal!("direct_map=eager: {e}");
        }
    }
    let exec = core::mem::replace(&mut frames.exec, Executor::new(Xen));
    let _ = frames.exec.set_batch(batch);
    *FRAMES.lock() = Some(frames);
    let vmap = Vmap::new(
        split,
        VmapTables {
            level2: [outcome.tables.level2_kernel, outcome.tables.level2_fixmap],
            direct_l1: outcome.tables.direct_l1.0,
        },
        input.nx,
    );
    let takeover_hypercalls = exec.hypercalls;
    let t_end = crate::time::rdtsc();
    PHASES.lock().replace([
        t_snap,
        t_run,
        t_alloc,
        t_eager,
        t_end,
        xen_plan,
        super::xen::ticks_in_xen() - xen_eager,
    ]);
    Memory {
        outcome,
        split,
        kernel_end,
        takeover_hypercalls,
        rings: shared_rings,
        direct,
        exec,
        vmap,
        mode,
    }
}

impl Memory {
    /// The p2m list through the direct map.
    pub fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        VmapEnv::mfn(&self.direct, pfn)
    }

    /// mfn -> pfn through Xen's M2P, checked against the p2m.
    pub fn pfn(&self, mfn: Mfn) -> Option<Pfn> {
        self.direct.pfn(mfn)
    }

    /// Map `pages` fresh frames in module space (read-write, NX, a guard page after).
    pub fn vmap(&mut self, pages: u64) -> Result<VmArea, VmapError<ExecError>> {
        let mut f = frames_mut();
        // The data frames and the L1s they may need, mapped in the direct map first.
        let need = pages.saturating_add(pages / 512 + 2);
        f.grow_until(|a| a.free_frames() >= need);
        self.vmap
            .map(&mut self.direct, &mut self.exec, &mut f.alloc, pages)
            .map(VmArea)
    }

    /// [`Memory::vmap`] of enough pages for `bytes`.
    pub fn vmalloc(&mut self, bytes: u64) -> Result<VmArea, VmapError<ExecError>> {
        self.vmap(bytes.div_ceil(PAGE_SIZE))
    }

    /// Unmap an area; its frames (and L1s left empty) go back to the allocator.
    pub fn vfree(&mut self, area: VmArea) -> Result<(), VmapError<ExecError>> {
        self.vmap.unmap(
            &mut self.direct,
            &mut self.exec,
            &mut frames_mut().alloc,
            area.0,
        )
    }

    /// vmap's counters so far.
    pub fn vmap_stats(&self) -> VmapStats {
        self.vmap.stats
    }

    /// Module space: `(live pages incl. guards, poisoned pages, live areas)`.
    pub fn module_space_usage(&self) -> (u64, u64, usize) {
        let r = self.vmap.ranges();
        let (live, poisoned) = r.usage();
        (live, poisoned, r.live_areas())
    }

    /// `(hypercalls, PTE updates)` issued by the MMU executor so far, takeover included.
    pub fn mmu_counts(&self) -> (u64, u64) {
        (self.exec.hypercalls, self.exec.pt_updates)
    }

    /// Map machine frame `mfn` (read-write, NX) at fixmap slot `slot`, or clear the slot
    /// (`mfn` = None). Xen checks the frame is one the guest may map.
    pub(crate) fn set_fixmap(&mut self, slot: usize, mfn: Option<Mfn>) -> Result<(), ExecError> {
        use xenpv_paging::ops::{MmuOp, MmuSink};
        assert!(slot < 512, "fixmap slot {slot}");
        let l1 = self.fixmap_pte_maddr(slot);
        let val = mfn.map_or(0, |m| {
            pte::entry(
                m,
                pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY | pte::NX,
            )
        });
        self.exec.submit(MmuOp::PtUpdate { ptr: l1, val })?;
        if mfn.is_none() {
            self.exec.submit(MmuOp::InvlpgLocal {
                va: super::layout::FIXMAP_BASE + slot as u64 * PAGE_SIZE,
            })?;
        }
        self.exec.flush()
    }

    /// Machine address of fixmap slot `slot`'s PTE (for Xen operations that take one).
    pub(crate) fn fixmap_pte_maddr(&self, slot: usize) -> Maddr {
        let l1 = self
            .mfn(self.outcome.tables.level1_fixmap)
            .unwrap_or(Mfn(0));
        Maddr(l1.maddr().0 + (slot as u64 % 512) * 8)
    }

    /// A fresh frame for the application: `(pfn, mfn)`, mapped read-write in the direct
    /// map. `None` when memory is exhausted.
    pub fn alloc_page(&mut self) -> Option<Page> {
        let pfn = {
            let mut f = frames_mut();
            f.grow_until(|a| a.free_frames() >= 1);
            f.alloc.alloc()?
        };
        match self.mfn(pfn) {
            Some(mfn) if mfn <= Mfn::MAX => Some(Page { pfn, mfn }),
            _ => None, // a hole in the p2m: keep the frame out of use
        }
    }

    /// The page's bytes through the direct map.
    pub fn page_mut(&mut self, page: &mut Page) -> &mut [u8; 4096] {
        // SAFETY: a Page is handed out once by alloc_page for a frame the allocator gave
        // us (direct-mapped RW, referenced nowhere else) and consumed by free_page; the
        // &mut borrow of it makes this reference unique. A page granted to a peer is
        // inside its grant guard (`gnttab::GrantedPage`/`ReservedRef`, in a SharedPage),
        // which never hands out `&mut Page`, and a copy side (`by_frame`) borrows it.
        unsafe { &mut *direct_map_va(page.pfn).as_mut_ptr::<[u8; 4096]>() }
    }

    /// Give a page from [`Memory::alloc_page`] back to the allocator. (A granted page
    /// cannot reach here: its guard owns it until the grant ends.)
    pub fn free_page(&mut self, page: Page) {
        // Cannot fail: the frame came from the allocator and the Page was consumed.
        let _ = frames_mut().alloc.free(page.pfn);
    }

    /// Cap MMU operations per hypercall (1..=512) from now on.
    pub fn set_mmu_batch(&mut self, n: usize) -> Result<(), ExecError> {
        self.exec.set_batch(n)
    }

    /// A copy of a page-table page (or any frame), read through the direct map; `None`
    /// if the frame's chunk of the direct map is not mapped (yet). A copy, not a
    /// reference: the frame may be a vmap area's or a shared ring's, which others write.
    pub fn table(&self, pfn: Pfn) -> Option<[u64; 512]> {
        if !self.is_mapped(pfn) {
            return None;
        }
        // SAFETY: the frame's chunk is mapped (checked above; a mapped chunk stays
        // mapped), so its page is readable through the direct map; a volatile read of the
        // frame's words.
        Some(unsafe { direct_map_va(pfn).as_ptr::<[u64; 512]>().read_volatile() })
    }

    /// Is `pfn` mapped in the direct map (below nr_pages, its chunk mapped)?
    pub fn is_mapped(&self, pfn: Pfn) -> bool {
        self.direct.is_mapped(pfn)
    }

    /// The kernel map's PTE for image address `va` (through level2_kernel and the L1 it
    /// points at), `None` if no L1 maps it.
    pub fn kernel_pte(&self, va: VirtAddr) -> Option<u64> {
        let l2e =
            self.table(self.outcome.tables.level2_kernel)?[xenpv_paging::layout::index(va, 2)];
        if !pte::present(l2e) || pte::flags(l2e).contains(pte::PSE) {
            return None;
        }
        let l1 = self.pfn(pte::frame(l2e))?;
        Some(self.table(l1)?[xenpv_paging::layout::index(va, 1)])
    }

    /// The direct map's PTE for `pfn` (0 while its chunk is not mapped).
    pub fn direct_pte(&self, pfn: Pfn) -> u64 {
        if !self.is_mapped(pfn) {
            return 0;
        }
        let l1 = self.outcome.tables.direct_l1.0 + pfn.0 / CHUNK_PAGES;
        self.table(l1)
            .map_or(0, |t| t[(pfn.0 % CHUNK_PAGES) as usize])
    }

    /// Where start of day's paging time went.
    pub fn phases(&self) -> PagingPhases {
        let Some(t) = *PHASES.lock() else {
            return PagingPhases::default();
        };
        let ns = |a, b| crate::Timing::ns(a, b);
        PagingPhases {
            read_ns: ns(t[0], t[1]),
            plan_ns: ns(t[1], t[2]),
            plan_xen_ns: ns(0, t[5]),
            allocator_ns: ns(t[2], t[3]),
            eager_ns: ns(t[3], t[4]),
            eager_xen_ns: ns(0, t[6]),
        }
    }

    /// How the direct map is mapped: the mode, and `(chunks mapped, chunks in all)`
    /// (2 MiB each).
    pub fn direct_map(&self) -> (DirectMapMode, (u64, u64)) {
        let all = xenpv_paging::frames::chunks(self.direct.nr_pages);
        (self.mode, (mapped_chunk_count(self.direct.mapped), all))
    }

    /// What mapping chunks after start of day took (`None` while the frame allocator is
    /// locked by the caller: a [`FramesGuard`] held).
    pub fn direct_map_stats(&self) -> Option<DirectStats> {
        Some(FRAMES.try_lock()?.as_ref()?.direct.stats)
    }

    /// The frame allocator, locked for reading (frames come and go through this type's
    /// methods). Drop the guard before allocating from the heap: while it is held the
    /// heap cannot grow.
    pub fn frames(&self) -> FramesGuard {
        FramesGuard(FRAMES.lock())
    }
    /// What the takeover did: the runtime's tables, the reserved regions, counts.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }
    /// The kernel/module split of the kernel map (`split=` on the command line).
    pub fn split(&self) -> Split {
        self.split
    }
    /// The first virtual address past the image (`__xenpv_kernel_end`).
    pub fn kernel_end(&self) -> VirtAddr {
        self.kernel_end
    }
    /// Hypercalls the takeover issued.
    pub fn takeover_hypercalls(&self) -> u64 {
        self.takeover_hypercalls
    }
    /// A domU's xenstore and console ring frames (`[store, console]`), as found in the
    /// p2m at start of day; `None` for dom0.
    pub fn ring_pfns(&self) -> [Option<Pfn>; 2] {
        self.rings
    }

    /// shared_info, mapped at fixmap slot 0.
    pub fn shared_info(&self) -> *mut xen_sys::shared_info {
        Fixmap::SharedInfo.va().as_mut_ptr::<xen_sys::shared_info>()
    }

    /// Read the kernel map back and check it.
    pub fn report(&self) -> Report {
        let t = &self.outcome.tables;
        check::check(
            self.split,
            self.kernel_end,
            &self.table(t.level2_kernel).unwrap_or([0; 512]),
            &self.table(t.level2_fixmap).unwrap_or([0; 512]),
            !pte::flags(self.direct_pte(t.level1_fixmap)).contains(pte::RW),
            self,
        )
    }
}

impl Inspect for Memory {
    fn is_module_table(&self, l1: Mfn) -> bool {
        self.pfn(l1).is_some_and(|p| self.vmap.owns_l1(p))
    }
    fn first_page_holds(&self, l1: Mfn) -> &'static str {
        let Some(l1_pfn) = self.pfn(l1) else {
            return "a foreign frame";
        };
        let Some(&e) = self
            .table(l1_pfn)
            .unwrap_or([0; 512])
            .iter()
            .find(|e| pte::present(**e))
        else {
            return "nothing";
        };
        match self.pfn(pte::frame(e)) {
            None => "a foreign frame",
            Some(p) => match self.frames().region_of(p) {
                Some(Use::Kernel) => "kernel",
                Some(Use::Initrd) => "initrd",
                Some(Use::P2m) => "p2m",
                Some(_) => "page-tables",
                None => "boot-data",
            },
        }
    }
}

/// The top of the layout as read back: which L4 and level3_kernel slots are present and
/// what they point at, and where the initrd lives (the `layout:` lines above the L2 ones).
pub struct TopLevel<'a>(pub &'a Memory, pub Option<(Pfn, Pfn)>);

impl core::fmt::Display for TopLevel<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        let t = &m.outcome.tables;
        let mfn = |p: Pfn| m.mfn(p).unwrap_or(Mfn(!0));
        let name4 = |slot: usize, e: u64| match slot {
            super::layout::L4_XEN_FIRST..=super::layout::L4_XEN_LAST => "xen",
            _ if pte::frame(e) == mfn(t.level3_ident) => "direct-map",
            _ if pte::frame(e) == mfn(t.level3_kernel) => "kernel-map",
            _ => "UNEXPECTED",
        };
        write!(f, "layout: l4")?;
        runs(f, &m.table(t.l4).unwrap_or([0; 512]), name4)?;
        write!(f, "\nlayout: level3_kernel")?;
        runs(f, &m.table(t.level3_kernel).unwrap_or([0; 512]), |_, e| {
            if pte::frame(e) == mfn(t.level2_kernel) {
                "level2_kernel"
            } else if pte::frame(e) == mfn(t.level2_fixmap) {
                "level2_fixmap"
            } else {
                "UNEXPECTED"
            }
        })?;
        // The image's permissions as the live tables have them (W^X), and the direct-map
        // alias of its text.
        let text = KERNEL_VIRT_BASE;
        let rodata = VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_text_end)).align_up(PAGE_SIZE);
        let data = VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_data_start));
        let guard = VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_boot_stack_guard));
        write!(
            f,
            "\nlayout: image text={} rodata={} data={} stack-guard={} text-alias={}",
            perms(m.kernel_pte(text)),
            perms(m.kernel_pte(rodata)),
            perms(m.kernel_pte(data)),
            perms(m.kernel_pte(guard)),
            perms(Some(m.direct_pte(Pfn(0)))),
        )?;
        match self.1 {
            None => write!(f, "\nlayout: initrd none"),
            Some((s, e)) => write!(
                f,
                "\nlayout: initrd pfn {s:#x}..{e:#x} at {:#x} (direct map), frames reserved",
                direct_map_va(s)
            ),
        }
    }
}

/// `r-x`, `r--`, `rw-`, `rwx` of a present entry; `unmapped` otherwise.
fn perms(e: Option<u64>) -> &'static str {
    match e {
        Some(e) if pte::present(e) => match (
            pte::flags(e).contains(pte::RW),
            !pte::flags(e).contains(pte::NX),
        ) {
            (false, true) => "r-x",
            (false, false) => "r--",
            (true, false) => "rw-",
            (true, true) => "rwx",
        },
        _ => "unmapped",
    }
}

/// ` a-b=name c=name` over the present entries of a table.
fn runs(
    f: &mut core::fmt::Formatter<'_>,
    table: &[u64; 512],
    name: impl Fn(usize, u64) -> &'static str,
) -> core::fmt::Result {
    let mut i = 0;
    while i < 512 {
        if !pte::present(table[i]) {
            i += 1;
            continue;
        }
        let n = name(i, table[i]);
        let mut j = i;
        while j + 1 < 512 && pte::present(table[j + 1]) && name(j + 1, table[j + 1]) == n {
            j += 1;
        }
        if i == j {
            write!(f, " {i}={n}")?;
        } else {
            write!(f, " {i}-{j}={n}")?;
        }
        i = j + 1;
    }
    Ok(())
}
