//! The filesystem `GET /files/…` serves: the first disk, read as ext2/3/4.

use xenpv_appliance::http::Opened;
use xenpv_contract::report::Writer;
use xenpv_rt::blk::ext4::ext4_view::{Ext4, Ext4Error, File};
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::time::now_ns;
use xenpv_rt::xenstore::Xenstore;
use xenpv_rt::{println, PageLink};

use super::stats::Stats;

/// The first disk (`device/vbd`), brought up with blkfront and read as ext2/3/4.
// The error is one line of text for the console, made once at start.
#[allow(clippy::result_large_err)]
pub(super) fn open_files(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    timeout_ms: u64,
) -> Result<Ext4, heapless::String<200>> {
    use core::fmt::Write as _;
    use xenpv_rt::blk::blkfront::Blkfront;
    use xenpv_rt::blk::ext4::Ext4Disk;
    use xenpv_rt::blk::BlockDevice;
    let mut msg = heapless::String::new();
    let ids = match Blkfront::list(xs) {
        Ok(ids) => ids,
        Err(e) => {
            let _ = write!(msg, "listing device/vbd: {e}");
            return Err(msg);
        }
    };
    let Some(&id) = ids.first() else {
        let _ = write!(msg, "no disk (device/vbd is empty)");
        return Err(msg);
    };
    let t0 = now_ns();
    let mut disk = match Blkfront::connect(mem, gt, xs, id) {
        Ok(d) => d,
        Err(e) => {
            let _ = write!(msg, "vbd {id}: {e}");
            return Err(msg);
        }
    };
    // Each call's deadline (`disk_timeout=`), the filesystem's load included: a disk
    // that stalls holds the serving loop at most this long per call.
    disk.set_timeout(timeout_ms.saturating_mul(1_000_000));
    let g = disk.geometry();
    let fs = match Ext4Disk(disk).load() {
        Ok(fs) => fs,
        Err(e) => {
            let _ = match xenpv_rt::blk::ext4::bad_superblock(&e) {
                Some(bad) => write!(msg, "vbd {id}: {bad}"),
                None => write!(msg, "vbd {id}: not an ext2/3/4 filesystem: {e}"),
            };
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

/// Open `path` for `GET /files/…`: a regular file and its length (its checksum is
/// taken a step a round afterwards, `FileSum`), or why not.
pub(super) fn open_file(
    files: Option<&Ext4>,
    path: &str,
    st: &mut Stats,
) -> Result<(File, u64), Opened> {
    let Some(fs) = files else {
        return Err(Opened::NotFound);
    };
    match xenpv_rt::blk::ext4::open(fs, path) {
        Ok(f) => {
            let len = f.metadata().len();
            Ok((f, len))
        }
        Err(Ext4Error::NotFound | Ext4Error::IsADirectory | Ext4Error::NotADirectory) => {
            Err(Opened::NotFound)
        }
        Err(Ext4Error::IsASpecialFile) => Err(Opened::NotFound),
        Err(e) => {
            println!("net: files: open {path}: {e}");
            st.file_errors += 1;
            Err(disk_failed(&e, st)
                .map_or(Opened::Failed, |left_ns| Opened::Unavailable { left_ns }))
        }
    }
}

/// A file read failed: if the device itself did (its deadline passed, or an error),
/// the disk's breaker opens; how long it refuses then. `None`: the filesystem's own
/// error (a corrupt structure), the disk answered.
pub(super) fn disk_failed(e: &Ext4Error, st: &mut Stats) -> Option<u64> {
    xenpv_rt::blk::ext4::block_error(e)?;
    let now = now_ns();
    st.disk.failed(now);
    st.disk.allow(now).err()
}
