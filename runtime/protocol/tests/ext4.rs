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
use xenpv_protocol::ext4::{block_error, read_exact_at, Ext4Disk, PastEnd};

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
