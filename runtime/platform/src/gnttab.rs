//! Grant tables: setup and the grant-table operations (thin hypercall glue over the
//! entry protocol in `xenpv_protocol::grant`).

use crate::hypercall;
use crate::mm::layout::{Fixmap, GNTTAB_MAX_FRAMES, PAGE_SIZE};
use crate::mm::{Memory, Page};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use xenpv_abi::Mfn;
pub use xenpv_protocol::grant::*;

const GNTTABOP_MAP_GRANT_REF: u32 = 0;
const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
const GNTTABOP_SETUP_TABLE: u32 = 2;
const GNTTABOP_COPY: u32 = 5;
const GNTTABOP_QUERY_SIZE: u32 = 6;
const GNTMAP_HOST_MAP: u32 = 1 << 1;
const GNTMAP_READONLY: u32 = 1 << 2;
const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// `GNTCOPY_source_gref` (`grant_table.h`): the copy's source is a grant reference
/// ([`by_ref`]), not a frame.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref` (`grant_table.h`): the copy's destination is a grant reference
/// ([`by_ref`]), not a frame.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
const DOMID_SELF: u16 = hypercall::DOMID_SELF as u16;

// grant_table.h structures xen-sys does not have; layouts checked in `abi_tests`.
#[repr(C)]
struct QuerySize {
    dom: u16,
    nr_frames: u32,
    max_nr_frames: u32,
    status: i16,
}
#[repr(C)]
struct SetupTable {
    dom: u16,
    nr_frames: u32,
    status: i16,
    frame_list: *mut u64,
}
/// One side of a copy: a grant reference or a frame (`gmfn` is the mfn for PV). Made
/// by [`by_ref`] or [`by_frame`] only: a frame side names a [`Page`] the caller owns, so
/// a copy can never be aimed at memory that is not the caller's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CopyPtr {
    /// The grant reference (with the `GNTCOPY_*_GREF` flag for this side) or the machine
    /// frame number.
    u: u64,
    /// The domain whose grant table or frame this is (`DOMID_SELF` for our own).
    domid: u16,
    /// Byte offset into the page.
    offset: u16,
}
#[repr(C)]
struct Copy {
    source: CopyPtr,
    dest: CopyPtr,
    len: u16,
    flags: u16,
    status: i16,
}
#[repr(C)]
struct MapGrantRef {
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
    status: i16,
    handle: u32,
    dev_bus_addr: u64,
}
#[repr(C)]
struct UnmapGrantRef {
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
    status: i16,
}
const _: () = {
    assert!(size_of::<QuerySize>() == 16);
    assert!(core::mem::offset_of!(SetupTable, frame_list) == 16);
    assert!(size_of::<Copy>() == 40);
    assert!(core::mem::offset_of!(Copy, len) == 32);
    assert!(core::mem::offset_of!(MapGrantRef, dev_bus_addr) == 24);
    assert!(core::mem::offset_of!(UnmapGrantRef, status) == 20);
};

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
    va: u64,
}

impl GrantTable {
    /// Set up `want` frames (bounded by what Xen allows and the fixmap holds).
    ///
    /// `GNTTABOP_query_size`, then `GNTTABOP_setup_table` for `want` v1 frames (each
    /// [`ENTRIES_PER_FRAME`] references), which are mapped at the fixmap's grant slots.
    /// References below [`RESERVED`] stay out of the free list. Call it once per guest:
    /// tables share those slots.
    pub fn setup(mem: &mut Memory, want: u32) -> Result<GrantTable, GntError> {
        let mut q = [QuerySize {
            dom: DOMID_SELF,
            nr_frames: 0,
            max_nr_frames: 0,
            status: 0,
        }];
        op("GNTTABOP_query_size", GNTTABOP_QUERY_SIZE, &mut q)?;
        status("GNTTABOP_query_size", q[0].status)?;
        let max = q[0].max_nr_frames.min(GNTTAB_MAX_FRAMES as u32);
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

    /// Take a reference out of the free list for a driver that grants and ends it on
    /// its own, one request at a time ([`ReservedRef::grant`], [`ReservedRef::end`]),
    /// without holding the table. Give it back with [`GrantTable::release`].
    pub fn reserve(&mut self) -> Result<ReservedRef, GntError> {
        Ok(ReservedRef(self.free.alloc()?))
    }

    /// Put a reserved reference back in the free list, ending its grant first; refused
    /// (and handed back) while the peer still uses it.
    pub fn release(&mut self, r: ReservedRef) -> Result<(), (ReservedRef, GntError)> {
        if let Err(e) = r.end() {
            return Err((r, e));
        }
        match self.free.free(r.0) {
            Ok(()) => Ok(()),
            Err(e) => Err((r, e)),
        }
    }
}

/// A grant reference reserved by [`GrantTable::reserve`]: its owner grants a page of its
/// own through it and ends the grant, as often as it likes.
#[derive(Debug, PartialEq, Eq)]
pub struct ReservedRef(GrantRef);

impl ReservedRef {
    /// The reference (what the peer is told).
    pub fn gref(&self) -> GrantRef {
        self.0
    }
    /// Grant `domid` access to `page` (the caller's own) through this reference.
    pub fn grant(&self, domid: u16, page: &Page, readonly: bool) -> Result<(), GntError> {
        entry(self.0).grant(domid, page.mfn().0, readonly)
    }
    /// End access; refused while the peer uses the page.
    pub fn end(&self) -> Result<(), GntError> {
        entry(self.0).end(self.0)
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
            flags: AtomicU16::from_ptr(va as *mut u16),
            domid: AtomicU16::from_ptr((va + 2) as *mut u16),
            frame: AtomicU32::from_ptr((va + 4) as *mut u32),
        }
    }
}

impl GrantTable {
    /// Grant `domid` access to machine frame `mfn`.
    ///
    /// The page is named by a [`Page`] the caller owns: a grant can only ever give away
    /// the caller's own memory. End the grant before freeing the page.
    pub fn grant(&mut self, domid: u16, page: &Page, readonly: bool) -> Result<GrantRef, GntError> {
        let mfn = page.mfn().0;
        if u32::try_from(mfn).is_err() {
            return Err(GntError::FrameTooBig(mfn));
        }
        let r = self.free.alloc()?;
        self.entry(r).grant(domid, mfn, readonly)?;
        Ok(r)
    }

    /// End access; refused (the reference stays granted) while the peer uses it.
    pub fn end(&mut self, r: GrantRef) -> Result<(), GntError> {
        // References below RESERVED are the toolstack's (console, xenstore): never touched.
        if r < RESERVED || !self.free.is_used(r) {
            return Err(GntError::NotGranted(r));
        }
        self.entry(r).end(r)?;
        self.free.free(r)
    }

    /// `GNTTABOP_copy` of `len` bytes (one page at most) from `src` to `dst`.
    ///
    /// `flags` says which sides are grant references ([`GNTCOPY_SOURCE_GREF`],
    /// [`GNTCOPY_DEST_GREF`]); the other sides are frames ([`by_frame`]).
    pub fn copy(src: CopyPtr, dst: CopyPtr, len: u16, flags: u16) -> Result<(), GntError> {
        let mut c = [Copy {
            source: src,
            dest: dst,
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
    pub fn va(&self) -> u64 {
        self.va
    }

    /// Copy the mapped page into `out`. A copy, never a reference: the granting domain can
    /// write the page at any time, so what it holds is read once and then checked.
    pub fn read(&self, out: &mut [u8; PAGE_SIZE as usize]) {
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: Xen mapped the granted frame at `va` (one page) and keeps it there
            // until `unmap`, which consumes the Mapping; `i` < one page; volatile because
            // the peer may write the page concurrently.
            *b = unsafe { ((self.va + i as u64) as *const u8).read_volatile() };
        }
    }
}

/// A copy side naming a grant reference of `domid`.
pub fn by_ref(r: GrantRef, domid: u16) -> CopyPtr {
    CopyPtr {
        u: r as u64,
        domid,
        offset: 0,
    }
}
/// A copy side naming a frame of ours: a [`Page`] the caller owns.
pub fn by_frame(page: &Page) -> CopyPtr {
    let mfn = page.mfn().0;
    CopyPtr {
        u: mfn,
        domid: DOMID_SELF,
        offset: 0,
    }
}
