//! The address space the runtime owns, in one place.
//!
//! ```text
//!  L4 (root)
//!  [0..255]     empty (no user space)
//!  [256..271]   Xen's (filled in by Xen when the L4 is pinned)
//!  [272] ──────> level3_ident ──> level2_ident[..] ──> L1s      direct map of every pfn:
//!                0xffff_8800_0000_0000 + pfn*4K                  4 KiB pages (no superpages
//!                                                                for PV), NX, page tables RO;
//!                                                                one L1 per 2 MiB chunk,
//!                                                                mapped on demand
//!                                                                (xenpv_paging::direct)
//!  [273] ──────> p2m window L3 ──> L2 per GiB ──> L1s              the p2m list's own frames,
//!                0xffff_8880_0000_0000 + i*4K = list page i      read-only, for the toolstack
//!                                                                (shared_info.arch.p2m_vaddr;
//!                                                                xenpv_paging::p2m)
//!  [511] ──────> level3_kernel
//!                 [510] ─> level2_kernel   0xffff_ffff_8000_0000  kernel image (Xen's L1s)
//!                 │         slot 0..k      kernel image, .bss included
//!                 │         slot ≥ split   module space (512 MiB split)
//!                 [511] ─> level2_fixmap   0xffff_ffff_c000_0000
//!                           slot 0..503    module space (both splits), empty at start
//!                           slot 504..505  gap (Linux's MODULES_END is slot 504)
//!                           slot 506 ───> level1_fixmap (RO page table): 0xffff_ffff_ff40_0000
//!                                         fixmap slot 0: shared_info
//!                                         slots 16..48: grant-table frames
//!                                         slot 64: a granted page mapped back (gnttab)
//!                           slot 507..511  reserved (Linux's vsyscall page and above)
//! ```
//!
//! Xen's boot region (kernel, initrd, p2m list, start_info, boot page tables, boot stack)
//! starts at [`KERNEL_VIRT_BASE`] too; with a big initrd it runs past the split and even
//! into L3\[511\]. The runtime grafts exactly the L2 slots Xen really populated, switches,
//! then retires everything above the kernel image (see `xenpv_paging::takeover`), so module
//! space starts empty whatever the initrd size. The 2014 Linux bug was a blanket copy of
//! Xen's L2 for `__START_KERNEL_map + 2 MiB` (i.e. the *kernel's* L2 again) into
//! level2_fixmap.
//!
//! The names follow Linux's `arch/x86/xen/mmu_pv.c` and `head_64.S` (`level3_ident_pgt`,
//! `level2_kernel_pgt`, `level2_fixmap_pgt`, ...), so the two can be read side by side.
//!
//! ```
//! use xenpv_abi::layout::*;
//!
//! // The kernel map: L4[511] -> level3_kernel[510] -> level2_kernel[0] is the image base.
//! assert_eq!(
//!     [4, 3, 2, 1].map(|l| index(KERNEL_VIRT_BASE, l)),
//!     [L4_KERNEL, L3_KERNEL, 0, 0]
//! );
//! // The p2m window: its own L4 slot, 1 GiB-aligned.
//! assert_eq!(index(P2M_LIST_BASE, 4), L4_P2M_LIST);
//! assert_eq!(P2M_LIST_BASE.as_u64() % L3_SPAN, 0);
//! // The fixmap's L1 hangs off level2_fixmap, under level3_kernel[511].
//! assert_eq!(kernel_l2_slot_va(L3_FIXMAP, FIXMAP_L2_SLOT), FIXMAP_BASE);
//! assert_eq!(Fixmap::SharedInfo.va(), FIXMAP_BASE);
//! // Module space ends where Linux's does, below the fixmap.
//! assert!(Split::Half.modules_start() < MODULES_END && MODULES_END < FIXMAP_BASE);
//! ```

pub use crate::frame::PAGE_SIZE;
pub use x86_64::VirtAddr;
/// Bytes covered by one L2 slot.
pub const L2_SPAN: u64 = 1 << 21;
/// Bytes covered by one L3 slot.
pub const L3_SPAN: u64 = 1 << 30;
/// Bytes covered by one L4 slot.
pub const L4_SPAN: u64 = 1 << 39;
/// Entries in any page-table page.
pub const ENTRIES: usize = 512;

/// `__START_KERNEL_map`: where the image is linked and where Xen's boot region starts.
pub const KERNEL_VIRT_BASE: VirtAddr = VirtAddr::new(0xffff_ffff_8000_0000);
/// Start of the direct map (Linux's `PAGE_OFFSET` without KASLR), L4 slot 272.
pub const DIRECT_MAP_BASE: VirtAddr = VirtAddr::new(0xffff_8800_0000_0000);
/// The direct map's L4 slot: the first one after Xen's (a PV guest may not write
/// [`L4_XEN_FIRST`]`..=`[`L4_XEN_LAST`]).
pub const L4_DIRECT_MAP: usize = 272;
/// The L4 slot of the p2m list's window ([`P2M_LIST_BASE`]).
pub const L4_P2M_LIST: usize = 273;
/// Where the p2m list is mapped (read-only) for the toolstack, which walks it from
/// `shared_info.arch.p2m_cr3` and `p2m_vaddr`. 1 GiB-aligned on purpose: Xen 4.17's
/// save side (`map_p2m_list`) trims a list whose window does not start at L2 index 0.
pub const P2M_LIST_BASE: VirtAddr = VirtAddr::new(0xffff_8880_0000_0000);
/// The kernel map's L4 slot.
pub const L4_KERNEL: usize = 511;
/// level3_kernel's slot for level2_kernel (the image, from [`KERNEL_VIRT_BASE`]).
pub const L3_KERNEL: usize = 510;
/// level3_kernel's slot for level2_fixmap (from [`FIXMAP_L2_BASE`]).
pub const L3_FIXMAP: usize = 511;
/// Start of the L3\[511\] area (level2_fixmap covers it).
pub const FIXMAP_L2_BASE: VirtAddr = VirtAddr::new(0xffff_ffff_c000_0000);
/// First of Xen's own L4 slots in a 64-bit PV guest's root
/// (`ROOT_PAGETABLE_FIRST_XEN_SLOT`). Xen fills slots 256..=271 itself when it validates
/// an L4 and refuses guest updates to them (`docs/xen-pv-facts.md`, section d).
pub const L4_XEN_FIRST: usize = 256;
/// Last of Xen's own L4 slots (`ROOT_PAGETABLE_LAST_XEN_SLOT`), inclusive.
pub const L4_XEN_LAST: usize = 271;
/// The direct map is one L3 page: it can cover this many bytes of pseudo-physical memory.
pub const DIRECT_MAP_MAX_BYTES: u64 = L4_SPAN;

/// level2_fixmap slot of the fixmap's L1 table (as in Linux).
pub const FIXMAP_L2_SLOT: usize = 506;
/// Virtual address of fixmap slot 0.
pub const FIXMAP_BASE: VirtAddr = kernel_l2_slot_va(L3_FIXMAP, FIXMAP_L2_SLOT);
/// First level2_fixmap slot that is not module space (Linux's `MODULES_END`).
pub const MODULES_END_L2_SLOT: usize = 504;
/// One past the last byte of module space (Linux's `MODULES_END`), whatever the [`Split`].
pub const MODULES_END: VirtAddr = kernel_l2_slot_va(L3_FIXMAP, MODULES_END_L2_SLOT);

/// Fixmap slots (L1 indexes in level1_fixmap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Fixmap {
    /// The domain's shared_info page (event channels, time), mapped by the takeover.
    SharedInfo = 0,
    /// First of [`GNTTAB_MAX_FRAMES`] slots for the grant table's frames.
    GnttabFirst = 16,
    /// Where `gnttab` maps one granted page (a real peer operation on a grant).
    GrantMap = 64,
}

/// Grant-table frames the fixmap has room for (32 frames = 16384 v1 entries).
pub const GNTTAB_MAX_FRAMES: usize = 32;

impl Fixmap {
    /// Virtual address of this fixmap slot.
    ///
    /// ```
    /// use xenpv_abi::layout::{Fixmap, FIXMAP_BASE, PAGE_SIZE};
    /// assert_eq!(Fixmap::SharedInfo.va().as_u64(), 0xffff_ffff_ff40_0000);
    /// assert_eq!(Fixmap::GnttabFirst.va(), FIXMAP_BASE + 16 * PAGE_SIZE);
    /// ```
    pub const fn va(self) -> VirtAddr {
        VirtAddr::new(FIXMAP_BASE.as_u64() + self as u64 * PAGE_SIZE)
    }
}

/// Where the kernel image ends and module space begins: a setting (`split=512M|1G` on the
/// command line). 512 MiB is Linux's classic layout; 1 GiB is the KASLR-era layout whose
/// module space lies wholly under L3\[511\], the one that exposed the 2014 bug.
///
/// ```
/// use xenpv_abi::layout::{Split, FIXMAP_L2_BASE, KERNEL_VIRT_BASE, MODULES_END};
///
/// assert_eq!(Split::default(), Split::Half);
/// assert_eq!(Split::parse("1g"), Some(Split::Full));
/// assert_eq!(Split::parse("2G"), None);
/// // 512M: module space starts half-way through level2_kernel...
/// assert_eq!(Split::Half.modules_start(), KERNEL_VIRT_BASE + (512 << 20));
/// // ...1G: it starts with level2_fixmap, and is 512 MiB smaller.
/// assert_eq!(Split::Full.modules_start(), FIXMAP_L2_BASE);
/// assert_eq!(Split::Full.modules_end(), MODULES_END);
/// assert_eq!(Split::Full.name(), "1G");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Split {
    /// `512M`: the kernel image gets 512 MiB, module space starts at
    /// `0xffff_ffff_a000_0000` under level2_kernel (Linux's classic layout).
    #[default]
    Half,
    /// `1G`: the kernel image gets all of level2_kernel, module space is level2_fixmap's
    /// slots below [`MODULES_END_L2_SLOT`].
    Full,
}

impl Split {
    /// Bytes of kernel image space from [`KERNEL_VIRT_BASE`].
    pub const fn kernel_bytes(self) -> u64 {
        match self {
            Split::Half => 512 << 20,
            Split::Full => 1 << 30,
        }
    }
    /// First address of module space.
    pub const fn modules_start(self) -> VirtAddr {
        VirtAddr::new(KERNEL_VIRT_BASE.as_u64() + self.kernel_bytes())
    }
    /// One past the last address of module space: [`MODULES_END`] for both splits.
    pub const fn modules_end(self) -> VirtAddr {
        MODULES_END
    }
    /// The command-line spelling (`512M` or `1G`), for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Split::Half => "512M",
            Split::Full => "1G",
        }
    }
    /// Parse the command-line value: `512M` or `1G` (case-insensitive M/G).
    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "512M" | "512m" => Some(Split::Half),
            "1G" | "1g" | "1024M" | "1024m" => Some(Split::Full),
            _ => None,
        }
    }
}

/// Index of `va` in the table of `level` (1..=4): 9 bits of the address per level.
///
/// ```
/// use xenpv_abi::layout::{index, DIRECT_MAP_BASE, L4_DIRECT_MAP};
///
/// let va = DIRECT_MAP_BASE + (3 << 30) + (5 << 21) + (7 << 12) + 0x123;
/// assert_eq!(index(va, 4), L4_DIRECT_MAP);
/// assert_eq!([index(va, 3), index(va, 2), index(va, 1)], [3, 5, 7]);
/// ```
pub const fn index(va: VirtAddr, level: u32) -> usize {
    ((va.as_u64() >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Direct-map address of a pseudo-physical frame.
///
/// ```
/// use xenpv_abi::layout::{direct_map_va, DIRECT_MAP_BASE};
/// use xenpv_abi::Pfn;
///
/// assert_eq!(direct_map_va(Pfn(0)), DIRECT_MAP_BASE);
/// assert_eq!(direct_map_va(Pfn(0x10)).as_u64(), 0xffff_8800_0001_0000);
/// ```
pub const fn direct_map_va(pfn: crate::Pfn) -> VirtAddr {
    VirtAddr::new(DIRECT_MAP_BASE.as_u64() + pfn.0 * PAGE_SIZE)
}

/// Virtual address of an L2 slot under level3_kernel (`l3` is 510 or 511).
///
/// ```
/// use xenpv_abi::layout::{kernel_l2_slot_va, L3_FIXMAP, L3_KERNEL, MODULES_END};
///
/// assert_eq!(kernel_l2_slot_va(L3_KERNEL, 1).as_u64(), 0xffff_ffff_8020_0000);
/// assert_eq!(kernel_l2_slot_va(L3_FIXMAP, 504), MODULES_END);
/// ```
pub const fn kernel_l2_slot_va(l3: usize, slot: usize) -> VirtAddr {
    VirtAddr::new(
        KERNEL_VIRT_BASE.as_u64() + (l3 - L3_KERNEL) as u64 * L3_SPAN + slot as u64 * L2_SPAN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_agree_with_the_drawing() {
        assert_eq!(index(DIRECT_MAP_BASE, 4), L4_DIRECT_MAP);
        assert_eq!(index(KERNEL_VIRT_BASE, 4), L4_KERNEL);
        assert_eq!(index(KERNEL_VIRT_BASE, 3), L3_KERNEL);
        assert_eq!(index(FIXMAP_L2_BASE, 3), L3_FIXMAP);
        assert_eq!(index(FIXMAP_BASE, 2), FIXMAP_L2_SLOT);
        assert_eq!(FIXMAP_BASE.as_u64(), 0xffff_ffff_ff40_0000);
        assert_eq!(MODULES_END.as_u64(), 0xffff_ffff_ff00_0000);
        assert_eq!(Split::Half.modules_start().as_u64(), 0xffff_ffff_a000_0000);
        assert_eq!(Split::Full.modules_start(), FIXMAP_L2_BASE);
        assert_eq!(kernel_l2_slot_va(511, 3), FIXMAP_L2_BASE + 3 * L2_SPAN);
        assert_eq!(index(Fixmap::SharedInfo.va(), 1), 0);
        assert!(Fixmap::GnttabFirst as usize + GNTTAB_MAX_FRAMES <= Fixmap::GrantMap as usize);
    }

    #[test]
    fn split_parses_both_spellings_and_refuses_others() {
        assert_eq!(Split::parse("512M"), Some(Split::Half));
        assert_eq!(Split::parse("1G"), Some(Split::Full));
        assert_eq!(Split::parse("2G"), None);
    }
}
