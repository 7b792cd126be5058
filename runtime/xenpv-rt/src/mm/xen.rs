//! The executor's transport on the live system: the MMU hypercalls.

use xen_sys as xen;
use xenpv_abi::XenError;
use xenpv_paging::exec::Transport;

use core::sync::atomic::{AtomicU64, Ordering};

/// Batches go to Xen as `mmu_update`, `mmuext_op`, or both in one multicall.
pub struct Xen;

/// TSC ticks spent inside MMU hypercalls so far: where start of day's time goes.
static IN_XEN: AtomicU64 = AtomicU64::new(0);

/// TSC ticks spent inside MMU hypercalls since boot.
pub(crate) fn ticks_in_xen() -> u64 {
    IN_XEN.load(Ordering::Relaxed)
}

fn timed<R>(f: impl FnOnce() -> R) -> R {
    let t = crate::time::rdtsc();
    let r = f();
    IN_XEN.fetch_add(crate::time::rdtsc().wrapping_sub(t), Ordering::Relaxed);
    r
}

impl Transport for Xen {
    fn mmu_update(&mut self, reqs: &[xen::mmu_update]) -> Result<(), (XenError, usize)> {
        timed(|| crate::hypercall::mmu_update(reqs))
    }
    fn mmuext_op(&mut self, ops: &[xen::mmuext_op]) -> Result<(), (XenError, usize)> {
        timed(|| crate::hypercall::mmuext_op(ops))
    }
    fn mmu_update_then_ext(
        &mut self,
        reqs: &[xen::mmu_update],
        ops: &[xen::mmuext_op],
    ) -> Result<(), (XenError, usize)> {
        timed(|| crate::hypercall::mmu_update_then_ext(reqs, ops))
    }
}
