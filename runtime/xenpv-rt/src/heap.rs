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
//! The heap grows on demand: when talc has no room it takes a run of consecutive frames
//! from the frame allocator (at least [`GROW_MIN`], at least what the request needs) and
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

struct State {
    talc: Talc<ErrOnOom>,
    limit: u64,
    claimed: u64,
    failures: u64,
    allocations: u64,
}

/// The global allocator: talc behind a spin lock, growing from the frame allocator.
pub struct Heap(spin::Mutex<State>);

#[global_allocator]
static HEAP: Heap = Heap(spin::Mutex::new(State {
    talc: Talc::new(ErrOnOom),
    limit: u64::MAX,
    claimed: 0,
    failures: 0,
    allocations: 0,
}));

/// What the heap has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes taken from the frame allocator (the heap never gives them back).
    pub claimed_bytes: u64,
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
        let first = crate::mm::take_frame_run(bytes / PAGE_SIZE)
            .ok_or("no run of free frames is that long (or Boot::memory().frames() is held)")?;
        let base = direct_map_va(first).as_mut_ptr::<u8>();
        // SAFETY: the frames were just taken from the frame allocator (so nothing else
        // uses them, and they are never given back), they are consecutive pfns and so a
        // consecutive, writable range of the direct map, `bytes` long.
        unsafe { self.talc.claim(Span::from_base_size(base, bytes as usize)) }
            .map_err(|()| "talc refused the new memory")?;
        self.claimed += bytes;
        Ok(())
    }
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
