//! The p2m publisher run against the model after a modelled takeover: the window, the
//! tree and the values for `shared_info.arch`, as the runtime's `publish_p2m` does, and a
//! [`Machine`] over the model for the walks a toolstack makes.

use crate::mmu_model::{Owner, XenPvModel as Model};
use crate::takeover_run::{ModelDirect, Queued};
use std::cell::RefCell;
use xenpv_paging::frames::FrameAllocator;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::p2m::{self, Machine, P2mError, P2mPublish, Window};
use xenpv_paging::tables::Tables;

/// Memory by machine frame as the toolstack maps it (frames of the guest only), the
/// guest's p2m list as the guest has it, and the model's M2P.
pub struct ModelMachine<'a> {
    pub m: &'a Model,
    /// The guest's p2m (its list's contents).
    pub p2m: &'a [Mfn],
}

impl Machine for ModelMachine<'_> {
    fn word(&self, mfn: Mfn, index: usize) -> Option<u64> {
        (self.m.owner(mfn.0) == Owner::Domain && index < 512)
            .then(|| self.m.read_machine(mfn.0 * 4096 + index as u64 * 8))
    }
    fn m2p(&self, mfn: Mfn) -> Option<Pfn> {
        self.m.m2p(mfn.0).map(Pfn)
    }
    fn p2m(&self, pfn: Pfn) -> Option<Mfn> {
        self.p2m.get(pfn.0 as usize).copied()
    }
    fn max_mfn(&self) -> Mfn {
        Mfn(self.m.p2m().iter().copied().max().unwrap_or(0))
    }
}

/// Where the publisher put things (fixed for the guest's life, like the runtime's
/// `P2mState`).
#[derive(Clone, Debug)]
pub struct Placed {
    /// The list's pages.
    pub list: (Pfn, Pfn),
    /// The window's tables.
    pub window: Vec<Pfn>,
    /// The tree's frames (fll first).
    pub tree: Vec<Pfn>,
}

/// `n` frames in one run from the allocator.
fn run(frames: &mut FrameAllocator<'_>, n: u64) -> Vec<Pfn> {
    let first = frames.alloc_run(n).expect("free frames for the p2m");
    (0..n).map(|i| first + i).collect()
}

/// Boot: map the window and take the tree's frames, then [`republish`].
pub fn publish_at_boot(
    m: &RefCell<Model>,
    p2m: &[Mfn],
    tables: &Tables,
    list: (Pfn, Pfn),
    frames: &mut FrameAllocator<'_>,
) -> Result<(Placed, P2mPublish), String> {
    let nr = p2m.len() as u64;
    let window = run(frames, p2m::window_tables(list.1 .0 - list.0 .0));
    let tree = run(frames, p2m::tree_frames(nr));
    let w = Window {
        l4: tables.l4,
        direct_l1: tables.direct_l1.0,
        tables: &window,
        nx: true,
    };
    let env = ModelDirect { m, p2m, holes: &[] };
    p2m::window_plan(list, nr, &w, &env, &mut Queued::new(m))
        .map_err(|e: P2mError<_>| format!("window: {e:?}"))?;
    let placed = Placed { list, window, tree };
    let p = republish(m, p2m, tables, &placed)?;
    Ok((placed, p))
}

/// Fill the tree again and compute the values (what the runtime does after a resume).
pub fn republish(
    m: &RefCell<Model>,
    p2m: &[Mfn],
    tables: &Tables,
    placed: &Placed,
) -> Result<P2mPublish, String> {
    let nr = p2m.len() as u64;
    let mut env = ModelDirect { m, p2m, holes: &[] };
    let fll = p2m::tree_fill(placed.list, nr, &placed.tree, &mut env)
        .map_err(|e| format!("tree: {e:?}"))?;
    Ok(p2m::publish(p2m[tables.l4.0 as usize], nr, fll))
}
