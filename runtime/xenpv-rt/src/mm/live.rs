//! The live readers of mm: the direct map, the p2m list, Xen's M2P and boot tables, the
//! linker script's symbols. All of the module's `unsafe` that reads or writes memory by
//! address is here (besides the two ownership proofs in [`super::memory`]: a `Page`'s
//! bytes and a `VmArea`'s slice), each with the invariant that makes it sound.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use xenpv_paging::direct::{DirectEnv, TableStore};
use xenpv_paging::frames::{chunk_is_mapped, CHUNK_PAGES};
use xenpv_paging::layout::{
    direct_map_va, Fixmap, VirtAddr, DIRECT_MAP_BASE, KERNEL_VIRT_BASE, PAGE_SIZE,
};
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::snapshot::TableReader;
use xenpv_paging::takeover::P2m;
use xenpv_paging::vmap::VmapEnv;

extern "C" {
    static __xenpv_kernel_end: u8;
    static __xenpv_text_end: u8;
    static __xenpv_data_start: u8;
    static xenpv_boot_stack_guard: u8;
    static xenpv_console_window: u8;
}

/// Where the image's sections end and start-of-day pages lie (linker-script and
/// start-of-day symbols: only their addresses are used).
pub(super) struct ImageSymbols {
    /// The first address past the image (`__xenpv_kernel_end`).
    pub(super) kernel_end: VirtAddr,
    /// The end of the text (`__xenpv_text_end`).
    pub(super) text_end: VirtAddr,
    /// The start of .data (`__xenpv_data_start`).
    pub(super) data_start: VirtAddr,
    /// The unmapped page below the boot stack.
    pub(super) boot_stack_guard: VirtAddr,
    /// The page a domU's console ring is mapped at before the takeover.
    pub(super) console_window: VirtAddr,
}

/// The image's symbols.
pub(super) fn image() -> ImageSymbols {
    ImageSymbols {
        kernel_end: VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_kernel_end)),
        text_end: VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_text_end)),
        data_start: VirtAddr::from_ptr(core::ptr::addr_of!(__xenpv_data_start)),
        boot_stack_guard: VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_boot_stack_guard)),
        console_window: VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_console_window)),
    }
}

/// Xen's read-only machine-to-phys table in every 64-bit PV guest (`MACH2PHYS_VIRT_START`).
pub(super) const M2P: u64 = 0xffff_8000_0000_0000;

/// Frames through the direct map, the p2m list and Xen's M2P: what vmap reads with.
#[derive(Clone, Copy)]
pub(super) struct Direct {
    pub(super) nr_pages: u64,
    pub(super) p2m_va: VirtAddr,
    /// The highest machine frame (`XENMEM_maximum_ram_page`): the M2P covers up to it.
    pub(super) max_mfn: Mfn,
    /// The allocator's chunk bitmap (set = mapped), read without its lock: bits are only
    /// ever set, so a chunk seen mapped stays mapped.
    pub(super) mapped: &'static [AtomicU64],
}

impl Direct {
    /// Is `pfn` mapped in the direct map (below nr_pages, its chunk mapped)?
    pub(super) fn is_mapped(&self, pfn: Pfn) -> bool {
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
pub(super) struct StartStores;

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

/// Plain stores into a frame of Xen's boot region through the boot mapping, before the
/// switch: the takeover writes its tables so when they fit in the region's free tail.
pub(super) struct BootStores;

impl TableStore for BootStores {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        // SAFETY: the takeover stores only into frames of its table run in the boot
        // region's free tail, before the switch: Xen maps the whole boot region
        // read-write at `KERNEL_VIRT_BASE` + pfn pages, nothing else uses those frames
        // (past every bootstrap element), and they are made read-only only after the
        // last store. 4096 bytes, page-aligned.
        unsafe {
            core::ptr::copy_nonoverlapping(
                entries.as_ptr(),
                (KERNEL_VIRT_BASE + pfn.0 * PAGE_SIZE).as_mut_ptr::<u64>(),
                entries.len(),
            )
        }
    }
}

/// The p2m list: boot mapping before the switch, direct map after.
pub(super) struct LiveP2m {
    /// Where Xen mapped it (start_info's `mfn_list`).
    pub(super) boot: VirtAddr,
    /// Its entries (start_info's `nr_pages`).
    pub(super) nr_pages: u64,
}

impl LiveP2m {
    /// Where it lies in the direct map.
    pub(super) fn direct(&self) -> VirtAddr {
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
pub(super) struct BootTables<'a> {
    pub(super) p2m: &'a LiveP2m,
    pub(super) pt: (Pfn, Pfn),
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

/// The frame allocator's bitmaps, which the takeover reserved at `first` (contiguous in
/// pfn and so in the direct map, in start chunks, mapped read-write): `words` words of
/// frame bits (the allocator's alone) then `cwords` words of chunk bits (atomics,
/// shared). Handed out once: a second call panics rather than alias them.
pub(super) fn allocator_bitmaps(
    first: Pfn,
    words: usize,
    cwords: usize,
) -> (&'static mut [u64], &'static [AtomicU64]) {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    assert!(
        !TAKEN.swap(true, Ordering::AcqRel),
        "allocator bitmaps taken twice"
    );
    let bits_va = direct_map_va(first);
    // SAFETY: the bitmap frames are ours (reserved by the takeover), contiguous in pfn
    // and so in the direct map (their chunks are start chunks), mapped read-write,
    // referenced nowhere else (handed out once, checked above), and hold
    // `words + cwords` words (the takeover sized them so).
    unsafe {
        (
            core::slice::from_raw_parts_mut(bits_va.as_mut_ptr::<u64>(), words),
            core::slice::from_raw_parts((bits_va + words as u64 * 8).as_ptr::<AtomicU64>(), cwords),
        )
    }
}

impl Direct {
    /// A copy of frame `pfn` read through the direct map; `None` if its chunk is not
    /// mapped (yet).
    pub(super) fn read_frame(&self, pfn: Pfn) -> Option<[u64; 512]> {
        if !self.is_mapped(pfn) {
            return None;
        }
        // SAFETY: the frame's chunk is mapped (checked above; a mapped chunk stays
        // mapped), so its page is readable through the direct map; a volatile read of the
        // frame's words.
        Some(unsafe { direct_map_va(pfn).as_ptr::<[u64; 512]>().read_volatile() })
    }
}

/// shared_info, mapped at fixmap slot 0 by the takeover.
pub(super) fn shared_info() -> *mut xen_sys::shared_info {
    Fixmap::SharedInfo.va().as_mut_ptr::<xen_sys::shared_info>()
}

/// The p2m fields of `shared_info.arch`, as published (`nmi_reason` untouched).
pub(super) fn write_p2m_arch(p: &xenpv_paging::p2m::P2mPublish) {
    use core::sync::atomic::{compiler_fence, Ordering::SeqCst};
    let si = shared_info();
    // SAFETY: shared_info is mapped read-write at fixmap slot 0 (the takeover maps it; the
    // callers run while it is mapped); volatile stores of whole words into `arch`, which
    // only the guest and the toolstack (reading) touch. The order is the contract with
    // the toolstack: generation, the tree, the list's place and size, p2m_cr3 last (it
    // selects the list), a compiler fence between them.
    unsafe {
        let arch = core::ptr::addr_of_mut!((*si).arch);
        core::ptr::addr_of_mut!((*arch).p2m_generation).write_volatile(p.generation);
        compiler_fence(SeqCst);
        core::ptr::addr_of_mut!((*arch).pfn_to_mfn_frame_list_list).write_volatile(p.fll.0);
        compiler_fence(SeqCst);
        core::ptr::addr_of_mut!((*arch).p2m_vaddr).write_volatile(p.p2m_vaddr);
        core::ptr::addr_of_mut!((*arch).max_pfn).write_volatile(p.max_pfn);
        compiler_fence(SeqCst);
        core::ptr::addr_of_mut!((*arch).p2m_cr3).write_volatile(p.p2m_cr3);
    }
}

/// The p2m fields of `shared_info.arch` as they are now (what a toolstack would read).
pub(super) fn read_p2m_arch() -> xenpv_paging::p2m::P2mPublish {
    let si = shared_info();
    // SAFETY: shared_info is mapped at fixmap slot 0 (see `write_p2m_arch`); volatile
    // reads of plain words.
    unsafe {
        let arch = core::ptr::addr_of!((*si).arch);
        xenpv_paging::p2m::P2mPublish {
            max_pfn: core::ptr::addr_of!((*arch).max_pfn).read_volatile(),
            p2m_vaddr: core::ptr::addr_of!((*arch).p2m_vaddr).read_volatile(),
            p2m_cr3: core::ptr::addr_of!((*arch).p2m_cr3).read_volatile(),
            fll: Mfn(core::ptr::addr_of!((*arch).pfn_to_mfn_frame_list_list).read_volatile()),
            generation: core::ptr::addr_of!((*arch).p2m_generation).read_volatile(),
        }
    }
}

/// The p2m tree's frames written with plain stores through the direct map.
pub(super) struct TreeStores<'a> {
    pub(super) direct: &'a Direct,
    /// The tree's frames `[start, start + n)`: the only ones stored into.
    pub(super) frames: (Pfn, u64),
}

impl TableStore for TreeStores<'_> {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        let (start, n) = self.frames;
        assert!(
            pfn >= start && pfn.0 < start.0 + n && self.direct.is_mapped(pfn),
            "p2m tree store into pfn {pfn:#x}, not a tree frame"
        );
        // SAFETY: the frame is one of the tree's (checked above): data frames the runtime
        // took from the allocator for the tree alone (mapped read-write in the direct map,
        // their chunk mapped), referenced by no Rust reference; 4096 bytes, page-aligned.
        unsafe {
            core::ptr::copy_nonoverlapping(
                entries.as_ptr(),
                direct_map_va(pfn).as_mut_ptr::<u64>(),
                entries.len(),
            )
        }
    }
}

impl DirectEnv for TreeStores<'_> {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        VmapEnv::mfn(self.direct, pfn)
    }
}

impl xenpv_paging::p2m::Machine for Direct {
    fn word(&self, mfn: Mfn, index: usize) -> Option<u64> {
        let pfn = self.pfn(mfn)?;
        if index >= 512 || !self.is_mapped(pfn) {
            return None;
        }
        // SAFETY: the frame's chunk is mapped (checked above), so it is readable through
        // the direct map; one volatile word read inside the page.
        Some(unsafe {
            (direct_map_va(pfn) + index as u64 * 8)
                .as_ptr::<u64>()
                .read_volatile()
        })
    }
    fn words(&self, mfn: Mfn, out: &mut [u64]) -> Option<()> {
        let pfn = self.pfn(mfn)?;
        if out.len() > 512 || !self.is_mapped(pfn) {
            return None;
        }
        // SAFETY: as in `word`: the frame's chunk is mapped, so its page is readable
        // through the direct map; `out.len()` words, within the page (checked above).
        unsafe {
            core::ptr::copy_nonoverlapping(
                direct_map_va(pfn).as_ptr::<u64>(),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Some(())
    }
    fn m2p(&self, mfn: Mfn) -> Option<Pfn> {
        if mfn > self.max_mfn || mfn > Mfn::MAX {
            return None;
        }
        // SAFETY: as in `VmapEnv::pfn`: the M2P covers every frame up to max_mfn.
        Some(Pfn(unsafe {
            ((M2P + mfn.0 * 8) as *const u64).read_volatile()
        }))
    }
    fn p2m(&self, pfn: Pfn) -> Option<Mfn> {
        VmapEnv::mfn(self, pfn)
    }
    fn max_mfn(&self) -> Mfn {
        self.max_mfn
    }
}

/// The start_info page's bytes through the direct map (the takeover keeps the page, and
/// its chunk is a start chunk: it lies in Xen's boot region).
///
/// # Safety
/// `pfn` is the start_info page the takeover reserved, and the caller holds the only
/// borrow of it (through `&mut Memory` or `&Memory` for the lifetime of the result; only
/// `StartInfoPage` calls this).
pub(super) unsafe fn start_info_bytes<'a>(pfn: Pfn) -> &'a mut [u8; 4096] {
    // SAFETY: see the function's contract: a mapped (start chunk), reserved page that no
    // other reference reaches; 4096 bytes, page-aligned.
    unsafe { &mut *direct_map_va(pfn).as_mut_ptr::<[u8; 4096]>() }
}

/// Where the p2m list is (direct-map VA), its entries and the highest machine frame,
/// for readers without a [`Memory`](super::Memory) at hand (`Page::mfn`). Set once by the
/// takeover; `max_mfn` again after a new domain.
static P2M_VA: AtomicU64 = AtomicU64::new(0);
static P2M_NR: AtomicU64 = AtomicU64::new(0);
static MAX_MFN: AtomicU64 = AtomicU64::new(0);

/// Record the live p2m's place (the takeover) and the highest machine frame (the
/// takeover, and [`super::resume_new`]).
pub(super) fn set_live_p2m(d: &Direct) {
    P2M_VA.store(d.p2m_va.as_u64(), Ordering::Release);
    MAX_MFN.store(d.max_mfn.0, Ordering::Release);
    P2M_NR.store(d.nr_pages, Ordering::Release);
}

/// The p2m entry of `pfn` now (`None` past the list, or before the takeover).
pub(crate) fn p2m_entry(pfn: Pfn) -> Option<Mfn> {
    let (va, nr) = (
        P2M_VA.load(Ordering::Acquire),
        P2M_NR.load(Ordering::Acquire),
    );
    if va == 0 || pfn.0 >= nr {
        return None;
    }
    // SAFETY: pfn < nr_pages and the list is direct-mapped at `va` from the takeover on
    // (its chunks are start chunks), for the guest's life.
    Some(Mfn(unsafe {
        ((va + pfn.0 * 8) as *const u64).read_volatile()
    }))
}

/// Xen's M2P entry of `mfn` (`None` above the highest machine frame).
pub(crate) fn m2p_entry(mfn: Mfn) -> Option<Pfn> {
    if mfn.0 > MAX_MFN.load(Ordering::Acquire) || mfn > Mfn::MAX {
        return None;
    }
    // SAFETY: Xen maps the M2P read-only for every PV guest, up to the highest machine
    // frame, which `mfn` does not exceed (checked above).
    Some(Pfn(unsafe {
        ((M2P + mfn.0 * 8) as *const u64).read_volatile()
    }))
}
