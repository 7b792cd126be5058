//! `blkbench DEVICE [MIB] [OPS]`: the Linux side of `cargo xtask bench blk`, the same work
//! as the app's `blkbench` (app/src/blk.rs) on a Linux block device (or a file), all with
//! O_DIRECT so that no page cache stands between it and the disk:
//!
//! - a sequential write of the first MIB MiB (default 128, at most the device's whole
//!   MiB) in 1 MiB calls, of the pattern the app writes, timed up to the `fsync` after
//!   it (a cache flush, as the app's write is timed up to its flush);
//! - a sequential read of the same bytes in 1 MiB calls;
//! - OPS (default 2000) 4 KiB reads, one at a time (queue depth 1), at the app's
//!   pseudo-random 4 KiB-aligned offsets within those bytes.
//!
//! It prints the app's lines, `blkbench: NAME=VALUE ...`, ending with `blkbench: done`
//! (or `blkbench: FAIL why`, status 1). Built by xtask with `rustc -C
//! target-feature=+crt-static` (std only) into a Linux domU's initramfs; x86-64 Linux.
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::Instant;

/// `O_DIRECT` on x86-64 Linux.
const O_DIRECT: i32 = 0o40000;
const MIB: u64 = 1 << 20;

/// The app's pattern (xenpv_contract::initrd::pattern_word): splitmix64.
fn pattern_word(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 1 MiB, 4 KiB-aligned (O_DIRECT wants aligned buffers).
struct Buffer(*mut u8);

impl Buffer {
    const LAYOUT: Layout = match Layout::from_size_align(MIB as usize, 4096) {
        Ok(l) => l,
        Err(_) => panic!("a 1 MiB layout"),
    };

    fn new() -> Buffer {
        // SAFETY: the layout has a nonzero size.
        let p = unsafe { alloc_zeroed(Self::LAYOUT) };
        if p.is_null() {
            fail("no memory for a 1 MiB buffer");
        }
        Buffer(p)
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: 1 MiB allocated in new(), owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.0, MIB as usize) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout.
        unsafe { dealloc(self.0, Self::LAYOUT) }
    }
}

fn fail(why: &str) -> ! {
    println!("blkbench: FAIL {why}");
    std::process::exit(1)
}

fn arg(i: usize, default: u64, what: &str) -> u64 {
    match std::env::args().nth(i) {
        None => default,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => fail(&format!("{what} {s:?}: want a positive number")),
        },
    }
}

/// The kernel's largest request to the device, in KiB (`?` for a file).
fn request_kib(dev: &str) -> String {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    std::fs::read_to_string(format!("/sys/block/{name}/queue/max_sectors_kb"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let Some(dev) = std::env::args().nth(1) else {
        fail("usage: blkbench DEVICE [MIB] [OPS]")
    };
    let mib = arg(2, 128, "MIB");
    let ops = arg(3, 2000, "OPS");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_DIRECT)
        .open(&dev)
        .unwrap_or_else(|e| fail(&format!("open {dev} (O_DIRECT): {e}")));
    let size = f
        .seek(SeekFrom::End(0))
        .unwrap_or_else(|e| fail(&format!("{dev}: size: {e}")));
    let bytes = (mib * MIB).min(size / MIB * MIB);
    if bytes == 0 {
        fail(&format!("{dev}: {size} bytes, less than 1 MiB"));
    }
    println!(
        "blkbench: disk={} bytes={bytes} request_kib={} read_only=0",
        dev.rsplit('/').next().unwrap_or(&dev),
        request_kib(&dev)
    );
    let mut buf = Buffer::new();
    let buf = buf.bytes();
    for (i, w) in buf.chunks_mut(8).enumerate() {
        w.copy_from_slice(&pattern_word(7, i as u64).to_le_bytes());
    }
    let say = |name: &str, t0: Instant| {
        let ns = t0.elapsed().as_nanos().max(1) as f64;
        println!(
            "blkbench: {name}={:.1} bytes={bytes} ms={}",
            bytes as f64 / 1e6 / (ns / 1e9),
            (ns / 1e6) as u64
        );
    };

    let t0 = Instant::now();
    let mut at = 0;
    while at < bytes {
        if let Err(e) = f.write_all_at(buf, at) {
            fail(&format!("sequential write at {at}: {e}"));
        }
        at += MIB;
    }
    if let Err(e) = f.sync_all() {
        fail(&format!("sequential write: fsync: {e}"));
    }
    say("seq_write_mbs", t0);

    let t0 = Instant::now();
    let mut at = 0;
    while at < bytes {
        if let Err(e) = f.read_exact_at(buf, at) {
            fail(&format!("sequential read at {at}: {e}"));
        }
        at += MIB;
    }
    say("seq_read_mbs", t0);

    let pages = bytes / 4096;
    let t0 = Instant::now();
    for i in 0..ops {
        let page = pattern_word(11, i) % pages;
        if let Err(e) = f.read_exact_at(&mut buf[..4096], page * 4096) {
            fail(&format!("random read {i} at {}: {e}", page * 4096));
        }
    }
    let ns = t0.elapsed().as_nanos().max(1) as f64;
    println!(
        "blkbench: rand_read_4k_iops={:.0} ops={ops} ms={}",
        ops as f64 / (ns / 1e9),
        (ns / 1e6) as u64
    );
    println!("blkbench: done");
}
