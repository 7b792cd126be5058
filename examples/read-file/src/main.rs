//! A consumer reading a file from a disk through embedded-io: the first disk, connected
//! by the runtime's device layer (`rt.devices().disk(0)`), its first MiB read as sectors
//! (`disk.read(..).await`, FNV-1a 64 of them), its ext4 filesystem
//! (`disk.ext4()`), the file `path=` names, read whole with `read_exact` (FNV-1a 64 of
//! its bytes), then its last `tail=` bytes after a `Seek` from the end, both sums
//! written to the console through `embedded_io::Write`. The runtime closes the disk when
//! the app returns. `cargo xtask test` boots it as a domU with `--disk` and compares
//! both checksums with the host's.
#![no_std]
#![no_main]
extern crate alloc;

use alloc::string::String;
use core::fmt;

use embedded_io::{Read, ReadExactError, Seek, SeekFrom, Write};
use xenpv_rt::blk::ext4::{Ext4File, FileError};
use xenpv_rt::console::Console;
use xenpv_rt::device::{DeviceError, DiskError};
use xenpv_rt::println;

xenpv_rt::main!(app);

async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    let (path, tail) = rt.with_boot(|boot| {
        let cmdline = boot.cmdline();
        let path = String::from(cmdline.value("path").unwrap_or("/etc/motd"));
        (path, cmdline.u64("tail").ok().flatten().unwrap_or(16))
    });
    match read_file(rt, &path, tail).await {
        Ok(()) => 0,
        Err(e) => {
            println!("read-file: {path}: {e}");
            1
        }
    }
}

/// What can go wrong: connecting the disk, or reading the file.
enum Error {
    Device(DeviceError),
    Disk(DiskError),
    File(FileError),
    Short,
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        Error::File(e)
    }
}

impl From<ReadExactError<core::convert::Infallible>> for Error {
    fn from(_: ReadExactError<core::convert::Infallible>) -> Self {
        Error::Short
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
            Error::Device(e) => write!(f, "disk 0 (boot as a domU with --disk IMAGE): {e}"),
            Error::Disk(e) => write!(f, "disk: {e}"),
            Error::File(e) => write!(f, "{e} ({:?})", embedded_io::Error::kind(e)),
            Error::Short => write!(f, "the file ended early"),
        }
    }
}

async fn read_file(rt: &'static xenpv_rt::Runtime, path: &str, tail: u64) -> Result<(), Error> {
    let disk = rt.devices().disk(0).await.map_err(Error::Device)?;
    disk.set_timeout(10_000_000_000).map_err(Error::Disk)?; // one disk read: 10 s at most
                                                            // The disk's first MiB (or all of it) read as sectors, awaited: other tasks would run
                                                            // while the backend works.
    let mut head =
        alloc::vec![0u8; (1 << 20).min(disk.sectors() * u64::from(disk.sector_size())) as usize];
    disk.read(0, &mut head).await.map_err(Error::Disk)?;
    let sum = fnv1a64(&mut &head[..], head.len() as u64)?;
    println!("read-file: sectors 0.. bytes={} fnv={sum:016x}", head.len());
    let fs = disk.ext4()?;
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
fn fnv1a64<R: Read>(r: &mut R, n: u64) -> Result<u64, Error>
where
    Error: From<ReadExactError<R::Error>>,
{
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
