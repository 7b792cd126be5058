//! A consumer reading a file from a disk through embedded-io: the first disk's ext4
//! filesystem, the file `path=` names, read whole with `read_exact` (FNV-1a 64 of its
//! bytes), then its last `tail=` bytes after a `Seek` from the end, both sums written to
//! the console through `embedded_io::Write`. `cargo xtask test` boots it as a domU with
//! `--disk` and compares both checksums with the host's.
#![no_std]
#![no_main]
extern crate alloc;

use alloc::boxed::Box;
use core::fmt;

use embedded_io::{Read, ReadExactError, Seek, SeekFrom, Write};
use xenpv_rt::blk::blkfront::{BlkError, Blkfront};
use xenpv_rt::blk::ext4::{Ext4Disk, Ext4File, FileError};
use xenpv_rt::console::Console;
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::println;

xenpv_rt::entry!(main);

fn main(boot: &mut xenpv_rt::Boot) -> i32 {
    let cmdline = boot.cmdline();
    let path = cmdline.value("path").unwrap_or("/etc/motd");
    let tail = cmdline.u64("tail").ok().flatten().unwrap_or(16);
    // The command line borrows `boot`; the disk needs it mutably.
    let mut owned = [0u8; 256];
    let Some(path) = copy(path, &mut owned) else {
        println!("read-file: path= longer than 256 bytes");
        return 2;
    };
    match read_file(boot, path, tail) {
        Ok(()) => 0,
        Err(e) => {
            println!("read-file: {path}: {e}");
            1
        }
    }
}

/// `s` copied into `buf`, so it outlives the borrow it came from.
fn copy<'b>(s: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let dst = buf.get_mut(..s.len())?;
    dst.copy_from_slice(s.as_bytes());
    core::str::from_utf8(dst).ok()
}

/// What can go wrong: connecting the disk, or reading the file.
enum Error {
    Grants,
    NoDisk,
    /// Boxed: blkfront's errors carry xenstore paths.
    Disk(Box<BlkError>),
    File(FileError),
    Short,
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        Error::File(e)
    }
}

impl From<ReadExactError<FileError>> for Error {
    fn from(e: ReadExactError<FileError>) -> Self {
        match e {
            ReadExactError::UnexpectedEof => Error::Short,
            ReadExactError::Other(e) => Error::File(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Grants => write!(f, "no grant table"),
            Error::NoDisk => write!(f, "no disk (boot as a domU with --disk IMAGE)"),
            Error::Disk(e) => write!(f, "disk: {e}"),
            Error::File(e) => write!(f, "{e} ({:?})", embedded_io::Error::kind(e)),
            Error::Short => write!(f, "the file ended early"),
        }
    }
}

fn read_file(boot: &mut xenpv_rt::Boot, path: &str, tail: u64) -> Result<(), Error> {
    let mut gt = GrantTable::setup(boot.memory(), 8).map_err(|_| Error::Grants)?;
    let (mem, xs) = boot.memory_and_xenstore();
    let xs = xs.ok_or(Error::NoDisk)?; // dom0 has no xenstore
    let ids = Blkfront::list(xs).map_err(|e| Error::Disk(Box::new(e)))?;
    let id = *ids.first().ok_or(Error::NoDisk)?;
    let mut disk = Blkfront::connect(mem, &mut gt, xs, id).map_err(|e| Error::Disk(Box::new(e)))?;
    disk.set_timeout(10_000_000_000); // one disk read: 10 s at most
    let fs = Ext4Disk(disk).load().map_err(FileError::from)?;
    let mut file = Ext4File::open(&fs, path)?;
    let len = file.len();
    let sum = fnv1a64(&mut file, len)?;
    // The results through embedded-io too: the console is a `Write`.
    let mut out = Console;
    let _ = writeln!(out, "read-file: {path} bytes={len} fnv={sum:016x}");
    let tail = tail.min(len);
    let at = file.seek(SeekFrom::End(-(tail as i64)))?;
    let sum = fnv1a64(&mut file, tail)?;
    let _ = writeln!(
        out,
        "read-file: {path} seek=End(-{tail}) at={at} bytes={tail} fnv={sum:016x}"
    );
    Ok(())
}

/// FNV-1a 64 of the next `n` bytes of `r`, read with `read_exact` in 4000-byte pieces
/// (not a multiple of a block: pieces straddle blocks).
fn fnv1a64(r: &mut impl Read<Error = FileError>, n: u64) -> Result<u64, Error> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 4000];
    let mut left = n;
    while left > 0 {
        let piece = &mut buf[..left.min(4000) as usize];
        r.read_exact(piece)?;
        for &b in piece.iter() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        left -= piece.len() as u64;
    }
    Ok(h)
}
