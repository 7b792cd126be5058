//! Read-only ext2/ext3/ext4 over any [`BlockDevice`], with the no_std crate
//! [ext4-view](ext4_view) (feature `ext4`; it needs `alloc`).
//!
//! [`Ext4Disk`] is the glue: it implements [`Ext4Read`] (byte ranges at any offset) with
//! [`read_bytes`] (whole sectors through a bounce buffer), so [`Ext4::load`] can walk a
//! filesystem on blkfront, or on a [`MemDisk`](crate::block::MemDisk) in the host tests.
//! A failed sector read reaches the caller as [`Ext4Error::Io`] carrying the device's
//! [`BlockError`] (get it back with [`block_error`]); a disk that holds no filesystem, or
//! a corrupt one, is an [`Ext4Error`] too, never a panic.
//!
//! [`read_exact_at`] reads a file's range at any offset in full (seeking only when the
//! offset is not where the last read ended), what a server streaming a file needs.
//!
//! ext4-view is re-exported as [`ext4_view`], so a guest names one version of it.
//!
//! ```
//! use xenpv_protocol::block::{BlockDevice, BlockError, MemDisk};
//! use xenpv_protocol::ext4::{block_error, ext4_view::Ext4Error, Ext4Disk};
//!
//! // What a guest does with its disk: load the filesystem, open a file, read it.
//! fn motd<D: BlockDevice + 'static>(disk: D) -> Result<Vec<u8>, Ext4Error> {
//!     let fs = Ext4Disk(disk).load()?;
//!     let mut file = fs.open("/etc/motd")?;
//!     let mut out = vec![0; file.metadata().len() as usize];
//!     let mut at = 0;
//!     while at < out.len() {
//!         // A read may stop short (at a block's end); 0 is the end of the file.
//!         match file.read_bytes(&mut out[at..])? {
//!             0 => break,
//!             n => at += n,
//!         }
//!     }
//!     Ok(out)
//! }
//!
//! // A zeroed disk holds no filesystem: an error (a bad superblock), not a panic.
//! assert!(matches!(motd(MemDisk::new(512, 128, true)), Err(Ext4Error::Corrupt(_))));
//! // A disk too small to hold the superblock (at byte 1024): the device's own error.
//! let e = motd(MemDisk::new(512, 2, true)).unwrap_err();
//! assert!(matches!(block_error(&e), Some(BlockError::OutOfRange { .. })));
//! ```

extern crate alloc;

use alloc::boxed::Box;
use core::fmt;

pub use ext4_view;
use ext4_view::{Ext4, Ext4Error, Ext4Read, File};

use crate::block::{read_bytes, BlockDevice, BlockError};

/// A block device as ext4-view's byte source: reads of any offset and length served
/// from whole sectors by [`read_bytes`].
///
/// `'static` because [`Ext4::load`] takes a `Box<dyn Ext4Read>`: hand it the device
/// itself (or a `'static` handle to it), not a borrow.
#[derive(Clone, Debug)]
pub struct Ext4Disk<D>(pub D);

impl<D: BlockDevice + 'static> Ext4Disk<D> {
    /// [`Ext4::load`] over this device: reads and checks the superblock, the group
    /// descriptors and the journal (nothing else until a path is opened).
    pub fn load(self) -> Result<Ext4, Ext4Error> {
        Ext4::load(Box::new(self))
    }
}

impl<D: BlockDevice + 'static> Ext4Read for Ext4Disk<D> {
    /// Exactly `dst.len()` bytes from byte `start_byte` on, or the [`BlockError`] of the
    /// first sector read that failed (a range past the device's end is
    /// [`BlockError::OutOfRange`]), boxed.
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        read_bytes(&mut self.0, start_byte, dst).map_err(|e| Box::new(e) as _)
    }
}

/// The device error inside an [`Ext4Error::Io`] that came from an [`Ext4Disk`]: a guest
/// tells a failing disk (`Some`) from a missing or malformed file (`None`) with it.
pub fn block_error(e: &Ext4Error) -> Option<BlockError> {
    e.as_io()?.downcast_ref::<BlockError>().copied()
}

/// Fill all of `out` with `file`'s bytes from `offset` on. It seeks only when `offset`
/// is not the file's position (where the last read ended): a file read in order costs
/// no seek (ext4-view's seek walks the file's blocks from the start).
///
/// A range past the file's end is [`Ext4Error::Io`] carrying a [`PastEnd`]; a device
/// error is `Ext4Error::Io` carrying the [`BlockError`] ([`block_error`]).
pub fn read_exact_at(file: &mut File, offset: u64, out: &mut [u8]) -> Result<(), Ext4Error> {
    let size = file.metadata().len();
    if offset
        .checked_add(out.len() as u64)
        .is_none_or(|end| end > size)
    {
        return Err(Ext4Error::Io(Box::new(PastEnd {
            offset,
            len: out.len(),
            size,
        })));
    }
    if file.position() != offset {
        file.seek_to(offset)?;
    }
    let mut done = 0;
    while done < out.len() {
        match file.read_bytes(&mut out[done..])? {
            // Inside the size, ext4-view never stops short; if it did, say so.
            0 => {
                return Err(Ext4Error::Io(Box::new(PastEnd {
                    offset: offset + done as u64,
                    len: out.len() - done,
                    size,
                })))
            }
            n => done += n,
        }
    }
    Ok(())
}

/// A read of `len` bytes at `offset` reaches past a file of `size` bytes
/// ([`read_exact_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PastEnd {
    /// The first byte asked for.
    pub offset: u64,
    /// Bytes asked for.
    pub len: usize,
    /// The file's size.
    pub size: u64,
}

impl fmt::Display for PastEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bytes {}+{} are past the end of a file of {} bytes",
            self.offset, self.len, self.size
        )
    }
}

impl core::error::Error for PastEnd {}
