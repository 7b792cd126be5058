//! The heap (feature `alloc`): a `#[global_allocator]` so that `extern crate alloc` gives
//! an application `Box`, `Vec`, `String` and the rest.
//!
//! The allocator is [talc](https://crates.io/crates/talc), chosen over
//! linked_list_allocator by measurement: on a host workload of 2 million random
//! allocations and frees (8 B to 1 MiB, up to 4096 live) talc did 11.6–14.7 million
//! operations per second and linked_list_allocator 78–121 thousand (its first fit walks
//! every free block). talc also takes memory in separate pieces, which is how this heap
//! grows.
//!
//! The heap gives memory back, too ([`give_back`], which the balloon calls when it needs
//! frames): every piece it claimed is recorded, and the parts of a piece that hold no
//! allocation (a whole piece, or its free ends, through talc's `truncate`) go back to the
//! frame allocator a page at a time.
//!
//! The heap grows on demand: when talc has no room it takes a run of consecutive frames
//! from the frame allocator (at least [`GROW_MIN`], at least what the request needs, and
//! just what it needs when no longer run is free: a small domain's last megabytes) and
//! hands talc their direct-map addresses, which are consecutive too; no page table is
//! touched. It stops at a limit: `heap=MiB` on the guest command line or
//! [`set_limit`], otherwise free memory. An allocation it cannot serve returns null, with
//! one line saying why (`xenpv-rt: heap: …`): `try_reserve` and friends get their error,
//! and an infallible allocation ends in Rust's "memory allocation of N bytes failed"
//! panic, status 101. Never undefined behaviour.
//!
//! ```no_run
//! extern crate alloc;
//! use alloc::vec::Vec;
//!
//! let mut v: Vec<u64> = Vec::new();
//! v.try_reserve(1 << 20).expect("8 MiB of heap"); // an error, not a crash, if it cannot
//! v.extend(0..1 << 20);
//! xenpv_rt::println!("heap: {} bytes claimed", xenpv_rt::heap::stats().claimed_bytes);
//! ```

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use talc::{ErrOnOom, Span, Talc};
use xenpv_paging::layout::{direct_map_va, PAGE_SIZE};

/// The least the heap grows by at a time.
pub const GROW_MIN: u64 = 2 << 20;

/// Pieces the heap records (a piece not recorded, past this many, is never given back).
const PIECES: usize = 64;

struct State {
    talc: Talc<ErrOnOom>,
    limit: u64,
    claimed: u64,
    failures: u64,
    allocations: u64,
    /// The spans talc manages, as its last claim or truncate returned them.
    pieces: [Option<Span>; PIECES],
    returned: u64,
}

// SAFETY: the spans are plain address ranges of the direct map (never dereferenced
// through this record), and the State is only reached under the heap's lock.
unsafe impl Send for State {}

/// The global allocator: talc behind a spin lock, growing from the frame allocator.
pub struct Heap(spin::Mutex<State>);

#[global_allocator]
static HEAP: Heap = Heap(spin::Mutex::new(State {
    talc: Talc::new(ErrOnOom),
    limit: u64::MAX,
    claimed: 0,
    failures: 0,
    allocations: 0,
    pieces: [None; PIECES],
    returned: 0,
}));

/// What the heap has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes held from the frame allocator now (taken, less those given back).
    pub claimed_bytes: u64,
    /// Bytes given back to the frame allocator so far ([`give_back`]).
    pub returned_bytes: u64,
    /// The limit (bytes; `u64::MAX` for none).
    pub limit_bytes: u64,
    /// Allocations served.
    pub allocations: u64,
    /// Allocations refused (limit reached, or no run of frames long enough).
    pub failures: u64,
}

/// The heap's figures.
pub fn stats() -> Stats {
    let s = HEAP.0.lock();
    Stats {
        claimed_bytes: s.claimed,
        returned_bytes: s.returned,
        limit_bytes: s.limit,
        allocations: s.allocations,
        failures: s.failures,
    }
}

/// Let the heap grow to at most `bytes` (what it has already claimed stays).
pub fn set_limit(bytes: u64) {
    HEAP.0.lock().limit = bytes;
}

impl State {
    /// Claim a run of frames big enough for `layout` (talc needs some room of its own).
    fn grow(&mut self, layout: Layout) -> Result<(), &'static str> {
        let need = (layout.size() as u64)
            .saturating_add(layout.align() as u64)
            .saturating_add(256);
        // Grow by at least GROW_MIN, and by the heap's size so far: few, large pieces.
        let bytes = need
            .max(GROW_MIN)
            .max(self.claimed.min(64 << 20))
            .next_multiple_of(PAGE_SIZE);
        let bytes = if self.claimed.saturating_add(bytes) > self.limit {
            // What is left under the limit may still be enough.
            let left = self.limit.saturating_sub(self.claimed) / PAGE_SIZE * PAGE_SIZE;
            if left < need {
                return Err(
                    "the heap limit is reached (heap= on the command line, or heap::set_limit)",
                );
            }
            left
        } else {
            bytes
        };
        // The preferred run may not be there on a small or fragmented domain: then
        // just what the request needs (a failure only when even that is missing).
        let least = need.next_multiple_of(PAGE_SIZE).min(bytes);
        let (first, bytes) = match crate::mm::take_frame_run(bytes / PAGE_SIZE) {
            Some(first) => (first, bytes),
            None => (
                crate::mm::take_frame_run(least / PAGE_SIZE).ok_or(
                    "no run of free frames is that long (or Boot::memory().frames() is held)",
                )?,
                least,
            ),
        };
        let base = direct_map_va(first).as_mut_ptr::<u8>();
        // SAFETY: the frames were just taken from the frame allocator (so nothing else
        // uses them until `give_back` returns them, after talc let go of them), they are
        // consecutive pfns and so a consecutive, writable range of the direct map, `bytes`
        // long.
        let span = unsafe { self.talc.claim(Span::from_base_size(base, bytes as usize)) }
            .map_err(|()| "talc refused the new memory")?;
        if let Some(slot) = self.pieces.iter_mut().find(|p| p.is_none()) {
            *slot = Some(span);
        }
        self.claimed += bytes;
        Ok(())
    }

    /// Truncate piece `i` to what holds allocations (page-rounded); the pages left out go
    /// back to the frame allocator. Bytes given back.
    fn trim(&mut self, i: usize) -> u64 {
        let Some(old) = self.pieces[i] else {
            return 0;
        };
        let Some((base, acme)) = old.get_base_acme() else {
            self.pieces[i] = None;
            return 0;
        };
        let page = PAGE_SIZE as usize;
        // SAFETY: `old` is what talc's last claim or truncate of this piece returned.
        let used = unsafe { self.talc.get_allocated_span(old) };
        let req = match used.get_base_acme() {
            None => Span::empty(),
            Some((b, a)) => Span::new(
                ((b as usize / page * page).max(base as usize)) as *mut u8,
                ((a as usize).next_multiple_of(page).min(acme as usize)) as *mut u8,
            ),
        };
        if req.size() + page > old.size() {
            return 0; // less than a page to gain
        }
        // SAFETY: `old` is a piece talc manages; `req` lies within it and covers all of
        // its allocated memory (from get_allocated_span, rounded outwards within `old`).
        let new = unsafe { self.talc.truncate(old, req) };
        let (keep_lo, keep_hi) = match new.get_base_acme() {
            None => (acme as usize, acme as usize),
            Some((b, a)) => (
                b as usize / page * page,
                (a as usize).next_multiple_of(page),
            ),
        };
        self.pieces[i] = new.is_sized().then_some(new);
        // Whole pages of the old piece outside the new one: talc no longer uses them.
        let mut given = 0;
        for (lo, hi) in [
            ((base as usize).next_multiple_of(page), keep_lo),
            (keep_hi, acme as usize / page * page),
        ] {
            if hi > lo {
                let base = xenpv_paging::layout::DIRECT_MAP_BASE.as_u64();
                let first = xenpv_abi::Pfn((lo as u64 - base) / PAGE_SIZE);
                given += crate::mm::give_frame_run(first, ((hi - lo) / page) as u64);
            }
        }
        let bytes = given * PAGE_SIZE;
        self.claimed -= bytes.min(self.claimed);
        self.returned += bytes;
        bytes
    }
}

/// Give the heap's free memory back to the frame allocator: every recorded piece is cut
/// down to the pages that hold allocations. Bytes given back. The frame allocator must
/// not be locked by the caller.
pub fn give_back() -> u64 {
    let mut s = HEAP.0.lock();
    (0..PIECES).map(|i| s.trim(i)).sum()
}

fn refuse(layout: Layout, why: &str, s: &State) {
    // Said at warn level: the application may handle the failure (try_reserve).
    crate::warn!(
        "heap: cannot allocate {} bytes (align {}): {why}; {} MiB claimed, limit {} MiB",
        layout.size(),
        layout.align(),
        s.claimed >> 20,
        s.limit >> 20
    );
}

// SAFETY: talc hands out disjoint blocks of memory it owns (frames the heap took from
// the frame allocator for good), aligned as the layout asks; the spin lock serialises all
// use of it. Allocation failure is a null pointer, as GlobalAlloc requires.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut s = self.0.lock();
        loop {
            // SAFETY: talc's malloc has no precondition beyond a valid layout.
            if let Ok(p) = unsafe { s.talc.malloc(layout) } {
                s.allocations += 1;
                return p.as_ptr();
            }
            if let Err(why) = s.grow(layout) {
                s.failures += 1;
                refuse(layout, why, &s);
                return core::ptr::null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from this allocator with `layout`.
            unsafe { self.0.lock().talc.free(p, layout) }
        }
    }
}
