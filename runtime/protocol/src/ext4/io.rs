//! A file of an ext4 filesystem as an [`embedded_io`] byte stream: [`Ext4File`]
//! implements [`Read`] and [`Seek`], so code written against embedded-io (a parser, a
//! checksum, a copy loop) reads files from a disk unchanged.
//!
//! A seek only records the position ([`seek_target`] is the arithmetic); the next read
//! moves ext4-view's file there. ext4-view's own seek walks the file's blocks from the
//! start, so seeking twice costs one walk, and a seek past the end costs nothing (reads
//! there return 0, as `std`'s files do).

use core::fmt;

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom};
use ext4_view::{Ext4, Ext4Error, File};

use super::{bad_superblock, block_error, BadSymlink, PastEnd};
use crate::block::BlockError;

/// A file opened from an [`Ext4`] filesystem, read through [`embedded_io::Read`] and
/// positioned with [`embedded_io::Seek`].
///
/// ```
/// use embedded_io::{Error as _, ErrorKind, Read, ReadExactError, Seek, SeekFrom};
/// use xenpv_protocol::block::{BlockDevice, MemDisk};
/// use xenpv_protocol::ext4::{Ext4Disk, Ext4File, FileError};
///
/// // The first and last 4 bytes of /etc/motd (UnexpectedEof if it is shorter).
/// fn head_and_tail<D: BlockDevice + 'static>(
///     disk: D,
/// ) -> Result<([u8; 4], [u8; 4]), ReadExactError<FileError>> {
///     let fs = Ext4Disk(disk).load().map_err(FileError::from)?;
///     let mut file = Ext4File::open(&fs, "/etc/motd")?;
///     let (mut head, mut tail) = ([0; 4], [0; 4]);
///     file.read_exact(&mut head)?;
///     file.seek(SeekFrom::End(-4))?;
///     file.read_exact(&mut tail)?;
///     Ok((head, tail))
/// }
/// // A zeroed disk holds no filesystem: an error of kind InvalidData, not a panic.
/// let Err(ReadExactError::Other(e)) = head_and_tail(MemDisk::new(512, 128, true)) else {
///     panic!("a zeroed disk read")
/// };
/// assert_eq!(e.kind(), ErrorKind::InvalidData);
/// ```
#[derive(Debug)]
pub struct Ext4File {
    file: File,
    /// Where the next read starts; ext4-view's file is moved here lazily.
    pos: u64,
    /// A read failed: ext4-view's block iterator may have moved without its position,
    /// so the next read seeks afresh.
    resync: bool,
}

impl Ext4File {
    /// Open `path` (absolute) with [`super::open`], which follows symlinks without
    /// trusting the sizes a disk claims.
    pub fn open(fs: &Ext4, path: &str) -> Result<Self, FileError> {
        Ok(Self::new(super::open(fs, path)?))
    }

    /// Wrap a file ext4-view opened, at its current position.
    pub fn new(file: File) -> Self {
        let pos = file.position();
        Ext4File {
            file,
            pos,
            resync: false,
        }
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.file.metadata().len()
    }

    /// Whether the file holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the next read starts (may be past the end after a seek).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The ext4-view file back (its position is where the last read ended).
    pub fn into_inner(self) -> File {
        self.file
    }
}

impl ErrorType for Ext4File {
    type Error = FileError;
}

impl Read for Ext4File {
    /// Up to `buf.len()` bytes from the position on; fewer at a block's end, 0 at or
    /// past the end of the file. A device error (blkfront's deadline passed, say) is
    /// [`FileError::Device`] and leaves the position where it was.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        if buf.is_empty() || self.pos >= self.len() {
            return Ok(0);
        }
        if self.resync || self.file.position() != self.pos {
            self.resync = true;
            self.file.seek_to(self.pos)?;
        }
        self.resync = true;
        let n = self.file.read_bytes(buf)?;
        self.resync = false;
        self.pos = self.file.position();
        Ok(n)
    }
}

impl Seek for Ext4File {
    /// Move the position (no disk access); before byte 0 or past `u64::MAX` is
    /// [`FileError::BadSeek`] and leaves it where it was.
    fn seek(&mut self, to: SeekFrom) -> Result<u64, FileError> {
        let pos = seek_target(self.pos, self.len(), to).ok_or(FileError::BadSeek {
            position: self.pos,
            to,
        })?;
        self.pos = pos;
        Ok(pos)
    }
}

/// Where a seek `to` lands from `position` in a file of `len` bytes, as `std`'s files
/// do it: `None` before byte 0 or past `u64::MAX`; past the end is allowed.
pub fn seek_target(position: u64, len: u64, to: SeekFrom) -> Option<u64> {
    match to {
        SeekFrom::Start(at) => Some(at),
        SeekFrom::End(delta) => len.checked_add_signed(delta),
        SeekFrom::Current(delta) => position.checked_add_signed(delta),
    }
}

/// Why an [`Ext4File`] could not be opened, read or positioned.
#[derive(Debug)]
pub enum FileError {
    /// The device failed a read: blkfront's deadline passed (`Timeout`), the backend
    /// refused it, or the filesystem points past the device's end.
    Device(BlockError),
    /// The filesystem: no such file, a directory, a corrupt or unsupported structure.
    Fs(Ext4Error),
    /// A seek before byte 0 or past `u64::MAX`.
    BadSeek {
        /// The position the seek started from.
        position: u64,
        /// The seek asked for.
        to: SeekFrom,
    },
}

impl From<Ext4Error> for FileError {
    /// A device error carried inside [`Ext4Error::Io`] becomes [`FileError::Device`].
    fn from(e: Ext4Error) -> Self {
        match block_error(&e) {
            Some(b) => FileError::Device(b),
            None => FileError::Fs(e),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Device(e) => write!(f, "disk: {e}"),
            FileError::Fs(e) => write!(f, "ext4: {e}"),
            FileError::BadSeek { position, to } => {
                write!(f, "seek {to:?} from byte {position} leaves 0..=u64::MAX")
            }
        }
    }
}

impl core::error::Error for FileError {}

impl embedded_io::Error for FileError {
    fn kind(&self) -> ErrorKind {
        match self {
            FileError::Device(e) => block_error_kind(e),
            FileError::Fs(e) => ext4_error_kind(e),
            FileError::BadSeek { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// The [`ErrorKind`] of a device error met reading a file.
pub fn block_error_kind(e: &BlockError) -> ErrorKind {
    match e {
        BlockError::Timeout { .. } => ErrorKind::TimedOut,
        // A block the filesystem names past the device: the filesystem is wrong.
        BlockError::OutOfRange { .. } => ErrorKind::InvalidData,
        BlockError::Unaligned { .. } => ErrorKind::InvalidInput,
        BlockError::ReadOnly => ErrorKind::PermissionDenied,
        BlockError::FlushUnsupported => ErrorKind::Unsupported,
        BlockError::Backend { .. }
        | BlockError::BadResponse { .. }
        | BlockError::Broken
        | BlockError::Resumed => ErrorKind::Other,
    }
}

/// The [`ErrorKind`] of an ext4-view error (the device's own errors are
/// [`FileError::Device`], see [`block_error_kind`]).
pub fn ext4_error_kind(e: &Ext4Error) -> ErrorKind {
    match e {
        Ext4Error::NotFound => ErrorKind::NotFound,
        Ext4Error::NotAbsolute
        | Ext4Error::NotASymlink
        | Ext4Error::IsADirectory
        | Ext4Error::NotADirectory
        | Ext4Error::IsASpecialFile
        | Ext4Error::NotUtf8
        | Ext4Error::MalformedPath
        | Ext4Error::PathTooLong
        | Ext4Error::TooManySymlinks => ErrorKind::InvalidInput,
        Ext4Error::FileTooLarge => ErrorKind::OutOfMemory,
        Ext4Error::Encrypted | Ext4Error::Incompatible(_) => ErrorKind::Unsupported,
        Ext4Error::Corrupt(_) => ErrorKind::InvalidData,
        Ext4Error::Io(io) => {
            // What this module's checks put there: the disk's claims refused.
            if bad_superblock(e).is_some() || io.is::<BadSymlink>() || io.is::<PastEnd>() {
                ErrorKind::InvalidData
            } else {
                ErrorKind::Other
            }
        }
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeks_land_where_std_lands() {
        let (pos, len) = (10, 100);
        assert_eq!(seek_target(pos, len, SeekFrom::Start(0)), Some(0));
        assert_eq!(seek_target(pos, len, SeekFrom::Start(1000)), Some(1000));
        assert_eq!(seek_target(pos, len, SeekFrom::Current(5)), Some(15));
        assert_eq!(seek_target(pos, len, SeekFrom::Current(-10)), Some(0));
        assert_eq!(seek_target(pos, len, SeekFrom::Current(-11)), None);
        assert_eq!(seek_target(pos, len, SeekFrom::End(0)), Some(100));
        assert_eq!(seek_target(pos, len, SeekFrom::End(-1)), Some(99));
        assert_eq!(seek_target(pos, len, SeekFrom::End(7)), Some(107));
        assert_eq!(seek_target(pos, len, SeekFrom::End(-101)), None);
        assert_eq!(seek_target(pos, len, SeekFrom::End(i64::MIN)), None);
        assert_eq!(seek_target(u64::MAX, len, SeekFrom::Current(1)), None);
        assert_eq!(
            seek_target(u64::MAX, len, SeekFrom::Current(i64::MIN)),
            Some(u64::MAX - (1 << 63))
        );
        assert_eq!(seek_target(0, u64::MAX, SeekFrom::End(0)), Some(u64::MAX));
    }

    #[test]
    fn error_kinds() {
        use embedded_io::Error as _;
        let kind = |e: FileError| e.kind();
        assert_eq!(
            kind(FileError::Device(BlockError::Timeout { waited_ms: 5000 })),
            ErrorKind::TimedOut
        );
        assert_eq!(
            kind(FileError::Device(BlockError::Backend { status: -1 })),
            ErrorKind::Other
        );
        assert_eq!(kind(Ext4Error::NotFound.into()), ErrorKind::NotFound);
        assert_eq!(
            kind(Ext4Error::IsADirectory.into()),
            ErrorKind::InvalidInput
        );
        let past = PastEnd {
            offset: 1,
            len: 1,
            size: 1,
        };
        assert_eq!(
            kind(Ext4Error::Io(Box::new(past)).into()),
            ErrorKind::InvalidData
        );
        // A device error inside ext4-view's Io is the device's.
        let timeout = BlockError::Timeout { waited_ms: 1 };
        let e: FileError = Ext4Error::Io(Box::new(timeout)).into();
        assert!(matches!(e, FileError::Device(BlockError::Timeout { .. })));
        let seek = FileError::BadSeek {
            position: 3,
            to: SeekFrom::Current(-4),
        };
        assert_eq!(
            format!("{seek}"),
            "seek Current(-4) from byte 3 leaves 0..=u64::MAX"
        );
        assert_eq!(kind(seek), ErrorKind::InvalidInput);
    }
}
