//! The balloon's reservation calls: `XENMEM_decrease_reservation` and
//! `XENMEM_populate_physmap` for this domain, order 0.

use xenpv_abi::args::{XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};
use xenpv_abi::XenError;
use xenpv_paging::balloon::Reservation;

/// The hypercalls (the planner treats their answers as hostile).
pub(super) struct Hypercalls;

impl Reservation for Hypercalls {
    fn decrease(&mut self, mfns: &mut [u64]) -> Result<u64, XenError> {
        crate::hypercall::memory_reservation(XENMEM_DECREASE_RESERVATION, mfns)
    }
    fn populate(&mut self, frames: &mut [u64]) -> Result<u64, XenError> {
        crate::hypercall::memory_reservation(XENMEM_POPULATE_PHYSMAP, frames)
    }
}
