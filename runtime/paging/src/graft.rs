//! Grafting Xen's boot mappings into the runtime's kernel map: which L2 slots go where,
//! and which are retired after the switch. Pure.
//!
//! Xen's L2 under L3\[510\] becomes level2_kernel, entry for entry (the L1s it points at are
//! shared, as in Linux). Where the boot region spills under L3\[511\] (an initrd above about
//! 1 GiB), exactly the slots Xen populated there go into level2_fixmap. After the switch
//! everything above the kernel image is retired, so module space starts empty.
//!
//! The 2014 Linux bug, reproducible with the `regress-2014-fixmap-copy` feature: Linux
//! took "Xen's L2 for `__START_KERNEL_map + PMD_SIZE`" for level2_fixmap. 2 MiB past the
//! kernel base is still under L3\[510\], so that is the kernel's L2 again, copied whole into
//! level2_fixmap: module space under L3\[511\] then aliased the kernel image, initrd and
//! boot data, and vmalloc found PTEs that should have been empty.
//!
//! ```
//! use xenpv_paging::graft::{graft, LayoutError};
//! use xenpv_paging::layout::{Split, KERNEL_VIRT_BASE, L2_SPAN};
//! use xenpv_paging::ops::{pte, Mfn};
//! use xenpv_paging::snapshot::BootSnapshot;
//!
//! // Xen mapped 8 MiB (4 L2 slots) from the kernel base; the image is the first 1 MiB.
//! let mut l2_kernel = [0; 512];
//! for (slot, e) in l2_kernel.iter_mut().take(4).enumerate() {
//!     *e = pte::entry(Mfn(0x100 + slot as u64), pte::PRESENT | pte::RW);
//! }
//! let snap = BootSnapshot {
//!     l2_kernel,
//!     l2_fixmap: None,
//!     boot_end: KERNEL_VIRT_BASE + 4 * L2_SPAN,
//!     kernel_tail_l1: (Mfn(0x100), [0; 512]),
//! };
//! let g = graft(&snap, KERNEL_VIRT_BASE + (1 << 20), Split::Half).unwrap();
//! assert_eq!(g.level2_kernel, snap.l2_kernel, "Xen's L2 is taken whole...");
//! assert_eq!(g.kernel_last_slot, 0);
//! let retired: Vec<usize> = g.retire_kernel.iter().collect();
//! assert_eq!(retired, [1, 2, 3], "...and retired past the image");
//! assert!(g.retire_fixmap.is_empty());
//!
//! // A 600 MiB image does not fit the 512 MiB split.
//! assert!(matches!(
//!     graft(&snap, KERNEL_VIRT_BASE + (600 << 20), Split::Half),
//!     Err(LayoutError::KernelTooBig { .. })
//! ));
//! ```

use crate::layout::{
    index, kernel_l2_slot_va, Split, FIXMAP_L2_SLOT, KERNEL_VIRT_BASE, L2_SPAN, L3_FIXMAP,
    L3_KERNEL, L3_SPAN, MODULES_END, MODULES_END_L2_SLOT,
};
use crate::ops::pte;
use crate::snapshot::BootSnapshot;
use x86_64::VirtAddr;

/// What goes into the runtime's two kernel-map L2 pages, and what is retired later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graft {
    /// Entries of level2_kernel (absent = 0).
    pub level2_kernel: [u64; 512],
    /// Entries of level2_fixmap grafted from Xen (the fixmap slot itself is not here).
    pub level2_fixmap: [u64; 512],
    /// level2_kernel slots past the kernel image, cleared after the switch.
    pub retire_kernel: SlotSet,
    /// level2_fixmap slots grafted from Xen's boot region, cleared after the switch.
    pub retire_fixmap: SlotSet,
    /// The last level2_kernel slot of the kernel image.
    pub kernel_last_slot: usize,
}

/// A set of slots 0..512.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotSet([u64; 8]);

impl SlotSet {
    /// Add `slot` (below 512).
    pub(crate) fn insert(&mut self, slot: usize) {
        self.0[slot / 64] |= 1 << (slot % 64);
    }
    /// Is `slot` (below 512) in the set?
    pub fn contains(&self, slot: usize) -> bool {
        self.0[slot / 64] & (1 << (slot % 64)) != 0
    }
    /// The slots in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..512).filter(|&s| self.contains(s))
    }
    /// How many slots are in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Is the set empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A layout the runtime refuses, before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The kernel image does not fit below module space.
    KernelTooBig {
        /// Size of the image, .bss included.
        kernel_bytes: u64,
        /// The split asked for.
        split: Split,
    },
    /// Xen's boot region reaches the end of module space (and the fixmap slots after it).
    BootRegionReachesFixmap {
        /// One past the last byte Xen mapped.
        boot_end: VirtAddr,
        /// The most it may reach: [`MODULES_END`].
        limit: VirtAddr,
    },
    /// Module space is smaller than the application asked for.
    ModuleSpaceTooSmall {
        /// Module space of `split`.
        have_bytes: u64,
        /// What the application asked for.
        want_bytes: u64,
        /// The split asked for.
        split: Split,
    },
    /// Not enough free frames for the new page tables, neither in the free tail of the
    /// boot region nor above it.
    OutOfFrames {
        /// Frames the new tables and the frame bitmap need, in one run.
        need: u64,
        /// The longer of the two runs there are.
        have: u64,
    },
    /// The chunks start of day must map are scattered over more ranges than the planner
    /// keeps (the image, the p2m, the initrd, the tables, the rings: a handful).
    StartChunks {
        /// Ranges the planner keeps.
        max: usize,
    },
    /// A page of the image is not mapped through a boot L1 (no entry, or a superpage), so
    /// its permissions cannot be set page by page.
    ImageNotMapped {
        /// The page.
        va: VirtAddr,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const MIB: u64 = 1 << 20;
        match *self {
            LayoutError::KernelTooBig { kernel_bytes, split } => write!(
                f,
                "kernel image of {} KiB does not fit the {} kernel space ({} MiB)",
                kernel_bytes / 1024,
                split.name(),
                split.kernel_bytes() / MIB
            ),
            LayoutError::BootRegionReachesFixmap { boot_end, limit } => write!(
                f,
                "Xen's boot mapping ends at {boot_end:#x}, {} MiB from the kernel base, past the \
                 end of module space at {limit:#x} ({} MiB; the fixmap follows): the initrd is \
                 too big to be mapped, build with the mod-start-pfn feature",
                (boot_end - KERNEL_VIRT_BASE) / MIB,
                (limit - KERNEL_VIRT_BASE) / MIB
            ),
            LayoutError::ModuleSpaceTooSmall { have_bytes, want_bytes, split } => write!(
                f,
                "module space of the {} split is {} MiB ({:#x}..{:#x}), smaller than the {} MiB asked for",
                split.name(),
                have_bytes / MIB,
                split.modules_start(),
                MODULES_END,
                want_bytes / MIB
            ),
            LayoutError::OutOfFrames { need, have } => write!(
                f,
                "the new page tables need {need} free frames in or above the boot region's free tail, there are {have}"
            ),
            LayoutError::StartChunks { max } => write!(
                f,
                "the direct map's start chunks fall into more than {max} separate ranges"
            ),
            LayoutError::ImageNotMapped { va } => write!(
                f,
                "kernel image page {va:#x} is not mapped through a 4 KiB boot L1 entry"
            ),
        }
    }
}

/// Decide the graft. `kernel_end` is the first address after the image.
pub fn graft(
    snap: &BootSnapshot,
    kernel_end: VirtAddr,
    split: Split,
) -> Result<Graft, LayoutError> {
    let kernel_bytes = kernel_end - KERNEL_VIRT_BASE;
    if kernel_bytes > split.kernel_bytes() {
        return Err(LayoutError::KernelTooBig {
            kernel_bytes,
            split,
        });
    }
    // The boot region may cover module space (it is retired), never the fixmap's slots.
    let limit = kernel_l2_slot_va(L3_FIXMAP, MODULES_END_L2_SLOT);
    if snap.boot_end > limit
        || (snap.boot_end - KERNEL_VIRT_BASE) > L3_SPAN + MODULES_END_L2_SLOT as u64 * L2_SPAN
    {
        return Err(LayoutError::BootRegionReachesFixmap {
            boot_end: snap.boot_end,
            limit,
        });
    }
    let kernel_last_slot = index(kernel_end - 1, 2);
    let mut g = Graft {
        level2_kernel: snap.l2_kernel,
        level2_fixmap: [0; 512],
        retire_kernel: SlotSet::default(),
        retire_fixmap: SlotSet::default(),
        kernel_last_slot,
    };
    for slot in kernel_last_slot + 1..512 {
        if pte::present(snap.l2_kernel[slot]) {
            g.retire_kernel.insert(slot);
        }
    }
    if let Some(l2) = &snap.l2_fixmap {
        for (slot, &e) in l2.iter().enumerate() {
            if pte::present(e) && kernel_l2_slot_va(L3_FIXMAP, slot) < snap.boot_end {
                g.level2_fixmap[slot] = e;
                g.retire_fixmap.insert(slot);
            }
        }
    }
    if cfg!(feature = "regress-2014-fixmap-copy") {
        // Linux before 2014: l2 = Xen's L2 for __START_KERNEL_map + PMD_SIZE (L3 slot
        // index(base + 2M, 3) == 510: the kernel's own L2), copy_page(level2_fixmap, l2).
        let wrong_l3_slot = index(KERNEL_VIRT_BASE + L2_SPAN, 3);
        debug_assert_eq!(wrong_l3_slot, L3_KERNEL);
        g.level2_fixmap = snap.l2_kernel;
    }
    debug_assert!(!g.retire_fixmap.contains(FIXMAP_L2_SLOT));
    Ok(g)
}
