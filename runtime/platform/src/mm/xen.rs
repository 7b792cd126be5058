//! The executor's transport on the live system: the MMU hypercalls.

use xen_sys as xen;
use xenpv_abi::XenError;
use xenpv_paging::exec::Transport;

/// Batches go to Xen as `mmu_update`, `mmuext_op`, or both in one multicall.
pub struct Xen;

impl Transport for Xen {
    fn mmu_update(&mut self, reqs: &[xen::mmu_update]) -> Result<(), (XenError, usize)> {
        crate::hypercall::mmu_update(reqs)
    }
    fn mmuext_op(&mut self, ops: &[xen::mmuext_op]) -> Result<(), (XenError, usize)> {
        crate::hypercall::mmuext_op(ops)
    }
    fn mmu_update_then_ext(
        &mut self,
        reqs: &[xen::mmu_update],
        ops: &[xen::mmuext_op],
    ) -> Result<(), (XenError, usize)> {
        crate::hypercall::mmu_update_then_ext(reqs, ops)
    }
}
