//! Paging's side of the balloon (`crate::balloon` is the task): the planner of
//! `xenpv_paging::balloon` run over the live p2m, Xen's M2P, the frame allocator and the
//! direct map, each batch under the allocator's lock.

use super::live::{Direct, M2P};
use super::memory::FRAMES;
use xenpv_paging::balloon::{
    Balloon, BalloonFail, Batch, CheckError, CheckReport, Goal, P2mAccess, Reservation, Step,
};
use xenpv_paging::exec::ExecError;
use xenpv_paging::frames::{bitmap_words, CHUNK_PAGES};
use xenpv_paging::layout::{direct_map_va, PAGE_SIZE};
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::vmap::VmapEnv;

/// The live p2m list (through the direct map) and Xen's M2P.
struct LiveP2m(Direct);

impl P2mAccess for LiveP2m {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        VmapEnv::mfn(&self.0, pfn)
    }
    fn set_mfn(&mut self, pfn: Pfn, mfn: Mfn) {
        if pfn.0 >= self.0.nr_pages {
            return;
        }
        // SAFETY: pfn < nr_pages: the entry lies in the p2m list, which is direct-mapped
        // read-write (its chunks are start chunks) and written by the runtime alone.
        unsafe {
            (self.0.p2m_va + pfn.0 * 8)
                .as_mut_ptr::<u64>()
                .write_volatile(mfn.0)
        }
    }
    fn m2p(&self, mfn: Mfn) -> Option<Pfn> {
        if mfn > self.0.max_mfn || mfn > Mfn::MAX {
            return None;
        }
        // SAFETY: Xen maps the M2P read-only for every PV guest up to the maximum RAM
        // page, which `mfn` does not exceed (checked above).
        Some(Pfn(unsafe {
            ((M2P + mfn.0 * 8) as *const u64).read_volatile()
        }))
    }
    fn max_mfn(&self) -> Mfn {
        self.0.max_mfn
    }
}

/// The planner over this guest's direct map, and the record of ballooned frames attached
/// to the allocator (frames taken from it for good). `None` if the allocator cannot spare
/// the record's frames.
pub(crate) fn start() -> Option<Balloon> {
    let mut guard = FRAMES.lock();
    let f = guard.as_mut()?;
    let words = bitmap_words(f.alloc.nr_pages());
    let pages = (words as u64 * 8).div_ceil(PAGE_SIZE);
    let first = f.alloc_run(pages)?;
    // SAFETY: the frames were just taken from the allocator for good (never freed), are
    // consecutive pfns and so a consecutive range of the direct map, mapped read-write
    // (the allocator hands out mapped frames only), at least `words` words long;
    // nothing else references them.
    let bits =
        unsafe { core::slice::from_raw_parts_mut(direct_map_va(first).as_mut_ptr::<u64>(), words) };
    f.alloc.attach_balloon(bits).ok()?;
    Some(Balloon::new(f.direct.l1_of(0), f.direct.nx()))
}

/// Where the domain is for `target` pages.
pub(crate) fn goal(target: u64) -> Goal {
    let f = FRAMES.lock();
    Goal::new(&f.as_ref().expect("the allocator is set up").alloc, target)
}

/// One batch of `step`, under the allocator's lock.
pub(crate) fn batch(
    b: &mut Balloon,
    step: Step,
    xen: &mut dyn Reservation,
) -> Result<Batch, BalloonFail<ExecError>> {
    let mut guard = FRAMES.lock();
    let f = guard.as_mut().expect("the allocator is set up");
    let mut p2m = LiveP2m(f.env);
    match step {
        Step::Release(n) => b.release(&mut f.alloc, &mut p2m, &mut f.exec, xen, n),
        Step::Populate(n) => b.populate(&mut f.alloc, &mut p2m, &mut f.exec, xen, n),
        Step::Done => Err(BalloonFail::Nothing),
    }
}

/// The self-check (see `xenpv_paging::balloon::Balloon::check`), with Xen's reservation
/// and the offset measured at boot if known.
pub(crate) fn check(b: &Balloon, xen: Option<(u64, i64)>) -> Result<CheckReport, CheckError> {
    let guard = FRAMES.lock();
    let f = guard.as_ref().expect("the allocator is set up");
    let p2m = LiveP2m(f.env);
    let direct = f.env;
    let l1 = f.direct.l1_of(0);
    let pte = |pfn: Pfn| {
        let table = l1 + pfn.0 / CHUNK_PAGES;
        (direct.is_mapped(pfn) && direct.is_mapped(table))
            .then(|| direct.word(table, (pfn.0 % CHUNK_PAGES) as usize))
    };
    b.check(&f.alloc, &p2m, &pte, xen)
}

/// Frames of the allocator: `(nr_pages, ballooned, free, unmapped)`.
pub(crate) fn counts() -> (u64, u64, u64, u64) {
    let f = FRAMES.lock();
    let a = &f.as_ref().expect("the allocator is set up").alloc;
    (
        a.nr_pages(),
        a.ballooned_frames(),
        a.free_frames(),
        a.unmapped_frames(),
    )
}
