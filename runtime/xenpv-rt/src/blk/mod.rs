//! Block devices: blkfront ([`blkfront::Blkfront`], one per virtual disk), which
//! implements the runtime's block-device API ([`BlockDevice`]: whole sectors in and out
//! of caller buffers, every failure an error value).
//!
//! ```no_run
//! # fn f(boot: &mut xenpv_rt::Boot) -> Result<(), xenpv_rt::blk::blkfront::BlkError> {
//! use xenpv_rt::blk::{blkfront::Blkfront, BlockDevice};
//! use xenpv_rt::gnttab::GrantTable;
//! let mut gt = GrantTable::setup(boot.memory(), 4).expect("grant table");
//! let (mem, xs) = boot.memory_and_xenstore();
//! let xs = xs.expect("a domU has xenstore");
//! for id in Blkfront::list(xs)? {
//!     let mut disk = Blkfront::connect(mem, &mut gt, xs, id)?; // device/vbd/<id>
//!     let g = disk.geometry();
//!     let mut first = [0u8; 4096];
//!     disk.read(0, &mut first[..g.sector_size as usize])?;
//!     xenpv_rt::println!("vbd {id}: {} sectors of {} bytes", g.sectors, g.sector_size);
//! }
//! # Ok(()) }
//! ```

//!
//! With the feature `fs`, a disk's ext2/3/4 filesystem is read with `ext4`: its files
//! are [`embedded_io::Read`] + [`embedded_io::Seek`] (`ext4::Ext4File`), each disk
//! read within the blkfront's deadline ([`blkfront::Blkfront::set_timeout`]; one that
//! passes is an error of kind `TimedOut`, never a hang).
//!
//! ```no_run
//! # fn f(boot: &mut xenpv_rt::Boot) -> Result<(), xenpv_rt::blk::ext4::FileError> {
//! use xenpv_rt::blk::{blkfront::Blkfront, ext4::{Ext4Disk, Ext4File}};
//! use xenpv_rt::embedded_io::{Read, Seek, SeekFrom};
//! # let mut gt = xenpv_rt::gnttab::GrantTable::setup(boot.memory(), 4).expect("grants");
//! # let (mem, xs) = boot.memory_and_xenstore();
//! # let xs = xs.expect("a domU has xenstore");
//! let mut disk = Blkfront::connect(mem, &mut gt, xs, 51712).expect("xvda");
//! disk.set_timeout(5_000_000_000); // each disk read: 5 s at most
//! let fs = Ext4Disk(disk).load()?;
//! let mut file = Ext4File::open(&fs, "/etc/motd")?;
//! let mut head = [0u8; 16];
//! file.read_exact(&mut head).map_err(|e| match e {
//!     xenpv_rt::embedded_io::ReadExactError::Other(e) => e,
//!     eof => panic!("{eof:?}: shorter than 16 bytes"),
//! })?;
//! file.seek(SeekFrom::End(-16))?;
//! let n = file.read(&mut head)?;
//! xenpv_rt::println!("{} bytes, the last {n} read", file.len());
//! # Ok(()) }
//! ```

pub mod blkfront;
/// Read-only ext2/3/4 over a [`BlockDevice`] (feature `fs`): `Ext4Disk(disk).load()`,
/// files as embedded-io streams (`ext4::Ext4File`).
#[cfg(feature = "fs")]
pub use xenpv_protocol::ext4;

pub use xenpv_protocol::block::{read_bytes, BlockDevice, BlockError, Geometry};
