//! Virtual ranges in module space: which pages are handed out, with one unmapped guard
//! page after every area (an overrun faults instead of running into the next area).
//!
//! A sorted table of spans, first fit. Pure bookkeeping: nothing here touches page
//! tables. A range whose page tables turned out to hold something that is not ours is
//! *poisoned*: kept out of use for good rather than handed out again (it would fail again).

use crate::layout::PAGE_SIZE;
use x86_64::VirtAddr;

/// Areas (live or poisoned) the allocator can track at once.
pub const MAX_SPANS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Live,
    Poisoned,
}

/// `[start, start+len)` in pages from the base; a live span's last page is its guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    len: u64,
    kind: Kind,
}

/// A refused [`RangeAllocator`] call. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// Zero pages asked for.
    Empty,
    /// No gap holds `pages` + the guard page; `largest` is the biggest area that would fit.
    NoSpace {
        /// Pages asked for.
        pages: u64,
        /// Pages of the largest area that would have fit (guard page not counted).
        largest: u64,
    },
    /// The span table is full.
    TooManyAreas {
        /// Areas tracked ([`MAX_SPANS`]).
        max: usize,
    },
    /// `va` is not the start of a live area of `pages` pages.
    NotAllocated {
        /// The address given.
        va: VirtAddr,
        /// The size given, in pages.
        pages: u64,
    },
}

impl core::fmt::Display for RangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RangeError::Empty => write!(f, "an area of 0 pages"),
            RangeError::NoSpace { pages, largest } => write!(
                f,
                "module space exhausted: no room for {pages} pages + guard (largest free area {largest} pages)"
            ),
            RangeError::TooManyAreas { max } => {
                write!(f, "module space has {max} areas already, the most it tracks")
            }
            RangeError::NotAllocated { va, pages } => {
                write!(f, "{va:#x} is not a live area of {pages} pages")
            }
        }
    }
}

/// Virtual ranges of `[base, end)`, first fit, each area followed by an unmapped guard
/// page (as Linux's vmalloc leaves one after every `vm_struct`).
///
/// ```
/// use xenpv_paging::layout::{Split, PAGE_SIZE};
/// use xenpv_paging::vrange::{RangeAllocator, RangeError};
///
/// let base = Split::Full.modules_start();
/// let mut r = RangeAllocator::new(base, base + 16 * PAGE_SIZE);
/// assert_eq!(r.end(), base + 16 * PAGE_SIZE);
///
/// let a = r.alloc(4).unwrap();
/// let b = r.alloc(2).unwrap();
/// assert_eq!(a, base);
/// assert_eq!(b, a + 5 * PAGE_SIZE, "one guard page after each area");
/// assert!(r.is_live(a + 3 * PAGE_SIZE) && !r.is_live(a + 4 * PAGE_SIZE));
/// assert_eq!(r.usage(), (5 + 3, 0), "guards count as used");
///
/// // An area is given back by its exact start and size.
/// assert_eq!(r.free(a, 3), Err(RangeError::NotAllocated { va: a, pages: 3 }));
/// r.free(a, 4).unwrap();
/// assert_eq!(r.alloc(1).unwrap(), a, "first fit reuses the hole");
///
/// // A poisoned area (its page tables held something not ours) is never reused.
/// r.poison(b, 2).unwrap();
/// assert_eq!(r.free(b, 2), Err(RangeError::NotAllocated { va: b, pages: 2 }));
/// assert_eq!((r.usage(), r.live_areas()), ((2, 3), 1));
/// // The tail [8, 16) holds 7 pages + guard, no more.
/// assert_eq!(r.alloc(8), Err(RangeError::NoSpace { pages: 8, largest: 7 }));
/// assert_eq!(r.alloc(7), Ok(base + 8 * PAGE_SIZE));
/// ```
pub struct RangeAllocator {
    base: VirtAddr,
    pages: u64,
    spans: heapless::Vec<Span, MAX_SPANS>,
}

impl RangeAllocator {
    /// Hand out `[base, end)` (page-aligned).
    pub fn new(base: VirtAddr, end: VirtAddr) -> Self {
        debug_assert!(base.is_aligned(PAGE_SIZE) && end.is_aligned(PAGE_SIZE));
        RangeAllocator {
            base,
            pages: end.as_u64().saturating_sub(base.as_u64()) / PAGE_SIZE,
            spans: heapless::Vec::new(),
        }
    }

    /// First address handed out.
    pub fn base(&self) -> VirtAddr {
        self.base
    }
    /// One past the last address handed out.
    pub fn end(&self) -> VirtAddr {
        self.base + self.pages * PAGE_SIZE
    }

    /// Gaps between spans, as (start, len) in pages.
    fn gaps(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let ends = core::iter::once(0).chain(self.spans.iter().map(|s| s.start + s.len));
        let starts = self
            .spans
            .iter()
            .map(|s| s.start)
            .chain(core::iter::once(self.pages));
        ends.zip(starts)
            .enumerate()
            .map(|(i, (from, to))| (i, from, to - from))
    }

    /// An area of `pages` pages (plus its guard page): its address.
    pub fn alloc(&mut self, pages: u64) -> Result<VirtAddr, RangeError> {
        if pages == 0 {
            return Err(RangeError::Empty);
        }
        let need = pages
            .checked_add(1)
            .ok_or(RangeError::NoSpace { pages, largest: 0 })?;
        let found = self.gaps().find(|&(_, _, len)| len >= need);
        let Some((i, start, _)) = found else {
            let largest = self.gaps().map(|g| g.2).max().unwrap_or(0);
            return Err(RangeError::NoSpace {
                pages,
                largest: largest.saturating_sub(1),
            });
        };
        let span = Span {
            start,
            len: need,
            kind: Kind::Live,
        };
        self.spans
            .insert(i, span)
            .map_err(|_| RangeError::TooManyAreas { max: MAX_SPANS })?;
        Ok(self.base + start * PAGE_SIZE)
    }

    fn find_live(&self, va: VirtAddr, pages: u64) -> Result<usize, RangeError> {
        let bad = RangeError::NotAllocated { va, pages };
        if va < self.base || !(va - self.base).is_multiple_of(PAGE_SIZE) {
            return Err(bad);
        }
        let start = (va - self.base) / PAGE_SIZE;
        match self.spans.binary_search_by_key(&start, |s| s.start) {
            Ok(i) if self.spans[i].kind == Kind::Live && self.spans[i].len == pages + 1 => Ok(i),
            _ => Err(bad),
        }
    }

    /// Is `[va, +pages)` exactly a live area?
    pub fn check(&self, va: VirtAddr, pages: u64) -> Result<(), RangeError> {
        self.find_live(va, pages).map(|_| ())
    }

    /// Give a live area back.
    pub fn free(&mut self, va: VirtAddr, pages: u64) -> Result<(), RangeError> {
        let i = self.find_live(va, pages)?;
        self.spans.remove(i);
        Ok(())
    }

    /// Keep a live area out of use for good, merged with poisoned neighbours it touches.
    pub fn poison(&mut self, va: VirtAddr, pages: u64) -> Result<(), RangeError> {
        let i = self.find_live(va, pages)?;
        self.spans[i].kind = Kind::Poisoned;
        if i + 1 < self.spans.len() {
            let (a, b) = (self.spans[i], self.spans[i + 1]);
            if b.kind == Kind::Poisoned && a.start + a.len == b.start {
                self.spans[i].len += b.len;
                self.spans.remove(i + 1);
            }
        }
        if i > 0 {
            let (a, b) = (self.spans[i - 1], self.spans[i]);
            if a.kind == Kind::Poisoned && a.start + a.len == b.start {
                self.spans[i - 1].len += b.len;
                self.spans.remove(i);
            }
        }
        Ok(())
    }

    /// Pages in live areas (guards included) and in poisoned ranges.
    pub fn usage(&self) -> (u64, u64) {
        self.spans.iter().fold((0, 0), |(l, p), s| match s.kind {
            Kind::Live => (l + s.len, p),
            Kind::Poisoned => (l, p + s.len),
        })
    }
    /// Areas handed out and not yet freed or poisoned.
    pub fn live_areas(&self) -> usize {
        self.spans.iter().filter(|s| s.kind == Kind::Live).count()
    }
    /// Is `va` inside a live area (guard page excluded)?
    pub fn is_live(&self, va: VirtAddr) -> bool {
        if va < self.base || va >= self.end() {
            return false;
        }
        let p = (va - self.base) / PAGE_SIZE;
        self.spans
            .iter()
            .any(|s| s.kind == Kind::Live && (s.start..s.start + s.len - 1).contains(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: VirtAddr = VirtAddr::new(0xffff_ffff_c000_0000);

    #[test]
    fn first_fit_with_a_guard_page_after_each_area() {
        let mut r = RangeAllocator::new(B, B + 100 * PAGE_SIZE);
        let a = r.alloc(10).unwrap();
        let b = r.alloc(5).unwrap();
        assert_eq!(a, B);
        assert_eq!(b, B + 11 * PAGE_SIZE, "one guard page between areas");
        assert!(r.is_live(a + 9 * PAGE_SIZE) && !r.is_live(a + 10 * PAGE_SIZE));
        r.free(a, 10).unwrap();
        assert_eq!(r.alloc(3).unwrap(), B, "the freed gap is reused first");
        assert_eq!(
            r.alloc(8).unwrap(),
            B + 17 * PAGE_SIZE,
            "too big for the hole left"
        );
    }

    #[test]
    fn exhaustion_and_fragmentation_are_errors_naming_the_sizes() {
        let mut r = RangeAllocator::new(B, B + 20 * PAGE_SIZE);
        let areas: Vec<VirtAddr> = (0..5).map(|_| r.alloc(3).unwrap()).collect();
        assert_eq!(
            r.alloc(1),
            Err(RangeError::NoSpace {
                pages: 1,
                largest: 0
            })
        );
        // Free every other area: 3 holes of 4 pages, none holds 5 + guard.
        for a in areas.iter().step_by(2) {
            r.free(*a, 3).unwrap();
        }
        assert_eq!(
            r.alloc(5),
            Err(RangeError::NoSpace {
                pages: 5,
                largest: 3
            })
        );
        assert_eq!(r.alloc(3), Ok(areas[0]));
        assert_eq!(r.alloc(0), Err(RangeError::Empty));
        assert_eq!(
            r.alloc(u64::MAX),
            Err(RangeError::NoSpace {
                pages: u64::MAX,
                largest: 0
            })
        );
    }

    #[test]
    fn free_and_poison_check_the_area() {
        let mut r = RangeAllocator::new(B, B + 64 * PAGE_SIZE);
        let a = r.alloc(4).unwrap();
        assert!(r.free(a, 3).is_err(), "wrong size");
        assert!(r.free(a + PAGE_SIZE, 4).is_err(), "not its start");
        let b = r.alloc(4).unwrap();
        r.poison(a, 4).unwrap();
        r.poison(b, 4).unwrap();
        assert_eq!(r.usage(), (0, 10), "adjacent poisoned ranges merged");
        assert!(r.free(a, 4).is_err(), "a poisoned area is never given back");
        assert_eq!(r.alloc(4).unwrap(), B + 10 * PAGE_SIZE);
    }

    #[test]
    fn the_span_table_limit_is_an_error() {
        let mut r = RangeAllocator::new(B, B + 4 * MAX_SPANS as u64 * PAGE_SIZE);
        for _ in 0..MAX_SPANS {
            r.alloc(1).unwrap();
        }
        assert_eq!(r.alloc(1), Err(RangeError::TooManyAreas { max: MAX_SPANS }));
    }

    proptest! {
        /// Random alloc/free: areas never overlap each other or their guards, stay inside,
        /// and accounting matches.
        #[test]
        fn areas_never_overlap(ops in proptest::collection::vec((any::<bool>(), 1u64..40, any::<u8>()), 1..300)) {
            let mut r = RangeAllocator::new(B, B + 512 * PAGE_SIZE);
            let mut live: Vec<(VirtAddr, u64)> = vec![];
            for (alloc, pages, pick) in ops {
                if alloc || live.is_empty() {
                    match r.alloc(pages) {
                        Ok(va) => {
                            let s = (va - B) / PAGE_SIZE;
                            prop_assert!(s + pages < 512);
                            for &(o, op) in &live {
                                let t = (o - B) / PAGE_SIZE;
                                prop_assert!(s + pages < t || t + op < s, "overlap with guard");
                            }
                            live.push((va, pages));
                        }
                        Err(RangeError::NoSpace { largest, .. }) => prop_assert!(largest < pages),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                } else {
                    let (va, pages) = live.swap_remove(pick as usize % live.len());
                    prop_assert_eq!(r.free(va, pages), Ok(()));
                }
                let used: u64 = live.iter().map(|l| l.1 + 1).sum();
                prop_assert_eq!(r.usage(), (used, 0));
            }
        }
    }
}
