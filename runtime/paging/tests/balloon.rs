//! The balloon planner against the model of Xen's PV MMU and of the domain's
//! reservation: giving frames back and taking them again keeps the p2m, the M2P, the
//! direct map and the allocator consistent (the guest's own self-check, and Xen's
//! reference counts); a frame in use is never given; the floor holds; and hostile
//! answers from Xen (fewer extents, an error, an overcount, bad mfns) leave a consistent
//! state and are counted.
#![cfg(not(feature = "regress-2014-fixmap-copy"))]

use proptest::prelude::*;
use std::cell::RefCell;
use xenpv_paging::balloon::{
    Balloon, BalloonFail, Goal, P2mAccess, Reservation, Step, INVALID_P2M, RESERVE_PAGES,
};
use xenpv_paging::direct::{DirectMap, PtWrite};
use xenpv_paging::frames::{bitmap_words, FrameAllocator, CHUNK_PAGES};
use xenpv_paging::layout::*;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::takeover::Outcome;
use xenpv_paging::XenError;
use xenpv_testkit::mmu_model::XenPvModel as Model;
use xenpv_testkit::takeover_run::{
    direct_map, take_over_on_demand, tr, Bitmaps, Case, ModelDirect, Queued,
};

const NR: u64 = 65536; // 256 MiB

/// The guest's p2m (a copy it writes) and Xen's M2P (the model's).
struct P2m<'a> {
    v: Vec<Mfn>,
    m: &'a RefCell<Model>,
}

impl P2mAccess for P2m<'_> {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        self.v.get(pfn.0 as usize).copied()
    }
    fn set_mfn(&mut self, pfn: Pfn, mfn: Mfn) {
        self.v[pfn.0 as usize] = mfn;
    }
    fn m2p(&self, mfn: Mfn) -> Option<Pfn> {
        self.m.borrow().m2p(mfn.0).map(Pfn)
    }
    fn max_mfn(&self) -> Mfn {
        Mfn(1 << 32)
    }
}

/// How the model's Xen answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Honest,
    /// Does only the first `k` extents.
    Short(u64),
    /// Fails, doing nothing.
    Error,
    /// Does all, says it did 5 more.
    Over,
    /// Populate: the first extent's mfn out of range.
    BadMfn,
    /// Populate: the first extent's mfn is the second's (its M2P names another pfn).
    WrongM2p,
}

struct Xen<'a> {
    m: &'a RefCell<Model>,
    answer: Answer,
}

impl Reservation for Xen<'_> {
    fn decrease(&mut self, mfns: &mut [u64]) -> Result<u64, XenError> {
        let k = match self.answer {
            Answer::Error => return Err(XenError(-22)),
            Answer::Short(k) => k.min(mfns.len() as u64),
            _ => mfns.len() as u64,
        };
        let mut m = self.m.borrow_mut();
        for &mfn in &mfns[..k as usize] {
            // A refusal here is a planner bug (a mapped or typed frame given back).
            m.remove_page(mfn)
                .unwrap_or_else(|e| panic!("decrease: {e}"));
        }
        Ok(if self.answer == Answer::Over {
            k + 5
        } else {
            k
        })
    }
    fn populate(&mut self, frames: &mut [u64]) -> Result<u64, XenError> {
        let k = match self.answer {
            Answer::Error => return Err(XenError(-12)),
            Answer::Short(k) => k.min(frames.len() as u64),
            _ => frames.len() as u64,
        };
        let mut m = self.m.borrow_mut();
        for f in &mut frames[..k as usize] {
            *f = m.populate_page(*f);
        }
        match self.answer {
            Answer::BadMfn => frames[0] = 1 << 40,
            Answer::WrongM2p if k >= 2 => frames[0] = frames[1],
            _ => {}
        }
        Ok(if self.answer == Answer::Over {
            k + 5
        } else {
            k
        })
    }
}

/// A guest after the on-demand takeover, with some chunks mapped and frames in use.
struct Guest {
    m: RefCell<Model>,
    p2m0: Vec<Mfn>,
    out: Outcome,
    dm: RefCell<DirectMap>,
    /// Xen's pages less nr_pages at the start.
    offset: i64,
}

fn guest() -> Guest {
    let c = Case {
        nr_pages: NR,
        kernel_pages: 0x59,
        initrd: 0,
        mod_start_pfn: false,
        split: Split::Full,
    };
    let done = take_over_on_demand(&c, 0, &[]);
    let out = done.out.expect("takeover");
    let offset = done.m.tot_pages() as i64 - NR as i64;
    Guest {
        m: RefCell::new(done.m),
        p2m0: done.d.p2m.clone(),
        dm: RefCell::new(direct_map(&out, NR, PtWrite::Stores)),
        out,
        offset,
    }
}

/// Map `chunks` more chunks of the direct map (what the heap's growth does).
fn grow(g: &Guest, frames: &mut FrameAllocator<'_>, p2m: &[Mfn], chunks: usize) {
    let mut env = ModelDirect {
        m: &g.m,
        p2m,
        holes: &[],
    };
    for _ in 0..chunks {
        g.dm.borrow_mut()
            .grow(frames, &mut env, &mut Queued::new(&g.m))
            .unwrap();
    }
}

/// Everything consistent: Xen's counts (the model's invariants), the guest's self-check
/// (against Xen's reservation), every free frame mapped read-write, the held ones
/// untouched.
fn consistent(g: &Guest, b: &Balloon, frames: &FrameAllocator<'_>, p2m: &P2m<'_>, held: &[Pfn]) {
    g.m.borrow().check_invariants().unwrap();
    let l1 = g.out.tables.direct_l1.0 .0;
    let pte = |pfn: Pfn| {
        frames.is_mapped(pfn).then(|| {
            let t = p2m.v[(l1 + pfn.0 / CHUNK_PAGES) as usize];
            g.m.borrow().table(t.0)[(pfn.0 % CHUNK_PAGES) as usize]
        })
    };
    let tot = g.m.borrow().tot_pages();
    b.check(frames, p2m, &pte, Some((tot, g.offset)))
        .unwrap_or_else(|e| panic!("self-check: {e}"));
    for pfn in (0..NR).map(Pfn).filter(|&p| !frames.is_taken(p)) {
        assert_eq!(
            tr(&g.m.borrow(), direct_map_va(pfn)),
            Some((p2m.v[pfn.0 as usize], true)),
            "free pfn {pfn:#x} mapped read-write"
        );
    }
    for &pfn in held {
        assert!(!frames.is_ballooned(pfn), "held pfn {pfn:#x} ballooned");
        assert_eq!(p2m.v[pfn.0 as usize], g.p2m0[pfn.0 as usize]);
        g.m.borrow_mut()
            .write_va(direct_map_va(pfn).as_u64(), 0x5a5a)
            .unwrap_or_else(|f| panic!("held pfn {pfn:#x}: {}", f.what));
    }
}

/// Run towards `target` pages until the planner says done (or a batch does nothing).
fn run(
    g: &Guest,
    b: &mut Balloon,
    frames: &mut FrameAllocator<'_>,
    p2m: &mut P2m<'_>,
    answer: Answer,
    target: u64,
) -> Goal {
    let mut xen = Xen { m: &g.m, answer };
    b.begin();
    for _ in 0..20_000 {
        let goal = Goal::new(frames, target);
        let mut sink = Queued::new(&g.m);
        let r = match goal.step() {
            Step::Done => return goal,
            Step::Release(n) => b.release(frames, p2m, &mut sink, &mut xen, n),
            Step::Populate(n) => b.populate(frames, p2m, &mut sink, &mut xen, n),
        };
        match r {
            Ok(batch) if batch.done == 0 => return goal,
            Ok(_) => {}
            Err(BalloonFail::Nothing) => return goal,
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("no end in 20000 batches");
}

#[test]
fn down_to_96_mib_and_back_keeps_everything_consistent() {
    let g = guest();
    let mut bm = Bitmaps::new(NR);
    let mut frames = bm.allocator(&g.out, NR);
    let mut record = vec![!0u64; bitmap_words(NR)];
    frames.attach_balloon(&mut record).unwrap();
    let mut p2m = P2m {
        v: g.p2m0.clone(),
        m: &g.m,
    };
    grow(&g, &mut frames, &p2m.v.clone(), 20);
    // Frames in use, spread out: never given away.
    let mut held = vec![];
    for i in 0..4000 {
        let p = frames.alloc().unwrap();
        if i % 3 == 0 {
            held.push(p);
        } else {
            frames.free(p).unwrap();
        }
    }
    let mut b = Balloon::new(g.out.tables.direct_l1.0, true);
    consistent(&g, &b, &frames, &p2m, &held);

    let goal = run(&g, &mut b, &mut frames, &mut p2m, Answer::Honest, 24576);
    assert_eq!((goal.current, goal.shortfall), (24576, 0));
    assert_eq!(frames.ballooned_frames(), NR - 24576);
    assert_eq!(b.counters.released, NR - 24576);
    assert_eq!(g.m.borrow().tot_pages() as i64, 24576 + g.offset);
    consistent(&g, &b, &frames, &p2m, &held);
    // Unmapped chunks went first: the mapped free frames are mostly still there.
    assert!(frames.free_frames() > 5000, "{}", frames.free_frames());

    // The direct map grows over ballooned frames: they stay out of the allocator.
    let v = p2m.v.clone();
    let mut env = ModelDirect {
        m: &g.m,
        p2m: &v,
        holes: &[],
    };
    g.dm.borrow_mut()
        .map_all(&mut frames, &mut env, &mut Queued::new(&g.m))
        .unwrap();
    assert_eq!(frames.unmapped_frames(), 0);
    consistent(&g, &b, &frames, &p2m, &held);

    let goal = run(&g, &mut b, &mut frames, &mut p2m, Answer::Honest, NR);
    assert_eq!((goal.current, frames.ballooned_frames()), (NR, 0));
    assert_eq!(b.counters.populated, NR - 24576);
    consistent(&g, &b, &frames, &p2m, &held);
    // Every frame is usable again: allocate them all and write them.
    while let Some(p) = frames.alloc() {
        g.m.borrow_mut()
            .write_va(direct_map_va(p).as_u64(), 1)
            .unwrap_or_else(|f| panic!("pfn {p:#x}: {}", f.what));
    }
    assert_eq!(b.counters, {
        let mut c = b.counters;
        c.refused = 0;
        c.short = 0;
        c.errors = 0;
        c.overcounts = 0;
        c.leaked = 0;
        c.pte_failures = 0;
        c
    });
}

#[test]
fn the_floor_holds_and_frames_in_use_stay() {
    let g = guest();
    let mut bm = Bitmaps::new(NR);
    let mut frames = bm.allocator(&g.out, NR);
    let mut record = vec![0u64; bitmap_words(NR)];
    frames.attach_balloon(&mut record).unwrap();
    let mut p2m = P2m {
        v: g.p2m0.clone(),
        m: &g.m,
    };
    grow(&g, &mut frames, &p2m.v.clone(), 10);
    let held: Vec<Pfn> = (0..3000).map(|_| frames.alloc().unwrap()).collect();
    let mut b = Balloon::new(g.out.tables.direct_l1.0, true);
    // 8 MiB: below what is in use.
    let goal = run(&g, &mut b, &mut frames, &mut p2m, Answer::Honest, 2048);
    assert_eq!(goal.step(), Step::Done);
    assert!(goal.shortfall > 0, "{goal:?}");
    assert_eq!(goal.current, goal.floor);
    assert_eq!(
        frames.available_frames(),
        RESERVE_PAGES,
        "the reserve is kept"
    );
    assert_eq!(goal.current, NR - frames.ballooned_frames());
    assert_eq!(goal.shortfall, goal.floor - 2048);
    consistent(&g, &b, &frames, &p2m, &held);
}

#[test]
fn a_batch_never_takes_a_frame_in_use() {
    let g = guest();
    let mut bm = Bitmaps::new(NR);
    let mut frames = bm.allocator(&g.out, NR);
    let mut record = vec![0u64; bitmap_words(NR)];
    frames.attach_balloon(&mut record).unwrap();
    let mut b = Balloon::new(g.out.tables.direct_l1.0, true);
    let mut out = [Pfn(0); 64];
    // Every candidate is free or in an unmapped chunk and reserved by nothing.
    let mut seen = 0;
    loop {
        let n = b.select(&frames, &mut out);
        if n == 0 {
            break;
        }
        for &p in &out[..n] {
            assert!(frames.region_of(p).is_none() && (!frames.is_mapped(p) || !frames.is_taken(p)));
            frames.balloon_take(p).unwrap();
            seen += 1;
        }
    }
    assert_eq!(seen, frames.ballooned_frames());
    assert_eq!(frames.available_frames(), 0);
    assert!(
        frames.alloc().is_none(),
        "a ballooned frame is never handed out"
    );
}

/// One change under a hostile answer, then an honest one: consistent all along, and the
/// answer counted.
fn hostile(answer: Answer, down: bool) -> Balloon {
    let g = guest();
    let mut bm = Bitmaps::new(NR);
    let mut frames = bm.allocator(&g.out, NR);
    let mut record = vec![0u64; bitmap_words(NR)];
    frames.attach_balloon(&mut record).unwrap();
    let mut p2m = P2m {
        v: g.p2m0.clone(),
        m: &g.m,
    };
    grow(&g, &mut frames, &p2m.v.clone(), 4);
    let held: Vec<Pfn> = (0..500).map(|_| frames.alloc().unwrap()).collect();
    let mut b = Balloon::new(g.out.tables.direct_l1.0, true);
    if !down {
        run(&g, &mut b, &mut frames, &mut p2m, Answer::Honest, 30000);
    }
    let target = if down { 30000 } else { NR };
    run(&g, &mut b, &mut frames, &mut p2m, answer, target);
    consistent(&g, &b, &frames, &p2m, &held);
    // An honest Xen afterwards finishes the change (leaked frames aside).
    let goal = run(&g, &mut b, &mut frames, &mut p2m, Answer::Honest, target);
    consistent(&g, &b, &frames, &p2m, &held);
    if down {
        assert_eq!(goal.current, 30000);
    }
    b
}

#[test]
fn hostile_decreases_leave_a_consistent_state() {
    let b = hostile(Answer::Short(100), true);
    assert!(b.counters.refused > 0, "{:?}", b.counters);
    let b = hostile(Answer::Short(0), true);
    assert!(b.counters.refused >= 256, "{:?}", b.counters);
    let b = hostile(Answer::Error, true);
    assert!(b.counters.errors > 0 && b.counters.released == NR - 30000);
    let b = hostile(Answer::Over, true);
    assert!(b.counters.overcounts > 0 && b.counters.released == NR - 30000);
}

#[test]
fn hostile_populates_leave_a_consistent_state() {
    let b = hostile(Answer::Short(7), false);
    assert!(
        b.counters.short > 0 && b.counters.leaked == 0,
        "{:?}",
        b.counters
    );
    let b = hostile(Answer::Error, false);
    assert!(b.counters.errors > 0, "{:?}", b.counters);
    let b = hostile(Answer::Over, false);
    assert!(b.counters.overcounts > 0, "{:?}", b.counters);
    let b = hostile(Answer::BadMfn, false);
    assert!(b.counters.leaked > 0, "{:?}", b.counters);
    let b = hostile(Answer::WrongM2p, false);
    assert!(b.counters.leaked > 0, "{:?}", b.counters);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    /// Any sequence of targets and answers: consistent after each change.
    #[test]
    fn any_sequence_of_targets_stays_consistent(
        steps in prop::collection::vec(
            (1024u64..NR + 1000, prop_oneof![
                4 => Just(Answer::Honest),
                1 => (0u64..300).prop_map(Answer::Short),
                1 => Just(Answer::Error),
                1 => Just(Answer::BadMfn),
                1 => Just(Answer::WrongM2p),
            ], 0usize..6),
            1..5,
        ),
    ) {
        let g = guest();
        let mut bm = Bitmaps::new(NR);
        let mut frames = bm.allocator(&g.out, NR);
        let mut record = vec![0u64; bitmap_words(NR)];
        frames.attach_balloon(&mut record).unwrap();
        let mut p2m = P2m { v: g.p2m0.clone(), m: &g.m };
        let held: Vec<Pfn> = (0..200).map(|_| frames.alloc().unwrap()).collect();
        let mut b = Balloon::new(g.out.tables.direct_l1.0, true);
        for (target, answer, chunks) in steps {
            let v = p2m.v.clone();
            let (mapped, all) = frames.mapped_chunks();
            grow(&g, &mut frames, &v, chunks.min((all - mapped) as usize));
            run(&g, &mut b, &mut frames, &mut p2m, answer, target);
            consistent(&g, &b, &frames, &p2m, &held);
            prop_assert!(p2m.v.iter().filter(|&&m| m == INVALID_P2M).count() as u64 == frames.ballooned_frames());
        }
    }
}

/// A sink that refuses its `n`th operation (EINVAL), and every one after it unless
/// `once`.
struct RefuseFrom<'a> {
    inner: Queued<'a>,
    n: usize,
    once: bool,
}

impl xenpv_paging::ops::MmuSink for RefuseFrom<'_> {
    type Error = xenpv_testkit::mmu_model::Refusal;
    fn submit(&mut self, op: xenpv_paging::ops::MmuOp) -> Result<(), Self::Error> {
        if self.n == 0 {
            if self.once {
                self.n = usize::MAX;
            }
            return Err(xenpv_testkit::mmu_model::Refusal {
                errno: -22,
                what: "refused by the test".into(),
            });
        }
        self.n -= 1;
        self.inner.submit(op)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush()
    }
}

#[test]
fn refused_page_table_updates_give_nothing_away_and_lose_nothing_mapped() {
    let g = guest();
    let mut bm = Bitmaps::new(NR);
    let mut frames = bm.allocator(&g.out, NR);
    let mut record = vec![0u64; bitmap_words(NR)];
    frames.attach_balloon(&mut record).unwrap();
    let mut p2m = P2m {
        v: g.p2m0.clone(),
        m: &g.m,
    };
    // Every chunk mapped: every frame given or taken needs its direct-map entry written.
    let v = p2m.v.clone();
    let mut env = ModelDirect {
        m: &g.m,
        p2m: &v,
        holes: &[],
    };
    g.dm.borrow_mut()
        .map_all(&mut frames, &mut env, &mut Queued::new(&g.m))
        .unwrap();
    let held: Vec<Pfn> = (0..100).map(|_| frames.alloc().unwrap()).collect();
    let mut b = Balloon::new(g.out.tables.direct_l1.0, true);
    let mut xen = Xen {
        m: &g.m,
        answer: Answer::Honest,
    };
    // Down, a PTE clear refused: nothing goes to Xen, and (the entries written back)
    // nothing is lost.
    let (free, tot) = (frames.free_frames(), g.m.borrow().tot_pages());
    let mut sink = RefuseFrom {
        inner: Queued::new(&g.m),
        n: 3,
        once: true,
    };
    let r = b.release(&mut frames, &mut p2m, &mut sink, &mut xen, 256);
    assert!(matches!(r, Err(BalloonFail::Sink(_))), "{r:?}");
    assert_eq!(frames.ballooned_frames(), 0);
    assert_eq!(
        (frames.free_frames(), g.m.borrow().tot_pages()),
        (free, tot)
    );
    consistent(&g, &b, &frames, &p2m, &held);
    // Up, the PTE writes refused: the frames are the guest's again but stay out of use
    // (counted), never handed out unmapped.
    run(&g, &mut b, &mut frames, &mut p2m, Answer::Honest, 20_000);
    let free = frames.free_frames();
    let mut sink = RefuseFrom {
        inner: Queued::new(&g.m),
        n: 0,
        once: false,
    };
    let batch = b
        .populate(&mut frames, &mut p2m, &mut sink, &mut xen, 256)
        .unwrap();
    assert_eq!(batch.done, 256);
    assert_eq!(b.counters.pte_failures, 256);
    assert_eq!(frames.free_frames(), free, "none of them free");
    consistent(&g, &b, &frames, &p2m, &held);
}
