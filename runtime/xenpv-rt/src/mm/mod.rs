//! Paging on the live system: the takeover and vmap planners of `xenpv_paging` run over
//! the direct map and executed with hypercalls.
//!
//! [`Memory`] is what the application gets from [`Boot::memory`](crate::Boot::memory):
//! the frame allocator, the runtime's tables, vmap/vmalloc in module space, the fixmap.

pub use xenpv_paging::{check, direct, layout, ops, vmap, vrange};

mod setup;
mod xen;

#[cfg(feature = "alloc")]
pub(crate) use setup::take_frame_run;
pub(crate) use setup::take_over;
pub use setup::{DirectMapMode, FramesGuard, Memory, Page, PagingPhases, TopLevel, VmArea};
pub use vmap::{VmapError, VmapStats};
pub use xen::Xen;
pub use xenpv_paging::direct::{DirectStats, PtWrite};
