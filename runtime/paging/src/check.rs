//! The layout check: the runtime's kernel map read back after the takeover, classified
//! slot by slot, with the verdict the sample app prints. Pure, so the host tests run it
//! on the model's tables.
//!
//! The rule it enforces is the one the 2014 bug broke: outside the kernel image's slots
//! and the fixmap, level2_kernel and level2_fixmap hold nothing at start of day. A present
//! slot in module space is a stale mapping that vmalloc would trip over.

use crate::layout::{
    kernel_l2_slot_va, Split, FIXMAP_L2_SLOT, L3_FIXMAP, L3_KERNEL, MODULES_END_L2_SLOT,
};
use crate::ops::{pte, Mfn};
use core::fmt;

/// What a level2_kernel / level2_fixmap slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Free,
    Kernel,
    Fixmap,
    /// Module space in use (an L1 the runtime's vmap made).
    Module,
    /// Present where nothing should be; says what its first page maps.
    Stale(&'static str),
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Free => "free",
            Slot::Kernel => "kernel",
            Slot::Fixmap => "fixmap",
            Slot::Module => "module",
            Slot::Stale(_) => "STALE",
        }
    }
}

/// How the check sees one L2 slot's L1: the L1's frame and the frame its first present
/// entry maps, if any.
pub trait Inspect {
    /// Is `l1` an L1 table the runtime's vmap created (module space in use)?
    fn is_module_table(&self, l1: Mfn) -> bool;
    /// What the first page mapped through L1 `l1` is: "kernel", "initrd", "p2m", "boot
    /// data", ... (for the report).
    fn first_page_holds(&self, l1: Mfn) -> &'static str;
}

/// The layout as read back.
#[derive(Clone, Debug)]
pub struct Report {
    pub split: Split,
    pub kernel_end: u64,
    pub l2_kernel: [Slot; 512],
    pub l2_fixmap: [Slot; 512],
    /// level1_fixmap is mapped read-only in the direct map.
    pub fixmap_l1_read_only: bool,
    /// Present slots where nothing should be, and the first of them.
    pub stale: usize,
    pub first_stale: Option<(usize, usize, &'static str)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.stale == 0
            && self.l2_fixmap[FIXMAP_L2_SLOT] == Slot::Fixmap
            && self.fixmap_l1_read_only
    }
}

/// Classify the two kernel-map L2 pages.
pub fn check(
    split: Split,
    kernel_end: u64,
    level2_kernel: &[u64; 512],
    level2_fixmap: &[u64; 512],
    fixmap_l1_read_only: bool,
    inspect: &impl Inspect,
) -> Report {
    let kernel_slots = crate::layout::index(kernel_end - 1, 2);
    let mut r = Report {
        split,
        kernel_end,
        l2_kernel: [Slot::Free; 512],
        l2_fixmap: [Slot::Free; 512],
        fixmap_l1_read_only,
        stale: 0,
        first_stale: None,
    };
    for (l3, table) in [(L3_KERNEL, level2_kernel), (L3_FIXMAP, level2_fixmap)] {
        for (slot, &e) in table.iter().enumerate() {
            if !pte::present(e) {
                continue;
            }
            let l1 = pte::frame(e);
            let va = kernel_l2_slot_va(l3, slot);
            let in_modules =
                va >= split.modules_start() && !(l3 == L3_FIXMAP && slot >= MODULES_END_L2_SLOT);
            let kind = if l3 == L3_KERNEL && slot <= kernel_slots {
                Slot::Kernel
            } else if l3 == L3_FIXMAP && slot == FIXMAP_L2_SLOT {
                Slot::Fixmap
            } else if in_modules && inspect.is_module_table(l1) {
                Slot::Module
            } else {
                Slot::Stale(inspect.first_page_holds(l1))
            };
            if let Slot::Stale(what) = kind {
                r.stale += 1;
                r.first_stale.get_or_insert((l3, slot, what));
            }
            if l3 == L3_KERNEL {
                r.l2_kernel[slot] = kind;
            } else {
                r.l2_fixmap[slot] = kind;
            }
        }
    }
    r
}

/// `0-255=kernel 256-511=free`: runs of equal slots.
pub struct Runs<'a>(pub &'a [Slot; 512]);

impl fmt::Display for Runs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut start = 0;
        let mut sep = "";
        for i in 1..=512 {
            if i == 512 || self.0[i] != self.0[start] {
                let name = match self.0[start] {
                    Slot::Stale(what) => what,
                    s => s.name(),
                };
                let stale = if matches!(self.0[start], Slot::Stale(_)) {
                    "STALE:"
                } else {
                    ""
                };
                if start == i - 1 {
                    write!(f, "{sep}{start}={stale}{name}")?;
                } else {
                    write!(f, "{sep}{start}-{}={stale}{name}", i - 1)?;
                }
                sep = " ";
                start = i;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    /// The machine-readable block the sample app prints (one `layout:` line each).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "layout: split={} kernel={:#x}..{:#x} modules={:#x}..{:#x} fixmap={:#x}",
            self.split.name(),
            crate::layout::KERNEL_VIRT_BASE,
            self.kernel_end,
            self.split.modules_start(),
            crate::layout::MODULES_END,
            crate::layout::FIXMAP_BASE
        )?;
        writeln!(f, "layout: level2_kernel {}", Runs(&self.l2_kernel))?;
        writeln!(
            f,
            "layout: level2_fixmap {} fixmap_l1={}",
            Runs(&self.l2_fixmap),
            if self.fixmap_l1_read_only {
                "ro"
            } else {
                "WRITABLE"
            }
        )?;
        match (self.ok(), self.first_stale) {
            (true, _) => write!(f, "layout: check ok"),
            (false, Some((l3, slot, what))) => write!(
                f,
                "layout: check FAILED: {} stale slot(s) in the kernel map; first L3[{l3}] L2[{slot}] at {:#x} maps {what}",
                self.stale,
                kernel_l2_slot_va(l3, slot)
            ),
            (false, None) => write!(
                f,
                "layout: check FAILED: fixmap slot {FIXMAP_L2_SLOT} is {} and its L1 is {}",
                self.l2_fixmap[FIXMAP_L2_SLOT].name(),
                if self.fixmap_l1_read_only { "read-only" } else { "writable" }
            ),
        }
    }
}
