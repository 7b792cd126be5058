//! The runtime's own page-table frames, as the takeover lays them out and the direct
//! map and the checker find them.

use crate::ops::Pfn;

/// The runtime's page-table frames (pfns), named as in the [`crate::layout`] drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tables {
    /// The root (pinned, the base pointer after the switch).
    pub l4: Pfn,
    /// The direct map's L3 (L4 slot 272).
    pub level3_ident: Pfn,
    /// The kernel map's L3 (L4 slot 511).
    pub level3_kernel: Pfn,
    /// The kernel image and, with the 512M split, the start of module space (L3 slot 510).
    pub level2_kernel: Pfn,
    /// Module space and the fixmap (L3 slot 511).
    pub level2_fixmap: Pfn,
    /// The fixmap's L1 (level2_fixmap slot 506).
    pub level1_fixmap: Pfn,
    /// `[start, start+n)`: level2_ident pages.
    pub level2_ident: (Pfn, u64),
    /// `[start, start+n)`: direct-map L1s, one per 2 MiB chunk (chunk `c` at
    /// `start + c`), written when the chunk is mapped.
    pub direct_l1: (Pfn, u64),
}

impl Tables {
    pub(crate) const FIXED: u64 = 6;
    /// How many table frames there are. They lie in one run from `l4`: the fixed tables
    /// and level2_ident, the allocator's bitmaps, then the chunk L1s.
    pub fn count(&self) -> u64 {
        Self::FIXED + self.level2_ident.1 + self.direct_l1.1
    }
    /// Is `pfn` one of the table frames (a chunk's L1 is a page table, read-only in the
    /// direct map, once its chunk is mapped)?
    pub fn contains(&self, pfn: Pfn) -> bool {
        (self.l4..self.level2_ident.0 + self.level2_ident.1).contains(&pfn)
            || (self.direct_l1.0..self.direct_l1.0 + self.direct_l1.1).contains(&pfn)
    }
}
