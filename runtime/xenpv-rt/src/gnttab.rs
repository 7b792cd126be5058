//! Grant tables: setup and the grant-table operations (thin hypercall glue over the
//! entry protocol in `xenpv_protocol::grant`).
//!
//! Granting hands the page to a guard: [`GrantTable::grant`] takes a [`SharedPage`] and
//! gives a [`GrantedPage`] back, [`GrantTable::reserve`] a [`ReservedRef`] that owns its
//! page; the page comes back only through [`GrantTable::end`] /
//! [`GrantTable::release`], once the grant has ended. So safe code cannot free a page a
//! peer may still write. A guard dropped instead (or whose grant the peer keeps past a
//! driver's deadline) goes to the table's deferred list: [`GrantTable::retry_deferred`]
//! ends those grants once the peer lets go, and returns the references and the pages
//! (as Linux's `gnttab_add_deferred`); [`GrantTable::deferred`] counts those waiting.

use crate::hypercall;
use crate::mm::layout::{Fixmap, VirtAddr, GNTTAB_MAX_FRAMES, PAGE_SIZE};
use crate::mm::{Memory, Page};
use crate::shared_page::SharedPage;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use xenpv_abi::Mfn;
pub use xenpv_protocol::grant::*;
use xenpv_protocol::shared_ring::PageMem;

// grant_table.h's operations and their arguments (xen-sys has none of them); their
// layouts are checked in xenpv-abi's tests/layout.rs.
use xenpv_abi::grant::{
    Copy as GnttabCopy, CopyPtr as RawCopyPtr, MapGrantRef, QuerySize, SetupTable, UnmapGrantRef,
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_CONTAINS_PTE, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE,
    GNTTABOP_UNMAP_GRANT_REF,
};

const DOMID_SELF: u16 = hypercall::DOMID_SELF as u16;

/// One side of a copy: a grant reference or a frame (`gmfn` is the mfn for PV). Made
/// by [`by_ref`] or [`by_frame`] only: a frame side borrows a [`Page`] the caller owns
/// for as long as it lives, so a copy can never be aimed at memory that is not the
/// caller's, or that was freed; whether Xen reads the side as a grant reference or as
/// a frame follows from which of the two made it.
#[derive(Clone, Copy)]
pub struct CopyPtr<'a> {
    raw: RawCopyPtr,
    /// Made by [`by_ref`]: Xen reads `u` as a grant reference (`GNTCOPY_*_gref`).
    gref: bool,
    _page: PhantomData<&'a Page>,
}

fn op<T>(name: &'static str, cmd: u32, arg: &mut [T]) -> Result<(), GntError> {
    hypercall::grant_table_op(cmd, arg).map_err(|e| GntError::Xen(name, e))
}
fn status(name: &'static str, s: i16) -> Result<(), GntError> {
    if s == 0 {
        Ok(())
    } else {
        Err(GntError::Status(name, s))
    }
}

/// Is the fixmap's grant-mapping slot holding a live [`Mapping`]?
static MAP_SLOT_BUSY: AtomicBool = AtomicBool::new(false);

/// Is a grant mapped back at the fixmap's grant-mapping slot ([`GrantTable::map`])? A
/// foreign frame there must not be saved: the guest does not suspend meanwhile.
pub fn map_slot_busy() -> bool {
    MAP_SLOT_BUSY.load(Ordering::Acquire)
}

/// A guest has one grant table: set up once ([`GrantTable::setup`]).
static SET_UP: SetUpOnce = SetUpOnce::new();

/// Pages the deferred list holds at most (each with its reference): two vifs' worth of
/// pages kept at close. Past it a page is counted lost and never reused.
pub const DEFERRED_MAX: usize = 1024;

/// Pages whose grant a peer kept, with their references, until it lets go. The table's
/// (there is one per guest), in a static so that a guard dropped anywhere can hand its
/// page over.
static DEFERRED: spin::Mutex<Deferred<SharedPage, DEFERRED_MAX>> =
    spin::Mutex::new(Deferred::new());
/// Pages dropped while the deferred list was in use (a guard dropped inside
/// `retry_deferred`, which cannot happen in the runtime): kept out of use forever.
static LOST: AtomicU64 = AtomicU64::new(0);

/// Pages of guards dropped after a resume in a new domain (their grants died with the
/// old table): freed by the next [`GrantTable::retry_deferred`], never ended (their
/// references may name new grants now).
static STALE: spin::Mutex<heapless::Vec<SharedPage, DEFERRED_MAX>> =
    spin::Mutex::new(heapless::Vec::new());

/// The current epoch (see [`crate::suspend::epoch`]).
fn now_epoch() -> u32 {
    crate::suspend::epoch()
}

/// Hand a page whose grant may still be live to the deferred list (or, made in an
/// earlier epoch, to the stale list). Full or busy: the page is never freed (a `Page`
/// that is not given back stays allocated) and counted.
fn defer_page(gref: GrantRef, page: SharedPage, epoch: u32) {
    if epoch != now_epoch() {
        let full = match STALE.try_lock() {
            Some(mut s) => s.push(page).is_err(),
            None => true,
        };
        if full {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    match DEFERRED.try_lock() {
        // Full: counted in `Deferred::lost`; the page (not freed) is kept out of use.
        Some(mut d) => {
            let _ = d.defer(gref, page);
        }
        None => {
            LOST.fetch_add(1, Ordering::Relaxed);
            let _ = page;
        }
    }
}

/// A page granted to a peer ([`GrantTable::grant`]): owned by the guard while the grant
/// lives, so it cannot be freed; [`GrantTable::end`] gives it back once the peer lets
/// go. Dropped (or ended too late, [`GrantTable::defer`]), it goes to the deferred list.
/// Read and written with volatile accesses ([`GrantedPage::page`], [`PageMem`]).
#[must_use = "dropping a grant defers its page until retry_deferred ends it"]
#[derive(Debug)]
pub struct GrantedPage {
    gref: GrantRef,
    /// Always `Some` until `end` or `drop` takes it.
    page: Option<SharedPage>,
    /// The epoch it was granted in ([`crate::suspend::epoch`]).
    epoch: u32,
}

impl GrantedPage {
    /// The reference (what the peer is told).
    pub fn gref(&self) -> GrantRef {
        self.gref
    }
    /// Granted before the guest resumed in a new domain: the grant is gone, the
    /// reference means nothing (hand the guard to [`GrantTable::forget_stale`]).
    pub fn is_stale(&self) -> bool {
        self.epoch != now_epoch()
    }
    /// The page, for volatile reads ([`SharedPage::read_bytes`]) and as a copy side.
    pub fn page(&self) -> &SharedPage {
        self.page
            .as_ref()
            .expect("a GrantedPage holds its page until consumed")
    }
    fn page_mut(&mut self) -> &mut SharedPage {
        self.page
            .as_mut()
            .expect("a GrantedPage holds its page until consumed")
    }
    /// Copy bytes in with volatile writes.
    pub fn write_bytes(&mut self, at: usize, data: &[u8]) {
        self.page_mut().write_bytes(at, data)
    }
    /// The page as bytes we alone write: only for a page granted read-only (a TX
    /// buffer), which the peer cannot write.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; 4096] {
        self.page_mut().bytes_mut()
    }
    fn take(mut self) -> (GrantRef, SharedPage) {
        let page = self
            .page
            .take()
            .expect("a GrantedPage holds its page until consumed");
        (self.gref, page)
    }
}

impl Drop for GrantedPage {
    fn drop(&mut self) {
        if let Some(page) = self.page.take() {
            defer_page(self.gref, page, self.epoch);
        }
    }
}

impl PageMem for GrantedPage {
    fn load_u32(&self, at: usize) -> u32 {
        self.page().load_u32(at)
    }
    fn store_u32(&mut self, at: usize, v: u32) {
        self.page_mut().store_u32(at, v)
    }
    fn read(&self, at: usize, out: &mut [u8]) {
        self.page().read_bytes(at, out)
    }
    fn write(&mut self, at: usize, data: &[u8]) {
        self.page_mut().write_bytes(at, data)
    }
}

/// The grant table, mapped, and its free list.
pub struct GrantTable {
    frames: u32,
    free: FreeList,
}

/// A granted page mapped back through Xen (the peer side of a grant, done by us).
///
/// All mappings share one fixmap slot ([`Fixmap::GrantMap`]): unmap one before mapping
/// the next.
pub struct Mapping {
    handle: u32,
    pte: u64,
    va: VirtAddr,
}

impl GrantTable {
    /// Set up `want` frames (bounded by what Xen allows and the fixmap holds).
    ///
    /// `GNTTABOP_query_size`, then `GNTTABOP_setup_table` for `want` v1 frames (each
    /// [`ENTRIES_PER_FRAME`] references), which are mapped at the fixmap's grant slots.
    /// References below [`RESERVED`] stay out of the free list. Once per guest: a
    /// second call is refused ([`GntError::AlreadySetUp`]; two free lists over one table
    /// would hand an entry to two owners).
    pub fn setup(mem: &mut Memory, want: u32) -> Result<GrantTable, GntError> {
        Self::setup_clamped(mem, want, false)
    }

    /// Set up as many frames as Xen allows and the fixmap holds, at most `want` (what
    /// the runtime's device layer does, so that devices connected later find references).
    pub fn setup_up_to(mem: &mut Memory, want: u32) -> Result<GrantTable, GntError> {
        Self::setup_clamped(mem, want, true)
    }

    fn setup_clamped(mem: &mut Memory, want: u32, clamp: bool) -> Result<GrantTable, GntError> {
        SET_UP.claim()?;
        let r = Self::setup_once(mem, want, clamp);
        if r.is_err() {
            SET_UP.release();
        }
        r
    }

    fn setup_once(mem: &mut Memory, want: u32, clamp: bool) -> Result<GrantTable, GntError> {
        let mut q = [QuerySize {
            dom: DOMID_SELF,
            nr_frames: 0,
            max_nr_frames: 0,
            status: 0,
        }];
        op("GNTTABOP_query_size", GNTTABOP_QUERY_SIZE, &mut q)?;
        status("GNTTABOP_query_size", q[0].status)?;
        let max = q[0].max_nr_frames.min(GNTTAB_MAX_FRAMES as u32);
        let want = if clamp { want.min(max) } else { want };
        if want == 0 || want > max {
            return Err(GntError::Frames { want, max });
        }
        let mut list = [0u64; GNTTAB_MAX_FRAMES];
        let mut s = [SetupTable {
            dom: DOMID_SELF,
            nr_frames: want,
            status: 0,
            frame_list: list.as_mut_ptr(),
        }];
        op("GNTTABOP_setup_table", GNTTABOP_SETUP_TABLE, &mut s)?;
        status("GNTTABOP_setup_table", s[0].status)?;
        for (i, &mfn) in list[..want as usize].iter().enumerate() {
            mem.set_fixmap(Fixmap::GnttabFirst as usize + i, Some(Mfn(mfn)))
                .map_err(|e| GntError::Xen("mapping the grant table", e.error))?;
        }
        Ok(GrantTable {
            frames: want,
            free: FreeList::new(want * ENTRIES_PER_FRAME),
        })
    }

    /// References the table holds (`frames * ENTRIES_PER_FRAME`, the reserved ones
    /// included).
    pub fn refs(&self) -> u32 {
        self.frames * ENTRIES_PER_FRAME
    }
    /// References free to [`grant`](GrantTable::grant).
    pub fn free_count(&self) -> usize {
        self.free.free_count()
    }

    fn entry(&self, r: GrantRef) -> Entry<'static> {
        assert!(r < self.refs());
        entry(r)
    }

    /// Take a reference out of the free list, with the page it will grant, for a driver
    /// that grants and ends it on its own, one request at a time
    /// ([`ReservedRef::grant`], [`ReservedRef::end`]), without holding the table. The
    /// page stays the reference's until [`GrantTable::release`] gives both back.
    pub fn reserve(&mut self, page: SharedPage) -> Result<ReservedRef, (SharedPage, GntError)> {
        match self.free.alloc() {
            Ok(gref) => Ok(ReservedRef {
                gref,
                page: Some(page),
                granted: false,
                epoch: now_epoch(),
            }),
            Err(e) => Err((page, e)),
        }
    }

    /// Put a reserved reference back in the free list, ending its grant first, and hand
    /// its page back; refused (and handed back) while the peer still uses it.
    pub fn release(&mut self, mut r: ReservedRef) -> Result<SharedPage, (ReservedRef, GntError)> {
        if r.is_stale() {
            let epoch = r.epoch;
            return Err((r, GntError::Stale { epoch }));
        }
        if let Err(e) = r.end() {
            return Err((r, e));
        }
        if let Err(e) = self.free.free(r.gref) {
            return Err((r, e));
        }
        let page = r
            .page
            .take()
            .expect("a ReservedRef holds its page until consumed");
        Ok(page)
    }

    /// Pages whose grant a peer kept, waiting in the deferred list for
    /// [`retry_deferred`](GrantTable::retry_deferred).
    pub fn deferred(&self) -> usize {
        DEFERRED.try_lock().map_or(0, |d| d.len())
    }
    /// Pages that could not be deferred (the list, [`DEFERRED_MAX`], was full): never
    /// coming back.
    pub fn lost(&self) -> u64 {
        LOST.load(Ordering::Relaxed) + DEFERRED.try_lock().map_or(0, |d| d.lost())
    }

    /// Hand a granted page to the deferred list (its peer still holds it): its grant is
    /// ended, and the reference and page come back, by a later
    /// [`retry_deferred`](GrantTable::retry_deferred). What dropping the guard does.
    pub fn defer(&mut self, g: GrantedPage) {
        drop(g)
    }

    /// End every deferred grant its peer has let go of, returning the reference to the
    /// free list and the page to `mem`: how many came back. One pass over the list
    /// (bounded); call it now and then (drivers do on connect, the appliance each round
    /// while [`deferred`](GrantTable::deferred) is not 0).
    pub fn retry_deferred(&mut self, mem: &mut Memory) -> usize {
        let mut back = 0;
        if let Some(mut s) = STALE.try_lock() {
            while let Some(page) = s.pop() {
                page.free(mem);
                back += 1;
            }
        }
        let Some(mut d) = DEFERRED.try_lock() else {
            return back;
        };
        let (refs, free) = (self.refs(), &mut self.free);
        back + d.retry(
            |r| {
                if r >= refs {
                    return Err(GntError::NotGranted(r));
                }
                entry(r).end(r)
            },
            |r, page| {
                // Cannot fail: the reference was handed out and not freed since.
                let _ = free.free(r);
                page.free(mem);
            },
        )
    }

    /// Before the suspend hypercall: the table's frames unmapped (Xen's frames must not
    /// be mapped when the domain is saved: the toolstack rejects them, or drops the page
    /// table holding them). Nothing may touch an entry until [`resume`](Self::resume).
    #[cfg(feature = "suspend")]
    pub(crate) fn suspend(&mut self, mem: &mut Memory) -> Result<(), GntError> {
        if MAP_SLOT_BUSY.load(Ordering::Acquire) {
            return Err(GntError::MapSlotBusy);
        }
        for i in 0..self.frames as usize {
            mem.set_fixmap(Fixmap::GnttabFirst as usize + i, None)
                .map_err(|e| GntError::Xen("unmapping the grant table", e.error))?;
        }
        Ok(())
    }

    /// After the suspend hypercall: the table set up again (`GNTTABOP_setup_table` for
    /// as many frames, mapped at the same slots). In a new domain (`new_domain`) every
    /// grant is gone: the deferred pages are freed (their grants with them) and the free
    /// list starts afresh; guards from before are stale (the caller bumped the epoch).
    #[cfg(feature = "suspend")]
    pub(crate) fn resume(&mut self, mem: &mut Memory, new_domain: bool) -> Result<(), GntError> {
        let mut list = [0u64; GNTTAB_MAX_FRAMES];
        let n = (self.frames as usize).min(GNTTAB_MAX_FRAMES);
        let mut s = [SetupTable {
            dom: DOMID_SELF,
            nr_frames: n as u32,
            status: 0,
            frame_list: list.as_mut_ptr(),
        }];
        op("GNTTABOP_setup_table", GNTTABOP_SETUP_TABLE, &mut s)?;
        status("GNTTABOP_setup_table", s[0].status)?;
        for (i, &mfn) in list[..n].iter().enumerate() {
            mem.set_fixmap(Fixmap::GnttabFirst as usize + i, Some(Mfn(mfn)))
                .map_err(|e| GntError::Xen("mapping the grant table", e.error))?;
        }
        if new_domain {
            if let Some(mut d) = DEFERRED.try_lock() {
                d.retry(|_| Ok(()), |_, page| page.free(mem));
            }
            self.free.reset();
        }
        Ok(())
    }
}

/// A grant reference reserved by [`GrantTable::reserve`], with the page it grants: its
/// owner grants the page through it and ends the grant, as often as it likes. The page
/// can only be taken back through [`GrantTable::release`] (after the grant ended); a
/// reserved reference dropped instead goes to the deferred list with its page.
#[derive(Debug)]
pub struct ReservedRef {
    gref: GrantRef,
    /// Always `Some` until `release` or `drop` takes it.
    page: Option<SharedPage>,
    /// Granted and not (yet) ended.
    granted: bool,
    /// The epoch it was reserved in ([`crate::suspend::epoch`]).
    epoch: u32,
}

impl ReservedRef {
    /// The reference (what the peer is told).
    pub fn gref(&self) -> GrantRef {
        self.gref
    }
    /// The page, for volatile reads ([`SharedPage::read_bytes`]).
    pub fn page(&self) -> &SharedPage {
        self.page
            .as_ref()
            .expect("a ReservedRef holds its page until consumed")
    }
    /// The page's bytes, ours alone: `None` while it is granted (the peer may use it).
    pub fn bytes_mut(&mut self) -> Option<&mut [u8; 4096]> {
        if self.granted {
            return None;
        }
        self.page.as_mut().map(SharedPage::bytes_mut)
    }
    /// Grant `domid` access to the page through this reference; refused while a grant
    /// of it is live ([`GntError::EntryInUse`]).
    pub fn grant(&mut self, domid: u16, readonly: bool) -> Result<(), GntError> {
        self.current()?;
        let mfn = self.page().page().mfn().0;
        entry(self.gref).grant(domid, mfn, readonly)?;
        self.granted = true;
        Ok(())
    }
    /// End access; refused while the peer uses the page.
    pub fn end(&mut self) -> Result<(), GntError> {
        self.current()?;
        entry(self.gref).end(self.gref)?;
        self.granted = false;
        Ok(())
    }
    /// Reserved before the guest resumed in a new domain: the reference means nothing
    /// now (hand it to [`GrantTable::forget_stale_reserved`]).
    pub fn is_stale(&self) -> bool {
        self.epoch != now_epoch()
    }
    fn current(&self) -> Result<(), GntError> {
        if self.is_stale() {
            return Err(GntError::Stale { epoch: self.epoch });
        }
        Ok(())
    }
}

impl Drop for ReservedRef {
    fn drop(&mut self) {
        if let Some(page) = self.page.take() {
            defer_page(self.gref, page, self.epoch);
        }
    }
}

/// Entry `r` of the table. Only reachable with a reference a [`GrantTable`] handed out
/// (or checked against its size), so the table is set up and `r` is inside it.
fn entry(r: GrantRef) -> Entry<'static> {
    let va = Fixmap::GnttabFirst.va() + r as u64 * 8;
    // SAFETY: the table's frames are mapped RW at the grant fixmap slots once a
    // GrantTable is set up (the runtime never unmaps them), and `r` came from one; the
    // entry's fields are naturally aligned and shared with Xen, so accessed atomically.
    unsafe {
        Entry {
            flags: AtomicU16::from_ptr(va.as_mut_ptr::<u16>()),
            domid: AtomicU16::from_ptr((va + 2).as_mut_ptr::<u16>()),
            frame: AtomicU32::from_ptr((va + 4).as_mut_ptr::<u32>()),
        }
    }
}

impl GrantTable {
    /// Grant `domid` access to `page`, which the guard returned holds until the grant
    /// ends ([`GrantTable::end`]): a grant can only give away the caller's own memory,
    /// and that memory cannot be freed while granted. On failure the page comes back.
    pub fn grant(
        &mut self,
        domid: u16,
        page: SharedPage,
        readonly: bool,
    ) -> Result<GrantedPage, (SharedPage, GntError)> {
        let mfn = page.page().mfn().0;
        if u32::try_from(mfn).is_err() {
            return Err((page, GntError::FrameTooBig(mfn)));
        }
        let r = match self.free.alloc() {
            Ok(r) => r,
            Err(e) => return Err((page, e)),
        };
        if let Err(e) = self.entry(r).grant(domid, mfn, readonly) {
            // A free reference whose entry is still in use: a peer holds it from an
            // earlier owner. Kept out of the free list (never granted again).
            return Err((page, e));
        }
        Ok(GrantedPage {
            gref: r,
            page: Some(page),
            epoch: now_epoch(),
        })
    }

    /// End access and hand the page back; refused (the guard handed back, still
    /// granted) while the peer uses it.
    pub fn end(&mut self, g: GrantedPage) -> Result<SharedPage, (GrantedPage, GntError)> {
        if g.is_stale() {
            let epoch = g.epoch;
            return Err((g, GntError::Stale { epoch }));
        }
        let r = g.gref;
        // References below RESERVED are the toolstack's (console, xenstore): never touched.
        if r < RESERVED || !self.free.is_used(r) {
            return Err((g, GntError::NotGranted(r)));
        }
        if let Err(e) = self.entry(r).end(r) {
            return Err((g, e));
        }
        // Cannot fail: checked in use above.
        let _ = self.free.free(r);
        Ok(g.take().1)
    }

    /// A guard from before a new domain (a restore or a migration): Xen emptied the
    /// table, so the entry is not ours to touch any more (the reference may be granted
    /// again in the new epoch), and no peer maps the page. Hand the page back without
    /// looking at the entry or the free list (the table's resume after a new domain
    /// starts the free list over).
    pub fn forget_stale(&mut self, g: GrantedPage) -> SharedPage {
        g.take().1
    }

    /// [`Self::forget_stale`] for a reserved reference: its page back, the entry and the
    /// free list untouched.
    pub fn forget_stale_reserved(&mut self, mut r: ReservedRef) -> SharedPage {
        r.granted = false;
        r.page
            .take()
            .expect("a ReservedRef holds its page until consumed")
    }

    /// `GNTTABOP_copy` of `len` bytes (one page at most) from `src` to `dst`. Which side
    /// Xen reads as a grant reference follows from how it was made ([`by_ref`],
    /// [`by_frame`]).
    pub fn copy(src: CopyPtr<'_>, dst: CopyPtr<'_>, len: u16) -> Result<(), GntError> {
        let flags = if src.gref { GNTCOPY_SOURCE_GREF } else { 0 }
            | if dst.gref { GNTCOPY_DEST_GREF } else { 0 };
        let mut c = [GnttabCopy {
            source: src.raw,
            dest: dst.raw,
            len,
            flags,
            status: 0,
        }];
        op("GNTTABOP_copy", GNTTABOP_COPY, &mut c)?;
        status("GNTTABOP_copy", c[0].status)
    }

    /// Map grant `r` of domain `dom` at the fixmap's grant slot, as a backend would.
    pub fn map(mem: &Memory, dom: u16, r: GrantRef, readonly: bool) -> Result<Mapping, GntError> {
        // One slot: a second mapping would replace a granted PTE under Xen's feet.
        if MAP_SLOT_BUSY.swap(true, Ordering::AcqRel) {
            return Err(GntError::MapSlotBusy);
        }
        let r = Self::map_at_slot(mem, dom, r, readonly);
        if r.is_err() {
            MAP_SLOT_BUSY.store(false, Ordering::Release);
        }
        r
    }

    fn map_at_slot(
        mem: &Memory,
        dom: u16,
        r: GrantRef,
        readonly: bool,
    ) -> Result<Mapping, GntError> {
        let pte = mem.fixmap_pte_maddr(Fixmap::GrantMap as usize).0;
        let ro = if readonly { GNTMAP_READONLY } else { 0 };
        let mut m = [MapGrantRef {
            host_addr: pte,
            flags: GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE | ro,
            gref: r,
            dom,
            status: 0,
            handle: 0,
            dev_bus_addr: 0,
        }];
        op("GNTTABOP_map_grant_ref", GNTTABOP_MAP_GRANT_REF, &mut m)?;
        status("GNTTABOP_map_grant_ref", m[0].status)?;
        Ok(Mapping {
            handle: m[0].handle,
            pte,
            va: Fixmap::GrantMap.va(),
        })
    }

    /// `GNTTABOP_unmap_grant_ref` of a mapping made by [`map`](GrantTable::map); the
    /// fixmap's grant slot is empty again.
    pub fn unmap(m: Mapping) -> Result<(), GntError> {
        let mut u = [UnmapGrantRef {
            host_addr: m.pte,
            dev_bus_addr: 0,
            handle: m.handle,
            status: 0,
        }];
        op("GNTTABOP_unmap_grant_ref", GNTTABOP_UNMAP_GRANT_REF, &mut u)?;
        status("GNTTABOP_unmap_grant_ref", u[0].status)?;
        MAP_SLOT_BUSY.store(false, Ordering::Release);
        Ok(())
    }
}

impl Mapping {
    /// Where the granted page is mapped (the fixmap's grant slot).
    pub fn va(&self) -> VirtAddr {
        self.va
    }

    /// Copy the mapped page into `out`. A copy, never a reference: the granting domain can
    /// write the page at any time, so what it holds is read once and then checked.
    pub fn read(&self, out: &mut [u8; PAGE_SIZE as usize]) {
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: Xen mapped the granted frame at `va` (one page) and keeps it there
            // until `unmap`, which consumes the Mapping; `i` < one page; volatile because
            // the peer may write the page concurrently.
            *b = unsafe { (self.va + i as u64).as_ptr::<u8>().read_volatile() };
        }
    }
}

/// A copy side naming grant reference `r` of `domid`'s table (`DOMID_SELF` for one of
/// ours): Xen reads it as a reference and checks the entry's permission.
pub fn by_ref(r: GrantRef, domid: u16) -> CopyPtr<'static> {
    CopyPtr {
        raw: RawCopyPtr {
            u: r as u64,
            domid,
            offset: 0,
        },
        gref: true,
        _page: PhantomData,
    }
}
/// A copy side naming a frame of ours: a [`Page`] the caller owns, borrowed for as long
/// as the side lives (for a [`SharedPage`], `by_frame(shared.page())`).
pub fn by_frame(page: &Page) -> CopyPtr<'_> {
    CopyPtr {
        raw: RawCopyPtr {
            u: page.mfn().0,
            domid: DOMID_SELF,
            offset: 0,
        },
        gref: false,
        _page: PhantomData,
    }
}
