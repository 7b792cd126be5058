//! The p2m publisher against the model of Xen's PV MMU, after a modelled takeover: the
//! window maps the list's own frames read-only at `P2M_LIST_BASE` (Xen validates every
//! table), the tree names the same frames, and the walks a toolstack makes agree with the
//! p2m; a broken publication is caught by the walk.

use std::cell::RefCell;
use xenpv_paging::layout::*;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::p2m::{self, P2mError, WalkError, Window};
use xenpv_testkit::mmu_model::PageType;
use xenpv_testkit::p2m_run::{publish_at_boot, ModelMachine};
use xenpv_testkit::takeover_run::{take_over_on_demand, tr, Bitmaps, Case, ModelDirect, Queued};

fn case(nr_pages: u64) -> Case {
    Case {
        nr_pages,
        kernel_pages: 0x59,
        initrd: 0,
        mod_start_pfn: false,
        split: Split::Half,
    }
}

#[test]
fn published_at_boot_walks_like_a_toolstack() {
    for nr in [4096u64, 16384, 65536 + 77] {
        let done = take_over_on_demand(&case(nr), 0, &[]);
        let out = done.out.expect("takeover");
        let m = RefCell::new(done.m);
        let mut bm = Bitmaps::new(nr);
        let mut frames = bm.allocator(&out, nr);
        let list = done.d.p2m_pfns;
        assert_eq!(
            done.d.mfn_list.as_u64() % PAGE_SIZE,
            0,
            "Xen page-aligns the list"
        );
        let (placed, p) = publish_at_boot(&m, &done.d.p2m, &out.tables, list, &mut frames)
            .unwrap_or_else(|e| panic!("nr {nr}: {e}"));
        let model = m.borrow();
        model.check_invariants().expect("model invariants");
        assert_eq!(p.max_pfn, nr);
        assert_eq!(p.p2m_vaddr, P2M_LIST_BASE.as_u64());
        assert_eq!(p.p2m_cr3 >> 12, done.d.p2m[out.tables.l4.0 as usize].0);
        // Every list page is mapped read-only at its place in the window.
        for k in 0..list.1 .0 - list.0 .0 {
            let t = tr(&model, P2M_LIST_BASE + k * PAGE_SIZE).expect("window page mapped");
            assert_eq!(t, (done.d.p2m[(list.0 .0 + k) as usize], false));
        }
        // The window's tables are page tables Xen validated; the tree's frames are data.
        for (i, &t) in placed.window.iter().enumerate() {
            let ty = model.frame_type(done.d.p2m[t.0 as usize].0).ty;
            let want = [PageType::L3, PageType::L2, PageType::L1];
            assert!(want.contains(&ty), "window table {i} is {ty:?}");
        }
        let mm = ModelMachine {
            m: &model,
            p2m: &done.d.p2m,
        };
        let w = p2m::verify(&p, list.0, &mm).expect("the walks agree with the p2m");
        assert_eq!((w.leaves, w.entries), (nr.div_ceil(512), nr));
    }
}

#[test]
fn a_broken_publication_fails_the_walk() {
    let nr = 8192;
    let done = take_over_on_demand(&case(nr), 0, &[]);
    let out = done.out.expect("takeover");
    let m = RefCell::new(done.m);
    let mut bm = Bitmaps::new(nr);
    let mut frames = bm.allocator(&out, nr);
    let list = done.d.p2m_pfns;
    let (placed, p) = publish_at_boot(&m, &done.d.p2m, &out.tables, list, &mut frames).unwrap();
    let model = m.borrow();
    let mm = ModelMachine {
        m: &model,
        p2m: &done.d.p2m,
    };
    // Nothing published (max_pfn 0): refused by name.
    let mut q = p;
    q.max_pfn = 0;
    assert_eq!(p2m::verify(&q, list.0, &mm), Err(WalkError::MaxPfn(0)));
    // A stale root (another frame of ours, not the L4): the list walk goes astray.
    let mut q = p;
    q.p2m_cr3 = done.d.p2m[placed.tree[0].0 as usize].0 << 12;
    assert!(p2m::verify(&q, list.0, &mm).is_err());
    // The tree's root zeroed, as a restore leaves it.
    let mut q = p;
    q.fll = Mfn(0);
    assert!(matches!(
        p2m::verify(&q, list.0, &mm),
        Err(WalkError::BadMfn { what: "fll", .. })
    ));
    // The list named one page off: both walks disagree with it.
    assert!(matches!(
        p2m::verify(&p, list.0 + 1, &mm),
        Err(WalkError::Mismatch { leaf: 0, .. })
    ));
}

#[test]
fn the_planner_refuses_bad_inputs_before_writing() {
    let nr = 4096;
    let done = take_over_on_demand(&case(nr), 0, &[]);
    let out = done.out.expect("takeover");
    let m = RefCell::new(done.m);
    let list = done.d.p2m_pfns;
    let env = ModelDirect {
        m: &m,
        p2m: &done.d.p2m,
        holes: &[],
    };
    let tables = [Pfn(nr - 3), Pfn(nr - 2)];
    let w = Window {
        l4: out.tables.l4,
        direct_l1: out.tables.direct_l1.0,
        tables: &tables,
        nx: true,
    };
    let l4 = m.borrow().base().unwrap();
    let before = m.borrow().table(l4);
    let mut q = Queued::new(&m);
    assert_eq!(
        p2m::window_plan(list, nr, &w, &env, &mut q),
        Err(P2mError::Frames { have: 2, need: 3 })
    );
    // A list of the wrong length for nr_pages.
    assert!(matches!(
        p2m::window_plan((list.0, list.1 + 1), nr, &w, &env, &mut q),
        Err(P2mError::BadList { .. })
    ));
    assert!(q.queue.is_empty(), "nothing emitted");
    assert_eq!(m.borrow().table(l4), before);
}
