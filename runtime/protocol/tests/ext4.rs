//! ext4 over the block API: real images made by `mkfs.ext4 -d` (e2fsprogs), read back
//! through `MemDisk` and `Ext4Disk`, every file's bytes and size checked; missing paths
//! and failing devices are errors, never panics.
//!
//! The feature `ext4` is on here through the crate's dev-dependency on itself, so a plain
//! `cargo test -p xenpv-protocol` runs this file. Without mkfs.ext4 the tests fail,
//! saying so: they never skip.
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use xenpv_protocol::block::{BlockDevice, BlockError, Geometry, MemDisk};
use xenpv_protocol::ext4::ext4_view::{Ext4, Ext4Error};
use xenpv_protocol::ext4::{bad_superblock, block_error, open, read_exact_at, Ext4Disk, PastEnd};

/// The files put in the image: path (from the root) and length. Their bytes are
/// [`content`] of the path.
fn files() -> Vec<(String, usize)> {
    vec![
        ("empty".into(), 0),
        ("one".into(), 1),
        ("f4095".into(), 4095),
        ("f4096".into(), 4096),
        ("f4097".into(), 4097),
        ("big".into(), (1 << 20) + 3),
        ("nested/dir/deeper/inner.bin".into(), 5000),
        // 255 bytes: the longest name ext4 allows.
        (format!("{}.txt", "n".repeat(251)), 777),
    ]
}

/// A file's bytes: xorshift from a seed of its path, so each file (and each offset in
/// it) differs from the others and a block read from the wrong place shows.
fn content(path: &str, len: usize) -> Vec<u8> {
    let mut s = path.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

fn mkfs() -> PathBuf {
    // Debian keeps it in /sbin, which a non-root PATH may lack.
    for p in ["mkfs.ext4", "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"] {
        if Command::new(p).arg("-V").output().is_ok() {
            return p.into();
        }
    }
    panic!(
        "mkfs.ext4 not found (in PATH, /usr/sbin or /sbin): these tests build their ext4 \
         images with it; install e2fsprogs (apt-get install e2fsprogs)"
    );
}

/// A scratch directory under cargo's per-target tmp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "ext4-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An 8 MiB ext4 image of [`files`], with `block_size`-byte filesystem blocks.
fn image(block_size: u32) -> Vec<u8> {
    let mkfs = mkfs();
    let scratch = Scratch::new(&block_size.to_string());
    let root = scratch.0.join("root");
    for (path, len) in files() {
        let p = root.join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content(&path, len)).unwrap();
    }
    let img = scratch.0.join("fs.img");
    let out = Command::new(&mkfs)
        .args(["-q", "-F", "-b", &block_size.to_string(), "-d"])
        .arg(&root)
        .arg(&img)
        .arg("8M")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", mkfs.display()));
    assert!(
        out.status.success(),
        "{} -d failed ({}): {}",
        mkfs.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(bytes.len(), 8 << 20);
    bytes
}

/// A file read to its end through `File::read_bytes`, in `chunk`-byte asks.
fn read_all(fs: &Ext4, path: &str, chunk: usize) -> Result<Vec<u8>, Ext4Error> {
    let mut f = fs.open(path)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        match f.read_bytes(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Every file of [`files`]: size, bytes (whole, and in odd chunks), and a seek.
fn check_files(fs: &Ext4) {
    for (path, len) in files() {
        let abs = format!("/{path}");
        let want = content(&path, len);
        let f = fs.open(abs.as_str()).unwrap();
        assert_eq!(f.metadata().len(), len as u64, "{abs}: size");
        let g = open(fs, &abs).unwrap();
        assert_eq!(g.metadata().len(), len as u64, "{abs}: size by ext4::open");
        assert!(!f.metadata().is_dir(), "{abs}");
        assert!(fs.read(abs.as_str()).unwrap() == want, "{abs}: bytes");
        for chunk in [1, 511, 4096, 70_000] {
            if chunk < 16 && len > 10_000 {
                continue; // byte-at-a-time over a MiB: slow, and proves nothing more
            }
            assert!(
                read_all(fs, &abs, chunk).unwrap() == want,
                "{abs}: bytes in {chunk}-byte reads"
            );
        }
        // Back to the middle (what a second pass over a file does).
        let mut f = fs.open(abs.as_str()).unwrap();
        let mid = len / 2;
        f.seek_to(mid as u64).unwrap();
        let mut rest = vec![0u8; len - mid];
        let mut at = 0;
        while at < rest.len() {
            let n = f.read_bytes(&mut rest[at..]).unwrap();
            assert!(n > 0, "{abs}: early end at {}", mid + at);
            at += n;
        }
        assert!(rest == want[mid..], "{abs}: bytes after a seek to {mid}");
    }
}

fn load(bytes: Vec<u8>, sector_size: u32) -> Ext4 {
    let disk = MemDisk::over(bytes, sector_size, true);
    Ext4Disk(disk).load().expect("the image loads")
}

#[test]
fn every_file_reads_back_with_1k_blocks_on_512_byte_sectors() {
    let fs = load(image(1024), 512);
    check_files(&fs);
}

#[test]
fn every_file_reads_back_with_4k_blocks_on_512_and_4k_sectors() {
    let img = image(4096);
    check_files(&load(img.clone(), 512));
    check_files(&load(img, 4096));
}

#[test]
fn directories_list_and_missing_paths_are_errors() {
    // `Ext4::load` itself, as the brief names it, over a boxed `Ext4Disk`.
    let fs = Ext4::load(Box::new(Ext4Disk(MemDisk::over(image(1024), 512, true)))).unwrap();
    assert!(matches!(fs.open("/missing"), Err(Ext4Error::NotFound)));
    assert!(matches!(
        fs.open("/nested/dir/missing"),
        Err(Ext4Error::NotFound)
    ));
    assert!(matches!(
        fs.open("/one/below"),
        Err(Ext4Error::NotADirectory)
    ));
    assert!(matches!(
        fs.open("/nested/dir"),
        Err(Ext4Error::IsADirectory)
    ));
    assert!(fs.open("one").is_err(), "a relative path");
    assert!(fs.read("/missing").is_err());
    assert!(!fs.exists("/missing").unwrap());
    // None of these is a device error.
    assert_eq!(block_error(&fs.open("/missing").unwrap_err()), None);
    let mut names: Vec<String> = fs
        .read_dir("/nested/dir")
        .unwrap()
        .map(|e| e.unwrap().file_name().as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, [".", "..", "deeper"]);
}

/// A device that answers the first `ok_reads` reads and fails every one after with
/// `BlockError::Backend` (the count shared, so a test can see how many were made).
struct Failing {
    disk: MemDisk<Vec<u8>>,
    ok_reads: u64,
    reads: Rc<Cell<u64>>,
}

impl BlockDevice for Failing {
    fn geometry(&self) -> Geometry {
        self.disk.geometry()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let n = self.reads.get();
        self.reads.set(n + 1);
        if n >= self.ok_reads {
            return Err(BlockError::Backend { status: -1 });
        }
        self.disk.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.disk.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// Load the image and read every file, over a device failing after `ok_reads` reads:
/// the first error (which must be the device's), or how many reads a clean pass made.
fn pass(img: &[u8], ok_reads: u64) -> Result<u64, Ext4Error> {
    let reads = Rc::new(Cell::new(0));
    let fs = Ext4Disk(Failing {
        disk: MemDisk::over(img.to_vec(), 512, true),
        ok_reads,
        reads: reads.clone(),
    })
    .load()?;
    for (path, len) in files() {
        let got = read_all(&fs, &format!("/{path}"), 4096)?;
        assert!(got == content(&path, len), "/{path}: wrong bytes, no error");
    }
    Ok(reads.get())
}

#[test]
fn a_failing_device_is_an_error_never_a_panic() {
    let img = image(1024);
    // Every read fails: the superblock cannot be read, and load says why.
    let e = pass(&img, 0).unwrap_err();
    assert!(matches!(e, Ext4Error::Io(_)), "{e:?}");
    assert_eq!(block_error(&e), Some(BlockError::Backend { status: -1 }));
    assert!(e.to_string().contains("I/O") || e.as_io().is_some());
    // A device that fails the reads of file data after a good load.
    let reads = Rc::new(Cell::new(0));
    let fs = Ext4Disk(Failing {
        disk: MemDisk::over(img.clone(), 512, true),
        ok_reads: u64::MAX,
        reads: reads.clone(),
    })
    .load()
    .unwrap();
    let loaded = reads.get();
    drop(fs);
    let fs = Ext4Disk(Failing {
        disk: MemDisk::over(img.clone(), 512, true),
        ok_reads: loaded,
        reads: Rc::new(Cell::new(0)),
    })
    .load()
    .expect("loads with exactly the reads a load needs");
    let e = fs.read("/big").unwrap_err();
    assert_eq!(block_error(&e), Some(BlockError::Backend { status: -1 }));
    // The failure at every point of a whole pass (every read while loading, then a
    // stride through the files' reads): always an error, and the device's.
    let total = pass(&img, u64::MAX).unwrap();
    assert!(total > loaded);
    let points = (0..loaded.min(200)).chain((loaded..total).step_by(37));
    for ok_reads in points {
        match pass(&img, ok_reads) {
            Ok(n) => panic!("a pass failing after {ok_reads} of {total} reads made {n} and passed"),
            Err(e) => assert_eq!(
                block_error(&e),
                Some(BlockError::Backend { status: -1 }),
                "failing after {ok_reads} reads: {e:?}"
            ),
        }
    }
}

#[test]
fn a_device_smaller_than_its_filesystem_is_an_error() {
    // The superblock says 8 MiB; the device holds the first 1 MiB.
    let mut img = image(1024);
    img.truncate(1 << 20);
    let disk = MemDisk::over(img, 512, true);
    match Ext4Disk(disk).load() {
        Err(e) => assert!(
            matches!(e, Ext4Error::Io(_) | Ext4Error::Corrupt(_)),
            "{e:?}"
        ),
        // ext4-view need not read past 1 MiB to load; then the big file is cut.
        Ok(fs) => {
            let e = fs.read("/big").unwrap_err();
            assert!(
                matches!(block_error(&e), Some(BlockError::OutOfRange { .. })),
                "{e:?}"
            );
        }
    }
}

#[test]
fn ranges_read_in_full_at_any_offset() {
    let fs = load(image(1024), 512);
    let want = content("big", (1 << 20) + 3);
    let size = want.len() as u64;
    let mut f = fs.open("/big").unwrap();
    // In order, in odd chunks (as an HTTP body goes out): no seek needed, all there.
    let mut got = vec![0u8; want.len()];
    for piece in got.chunks_mut(1460) {
        let at = f.position();
        read_exact_at(&mut f, at, piece).unwrap();
    }
    assert!(got == want);
    assert_eq!(f.position(), size);
    // Back to the start (the second pass after the checksum), then anywhere.
    for (at, n) in [
        (0, 10),
        (0, 4096),
        (1023, 2),
        (5000, 70_000),
        (size - 3, 3),
        (7, 1),
    ] {
        let mut out = vec![0u8; n];
        read_exact_at(&mut f, at, &mut out).unwrap();
        assert!(out[..] == want[at as usize..at as usize + n], "{at}+{n}");
        assert_eq!(f.position(), at + n as u64);
    }
    read_exact_at(&mut f, size, &mut []).unwrap();
    // Past the end: an error naming the range, not a short read.
    for (at, n) in [(size - 2, 3), (size, 1), (u64::MAX, 1)] {
        let e = read_exact_at(&mut f, at, &mut vec![0u8; n]).unwrap_err();
        let past = e.as_io().and_then(|e| e.downcast_ref::<PastEnd>());
        assert_eq!(
            past,
            Some(&PastEnd {
                offset: at,
                len: n,
                size
            }),
            "{e:?}"
        );
        assert_eq!(block_error(&e), None);
    }
    // An empty file: nothing to read, nothing past it.
    let mut f = fs.open("/empty").unwrap();
    read_exact_at(&mut f, 0, &mut []).unwrap();
    assert!(read_exact_at(&mut f, 0, &mut [0]).is_err());
}

/// The audit's PoC (M4): a hand-made superblock claiming 2^32 - 1 block groups of one
/// block each, on an 8 KiB disk. ext4-view sized its descriptor table by that count
/// (64 GiB) and the allocation failure aborted; the superblock is refused now, naming
/// the field, its value and the limit.
#[test]
fn poc_huge_group_count() {
    let mut img = vec![0u8; 8192];
    let sb = 1024;
    let put32 = |img: &mut Vec<u8>, off: usize, v: u32| {
        img[sb + off..sb + off + 4].copy_from_slice(&v.to_le_bytes())
    };
    put32(&mut img, 0x04, u32::MAX); // s_blocks_count_lo
    put32(&mut img, 0x14, 0); // s_first_data_block
    put32(&mut img, 0x18, 0); // 1 KiB blocks
    put32(&mut img, 0x20, 1); // s_blocks_per_group
    put32(&mut img, 0x28, 1); // s_inodes_per_group
    img[sb + 0x38..sb + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
    img[sb + 0x58..sb + 0x5a].copy_from_slice(&128u16.to_le_bytes());
    put32(&mut img, 0x60, 0x2); // filetype
    let disk = MemDisk::over(img, 512, true);
    let Err(e) = Ext4Disk(disk).load() else {
        panic!("loaded")
    };
    let bad = bad_superblock(&e).unwrap_or_else(|| panic!("not a refusal: {e:?}"));
    assert_eq!(bad.field, "s_blocks_count", "{bad}");
    assert_eq!(bad.value, u64::from(u32::MAX));
    assert_eq!(bad.max, 8, "an 8 KiB device holds 8 blocks of 1 KiB");
    let text = e.to_string();
    assert!(
        text.contains("s_blocks_count") && text.contains("4294967295") && text.contains('8'),
        "{text}"
    );
}

/// CRC-32C as ext4 keeps it (initial !0, no final inversion): the superblock's
/// `s_checksum` over its first 0x3fc bytes.
fn crc32c_raw(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    c
}

/// `img` with superblock bytes `at..` (offsets inside the superblock) set to `value`'s
/// low `width` bytes, little-endian, and `s_checksum` made right again (metadata_csum),
/// so what ext4-view sees is the patched field itself, not a bad checksum.
fn patched(img: &[u8], fields: &[(usize, usize, u64)]) -> Vec<u8> {
    let mut img = img.to_vec();
    let sb = 1024;
    for &(at, width, value) in fields {
        img[sb + at..sb + at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
    let ro_compat = u32::from_le_bytes(img[sb + 0x64..sb + 0x68].try_into().unwrap());
    if ro_compat & 0x400 != 0 {
        let c = crc32c_raw(&img[sb..sb + 0x3fc]);
        img[sb + 0x3fc..sb + 0x400].copy_from_slice(&c.to_le_bytes());
    }
    img
}

/// Load `img` (512-byte sectors) and expect the superblock refused for `field`.
fn refused(img: Vec<u8>, field: &str, what: &str) {
    let e = match Ext4Disk(MemDisk::over(img, 512, true)).load() {
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => e,
    };
    let bad = bad_superblock(&e).unwrap_or_else(|| panic!("{what}: not a refusal: {e}"));
    assert_eq!(bad.field, field, "{what}: {bad}");
    assert!(
        !(bad.min..=bad.max).contains(&bad.value) || bad.why.starts_with("a power of two"),
        "{what}: {bad}"
    );
    let text = e.to_string();
    assert!(
        text.contains(field) && text.contains(&bad.value.to_string()),
        "{what}: {text}"
    );
}

// Superblock offsets and widths (bytes) of the fields the check covers.
const BLOCKS_LO: (usize, usize) = (0x04, 4);
const FIRST_DATA_BLOCK: (usize, usize) = (0x14, 4);
const LOG_BLOCK_SIZE: (usize, usize) = (0x18, 4);
const BLOCKS_PER_GROUP: (usize, usize) = (0x20, 4);
const INODES_PER_GROUP: (usize, usize) = (0x28, 4);
const INODE_SIZE: (usize, usize) = (0x58, 2);
const DESC_SIZE: (usize, usize) = (0xfe, 2);
const BLOCKS_HI: (usize, usize) = (0x150, 4);

fn set(f: (usize, usize), v: u64) -> (usize, usize, u64) {
    (f.0, f.1, v)
}

#[test]
fn hostile_superblocks_are_refused_naming_the_field() {
    // mkfs.ext4's defaults here: metadata_csum and 64bit, 1 KiB and 4 KiB blocks.
    for bs in [1024u64, 4096] {
        let img = image(bs as u32);
        let blocks = (8u64 << 20) / bs;
        let what = |w: &str| format!("{bs}-byte blocks: {w}");
        // The untouched image (checksum recomputed) loads: the check passes real ones.
        check_files(&load(patched(&img, &[]), 512));
        // The disk: 0xffffffff blocks (2^32 - 1 groups of 1 at most).
        refused(
            patched(&img, &[set(BLOCKS_LO, 0xffff_ffff)]),
            "s_blocks_count",
            &what("0xffffffff blocks"),
        );
        refused(
            patched(&img, &[set(BLOCKS_HI, 0xffff)]),
            "s_blocks_count",
            &what("blocks_count_hi 0xffff"),
        );
        refused(
            patched(&img, &[set(BLOCKS_LO, blocks + 1)]),
            "s_blocks_count",
            &what("one block more than the device holds"),
        );
        refused(
            patched(&img, &[set(BLOCKS_LO, 0)]),
            "s_blocks_count",
            &what("no blocks"),
        );
        // Blocks of 2 GiB (8 cache entries of them), 128 KiB, and past 2^31.
        for log in [21, 7, 22, 0xffff_ffff] {
            refused(
                patched(&img, &[set(LOG_BLOCK_SIZE, log)]),
                "s_log_block_size",
                &what(&format!("log_block_size {log}")),
            );
        }
        refused(
            patched(&img, &[set(FIRST_DATA_BLOCK, blocks)]),
            "s_first_data_block",
            &what("first data block at the end"),
        );
        // One block per group: thousands of groups on 8 MiB; and zero; and more blocks
        // than a group's one-block bitmap can map.
        for bpg in [1, 0, 8 * bs + 8] {
            refused(
                patched(&img, &[set(BLOCKS_PER_GROUP, bpg)]),
                "s_blocks_per_group",
                &what(&format!("blocks_per_group {bpg}")),
            );
        }
        for ipg in [0, 8 * bs + 1, 0xffff_ffff] {
            refused(
                patched(&img, &[set(INODES_PER_GROUP, ipg)]),
                "s_inodes_per_group",
                &what(&format!("inodes_per_group {ipg}")),
            );
        }
        for isz in [0, 64, 200, 2 * bs, 0xffff] {
            refused(
                patched(&img, &[set(INODE_SIZE, isz)]),
                "s_inode_size",
                &what(&format!("inode_size {isz}")),
            );
        }
        for dsz in [0, 32, 96, 2048, 0xffff] {
            refused(
                patched(&img, &[set(DESC_SIZE, dsz)]),
                "s_desc_size",
                &what(&format!("desc_size {dsz}")),
            );
        }
    }
}

/// Every field the check covers, set to each of a list of awkward values (alone), on
/// both block sizes: loading, and reading every file when it loads, is an answer or an
/// error, never a panic or an abort (an abort ends this whole test binary).
#[test]
fn no_superblock_value_panics() {
    let values = [
        0u64,
        1,
        2,
        7,
        8,
        63,
        64,
        128,
        255,
        256,
        1023,
        1024,
        4096,
        8192,
        32768,
        65535,
        65536,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
    ];
    let fields = [
        BLOCKS_LO,
        FIRST_DATA_BLOCK,
        LOG_BLOCK_SIZE,
        BLOCKS_PER_GROUP,
        INODES_PER_GROUP,
        INODE_SIZE,
        DESC_SIZE,
        BLOCKS_HI,
        // Not checked by us, but read by ext4-view: the feature words (a set RECOVERY
        // bit makes it replay the journal) and the journal's inode.
        (0x5c, 4),
        (0x60, 4),
        (0x64, 4),
        (0xe0, 4),
    ];
    for bs in [1024u32, 4096] {
        let img = image(bs);
        for f in fields {
            for v in values {
                let v = v & (u64::MAX >> (64 - 8 * f.1));
                let r = std::panic::catch_unwind(|| {
                    let disk = MemDisk::over(patched(&img, &[set(f, v)]), 512, true);
                    if let Ok(fs) = Ext4Disk(disk).load() {
                        for (path, _) in files() {
                            let _ = fs.read(format!("/{path}").as_str());
                        }
                    }
                });
                assert!(
                    r.is_ok(),
                    "{bs}-byte blocks, field at {:#x} = {v}: panicked",
                    f.0
                );
            }
        }
    }
}

/// An 8 MiB image (1 KiB blocks) of a file `/d/target` and symlinks to it (one stored
/// in the inode, one longer than 59 bytes in a block of its own), then `debugfs -w`
/// commands run on it.
fn symlink_image(debugfs: &[&str]) -> Vec<u8> {
    let mkfs = mkfs();
    let scratch = Scratch::new("symlink");
    let root = scratch.0.join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/target"), b"the target\n").unwrap();
    let long = format!("/d/{}target", "./".repeat(35));
    std::os::unix::fs::symlink(&long, root.join("long")).unwrap();
    std::os::unix::fs::symlink("d/target", root.join("short")).unwrap();
    std::os::unix::fs::symlink("/long", root.join("d/via")).unwrap();
    let img = scratch.0.join("fs.img");
    let out = Command::new(&mkfs)
        .args(["-q", "-F", "-b", "1024", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("8M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let debugfs_bin = mkfs.with_file_name("debugfs");
    for cmd in debugfs {
        let out = Command::new(&debugfs_bin)
            .args(["-w", "-R", cmd])
            .arg(&img)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", debugfs_bin.display()));
        assert!(
            out.status.success(),
            "debugfs {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read(&img).unwrap()
}

/// ext4-view reads a symlink's target longer than 59 bytes into a `Vec` the size the
/// inode claims: a hostile `i_size` (about 2^42 here, as much as 2^32 blocks of 1 KiB hold) aborted the guest on `open` of any path
/// through the link. `ext4::open` follows links itself, a target longer than a path can
/// be being an error.
#[test]
fn a_symlink_claiming_a_huge_target_is_an_error() {
    // An honest image: the links resolve, in the last and in a middle component.
    let fs = load(symlink_image(&[]), 512);
    for p in ["/long", "/short", "/d/via", "/d/../long", "/d/./target"] {
        let mut f = open(&fs, p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let mut buf = [0u8; 11];
        read_exact_at(&mut f, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"the target\n", "{p}");
    }
    assert!(matches!(open(&fs, "/missing"), Err(Ext4Error::NotFound)));
    assert!(matches!(open(&fs, "/d"), Err(Ext4Error::IsADirectory)));
    assert!(matches!(
        open(&fs, "/short/x"),
        Err(Ext4Error::NotADirectory)
    ));
    assert!(open(&fs, "relative").is_err());
    // The long link's size made 0x3ff_0000_0000 + its length (i_size_high = 0x3ff).
    let img = symlink_image(&["sif /long size_hi 0x3ff"]);
    let fs = load(img, 512);
    for p in ["/long", "/d/via", "/d/../long"] {
        match open(&fs, p) {
            Ok(_) => panic!("{p}: opened"),
            Err(e) => assert!(e.to_string().contains("symlink"), "{p}: {e}"),
        }
    }
    // Paths that do not pass through it still open.
    assert!(open(&fs, "/short").is_ok());
}

/// A file through embedded-io: `read_exact` in odd pieces, every kind of seek (the next
/// read lands there), a seek before 0 refused in place, reads past the end 0 or
/// `UnexpectedEof`, and the errors' kinds.
#[test]
fn files_read_and_seek_through_embedded_io() {
    use embedded_io::{Error as _, ErrorKind, Read, ReadExactError, Seek, SeekFrom};
    use xenpv_protocol::ext4::{Ext4File, FileError};
    let fs = load(image(1024), 512);
    let want = content("big", (1 << 20) + 3);
    let size = want.len() as u64;
    let mut f = Ext4File::open(&fs, "/big").unwrap();
    assert_eq!(f.len(), size);
    let mut got = vec![0u8; want.len()];
    for piece in got.chunks_mut(1460) {
        f.read_exact(piece).unwrap();
    }
    assert!(got == want);
    assert_eq!(f.read(&mut [0; 8]).unwrap(), 0, "at the end");
    let check = |f: &mut Ext4File, to: SeekFrom, at: u64, n: usize| {
        assert_eq!(f.seek(to).unwrap(), at, "{to:?}");
        let mut out = vec![0u8; n];
        f.read_exact(&mut out).unwrap();
        assert!(
            out[..] == want[at as usize..at as usize + n],
            "{to:?}: bytes"
        );
        assert_eq!(f.stream_position().unwrap(), at + n as u64);
    };
    check(&mut f, SeekFrom::Start(0), 0, 4096);
    check(&mut f, SeekFrom::Start(1023), 1023, 2);
    check(&mut f, SeekFrom::Current(-1), 1024, 5000);
    check(&mut f, SeekFrom::Current(70_000), 76_024, 3);
    check(&mut f, SeekFrom::End(-3), size - 3, 3);
    check(&mut f, SeekFrom::End(-(size as i64)), 0, 1);
    // Two seeks, one walk: only the last one counts.
    f.seek(SeekFrom::Start(999_999)).unwrap();
    check(&mut f, SeekFrom::Start(7), 7, 1);
    // Before byte 0: refused, the position kept.
    let e = f.seek(SeekFrom::Current(-9)).unwrap_err();
    assert!(matches!(e, FileError::BadSeek { position: 8, .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(f.stream_position().unwrap(), 8);
    // Past the end: allowed, nothing there.
    assert_eq!(f.seek(SeekFrom::End(10)).unwrap(), size + 10);
    assert_eq!(f.read(&mut [0; 8]).unwrap(), 0);
    f.seek(SeekFrom::End(-2)).unwrap();
    assert!(matches!(
        f.read_exact(&mut [0; 3]),
        Err(ReadExactError::UnexpectedEof)
    ));
    // Opening: a missing file, a directory, each with its kind.
    let kind = |p: &str| Ext4File::open(&fs, p).unwrap_err().kind();
    assert_eq!(kind("/missing"), ErrorKind::NotFound);
    assert_eq!(kind("/nested"), ErrorKind::InvalidInput);
    assert_eq!(kind("nested"), ErrorKind::InvalidInput);
}

/// A device that times out under a file: the read is `FileError::Device(Timeout)`, of
/// kind `TimedOut`, and the position stays where the read began.
#[test]
fn a_timed_out_disk_is_a_timed_out_read() {
    use embedded_io::{Error as _, ErrorKind, Read};
    use xenpv_protocol::ext4::{Ext4File, FileError};
    struct Slow(MemDisk<Vec<u8>>, Rc<Cell<bool>>);
    impl BlockDevice for Slow {
        fn geometry(&self) -> Geometry {
            self.0.geometry()
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            if self.1.get() {
                return Err(BlockError::Timeout { waited_ms: 5000 });
            }
            self.0.read(sector, buf)
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
            self.0.write(sector, buf)
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            Ok(())
        }
    }
    let stalled = Rc::new(Cell::new(false));
    let disk = Slow(MemDisk::over(image(1024), 512, true), stalled.clone());
    let fs = Ext4Disk(disk).load().unwrap();
    let mut f = Ext4File::open(&fs, "/big").unwrap();
    f.read_exact(&mut [0; 10]).unwrap();
    stalled.set(true);
    // Past ext4-view's block cache: the next blocks need the device.
    let mut buf = vec![0u8; 1 << 20];
    let e = f.read_exact(&mut buf).unwrap_err();
    let embedded_io::ReadExactError::Other(e) = e else {
        panic!("{e:?}")
    };
    assert!(
        matches!(
            e,
            FileError::Device(BlockError::Timeout { waited_ms: 5000 })
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(f.position() < 1 << 20, "{}", f.position());
    stalled.set(false);
    let at = f.position() as usize;
    let want = content("big", (1 << 20) + 3);
    let mut rest = vec![0u8; want.len() - at];
    f.read_exact(&mut rest).unwrap();
    assert!(rest == want[at..], "after the disk came back");
}
