//! vmap against the model of Xen's PV MMU: after a real (modelled) takeover, every map and
#![cfg_attr(feature = "regress-2014-fixmap-copy", allow(unused))]
//! unmap must be accepted by Xen's rules, give the address space it promises, batch its
//! updates, flush before frames are reused, and refuse instead of overwriting.

use proptest::prelude::*;
use std::cell::RefCell;
use xenpv_paging::check::{self, Inspect};
use xenpv_paging::exec::{Executor, Transport};
use xenpv_paging::frames::{bitmap_words, FrameAllocator};
use xenpv_paging::layout::*;
use xenpv_paging::ops::{pte, Level, Maddr, Mfn, MmuOp, Pfn};
use xenpv_paging::vmap::{VmArea, Vmap, VmapEnv, VmapError, VmapTables, INVLPG_MAX};
use xenpv_paging::vrange::RangeError;
use xenpv_testkit::mmu_model::{PageType, XenPvModel as Model};
use xenpv_testkit::takeover_run::{take_over, tr, Case, Done};

/// The model behind the real executor: what Xen would do with each hypercall, and a log
/// of the operations in the order Xen saw them.
struct ModelXen<'a> {
    m: &'a RefCell<Model>,
    ops: Vec<MmuOp>,
    /// The model's refusal messages (the executor keeps only the errno).
    refusals: Vec<String>,
}

impl ModelXen<'_> {
    fn run(
        &mut self,
        ops: impl Iterator<Item = MmuOp>,
    ) -> Result<(), (xenpv_abi::XenError, usize)> {
        let mut first = None;
        for (i, op) in ops.enumerate() {
            self.ops.push(op);
            if let Err(e) = self.m.borrow_mut().apply(op) {
                self.refusals.push(e.to_string());
                first = Some((xenpv_abi::XenError(e.errno as i64), i));
                break;
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn from_update(u: &xen_sys::mmu_update) -> MmuOp {
    assert_eq!(u.ptr & 7, 0, "MMU_NORMAL_PT_UPDATE");
    MmuOp::PtUpdate {
        ptr: Maddr(u.ptr),
        val: u.val,
    }
}

fn from_ext(o: &xen_sys::mmuext_op) -> MmuOp {
    // SAFETY: a union read; every command the executor emits sets arg1 as an mfn or a va.
    let arg = unsafe { o.arg1.mfn };
    match o.cmd {
        xen_sys::MMUEXT_TLB_FLUSH_LOCAL => MmuOp::TlbFlushLocal,
        xen_sys::MMUEXT_INVLPG_LOCAL => MmuOp::InvlpgLocal {
            va: VirtAddr::new(arg),
        },
        xen_sys::MMUEXT_CLEAR_PAGE => MmuOp::ClearPage { mfn: Mfn(arg) },
        xen_sys::MMUEXT_UNPIN_TABLE => MmuOp::Unpin { mfn: Mfn(arg) },
        xen_sys::MMUEXT_NEW_BASEPTR => MmuOp::NewBaseptr { mfn: Mfn(arg) },
        c => panic!("mmuext cmd {c} not expected from vmap"),
    }
}

impl Transport for ModelXen<'_> {
    fn mmu_update(
        &mut self,
        reqs: &[xen_sys::mmu_update],
    ) -> Result<(), (xenpv_abi::XenError, usize)> {
        self.run(reqs.iter().map(from_update))
    }
    fn mmuext_op(
        &mut self,
        ops: &[xen_sys::mmuext_op],
    ) -> Result<(), (xenpv_abi::XenError, usize)> {
        self.run(ops.iter().map(from_ext))
    }
    fn mmu_update_then_ext(
        &mut self,
        reqs: &[xen_sys::mmu_update],
        ops: &[xen_sys::mmuext_op],
    ) -> Result<(), (xenpv_abi::XenError, usize)> {
        // Xen runs both entries of the multicall whatever the first returned.
        let a = self.run(reqs.iter().map(from_update));
        let b = self.run(ops.iter().map(from_ext));
        a.and(b.map_err(|(e, i)| (e, reqs.len() + i)))
    }
}

type Sink<'a> = Executor<ModelXen<'a>>;

fn sink(m: &RefCell<Model>) -> Sink<'_> {
    Executor::new(ModelXen {
        m,
        ops: vec![],
        refusals: vec![],
    })
}

/// The direct map of the model's guest, as the runtime reads it.
struct Env<'a> {
    m: &'a RefCell<Model>,
    p2m: &'a [Mfn],
}

impl VmapEnv for Env<'_> {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        self.p2m.get(pfn.0 as usize).copied()
    }
    fn pfn(&self, mfn: Mfn) -> Option<Pfn> {
        let p = Pfn(self.m.borrow().m2p(mfn.0)?);
        (self.mfn(p) == Some(mfn)).then_some(p)
    }
    fn word(&self, pfn: Pfn, i: usize) -> u64 {
        self.m
            .borrow()
            .read_va((direct_map_va(pfn) + i as u64 * 8).as_u64())
            .expect("frames are readable through the direct map")
    }
    fn zero(&mut self, pfn: Pfn) {
        let mut m = self.m.borrow_mut();
        for i in 0..512 {
            m.write_va((direct_map_va(pfn) + i * 8).as_u64(), 0)
                .expect("a new L1 is zeroed while still writable");
        }
    }
}

struct World {
    m: RefCell<Model>,
    p2m: Vec<Mfn>,
    regions: xenpv_paging::frames::Regions,
    t: xenpv_paging::tables::Tables,
    kernel_end: VirtAddr,
    split: Split,
}

impl World {
    /// A fresh vmap over the world's tables.
    fn vmap(&self) -> Vmap {
        let t = VmapTables {
            level2: [self.t.level2_kernel, self.t.level2_fixmap],
            direct_l1: self.t.direct_l1.0,
        };
        Vmap::new(self.split, t, true)
    }
}

fn world(nr_pages: u64, initrd: u64, split: Split) -> World {
    let c = Case {
        nr_pages,
        kernel_pages: 0x59,
        initrd,
        mod_start_pfn: false,
        split,
    };
    let Done { m, d, out, .. } = take_over(&c, 0);
    let out = out.expect("takeover");
    World {
        m: RefCell::new(m),
        p2m: d.p2m,
        regions: out.regions.clone(),
        t: out.tables,
        kernel_end: d.kernel_end,
        split,
    }
}

/// One world's moving parts, borrowed for a test.
macro_rules! parts {
    ($w:ident, $env:ident, $sink:ident, $frames:ident, $vmap:ident) => {
        let nr = $w.p2m.len() as u64;
        let mut bits = vec![0u64; bitmap_words(nr)];
        let mut $frames = FrameAllocator::new(&mut bits, nr, $w.regions.clone()).unwrap();
        let mut $env = Env {
            m: &$w.m,
            p2m: &$w.p2m,
        };
        let mut $sink = sink(&$w.m);
        let mut $vmap = $w.vmap();
    };
}

/// The fields of a `NotNone` refusal (any other result fails the test).
fn not_none<E: std::fmt::Debug>(err: &VmapError<E>) -> (VirtAddr, u64, Level, u64) {
    match *err {
        VmapError::NotNone {
            va,
            old,
            level,
            count,
        } => (va, old, level, count),
        ref e => panic!("{e:?}"),
    }
}

/// Map areas of `pages` until the first error: the areas and the error.
fn map_until_error(
    vmap: &mut Vmap,
    env: &mut Env<'_>,
    sink: &mut Sink<'_>,
    frames: &mut FrameAllocator<'_>,
    pages: u64,
) -> (Vec<VmArea>, VmapError<xenpv_paging::exec::ExecError>) {
    let mut areas = vec![];
    loop {
        match vmap.map(env, sink, frames, pages) {
            Ok(a) => areas.push(a),
            Err(e) => return (areas, e),
        }
    }
}

struct Owned<'a>(&'a Vmap, &'a [Mfn], &'a RefCell<Model>);
impl Inspect for Owned<'_> {
    fn is_module_table(&self, l1: Mfn) -> bool {
        self.2
            .borrow()
            .m2p(l1.0)
            .is_some_and(|p| self.1[p as usize] == l1 && self.0.owns_l1(Pfn(p)))
    }
    fn first_page_holds(&self, _: Mfn) -> &'static str {
        "something"
    }
}

fn report(w: &World, vmap: &Vmap) -> check::Report {
    let m = w.m.borrow();
    let mfn = |p: Pfn| w.p2m[p.0 as usize].0;
    check::check(
        w.split,
        w.kernel_end,
        &m.table(mfn(w.t.level2_kernel)),
        &m.table(mfn(w.t.level2_fixmap)),
        true,
        &Owned(vmap, &w.p2m, &w.m),
    )
}

/// Every page of `a` maps a distinct frame of ours, RW and NX; returns the frames.
fn frames_of(w: &World, a: &VmArea) -> Vec<Mfn> {
    let m = w.m.borrow();
    (0..a.pages())
        .map(|i| {
            let t = m
                .translate((a.va() + i * PAGE_SIZE).as_u64())
                .unwrap_or_else(|| panic!("page {i} of {:#x} unmapped", a.va()));
            assert!(t.writable && t.nx, "page {i}: {t:?}");
            assert_eq!(m.frame_type(t.mfn).ty, PageType::Writable);
            Mfn(t.mfn)
        })
        .collect()
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn map_and_unmap_follow_xens_rules_and_give_everything_back() {
    for split in [Split::Half, Split::Full] {
        let w = world(65536, 64 << 20, split);
        parts!(w, env, sink, frames, vmap);
        let free0 = frames.free_frames();
        // One page, an area crossing an L2 boundary, and a bigger one.
        let a = vmap.map(&mut env, &mut sink, &mut frames, 1).unwrap();
        let b = vmap.map(&mut env, &mut sink, &mut frames, 700).unwrap();
        let c = vmap.map(&mut env, &mut sink, &mut frames, 2000).unwrap();
        assert_eq!(a.va(), split.modules_start());
        assert_eq!(
            b.va(),
            a.va() + 2 * PAGE_SIZE,
            "one guard page after each area"
        );
        assert_eq!(
            w.m.borrow().translate((a.va() + PAGE_SIZE).as_u64()),
            None,
            "the guard page is unmapped"
        );
        let mut all: Vec<Mfn> = [&a, &b, &c].iter().flat_map(|x| frames_of(&w, x)).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "no frame mapped twice");
        w.m.borrow().check_invariants().unwrap();
        // The L1s vmap made are Xen-validated L1s, read-only in the direct map.
        let l1s: Vec<(usize, usize)> = vmap.l1_slots().collect();
        assert_eq!(
            l1s.len(),
            6,
            "L1s made on demand only: pages 0..2702 span six L2 slots"
        );
        let r = report(&w, &vmap);
        assert!(r.ok(), "{r}");
        assert!(r.to_string().contains("=module"), "{r}");
        assert_eq!(frames.free_frames(), free0 - 2701 - 6);
        for (l3, s) in &l1s {
            let l2 = if *l3 == L3_KERNEL {
                w.t.level2_kernel
            } else {
                w.t.level2_fixmap
            };
            let l1 = pte::frame(w.m.borrow().table(w.p2m[l2.0 as usize].0)[*s]);
            assert_eq!(w.m.borrow().frame_type(l1.0).ty, PageType::L1);
            let p = Pfn(w.m.borrow().m2p(l1.0).unwrap());
            assert!(
                !tr(&w.m.borrow(), direct_map_va(p)).unwrap().1,
                "L1 read-only"
            );
        }
        for x in [b, a, c] {
            let va = x.va();
            vmap.unmap(&mut env, &mut sink, &mut frames, x).unwrap();
            assert_eq!(w.m.borrow().translate(va.as_u64()), None);
            assert!(
                matches!(
                    sink.transport().ops.last(),
                    Some(MmuOp::TlbFlushLocal | MmuOp::InvlpgLocal { .. })
                ),
                "an unmap ends with its TLB flush"
            );
        }
        assert_eq!(frames.free_frames(), free0, "every frame and L1 given back");
        assert_eq!(vmap.l1_slots().count(), 0);
        assert_eq!(vmap.stats.l1_made, vmap.stats.l1_freed);
        w.m.borrow().check_invariants().unwrap();
        assert!(report(&w, &vmap)
            .to_string()
            .contains("level2_fixmap 0-505=free"));
    }
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn updates_are_batched_and_small_unmaps_flush_page_by_page() {
    let w = world(65536, 0, Split::Full);
    parts!(w, env, sink, frames, vmap);
    let a = vmap.map(&mut env, &mut sink, &mut frames, 1024).unwrap();
    // 1024 PTEs + 2 x (RO + hook) for two L1s = 1028 updates: three mmu_update calls.
    assert_eq!((sink.pt_updates, sink.hypercalls), (1028, 3));
    vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
    assert_eq!(sink.pt_updates, 2 * 1028);
    assert_eq!(sink.transport().ops.last(), Some(&MmuOp::TlbFlushLocal));
    // The flush rides with the last update batch in one multicall.
    assert_eq!((sink.hypercalls, sink.multicalls), (6, 1));
    // The one-operation-per-call baseline the bench compares with.
    sink.set_batch(1).unwrap();
    let b = vmap.map(&mut env, &mut sink, &mut frames, 600).unwrap();
    assert_eq!(sink.hypercalls, 6 + 600 + 4);
    vmap.unmap(&mut env, &mut sink, &mut frames, b).unwrap();
    assert_eq!(sink.hypercalls, 6 + 2 * (600 + 4) + 1);
    sink.set_batch(512).unwrap();
    sink.transport().ops.clear();
    let small = vmap.map(&mut env, &mut sink, &mut frames, 3).unwrap();
    let va = small.va();
    sink.transport().ops.clear();
    vmap.unmap(&mut env, &mut sink, &mut frames, small).unwrap();
    let ops = sink.transport().ops.clone();
    let inv: Vec<_> = ops
        .clone()
        .into_iter()
        .filter_map(|o| match o {
            MmuOp::InvlpgLocal { va } => Some(va),
            _ => None,
        })
        .collect();
    assert_eq!(inv, vec![va, va + PAGE_SIZE, va + 2 * PAGE_SIZE]);
    const { assert!(3 <= INVLPG_MAX) };
    // Every clear comes before the flush that covers it.
    let last_clear = ops
        .iter()
        .rposition(|o| matches!(o, MmuOp::PtUpdate { val: 0, .. }))
        .unwrap();
    let first_inv = ops
        .iter()
        .position(|o| matches!(o, MmuOp::InvlpgLocal { .. }))
        .unwrap();
    assert!(last_clear < first_inv);
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn running_out_of_frames_is_an_error_and_changes_nothing() {
    let w = world(65536, 0, Split::Half);
    parts!(w, env, sink, frames, vmap);
    let free0 = frames.free_frames();
    let (mut areas, err) = map_until_error(&mut vmap, &mut env, &mut sink, &mut frames, 4096);
    let VmapError::OutOfFrames { need, free } = err else {
        panic!("{err:?}")
    };
    assert!(need > free && need >= 4096, "{need} {free}");
    assert_eq!(
        frames.free_frames(),
        free,
        "nothing taken by the failed call"
    );
    assert_eq!(
        vmap.ranges().live_areas(),
        areas.len(),
        "its range given back"
    );
    w.m.borrow().check_invariants().unwrap();
    // Smaller requests still fit.
    areas.push(
        vmap.map(&mut env, &mut sink, &mut frames, free / 2)
            .unwrap(),
    );
    for a in areas.drain(..) {
        vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
    }
    assert_eq!(frames.free_frames(), free0);
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn exhausting_module_space_is_an_error_and_the_space_comes_back() {
    // 1.2 GiB of frames: more than the 1008 MiB of module space of the 1G split.
    let w = world(310_000, 0, Split::Full);
    parts!(w, env, sink, frames, vmap);
    let free0 = frames.free_frames();
    let (mut areas, err) = map_until_error(&mut vmap, &mut env, &mut sink, &mut frames, 8191);
    // 1008 MiB = 258048 pages: 31 areas of 8191 + guard.
    assert_eq!(areas.len(), 31);
    assert_eq!(
        err,
        VmapError::Range(RangeError::NoSpace {
            pages: 8191,
            largest: 258048 - 31 * 8192 - 1
        })
    );
    assert!(err.to_string().contains("module space exhausted"), "{err}");
    let last = areas.last().unwrap();
    assert!(last.va() + last.bytes() <= MODULES_END);
    w.m.borrow().check_invariants().unwrap();
    // Fragmentation: free every other area; a request bigger than one hole fails, holes
    // are reused.
    let mut kept = vec![];
    for (i, a) in areas.drain(..).enumerate() {
        if i % 2 == 0 {
            vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
        } else {
            kept.push(a);
        }
    }
    // Holes: 15 of 8192 pages inside, 8192 + 4096 at the end.
    assert_eq!(
        vmap.map(&mut env, &mut sink, &mut frames, 13000),
        Err(VmapError::Range(RangeError::NoSpace {
            pages: 13000,
            largest: 8192 + 4096 - 1
        }))
    );
    let hole = vmap.map(&mut env, &mut sink, &mut frames, 8000).unwrap();
    assert_eq!(hole.va(), FIXMAP_L2_BASE, "first fit: the first hole");
    kept.push(hole);
    for a in kept {
        vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
    }
    assert_eq!(frames.free_frames(), free0);
    assert_eq!(
        vmap.map(&mut env, &mut sink, &mut frames, 300_000),
        Err(VmapError::TooLarge {
            pages: 300_000,
            max: 258047
        })
    );
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn a_mapping_that_is_already_there_is_refused_never_overwritten() {
    // Two vmaps over the same tables (one does not know the other's areas): the second
    // meets the first's PTEs, as Linux met Xen's stale ones in 2014.
    let w = world(65536, 0, Split::Full);
    parts!(w, env, sink, frames, vmap);
    let a = vmap.map(&mut env, &mut sink, &mut frames, 10).unwrap();
    let before = frames_of(&w, &a);
    let mut other = w.vmap();
    let ops = w.m.borrow().ops_applied;
    let free = frames.free_frames();
    let err = other.map(&mut env, &mut sink, &mut frames, 4).unwrap_err();
    let (va, old, level, count) = not_none(&err);
    assert_eq!((va, level, count), (a.va(), Level::L1, 4));
    assert_eq!(pte::frame(old), before[0]);
    assert!(err.to_string().contains(&format!("{:#x}", a.va())), "{err}");
    assert_eq!(w.m.borrow().ops_applied, ops, "nothing written");
    assert_eq!(frames.free_frames(), free, "no frame taken");
    assert_eq!(frames_of(&w, &a), before, "the first area is intact");
    assert_eq!(other.stats.non_none_met, 4);
    // The poisoned range is not handed out again: the next try meets the rest of the
    // first area, and past it the other vmap would have to replace an L2 entry that is
    // not its own: refused too, at level 2.
    let err = other.map(&mut env, &mut sink, &mut frames, 4).unwrap_err();
    assert!(
        matches!(err, VmapError::NotNone { level: Level::L1, count: 4, va, .. } if va == a.va() + 5 * PAGE_SIZE),
        "{err:?}"
    );
    let err = other.map(&mut env, &mut sink, &mut frames, 4).unwrap_err();
    assert!(
        matches!(
            err,
            VmapError::NotNone {
                level: Level::L2,
                count: 1,
                ..
            }
        ),
        "{err:?}"
    );
    // In an L2 slot of its own it works (each refusal poisons its try, so it moves on).
    let b = loop {
        match other.map(&mut env, &mut sink, &mut frames, 600) {
            Ok(b) => break b,
            Err(VmapError::NotNone {
                level: Level::L2, ..
            }) => {}
            Err(e) => panic!("{e:?}"),
        }
    };
    assert!(b.va() >= FIXMAP_L2_BASE + L2_SPAN);
    other.unmap(&mut env, &mut sink, &mut frames, b).unwrap();
    vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
    w.m.borrow().check_invariants().unwrap();
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn bad_areas_handed_back_are_refused() {
    let w = world(65536, 0, Split::Full);
    parts!(w, env, sink, frames, vmap);
    let a = vmap.map(&mut env, &mut sink, &mut frames, 5).unwrap();
    let forged = VmArea::forge(a.va() + PAGE_SIZE, 4);
    assert!(matches!(
        vmap.unmap(&mut env, &mut sink, &mut frames, forged),
        Err(VmapError::Range(RangeError::NotAllocated { .. }))
    ));
    vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
}

/// The 2014 bug, reproduced: module space under L3[511] inherited the kernel's L2, and the
/// pte-none check is what meets it.
#[test]
#[cfg(feature = "regress-2014-fixmap-copy")]
fn the_2014_copy_is_met_by_the_pte_none_check() {
    let w = world(262144, 600 << 20, Split::Full);
    parts!(w, env, sink, frames, vmap);
    let ops = w.m.borrow().ops_applied;
    let err = vmap.map(&mut env, &mut sink, &mut frames, 16).unwrap_err();
    let (va, old, level, count) = not_none(&err);
    assert_eq!((va, level, count), (FIXMAP_L2_BASE, Level::L1, 16));
    assert_eq!(
        pte::frame(old),
        w.p2m[0],
        "the stale entry maps the kernel's first page"
    );
    assert_eq!(w.m.borrow().ops_applied, ops, "nothing overwritten");
    // Mapping on meets stale entries try after try, never writing into them. Past the
    // stale slots a further symptom of the bug shows: frames reclaimed from Xen's boot
    // region are still mapped writable through the stale slots, so the first one handed
    // out as a new L1 is refused by Xen (and vmap halts), or the map succeeds clear of them.
    let end = loop {
        match vmap.map(&mut env, &mut sink, &mut frames, 512) {
            Err(VmapError::NotNone { .. }) => {}
            other => break other,
        }
    };
    assert!(
        vmap.stats.non_none_met > 100_000,
        "{}",
        vmap.stats.non_none_met
    );
    match end {
        Ok(a) => assert!(a.va() >= FIXMAP_L2_BASE + 300 * L2_SPAN, "{:#x}", a.va()),
        Err(VmapError::Sink(e)) => {
            let why = sink.transport().refusals.last().unwrap().clone();
            assert!(why.contains("wanted L1"), "{e}: {why}");
            assert_eq!(
                vmap.map(&mut env, &mut sink, &mut frames, 1),
                Err(VmapError::Halted)
            );
        }
        Err(e) => panic!("{e:?}"),
    }
}

#[cfg(not(feature = "regress-2014-fixmap-copy"))]
proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Random map/unmap sequences: Xen's rules hold after every step, live areas keep their
    /// frames, and everything comes back at the end.
    #[test]
    fn random_map_unmap_sequences_stay_consistent(
        full in any::<bool>(),
        steps in proptest::collection::vec((0u8..3, 1u64..1500, any::<u16>()), 1..40),
    ) {
        let split = if full { Split::Full } else { Split::Half };
        let w = world(65536, 0, split);
        parts!(w, env, sink, frames, vmap);
        let free0 = frames.free_frames();
        let mut live: Vec<(VmArea, Vec<Mfn>)> = vec![];
        for (what, pages, pick) in steps {
            if what < 2 || live.is_empty() {
                match vmap.map(&mut env, &mut sink, &mut frames, pages) {
                    Ok(a) => {
                        let f = frames_of(&w, &a);
                        live.push((a, f));
                    }
                    Err(VmapError::OutOfFrames { .. }) => {}
                    Err(e) => prop_assert!(false, "{e:?}"),
                }
            } else {
                let (a, _) = live.swap_remove(pick as usize % live.len());
                vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
            }
            for (a, f) in &live {
                prop_assert_eq!(&frames_of(&w, a), f);
            }
            w.m.borrow().check_invariants().unwrap();
        }
        for (a, _) in live.drain(..) {
            vmap.unmap(&mut env, &mut sink, &mut frames, a).unwrap();
        }
        prop_assert_eq!(frames.free_frames(), free0);
        prop_assert!(report(&w, &vmap).ok());
    }
}
