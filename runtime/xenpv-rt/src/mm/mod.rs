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
//! - `p2m`: the p2m published for the toolstack (save, migrate);
//! - `start_info`: the start_info page kept for suspend (`Memory::start_info_page`);
//! - `report`: the figures it reports ([`PagingPhases`], [`DirectMapState`], ...).

pub use xenpv_paging::{check, direct, layout, ops, vmap, vrange};

#[cfg(feature = "async")]
pub(crate) mod balloon;
mod live;
mod memory;
pub(crate) mod p2m;
mod report;
mod start_info;
mod takeover;
mod xen;

#[cfg(feature = "alloc")]
pub(crate) use memory::{give_frame_run, take_frame_run};
pub use memory::{DirectMapMode, FramesGuard, Memory, Page, PageRun, VmArea};
pub use report::{DirectMapState, MmuCounts, ModuleSpaceUsage, PagingPhases, TopLevel};
#[allow(unused_imports)] // the suspend path's (a cargo feature of its own)
pub(crate) use start_info::StartInfoPage;
pub(crate) use takeover::take_over;
pub use vmap::{VmapError, VmapStats};
pub use xen::Xen;
pub use xenpv_paging::direct::{DirectStats, PtWrite};

/// After a resume in a new domain (another host, maybe bigger): the highest machine frame
/// read again, in every copy (`Memory`, the allocator's direct-map reader the balloon
/// uses, the static reader behind `Page::mfn`). Returns it.
#[allow(dead_code)] // the suspend path's (a cargo feature of its own)
pub(crate) fn resume_new(mem: &mut Memory) -> ops::Mfn {
    use ops::Mfn;
    let max = crate::hypercall::maximum_ram_page().map_or(Mfn::MAX, |m| m.min(Mfn::MAX));
    mem.direct.max_mfn = max;
    if let Some(f) = memory::FRAMES.lock().as_mut() {
        f.env.max_mfn = max;
    }
    live::set_live_p2m(&mem.direct);
    max
}
