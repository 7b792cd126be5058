//! The storage check (`blk`): every disk the toolstack gave the domain brought up with
//! blkfront, the disk pattern written over the first writable one and read back, the
//! refusals (past the end, a buffer that is not whole sectors, a write to a read-only
//! disk) seen as errors with the device still usable after, a flush, and then the
//! pattern dom0 writes over the same disk checked.
//!
//! The pattern: byte `o` of a disk with seed `s` is byte `o % 8` (little-endian) of
//! `initrd::pattern_word(s, o / 8)`; `xenbox-peer disk-fill`/`disk-verify` are dom0's
//! side of it. Words: `blk` (this check), `blk_seed=N` (default 1), `blk_dom0_seed=N`
//! (default 2: the seed dom0 writes over the writable disk once it has checked ours,
//! announcing the bytes written in xenstore at `data/xenpv-app/blk-dom0-ready`), and
//! `blk_ro_seed=N` (the read-only disks hold the pattern of seed N).

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use xenpv_contract::report;
use xenpv_contract::report::Writer;
use xenpv_contract::status::AppStatus;
use xenpv_rt::blk::blkfront::Blkfront;
use xenpv_rt::blk::{BlockDevice, BlockError};
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::initrd::pattern_word;
use xenpv_rt::time::now_ns;
use xenpv_rt::{println, Boot};

/// Fill `out` with the pattern of `seed` from byte `at` on (`at` a multiple of 8).
fn fill(seed: u64, at: u64, out: &mut [u8]) {
    for (i, w) in out.chunks_mut(8).enumerate() {
        let v = pattern_word(seed, at / 8 + i as u64).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

/// Bytes of `got` (from byte `at` of the disk) that differ from the pattern, and the
/// first such offset.
fn mismatches(seed: u64, at: u64, got: &[u8], first: &mut Option<u64>) -> u64 {
    let mut bad = 0;
    for (i, w) in got.chunks(8).enumerate() {
        let v = pattern_word(seed, at / 8 + i as u64).to_le_bytes();
        for (j, (&g, &e)) in w.iter().zip(&v).enumerate() {
            if g != e {
                bad += 1;
                first.get_or_insert(at + (i * 8 + j) as u64);
            }
        }
    }
    bad
}

/// The request sizes the pattern is written in, in turn: whole MiBs, one sector, the
/// 11-segment limit of a request without indirect pages and just past it, a sector past
/// a page, and more than one request's worth.
const SIZES: [usize; 7] = [
    1 << 20,
    512,
    11 * 4096,
    12 * 4096,
    11 * 4096 + 512,
    (1 << 20) + 4096,
    3 << 20,
];

struct Disk {
    dev: Box<Blkfront>,
    name: heapless::String<8>,
}

/// `xvda` for 51712, `xvdb` for 51728… (Linux's numbering of `virtual-device`).
fn vdev_name(id: u32) -> heapless::String<8> {
    let mut s = heapless::String::new();
    let _ = if id >> 8 == 202 {
        core::fmt::write(
            &mut s,
            format_args!("xvd{}", (b'a' + ((id & 0xff) >> 4) as u8) as char),
        )
    } else {
        core::fmt::write(&mut s, format_args!("vbd{id}"))
    };
    s
}

pub fn run(boot: &mut Boot) -> i32 {
    let cmd = boot.cmdline();
    let seed = cmd.u64("blk_seed").ok().flatten().unwrap_or(1);
    let dom0_seed = cmd.u64("blk_dom0_seed").ok().flatten().unwrap_or(2);
    let ro_seed = cmd.u64("blk_ro_seed").ok().flatten();
    let mut gt = match grant_table(boot, "blk") {
        Ok(g) => g,
        Err(status) => return status,
    };
    let (mem, xs) = boot.memory_and_xenstore();
    let Some(xs) = xs else {
        return AppStatus::Usage.into();
    };
    let ids = match Blkfront::list(xs) {
        Ok(l) => l,
        Err(e) => {
            println!("blk: listing device/vbd: {e}");
            return AppStatus::Device.into();
        }
    };
    println!("blk: disks={}", ids.len());
    let mut disks: Vec<Disk> = Vec::new();
    for &id in &ids {
        let t0 = now_ns();
        match Blkfront::connect(mem, &mut gt, xs, id) {
            Ok(d) => {
                let g = d.geometry();
                let o = d.offer();
                let name = vdev_name(id);
                println!(
                    "{}",
                    Writer::new("blk")
                        .word(&name)
                        .word("connected")
                        .field("vbd", &id)
                        .field("ms", &((now_ns() - t0) / 1_000_000))
                        .field("sectors", &g.sectors)
                        .field("sector_size", &g.sector_size)
                        .field("bytes", &g.bytes())
                        .field("ro", &(g.read_only as u8))
                        .field("removable", &(g.removable as u8))
                        .field(
                            "flush",
                            match o.flush {
                                Some(3) => "flush-cache",
                                Some(_) => "barrier",
                                None => "none",
                            },
                        )
                        .field("max_indirect", &o.max_indirect)
                        .field("request_kib", &(d.request_bytes() / 1024))
                        // A peer's string: escaped.
                        .field("backend", &xenpv_rt::escape::Escaped(&d.backend().path))
                        .field("backend_domain", &d.backend().domid)
                );
                disks.push(Disk {
                    dev: Box::new(d),
                    name,
                });
            }
            Err(e) => {
                println!("blk: vbd {id}: {e}");
                return AppStatus::Device.into();
            }
        }
    }
    let mut ok = true;
    let mut check = |what: &str, good: bool| {
        if !good {
            println!("blk: FAIL {what}");
            ok = false;
        }
    };
    let Some(w) = disks.iter().position(|d| !d.dev.geometry().read_only) else {
        println!("blk: FAIL no writable disk");
        return AppStatus::Failed.into();
    };
    {
        let d = &mut disks[w];
        let g = d.dev.geometry();
        let ss = g.sector_size as usize;
        // Refusals first: nothing reaches the backend, and the disk works after.
        let r = d.dev.read(g.sectors, &mut vec![0u8; ss]);
        println!("blk: {}: read past the end: {}", d.name, Shown(&r));
        check(
            "read past the end",
            matches!(r, Err(BlockError::OutOfRange { .. })),
        );
        let r = d.dev.write(g.sectors - 1, &vec![0u8; 2 * ss]);
        println!("blk: {}: write across the end: {}", d.name, Shown(&r));
        check(
            "write across the end",
            matches!(r, Err(BlockError::OutOfRange { .. })),
        );
        let r = d.dev.write(0, &[0u8; 100]);
        println!("blk: {}: a 100-byte buffer: {}", d.name, Shown(&r));
        check(
            "unaligned buffer",
            matches!(r, Err(BlockError::Unaligned { .. })),
        );
        // The pattern over the whole disk: the first and the last sector on their own,
        // the rest in the sizes of SIZES in turn.
        let bytes = g.bytes();
        let t0 = now_ns();
        let mut buf = vec![0u8; SIZES.iter().copied().max().unwrap_or(1 << 20)];
        let mut at = 0u64;
        let mut requests = 0;
        let mut err = None;
        let mut k = 0;
        while at < bytes && err.is_none() {
            let n = if at == 0 || at + ss as u64 == bytes {
                ss
            } else {
                // Whole sectors (a 4096-byte-sector disk rounds the odd sizes down).
                let n = (SIZES[k % SIZES.len()] as u64).max(ss as u64) / ss as u64 * ss as u64;
                k += 1;
                // Leave the last sector for a request of its own.
                n.min(bytes - ss as u64 - at) as usize
            };
            fill(seed, at, &mut buf[..n]);
            if let Err(e) = d.dev.write(at / ss as u64, &buf[..n]) {
                err = Some((at, e));
            }
            at += n as u64;
            requests += 1;
        }
        let write_ms = (now_ns() - t0) / 1_000_000;
        match err {
            None => println!(
                "{}",
                Writer::new("blk")
                    .word(&disk_word(&d.name))
                    .word("wrote")
                    .word("pattern")
                    .field("seed", &seed)
                    .field("bytes", &bytes)
                    .field("calls", &requests)
                    .field("ms", &write_ms)
                    .field("mb_per_s", &mbs(bytes, write_ms))
            ),
            Some((at, e)) => {
                println!("blk: {}: write at byte {at}: {e}", d.name);
                check("pattern write", false);
            }
        }
        let r = d.dev.flush();
        println!("blk: {}: flush: {}", d.name, Shown(&r));
        check("flush", r.is_ok());
        // Read it all back in 1 MiB calls and check every byte.
        let t0 = now_ns();
        let (bad, first, at) = verify(&mut d.dev, seed, bytes);
        let read_ms = (now_ns() - t0) / 1_000_000;
        println!(
            "{}",
            Writer::new("blk")
                .word(&disk_word(&d.name))
                .word("verify")
                .field("seed", &seed)
                .field("bytes", &at)
                .field("mismatched", &bad)
                .field("first_mismatch", &first.map_or(-1, |f| f as i64))
                .field("ms", &read_ms)
                .field("mb_per_s", &mbs(at, read_ms))
        );
        check("pattern verify", bad == 0 && at == bytes);
        let r = d.dev.read(0, &mut buf[..ss]);
        check("first sector after the refusals", r.is_ok());
    }
    // The read-only disks: a write is refused, a read still works, and (with
    // `blk_ro_seed=N`) they hold the pattern of seed N, made on the host.
    for d in disks.iter_mut().filter(|d| d.dev.geometry().read_only) {
        let ss = d.dev.geometry().sector_size as usize;
        let r = d.dev.write(0, &vec![0u8; ss]);
        println!("blk: {}: write to a read-only disk: {}", d.name, Shown(&r));
        check("read-only write", matches!(r, Err(BlockError::ReadOnly)));
        let r = d.dev.read(0, &mut vec![0u8; ss]);
        println!("blk: {}: read after it: {}", d.name, Shown(&r));
        check("read after a refused write", r.is_ok());
        if let Some(seed) = ro_seed {
            let bytes = d.dev.geometry().bytes();
            let (bad, first, at) = verify(&mut d.dev, seed, bytes);
            println!(
                "{}",
                Writer::new("blk")
                    .word(&disk_word(&d.name))
                    .word("pattern")
                    .field("seed", &seed)
                    .field("bytes", &at)
                    .field("mismatched", &bad)
                    .field("first_mismatch", &first.map_or(-1, |f| f as i64))
            );
            check("read-only disk's pattern", bad == 0 && at == bytes);
        }
    }
    let _ = xs.write("data/xenpv-app/blk-written", b"1");
    println!("blk: pattern written and flushed: data/xenpv-app/blk-written = 1");
    // dom0 checks our pattern, writes its own (seed blk_dom0_seed) over the writable
    // disk and says how many bytes in data/xenpv-app/blk-dom0-ready.
    {
        let d = &mut disks[w];
        let key = "data/xenpv-app/blk-dom0-ready";
        let deadline = now_ns() + 600_000_000_000;
        let _ = xs.watch(key, "blk-dom0-ready");
        let mut ready = None;
        while now_ns() < deadline {
            if let Ok(v) = xs.read(key) {
                let v = v.strip_suffix(b"\0").unwrap_or(&v);
                ready = core::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
                if ready.is_some() {
                    break;
                }
            }
            // Woken by the watch (or a second later, to look again).
            let _ = xs.next_event((now_ns() + 1_000_000_000).min(deadline));
        }
        match ready {
            None => {
                println!(
                    "blk: {}: dom0 never wrote {key} (600 s): its pattern is not checked",
                    d.name
                );
                check("dom0 pattern", false);
            }
            Some(n) => {
                let g = d.dev.geometry();
                let n = n.min(g.bytes()) / u64::from(g.sector_size) * u64::from(g.sector_size);
                let (bad, first, at) = verify(&mut d.dev, dom0_seed, n);
                println!(
                    "{}",
                    Writer::new("blk")
                        .word(&disk_word(&d.name))
                        .word("dom0's")
                        .word("pattern")
                        .field("seed", &dom0_seed)
                        .field("bytes", &at)
                        .field("mismatched", &bad)
                        .field("first_mismatch", &first.map_or(-1, |f| f as i64))
                );
                check("dom0 pattern verify", bad == 0 && at == n);
            }
        }
    }
    for d in &disks {
        let c = d.dev.counters();
        let t = d.dev.traffic();
        println!(
            "{}",
            Writer::new("blk")
                .word(&disk_word(&d.name))
                .field("requests", &t.requests)
                .field("indirect", &t.indirect)
                .field("read_bytes", &t.read_bytes)
                .field("written_bytes", &t.written_bytes)
                .field("flushes", &t.flushes)
                .field("notifies", &t.notifies)
                .field("bad_id", &c.bad_id)
                .field("not_in_flight", &c.not_in_flight)
                .field("bad_operation", &c.bad_operation)
                .field("failed", &c.failed)
                .field("late", &c.late)
                .field("retired", &c.retired)
                .field("timed_out", &c.timed_out)
        );
    }
    for d in disks {
        let name = d.name.clone();
        let c = d.dev.close(mem, &mut gt, xs);
        println!(
            "{}",
            Writer::new("blk")
                .word(&disk_word(&name))
                .word("closed")
                .field("pages_kept", &c.pages_kept)
                .field("unacknowledged", &(c.unacknowledged as u8))
                .field("grants_deferred", &gt.deferred())
        );
    }
    // For dom0's script, which waits for the verdict before it ends.
    let _ = xs.write(
        "data/xenpv-app/blk-done",
        if ok { b"pass" } else { b"fail" },
    );
    if ok {
        println!("{}", Writer::new("blk").word("PASS"));
        0
    } else {
        println!("{}", Writer::new("blk").word("FAIL"));
        AppStatus::Failed.into()
    }
}

/// The grant table, for a domU (dom0 has no backends here); the exit status if not.
fn grant_table(boot: &mut Boot, who: &str) -> Result<GrantTable, i32> {
    if boot.xenstore().is_none() {
        println!("{who}: FAIL no xenstore (dom0 has no backends here): run it as a domU");
        return Err(AppStatus::Usage.into());
    }
    GrantTable::setup(boot.memory(), 8).map_err(|e| {
        println!("{who}: FAIL grant table: {e:?}");
        AppStatus::Device.into()
    })
}

/// Read the first `bytes` of a disk in 1 MiB calls and compare them with the pattern of
/// `seed`: bytes that differ, the first of them, and bytes read (short on an error).
fn verify(dev: &mut Blkfront, seed: u64, bytes: u64) -> (u64, Option<u64>, u64) {
    let ss = u64::from(dev.geometry().sector_size);
    let mut buf = vec![0u8; 1 << 20];
    let (mut bad, mut first, mut at) = (0u64, None, 0u64);
    while at < bytes {
        let n = (bytes - at).min(1 << 20) as usize;
        if let Err(e) = dev.read(at / ss, &mut buf[..n]) {
            println!("blk: read at byte {at}: {e}");
            break;
        }
        bad += mismatches(seed, at, &buf[..n], &mut first);
        at += n as u64;
    }
    (bad, first, at)
}

/// The storage bench (`blkbench`, for `cargo xtask bench blk`): on the first writable
/// disk, sequential writes then reads of `bench_mib` MiB (default 128) in 1 MiB calls,
/// then `bench_ops` (default 2000) 4 KiB reads at pseudo-random 4 KiB-aligned offsets,
/// one at a time (queue depth 1, as a plain `pread` loop in Linux does). One line per
/// figure, `blkbench: NAME=VALUE`, timed with Xen system time.
pub fn bench(boot: &mut Boot) -> i32 {
    let cmd = boot.cmdline();
    let mib = cmd.u64("bench_mib").ok().flatten().unwrap_or(128).max(1);
    let ops = cmd.u64("bench_ops").ok().flatten().unwrap_or(2000).max(1);
    let mut gt = match grant_table(boot, "blkbench") {
        Ok(g) => g,
        Err(status) => return status,
    };
    let (mem, xs) = boot.memory_and_xenstore();
    let Some(xs) = xs else {
        return AppStatus::Usage.into();
    };
    let Some(&id) = Blkfront::list(xs).ok().as_ref().and_then(|l| l.first()) else {
        println!("blkbench: FAIL no disk");
        return AppStatus::Device.into();
    };
    let mut d = match Blkfront::connect(mem, &mut gt, xs, id) {
        Ok(d) => Box::new(d),
        Err(e) => {
            println!("blkbench: FAIL vbd {id}: {e}");
            return AppStatus::Device.into();
        }
    };
    let g = d.geometry();
    let ss = u64::from(g.sector_size);
    let bytes = (mib << 20).min(g.bytes() / (1 << 20) * (1 << 20));
    // The lines `cargo xtask bench blk` reads back are reports.
    println!(
        "{}",
        report!(
            "blkbench",
            disk = format_args!("vbd{id}"),
            bytes,
            request_kib = d.request_bytes() / 1024,
            read_only = g.read_only as u8,
        )
    );
    let mut buf = vec![0u8; 1 << 20];
    fill(7, 0, &mut buf);
    let timed = |d: &mut Blkfront, write: bool, buf: &mut [u8]| -> Result<u64, BlockError> {
        let t0 = now_ns();
        let mut at = 0;
        while at < bytes {
            if write {
                d.write(at / ss, buf)?;
            } else {
                d.read(at / ss, buf)?;
            }
            at += buf.len() as u64;
        }
        Ok(now_ns() - t0)
    };
    if !g.read_only {
        match timed(&mut d, true, &mut buf).and_then(|ns| d.flush().map(|_| ns)) {
            Ok(ns) => println!(
                "{}",
                report!(
                    "blkbench",
                    seq_write_mbs = format_args!("{:.1}", bytes as f64 / 1e6 / (ns as f64 / 1e9)),
                    bytes,
                    ms = ns / 1_000_000,
                )
            ),
            Err(e) => {
                println!("blkbench: FAIL sequential write: {e}");
                return AppStatus::Failed.into();
            }
        }
    }
    match timed(&mut d, false, &mut buf) {
        Ok(ns) => println!(
            "{}",
            report!(
                "blkbench",
                seq_read_mbs = format_args!("{:.1}", bytes as f64 / 1e6 / (ns as f64 / 1e9)),
                bytes,
                ms = ns / 1_000_000,
            )
        ),
        Err(e) => {
            println!("blkbench: FAIL sequential read: {e}");
            return AppStatus::Failed.into();
        }
    }
    let pages = bytes / 4096;
    let t0 = now_ns();
    for i in 0..ops {
        let page = pattern_word(11, i) % pages;
        if let Err(e) = d.read(page * 4096 / ss, &mut buf[..4096]) {
            println!("blkbench: FAIL random read {i}: {e}");
            return AppStatus::Failed.into();
        }
    }
    let ns = (now_ns() - t0).max(1);
    println!(
        "{}",
        report!(
            "blkbench",
            rand_read_4k_iops = format_args!("{:.0}", ops as f64 / (ns as f64 / 1e9)),
            ops,
            ms = ns / 1_000_000,
        )
    );
    let c = d.close(mem, &mut gt, xs);
    let deferred = gt.deferred();
    println!(
        "{}",
        Writer::new("blkbench")
            .word("done")
            .field("pages_kept", &c.pages_kept)
            .field("grants_deferred", &deferred)
    );
    0
}

fn mbs(bytes: u64, ms: u64) -> u64 {
    bytes / 1000 / ms.max(1)
}

/// A result, shown as `ok` or its error.
struct Shown<'a>(&'a Result<(), BlockError>);
impl core::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(()) => write!(f, "ok"),
            Err(e) => write!(f, "refused: {e}"),
        }
    }
}

/// `xvda:`: how a report names a disk it is about (a word).
fn disk_word(name: &str) -> heapless::String<16> {
    let mut w = heapless::String::new();
    let _ = core::fmt::write(&mut w, format_args!("{name}:"));
    w
}
