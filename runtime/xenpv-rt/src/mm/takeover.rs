//! Start-of-day paging on the live system: gather the takeover's inputs from start_info
//! and Xen's boot tables, run the plan through the executor, then bring up the frame
//! allocator. Each step is a function named for it; the memory it reads goes through
//! the readers of [`super::live`].

use super::live::{self, BootStores, BootTables, Direct, LiveP2m, StartStores};
use super::memory::{DirectMapMode, Frames, Memory, FRAMES};
use super::report::PHASES;
use super::Xen;
use xenpv_paging::direct::DirectMap;
use xenpv_paging::exec::Executor;
use xenpv_paging::frames::{bitmap_words, chunk_words, FrameAllocator};
use xenpv_paging::layout::{Split, VirtAddr, KERNEL_VIRT_BASE, PAGE_SIZE};
use xenpv_paging::ops::{Maddr, Mfn, Pfn};
use xenpv_paging::snapshot::{self, BootSnapshot};
use xenpv_paging::takeover::{self, Outcome, P2m, TakeoverError};
use xenpv_paging::vmap::{Vmap, VmapTables};
use xenpv_protocol::start_info::{Module, StartInfo};

/// The pfns `[start, end)` a range of the boot region covers (it maps pfn i at
/// `KERNEL_VIRT_BASE` + i pages).
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

/// What start of day found: start_info's frames checked against the p2m and CR3, and
/// Xen's boot tables read.
struct BootRead {
    p2m: LiveP2m,
    p2m_pfns: (Pfn, Pfn),
    xen_pt: (Pfn, Pfn),
    xen_l4: Mfn,
    snap: BootSnapshot,
    module: Option<(Pfn, Pfn)>,
    shared_rings: [Option<Pfn>; 2],
    start_info: Pfn,
}

/// Read start_info's frames and Xen's boot tables, refusing (fatally) anything that does
/// not add up.
fn read_boot(info: &StartInfo, si_va: VirtAddr, kernel_end: VirtAddr) -> BootRead {
    let nr = info.nr_pages;
    let start_info = pfn_range(si_va, 1).0;
    if !si_va.is_aligned(PAGE_SIZE) || start_info.0 >= nr {
        crate::fatal!("start_info at {si_va:#x} is not a page of the boot region");
    }
    let p2m = LiveP2m {
        boot: info.mfn_list,
        nr_pages: nr,
    };
    let p2m_pfns = pfn_range(p2m.boot, nr * 8);
    let xen_pt = pfn_range(info.pt_base, info.nr_pt_frames * PAGE_SIZE);
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
    let snap = match snapshot::read(&reader, xen_l4, kernel_end) {
        Ok(s) => s,
        Err(e) => crate::fatal!("Xen's boot page tables: {e}"),
    };
    let module = info.module.map(|m| match m {
        Module::Mapped { va, len } => pfn_range(va, len),
        Module::Pfn { pfn, len } => (Pfn(pfn), Pfn(pfn + len.div_ceil(PAGE_SIZE))),
    });
    // The rings' frames, found in the p2m: a frame that is not ours is refused here,
    // never looked up in Xen's M2P.
    let shared_rings = match info.ring_pfns(|p| p2m.mfn(p, false)) {
        Ok(r) => r,
        Err(e) => crate::fatal!("start_info refused: {e}"),
    };
    BootRead {
        p2m,
        p2m_pfns,
        xen_pt,
        xen_l4,
        snap,
        module,
        shared_rings,
        start_info,
    }
}

/// Plan and execute the takeover (fatal on a refusal): what it did, and the executor
/// that carried it.
fn run_plan(
    info: &StartInfo,
    boot: &BootRead,
    split: Split,
    module_space_min: u64,
    batch: usize,
) -> (Outcome, Executor<Xen>, bool) {
    let image = live::image();
    // A domU's console ring is mapped at the window page already: leave that entry be.
    let keep: &[VirtAddr] = if crate::console::ring::attached() {
        &[image.console_window]
    } else {
        &[]
    };
    let input = takeover::Input {
        nr_pages: info.nr_pages,
        p2m: &boot.p2m,
        kernel_end: image.kernel_end,
        snapshot: &boot.snap,
        xen_l4: boot.xen_l4,
        xen_pt: boot.xen_pt,
        p2m_pfns: boot.p2m_pfns,
        module: boot.module,
        shared_rings: boot.shared_rings,
        start_info: boot.start_info,
        shared_info: Maddr(info.shared_info_maddr).mfn(),
        split,
        module_space_min,
        nx: nx_supported(),
        image: Some(takeover::ImageLayout {
            text_end: image.text_end.align_up(PAGE_SIZE),
            // .rodata and Xen's notes: everything up to .data.
            rodata_end: image.data_start,
            guard_pages: &[image.boot_stack_guard],
            keep,
        }),
    };
    let mut exec = Executor::new(Xen);
    if let Err(e) = exec.set_batch(batch) {
        crate::fatal!("paging: {e}");
    }
    let outcome = match takeover::run(&input, &mut exec, &mut StartStores, &mut BootStores) {
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
    (outcome, exec, input.nx)
}

/// The frame allocator over the takeover's bitmaps, and the direct-map reader: the
/// allocator and the direct map that grows under it go to [`FRAMES`].
fn start_allocator(
    outcome: &Outcome,
    p2m: &LiveP2m,
    nx: bool,
    mode: DirectMapMode,
    exec: Executor<Xen>,
) -> Direct {
    let nr = p2m.nr_pages;
    let (bits, chunk_bits) =
        live::allocator_bitmaps(outcome.bitmap.0, bitmap_words(nr), chunk_words(nr));
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
    let frames = Frames {
        alloc,
        direct: DirectMap::new(&outcome.tables, nr, nx, mode.pt_write),
        env: direct,
        exec,
    };
    *FRAMES.lock() = Some(frames);
    live::set_live_p2m(&direct);
    direct
}

/// Map every chunk now (`direct_map=eager`), through the executor of [`FRAMES`].
fn map_eagerly() {
    let mut f = FRAMES.lock();
    let f = f.as_mut().expect("the allocator is set up");
    if let Err(e) = f.direct.map_all(&mut f.alloc, &mut f.env, &mut f.exec) {
        crate::fatal!("direct_map=eager: {e}");
    }
}

/// The executor of [`FRAMES`], replaced by a fresh one of `batch` operations per call.
fn take_executor(batch: usize) -> Executor<Xen> {
    let mut f = FRAMES.lock();
    let f = f.as_mut().expect("the allocator is set up");
    let mut fresh = Executor::new(Xen);
    let _ = fresh.set_batch(batch);
    core::mem::replace(&mut f.exec, fresh)
}

/// Take over paging, then publish the p2m for the toolstack (`p2m:` line). Refusals and hypercall failures are fatal (status 102) with a message
/// naming the sizes or the operation; refusals happen before anything is written.
/// `si` is where Xen mapped start_info (its page is kept).
/// `batch` caps operations per hypercall (512 normally; 1 for the bench's baseline).
pub(crate) fn take_over(
    info: &StartInfo,
    si: *const u8,
    split: Split,
    module_space_min: u64,
    batch: usize,
    mode: DirectMapMode,
) -> Memory {
    let kernel_end = live::image().kernel_end;
    let t_snap = crate::time::rdtsc();
    let boot = read_boot(info, VirtAddr::from_ptr(si), kernel_end);

    let t_run = crate::time::rdtsc();
    let xen_run = super::xen::ticks_in_xen();
    let (outcome, exec, nx) = run_plan(info, &boot, split, module_space_min, batch);

    let t_alloc = crate::time::rdtsc();
    let xen_plan = super::xen::ticks_in_xen() - xen_run;
    let direct = start_allocator(&outcome, &boot.p2m, nx, mode, exec);

    let t_eager = crate::time::rdtsc();
    let xen_eager = super::xen::ticks_in_xen();
    if mode.eager {
        map_eagerly();
    }
    // `Memory` keeps the executor that carried the takeover and the eager map (its counts
    // go on); the allocator grows through a fresh one from now on.
    let exec = take_executor(batch);
    let takeover_hypercalls = exec.hypercalls;
    let vmap = Vmap::new(
        split,
        VmapTables {
            level2: [outcome.tables.level2_kernel, outcome.tables.level2_fixmap],
            direct_l1: outcome.tables.direct_l1.0,
        },
        nx,
    );
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
    let list_aligned = boot.p2m.boot.is_aligned(PAGE_SIZE);
    let mut mem = Memory {
        outcome,
        split,
        kernel_end,
        takeover_hypercalls,
        rings: boot.shared_rings,
        direct,
        exec,
        vmap,
        mode,
        nx,
        p2m: super::memory::P2mState {
            list: list_aligned.then_some(boot.p2m_pfns),
            mfn_list: boot.p2m.boot.as_u64(),
            window: false,
            window_l3: None,
            tree: (Pfn(0), 0),
            window_frames: 0,
            start_info: boot.start_info,
        },
    };
    super::p2m::publish_at_boot(&mut mem);
    mem
}
