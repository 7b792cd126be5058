//! Paging on the live system: the takeover and vmap planners of `xenpv_paging` run over
//! the direct map and executed with hypercalls.
//!
//! [`Memory`] is what the application gets from [`Boot::memory`](crate::Boot::memory):
//! the frame allocator, the runtime's tables, vmap/vmalloc in module space, the fixmap.
//!
//! - `live`: the readers over the direct map, the p2m, Xen's M2P and boot tables (the
//!   module's `unsafe`);
//! - `takeover`: start of day, step by step;
//! - `memory`: [`Memory`]'s user API and the frame allocator shared with the heap;
//! - `balloon`: the balloon's planner over the live p2m, M2P, allocator and direct map;
//! - `report`: the figures it reports ([`PagingPhases`], [`DirectMapState`], ...).

pub use xenpv_paging::{check, direct, layout, ops, vmap, vrange};

#[cfg(feature = "async")]
pub(crate) mod balloon;
mod live;
mod memory;
mod report;
mod takeover;
mod xen;

#[cfg(feature = "alloc")]
pub(crate) use memory::{give_frame_run, take_frame_run};
pub use memory::{DirectMapMode, FramesGuard, Memory, Page, VmArea};
pub use report::{DirectMapState, MmuCounts, ModuleSpaceUsage, PagingPhases, TopLevel};
pub(crate) use takeover::take_over;
pub use vmap::{VmapError, VmapStats};
pub use xen::Xen;
pub use xenpv_paging::direct::{DirectStats, PtWrite};
