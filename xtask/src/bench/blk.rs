//! `cargo xtask bench blk`: storage figures of the app (its `blkbench`) next to a Linux PV
//! domU, both as domUs of the box with one writable disk (`xvda`, a raw image behind a
//! virtio drive of the box's QEMU, served by dom0's `xen-blkback`), in the same run.
//!
//! - xenpv-rt: the app with `blkbench bench_mib=N bench_ops=2000` (app/src/blk.rs).
//! - Linux: Debian's kernel from the box with an initramfs
//!   ([`xenbox::blkbench_initramfs`]) whose `/init` loads `xen-blkfront`, waits for
//!   `/dev/xvda` and runs a small static program built here with `rustc`
//!   (`blkbench_linux.rs`, beside this file) that does the same work with O_DIRECT and
//!   prints the same `blkbench: NAME=VALUE` lines; then it powers off.
//!
//! Each boot gets a fresh blank 256 MiB image; the two sides take turns, run by run (so
//! machine noise hits both alike), and the figures are medians.
use super::net::median;
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Stream};
use crate::{disks, provision, xenbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xenpv_contract::report::{self, Report};

/// `cargo xtask bench blk` options.
#[derive(clap::Args, Debug)]
pub struct BlkArgs {
    /// Boots of each side (they take turns); the figures are medians.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// MiB written then read sequentially (from the start of the disk), and the span of
    /// the random reads.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=DISK_MIB))]
    mib: u64,
    /// Wall-clock limit of one boot of the box, in seconds.
    #[arg(long, value_name = "S", default_value_t = 900, value_parser = clap::value_parser!(u64).range(120..=14400))]
    timeout: u64,
    /// Linux's xen-blkfront `max_indirect_segments` (its default, 32, makes 128 KiB
    /// requests; 256 makes 1 MiB ones, as the runtime's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=256))]
    linux_max_indirect: Option<u32>,
}

/// Each domU's memory in MiB.
const DOMU_MIB: u64 = 256;
/// The size of each run's blank disk in MiB.
const DISK_MIB: u64 = 256;
/// 4 KiB random reads per run.
const OPS: u64 = 2000;

/// The program the Linux domU runs (see its own doc).
const BLKBENCH_LINUX_RS: &str = include_str!("blkbench_linux.rs");

/// One figure of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Sequential read in 1 MiB calls, MB/s.
    SeqRead,
    /// Sequential write in 1 MiB calls up to the flush after it, MB/s.
    SeqWrite,
    /// 4 KiB reads at pseudo-random offsets, one at a time: reads per second.
    RandRead,
}

impl Figure {
    /// Every figure, in the order shown.
    pub const ALL: [Figure; 3] = [Figure::SeqRead, Figure::SeqWrite, Figure::RandRead];

    /// The key of its `blkbench: KEY=VALUE ...` line.
    fn key(self) -> &'static str {
        match self {
            Figure::SeqRead => "seq_read_mbs",
            Figure::SeqWrite => "seq_write_mbs",
            Figure::RandRead => "rand_read_4k_iops",
        }
    }

    /// The row's label.
    fn label(self) -> &'static str {
        match self {
            Figure::SeqRead => "sequential read, 1 MiB (MB/s)",
            Figure::SeqWrite => "sequential write, 1 MiB (MB/s)",
            Figure::RandRead => "random read 4 KiB QD1 (IOPS)",
        }
    }

    fn decimals(self) -> usize {
        match self {
            Figure::RandRead => 0,
            _ => 1,
        }
    }

    /// The field its line must carry with the amount of work asked for: `bytes=` for a
    /// sequential figure, `ops=` for the random reads.
    fn amount_key(self) -> &'static str {
        match self {
            Figure::RandRead => "ops",
            _ => "bytes",
        }
    }
}

/// One boot's figures from its console text (either side: both print `blkbench:` lines,
/// the box shows them as `domU| blkbench: …`), in [`Figure::ALL`]'s order. The work must
/// be what was asked (`bytes` for the sequential figures, `ops` random reads) and the
/// guest must have said `blkbench: done`; a `blkbench: FAIL …` line is the error.
pub fn run_figures(text: &str, bytes: u64, ops: u64) -> Result<[f64; 3], String> {
    let reports: Vec<Report> = report::find(text, "blkbench").collect();
    let first_word = |r: &Report, w: &str| r.words.first().is_some_and(|f| f == w);
    if let Some(f) = reports.iter().find(|r| first_word(r, "FAIL")) {
        return Err(f.to_string());
    }
    let mut out = [0.0; 3];
    for (i, f) in Figure::ALL.iter().enumerate() {
        let key = f.key();
        let r = reports
            .iter()
            .find(|r| r.field(key).is_some())
            .ok_or(format!("no blkbench: {key}= line"))?;
        let v = r.field(key).unwrap_or_default();
        out[i] = v
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or(format!("{key}={v}: not a positive number"))?;
        let (ak, want) = (
            f.amount_key(),
            if *f == Figure::RandRead { ops } else { bytes },
        );
        if r.field(ak) != Some(want.to_string().as_str()) {
            return Err(format!(
                "{key}: measured {ak}={} where {want} were asked for",
                r.field(ak).unwrap_or("?")
            ));
        }
    }
    if !reports.iter().any(|r| first_word(r, "done")) {
        return Err("no blkbench: done line (the guest did not finish)".into());
    }
    Ok(out)
}

/// One side's figures: per [`Figure`] (in [`Figure::ALL`]'s order) the value of every
/// run that gave figures, and an error per run that did not.
#[derive(Debug, Default, PartialEq)]
pub struct Side {
    pub values: [Vec<f64>; 3],
    pub errors: Vec<String>,
}

impl Side {
    /// Add one run's outcome.
    pub fn add(&mut self, run: Result<[f64; 3], String>) {
        match run {
            Ok(v) => {
                for (i, x) in v.into_iter().enumerate() {
                    self.values[i].push(x);
                }
            }
            Err(e) => self.errors.push(e),
        }
    }
}

/// The medians of each side, per [`Figure`].
pub type Medians = [Option<f64>; 3];

/// The medians of a side's runs.
pub fn medians(s: &Side) -> Medians {
    std::array::from_fn(|i| median(&s.values[i]))
}

/// xenpv-rt / Linux, `None` without both (or with a zero Linux figure).
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn opt(v: Option<f64>, d: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.d$}"))
}

/// The table: one row per figure, xenpv-rt | Linux | ratio.
pub fn table(rt: &Medians, linux: &Medians, runs: u32) -> String {
    let row = |a: &str, b: &str, c: &str, d: &str| format!("{a:<38}{b:>11}{c:>10}{d:>9}\n");
    let mut s = row(
        &format!("medians of {runs} run(s)"),
        "xenpv-rt",
        "Linux",
        "ratio",
    );
    for (i, f) in Figure::ALL.iter().enumerate() {
        let d = f.decimals();
        s += &row(
            f.label(),
            &opt(rt[i], d),
            &opt(linux[i], d),
            &opt(ratio(rt[i], linux[i]), 2),
        );
    }
    s
}

/// The target, sequential read ≥ 1.0× Linux: met (`Some(true)`), missed, or `None`
/// without both figures; and its line.
pub fn target(rt: &Medians, linux: &Medians) -> (Option<bool>, String) {
    let i = Figure::ALL
        .iter()
        .position(|f| *f == Figure::SeqRead)
        .expect("a figure");
    let r = ratio(rt[i], linux[i]);
    let met = r.map(|r| r >= 1.0);
    let word = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a (no figures)",
    };
    (
        met,
        format!("sequential read >= 1.0x Linux: {word} ({}x)", opt(r, 2)),
    )
}

/// One side's part of a run: what it boots.
struct Guest<'a> {
    /// The side's name in the table and the progress lines.
    who: &'static str,
    /// The domain's name in the box (and the logs' and disk's names).
    name: &'static str,
    image: &'a Path,
    cmdline: String,
    initrd: Option<PathBuf>,
    /// The box statuses that mean the guest ended well.
    ok_status: &'a [i32],
}

/// Boot `g` in the box with a fresh blank disk as its xvda; its figures or why none.
fn measure(
    xen: &Path,
    bx: &Arc<xenbox::BoxImage>,
    g: &Guest<'_>,
    run: u32,
    a: &BlkArgs,
) -> Result<[f64; 3], String> {
    let disk = disks::blank(&format!("bench-blk-{}.img", g.name), DISK_MIB)?;
    println!(
        "xtask bench blk: run {run}/{}: {}: booting the box (fresh {DISK_MIB} MiB disk; up to {} s): {}",
        a.runs, g.who, a.timeout, g.cmdline
    );
    let log = crate::root().join(format!("target/xtask/bench-blk-{}-{run}.log", g.name));
    let out = qemu::boot_domu_with_disks(
        xen,
        &Boot {
            domu: Some(bx.clone()),
            name: g.name.into(),
            image: g.image.to_path_buf(),
            cmdline: g.cmdline.clone(),
            initrd: g.initrd.clone(),
            memory_mib: DOMU_MIB,
            timeout: Duration::from_secs(a.timeout),
            stream: Stream::Guest,
            log,
        },
        &xenbox::DomuExtras::default(),
        &[xenbox::Disk {
            path: disk,
            read_only: false,
            throttle: None,
        }],
    );
    let figs = run_figures(&out.text, a.mib << 20, OPS);
    let status = match &out.status {
        Ok(st) if g.ok_status.contains(st) => Ok(()),
        Ok(st) => Err(format!("box status {st}")),
        Err(f) => Err(f.to_string()),
    };
    let shown = match &figs {
        Ok(v) => Figure::ALL
            .iter()
            .zip(v)
            .map(|(f, x)| format!("{} {x:.d$}", f.key(), d = f.decimals()))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("no figures: {e}"),
    };
    println!(
        "xtask bench blk: run {run}/{}: {}: {shown} ({:.0} s; {:?}; log: {})",
        a.runs,
        g.who,
        out.secs,
        out.status,
        out.log.display()
    );
    let at = |e: String| format!("{} run {run}: {e} (log: {})", g.who, out.log.display());
    match (figs, status) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) | (Ok(_), Err(e)) => Err(at(e)),
    }
}

/// `cargo xtask bench blk`.
pub fn blk_command(a: BlkArgs) -> Result<u8, String> {
    let dir = crate::root().join("target/xtask");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "xtask bench blk: building the app, the box, the Linux side's blkbench and its initramfs"
    );
    let path = cargo::build(&Image::app(), false)?;
    let xen = provision::ensure()?;
    let bx = Arc::new(xenbox::ensure()?);
    let tool = super::static_linux_program(
        &dir,
        "bench-blk-linux-blkbench",
        BLKBENCH_LINUX_RS,
        "the Linux side's blkbench",
    )?;
    let tool = std::fs::read(&tool).map_err(|e| format!("{}: {e}", tool.display()))?;
    let blkfront = xenbox::box_kernel_module("xen-blkfront")?;
    let linux_init = dir.join("bench-blk-linux.cpio");
    xenbox::blkbench_initramfs(&bx, &blkfront, &tool, &linux_init)?;

    let words = format!("bench_mib={} bench_ops={OPS}", a.mib);
    let guests = [
        Guest {
            who: "xenpv-rt",
            name: "xenpv-app",
            image: &path,
            cmdline: format!("blkbench {words}"),
            initrd: None,
            ok_status: &[0],
        },
        // The Linux domU has no exit line for the box to read: its status is 125 when it
        // powered off by itself. Linux hands init the `key=value` words as environment
        // variables.
        Guest {
            who: "Linux",
            name: "linux",
            image: &bx.vmlinuz,
            cmdline: match a.linux_max_indirect {
                Some(n) => format!("console=hvc0 quiet {words} max_indirect_segments={n}"),
                None => format!("console=hvc0 quiet {words}"),
            },
            initrd: Some(linux_init),
            ok_status: &[0, qemu::EXIT_NO_STATUS as i32],
        },
    ];
    let mut sides = [Side::default(), Side::default()];
    for run in 1..=a.runs {
        for (g, side) in guests.iter().zip(sides.iter_mut()) {
            side.add(measure(&xen, &bx, g, run, &a));
        }
    }

    let (rt, linux) = (medians(&sides[0]), medians(&sides[1]));
    println!();
    println!(
        "{} MiB sequential, {OPS} random 4 KiB reads; each run on a fresh blank {DISK_MIB} MiB disk (xvda, xen-blkback in dom0)",
        a.mib
    );
    print!("{}", table(&rt, &linux, a.runs));
    println!("ratio = xenpv-rt / Linux (higher is better)");
    let (met, line) = target(&rt, &linux);
    println!("{line}");
    let errors: Vec<&String> = sides.iter().flat_map(|s| &s.errors).collect();
    for e in &errors {
        println!("error: {e}");
    }
    Ok(if !errors.is_empty() {
        2
    } else if met == Some(false) {
        1
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RT: &str = "\
xenbox: domU disk 0: /dev/vdc (xvda, w)
domU| blkbench: disk=vbd51712 bytes=134217728 request_kib=1024 read_only=0
domU| blkbench: seq_write_mbs=45.3 bytes=134217728 ms=2961\r
domU| blkbench: seq_read_mbs=78.9 bytes=134217728 ms=1700
domU| blkbench: rand_read_4k_iops=1234 ops=2000 ms=1620
domU| blkbench: done pages_kept=0
domU| xenpv-rt: exit status 0
";

    #[test]
    fn figures_are_read_from_either_side() {
        assert_eq!(run_figures(RT, 128 << 20, 2000), Ok([78.9, 45.3, 1234.0]));
        // Linux's lines: the same format, `done` without fields, no prefix.
        let linux = "\
[    1.2] blkfront: xvda: flush diskcache: enabled; persistent grants: enabled
blkbench: disk=xvda bytes=1048576 request_kib=128 read_only=0
blkbench: seq_write_mbs=100.0 bytes=1048576 ms=10
blkbench: seq_read_mbs=200.5 bytes=1048576 ms=5
blkbench: rand_read_4k_iops=3000 ops=10 ms=3
blkbench: done
";
        assert_eq!(run_figures(linux, 1 << 20, 10), Ok([200.5, 100.0, 3000.0]));
    }

    #[test]
    fn a_failed_short_or_cut_run_is_an_error() {
        let e = run_figures(
            "domU| blkbench: FAIL no disk\ndomU| xenpv-rt: exit status 9\n",
            128 << 20,
            2000,
        )
        .unwrap_err();
        assert_eq!(e, "blkbench: FAIL no disk");
        let e = run_figures(RT, 64 << 20, 2000).unwrap_err();
        assert!(e.contains("bytes=134217728 where 67108864"), "{e}");
        let e = run_figures(RT, 128 << 20, 500).unwrap_err();
        assert!(e.contains("ops=2000 where 500"), "{e}");
        let cut: String = RT.lines().take(4).map(|l| format!("{l}\n")).collect();
        let e = run_figures(&cut, 128 << 20, 2000).unwrap_err();
        assert!(e.contains("rand_read_4k_iops"), "{e}");
        let no_done = RT.replace("blkbench: done", "blkbench: closing");
        let e = run_figures(&no_done, 128 << 20, 2000).unwrap_err();
        assert!(e.contains("done"), "{e}");
        let e = run_figures(&RT.replace("=78.9", "=x"), 128 << 20, 2000).unwrap_err();
        assert!(e.contains("seq_read_mbs=x"), "{e}");
        assert!(run_figures("", 1, 1).is_err());
    }

    #[test]
    fn medians_table_and_target() {
        let mut rt = Side::default();
        rt.add(Ok([80.0, 40.0, 1000.0]));
        rt.add(Ok([100.0, 50.0, 1200.0]));
        rt.add(Ok([90.0, 60.0, 1100.0]));
        rt.add(Err("xenpv-rt run 4: boom".into()));
        assert_eq!(rt.errors.len(), 1);
        let mut linux = Side::default();
        linux.add(Ok([60.0, 100.0, 2200.0]));
        let (mrt, ml) = (medians(&rt), medians(&linux));
        assert_eq!(mrt, [Some(90.0), Some(50.0), Some(1100.0)]);
        let t = table(&mrt, &ml, 3);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[0],
            "medians of 3 run(s)                      xenpv-rt     Linux    ratio"
        );
        assert!(lines[1].starts_with("sequential read, 1 MiB (MB/s)"), "{t}");
        assert!(lines[1].ends_with("90.0      60.0     1.50"), "{t}");
        assert!(lines[2].ends_with("50.0     100.0     0.50"), "{t}");
        assert!(lines[3].starts_with("random read 4 KiB QD1 (IOPS)"), "{t}");
        assert!(lines[3].ends_with("1100      2200     0.50"), "{t}");
        assert_eq!(
            target(&mrt, &ml),
            (
                Some(true),
                "sequential read >= 1.0x Linux: met (1.50x)".into()
            )
        );
        let (met, line) = target(&ml, &mrt);
        assert_eq!(met, Some(false));
        assert_eq!(line, "sequential read >= 1.0x Linux: MISSED (0.67x)");
        let none: Medians = [None; 3];
        assert_eq!(target(&mrt, &none).0, None);
        assert!(table(&mrt, &none, 1).contains('?'));
        // A ratio of exactly 1.0 meets it.
        assert_eq!(target(&mrt, &mrt).0, Some(true));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        blk: BlkArgs,
    }

    #[test]
    fn options_have_defaults_and_limits() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let p = |a: &[&str]| Cli::try_parse_from(std::iter::once("blk").chain(a.iter().copied()));
        let d = p(&[]).unwrap().blk;
        assert_eq!((d.runs, d.mib, d.timeout), (3, 128, 900));
        let o = p(&["--runs", "1", "--mib", "256", "--timeout", "600"])
            .unwrap()
            .blk;
        assert_eq!((o.runs, o.mib, o.timeout), (1, 256, 600));
        assert!(p(&["--runs", "0"]).is_err());
        assert!(p(&["--mib", "0"]).is_err());
        let e = p(&["--mib", "257"]).err().unwrap().to_string();
        assert!(e.contains("--mib"), "{e}");
        assert!(p(&["--timeout", "10"]).is_err());
    }

    /// The Linux side's program, built as the bench builds it and run on a file here:
    /// its lines are what [`run_figures`] reads, and its random reads stay in bounds.
    #[test]
    fn the_linux_side_program_prints_what_the_parser_reads() {
        let dir = crate::root().join("target/xtask/tests/bench-blk");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = super::super::static_linux_program(
            &dir,
            "blkbench-test",
            BLKBENCH_LINUX_RS,
            "blkbench (test)",
        )
        .unwrap();
        let img = dir.join("disk.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len((4 << 20) + 4096).unwrap();
        drop(f);
        let out = std::process::Command::new(&bin)
            .arg(&img)
            .args(["8", "50"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("(O_DIRECT)") && text.contains("Invalid argument") {
            eprintln!("skipped: {} has no O_DIRECT: {text}", dir.display());
            return;
        }
        assert!(out.status.success(), "{text}");
        // 8 MiB asked, the file holds 4 whole MiB: that is what it measures.
        assert!(
            text.starts_with("blkbench: disk=disk.img bytes=4194304 request_kib=? read_only=0\n"),
            "{text}"
        );
        let v = run_figures(&text, 4 << 20, 50).unwrap();
        assert!(v.iter().all(|x| *x > 0.0), "{v:?}");
        // It wrote the app's pattern (seed 7) over the first 4 MiB, nothing past them.
        let data = std::fs::read(&img).unwrap();
        let mut want = vec![0u8; 4 << 20];
        for (i, w) in want.chunks_mut(8).enumerate() {
            let word = xenpv_contract::initrd::pattern_word(7, i as u64 % (1 << 17));
            w.copy_from_slice(&word.to_le_bytes());
        }
        assert!(data[..4 << 20] == want[..], "the pattern");
        assert!(data[4 << 20..].iter().all(|b| *b == 0));
        let bad = std::process::Command::new(&bin)
            .arg(dir.join("missing.img"))
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&bad.stdout).starts_with("blkbench: FAIL open"));
    }
}
