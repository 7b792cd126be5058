//! The block ring's slots (`xen/include/public/io/blkif.h`), as Xen lays them out for
//! x86-64. Plain data: encoding and checks live in `xenpv_protocol::blkif`, which takes
//! its byte offsets from these structs.

use bitflags::bitflags;

bitflags! {
    /// `VDISK_*` (io/blkif.h): the bits of the backend's `info` node.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct VdiskInfo: u32 {
        /// `VDISK_CDROM`: the device is a CD-ROM.
        const CDROM = 1;
        /// `VDISK_REMOVABLE`: the medium can be removed.
        const REMOVABLE = 2;
        /// `VDISK_READONLY`: writes are refused.
        const READONLY = 4;
    }
}

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
pub const MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;

/// `struct blkif_request_segment`: a granted page and the sectors of it to move, 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestSegment {
    /// `grant_ref_t gref`.
    pub gref: u32,
    /// `first_sect`: first 512-byte sector in the page (inclusive).
    pub first_sect: u8,
    /// `last_sect`: last sector in the page (inclusive).
    pub last_sect: u8,
}

/// `struct blkif_request`: read, write, barrier or flush, 112 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `operation`: `BLKIF_OP_*`.
    pub operation: u8,
    /// `nr_segments`.
    pub nr_segments: u8,
    /// `blkif_vdev_t handle`.
    pub handle: u16,
    /// `id`: the guest's, echoed in the response.
    pub id: u64,
    /// `blkif_sector_t sector_number`: in 512-byte units.
    pub sector_number: u64,
    /// `seg[BLKIF_MAX_SEGMENTS_PER_REQUEST]`.
    pub seg: [RequestSegment; MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_indirect`: a read or write whose segments are in granted
/// pages, 64 bytes (in a 112-byte slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestIndirect {
    /// `operation`: `BLKIF_OP_INDIRECT`.
    pub operation: u8,
    /// `indirect_op`: `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    /// `nr_segments`: in all the pages.
    pub nr_segments: u16,
    /// `id`.
    pub id: u64,
    /// `sector_number`.
    pub sector_number: u64,
    /// `handle`.
    pub handle: u16,
    /// `indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST]`: the pages of segments.
    pub indirect_grefs: [u32; MAX_INDIRECT_PAGES_PER_REQUEST],
}

/// `struct blkif_response`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// `id`: the request's.
    pub id: u64,
    /// `operation`: the request's.
    pub operation: u8,
    /// `status`: `BLKIF_RSP_*`.
    pub status: i16,
}
