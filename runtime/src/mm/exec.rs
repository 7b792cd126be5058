//! The executor: runs of [`MmuOp`]s become batched `mmu_update` / `mmuext_op` hypercalls.
//! Thin on purpose: what to do was decided by a planner.

use super::ops::{Hypercall, MmuOp, MmuSink};
use crate::errno::XenError;
use crate::hypercall;
use xen_sys as xen;

/// PTE updates per `mmu_update` call (one whole L1 table).
pub const MMU_BATCH: usize = 512;
/// Operations per `mmuext_op` call.
pub const EXT_BATCH: usize = 64;

/// A refused operation: which one and what Xen said.
#[derive(Clone, Copy, Debug)]
pub struct ExecError {
    pub op: MmuOp,
    pub error: XenError,
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Xen refused {:x?}: {}", self.op, self.error)
    }
}

pub struct Executor {
    pending: [MmuOp; MMU_BATCH],
    len: usize,
    /// Hypercalls issued and operations carried, for the stress and bench figures.
    pub hypercalls: u64,
    pub pt_updates: u64,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    pub const fn new() -> Self {
        Executor {
            pending: [MmuOp::TlbFlushLocal; MMU_BATCH],
            len: 0,
            hypercalls: 0,
            pt_updates: 0,
        }
    }

    fn limit(kind: Hypercall) -> usize {
        match kind {
            Hypercall::MmuUpdate => MMU_BATCH,
            Hypercall::MmuextOp => EXT_BATCH,
        }
    }
}

fn ext(op: &MmuOp) -> xen::mmuext_op {
    let (cmd, arg1) = match *op {
        MmuOp::ClearPage { mfn } => (xen::MMUEXT_CLEAR_PAGE, mfn),
        MmuOp::Pin { level, mfn } => (xen::MMUEXT_PIN_L1_TABLE + level as u32 - 1, mfn),
        MmuOp::Unpin { mfn } => (xen::MMUEXT_UNPIN_TABLE, mfn),
        MmuOp::NewBaseptr { mfn } => (xen::MMUEXT_NEW_BASEPTR, mfn),
        MmuOp::TlbFlushLocal => (xen::MMUEXT_TLB_FLUSH_LOCAL, 0),
        MmuOp::InvlpgLocal { va } => (xen::MMUEXT_INVLPG_LOCAL, va),
        MmuOp::PtUpdate { .. } => unreachable!("PtUpdate travels by mmu_update"),
    };
    xen::mmuext_op {
        cmd,
        arg1: xen::mmuext_op__bindgen_ty_1 { mfn: arg1 },
        arg2: xen::mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    }
}

impl MmuSink for Executor {
    type Error = ExecError;

    fn submit(&mut self, op: MmuOp) -> Result<(), ExecError> {
        if let MmuOp::PtUpdate { ptr, .. } = op {
            // The low bits would select another mmu_update command, which Xen accepts.
            assert!(ptr & 7 == 0, "PtUpdate ptr {ptr:#x} is not 8-aligned");
        }
        if self.len > 0 && self.pending[0].hypercall() != op.hypercall() {
            self.flush()?;
        }
        self.pending[self.len] = op;
        self.len += 1;
        if self.len == Self::limit(op.hypercall()) {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExecError> {
        let ops = &self.pending[..self.len];
        if ops.is_empty() {
            return Ok(());
        }
        self.hypercalls += 1;
        let result = match ops[0].hypercall() {
            Hypercall::MmuUpdate => {
                let mut reqs = [xen::mmu_update { ptr: 0, val: 0 }; MMU_BATCH];
                for (r, op) in reqs.iter_mut().zip(ops) {
                    if let MmuOp::PtUpdate { ptr, val } = *op {
                        // Low bits of ptr select the command: 0 = MMU_NORMAL_PT_UPDATE.
                        *r = xen::mmu_update {
                            ptr: ptr | xen::MMU_NORMAL_PT_UPDATE as u64,
                            val,
                        };
                    }
                }
                self.pt_updates += ops.len() as u64;
                hypercall::mmu_update(&reqs[..ops.len()])
            }
            Hypercall::MmuextOp => {
                let mut reqs = [ext(&MmuOp::TlbFlushLocal); EXT_BATCH];
                for (r, op) in reqs.iter_mut().zip(ops) {
                    *r = ext(op);
                }
                hypercall::mmuext_op(&reqs[..ops.len()])
            }
        };
        let failed = result.map_err(|(error, done)| ExecError {
            op: ops[done.min(ops.len() - 1)],
            error,
        });
        self.len = 0;
        failed
    }
}
