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

pub mod blkfront;
/// Read-only ext2/3/4 over a [`BlockDevice`] (feature `fs`): `Ext4Disk(disk).load()`.
#[cfg(feature = "fs")]
pub use xenpv_protocol::ext4;

pub use xenpv_protocol::block::{read_bytes, BlockDevice, BlockError, Geometry};
