//! [`Memory`]: what the application gets of paging (frames, vmap/vmalloc, the tables
//! read back), and the frame allocator it shares with the heap.

use super::live::{self, Direct};
use super::Xen;
use xenpv_paging::direct::{DirectMap, GrowError, PtWrite};
use xenpv_paging::exec::{ExecError, Executor};
use xenpv_paging::frames::{FrameAllocator, CHUNK_PAGES};
use xenpv_paging::layout::{direct_map_va, Split, VirtAddr, PAGE_SIZE};
use xenpv_paging::ops::{pte, Maddr, Mfn, Pfn};
use xenpv_paging::takeover::Outcome;
use xenpv_paging::vmap::{self, Vmap, VmapEnv, VmapError};

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
    pub(super) outcome: Outcome,
    pub(super) split: Split,
    pub(super) kernel_end: VirtAddr,
    pub(super) takeover_hypercalls: u64,
    pub(super) rings: [Option<Pfn>; 2],
    pub(super) direct: Direct,
    pub(super) exec: Executor<Xen>,
    pub(super) vmap: Vmap,
    pub(super) mode: DirectMapMode,
    /// NX is set on data mappings.
    pub(super) nx: bool,
    /// The p2m list and what publishes it (see [`super::p2m`]).
    pub(super) p2m: P2mState,
}

/// Where the p2m and its published forms live (fixed for the guest's life).
#[derive(Clone, Copy, Debug)]
pub(crate) struct P2mState {
    /// The list's pages `[start, end)`; `None` if Xen did not page-align it (then nothing
    /// can be published: the toolstack maps whole pages from entry 0).
    pub(crate) list: Option<(Pfn, Pfn)>,
    /// Where Xen put the list (start_info `mfn_list`), for the refusal.
    pub(crate) mfn_list: u64,
    /// The window is mapped (done once).
    pub(crate) window: bool,
    /// The window's L3 (in L4 slot 273), once mapped.
    pub(crate) window_l3: Option<Pfn>,
    /// The tree's frames `[start, start + n)` (n = 0: not taken yet).
    pub(crate) tree: (Pfn, u64),
    /// Frames the window's tables took.
    pub(crate) window_frames: u64,
    /// The start_info page (kept by the takeover).
    pub(crate) start_info: Pfn,
}

/// The frame allocator and the direct map that grows under it, shared by [`Memory`] and
/// the heap (which takes runs of frames through the direct map). Locked only for the
/// length of one operation.
pub(super) struct Frames {
    pub(super) alloc: FrameAllocator<'static>,
    pub(super) direct: DirectMap,
    pub(super) env: Direct,
    /// The growth's own executor (the heap grows without a [`Memory`] at hand).
    pub(super) exec: Executor<Xen>,
}

impl Frames {
    /// Map chunks until `enough` holds (or all are mapped): whether it holds. A failure
    /// is reported once and leaves the frames of the chunk unused.
    pub(super) fn grow_until(&mut self, enough: impl Fn(&FrameAllocator<'_>) -> bool) -> bool {
        let r = self
            .direct
            .grow_until(&mut self.alloc, &mut self.env, &mut self.exec, enough);
        r.unwrap_or_else(|e| {
            grow_failed(&e);
            false
        })
    }

    /// A run of `n` consecutive free frames, mapping chunks until there is one.
    pub(super) fn alloc_run(&mut self, n: u64) -> Option<Pfn> {
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

pub(super) static FRAMES: spin::Mutex<Option<Frames>> = spin::Mutex::new(None);

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

/// `n` frames from `first` back to the allocator (the heap giving back a piece's pages);
/// how many it took (a frame it does not hold as allocated is refused, and not counted).
#[cfg(feature = "alloc")]
pub(crate) fn give_frame_run(first: Pfn, n: u64) -> u64 {
    let mut guard = FRAMES.lock();
    let Some(f) = guard.as_mut() else {
        return 0;
    };
    (first.0..first.0 + n)
        .filter(|&p| f.alloc.free(Pfn(p)).is_ok())
        .count() as u64
}

/// Fresh frames at consecutive pfns, from [`Memory::alloc_run`], in order: each one taken
/// is the caller's [`Page`]; those never taken go back to the allocator when the run is
/// dropped.
#[derive(Debug)]
pub struct PageRun {
    next: u64,
    end: u64,
}

impl Iterator for PageRun {
    type Item = Page;
    fn next(&mut self) -> Option<Page> {
        (self.next < self.end).then(|| {
            self.next += 1;
            Page {
                pfn: Pfn(self.next - 1),
            }
        })
    }
}

impl Drop for PageRun {
    fn drop(&mut self) {
        if self.next < self.end {
            let mut f = frames_mut();
            for p in self.next..self.end {
                // Cannot fail: the run's frames not handed out are still allocated.
                let _ = f.alloc.free(Pfn(p));
            }
        }
    }
}

/// A frame the application owns (not Clone: freeing consumes it).
#[derive(Debug)]
pub struct Page {
    // Private: a Page is proof of ownership of its frame (`page_mut` hands out `&mut` to
    // it), so safe code must not be able to make one up.
    // No machine frame number is kept: after a save and restore every one changes,
    // while the pfn stays.
    pfn: Pfn,
}

impl Page {
    /// Its pseudo-physical frame number (its place in the direct map).
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }
    /// Its machine frame number now (what Xen and peers name it by), read from the live
    /// p2m: valid until the domain is saved or migrated, so look it up per operation and
    /// never keep it. Debug builds check it against Xen's M2P.
    pub fn mfn(&self) -> Mfn {
        let mfn = live::p2m_entry(self.pfn).unwrap_or(Mfn(!0));
        debug_assert_eq!(
            live::m2p_entry(mfn),
            Some(self.pfn),
            "m2p[p2m[{:#x}]] is not the page's pfn",
            self.pfn
        );
        mfn
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
            Some(mfn) if mfn <= Mfn::MAX => Some(Page { pfn }),
            _ => None, // a hole in the p2m: keep the frame out of use
        }
    }

    /// `n` fresh frames at consecutive pfns, so at consecutive addresses in the direct
    /// map (a vif's TX buffers: a long frame is then written straight across them).
    /// `None`, nothing taken, if no run is that long now or the p2m has a hole in it.
    pub fn alloc_run(&mut self, n: u64) -> Option<PageRun> {
        let first = frames_mut().alloc_run(n)?;
        let run = PageRun {
            next: first.0,
            end: first.0 + n,
        };
        let whole =
            (run.next..run.end).all(|p| matches!(self.mfn(Pfn(p)), Some(m) if m <= Mfn::MAX));
        // Dropped, the run gives its frames back.
        whole.then_some(run)
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
        self.direct.read_frame(pfn)
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

    /// The frame allocator, locked for reading (frames come and go through this type's
    /// methods). Drop the guard before allocating from the heap: while it is held the
    /// heap cannot grow.
    pub fn frames(&self) -> FramesGuard {
        FramesGuard(FRAMES.lock())
    }

    /// The kernel/module split of the kernel map (`split=` on the command line).
    pub fn split(&self) -> Split {
        self.split
    }

    /// The first virtual address past the image (`__xenpv_kernel_end`).
    pub fn kernel_end(&self) -> VirtAddr {
        self.kernel_end
    }

    /// A domU's xenstore and console ring frames (`[store, console]`), as found in the
    /// p2m at start of day; `None` for dom0.
    pub fn ring_pfns(&self) -> [Option<Pfn>; 2] {
        self.rings
    }

    /// shared_info, mapped at fixmap slot 0.
    pub fn shared_info(&self) -> *mut xen_sys::shared_info {
        live::shared_info()
    }
}
