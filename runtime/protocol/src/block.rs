//! The block-device API: read, write and flush whole sectors into caller buffers, with
//! every size checked and every failure a value ([`BlockError`]), and [`read_bytes`],
//! which serves a byte range of any offset and length from whole-sector reads (what a
//! filesystem reader such as ext4-view asks for).
//!
//! The platform's blkfront implements [`BlockDevice`]; the host tests implement it over
//! a byte array ([`MemDisk`]).
//!
//! ```
//! use xenpv_protocol::block::{read_bytes, BlockDevice, BlockError, MemDisk};
//!
//! let mut d = MemDisk::new(512, 8, false);
//! d.write(1, &[7u8; 512]).unwrap();
//! let mut out = [0u8; 5];
//! read_bytes(&mut d, 510, &mut out).unwrap(); // two bytes of sector 0, three of sector 1
//! assert_eq!(out, [0, 0, 7, 7, 7]);
//! // Past the end: refused, naming the request and the device's size.
//! assert!(matches!(d.read(8, &mut [0; 512]), Err(BlockError::OutOfRange { .. })));
//! // Not a whole number of sectors: refused.
//! assert!(matches!(d.read(0, &mut [0; 100]), Err(BlockError::Unaligned { .. })));
//! ```

use core::fmt;

/// A device's size and what it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per sector (512, 4096…): the unit of every [`BlockDevice`] call.
    pub sector_size: u32,
    /// Sectors on the device.
    pub sectors: u64,
    /// Writes are refused.
    pub read_only: bool,
    /// The medium can be removed (a CD-ROM drive).
    pub removable: bool,
}

impl Geometry {
    /// The device's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors.saturating_mul(u64::from(self.sector_size))
    }

    /// Check a request of `len` bytes at `sector` against the geometry: a whole number
    /// of sectors, inside the device, and (for a write) a writable device.
    pub fn check(&self, sector: u64, len: usize, write: bool) -> Result<u64, BlockError> {
        let ss = u64::from(self.sector_size.max(1));
        if !(len as u64).is_multiple_of(ss) {
            return Err(BlockError::Unaligned {
                len,
                sector_size: self.sector_size,
            });
        }
        let count = len as u64 / ss;
        if sector > self.sectors || count > self.sectors - sector {
            return Err(BlockError::OutOfRange {
                sector,
                count,
                sectors: self.sectors,
            });
        }
        if write && self.read_only {
            return Err(BlockError::ReadOnly);
        }
        Ok(count)
    }
}

/// Why a block request failed. The device stays usable after every one of these but
/// [`BlockError::Broken`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The request reaches past the end of the device.
    OutOfRange {
        /// The first sector asked for.
        sector: u64,
        /// Sectors asked for.
        count: u64,
        /// Sectors on the device.
        sectors: u64,
    },
    /// The buffer is not a whole number of sectors.
    Unaligned {
        /// Its length in bytes.
        len: usize,
        /// The device's sector size.
        sector_size: u32,
    },
    /// A write to a read-only device.
    ReadOnly,
    /// A flush, and the backend offers neither `feature-flush-cache` nor
    /// `feature-barrier`.
    FlushUnsupported,
    /// The backend answered with an error status (`BLKIF_RSP_ERROR` -1,
    /// `BLKIF_RSP_EOPNOTSUPP` -2, or a value blkif.h does not define).
    Backend {
        /// The status as the backend wrote it.
        status: i16,
    },
    /// The backend answered with a response that does not fit the request (another
    /// operation).
    BadResponse {
        /// The operation the response names.
        operation: u8,
    },
    /// No answer before the deadline.
    Timeout {
        /// How long we waited, ms.
        waited_ms: u64,
    },
    /// The device stopped: the backend corrupted the ring, kept a grant of every request
    /// id, or went away.
    Broken,
    /// The guest moved to a new domain while the request was in flight: its backend is
    /// gone with the old domain, and the request never completed. A read is re-issued
    /// to the new backend once the disk is connected again (reads are idempotent).
    Resumed,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BlockError::OutOfRange {
                sector,
                count,
                sectors,
            } => write!(
                f,
                "sectors {sector}..{} are past the end of the device ({sectors} sectors)",
                sector.saturating_add(count)
            ),
            BlockError::Unaligned { len, sector_size } => write!(
                f,
                "a buffer of {len} bytes is not a whole number of {sector_size}-byte sectors"
            ),
            BlockError::ReadOnly => write!(f, "the device is read-only"),
            BlockError::FlushUnsupported => {
                write!(
                    f,
                    "the backend offers no flush (neither flush-cache nor barrier)"
                )
            }
            BlockError::Backend { status } => write!(f, "the backend failed it (status {status})"),
            BlockError::BadResponse { operation } => {
                write!(
                    f,
                    "the backend answered with operation {operation}, not the request's"
                )
            }
            BlockError::Timeout { waited_ms } => write!(f, "no answer in {waited_ms} ms"),
            BlockError::Broken => write!(f, "the device stopped (ring corrupt or backend gone)"),
            BlockError::Resumed => {
                write!(
                    f,
                    "the guest moved to a new domain with the request in flight"
                )
            }
        }
    }
}

/// So a filesystem reader can carry it boxed (`ext4`'s reads hand it to ext4-view as
/// `Box<dyn core::error::Error + Send + Sync>`).
impl core::error::Error for BlockError {}

/// A block device: whole sectors in and out of caller buffers.
pub trait BlockDevice {
    /// Its size and what it allows.
    fn geometry(&self) -> Geometry;
    /// Read `buf.len()` bytes (a whole number of sectors) from `sector` on.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Write `buf` (a whole number of sectors) from `sector` on.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Make every completed write durable.
    fn flush(&mut self) -> Result<(), BlockError>;
}

/// The largest sector size [`read_bytes`] handles (its bounce buffer).
pub const MAX_SECTOR: usize = 4096;

/// Read `out.len()` bytes from byte `offset` on: the aligned middle straight into `out`,
/// a partial first and last sector through a bounce buffer.
pub fn read_bytes<D: BlockDevice + ?Sized>(
    dev: &mut D,
    offset: u64,
    out: &mut [u8],
) -> Result<(), BlockError> {
    let g = dev.geometry();
    let ss = g.sector_size as usize;
    if ss == 0 || ss > MAX_SECTOR || !ss.is_power_of_two() {
        return Err(BlockError::Unaligned {
            len: out.len(),
            sector_size: g.sector_size,
        });
    }
    let end = offset.checked_add(out.len() as u64);
    if end.is_none_or(|e| e > g.bytes()) {
        return Err(BlockError::OutOfRange {
            sector: offset / ss as u64,
            count: (out.len() as u64).div_ceil(ss as u64),
            sectors: g.sectors,
        });
    }
    let mut bounce = [0u8; MAX_SECTOR];
    let mut done = 0;
    while done < out.len() {
        let at = offset + done as u64;
        let sector = at / ss as u64;
        let skip = (at % ss as u64) as usize;
        let left = out.len() - done;
        if skip == 0 && left >= ss {
            let n = left - left % ss;
            dev.read(sector, &mut out[done..done + n])?;
            done += n;
        } else {
            dev.read(sector, &mut bounce[..ss])?;
            let n = (ss - skip).min(left);
            out[done..done + n].copy_from_slice(&bounce[skip..skip + n]);
            done += n;
        }
    }
    Ok(())
}

/// A device over a byte array: the host tests' disk (and an example of the trait).
#[derive(Clone, Debug)]
pub struct MemDisk<B = alloc_free::Bytes> {
    geometry: Geometry,
    bytes: B,
}

/// The storage of a [`MemDisk`] without a heap: a fixed array.
pub mod alloc_free {
    /// Up to 64 KiB of disk.
    pub type Bytes = heapless::Vec<u8, 65536>;
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors of `sector_size` bytes (at most 64 KiB in all).
    pub fn new(sector_size: u32, sectors: u64, read_only: bool) -> Self {
        let mut bytes = alloc_free::Bytes::new();
        let n = (sectors * u64::from(sector_size)).min(65536) as usize;
        let _ = bytes.resize(n, 0);
        MemDisk {
            geometry: Geometry {
                sector_size,
                sectors: n as u64 / u64::from(sector_size.max(1)),
                read_only,
                removable: false,
            },
            bytes,
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> MemDisk<B> {
    /// A disk over `bytes` (its length rounded down to whole sectors).
    pub fn over(bytes: B, sector_size: u32, read_only: bool) -> Self {
        let sectors = bytes.as_ref().len() as u64 / u64::from(sector_size.max(1));
        MemDisk {
            geometry: Geometry {
                sector_size,
                sectors,
                read_only,
                removable: false,
            },
            bytes,
        }
    }
    /// The disk's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> BlockDevice for MemDisk<B> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.geometry.check(sector, buf.len(), false)?;
        let at = (sector * u64::from(self.geometry.sector_size)) as usize;
        buf.copy_from_slice(&self.bytes.as_ref()[at..at + buf.len()]);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.geometry.check(sector, buf.len(), true)?;
        let at = (sector * u64::from(self.geometry.sector_size)) as usize;
        self.bytes.as_mut()[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}
