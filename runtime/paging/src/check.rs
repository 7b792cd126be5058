//! The layout check: the runtime's kernel map read back after the takeover, classified
//! slot by slot, with the verdict the sample app prints. Pure, so the host tests run it
//! on the model's tables.
//!
//! The rule it enforces is the one the 2014 bug broke: outside the kernel image's slots
//! and the fixmap, level2_kernel and level2_fixmap hold nothing at start of day. A present
//! slot in module space is a stale mapping that vmalloc would trip over.
//!
//! ```
//! use xenpv_paging::check::{check, Inspect, Slot};
//! use xenpv_paging::layout::{Split, FIXMAP_L2_SLOT, KERNEL_VIRT_BASE, L3_FIXMAP};
//! use xenpv_paging::ops::{pte, Mfn};
//!
//! /// No vmap yet; the kernel's L1 is mfn 1.
//! struct AtBoot;
//! impl Inspect for AtBoot {
//!     fn is_module_table(&self, _l1: Mfn) -> bool {
//!         false
//!     }
//!     fn first_page_holds(&self, l1: Mfn) -> &'static str {
//!         if l1 == Mfn(1) { "kernel" } else { "boot data" }
//!     }
//! }
//!
//! let t = pte::PRESENT | pte::RW;
//! let (mut level2_kernel, mut level2_fixmap) = ([0; 512], [0; 512]);
//! level2_kernel[0] = pte::entry(Mfn(1), t);
//! level2_fixmap[FIXMAP_L2_SLOT] = pte::entry(Mfn(2), t);
//! let kernel_end = KERNEL_VIRT_BASE + (1 << 20);
//! let r = check(Split::Full, kernel_end, &level2_kernel, &level2_fixmap, true, &AtBoot);
//! assert!(r.ok());
//! assert!(r.to_string().ends_with("layout: check ok"));
//!
//! // The 2014 bug: the kernel's L2 copied into level2_fixmap aliases the image there.
//! level2_fixmap[0] = level2_kernel[0];
//! let r = check(Split::Full, kernel_end, &level2_kernel, &level2_fixmap, true, &AtBoot);
//! assert_eq!((r.ok(), r.stale), (false, 1));
//! assert_eq!(r.l2_fixmap[0], Slot::Stale("kernel"));
//! assert_eq!(r.first_stale, Some((L3_FIXMAP, 0, "kernel")));
//! let text = r.to_string();
//! assert!(text.contains("level2_fixmap 0=STALE:kernel 1-505=free 506=fixmap"), "{text}");
//! assert!(text.contains("check FAILED: 1 stale slot(s)"), "{text}");
//! ```

use crate::layout::{
    kernel_l2_slot_va, Split, FIXMAP_L2_SLOT, L3_FIXMAP, L3_KERNEL, MODULES_END_L2_SLOT,
};
use crate::ops::{pte, Mfn};
use core::fmt;
use x86_64::VirtAddr;

/// What a level2_kernel / level2_fixmap slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Not present.
    Free,
    /// Part of the kernel image.
    Kernel,
    /// The fixmap's L1 (level2_fixmap slot 506).
    Fixmap,
    /// Module space in use (an L1 the runtime's vmap made).
    Module,
    /// Present where nothing should be; says what its first page maps.
    Stale(&'static str),
}

impl Slot {
    /// Short name for the report (`STALE` for every stale slot).
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
    /// The split checked against.
    pub split: Split,
    /// First address after the kernel image.
    pub kernel_end: VirtAddr,
    /// level2_kernel, slot by slot.
    pub l2_kernel: [Slot; 512],
    /// level2_fixmap, slot by slot.
    pub l2_fixmap: [Slot; 512],
    /// level1_fixmap is mapped read-only in the direct map.
    pub fixmap_l1_read_only: bool,
    /// Present slots where nothing should be.
    pub stale: usize,
    /// The first of them: `(l3, slot, what its first page maps)`.
    pub first_stale: Option<(usize, usize, &'static str)>,
}

impl Report {
    /// The verdict: no stale slot, the fixmap in place and its L1 read-only in the direct
    /// map (Xen refuses a writable mapping of a frame in use as a page table).
    pub fn ok(&self) -> bool {
        self.stale == 0
            && self.l2_fixmap[FIXMAP_L2_SLOT] == Slot::Fixmap
            && self.fixmap_l1_read_only
    }
}

/// Classify the two kernel-map L2 pages.
pub fn check(
    split: Split,
    kernel_end: VirtAddr,
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
struct Runs<'a>(&'a [Slot; 512]);

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
