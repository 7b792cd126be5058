//! The takeover planner run against the model of Xen's PV MMU rules, over the boot matrix
//! and over random layouts: every operation must be accepted, and the address space that
//! results must be the one the layout module draws.

use super::check::{self, Inspect};
use super::graft::LayoutError;
use super::layout::*;
use super::model::{build_dom0, Dom0Config, PageType, XenError, XenPvModel as Model};
use super::ops::{pte, Mfn, MmuOp, MmuSink, Pfn};
use super::snapshot::{self, TableReader};
use super::takeover::{self, Input, Outcome, P2m, TakeoverError};
use proptest::prelude::*;
use std::cell::RefCell;

/// The model as a sink and as the memory the planner reads through.
pub(super) struct Shared<'a>(pub(super) &'a RefCell<Model>);

impl MmuSink for Shared<'_> {
    type Error = XenError;
    fn submit(&mut self, op: MmuOp) -> Result<(), Self::Error> {
        self.0.borrow_mut().apply(op)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The p2m list read through the guest's mappings of the moment, as the runtime does: a
/// plan that read it through the boot mapping after retiring it would fail here.
struct GuestP2m<'a> {
    m: &'a RefCell<Model>,
    mfn_list: u64,
}

impl P2m for GuestP2m<'_> {
    fn mfn(&self, pfn: Pfn, switched: bool) -> Option<Mfn> {
        let base = if switched {
            DIRECT_MAP_BASE + (self.mfn_list - KERNEL_VIRT_BASE)
        } else {
            self.mfn_list
        };
        self.m.borrow().read_va(base + pfn * 8).ok()
    }
}

struct BootReader<'a> {
    m: &'a RefCell<Model>,
    d: &'a Dom0,
}

impl TableReader for BootReader<'_> {
    fn table(&self, mfn: Mfn) -> Option<[u64; 512]> {
        (self.d.xen_pt.0..self.d.xen_pt.1)
            .any(|p| self.d.p2m[p as usize] == mfn)
            .then(|| self.m.borrow().table(mfn))
    }
}

/// The start_info facts of the dom0 builder model, in the shape the tests use.
pub(super) struct Dom0 {
    pub(super) p2m: Vec<Mfn>,
    pub(super) kernel_end: u64,
    pub(super) module: Option<(Pfn, Pfn)>,
    p2m_pfns: (Pfn, Pfn),
    mfn_list: u64,
    xen_pt: (Pfn, Pfn),
    boot_end: u64,
    shared_info: Mfn,
}

/// (mfn, writable) of `va` in the model's current tables.
pub(super) fn tr(m: &Model, va: u64) -> Option<(Mfn, bool)> {
    m.translate(va).map(|t| (t.mfn, t.writable))
}

pub(super) struct Case {
    pub(super) nr_pages: u64,
    pub(super) kernel_pages: u64,
    pub(super) initrd: u64,
    pub(super) mod_start_pfn: bool,
    pub(super) split: Split,
}

pub(super) struct Done {
    pub(super) m: Model,
    pub(super) d: Dom0,
    pub(super) out: Result<Outcome, TakeoverError<XenError>>,
}

pub(super) fn take_over(c: &Case, module_space_min: u64) -> Done {
    let (model, b) = build_dom0(&Dom0Config {
        nr_pages: c.nr_pages,
        kernel_bytes: c.kernel_pages * PAGE_SIZE,
        initrd_bytes: (c.initrd > 0).then_some(c.initrd),
        mod_start_pfn: c.mod_start_pfn,
        p2m_seed: c.nr_pages ^ c.initrd,
    });
    let pfn_of = |va: u64| (va - KERNEL_VIRT_BASE) / PAGE_SIZE;
    let pt0 = pfn_of(b.pt_base);
    let d = Dom0 {
        p2m: model.p2m().to_vec(),
        kernel_end: b.kernel_end,
        module: b.initrd_pfn.map(|p| (p, p + b.mod_len.div_ceil(PAGE_SIZE))),
        p2m_pfns: (
            pfn_of(b.mfn_list),
            (b.mfn_list - KERNEL_VIRT_BASE + c.nr_pages * 8).div_ceil(PAGE_SIZE),
        ),
        mfn_list: b.mfn_list,
        xen_pt: (pt0, pt0 + b.nr_pt_frames),
        boot_end: b.v_end,
        shared_info: b.shared_info >> 12,
    };
    assert_eq!(
        model.base(),
        Some(d.p2m[pt0 as usize]),
        "pt_base is the current L4"
    );
    let m = RefCell::new(model);
    let xen_l4 = d.p2m[d.xen_pt.0 as usize];
    let snap =
        snapshot::read(&BootReader { m: &m, d: &d }, xen_l4, d.kernel_end).expect("snapshot");
    assert_eq!(snap.boot_end, d.boot_end);
    let p2m = GuestP2m {
        m: &m,
        mfn_list: d.mfn_list,
    };
    let input = Input {
        nr_pages: c.nr_pages,
        p2m: &p2m,
        kernel_end: d.kernel_end,
        snapshot: &snap,
        xen_l4,
        xen_pt: d.xen_pt,
        p2m_pfns: d.p2m_pfns,
        module: d.module,
        shared_rings: [None, None],
        shared_info: d.shared_info,
        split: c.split,
        module_space_min,
        nx: true,
    };
    let out = takeover::run(&input, &mut Shared(&m));
    Done {
        m: m.into_inner(),
        d,
        out,
    }
}

struct NoModules;
impl Inspect for NoModules {
    fn is_module_table(&self, _: Mfn) -> bool {
        false
    }
    fn first_page_holds(&self, _: Mfn) -> &'static str {
        "something"
    }
}

/// Everything the layout promises, checked on the model's address space.
fn verify(c: &Case, done: &Done) -> check::Report {
    let (m, d) = (&done.m, &done.d);
    let out = done
        .out
        .as_ref()
        .unwrap_or_else(|e| panic!("takeover refused: {e:?}"));
    let mfn = |p: Pfn| d.p2m[p as usize];
    assert_eq!(m.base(), Some(mfn(out.tables.l4)), "running on the new L4");
    // Xen's boot L4 let go of: no longer a page table, reclaimed as writable memory.
    assert_eq!(
        {
            let t = m.frame_type(mfn(d.xen_pt.0));
            (t.ty, t.count, t.pinned)
        },
        (PageType::Writable, 1, false),
        "Xen's boot L4 reclaimed"
    );
    m.check_invariants().unwrap();
    // The direct map: every pfn, page tables read-only.
    let step = (c.nr_pages / 4096).max(1);
    for pfn in (0..c.nr_pages)
        .step_by(step as usize)
        .chain([c.nr_pages - 1])
    {
        let (got, rw) =
            tr(m, direct_map_va(pfn)).unwrap_or_else(|| panic!("pfn {pfn:#x} not direct-mapped"));
        assert_eq!(got, mfn(pfn), "direct map of pfn {pfn:#x}");
        let table = out.tables.contains(pfn) || m.frame_type(mfn(pfn)).ty.level().is_some();
        assert_eq!(rw, !table, "pfn {pfn:#x}: writable iff not a page table");
    }
    for pfn in out.tables.l4..out.tables.l4 + out.tables.count() {
        assert!(
            !tr(m, direct_map_va(pfn)).unwrap().1,
            "table pfn {pfn:#x} read-only"
        );
    }
    // The kernel image mapped, nothing after it.
    let kpages = (d.kernel_end - KERNEL_VIRT_BASE) / PAGE_SIZE;
    assert_eq!(tr(m, KERNEL_VIRT_BASE), Some((mfn(0), true)));
    assert_eq!(
        tr(m, d.kernel_end - PAGE_SIZE).map(|t| t.0),
        Some(mfn(kpages - 1))
    );
    assert_eq!(tr(m, d.kernel_end), None, "the boot region is retired");
    // Module space empty, slot by slot; the fixmap holds shared_info.
    // (With the 2014 regression module space is not empty: the check below must say so.)
    let mut va = c.split.modules_start();
    while va < MODULES_END && !cfg!(feature = "regress-2014-fixmap-copy") {
        assert_eq!(tr(m, va), None, "module space at {va:#x}");
        va += L2_SPAN;
    }
    assert_eq!(tr(m, Fixmap::SharedInfo.va()), Some((d.shared_info, true)));
    // The initrd, wherever Xen put it, through the direct map.
    if let Some((s, e)) = d.module {
        for p in [s, (s + e) / 2, e - 1] {
            assert_eq!(tr(m, direct_map_va(p)).map(|t| t.0), Some(mfn(p)));
        }
    }
    // The reclaimed frames and the allocator's regions: nothing reserved is free, and
    // every frame a region does not hold is writable in the direct map (usable memory).
    for r in &out.regions {
        assert!(r.start < r.end && r.end <= c.nr_pages, "{r:?}");
    }
    for pfn in d.xen_pt.0..d.xen_pt.1 {
        let held = out.regions.iter().any(|r| (r.start..r.end).contains(&pfn));
        assert_eq!(
            tr(m, direct_map_va(pfn)).unwrap().1,
            !held,
            "boot table pfn {pfn:#x}"
        );
    }
    let t = &out.tables;

    check::check(
        c.split,
        d.kernel_end,
        &m.table(mfn(t.level2_kernel)),
        &m.table(mfn(t.level2_fixmap)),
        !tr(m, direct_map_va(t.level1_fixmap)).unwrap().1,
        &NoModules,
    )
}

#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn matrix() -> Vec<Case> {
    let mut v = vec![];
    for (nr, initrd) in [
        (65536, 0),
        (65536, 64 << 20),
        (262144, 600 << 20),
        (524288, 1100 << 20),
    ] {
        for split in [Split::Half, Split::Full] {
            v.push(Case {
                nr_pages: nr,
                kernel_pages: 0x59,
                initrd,
                mod_start_pfn: false,
                split,
            });
        }
    }
    v.push(Case {
        nr_pages: 524288,
        kernel_pages: 0x59,
        initrd: 1100 << 20,
        mod_start_pfn: true,
        split: Split::Full,
    });
    v
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn the_boot_matrix_is_accepted_by_the_model_and_gives_the_drawn_layout() {
    for c in matrix() {
        let done = take_over(&c, 0);
        let report = verify(&c, &done);
        assert!(report.ok(), "{}", report);
        let text = report.to_string();
        assert!(
            text.contains("layout: level2_kernel 0=kernel 1-511=free"),
            "{text}"
        );
        assert!(
            text.contains("layout: level2_fixmap 0-505=free 506=fixmap 507-511=free fixmap_l1=ro"),
            "{text}"
        );
    }
}

#[test]
fn a_big_initrd_really_spills_into_l3_511_and_is_grafted_exactly() {
    let c = Case {
        nr_pages: 524288,
        kernel_pages: 0x59,
        initrd: 1100 << 20,
        mod_start_pfn: false,
        split: Split::Half,
    };
    let done = take_over(&c, 0);
    let out = done.out.as_ref().unwrap();
    // Xen's region ends at 0xffffffffc5400000: slots 0..=41 of L3[511] were grafted.
    assert_eq!(done.d.boot_end, 0xffff_ffff_c540_0000);
    assert_eq!(
        out.graft.retire_fixmap.iter().collect::<Vec<_>>(),
        (0..42).collect::<Vec<_>>()
    );
    assert_eq!(out.graft.retire_kernel.len(), 511);
}

#[test]
#[cfg(feature = "regress-2014-fixmap-copy")]
fn the_2014_copy_is_caught_by_the_layout_check() {
    let c = Case {
        nr_pages: 262144,
        kernel_pages: 0x59,
        initrd: 600 << 20,
        mod_start_pfn: false,
        split: Split::Full,
    };
    let done = take_over(&c, 0);
    // Xen accepts the plan (the bug is legal, just wrong)...
    let out = done
        .out
        .as_ref()
        .expect("the model accepts the buggy plan, as Xen did");
    let t = &out.tables;
    let mfn = |p: Pfn| done.d.p2m[p as usize];
    // ...module space aliases the kernel image at its very start...
    assert_eq!(tr(&done.m, FIXMAP_L2_BASE).map(|t| t.0), Some(mfn(0)));
    // ...and the layout check says so.
    let report = check::check(
        c.split,
        done.d.kernel_end,
        &done.m.table(mfn(t.level2_kernel)),
        &done.m.table(mfn(t.level2_fixmap)),
        true,
        &NoModules,
    );
    assert!(!report.ok());
    assert_eq!(report.first_stale.map(|s| (s.0, s.1)), Some((L3_FIXMAP, 0)));
    assert!(report.stale >= 300, "{} stale slots", report.stale);
}

#[test]
fn layouts_that_cannot_fit_are_refused_before_anything_is_written() {
    let c = Case {
        nr_pages: 65536,
        kernel_pages: 0x59,
        initrd: 0,
        mod_start_pfn: false,
        split: Split::Full,
    };
    let done = take_over(&c, 2000 << 20);
    assert!(matches!(
        done.out,
        Err(TakeoverError::Layout(LayoutError::ModuleSpaceTooSmall { have_bytes, want_bytes, .. }))
            if have_bytes == 1008 << 20 && want_bytes == 2000 << 20
    ));
    assert_eq!(
        done.m.base(),
        Some(done.d.p2m[done.d.xen_pt.0 as usize]),
        "still on Xen's tables"
    );
    // A boot region reaching the fixmap slots (an initrd of ~2 GiB mapped by Xen).
    let mut snap = snapshot::BootSnapshot {
        l2_kernel: [0; 512],
        l2_fixmap: Some([0; 512]),
        boot_end: 0xffff_ffff_ff20_0000,
        kernel_tail_l1: (0, [0; 512]),
    };
    snap.l2_kernel[0] = 1;
    let e = super::graft::graft(&snap, KERNEL_VIRT_BASE + 0x59000, Split::Half).unwrap_err();
    assert_eq!(
        e,
        LayoutError::BootRegionReachesFixmap {
            boot_end: 0xffff_ffff_ff20_0000,
            limit: MODULES_END
        }
    );
    assert!(e.to_string().contains("mod-start-pfn"), "{e}");
    let e = super::graft::graft(&snap, KERNEL_VIRT_BASE + (600 << 20), Split::Half).unwrap_err();
    assert!(matches!(e, LayoutError::KernelTooBig { .. }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_layouts_are_accepted_and_leave_module_space_empty(
        nr_pages in 16384u64..200_000,
        kernel_pages in 1u64..2048,
        initrd_mib in 0u64..700,
        mod_start_pfn in any::<bool>(),
        full in any::<bool>(),
    ) {
        let initrd = (initrd_mib << 20).min((nr_pages - kernel_pages - 8192) * PAGE_SIZE / 2);
        let c = Case { nr_pages, kernel_pages, initrd, mod_start_pfn, split: if full { Split::Full } else { Split::Half } };
        let done = take_over(&c, 0);
        let report = verify(&c, &done);
        prop_assert_eq!(report.ok(), !cfg!(feature = "regress-2014-fixmap-copy"), "{}", report);
    }
}

#[test]
fn reserved_regions_never_overlap_and_cover_what_must_survive() {
    let c = Case {
        nr_pages: 262144,
        kernel_pages: 0x59,
        initrd: 600 << 20,
        mod_start_pfn: false,
        split: Split::Half,
    };
    let done = take_over(&c, 0);
    let out = done.out.as_ref().unwrap();
    let mut r: Vec<_> = out.regions.iter().collect();
    r.sort_by_key(|x| x.start);
    for w in r.windows(2) {
        assert!(w[0].end <= w[1].start, "{:?} overlaps {:?}", w[0], w[1]);
    }
    let held = |p: Pfn| out.regions.iter().any(|x| (x.start..x.end).contains(&p));
    let (m0, m1) = done.d.module.unwrap();
    assert!(held(0) && held(m0) && held(m1 - 1) && held(done.d.p2m_pfns.0) && held(out.tables.l4));
    assert!(out.reclaimed > 0);
    let _ = pte::PRESENT;
}
