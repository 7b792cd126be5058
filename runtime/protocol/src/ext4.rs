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
//! A disk is hostile: [`Ext4Disk::load`] checks the superblock against the device
//! ([`check_superblock`]) before ext4-view sizes anything by it, and [`open`] follows
//! symlinks itself so no target is read into a buffer of the size a disk claims. Left to
//! ext4-view (bounded by the device, not checked here): a journal that needs recovery
//! is replayed into a map of one entry per journalled block. [`Ext4::read`] allocates a
//! whole file: a guest uses [`open`] and reads in pieces.
//!
//! [`read_exact_at`] reads a file's range at any offset in full (seeking only when the
//! offset is not where the last read ended), what a server streaming a file needs.
//!
//! [`Ext4File`] is a file as an [`embedded_io`] stream: `Read` and `Seek`, with a typed
//! [`FileError`] whose kind tells a timed-out disk from a missing file.
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
use alloc::vec::Vec;
use core::fmt;

pub use embedded_io;
pub use ext4_view;
use ext4_view::{Ext4, Ext4Error, Ext4Read, File};

mod io;
pub use io::{block_error_kind, ext4_error_kind, seek_target, Ext4File, FileError};

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
    ///
    /// The superblock is first checked against the device ([`check_superblock`]): a
    /// field ext4-view would size an allocation or a loop by, out of its range, is
    /// [`Ext4Error::Io`] carrying a [`BadSuperblock`] (get it with [`bad_superblock`]).
    pub fn load(mut self) -> Result<Ext4, Ext4Error> {
        let mut sb = [0u8; SUPERBLOCK_LEN];
        read_bytes(&mut self.0, SUPERBLOCK_AT, &mut sb).map_err(|e| Ext4Error::Io(Box::new(e)))?;
        check_superblock(&sb, self.0.geometry().bytes()).map_err(|e| Ext4Error::Io(Box::new(e)))?;
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

/// Where the superblock starts on the device, and its length.
const SUPERBLOCK_AT: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;

/// A superblock field out of the range this module accepts ([`check_superblock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSuperblock {
    /// The field, as ext4 names it (`s_blocks_count`), or what is derived from fields.
    pub field: &'static str,
    /// Its value on the disk (or the derived value).
    pub value: u64,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
    /// Where the range comes from.
    pub why: &'static str,
}

impl fmt::Display for BadSuperblock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "superblock refused: {} is {}, outside {}..={} ({})",
            self.field, self.value, self.min, self.max, self.why
        )
    }
}

impl core::error::Error for BadSuperblock {}

/// The [`BadSuperblock`] inside an [`Ext4Error::Io`] from [`Ext4Disk::load`].
pub fn bad_superblock(e: &Ext4Error) -> Option<&BadSuperblock> {
    e.as_io()?.downcast_ref::<BadSuperblock>()
}

/// The most block groups [`check_superblock`] accepts. ext4-view keeps one descriptor
/// (16 bytes) per group in memory, read one by one at load: 2^16 groups is 1 MiB and
/// 65536 reads, a filesystem of 8 TiB with 4 KiB blocks (512 GiB with 1 KiB blocks).
pub const MAX_BLOCK_GROUPS: u64 = 1 << 16;

/// The largest block size accepted, 64 KiB (ext4's own limit): ext4-view's block cache
/// holds 8 to 256 blocks and every directory read allocates one.
pub const MAX_LOG_BLOCK_SIZE: u32 = 6;

/// Check the superblock's 1024 bytes against a device of `device_bytes` bytes, before
/// ext4-view believes them: it sizes its block cache by the block size, its descriptor
/// table by the group count (derived as it derives it: from `s_blocks_count`,
/// `s_first_data_block` and `s_blocks_per_group`), and its inode and descriptor reads
/// by their sizes. Each field must be in the range the kernel and mke2fs keep to, and
/// the blocks on the device: the first field out of range is the error.
///
/// A superblock without ext4's magic passes: ext4-view then says what is wrong with it.
pub fn check_superblock(sb: &[u8; 1024], device_bytes: u64) -> Result<(), BadSuperblock> {
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([sb[at], sb[at + 1]]));
    let u32_at = |at: usize| {
        u64::from(u32::from_le_bytes([
            sb[at],
            sb[at + 1],
            sb[at + 2],
            sb[at + 3],
        ]))
    };
    if u16_at(0x38) != 0xef53 {
        return Ok(());
    }
    let check = |field, value: u64, min: u64, max: u64, why: &'static str| {
        let pow2 = why.starts_with("a power of two");
        if (min..=max).contains(&value) && (!pow2 || value.is_power_of_two()) {
            Ok(())
        } else {
            Err(BadSuperblock {
                field,
                value,
                min,
                max,
                why,
            })
        }
    };
    let log = u32_at(0x18);
    check(
        "s_log_block_size",
        log,
        0,
        MAX_LOG_BLOCK_SIZE.into(),
        "blocks of 1 KiB to 64 KiB",
    )?;
    let bs = 1024u64 << log;
    // As ext4-view reads it: the high half whether or not the filesystem is 64-bit.
    let blocks = (u32_at(0x150) << 32) | u32_at(0x04);
    check(
        "s_blocks_count",
        blocks,
        1,
        device_bytes / bs,
        "the blocks the device holds",
    )?;
    let first = u32_at(0x14);
    check(
        "s_first_data_block",
        first,
        0,
        blocks - 1,
        "a block of the filesystem",
    )?;
    // mke2fs's range: a group's block bitmap is one block.
    let bpg = u32_at(0x20);
    check(
        "s_blocks_per_group",
        bpg,
        256,
        8 * bs,
        "a group's block bitmap is one block",
    )?;
    check(
        "block groups (from s_blocks_count, s_first_data_block, s_blocks_per_group)",
        (blocks - first).div_ceil(bpg),
        1,
        MAX_BLOCK_GROUPS,
        "ext4::MAX_BLOCK_GROUPS",
    )?;
    // The kernel's range: a group's inode bitmap is one block.
    check(
        "s_inodes_per_group",
        u32_at(0x28),
        1,
        8 * bs,
        "a group's inode bitmap is one block",
    )?;
    let inode_size = u16_at(0x58);
    check(
        "s_inode_size",
        inode_size,
        128,
        bs,
        "a power of two from 128 to the block size",
    )?;
    // INCOMPAT_64BIT: descriptors of s_desc_size bytes (else 32).
    if u32_at(0x60) & 0x80 != 0 {
        let desc = u16_at(0xfe);
        check(
            "s_desc_size",
            desc,
            64,
            1024,
            "a power of two from 64 to 1024",
        )?;
    }
    Ok(())
}

/// The longest symlink target [`open`] reads, and the longest path it builds: ext4-view's
/// own path limit.
pub const MAX_PATH_LEN: usize = 4096;

/// The most symlinks [`open`] follows for one path (ext4-view's and Linux's limit).
pub const MAX_SYMLINKS: usize = 40;

/// [`Ext4::open`], but following symlinks itself: ext4-view reads a target longer than
/// 59 bytes into a buffer of the size the link's inode claims (up to 2^32 blocks), and
/// on a hostile disk that allocation fails, which is a panic in a guest. Here a target
/// is read only once its size is known to be at most [`MAX_PATH_LEN`]; a larger one is
/// [`Ext4Error::Io`] carrying a [`BadSymlink`].
///
/// Each component is looked up with [`Ext4::symlink_metadata`] on a path whose every
/// directory is already resolved (no symlink in it), so ext4-view never follows a link
/// here. The errors are ext4-view's: [`Ext4Error::NotFound`], `NotADirectory`,
/// `IsADirectory`, `TooManySymlinks`, `PathTooLong`, `NotAbsolute`.
pub fn open(fs: &Ext4, path: &str) -> Result<File, Ext4Error> {
    if !path.starts_with('/') {
        return Err(Ext4Error::NotAbsolute);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(Ext4Error::PathTooLong);
    }
    // `todo`: what is left to resolve; `done`: the directories resolved so far, as an
    // absolute path with no symlink in it ("" is the root).
    let mut todo: Vec<u8> = path.as_bytes().to_vec();
    let mut done: Vec<u8> = Vec::new();
    let mut links = 0;
    loop {
        // The next component of `todo`, and whether anything (even a '/') follows it.
        let start = todo.iter().position(|&b| b != b'/').unwrap_or(todo.len());
        let end = todo[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(todo.len(), |i| start + i);
        if start == end {
            // Nothing left: the path names the directory `done`.
            return Err(Ext4Error::IsADirectory);
        }
        let comp = todo[start..end].to_vec();
        let more = end < todo.len();
        todo.drain(..end);
        match &comp[..] {
            b"." => continue,
            b".." => {
                // `done` has no symlink in it, so its parent is the lexical one.
                let cut = done.iter().rposition(|&b| b == b'/').unwrap_or(0);
                done.truncate(cut);
                continue;
            }
            _ => {}
        }
        let mut here = done.clone();
        here.push(b'/');
        here.extend_from_slice(&comp);
        let p = dir_path(&here)?;
        let md = fs.symlink_metadata(p)?;
        if md.is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Ext4Error::TooManySymlinks);
            }
            let len = md.len();
            if len == 0 || len > MAX_PATH_LEN as u64 {
                return Err(Ext4Error::Io(Box::new(BadSymlink { len })));
            }
            let target = fs.read_link(p)?;
            let target = target.as_ref();
            if target.len() + todo.len() > MAX_PATH_LEN {
                return Err(Ext4Error::PathTooLong);
            }
            if target.starts_with(b"/") {
                done.clear();
            }
            // The target, then what followed the link ('/' joins them).
            let mut next = target.to_vec();
            next.push(b'/');
            next.extend_from_slice(&todo);
            todo = next;
            if !more {
                // Not `…/` after the link: the target is the last component (a file).
                todo.pop();
            }
        } else if md.is_dir() {
            done = here;
        } else if more {
            // "file/…", even "file/": not a directory (as ext4-view and Linux say).
            return Err(Ext4Error::NotADirectory);
        } else {
            return fs.open(p);
        }
    }
}

/// `path` (absolute bytes) as an ext4-view [`Path`](ext4_view::Path).
fn dir_path(path: &[u8]) -> Result<ext4_view::Path<'_>, Ext4Error> {
    ext4_view::Path::try_from(path).map_err(|_| Ext4Error::MalformedPath)
}

/// A symlink whose target is longer than [`MAX_PATH_LEN`] (or empty): [`open`] does
/// not read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSymlink {
    /// The target's length the link's inode claims.
    pub len: u64,
}

impl fmt::Display for BadSymlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a symlink claims a target of {} bytes (1..={MAX_PATH_LEN} accepted)",
            self.len
        )
    }
}

impl core::error::Error for BadSymlink {}

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
