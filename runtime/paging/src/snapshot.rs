//! Reading Xen's boot page tables: the part of them the takeover grafts.
//!
//! Xen's boot tables are untrusted input: every frame they reference on the way down must
//! be one of the boot page-table frames start_info names, and no entry may be a superpage.
//! The reader is abstract so the host tests read the model's memory instead.
//!
//! Linux's `xen_setup_kernel_pagetable` (`arch/x86/xen/mmu_pv.c`) walks the same tables
//! to find Xen's L2 for the kernel map; here the walk also checks that Xen's tables have
//! the shape `docs/xen-pv-facts.md` (section f) describes: one run of L2 slots from
//! `KERNEL_VIRT_BASE` on, 4 KiB pages only.
//!
//! ```
//! use std::collections::HashMap;
//! use xenpv_paging::layout::{KERNEL_VIRT_BASE, L3_KERNEL, L4_KERNEL, PAGE_SIZE};
//! use xenpv_paging::ops::{pte, Mfn};
//! use xenpv_paging::snapshot::{read, SnapshotError, TableReader};
//!
//! /// Xen's boot page-table frames, by mfn.
//! struct Boot(HashMap<u64, [u64; 512]>);
//! impl TableReader for Boot {
//!     fn table(&self, mfn: Mfn) -> Option<[u64; 512]> {
//!         self.0.get(&mfn.0).copied()
//!     }
//! }
//!
//! // L4 (mfn 10) -> L3 (11) -> L2 (12) -> L1 (13): a 2-page kernel, then start_info.
//! let t = pte::PRESENT | pte::RW;
//! let (mut l4, mut l3, mut l2, mut l1) = ([0; 512], [0; 512], [0; 512], [0; 512]);
//! l4[L4_KERNEL] = pte::entry(Mfn(11), t);
//! l3[L3_KERNEL] = pte::entry(Mfn(12), t);
//! l2[0] = pte::entry(Mfn(13), t);
//! for (i, e) in l1.iter_mut().take(3).enumerate() {
//!     *e = pte::entry(Mfn(100 + i as u64), t);
//! }
//! let mut boot = Boot(HashMap::from([(10, l4), (11, l3), (12, l2), (13, l1)]));
//! let kernel_end = KERNEL_VIRT_BASE + 2 * PAGE_SIZE;
//!
//! let snap = read(&boot, Mfn(10), kernel_end).unwrap();
//! assert_eq!(snap.boot_end, KERNEL_VIRT_BASE + 3 * PAGE_SIZE);
//! assert_eq!(snap.kernel_tail_l1.0, Mfn(13));
//! assert_eq!(snap.l2_fixmap, None);
//!
//! // An entry leading out of the boot page-table frames is refused, not followed.
//! boot.0.get_mut(&12).unwrap()[1] = pte::entry(Mfn(99), t);
//! assert_eq!(
//!     read(&boot, Mfn(10), kernel_end),
//!     Err(SnapshotError::ForeignTable { level: 2, slot: 1, mfn: Mfn(99) })
//! );
//! ```

use crate::layout::{index, KERNEL_VIRT_BASE, L2_SPAN, L3_FIXMAP, L3_KERNEL, L4_KERNEL, PAGE_SIZE};
use crate::ops::{pte, Mfn};
use x86_64::VirtAddr;

/// Gives the 512 entries of one of Xen's boot page-table frames.
pub trait TableReader {
    /// `None` if `mfn` is not one of the boot page-table frames.
    fn table(&self, mfn: Mfn) -> Option<[u64; 512]>;
}

/// What the takeover needs of Xen's boot tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSnapshot {
    /// Xen's L2 under L3\[510\] (0xffffffff80000000..0xffffffffc0000000).
    pub l2_kernel: [u64; 512],
    /// Xen's L2 under L3\[511\], when the boot region reaches past 1 GiB.
    pub l2_fixmap: Option<[u64; 512]>,
    /// One past the last byte Xen mapped from [`KERNEL_VIRT_BASE`] (padding included).
    pub boot_end: VirtAddr,
    /// The L1 holding the kernel image's last page, and its entries.
    pub kernel_tail_l1: (Mfn, [u64; 512]),
}

/// Why Xen's boot tables cannot be taken over. Found before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// A table entry points at a frame that is not one of Xen's boot page-table frames.
    ForeignTable {
        /// Level of the table holding the entry (5 for the root itself: `l4_mfn` is not
        /// a boot page-table frame).
        level: u8,
        /// The entry's slot in that table.
        slot: usize,
        /// The frame it points at.
        mfn: Mfn,
    },
    /// A superpage entry (Xen never gives PV guests any).
    Superpage {
        /// Level of the table holding the entry.
        level: u8,
        /// The entry's slot in that table.
        slot: usize,
    },
    /// L4\[511\] or L3\[510\] is empty: there is no kernel map to take over.
    NoKernelMap,
    /// The boot mapping has a hole before `va` while later slots are mapped.
    Hole {
        /// First unmapped address.
        va: VirtAddr,
    },
    /// The kernel image's last page is not mapped.
    KernelNotMapped {
        /// That page's address.
        va: VirtAddr,
    },
}

impl core::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SnapshotError::ForeignTable { level, slot, mfn } => write!(
                f,
                "Xen's boot L{level}[{slot}] points at mfn {mfn:#x}, not one of the boot page-table frames"
            ),
            SnapshotError::Superpage { level, slot } => {
                write!(f, "Xen's boot L{level}[{slot}] is a superpage")
            }
            SnapshotError::NoKernelMap => write!(f, "Xen's boot tables have no L4[511]/L3[510]"),
            SnapshotError::Hole { va } => write!(f, "Xen's boot mapping has a hole at {va:#x}"),
            SnapshotError::KernelNotMapped { va } => {
                write!(f, "the kernel image's page at {va:#x} is not mapped")
            }
        }
    }
}

fn child(
    r: &impl TableReader,
    entry: u64,
    level: u8,
    slot: usize,
) -> Result<Option<(Mfn, [u64; 512])>, SnapshotError> {
    if !pte::present(entry) {
        return Ok(None);
    }
    if level != 4 && pte::flags(entry).contains(pte::PSE) {
        return Err(SnapshotError::Superpage { level, slot });
    }
    let mfn = pte::frame(entry);
    r.table(mfn)
        .map(|t| Some((mfn, t)))
        .ok_or(SnapshotError::ForeignTable { level, slot, mfn })
}

/// Read the kernel half of Xen's boot tables rooted at `l4_mfn`. `kernel_end` is the
/// first address after the image (.bss included).
pub fn read(
    r: &impl TableReader,
    l4_mfn: Mfn,
    kernel_end: VirtAddr,
) -> Result<BootSnapshot, SnapshotError> {
    let l4 = r.table(l4_mfn).ok_or(SnapshotError::ForeignTable {
        level: 5,
        slot: 0,
        mfn: l4_mfn,
    })?;
    let (_, l3) = child(r, l4[L4_KERNEL], 4, L4_KERNEL)?.ok_or(SnapshotError::NoKernelMap)?;
    let (_, l2_kernel) =
        child(r, l3[L3_KERNEL], 3, L3_KERNEL)?.ok_or(SnapshotError::NoKernelMap)?;
    let l2_fixmap = child(r, l3[L3_FIXMAP], 3, L3_FIXMAP)?.map(|(_, t)| t);

    // Slots are one run from slot 0 of L3[510] on, continuing into L3[511].
    let slots = l2_kernel.iter().chain(l2_fixmap.iter().flatten());
    let mut last = None;
    for (i, e) in slots.enumerate() {
        if pte::present(*e) {
            if let Some(l) = last {
                if l + 1 != i {
                    return Err(SnapshotError::Hole {
                        va: KERNEL_VIRT_BASE + (l as u64 + 1) * L2_SPAN,
                    });
                }
            }
            last = Some(i);
        }
    }
    let last = last.ok_or(SnapshotError::NoKernelMap)?;
    let (l2, slot) = if last < 512 {
        (&l2_kernel, last)
    } else {
        (l2_fixmap.as_ref().unwrap_or(&l2_kernel), last - 512)
    };
    let (_, l1) = child(r, l2[slot], 2, slot)?.ok_or(SnapshotError::NoKernelMap)?;
    let last_pte = l1
        .iter()
        .rposition(|e| pte::present(*e))
        .ok_or(SnapshotError::Hole {
            va: KERNEL_VIRT_BASE + last as u64 * L2_SPAN,
        })?;
    let boot_end = KERNEL_VIRT_BASE + last as u64 * L2_SPAN + (last_pte as u64 + 1) * PAGE_SIZE;

    let tail = kernel_end - PAGE_SIZE;
    let tail_slot = index(tail, 2);
    let kernel_tail_l1 = child(r, l2_kernel[tail_slot], 2, tail_slot)?
        .ok_or(SnapshotError::KernelNotMapped { va: tail })?;
    if !pte::present(kernel_tail_l1.1[index(tail, 1)]) {
        return Err(SnapshotError::KernelNotMapped { va: tail });
    }
    Ok(BootSnapshot {
        l2_kernel,
        l2_fixmap,
        boot_end,
        kernel_tail_l1,
    })
}
