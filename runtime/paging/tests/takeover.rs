//! The takeover planner run against the model of Xen's PV MMU rules, over the boot matrix
//! and over random layouts: every operation must be accepted, and the address space that
//! results must be the one the layout module draws.

use proptest::prelude::*;
use xenpv_paging::check;
use xenpv_paging::graft::LayoutError;
use xenpv_paging::layout::*;
use xenpv_paging::ops::pte;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::snapshot;
use xenpv_paging::takeover::TakeoverError;
use xenpv_testkit::mmu_model::PageType;
use xenpv_testkit::takeover_run::{
    take_over, take_over_on_demand, tr, Case, Done, Image, NoModules,
};

/// Everything the layout promises, checked on the model's address space.
fn verify(c: &Case, done: &Done) -> check::Report {
    let (m, d) = (&done.m, &done.d);
    let out = done
        .out
        .as_ref()
        .unwrap_or_else(|e| panic!("takeover refused: {e:?}"));
    let mfn = |p: Pfn| d.p2m[p.0 as usize];
    let image = Image::of(c.kernel_pages);
    assert_eq!(
        m.base(),
        Some(mfn(out.tables.l4).0),
        "running on the new L4"
    );
    // Xen's boot L4 let go of: no longer a page table, reclaimed as writable memory.
    assert_eq!(
        {
            let t = m.frame_type(mfn(d.xen_pt.0).0);
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
        .map(Pfn)
    {
        let (got, rw) =
            tr(m, direct_map_va(pfn)).unwrap_or_else(|| panic!("pfn {pfn:#x} not direct-mapped"));
        assert_eq!(got, mfn(pfn), "direct map of pfn {pfn:#x}");
        let table = out.tables.contains(pfn) || m.frame_type(mfn(pfn).0).ty.level().is_some();
        let image_ro = pfn.0 < (image.rodata_end - KERNEL_VIRT_BASE) / PAGE_SIZE;
        assert_eq!(
            rw,
            !(table || image_ro),
            "pfn {pfn:#x}: writable iff not a page table, text or read-only data"
        );
    }
    for pfn in out
        .tables
        .l4
        .up_to(out.tables.direct_l1.0 + out.tables.direct_l1.1)
        .filter(|&p| out.tables.contains(p))
    {
        assert!(
            !tr(m, direct_map_va(pfn)).unwrap().1,
            "table pfn {pfn:#x} read-only"
        );
    }
    // The kernel image mapped by section (W^X), nothing after it.
    let kpages = (d.kernel_end - KERNEL_VIRT_BASE) / PAGE_SIZE;
    assert_eq!(tr(m, KERNEL_VIRT_BASE), Some((mfn(Pfn(0)), false)));
    for p in 0..kpages {
        let va = KERNEL_VIRT_BASE + p * PAGE_SIZE;
        let want = if Some(va) == image.guard {
            None
        } else if va < image.text_end {
            Some((false, false)) // read + execute
        } else if va < image.rodata_end {
            Some((false, true)) // read-only, no-execute
        } else {
            Some((true, true)) // read-write, no-execute
        };
        let got = m.translate(va.as_u64()).map(|t| (t.writable, t.nx));
        assert_eq!(
            got, want,
            "image page {va:#x} (text to {:#x}, rodata to {:#x})",
            image.text_end, image.rodata_end
        );
    }
    assert_eq!(
        tr(m, d.kernel_end - PAGE_SIZE).map(|t| t.0),
        Some(mfn(Pfn(kpages - 1)))
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
        for p in [s, Pfn((s.0 + e.0) / 2), e - 1] {
            assert_eq!(tr(m, direct_map_va(p)).map(|t| t.0), Some(mfn(p)));
        }
    }
    // The reclaimed frames and the allocator's regions: nothing reserved is free, and
    // every frame a region does not hold is writable in the direct map (usable memory).
    for r in &out.regions {
        assert!(r.start < r.end && r.end <= Pfn(c.nr_pages), "{r:?}");
    }
    for pfn in d.xen_pt.0.up_to(d.xen_pt.1) {
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
        &m.table(mfn(t.level2_kernel).0),
        &m.table(mfn(t.level2_fixmap).0),
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
    let out = done
        .out
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:?} {:#x?}", done.d.p2m_pfns));
    // Xen's region ends at 0xffffffffc5400000: slots 0..=41 of L3[511] were grafted.
    assert_eq!(done.d.boot_end.as_u64(), 0xffff_ffff_c540_0000);
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
    let mfn = |p: Pfn| done.d.p2m[p.0 as usize];
    // ...module space aliases the kernel image at its very start...
    assert_eq!(tr(&done.m, FIXMAP_L2_BASE).map(|t| t.0), Some(mfn(Pfn(0))));
    // ...and the layout check says so.
    let report = check::check(
        c.split,
        done.d.kernel_end,
        &done.m.table(mfn(t.level2_kernel).0),
        &done.m.table(mfn(t.level2_fixmap).0),
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
        Some(done.d.p2m[done.d.xen_pt.0 .0 as usize].0),
        "still on Xen's tables"
    );
    // A boot region reaching the fixmap slots (an initrd of ~2 GiB mapped by Xen).
    let mut snap = snapshot::BootSnapshot {
        l2_kernel: [0; 512],
        l2_fixmap: Some([0; 512]),
        boot_end: VirtAddr::new(0xffff_ffff_ff20_0000),
        kernel_tail_l1: (Mfn(0), [0; 512]),
    };
    snap.l2_kernel[0] = 1;
    let e = xenpv_paging::graft::graft(&snap, KERNEL_VIRT_BASE + 0x59000, Split::Half).unwrap_err();
    assert_eq!(
        e,
        LayoutError::BootRegionReachesFixmap {
            boot_end: VirtAddr::new(0xffff_ffff_ff20_0000),
            limit: MODULES_END
        }
    );
    assert!(e.to_string().contains("mod-start-pfn"), "{e}");
    let e =
        xenpv_paging::graft::graft(&snap, KERNEL_VIRT_BASE + (600 << 20), Split::Half).unwrap_err();
    assert!(matches!(e, LayoutError::KernelTooBig { .. }));
}

#[test]
#[cfg(not(feature = "regress-2014-fixmap-copy"))]
fn a_4_mib_domain_takes_over_in_its_boot_region() {
    // Xen rounds the boot region up to 4 MiB: at 4 MiB it is all of memory, so the
    // tables go into its free tail, written with plain stores (no ClearPage, no
    // entry-by-entry writes), and the layout is the drawn one.
    for kernel_pages in [0x59, 0x130, 0x2c0] {
        let c = Case {
            nr_pages: 1024,
            kernel_pages,
            initrd: 0,
            mod_start_pfn: false,
            split: Split::Full,
        };
        let done = take_over(&c, 0);
        let out = done.out.as_ref().expect("takeover at 4 MiB");
        assert!(out.in_boot_region, "{kernel_pages:#x}-page image");
        assert!(out.tables.l4.0 + out.tables.count() <= 1024);
        let report = verify(&c, &done);
        assert!(report.ok(), "{report}");
    }
}

#[test]
fn a_domain_too_small_for_the_tables_is_refused_clearly() {
    // 256 MiB with an image so big that Xen's boot region (rounded to 4 MiB) is all of
    // memory: the tables (138 frames) must fit in its free tail. With a 65137-page image
    // they just do; three pages more and they do not, and nothing lies above.
    let c = |kernel_pages| Case {
        nr_pages: 65536,
        kernel_pages,
        initrd: 0,
        mod_start_pfn: false,
        split: Split::Full,
    };
    let fits = take_over_on_demand(&c(65137), 0, &[]);
    assert!(fits.out.as_ref().is_ok_and(|o| o.in_boot_region));
    let done = take_over_on_demand(&c(65140), 0, &[]);
    let Err(TakeoverError::Layout(e @ LayoutError::OutOfFrames { need, have })) = done.out else {
        panic!("not refused: {:?}", done.out.map(|o| o.tables));
    };
    assert_eq!((need, have), (138, 135), "{e}");
    assert_eq!(
        e.to_string(),
        "the new page tables need 138 free frames in or above the boot region's free tail, there are 135"
    );
    assert_eq!(
        done.m.base(),
        Some(done.d.p2m[done.d.xen_pt.0 .0 as usize].0),
        "still on Xen's tables"
    );
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
    assert!(
        held(Pfn(0)) && held(m0) && held(m1 - 1) && held(done.d.p2m_pfns.0) && held(out.tables.l4)
    );
    assert!(out.reclaimed > 0);
    let _ = pte::PRESENT;
}
