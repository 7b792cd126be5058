//! The vmap stress: areas of random size mapped in module space, filled with a pattern,
//! verified and unmapped, round after round, until module space has run out at least
//! once; then cross-checks that nothing outside the areas was touched.
//!
//! Replay a failure with the seed it printed: `stress seed=N`.

use xenpv_contract::report;
use xenpv_contract::report::Writer;
use xenpv_rt::mm::vrange::RangeError;
use xenpv_rt::mm::{MmuCounts, ModuleSpaceUsage, VmArea, VmapError};
use xenpv_rt::{println, Boot, Timing};

/// Areas alive at once (more than module space can hold at the average size).
const MAX_LIVE: usize = 1024;
/// Refusals printed in full (the rest are counted).
const SHOWN_REFUSALS: u64 = 3;

/// SplitMix64: small, seedable, good enough to pick sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Word `i` of the area tagged `tag`.
fn pattern(tag: u64, i: u64) -> u64 {
    tag ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// FNV-1a over 8-byte words (the tail bytewise).
fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let (words, tail) = bytes.split_at(bytes.len() / 8 * 8);
    for w in words.chunks_exact(8) {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x0100_0000_01b3);
    }
    for &b in tail {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub struct Config {
    pub seed: u64,
    /// Areas to take through a whole map-fill-verify-unmap cycle, at least.
    pub cycles: u64,
    /// Largest area, in pages.
    pub max_pages: u64,
}

#[derive(Default)]
struct Tally {
    cycles: u64,
    va_exhausted: u64,
    frames_exhausted: u64,
    refusals: u64,
    bad_words: u64,
    first_bad: Option<(xenpv_rt::mm::layout::VirtAddr, u64, u64)>,
    other_error: bool,
    map_ns: u64,
}

struct Live {
    area: VmArea,
    tag: u64,
}

fn retire(boot: &mut Boot, l: Live, t: &mut Tally) {
    let mut area = l.area;
    let va = area.va();
    for (i, w) in area.as_mut_slice().iter().enumerate() {
        let want = pattern(l.tag, i as u64);
        if *w != want {
            t.bad_words += 1;
            t.first_bad.get_or_insert((va + i as u64 * 8, *w, want));
        }
    }
    match boot.memory().vfree(area) {
        Ok(()) => t.cycles += 1,
        Err(e) => {
            println!("stress: vfree failed: {e}");
            t.other_error = true;
        }
    }
}

fn retire_some(
    boot: &mut Boot,
    live: &mut heapless::Vec<Live, MAX_LIVE>,
    rng: &mut Rng,
    t: &mut Tally,
    n: usize,
) {
    for _ in 0..n.min(live.len()) {
        let i = rng.below(live.len() as u64) as usize;
        let l = live.swap_remove(i);
        retire(boot, l, t);
    }
}

/// Run the stress; returns whether it passed.
pub fn run(boot: &mut Boot, cfg: &Config, initrd_checksum: Option<u64>) -> bool {
    let image0 = hash(xenpv_rt::image_read_only());
    // Free frames, mapped or not: the direct map may grow during the run.
    let free0 = boot.memory().frames().available_frames();
    let MmuCounts {
        hypercalls: calls0,
        pt_updates: updates0,
    } = boot.memory().mmu_counts();
    let t0 = xenpv_rt::time::now_ns();
    let mut rng = Rng(cfg.seed);
    let mut live: heapless::Vec<Live, MAX_LIVE> = heapless::Vec::new();
    let mut t = Tally::default();
    let mut next_tag = cfg.seed.wrapping_mul(0x1000_0000_0000_0001);
    // Steps are bounded so that a runtime that never runs out cannot loop forever.
    let max_steps = cfg.cycles.saturating_mul(50).max(100_000);
    let mut steps = 0;
    while (t.cycles < cfg.cycles || t.va_exhausted == 0) && steps < max_steps && !t.other_error {
        steps += 1;
        let pages = if rng.below(4) == 0 {
            1 + rng.below(16)
        } else {
            1 + rng.below(cfg.max_pages)
        };
        if live.is_full() {
            retire_some(boot, &mut live, &mut rng, &mut t, 1);
        }
        let s = xenpv_rt::time::rdtsc();
        let r = boot.memory().vmap(pages);
        t.map_ns += Timing::ns(s, xenpv_rt::time::rdtsc());
        match r {
            Ok(mut area) => {
                next_tag = next_tag.wrapping_add(0x9e37_79b9);
                for (i, w) in area.as_mut_slice().iter_mut().enumerate() {
                    *w = pattern(next_tag, i as u64);
                }
                let _ = live.push(Live {
                    area,
                    tag: next_tag,
                });
            }
            Err(VmapError::Range(RangeError::NoSpace { .. } | RangeError::TooManyAreas { .. })) => {
                t.va_exhausted += 1;
                let n = live.len() / 2;
                retire_some(boot, &mut live, &mut rng, &mut t, n);
            }
            Err(VmapError::OutOfFrames { .. }) => {
                t.frames_exhausted += 1;
                let n = live.len() / 2;
                retire_some(boot, &mut live, &mut rng, &mut t, n);
            }
            Err(e @ VmapError::NotNone { .. }) => {
                t.refusals += 1;
                if t.refusals <= SHOWN_REFUSALS {
                    println!("stress: vmap of {pages} pages {e}");
                }
            }
            Err(e) => {
                println!("stress: vmap of {pages} pages failed: {e}");
                t.other_error = true;
            }
        }
        // Retire one area now and then: areas of every age, holes of every size.
        if !live.is_empty() && rng.below(3) == 0 {
            retire_some(boot, &mut live, &mut rng, &mut t, 1);
        }
    }
    let n = live.len();
    retire_some(boot, &mut live, &mut rng, &mut t, n);
    let secs_ns = xenpv_rt::time::now_ns().saturating_sub(t0);

    // Cross-checks.
    let m = boot.memory();
    let st = m.vmap_stats();
    let MmuCounts {
        hypercalls: calls1,
        pt_updates: updates1,
    } = m.mmu_counts();
    let ModuleSpaceUsage {
        live_pages,
        poisoned_pages: poisoned,
        live_areas: areas,
    } = m.module_space_usage();
    let frames_back = m.frames().available_frames() == free0;
    let image_ok = hash(xenpv_rt::image_read_only()) == image0;
    let initrd_ok = match (initrd_checksum, boot.initrd()) {
        (None, _) => true,
        (Some(want), Some(bytes)) => {
            xenpv_rt::initrd::verify(bytes).is_ok_and(|v| v.header.checksum == want)
        }
        (Some(_), None) => false,
    };
    let (calls, updates) = (calls1 - calls0, updates1 - updates0);
    let per_call_x10 = (updates * 10).checked_div(calls).unwrap_or(0);
    let pages_per_s = (st.pages_mapped as u128 * 1_000_000_000)
        .checked_div(t.map_ns as u128)
        .unwrap_or(0);
    let mut why: heapless::String<160> = heapless::String::new();
    let mut fail = |s: &str| {
        let _ = why.push_str(if why.is_empty() { "" } else { "; " });
        let _ = why.push_str(s);
    };
    if st.non_none_met > 0 {
        fail("non-none PTEs met");
    }
    if t.bad_words > 0 {
        fail("patterns corrupted");
    }
    if t.va_exhausted == 0 {
        fail("module space never exhausted");
    }
    if t.cycles < cfg.cycles {
        fail("too few cycles");
    }
    if t.other_error {
        fail("vmap error");
    }
    if !image_ok {
        fail("kernel read-only sections changed");
    }
    if !initrd_ok {
        fail("initrd checksum changed");
    }
    if !frames_back || live_pages != 0 || areas != 0 {
        fail("frames or module space not all given back");
    }
    if let Some((va, got, want)) = t.first_bad {
        println!("stress: first corrupt word at {va:#x}: {got:#018x}, pattern says {want:#018x}");
    }
    if t.refusals > SHOWN_REFUSALS {
        println!("stress: ... {} more refusals", t.refusals - SHOWN_REFUSALS);
    }
    println!(
        "{}",
        Writer::new("stress")
            .word("checks")
            .field("image_ro", if image_ok { "same" } else { "CHANGED" })
            .field(
                "initrd",
                match initrd_checksum {
                    None => "none",
                    Some(_) if initrd_ok => "same",
                    Some(_) => "CHANGED",
                },
            )
            .field(
                "patterns",
                if t.bad_words == 0 {
                    "intact"
                } else {
                    "CORRUPT"
                },
            )
            .field("frames_back", &frames_back)
            .field("poisoned_pages", &poisoned)
    );
    // The summary the host reads back (`cargo xtask bench`, the boot tests): a report.
    println!(
        "{}",
        report!(
            "stress",
            seed = cfg.seed,
            cycles = t.cycles,
            pages_mapped = st.pages_mapped,
            peak_pages = st.peak_pages,
            exhausted_va = t.va_exhausted,
            exhausted_frames = t.frames_exhausted,
            l1_made = st.l1_made,
            non_none_ptes = st.non_none_met,
            hypercalls = calls,
            pte_updates = updates,
            per_hypercall = format_args!("{}.{}", per_call_x10 / 10, per_call_x10 % 10),
            pages_per_s,
            secs = format_args!(
                "{}.{:01}",
                secs_ns / 1_000_000_000,
                secs_ns / 100_000_000 % 10
            ),
            verdict = if why.is_empty() { "PASS" } else { "FAIL" },
        )
    );
    if !why.is_empty() {
        println!("stress: FAIL: {why}");
    }
    why.is_empty()
}
