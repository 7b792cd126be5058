//! blkif's wire format (`xen/include/public/io/blkif.h`, with Linux's
//! `include/xen/interface/io/blkif.h` for indirect requests): the ring's request and
//! response slots, the operations and statuses, and the backend's keys.
//!
//! Sizes are fixed by the x86-64 ABI: a request slot is 112 bytes (the read/write form
//! with 11 segments), so a one-page ring holds 32; a response is 16 bytes. Sector numbers
//! are always in 512-byte units, whatever the disk's `sector-size`.
//!
//! ```
//! use xenpv_protocol::blkif::{Request, Response, Segment, OP_READ, REQ_SLOT};
//!
//! let r = Request::Direct {
//!     operation: OP_READ,
//!     handle: 51712,
//!     id: 7,
//!     sector: 2048,
//!     segments: &[Segment { gref: 9, first_sect: 0, last_sect: 7 }],
//! };
//! let b = r.encode();
//! assert_eq!(b.len(), REQ_SLOT);
//! assert_eq!((b[0], b[1]), (OP_READ, 1));
//! let rsp = Response::decode(&[7, 0, 0, 0, 0, 0, 0, 0, OP_READ, 0, 0xff, 0xff, 0, 0, 0, 0]);
//! assert_eq!((rsp.id, rsp.operation, rsp.status), (7, OP_READ, -1));
//! ```

use crate::shared_ring::slots;
use core::mem::{offset_of, size_of};
use xenpv_abi::blkif::{Request as RawReq, RequestIndirect as RawInd, Response as RawRsp};

// Byte offsets in a slot, from the structs whose layouts xenpv-abi checks against blkif.h.
const OP: usize = offset_of!(RawReq, operation);
const NR_SEG: usize = offset_of!(RawReq, nr_segments);
const HANDLE: usize = offset_of!(RawReq, handle);
const ID: usize = offset_of!(RawReq, id);
const SECTOR: usize = offset_of!(RawReq, sector_number);
const SEG: usize = offset_of!(RawReq, seg);
const IND_OP: usize = offset_of!(RawInd, indirect_op);
const IND_NR_SEG: usize = offset_of!(RawInd, nr_segments);
const IND_HANDLE: usize = offset_of!(RawInd, handle);
const IND_GREFS: usize = offset_of!(RawInd, indirect_grefs);
const RSP_OP: usize = offset_of!(RawRsp, operation);
const RSP_STATUS: usize = offset_of!(RawRsp, status);
const _: () = {
    assert!(offset_of!(RawInd, id) == ID && offset_of!(RawInd, sector_number) == SECTOR);
    assert!(offset_of!(RawRsp, id) == 0);
};

/// Read sectors (`BLKIF_OP_READ`).
pub const OP_READ: u8 = 0;
/// Write sectors.
pub const OP_WRITE: u8 = 1;
/// A write barrier (the backend offers `feature-barrier`).
pub const OP_WRITE_BARRIER: u8 = 2;
/// Flush the disk's cache (the backend offers `feature-flush-cache`).
pub const OP_FLUSH_DISKCACHE: u8 = 3;
/// A read or write whose segments are in indirect pages
/// (`feature-max-indirect-segments`).
pub const OP_INDIRECT: u8 = 6;

/// Done.
pub const RSP_OKAY: i16 = 0;
/// Failed (`-EIO`).
pub const RSP_ERROR: i16 = -1;
/// Not supported (a barrier or flush the disk cannot do).
pub const RSP_EOPNOTSUPP: i16 = -2;

/// Segments in a request slot (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const DIRECT_SEGMENTS: usize = xenpv_abi::blkif::MAX_SEGMENTS_PER_REQUEST;
/// Indirect pages a request may name (`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`).
pub const INDIRECT_PAGES: usize = xenpv_abi::blkif::MAX_INDIRECT_PAGES_PER_REQUEST;
/// Segment descriptors in one indirect page (8 bytes each).
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = 4096 / 8;
/// A request slot's bytes.
pub const REQ_SLOT: usize = size_of::<RawReq>();
/// A response's bytes.
pub const RSP_SLOT: usize = size_of::<RawRsp>();
/// Slots in a one-page blkif ring.
pub const RING_SLOTS: u32 = slots(REQ_SLOT);
/// 512-byte sectors in a page.
pub const SECTORS_PER_PAGE: u8 = 8;

/// `info` bits (`VDISK_*`).
pub use xenpv_abi::blkif::VdiskInfo;

/// One segment: a granted page and the 512-byte sectors of it to transfer (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The page's grant.
    pub gref: u32,
    /// First sector in the page (0..=7).
    pub first_sect: u8,
    /// Last sector in the page (first..=7).
    pub last_sect: u8,
}

impl Segment {
    /// The 8 bytes of `struct blkif_request_segment`.
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4] = self.first_sect;
        b[5] = self.last_sect;
        b
    }
}

/// A request, as we write it into a slot.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// Read, write, barrier or flush with its segments in the slot (at most
    /// [`DIRECT_SEGMENTS`]; none for a flush).
    Direct {
        /// `OP_*`.
        operation: u8,
        /// The virtual device (`virtual-device`).
        handle: u16,
        /// Ours, echoed in the response.
        id: u64,
        /// First 512-byte sector.
        sector: u64,
        /// The segments.
        segments: &'a [Segment],
    },
    /// A read or write whose segments are in indirect pages.
    Indirect {
        /// [`OP_READ`] or [`OP_WRITE`].
        operation: u8,
        /// Segments in all.
        nr_segments: u16,
        /// Ours, echoed in the response.
        id: u64,
        /// First 512-byte sector.
        sector: u64,
        /// The virtual device.
        handle: u16,
        /// Grants of the pages holding the segments (at most [`INDIRECT_PAGES`]).
        pages: &'a [u32],
    },
}

impl Request<'_> {
    /// The slot's bytes (x86-64 layout: `struct blkif_request`, packed as Linux has it).
    pub fn encode(&self) -> [u8; REQ_SLOT] {
        let mut b = [0u8; REQ_SLOT];
        match *self {
            Request::Direct {
                operation,
                handle,
                id,
                sector,
                segments,
            } => {
                let n = segments.len().min(DIRECT_SEGMENTS);
                b[OP] = operation;
                b[NR_SEG] = n as u8;
                b[HANDLE..HANDLE + 2].copy_from_slice(&handle.to_le_bytes());
                b[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
                b[SECTOR..SECTOR + 8].copy_from_slice(&sector.to_le_bytes());
                for (i, s) in segments[..n].iter().enumerate() {
                    b[SEG + 8 * i..SEG + 8 * (i + 1)].copy_from_slice(&s.encode());
                }
            }
            Request::Indirect {
                operation,
                nr_segments,
                id,
                sector,
                handle,
                pages,
            } => {
                b[OP] = OP_INDIRECT;
                b[IND_OP] = operation;
                b[IND_NR_SEG..IND_NR_SEG + 2].copy_from_slice(&nr_segments.to_le_bytes());
                b[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
                b[SECTOR..SECTOR + 8].copy_from_slice(&sector.to_le_bytes());
                b[IND_HANDLE..IND_HANDLE + 2].copy_from_slice(&handle.to_le_bytes());
                for (i, g) in pages.iter().take(INDIRECT_PAGES).enumerate() {
                    b[IND_GREFS + 4 * i..IND_GREFS + 4 * (i + 1)].copy_from_slice(&g.to_le_bytes());
                }
            }
        }
        b
    }
}

/// A response as the backend wrote it: every field still to be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The id it claims to answer.
    pub id: u64,
    /// The operation it claims to answer.
    pub operation: u8,
    /// `RSP_*`, or anything else.
    pub status: i16,
}

impl Response {
    /// Read the 16 bytes of `struct blkif_response`.
    pub fn decode(b: &[u8; RSP_SLOT]) -> Response {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[..8]);
        Response {
            id: u64::from_le_bytes(id),
            operation: b[RSP_OP],
            status: i16::from_le_bytes([b[RSP_STATUS], b[RSP_STATUS + 1]]),
        }
    }
    /// The 16 bytes (what a backend writes; the model backend's side).
    pub fn encode(&self) -> [u8; RSP_SLOT] {
        let mut b = [0u8; RSP_SLOT];
        b[..8].copy_from_slice(&self.id.to_le_bytes());
        b[RSP_OP] = self.operation;
        b[RSP_STATUS..RSP_STATUS + 2].copy_from_slice(&self.status.to_le_bytes());
        b
    }
}

/// A request slot read back (what a backend reads; the model backend's side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRequest {
    /// The operation (for an indirect request, the inner one).
    pub operation: u8,
    /// Whether the segments are in indirect pages.
    pub indirect: bool,
    /// Segments (direct) or segments in all (indirect).
    pub nr_segments: u16,
    /// The id.
    pub id: u64,
    /// The first 512-byte sector.
    pub sector: u64,
    /// The device handle.
    pub handle: u16,
    /// Direct segments (up to 11).
    pub segments: heapless::Vec<Segment, DIRECT_SEGMENTS>,
    /// Indirect page grants (up to 8).
    pub pages: heapless::Vec<u32, INDIRECT_PAGES>,
}

impl DecodedRequest {
    /// Read a request slot.
    pub fn decode(b: &[u8; REQ_SLOT]) -> DecodedRequest {
        let u64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(v)
        };
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if b[OP] == OP_INDIRECT {
            let nr = u16::from_le_bytes([b[IND_NR_SEG], b[IND_NR_SEG + 1]]);
            let n = (nr as usize)
                .div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
                .min(INDIRECT_PAGES);
            DecodedRequest {
                operation: b[IND_OP],
                indirect: true,
                nr_segments: nr,
                id: u64_at(ID),
                sector: u64_at(SECTOR),
                handle: u16::from_le_bytes([b[IND_HANDLE], b[IND_HANDLE + 1]]),
                segments: heapless::Vec::new(),
                pages: (0..n).map(|i| u32_at(IND_GREFS + 4 * i)).collect(),
            }
        } else {
            let n = (b[NR_SEG] as usize).min(DIRECT_SEGMENTS);
            DecodedRequest {
                operation: b[OP],
                indirect: false,
                nr_segments: u16::from(b[NR_SEG]),
                id: u64_at(ID),
                sector: u64_at(SECTOR),
                handle: u16::from_le_bytes([b[HANDLE], b[HANDLE + 1]]),
                segments: (0..n)
                    .map(|i| Segment {
                        gref: u32_at(SEG + 8 * i),
                        first_sect: b[SEG + 4 + 8 * i],
                        last_sect: b[SEG + 5 + 8 * i],
                    })
                    .collect(),
                pages: heapless::Vec::new(),
            }
        }
    }
}

/// Parse a decimal number the backend wrote (`sectors`, `sector-size`, `info`,
/// `feature-*`): digits only, no sign, no blanks, fitting a u64; `None` otherwise.
///
/// ```
/// use xenpv_protocol::blkif::parse_number;
/// assert_eq!(parse_number(b"524288"), Some(524288));
/// assert_eq!(parse_number(b"524288\0"), Some(524288));
/// assert_eq!(parse_number(b"-1"), None);
/// assert_eq!(parse_number(b""), None);
/// assert_eq!(parse_number(b"99999999999999999999"), None);
/// ```
pub fn parse_number(v: &[u8]) -> Option<u64> {
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(v).ok()?.parse().ok()
}
