//! The vocabulary of PV MMU operations.
//!
//! Planners (pure functions) emit these; the executor (`mm::exec`) turns runs of them
//! into batched `mmu_update` / `mmuext_op` hypercalls, and the host tests feed them to a
//! model of Xen's PV MMU rules instead. Keeping the plan as data is what lets the host
//! tests check every operation the runtime would issue against Xen's rules.

pub use xenpv_abi::{Maddr, Mfn, Pfn};

/// Page-table level, 1 (PTEs) to 4 (the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    L1 = 1,
    L2 = 2,
    L3 = 3,
    L4 = 4,
}

impl Level {
    /// The level one step closer to the leaves, `None` for L1.
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
    PtUpdate { ptr: Maddr, val: u64 },
    /// `mmuext_op` `MMUEXT_CLEAR_PAGE`: zero a frame that holds no page-table type
    /// reference right now (a former table whose count is back to 0 is fine).
    ClearPage { mfn: Mfn },
    /// `mmuext_op` `MMUEXT_PIN_L{1..4}_TABLE`.
    Pin { level: Level, mfn: Mfn },
    /// `mmuext_op` `MMUEXT_UNPIN_TABLE`.
    Unpin { mfn: Mfn },
    /// `mmuext_op` `MMUEXT_NEW_BASEPTR`: load an L4 as the kernel page table. Xen validates
    /// it if needed (pinning is not required) and drops its reference on the old base.
    NewBaseptr { mfn: Mfn },
    /// `mmuext_op` `MMUEXT_TLB_FLUSH_LOCAL`.
    TlbFlushLocal,
    /// `mmuext_op` `MMUEXT_INVLPG_LOCAL`.
    InvlpgLocal { va: u64 },
}

impl MmuOp {
    /// Which hypercall carries this operation (consecutive ops of one kind share a call).
    pub const fn hypercall(&self) -> Hypercall {
        match self {
            MmuOp::PtUpdate { .. } => Hypercall::MmuUpdate,
            _ => Hypercall::MmuextOp,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    MmuUpdate,
    MmuextOp,
}

/// Where a plan goes: the executor (real hypercalls) or the model (host tests).
///
/// `submit` may queue; errors of queued operations surface at the latest at `flush`.
/// A planner calls `flush` wherever a later step depends on an earlier one having taken
/// effect (for example before reading memory through a mapping it just created).
pub trait MmuSink {
    type Error: core::fmt::Debug;
    fn submit(&mut self, op: MmuOp) -> Result<(), Self::Error>;
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// x86-64 PTE bits used by the runtime (the `x86_64` crate's `PageTableFlags` has the same
/// bits; plain constants keep the planner's arithmetic on raw `u64` entries obvious).
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    /// PSE in L2/L3, PAT in L1.
    pub const PSE: u64 = 1 << 7;
    pub const GLOBAL: u64 = 1 << 8;
    pub const NX: u64 = 1 << 63;
    /// Bits 12..51: the frame.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    pub const fn frame(entry: u64) -> super::Mfn {
        super::Mfn((entry & ADDR_MASK) >> 12)
    }
    /// An entry mapping (or pointing at) frame `mfn` with `flags`.
    pub const fn entry(mfn: super::Mfn, flags: u64) -> u64 {
        (mfn.0 << 12) | flags
    }
    pub const fn present(entry: u64) -> bool {
        entry & PRESENT != 0
    }
}
