//! The frame allocator: which pseudo-physical frames are taken, and by what.
//!
//! A bitmap (one bit per pfn, set = taken) that lives in frames the takeover reserves and
//! is reached through the direct map; plus the named regions it was seeded with, so that
//! the layout report can say what holds a frame. Frames are pseudo-physical ([`Pfn`]);
//! the p2m gives the machine frame a page-table entry needs.

use crate::ops::Pfn;

/// What a reserved region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// The kernel image, .bss included (from pfn 0).
    Kernel,
    /// The initrd (Xen's boot module).
    Initrd,
    /// The p2m list Xen built (start_info's `mfn_list`): pfn -> mfn.
    P2m,
    /// The runtime's page tables (and the bitmap itself).
    PageTables,
    /// The frame allocator's own bitmap.
    Bitmap,
    /// Xen's boot L1s still referenced by the kernel map.
    BootL1,
    /// Shared rings Xen set up for a domU (xenstore, console).
    SharedRing,
}

impl Use {
    /// Short name for reports (`kernel`, `page-tables`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Use::Kernel => "kernel",
            Use::Initrd => "initrd",
            Use::P2m => "p2m",
            Use::PageTables => "page-tables",
            Use::Bitmap => "frame-bitmap",
            Use::BootL1 => "boot-l1",
            Use::SharedRing => "shared-ring",
        }
    }
}

/// A reserved range of pfns `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First frame.
    pub start: Pfn,
    /// One past the last frame.
    pub end: Pfn,
    /// What the frames hold.
    pub what: Use,
}

/// Up to this many named regions.
pub type Regions = heapless::Vec<Region, 24>;

/// A refused [`FrameAllocator`] call. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The pfn is not below nr_pages.
    OutOfRange {
        /// The frame given.
        pfn: Pfn,
        /// Frames the allocator manages.
        nr_pages: u64,
    },
    /// Freeing a frame that is not allocated.
    DoubleFree {
        /// The frame given.
        pfn: Pfn,
    },
    /// A reserved region's frame cannot be freed.
    Reserved {
        /// The frame given.
        pfn: Pfn,
        /// The region it belongs to.
        what: Use,
    },
    /// The bitmap given is too small for nr_pages.
    BitmapTooSmall {
        /// Words given.
        words: usize,
        /// Words needed ([`bitmap_words`]).
        need: usize,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FrameError::OutOfRange { pfn, nr_pages } => {
                write!(f, "pfn {pfn:#x} is not below nr_pages {nr_pages:#x}")
            }
            FrameError::DoubleFree { pfn } => write!(f, "pfn {pfn:#x} freed but not allocated"),
            FrameError::Reserved { pfn, what } => {
                write!(
                    f,
                    "pfn {pfn:#x} belongs to the {} region and cannot be freed",
                    what.name()
                )
            }
            FrameError::BitmapTooSmall { words, need } => {
                write!(f, "frame bitmap of {words} words, {need} needed")
            }
        }
    }
}

/// Bitmap words needed for `nr_pages`.
pub const fn bitmap_words(nr_pages: u64) -> usize {
    nr_pages.div_ceil(64) as usize
}

/// The frame allocator: one bit per pfn below `nr_pages` (set = taken), first fit from a
/// rotor, with the [`Region`]s it was seeded with reserved for good.
///
/// Free frames are mapped read-write by the direct map (the runtime's page tables are a
/// reserved region), so a caller can zero one before use. A frame that is to become a
/// page table must have that mapping made read-only first, since Xen refuses to type a
/// frame as a page table while it is mapped writable: that is the caller's part (see
/// [`crate::vmap`]). A pfn whose p2m entry is not a valid mfn is a hole in the direct map
/// yet free here; callers needing a machine frame check the p2m.
///
/// ```
/// use xenpv_paging::frames::{bitmap_words, FrameAllocator, FrameError, Region, Regions, Use};
/// use xenpv_paging::Pfn;
///
/// let mut regions = Regions::new();
/// regions.push(Region { start: Pfn(0), end: Pfn(4), what: Use::Kernel }).unwrap();
/// let mut bits = vec![!0; bitmap_words(100)]; // need not be zeroed
/// let mut frames = FrameAllocator::new(&mut bits, 100, regions).unwrap();
/// assert_eq!(frames.free_frames(), 96);
///
/// // The kernel's frames are never handed out.
/// let p = frames.alloc().unwrap();
/// assert_eq!(p, Pfn(4));
/// assert!(frames.is_taken(p) && frames.is_taken(Pfn(0)) && !frames.is_taken(Pfn(5)));
///
/// frames.free(p).unwrap();
/// assert_eq!(frames.free(p), Err(FrameError::DoubleFree { pfn: p }));
/// assert_eq!(frames.free(Pfn(1)), Err(FrameError::Reserved { pfn: Pfn(1), what: Use::Kernel }));
/// assert_eq!(
///     frames.free(Pfn(100)),
///     Err(FrameError::OutOfRange { pfn: Pfn(100), nr_pages: 100 })
/// );
/// assert_eq!(frames.region_of(Pfn(3)), Some(Use::Kernel));
///
/// // Exhaustion is `None`, not a panic.
/// while frames.alloc().is_some() {}
/// assert_eq!(frames.free_frames(), 0);
/// ```
pub struct FrameAllocator<'a> {
    bits: &'a mut [u64],
    nr_pages: u64,
    regions: Regions,
    free: u64,
    /// Where the next search starts (keeps allocation O(1) amortised).
    rotor: usize,
}

/// The bitmap word and bit of `pfn`.
fn bit(pfn: Pfn) -> (usize, u64) {
    ((pfn.0 / 64) as usize, pfn.0 % 64)
}

impl<'a> FrameAllocator<'a> {
    /// All frames free except `regions`. `bits` need not be zeroed.
    pub fn new(bits: &'a mut [u64], nr_pages: u64, regions: Regions) -> Result<Self, FrameError> {
        let need = bitmap_words(nr_pages);
        if bits.len() < need {
            return Err(FrameError::BitmapTooSmall {
                words: bits.len(),
                need,
            });
        }
        let bits = &mut bits[..need];
        bits.fill(0);
        // Bits past nr_pages in the last word count as taken.
        if !nr_pages.is_multiple_of(64) {
            bits[need - 1] = !0u64 << (nr_pages % 64);
        }
        let mut a = FrameAllocator {
            bits,
            nr_pages,
            regions: Regions::new(),
            free: nr_pages,
            rotor: 0,
        };
        for r in &regions {
            for pfn in (r.start.0..r.end.0.min(nr_pages)).map(Pfn) {
                if a.mark(pfn) {
                    a.free -= 1;
                }
            }
        }
        a.regions = regions;
        Ok(a)
    }

    fn mark(&mut self, pfn: Pfn) -> bool {
        let (w, b) = bit(pfn);
        let was = self.bits[w] & (1 << b) != 0;
        self.bits[w] |= 1 << b;
        !was
    }

    /// Frames managed: pfns `0..nr_pages`.
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages
    }
    /// Frames neither reserved nor allocated.
    pub fn free_frames(&self) -> u64 {
        self.free
    }
    /// The reserved regions, as seeded.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
    /// Is `pfn` reserved or allocated (every pfn past `nr_pages` counts as taken)?
    pub fn is_taken(&self, pfn: Pfn) -> bool {
        let (w, b) = bit(pfn);
        pfn.0 >= self.nr_pages || self.bits[w] & (1 << b) != 0
    }
    /// The region holding `pfn`, if it is reserved.
    pub fn region_of(&self, pfn: Pfn) -> Option<Use> {
        self.regions
            .iter()
            .find(|r| (r.start..r.end).contains(&pfn))
            .map(|r| r.what)
    }

    /// One free frame, or `None` when memory is exhausted.
    pub fn alloc(&mut self) -> Option<Pfn> {
        let n = self.bits.len();
        for k in 0..n {
            let w = (self.rotor + k) % n;
            if self.bits[w] != !0 {
                let b = (!self.bits[w]).trailing_zeros() as u64;
                self.bits[w] |= 1 << b;
                self.rotor = w;
                self.free -= 1;
                return Some(Pfn(w as u64 * 64 + b));
            }
        }
        None
    }

    /// `n` free frames in one run of consecutive pfns (first fit from the lowest pfn),
    /// taken; the first of them. `None` if no run is that long (nothing is taken then).
    /// A heap backed by the direct map grows by such runs: consecutive pfns are
    /// consecutive addresses there.
    pub fn alloc_run(&mut self, n: u64) -> Option<Pfn> {
        if n == 0 || n > self.free {
            return None;
        }
        let (mut start, mut len) = (0u64, 0u64);
        let mut p = 0u64;
        while p < self.nr_pages {
            let (w, b) = bit(Pfn(p));
            if b == 0 && self.bits[w] == !0 {
                // A whole word taken: skip it.
                len = 0;
                p += 64;
                continue;
            }
            if self.bits[w] & (1 << b) == 0 {
                if len == 0 {
                    start = p;
                }
                len += 1;
                if len == n {
                    for q in start..start + n {
                        self.mark(Pfn(q));
                    }
                    self.free -= n;
                    return Some(Pfn(start));
                }
            } else {
                len = 0;
            }
            p += 1;
        }
        None
    }

    /// Give back an allocated frame. Reserved, unallocated and out-of-range frames are
    /// refused, so a bookkeeping error cannot hand one frame out twice.
    pub fn free(&mut self, pfn: Pfn) -> Result<(), FrameError> {
        if pfn.0 >= self.nr_pages {
            return Err(FrameError::OutOfRange {
                pfn,
                nr_pages: self.nr_pages,
            });
        }
        if let Some(what) = self.region_of(pfn) {
            return Err(FrameError::Reserved { pfn, what });
        }
        let (w, b) = bit(pfn);
        if self.bits[w] & (1 << b) == 0 {
            return Err(FrameError::DoubleFree { pfn });
        }
        self.bits[w] &= !(1 << b);
        self.free += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(r: &[(u64, u64, Use)]) -> Regions {
        r.iter()
            .map(|&(start, end, what)| Region {
                start: Pfn(start),
                end: Pfn(end),
                what,
            })
            .collect()
    }

    #[test]
    fn reserved_frames_are_never_handed_out() {
        let mut bits = vec![!0u64; 4];
        let mut a = FrameAllocator::new(
            &mut bits,
            200,
            regions(&[(0, 10, Use::Kernel), (50, 60, Use::Initrd)]),
        )
        .unwrap();
        assert_eq!(a.free_frames(), 180);
        let mut got = Vec::new();
        while let Some(p) = a.alloc() {
            got.push(p);
        }
        assert_eq!(got.len(), 180);
        assert!(got
            .iter()
            .all(|&p| p.0 >= 10 && !(50..60).contains(&p.0) && p.0 < 200));
        assert_eq!(a.free_frames(), 0);
        assert_eq!(a.alloc(), None, "exhaustion is None, not a panic");
    }

    #[test]
    fn free_checks_range_reservation_and_double_free() {
        let mut bits = vec![0u64; 2];
        let mut a = FrameAllocator::new(&mut bits, 100, regions(&[(0, 4, Use::Kernel)])).unwrap();
        let p = a.alloc().unwrap();
        assert_eq!(a.free(p), Ok(()));
        assert_eq!(a.free(p), Err(FrameError::DoubleFree { pfn: p }));
        assert_eq!(
            a.free(Pfn(2)),
            Err(FrameError::Reserved {
                pfn: Pfn(2),
                what: Use::Kernel
            })
        );
        assert_eq!(
            a.free(Pfn(100)),
            Err(FrameError::OutOfRange {
                pfn: Pfn(100),
                nr_pages: 100
            })
        );
        assert_eq!(a.region_of(Pfn(3)), Some(Use::Kernel));
    }

    #[test]
    fn a_short_bitmap_is_refused() {
        let mut bits = vec![0u64; 1];
        assert_eq!(
            FrameAllocator::new(&mut bits, 65, Regions::new()).err(),
            Some(FrameError::BitmapTooSmall { words: 1, need: 2 })
        );
    }

    #[test]
    fn runs_of_frames_are_found_whole_or_not_at_all() {
        let mut bits = vec![0u64; 4];
        let mut a = FrameAllocator::new(
            &mut bits,
            200,
            regions(&[(0, 10, Use::Kernel), (50, 60, Use::Initrd)]),
        )
        .unwrap();
        // The first run of 30 free frames starts at 10 (10..50 is 40 long).
        assert_eq!(a.alloc_run(30), Some(Pfn(10)));
        assert_eq!(a.free_frames(), 150);
        // 10 are left before the initrd: 20 must come after it.
        assert_eq!(a.alloc_run(20), Some(Pfn(60)));
        assert!((60..80).all(|p| a.is_taken(Pfn(p))));
        // Longer than any run: refused, nothing taken.
        assert_eq!(a.alloc_run(150), None);
        assert_eq!(a.free_frames(), 130);
        assert_eq!(a.alloc_run(0), None);
        // Freed frames join the run after them again.
        for p in 60..80 {
            a.free(Pfn(p)).unwrap();
        }
        assert_eq!(a.alloc_run(120), Some(Pfn(60)));
        assert_eq!(a.free_frames(), 30);
    }
}
