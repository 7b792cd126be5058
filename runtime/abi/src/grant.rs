//! Grant tables, version 1 (`xen/include/public/grant_table.h`): the entry, its flags,
//! and the arguments of the `GNTTABOP_*` operations the runtime uses (xen-sys has none
//! of them). Plain data: the entry protocol lives in `xenpv_protocol::grant`.

use bitflags::bitflags;

/// `struct grant_entry_v1`, 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryV1 {
    /// `flags`: [`GrantFlags`].
    pub flags: u16,
    /// `domid_t domid`: the domain granted access.
    pub domid: u16,
    /// `frame`: the frame granted.
    pub frame: u32,
}

bitflags! {
    /// `GTF_*`: a v1 entry's `flags` (the type in bits 0..2, the rest flags).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct GrantFlags: u16 {
        /// `GTF_permit_access`: `domid` may access `frame`.
        const PERMIT_ACCESS = 1 << 0;
        /// `GTF_readonly`: the peer may only read the frame.
        const READONLY = 1 << 2;
        /// `GTF_reading`: set by Xen while the peer maps or copies from the frame.
        const READING = 1 << 3;
        /// `GTF_writing`: set by Xen while the peer maps the frame writable or copies
        /// into it.
        const WRITING = 1 << 4;
    }
}

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`.
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`.
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTMAP_host_map`: map at a host virtual address.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_contains_pte`: `host_addr` is the machine address of the PTE to write.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// `GNTCOPY_source_gref`: the copy's source is a grant reference.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the copy's destination is a grant reference.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `struct gnttab_query_size`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QuerySize {
    /// IN `dom`.
    pub dom: u16,
    /// OUT `nr_frames`.
    pub nr_frames: u32,
    /// OUT `max_nr_frames`.
    pub max_nr_frames: u32,
    /// OUT `status`: `GNTST_*`.
    pub status: i16,
}

/// `struct gnttab_setup_table`, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SetupTable {
    /// IN `dom`.
    pub dom: u16,
    /// IN `nr_frames`.
    pub nr_frames: u32,
    /// OUT `status`.
    pub status: i16,
    /// IN `XEN_GUEST_HANDLE(xen_pfn_t) frame_list`: where Xen writes the frames.
    pub frame_list: *mut u64,
}

/// `struct gnttab_copy_ptr`: one side of a copy, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyPtr {
    /// `u`: a grant reference (`u.ref`, with the side's `GNTCOPY_*_gref` flag) or a
    /// frame (`u.gmfn`, the mfn for PV).
    pub u: u64,
    /// `domid`: whose grant table or frame this is.
    pub domid: u16,
    /// `offset`: bytes into the page.
    pub offset: u16,
}

/// `struct gnttab_copy`, 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Copy {
    /// `source`.
    pub source: CopyPtr,
    /// `dest`.
    pub dest: CopyPtr,
    /// `len`: bytes.
    pub len: u16,
    /// `flags`: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT `status`.
    pub status: i16,
}

/// `struct gnttab_map_grant_ref`, 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapGrantRef {
    /// IN `host_addr`.
    pub host_addr: u64,
    /// IN `flags`: `GNTMAP_*`.
    pub flags: u32,
    /// IN `grant_ref_t ref`.
    pub gref: u32,
    /// IN `dom`.
    pub dom: u16,
    /// OUT `status`.
    pub status: i16,
    /// OUT `grant_handle_t handle`.
    pub handle: u32,
    /// OUT `dev_bus_addr`.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UnmapGrantRef {
    /// IN `host_addr`.
    pub host_addr: u64,
    /// IN `dev_bus_addr`.
    pub dev_bus_addr: u64,
    /// IN `grant_handle_t handle`.
    pub handle: u32,
    /// OUT `status`.
    pub status: i16,
}
