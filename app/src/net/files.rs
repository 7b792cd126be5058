//! The filesystem `GET /files/…` serves (word `files`): the first disk, brought up with
//! blkfront and read as ext2/3/4, behind the disk's breaker.
//!
//! The disk's calls are synchronous: each holds the executor, at most `disk_timeout=`
//! (blkfront's deadline per call, the filesystem's load included); one that fails opens
//! the breaker (`xenpv_appliance::breaker`), and `GET /files/…` is then a 503 for a
//! back-off without calling the disk.

extern crate alloc;

use alloc::string::String;
use core::cell::{Cell, RefCell};
use core::fmt::Write as _;

use xenpv_appliance::breaker::Breaker;
use xenpv_appliance::http::Opened;
use xenpv_appliance_service::{Files, ReadFail};
use xenpv_contract::report::Writer;
use xenpv_rt::blk::ext4::ext4_view::{Ext4, Ext4Error, File};
use xenpv_rt::blk::ext4::read_exact_at;
use xenpv_rt::println;
use xenpv_rt::time::now_ns;

/// The appliance's files: the filesystem (if the word `files` found one), the disk's
/// breaker, and the errors counted.
#[derive(Default)]
pub(super) struct DiskFiles {
    fs: Option<Ext4>,
    breaker: RefCell<Breaker>,
    errors: Cell<u64>,
}

impl DiskFiles {
    /// The first disk's filesystem, each call's deadline `timeout_ms`; without one (it
    /// is printed, and counted), every `GET /files/…` is a 404. The disk comes from the
    /// device layer, so it is re-attached after a restore or a migration.
    pub(super) async fn open(rt: &'static xenpv_rt::Runtime, timeout_ms: u64) -> DiskFiles {
        let f = DiskFiles::default();
        match load(rt, timeout_ms).await {
            Ok(fs) => DiskFiles { fs: Some(fs), ..f },
            Err(e) => {
                // A disk that cannot be read costs GET /files/… only (404): serve the rest.
                println!("net: files: {e} (serving without files)");
                f.errors.set(1);
                f
            }
        }
    }

    /// Errors so far (the filesystem's load, opens and reads).
    pub(super) fn errors(&self) -> u64 {
        self.errors.get()
    }

    /// Times the breaker opened.
    pub(super) fn trips(&self) -> u64 {
        self.breaker.borrow().trips()
    }

    /// A call failed (`e`, printed with `what`): counted, and if the device itself
    /// failed (its deadline passed, or an error) the breaker opens. What to answer.
    fn failed(&self, what: &str, e: &Ext4Error) -> ReadFail {
        println!("net: files: {what}: {e}");
        self.errors.set(self.errors.get() + 1);
        if xenpv_rt::blk::ext4::block_error(e).is_none() {
            // The filesystem's own error (a corrupt structure): the disk answered.
            return ReadFail::Failed;
        }
        let now = now_ns();
        let mut b = self.breaker.borrow_mut();
        b.failed(now);
        match b.allow(now) {
            Err(left_ns) => ReadFail::Unavailable { left_ns },
            Ok(()) => ReadFail::Failed,
        }
    }
}

impl Files for DiskFiles {
    type File = File;

    fn open(&self, path: &str) -> Result<(File, u64), Opened> {
        let Some(fs) = self.fs.as_ref() else {
            return Err(Opened::NotFound);
        };
        // The breaker is open (a call failed lately): not called, a 503.
        if let Err(left_ns) = self.breaker.borrow().allow(now_ns()) {
            return Err(Opened::Unavailable { left_ns });
        }
        match xenpv_rt::blk::ext4::open(fs, path) {
            Ok(f) => {
                let len = f.metadata().len();
                Ok((f, len))
            }
            Err(
                Ext4Error::NotFound
                | Ext4Error::IsADirectory
                | Ext4Error::NotADirectory
                | Ext4Error::IsASpecialFile,
            ) => Err(Opened::NotFound),
            Err(e) => {
                let mut what: heapless::String<300> = heapless::String::new();
                let _ = write!(what, "open {path}");
                Err(match self.failed(&what, &e) {
                    ReadFail::Failed => Opened::Failed,
                    ReadFail::Unavailable { left_ns } => Opened::Unavailable { left_ns },
                })
            }
        }
    }

    fn read_at(&self, f: &mut File, offset: u64, out: &mut [u8]) -> Result<(), ReadFail> {
        // Another connection's call failed meanwhile: the disk is not called.
        if let Err(left_ns) = self.breaker.borrow().allow(now_ns()) {
            return Err(ReadFail::Unavailable { left_ns });
        }
        match read_exact_at(f, offset, out) {
            Ok(()) => {
                self.breaker.borrow_mut().succeeded();
                Ok(())
            }
            Err(e) => Err(self.failed("reading", &e)),
        }
    }
}

/// The first disk (`device/vbd`), from the device layer, read as ext2/3/4; its
/// `net: files …` line printed. The error is one line of text for the console.
async fn load(rt: &'static xenpv_rt::Runtime, timeout_ms: u64) -> Result<Ext4, String> {
    use xenpv_rt::blk::ext4::FileError;
    let mut msg = String::new();
    let t0 = now_ns();
    let disk = match rt.devices().disk(0).await {
        Ok(d) => d,
        Err(e) => {
            let _ = write!(msg, "disk 0: {e}");
            return Err(msg);
        }
    };
    let id = disk.id();
    // Each call's deadline (`disk_timeout=`), the filesystem's load included: a disk
    // that stalls holds the executor at most this long per call.
    if let Err(e) = disk.set_timeout(timeout_ms.saturating_mul(1_000_000)) {
        let _ = write!(msg, "vbd {id}: {e}");
        return Err(msg);
    }
    let g = disk.geometry();
    // The filesystem keeps its own handle on the disk: the `Disk` itself may go.
    let fs = match disk.ext4() {
        Ok(fs) => fs,
        Err(FileError::Fs(e)) => {
            let _ = match xenpv_rt::blk::ext4::bad_superblock(&e) {
                Some(bad) => write!(msg, "vbd {id}: {bad}"),
                None => write!(msg, "vbd {id}: not an ext2/3/4 filesystem: {e}"),
            };
            return Err(msg);
        }
        Err(e) => {
            let _ = write!(msg, "vbd {id}: {e}");
            return Err(msg);
        }
    };
    println!(
        "{}",
        Writer::new("net")
            .word("files")
            .field("vbd", &id)
            .field("sectors", &g.sectors)
            .field("sector_size", &g.sector_size)
            .field("ro", &(g.read_only as u8))
            .field("fs", "ext4")
            .field("ms", &((now_ns() - t0) / 1_000_000))
            .field("serves", "GET /files/PATH")
            .field("disk_timeout_ms", &timeout_ms)
    );
    Ok(fs)
}
