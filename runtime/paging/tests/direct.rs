//! The on-demand direct map against the model of Xen's PV MMU: start of day maps only
//! the chunks it needs (its work does not grow with memory), a frame the allocator hands
//! out is always mapped, and growing the map follows Xen's rules whichever way the L1s
//! are written.
#![cfg(not(feature = "regress-2014-fixmap-copy"))]

use proptest::prelude::*;
use std::cell::RefCell;
use xenpv_paging::direct::{DirectMap, GrowError, PtWrite};
use xenpv_paging::frames::{chunks, FrameAllocator, Use, CHUNK_PAGES};
use xenpv_paging::layout::*;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::ops::{MmuOp, MmuSink};
use xenpv_paging::takeover::Outcome;
use xenpv_testkit::mmu_model::{Refusal, XenPvModel as Model};
use xenpv_testkit::takeover_run::{
    direct_map, take_over, take_over_on_demand, tr, Bitmaps, Case, Dom0, Done, ModelDirect, Queued,
    Shared,
};

fn case(nr_pages: u64, initrd: u64, mod_start_pfn: bool) -> Case {
    Case {
        nr_pages,
        kernel_pages: 0x59,
        initrd,
        mod_start_pfn,
        split: Split::Full,
    }
}

/// The on-demand promises, on the model: a chunk is mapped in the guest's tables exactly
/// when the allocator says so, every frame that is free or `held` (handed out) is mapped
/// (free ones read-write), and Xen's reference counts are consistent.
fn check(m: &Model, p2m: &[Mfn], frames: &FrameAllocator<'_>, held: &[Pfn]) {
    m.check_invariants().unwrap();
    let nr = frames.nr_pages();
    for c in 0..chunks(nr) {
        let first = Pfn(c * CHUNK_PAGES);
        let last = Pfn((first.0 + CHUNK_PAGES).min(nr) - 1);
        for pfn in [first, Pfn((first.0 + last.0) / 2), last] {
            let got = tr(m, direct_map_va(pfn)).map(|t| t.0);
            if frames.is_mapped(pfn) {
                assert_eq!(
                    got,
                    Some(p2m[pfn.0 as usize]),
                    "pfn {pfn:#x} of mapped chunk {c}"
                );
            } else {
                assert_eq!(got, None, "pfn {pfn:#x} of unmapped chunk {c}");
            }
        }
    }
    for pfn in (0..nr).map(Pfn).filter(|&p| !frames.is_taken(p)) {
        assert_eq!(
            tr(m, direct_map_va(pfn)),
            Some((p2m[pfn.0 as usize], true)),
            "free pfn {pfn:#x} mapped read-write"
        );
    }
    for &pfn in held {
        assert!(
            frames.is_mapped(pfn),
            "handed-out pfn {pfn:#x} in a mapped chunk"
        );
        assert_eq!(
            tr(m, direct_map_va(pfn)).map(|t| t.0),
            Some(p2m[pfn.0 as usize])
        );
    }
    // Everything reserved is mapped, but for the chunk L1s past the first: their
    // chunks are mapped when a chunk they map needs them.
    for r in frames.regions() {
        let ends = if r.what == Use::PageTables {
            vec![r.start]
        } else {
            vec![r.start, r.end - 1]
        };
        for pfn in ends {
            assert!(tr(m, direct_map_va(pfn)).is_some(), "reserved {r:?} mapped");
        }
    }
}

/// The takeover alone on the model (`nr` pages, an initrd of `initrd` bytes): the model,
/// the dom0 facts and the outcome.
fn on_demand(nr: u64, initrd: u64) -> (RefCell<Model>, Dom0, Outcome) {
    let Done { m, d, out, .. } = take_over_on_demand(&case(nr, initrd, false), 0, &[]);
    (RefCell::new(m), d, out.expect("takeover"))
}

fn outcome(done: &Done) -> &Outcome {
    done.out
        .as_ref()
        .unwrap_or_else(|e| panic!("takeover refused: {e:?}"))
}

#[test]
fn start_of_day_work_does_not_grow_with_memory() {
    // 256 MiB, 1 GiB, 4 GiB: the eager takeover wrote one entry per frame.
    let (mut updates, mut paths) = (vec![], vec![]);
    for nr in [65536u64, 262144, 1 << 20] {
        let done = take_over_on_demand(&case(nr, 0, false), 0, &[]);
        let out = outcome(&done);
        let mut bm = Bitmaps::new(nr);
        let frames = bm.allocator(out, nr);
        let (mapped, all) = frames.mapped_chunks();
        // The image and boot region, the p2m list, the tables and bitmaps, one free
        // chunk: a handful of chunks, whatever the memory.
        assert!(mapped <= 8, "{mapped} of {all} chunks mapped at {nr} pages");
        // 513 entries per chunk, plus the kernel map, the image by section and the reclaim.
        assert!(
            out.pt_updates <= mapped * 513 + 1024,
            "{} updates for {mapped} chunks",
            out.pt_updates
        );
        eprintln!(
            "{nr} pages: {mapped} of {all} chunks, {} PTE updates",
            out.pt_updates
        );
        assert!(
            frames.free_frames() >= CHUNK_PAGES / 2,
            "a first chunk of free frames"
        );
        assert_eq!(frames.available_frames() + reserved(&frames), nr);
        check(&done.m, &done.d.p2m, &frames, &[]);
        updates.push(out.pt_updates);
        paths.push(out.in_boot_region);
    }
    // At 256 MiB the tables fit in the boot region's free tail (written with stores, so
    // cheaper); at 1 and 4 GiB they lie above it. 4 times the memory, at most 1.5 times
    // the work; and the tail is never dearer.
    assert!(
        updates[2] * 2 <= updates[1] * 3 && updates[0] <= updates[1],
        "PTE updates at 256 MiB, 1 GiB, 4 GiB: {updates:?}"
    );
    assert_eq!(
        paths,
        [true, false, false],
        "tables in the boot region's tail"
    );
}

/// Frames the regions hold (distinct).
fn reserved(frames: &FrameAllocator<'_>) -> u64 {
    (0..frames.nr_pages())
        .map(Pfn)
        .filter(|&p| frames.region_of(p).is_some())
        .count() as u64
}

#[test]
fn the_initrd_and_the_p2m_are_mapped_wherever_xen_put_them() {
    // The last: the p2m lies behind the initrd under L3[511].
    for (nr, initrd, mod_start_pfn) in [
        (262144, 64 << 20, false),
        (262144, 300 << 20, true),
        (262144, 600 << 20, false),
        (524288, 1100 << 20, false),
    ] {
        let done = take_over_on_demand(&case(nr, initrd, mod_start_pfn), 0, &[]);
        let out = outcome(&done);
        let (s, e) = done.d.module.unwrap();
        for p in [
            s,
            Pfn((s.0 + e.0) / 2),
            e - 1,
            done.d.p2m_pfns.0,
            done.d.p2m_pfns.1 - 1,
        ] {
            assert_eq!(
                tr(&done.m, direct_map_va(p)).map(|t| t.0),
                Some(done.d.p2m[p.0 as usize]),
                "pfn {p:#x} (initrd {initrd:#x}, mod_start_pfn {mod_start_pfn})"
            );
        }
        let mut bm = Bitmaps::new(nr);
        let frames = bm.allocator(out, nr);
        check(&done.m, &done.d.p2m, &frames, &[]);
    }
}

#[test]
fn stores_and_mmu_updates_build_the_same_direct_map() {
    let nr = 65536;
    let mut maps = vec![];
    for how in [PtWrite::Stores, PtWrite::Mmu] {
        let (m, d, out) = on_demand(nr, 16 << 20);
        let out = &out;
        let mut bm = Bitmaps::new(nr);
        let mut frames = bm.allocator(out, nr);
        let mut dm = direct_map(out, nr, how);
        let mut env = ModelDirect {
            m: &m,
            p2m: &d.p2m,
            holes: &[],
        };
        let before = frames.mapped_chunks().0;
        let mut sink = Queued::new(&m);
        let n = dm.map_all(&mut frames, &mut env, &mut sink).unwrap();
        assert_eq!(n + before, chunks(nr));
        // Queued, not one flush per chunk: a hypercall's worth at a time (and once more
        // before a store that goes through a chunk L1's freshly mapped host).
        let most = match how {
            PtWrite::Stores => 4,
            PtWrite::Mmu => (n as usize * 514).div_ceil(512) + 4,
        };
        assert!(
            sink.flushes <= most,
            "{} flushes for {n} chunks ({how:?})",
            sink.flushes
        );
        let per_chunk = match how {
            PtWrite::Stores => 2,
            PtWrite::Mmu => 514,
        };
        assert_eq!(dm.stats.pt_updates, n * per_chunk, "{how:?}");
        let m = m.into_inner();
        check(&m, &d.p2m, &frames, &[]);
        // Every L1 a page table now: read-only in the direct map.
        for c in 0..chunks(nr) {
            assert!(
                !tr(&m, direct_map_va(dm.l1_of(c))).unwrap().1,
                "L1 of chunk {c}"
            );
        }
        maps.push(
            (0..nr)
                .map(|p| tr(&m, direct_map_va(Pfn(p))))
                .collect::<Vec<_>>(),
        );
    }
    assert!(maps[0] == maps[1], "the two ways differ");
}

/// What a test does with the allocator.
#[derive(Clone, Debug)]
enum Step {
    Alloc,
    Run(u64),
    Free(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(Step::Alloc),
            2 => (1u64..1500).prop_map(Step::Run),
            3 => any::<usize>().prop_map(Step::Free),
        ],
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// The platform's rule: grow the direct map until the allocator can satisfy the
    /// request, then allocate. Whatever the sequence, a frame handed out is mapped, the
    /// model accepts every update, and no frame is lost.
    #[test]
    fn a_frame_handed_out_is_always_mapped(
        nr in 20_000u64..120_000,
        initrd_mib in 0u64..64,
        stores in any::<bool>(),
        seq in steps(),
    ) {
        let (m, d, out) = on_demand(nr, initrd_mib << 20);
        let out = &out;
        let mut bm = Bitmaps::new(nr);
        let mut frames = bm.allocator(out, nr);
        let total = frames.available_frames();
        let mut dm = direct_map(out, nr, if stores { PtWrite::Stores } else { PtWrite::Mmu });
        let mut env = ModelDirect { m: &m, p2m: &d.p2m, holes: &[] };
        let mut held: Vec<Pfn> = vec![];
        for s in &seq {
            match *s {
                Step::Alloc => {
                    dm.grow_until(&mut frames, &mut env, &mut Queued::new(&m), |f| f.free_frames() >= 1).unwrap();
                    if let Some(p) = frames.alloc() {
                        held.push(p);
                    }
                }
                Step::Run(n) => loop {
                    if let Some(p) = frames.alloc_run(n) {
                        held.extend(p.up_to(p + n));
                        break;
                    }
                    match dm.grow(&mut frames, &mut env, &mut Queued::new(&m)) {
                        Ok(_) => {}
                        Err(GrowError::AllMapped) => break,
                        Err(e) => panic!("{e:?}"),
                    }
                },
                Step::Free(i) if !held.is_empty() => {
                    let p = held.swap_remove(i % held.len());
                    frames.free(p).unwrap();
                }
                Step::Free(_) => {}
            }
            // Every frame handed out is mapped, and is really usable: write it.
            for &p in held.iter().rev().take(4) {
                m.borrow_mut().write_va(direct_map_va(p).as_u64(), 0x5a5a).unwrap();
            }
        }
        prop_assert_eq!(frames.available_frames() + held.len() as u64, total);
        check(&m.borrow(), &d.p2m, &frames, &held);
    }
}

/// A sink that refuses its `n`th operation (counting from 0) with EINVAL.
struct RefuseAt<'a> {
    inner: Shared<'a>,
    n: usize,
}

impl MmuSink for RefuseAt<'_> {
    type Error = Refusal;
    fn submit(&mut self, op: MmuOp) -> Result<(), Refusal> {
        if self.n == 0 {
            return Err(Refusal {
                errno: -22,
                what: "refused by the test".into(),
            });
        }
        self.n -= 1;
        self.inner.submit(op)
    }
    fn flush(&mut self) -> Result<(), Refusal> {
        Ok(())
    }
}

#[test]
fn a_failed_chunk_frees_nothing_and_stops_the_growth() {
    let nr = 65536;
    let (m, d, out) = on_demand(nr, 0);
    let out = &out;
    let mut bm = Bitmaps::new(nr);
    let mut frames = bm.allocator(out, nr);
    let mut dm = direct_map(out, nr, PtWrite::Stores);
    let c = frames.next_unmapped_chunk().unwrap();
    // The chunk's L1 has no valid mfn: refused before anything is written.
    let hole = [dm.l1_of(c)];
    let mut env = ModelDirect {
        m: &m,
        p2m: &d.p2m,
        holes: &hole,
    };
    let free = frames.free_frames();
    assert_eq!(
        dm.grow(&mut frames, &mut env, &mut Queued::new(&m)),
        Err(GrowError::BadP2m {
            pfn: dm.l1_of(c),
            mfn: Mfn(!0)
        })
    );
    assert_eq!(
        (frames.free_frames(), frames.next_unmapped_chunk()),
        (free, Some(c))
    );
    // Xen refuses the hook (the second update): nothing freed, and no second try.
    let mut env = ModelDirect {
        m: &m,
        p2m: &d.p2m,
        holes: &[],
    };
    let mut sink = RefuseAt {
        inner: Shared(&m),
        n: 1,
    };
    assert!(matches!(
        dm.grow(&mut frames, &mut env, &mut sink),
        Err(GrowError::Sink(_))
    ));
    assert_eq!(
        (frames.free_frames(), frames.next_unmapped_chunk()),
        (free, Some(c))
    );
    assert_eq!(
        dm.grow(&mut frames, &mut env, &mut Queued::new(&m)),
        Err(GrowError::Halted)
    );
    check(&m.borrow(), &d.p2m, &frames, &[]);
}

#[test]
#[should_panic(expected = "plain store into pfn")]
fn the_model_catches_a_store_into_a_frame_that_is_not_writable() {
    // A planner that took the wrong frames for its L1s (the live root's run) would store
    // into page tables: the model faults it, as the CPU would.
    let nr = 65536;
    let (m, d, out) = on_demand(nr, 0);
    let out = &out;
    let mut bm = Bitmaps::new(nr);
    let mut frames = bm.allocator(out, nr);
    let mut t = out.tables;
    t.direct_l1.0 = t.l4;
    let mut wrong = DirectMap::new(&t, nr, true, PtWrite::Stores);
    let mut env = ModelDirect {
        m: &m,
        p2m: &d.p2m,
        holes: &[],
    };
    let _ = wrong.grow(&mut frames, &mut env, &mut Queued::new(&m));
}

#[test]
fn the_eager_map_gives_every_frame() {
    // 4 GiB: the chunk L1s fill four chunks, the later ones mapped (as hosts) by the
    // eager map itself, and flushed before any store goes through it.
    for nr in [65536, 1 << 20] {
        eager_map_gives_every_frame(nr);
    }
}

fn eager_map_gives_every_frame(nr: u64) {
    let done = take_over(&case(nr, 8 << 20, false), 0);
    let grown = done.grown.unwrap();
    let out = outcome(&done);
    let start: u64 = out.start_chunks.iter().map(|(s, e)| e - s).sum();
    assert_eq!(grown.chunks_mapped + start, chunks(nr));
    for p in (0..nr).step_by(97).map(Pfn) {
        assert_eq!(
            tr(&done.m, direct_map_va(p)).map(|t| t.0),
            Some(done.d.p2m[p.0 as usize])
        );
    }
}
