//! The vocabulary of PV MMU operations.
//!
//! Planners (pure functions) emit these; the executor ([`crate::exec`]) turns runs of them
//! into batched `mmu_update` / `mmuext_op` hypercalls, and the host tests feed them to a
//! model of Xen's PV MMU rules instead. Keeping the plan as data is what lets the host
//! tests check every operation the runtime would issue against Xen's rules (written down
//! in `docs/xen-pv-facts.md`).

use x86_64::VirtAddr;
pub use xenpv_abi::{Maddr, Mfn, Pfn};

/// Page-table level, 1 (PTEs) to 4 (the root). The discriminant is the level number
/// (`MMUEXT_PIN_L1_TABLE + level - 1` picks the pin command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// A page table of PTEs: its entries map 4 KiB pages.
    L1 = 1,
    /// A page directory: its entries point at L1s (PV guests get no 2 MiB superpages).
    L2 = 2,
    /// A page-directory-pointer table: its entries point at L2s.
    L3 = 3,
    /// The root (what `MMUEXT_NEW_BASEPTR` loads); its entries point at L3s.
    L4 = 4,
}

impl Level {
    /// The level one step closer to the leaves, `None` for L1.
    ///
    /// ```
    /// use xenpv_paging::ops::Level;
    /// assert_eq!(Level::L4.below(), Some(Level::L3));
    /// assert_eq!(Level::L1.below(), None);
    /// ```
    pub const fn below(self) -> Option<Level> {
        match self {
            Level::L4 => Some(Level::L3),
            Level::L3 => Some(Level::L2),
            Level::L2 => Some(Level::L1),
            Level::L1 => None,
        }
    }
}

/// One operation of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuOp {
    /// `mmu_update` with `MMU_NORMAL_PT_UPDATE`: store `val` in the 8-byte entry at machine
    /// address `ptr`, which must be 8-aligned (Xen reads the low 3 bits as the command: 1 is
    /// MMU_MACHPHYS_UPDATE, silently accepted). If the frame is a typed page table Xen
    /// validates the new entry for that level; otherwise it performs a plain checked write.
    PtUpdate {
        /// Machine address of the entry (table frame's address + 8 x slot).
        ptr: Maddr,
        /// The new entry, as the guest writes it (Xen may add bits, e.g. USER, on store).
        val: u64,
    },
    /// `mmuext_op` `MMUEXT_CLEAR_PAGE`: zero a frame that holds no page-table type
    /// reference right now (a former table whose count is back to 0 is fine).
    ClearPage {
        /// The frame to zero.
        mfn: Mfn,
    },
    /// `mmuext_op` `MMUEXT_PIN_L{1..4}_TABLE`: give the frame that page-table type for
    /// good (Xen validates the whole tree below it on first use), so it survives while no
    /// entry or base pointer references it.
    Pin {
        /// The type to pin the frame as.
        level: Level,
        /// The table's frame.
        mfn: Mfn,
    },
    /// `mmuext_op` `MMUEXT_UNPIN_TABLE`: drop the pin's type reference; at count 0 Xen
    /// releases everything the table's entries held.
    Unpin {
        /// The pinned table's frame.
        mfn: Mfn,
    },
    /// `mmuext_op` `MMUEXT_NEW_BASEPTR`: load an L4 as the kernel page table. Xen validates
    /// it if needed (pinning is not required) and drops its reference on the old base.
    NewBaseptr {
        /// The new root (an L4).
        mfn: Mfn,
    },
    /// `mmuext_op` `MMUEXT_TLB_FLUSH_LOCAL`: flush this vCPU's whole TLB.
    TlbFlushLocal,
    /// `mmuext_op` `MMUEXT_INVLPG_LOCAL`: flush one page's translation on this vCPU.
    InvlpgLocal {
        /// Any address in the page.
        va: VirtAddr,
    },
}

impl MmuOp {
    /// Which hypercall carries this operation (consecutive ops of one kind share a call).
    ///
    /// ```
    /// use xenpv_paging::ops::{Hypercall, Maddr, MmuOp};
    /// let update = MmuOp::PtUpdate { ptr: Maddr(0x5000), val: 0 };
    /// assert_eq!(update.hypercall(), Hypercall::MmuUpdate);
    /// assert_eq!(MmuOp::TlbFlushLocal.hypercall(), Hypercall::MmuextOp);
    /// ```
    pub const fn hypercall(&self) -> Hypercall {
        match self {
            MmuOp::PtUpdate { .. } => Hypercall::MmuUpdate,
            _ => Hypercall::MmuextOp,
        }
    }
}

/// The two PV MMU hypercalls a plan is carried by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// `HYPERVISOR_mmu_update`: a batch of `(ptr, val)` page-table entry writes.
    MmuUpdate,
    /// `HYPERVISOR_mmuext_op`: a batch of extended commands (pin, new base, flush...).
    MmuextOp,
}

/// Where a plan goes: the executor (real hypercalls) or the model (host tests).
///
/// `submit` may queue; errors of queued operations surface at the latest at `flush`.
/// A planner calls `flush` wherever a later step depends on an earlier one having taken
/// effect (for example before reading memory through a mapping it just created).
pub trait MmuSink {
    /// Why an operation was refused (Xen's errno and the operation, for the executor).
    type Error: core::fmt::Debug;
    /// Queue (or apply) one operation, in plan order.
    fn submit(&mut self, op: MmuOp) -> Result<(), Self::Error>;
    /// Apply everything queued; on return every submitted operation has taken effect.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// x86-64 PTE flags, as the `x86_64` crate's [`PageTableFlags`](pte::PageTableFlags)
/// (bitflags), under the names Xen and Linux give them; an entry itself stays a raw `u64`
/// (it is what Xen reads and writes), built by [`pte::entry`] and taken apart by
/// [`pte::frame`] and [`pte::flags`].
///
/// In a PV guest the frame in an entry is a *machine* frame ([`Mfn`]), not a
/// pseudo-physical one: the guest translates through the p2m before writing.
///
/// ```
/// use xenpv_paging::ops::{pte, Mfn};
///
/// let e = pte::entry(Mfn(0x1234), pte::PRESENT | pte::RW | pte::NX);
/// assert_eq!(e, 0x8000_0000_0123_4003);
/// assert_eq!(pte::frame(e), Mfn(0x1234));
/// assert!(pte::present(e));
/// // The flags never leak into the frame, the frame never into the flags.
/// assert_eq!(pte::flags(e), pte::PRESENT | pte::RW | pte::NX);
/// assert!(!pte::present(pte::entry(Mfn(0x1234), pte::RW)));
/// ```
pub mod pte {
    pub use x86_64::structures::paging::PageTableFlags;
    use PageTableFlags as F;

    /// The entry is valid. Xen checks only present entries; others are stored as written.
    pub const PRESENT: F = F::PRESENT;
    /// Writable. Xen refuses a writable mapping of a frame typed as a page table.
    pub const RW: F = F::WRITABLE;
    /// User-accessible. Xen sets it itself on a 64-bit PV kernel's entries (the guest
    /// kernel runs in ring 3).
    pub const USER: F = F::USER_ACCESSIBLE;
    /// Write-through. Refused by Xen in L2..L4, and in L1s of a domU without I/O rights.
    pub const PWT: F = F::WRITE_THROUGH;
    /// Cache disable. Refused like [`PWT`].
    pub const PCD: F = F::NO_CACHE;
    /// Accessed, set by the CPU (the runtime sets it up front).
    pub const ACCESSED: F = F::ACCESSED;
    /// Dirty, set by the CPU (the runtime sets it up front).
    pub const DIRTY: F = F::DIRTY;
    /// PSE in L2/L3, PAT in L1. Xen refuses superpages to PV guests.
    pub const PSE: F = F::HUGE_PAGE;
    /// Global. Allowed by Xen in L1 entries only.
    pub const GLOBAL: F = F::GLOBAL;
    /// No-execute (only when the CPU supports it; otherwise a reserved bit Xen refuses).
    pub const NX: F = F::NO_EXECUTE;
    /// Flags of an entry pointing at a lower table. RW in a non-leaf entry only allows
    /// writes through the mappings below it; Xen refuses it only in a linear page-table
    /// entry.
    pub const TABLE: F = PRESENT.union(RW).union(ACCESSED).union(DIRTY);
    /// Bits 12..51: the frame.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// The machine frame an entry maps or points at (flags ignored).
    pub const fn frame(entry: u64) -> super::Mfn {
        super::Mfn((entry & ADDR_MASK) >> 12)
    }
    /// The flags of an entry (the frame ignored; bits no flag names are dropped).
    pub const fn flags(entry: u64) -> F {
        F::from_bits_truncate(entry & !ADDR_MASK)
    }
    /// An entry mapping (or pointing at) frame `mfn` with `flags`.
    pub const fn entry(mfn: super::Mfn, flags: F) -> u64 {
        (mfn.0 << 12) | flags.bits()
    }
    /// Is the entry's [`PRESENT`] bit set?
    pub const fn present(entry: u64) -> bool {
        entry & PRESENT.bits() != 0
    }
}
