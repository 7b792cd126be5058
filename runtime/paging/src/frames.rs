//! The frame allocator: which pseudo-physical frames are taken, and by what.
//!
//! A bitmap (one bit per pfn, set = taken) that lives in frames the takeover reserves and
//! is reached through the direct map; plus the named regions it was seeded with, so that
//! the layout report can say what holds a frame. Frames are pseudo-physical ([`Pfn`]);
//! the p2m gives the machine frame a page-table entry needs.

use crate::ops::Pfn;
use core::sync::atomic::{AtomicU64, Ordering};

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
    /// The start_info page: suspend names it to Xen, a restore rewrites it in place.
    StartInfo,
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
            Use::StartInfo => "start-info",
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
    /// Freeing a frame of a chunk the direct map does not map yet (it was never handed
    /// out).
    Unmapped {
        /// The frame given.
        pfn: Pfn,
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
            FrameError::Unmapped { pfn } => {
                write!(
                    f,
                    "pfn {pfn:#x} freed but its direct-map chunk is not mapped"
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

/// Frames in one chunk of the direct map: the frames one direct-map L1 maps (2 MiB).
/// The on-demand direct map ([`crate::direct`]) maps whole chunks.
pub const CHUNK_PAGES: u64 = 512;

/// Chunks covering `nr_pages` frames.
pub const fn chunks(nr_pages: u64) -> u64 {
    nr_pages.div_ceil(CHUNK_PAGES)
}

/// Words of the chunk bitmap (one bit per chunk, set = mapped) for `nr_pages`.
pub const fn chunk_words(nr_pages: u64) -> usize {
    chunks(nr_pages).div_ceil(64) as usize
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
    /// One bit per chunk, set = mapped in the direct map; `None`: every chunk is. Atomic
    /// so that the runtime can read it without the allocator's lock (bits are only ever
    /// set: a mapped chunk stays mapped).
    chunks: Option<&'a [AtomicU64]>,
    /// Frames in unmapped chunks that no region holds: free once their chunk is mapped.
    /// Ballooned frames are not counted (they have no machine frame to map).
    unmapped: u64,
    /// The balloon's record (one bit per pfn, set = given back to Xen), once attached
    /// ([`FrameAllocator::attach_balloon`]).
    balloon: Option<&'a mut [u64]>,
    /// Frames given back to Xen (their bits set in `balloon`, taken here).
    ballooned: u64,
}

/// Is chunk `c`'s bit set?
fn chunk_bit(bits: &[AtomicU64], c: u64) -> bool {
    bits[(c / 64) as usize].load(Ordering::Relaxed) & (1 << (c % 64)) != 0
}

/// Is chunk `c` mapped, by a chunk bitmap shared with a [`FrameAllocator`] made by
/// [`FrameAllocator::new_on_demand`] (readable without the allocator: bits are only set)?
pub fn chunk_is_mapped(bits: &[AtomicU64], c: u64) -> bool {
    bits.get((c / 64) as usize)
        .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (c % 64)) != 0)
}

/// Chunks mapped, by a chunk bitmap shared with a [`FrameAllocator`] (as
/// [`chunk_is_mapped`]).
pub fn mapped_chunk_count(bits: &[AtomicU64]) -> u64 {
    bits.iter()
        .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
        .sum()
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
            chunks: None,
            unmapped: 0,
            balloon: None,
            ballooned: 0,
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

    /// An allocator for an on-demand direct map: only the chunks `mapped` lists
    /// (`[start, end)` chunk indexes) are mapped, and only their frames are free; the
    /// frames of every other chunk count as taken until [`crate::direct::DirectMap`] maps
    /// the chunk (and is the only one that can release them). So a frame this allocator
    /// hands out is always direct-mapped. `bits` and `chunk_bits` need not be zeroed.
    /// Cost: proportional to the bitmap's words and the reserved frames, not to memory.
    ///
    /// ```
    /// use xenpv_paging::frames::*;
    /// use xenpv_paging::Pfn;
    ///
    /// let mut regions = Regions::new();
    /// regions.push(Region { start: Pfn(0), end: Pfn(4), what: Use::Kernel }).unwrap();
    /// let mut bits = vec![0; bitmap_words(2048)];
    /// let cbits: Vec<_> = (0..chunk_words(2048)).map(|_| Default::default()).collect();
    /// // 4 chunks of 512 frames; chunk 0 (the kernel's) is mapped.
    /// let f = FrameAllocator::new_on_demand(&mut bits, &cbits, 2048, regions, &[(0, 1)]).unwrap();
    /// assert_eq!((f.free_frames(), f.unmapped_frames()), (508, 1536));
    /// assert!(f.is_mapped(Pfn(511)) && !f.is_mapped(Pfn(512)));
    /// assert!(f.is_taken(Pfn(512)), "an unmapped frame is never handed out");
    /// assert_eq!(f.next_unmapped_chunk(), Some(1));
    /// ```
    pub fn new_on_demand(
        bits: &'a mut [u64],
        chunk_bits: &'a [AtomicU64],
        nr_pages: u64,
        regions: Regions,
        mapped: &[(u64, u64)],
    ) -> Result<Self, FrameError> {
        let need = chunk_words(nr_pages);
        if chunk_bits.len() < need {
            return Err(FrameError::BitmapTooSmall {
                words: chunk_bits.len(),
                need,
            });
        }
        let mut a = Self::new(bits, nr_pages, Regions::new())?;
        let chunk_bits = &chunk_bits[..need];
        for w in chunk_bits {
            w.store(0, Ordering::Relaxed);
        }
        // Everything taken, then the mapped chunks' frames free, then the regions taken.
        a.bits.fill(!0);
        a.free = 0;
        let n = chunks(nr_pages);
        for &(s, e) in mapped {
            for c in s..e.min(n) {
                if !chunk_bit(chunk_bits, c) {
                    chunk_bits[(c / 64) as usize].fetch_or(1 << (c % 64), Ordering::Relaxed);
                    a.free += a.clear_chunk(c);
                }
            }
        }
        a.unmapped = nr_pages - a.free;
        a.chunks = Some(chunk_bits);
        for (i, r) in regions.iter().enumerate() {
            for pfn in (r.start.0..r.end.0.min(nr_pages)).map(Pfn) {
                if a.is_mapped(pfn) {
                    if a.mark(pfn) {
                        a.free -= 1;
                    }
                } else if !regions[..i].iter().any(|q| (q.start..q.end).contains(&pfn)) {
                    // Reserved and in an unmapped chunk: not waiting to become free.
                    a.unmapped -= 1;
                }
            }
        }
        a.regions = regions;
        Ok(a)
    }

    /// Clear chunk `c`'s frame bits (below nr_pages); how many frames that freed.
    fn clear_chunk(&mut self, c: u64) -> u64 {
        let start = c * CHUNK_PAGES;
        let end = (start + CHUNK_PAGES).min(self.nr_pages);
        // A chunk is 8 whole words; the last one may end inside a word.
        for pfn in (start..end).step_by(64).map(Pfn) {
            let (w, _) = bit(pfn);
            let n = (end - pfn.0).min(64);
            self.bits[w] &= if n == 64 { 0 } else { !0u64 << n };
        }
        end - start
    }

    /// Is `pfn` in a chunk the direct map maps (or is every chunk mapped)?
    pub fn is_mapped(&self, pfn: Pfn) -> bool {
        let c = pfn.0 / CHUNK_PAGES;
        match self.chunks {
            None => pfn.0 < self.nr_pages,
            Some(bits) => pfn.0 < self.nr_pages && chunk_bit(bits, c),
        }
    }

    /// Is chunk `c` mapped in the direct map?
    pub fn is_mapped_chunk(&self, c: u64) -> bool {
        self.is_mapped(Pfn(c * CHUNK_PAGES))
    }

    /// Frames that become free when their chunk is mapped.
    pub fn unmapped_frames(&self) -> u64 {
        self.unmapped
    }

    /// Free frames, mapped or not: [`Self::free_frames`] + [`Self::unmapped_frames`].
    pub fn available_frames(&self) -> u64 {
        self.free + self.unmapped
    }

    /// Chunks mapped in the direct map, and chunks in all.
    pub fn mapped_chunks(&self) -> (u64, u64) {
        let n = chunks(self.nr_pages);
        match self.chunks {
            None => (n, n),
            Some(bits) => (mapped_chunk_count(bits), n),
        }
    }

    /// The lowest chunk not mapped yet, `None` if all are.
    pub fn next_unmapped_chunk(&self) -> Option<u64> {
        let bits = self.chunks?;
        let (w, b) = bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .enumerate()
            .find(|(_, w)| *w != !0)
            .map(|(i, w)| (i as u64, u64::from((!w).trailing_zeros())))?;
        let c = w * 64 + b;
        (c < chunks(self.nr_pages)).then_some(c)
    }

    /// Chunk `c` is now mapped (its L1 written and hooked): its frames no region holds
    /// become free. Only the direct map calls this, after the mapping succeeded.
    pub(crate) fn chunk_mapped(&mut self, c: u64) {
        let Some(bits) = self.chunks else {
            return;
        };
        if c >= chunks(self.nr_pages) || chunk_bit(bits, c) {
            return;
        }
        bits[(c / 64) as usize].fetch_or(1 << (c % 64), Ordering::Relaxed);
        let freed = self.clear_chunk(c);
        let (start, end) = (
            Pfn(c * CHUNK_PAGES),
            Pfn((c * CHUNK_PAGES + CHUNK_PAGES).min(self.nr_pages)),
        );
        let mut reserved = 0;
        for i in 0..self.regions.len() {
            let r = self.regions[i];
            for pfn in (r.start.max(start).0..r.end.min(end).0).map(Pfn) {
                if self.mark(pfn) {
                    reserved += 1;
                }
            }
        }
        // Ballooned frames have no machine frame: they stay taken (and were never
        // counted in `unmapped`).
        let mut ballooned = 0;
        for pfn in (start.0..end.0).map(Pfn) {
            if self.is_ballooned(pfn) && self.mark(pfn) {
                ballooned += 1;
            }
        }
        self.free += freed - reserved - ballooned;
        self.unmapped -= freed - reserved - ballooned;
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
        if !self.is_mapped(pfn) {
            return Err(FrameError::Unmapped { pfn });
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

/// A refused balloon call of the [`FrameAllocator`]. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonError {
    /// No balloon record is attached.
    NoRecord,
    /// The frame is reserved, past nr_pages, or (mapped) not free: it is in use.
    InUse {
        /// The frame given.
        pfn: Pfn,
    },
    /// Taking a frame that is ballooned already, or giving back one that is not.
    Record {
        /// The frame given.
        pfn: Pfn,
        /// What the record says.
        ballooned: bool,
    },
}

impl core::fmt::Display for BalloonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BalloonError::NoRecord => write!(f, "no balloon record attached"),
            BalloonError::InUse { pfn } => write!(f, "pfn {pfn:#x} is in use"),
            BalloonError::Record { pfn, ballooned } => {
                write!(f, "pfn {pfn:#x}: ballooned={ballooned} already")
            }
        }
    }
}

impl<'a> FrameAllocator<'a> {
    /// Attach the balloon's record: `bits` ([`bitmap_words`] of nr_pages, need not be
    /// zeroed) says which frames were given back to Xen; they count as taken, and a
    /// chunk the direct map maps later keeps them taken.
    pub fn attach_balloon(&mut self, bits: &'a mut [u64]) -> Result<(), FrameError> {
        let need = bitmap_words(self.nr_pages);
        if bits.len() < need {
            return Err(FrameError::BitmapTooSmall {
                words: bits.len(),
                need,
            });
        }
        bits.fill(0);
        self.balloon = Some(bits);
        self.ballooned = 0;
        Ok(())
    }

    /// Is `pfn` given back to Xen (recorded in the balloon's bitmap)?
    pub fn is_ballooned(&self, pfn: Pfn) -> bool {
        let (w, b) = bit(pfn);
        self.balloon
            .as_ref()
            .is_some_and(|bits| pfn.0 < self.nr_pages && bits[w] & (1 << b) != 0)
    }

    /// Frames given back to Xen.
    pub fn ballooned_frames(&self) -> u64 {
        self.ballooned
    }

    /// Could `pfn` be given to the balloon: below nr_pages, not reserved, not ballooned,
    /// and free (a mapped chunk's) or in an unmapped chunk? `Some(mapped)` if so.
    pub fn balloon_candidate(&self, pfn: Pfn) -> Option<bool> {
        if pfn.0 >= self.nr_pages || self.balloon.is_none() || self.is_ballooned(pfn) {
            return None;
        }
        let mapped = self.is_mapped(pfn);
        if mapped && self.is_taken(pfn) {
            return None;
        }
        if !mapped && self.region_of(pfn).is_some() {
            return None;
        }
        Some(mapped)
    }

    /// Take `pfn` for the balloon (it is about to be given back to Xen): recorded, and
    /// taken so that nothing hands it out. Only a [`Self::balloon_candidate`] is accepted.
    pub fn balloon_take(&mut self, pfn: Pfn) -> Result<(), BalloonError> {
        if self.balloon.is_none() {
            return Err(BalloonError::NoRecord);
        }
        if self.is_ballooned(pfn) {
            return Err(BalloonError::Record {
                pfn,
                ballooned: true,
            });
        }
        let mapped = self
            .balloon_candidate(pfn)
            .ok_or(BalloonError::InUse { pfn })?;
        if mapped {
            self.mark(pfn);
            self.free -= 1;
        } else {
            self.unmapped -= 1;
        }
        self.set_ballooned(pfn, true);
        Ok(())
    }

    /// `pfn` has a machine frame again (Xen populated it, or refused to take it): off the
    /// record, and free (or, in an unmapped chunk, free once the chunk is mapped). With
    /// `usable` false the frame stays taken for good (its direct-map entry could not be
    /// written, so handing it out would fault).
    pub fn balloon_give(&mut self, pfn: Pfn, usable: bool) -> Result<(), BalloonError> {
        if self.balloon.is_none() {
            return Err(BalloonError::NoRecord);
        }
        if !self.is_ballooned(pfn) {
            return Err(BalloonError::Record {
                pfn,
                ballooned: false,
            });
        }
        self.set_ballooned(pfn, false);
        if !usable {
            return Ok(());
        }
        if self.is_mapped(pfn) {
            let (w, b) = bit(pfn);
            self.bits[w] &= !(1 << b);
            self.free += 1;
        } else {
            self.unmapped += 1;
        }
        Ok(())
    }

    fn set_ballooned(&mut self, pfn: Pfn, on: bool) {
        let (w, b) = bit(pfn);
        if let Some(bits) = self.balloon.as_mut() {
            if on {
                bits[w] |= 1 << b;
                self.ballooned += 1;
            } else {
                bits[w] &= !(1 << b);
                self.ballooned -= 1;
            }
        }
    }

    /// The lowest ballooned pfn at or after `from`, `None` if there is none.
    pub fn next_ballooned(&self, from: Pfn) -> Option<Pfn> {
        let bits = self.balloon.as_ref()?;
        let mut p = from.0;
        while p < self.nr_pages {
            let (w, b) = bit(Pfn(p));
            let word = bits[w] >> b;
            if word == 0 {
                p = (w as u64 + 1) * 64;
                continue;
            }
            let q = p + u64::from(word.trailing_zeros());
            return (q < self.nr_pages).then_some(Pfn(q));
        }
        None
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
