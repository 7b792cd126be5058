//! `cargo xtask bench`: figures, not verdicts. Boots the app twice with the same stress
//! (same seed, split, initrd): once batched as the runtime normally runs, once with one
//! MMU operation per hypercall (`mmu_batch=1 stress_batch=1`) as the baseline, and
//! prints paging-setup and stress figures side by side (`bench stress`, also plain
//! `bench`); `bench boot` measures boot times (see [`boot`]); `bench net` the network
//! appliance (over xenpv-net, or embassy-net) next to a Linux domU (see [`net`]); `bench blk` storage,
//! the same way (see [`blk`]).
mod blk;
mod boot;
mod density;
mod migrate;
mod net;

use crate::boottest::stress_memory_mib;
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Stream};
use crate::{initrd, provision};
use std::time::Duration;
use xenpv_contract::report::{self, Report};

/// The batching target of the stress (PTE updates per hypercall, on average).
pub const TARGET: f64 = 256.0;

/// The last report of `topic` whose first field is `first`: a figures report, which
/// other reports of the topic (`timing: paging phases ...`) may follow.
fn figures_report(text: &str, topic: &str, first: &str) -> Option<Report> {
    report::find(text, topic)
        .filter(|r| r.fields.first().is_some_and(|(k, _)| k == first))
        .last()
}

/// The guest's timing figures (`timing: entry_to_main_us=...`).
pub fn timing_report(text: &str) -> Option<Report> {
    figures_report(text, "timing", "entry_to_main_us")
}

/// The stress's summary (`stress: seed=... verdict=...`).
pub fn stress_report(text: &str) -> Option<Report> {
    figures_report(text, "stress", "seed")
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures {
    pub entry_to_main_us: f64,
    pub setup_updates: f64,
    pub setup_calls: f64,
    pub setup_pages_per_s: f64,
    pub stress_updates: f64,
    pub stress_calls: f64,
    pub stress_pages_per_s: f64,
    pub stress_secs: f64,
}

/// The figures of one boot's console text.
pub fn figures(text: &str) -> Result<Figures, String> {
    let stress = stress_report(text)
        .filter(|s| s.field("verdict") == Some("PASS"))
        .ok_or("the stress did not pass (see the log)")?;
    let timing =
        timing_report(text).ok_or("the guest printed no timing: entry_to_main_us= report")?;
    let num = |r: &Report, key: &str| r.parse_field::<f64>(key).map_err(|e| e.to_string());
    Ok(Figures {
        entry_to_main_us: num(&timing, "entry_to_main_us")?,
        setup_updates: num(&timing, "paging_pte_updates")?,
        setup_calls: num(&timing, "paging_hypercalls")?,
        setup_pages_per_s: num(&timing, "paging_pages_per_s")?,
        stress_updates: num(&stress, "pte_updates")?,
        stress_calls: num(&stress, "hypercalls")?,
        stress_pages_per_s: num(&stress, "pages_per_s")?,
        stress_secs: num(&stress, "secs")?,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The side-by-side table: (label, figure, decimals) per row.
pub fn table(batched: &Figures, base: &Figures, what: &str) -> String {
    type Row = (&'static str, fn(&Figures) -> f64, usize);
    const ROWS: &[Row] = &[
        ("paging setup: PTE updates", |f| f.setup_updates, 0),
        ("  hypercalls", |f| f.setup_calls, 0),
        (
            "  PTE updates per hypercall",
            |f| ratio(f.setup_updates, f.setup_calls),
            1,
        ),
        ("  pages mapped per second", |f| f.setup_pages_per_s, 0),
        (
            "guest entry to main (ms)",
            |f| f.entry_to_main_us / 1000.0,
            1,
        ),
        ("stress: PTE updates", |f| f.stress_updates, 0),
        ("  hypercalls", |f| f.stress_calls, 0),
        (
            "  PTE updates per hypercall",
            |f| ratio(f.stress_updates, f.stress_calls),
            1,
        ),
        ("  pages mapped per second", |f| f.stress_pages_per_s, 0),
        ("  stress time (s)", |f| f.stress_secs, 1),
    ];
    let mut s = format!("{:<34}{:>16}{:>20}\n", what, "batched", "1 op/hypercall");
    for (name, get, d) in ROWS {
        let (a, b) = (get(batched), get(base));
        s += &format!("  {name:<32}{a:>16.d$}{b:>20.d$}\n", d = *d);
    }
    s
}

/// `cargo xtask bench`: a subcommand, or (none given) the stress bench with these options.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    cmd: Option<BenchCmd>,
    /// The stress bench's options, when no subcommand is given (as `bench stress`).
    #[command(flatten)]
    stress: StressArgs,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCmd {
    /// Boot the vmap stress twice (batched, and one MMU op per hypercall) and print
    /// paging-setup and stress figures side by side; exit 1 if the stress averages fewer
    /// than 256 PTE updates per hypercall. What plain `cargo xtask bench` runs.
    Stress(StressArgs),
    /// Boot times: the app as the PV dom0 over a matrix of memory sizes and start-of-day
    /// modes (on-demand, eager, eager-mmu), then the app and Debian's Linux as domUs of the
    /// box, started several times each; exit 1 if a target ratio is missed, 2 if a boot
    /// gave no figures.
    Boot(boot::BootArgs),
    /// Network figures: the app's network appliance (`net`, over xenpv-net), optionally
    /// the same services over embassy-net (`enet`), and a Linux PV domU (Debian's kernel from the box,
    /// xen-netfront, busybox httpd and nc, a static UDP echo), booted in turn in the box
    /// (--sides chooses them), one vif each, measured from dom0 by the same xenbox-peer
    /// script: TCP dom0 -> guest (discard, 32 MiB), TCP guest -> dom0 (HTTP GET of 32
    /// MiB), UDP echo packets/s at 64 and 1472 bytes (5 s each), UDP echo round trip
    /// (200 x 56 B); medians of --runs, a table with each appliance's ratio to Linux, the
    /// targets (TCP both ways and UDP packets/s >= 1.0x Linux), dom0's CPU shares, the
    /// guest's own CPU per MB moved (Xen's CPU time of its domain) next to Linux's, and
    /// with embassy-net its figures over xenpv-net's. Exit 1 if a target is missed, 2 if
    /// a measurement failed.
    Net(net::NetArgs),
    /// Storage figures: the app's `blkbench` and a Linux PV domU (Debian's kernel from
    /// the box, xen-blkfront, a small static program doing the same work with O_DIRECT)
    /// in the box, each on a fresh blank 256 MiB disk (xvda, through dom0's xen-blkback),
    /// the two taking turns run by run: sequential write then read of --mib MiB in 1 MiB
    /// calls (the write timed up to its flush), then 2000 random 4 KiB reads one at a
    /// time (queue depth 1) at the same pseudo-random offsets on both sides; medians of
    /// --runs, a table with xenpv-rt / Linux ratios, and the target (sequential read >=
    /// 1.0x Linux). Exit 1 if the target is missed, 2 if a run failed or gave no
    /// figures.
    Blk(blk::BlkArgs),
    /// Save/restore and live migration: `xl save` + `xl restore` times and the downtime
    /// of a localhost `xl migrate` (the longest gap between UDP echoes, dom0 asking every
    /// 10 ms) for the network appliance and a Linux PV domU of the same memory, each
    /// booted in the box with the shadow-paging hypervisor; medians of --runs, the ratios,
    /// and the target (downtime <= 1.0x Linux). Exit 1 if the target is missed, 2 if a
    /// side failed (a guest that cannot suspend fails at its first `xl save`).
    Migrate(migrate::MigrateArgs),
    /// Density: the network appliance and a Linux PV domU (Debian's kernel from the box,
    /// xen-netfront, busybox httpd), each side in a box of its own whose Xen gets
    /// --box-mib MiB for domUs: the smallest memory that serves, found the same way for
    /// both (bisection between --app-mib/--linux-mib LO,HI; each probe an xl create, an
    /// HTTP GET of /bytes/N checked byte for byte, xl destroy), then --count domUs at that
    /// memory started one after another until the count or Xen's memory runs out, each
    /// checked on arrival and all again once all are up; a table of per-domU memory,
    /// create-to-serving median and p90, the total, domUs per GiB, the app/Linux ratios,
    /// and the target (domUs per GiB >= 4.0x Linux). Exit 1 if the target is missed, 2
    /// if a side failed (a domU that never served, a search that could not start).
    Density(density::DensityArgs),
}

/// `cargo xtask bench stress` options.
#[derive(clap::Args, Debug)]
pub struct StressArgs {
    /// Where module space starts.
    #[arg(long, default_value = "1G", value_parser = ["512M", "1G"])]
    split: String,
    /// The stress's seed (the run is a function of it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Areas that must go through a whole map/fill/verify/unmap cycle.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    cycles: u64,
    /// A checked initrd of N MiB (0: none).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=initrd::MAX_MIB))]
    initrd_mib: u64,
}

/// `cargo xtask bench [stress|boot|net|blk|migrate|density]`.
pub fn bench_command(a: BenchArgs) -> Result<u8, String> {
    match a.cmd {
        None => stress_command(a.stress),
        Some(BenchCmd::Stress(s)) => stress_command(s),
        Some(BenchCmd::Boot(b)) => boot::boot_command(b),
        Some(BenchCmd::Net(n)) => net::net_command(n),
        Some(BenchCmd::Blk(b)) => blk::blk_command(b),
        Some(BenchCmd::Migrate(m)) => migrate::migrate_command(m),
        Some(BenchCmd::Density(d)) => density::density_command(d),
    }
}

/// `--sides` of the benches that boot the appliance and Linux in turn: a comma-separated
/// list of `app` and `linux`; (app, linux).
pub(crate) fn app_linux_sides(list: &str) -> Result<(bool, bool), String> {
    let sides: Vec<&str> = list.split(',').map(str::trim).collect();
    if let Some(bad) = sides.iter().find(|s| !["app", "linux"].contains(s)) {
        return Err(format!("--sides: {bad:?} is not app or linux"));
    }
    Ok((sides.contains(&"app"), sides.contains(&"linux")))
}

/// The end of a bench with an appliance side and a Linux side: print the target line
/// (`None`: a side was not measured) and each error as `FAIL …`; the exit status: 2 if
/// there is an error, 1 if the target was missed, else 0.
pub(crate) fn app_linux_verdict(target: Option<(Option<bool>, String)>, errors: &[&String]) -> u8 {
    let mut missed = false;
    if let Some((met, line)) = target {
        missed = met == Some(false);
        println!("{line}");
    }
    for e in errors {
        println!("FAIL {e}");
    }
    if !errors.is_empty() {
        2
    } else if missed {
        1
    } else {
        0
    }
}

/// `target/xtask`, made if needed: the benches' logs, scripts and initramfs images.
pub(crate) fn bench_dir() -> Result<std::path::PathBuf, String> {
    let dir = crate::root().join("target/xtask");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Boot the app `image` as the PV dom0, quietly: the benches' one kind of boot.
pub(crate) fn boot_dom0(
    xen: &std::path::Path,
    image: &std::path::Path,
    cmdline: String,
    initrd: Option<std::path::PathBuf>,
    memory_mib: u64,
    timeout_s: u64,
    log: std::path::PathBuf,
) -> qemu::Outcome {
    qemu::boot(
        xen,
        &Boot {
            domu: None,
            name: "xenpv-app".into(),
            image: image.to_path_buf(),
            cmdline,
            initrd,
            memory_mib,
            timeout: Duration::from_secs(timeout_s),
            stream: Stream::Quiet,
            log,
        },
    )
}

/// Build `source` (one Rust file, std only) with the host's `rustc` as the static x86-64
/// Linux program `name` in `dir` (`-C target-feature=+crt-static`: a Linux domU's
/// busybox initramfs has no libc; it needs the host's `libc.a`); its path. `what` names
/// the program in errors.
pub(crate) fn static_linux_program(
    dir: &std::path::Path,
    name: &str,
    source: &str,
    what: &str,
) -> Result<std::path::PathBuf, String> {
    let src = dir.join(format!("{name}.rs"));
    let bin = dir.join(name);
    std::fs::write(&src, source).map_err(|e| format!("{}: {e}", src.display()))?;
    let out = std::process::Command::new("rustc")
        .args([
            "--edition",
            "2021",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-C",
            "opt-level=3",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("rustc ({what}): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustc {} ({what}, static): {}\n{}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bin)
}

/// `cargo xtask bench stress`.
fn stress_command(a: StressArgs) -> Result<u8, String> {
    let (split, seed, cycles, initrd_mib) = (a.split.as_str(), a.seed, a.cycles, a.initrd_mib);
    let image = Image::app();
    let path = cargo::build(&image, false)?;
    let xen = provision::ensure()?;
    let initrd = if initrd_mib > 0 {
        Some(initrd::checked(initrd_mib, seed)?.0)
    } else {
        None
    };
    let base = format!("split={split} stress seed={seed} cycles={cycles}");
    let mut got = vec![];
    for (name, extra) in [("batched", ""), ("baseline", " mmu_batch=1 stress_batch=1")] {
        let cmdline = format!("{base}{extra}");
        println!("xtask bench: booting ({name}): {cmdline}");
        let out = boot_dom0(
            &xen,
            &path,
            cmdline,
            initrd.clone(),
            stress_memory_mib(initrd_mib, split),
            900,
            crate::root().join(format!("target/xtask/bench-{name}.log")),
        );
        if out.status != Ok(0) {
            return Err(format!(
                "{name} boot: {:?} (log: {})",
                out.status,
                out.log.display()
            ));
        }
        got.push(figures(&out.text).map_err(|e| format!("{name} boot: {e}"))?);
    }
    let what = format!("split {split}, seed {seed}, initrd {initrd_mib} MiB");
    print!("{}", table(&got[0], &got[1], &what));
    // The heap, booted once: allocations per second, with and without the byte checks.
    let out = boot_dom0(
        &xen,
        &path,
        format!("heap seed={seed}"),
        None,
        1024,
        600,
        crate::root().join("target/xtask/bench-heap.log"),
    );
    let heap = report::find(&out.text, "heap").find(|r| r.field("verdict") == Some("PASS"));
    match (&out.status, heap) {
        (Ok(0), Some(r)) => {
            let f = |k: &str| r.field(k).unwrap_or("?").to_string();
            println!(
                "heap (talc, growing from free frames): {} allocate+free pairs/s (64 B); {} allocations/s in the stress (8 B..1 MiB, every byte written and checked); {} MiB claimed",
                f("alloc_free_per_s"),
                f("allocs_per_s"),
                f("claimed_mib")
            );
        }
        (st, _) => println!("heap: no figures ({st:?}; log: {})", out.log.display()),
    }
    let per = ratio(got[0].stress_updates, got[0].stress_calls);
    let met = per >= TARGET;
    println!(
        "batching target (>= {TARGET:.0} PTE updates per hypercall in the stress): {} ({per:.1})",
        if met { "met" } else { "MISSED" }
    );
    Ok(if met { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
timing: entry_to_main_us=649745 paging_setup_us=635954 paging_pte_updates=359530 paging_hypercalls=706 paging_per_hypercall=509 paging_pages_per_s=563562
stress: seed=7 cycles=660 pages_mapped=501310 peak_pages=247397 exhausted_va=1 exhausted_frames=0 l1_made=857 non_none_ptes=0 hypercalls=2810 pte_updates=1006048 per_hypercall=358.0 pages_per_s=194692 secs=8.8 verdict=PASS
";

    #[test]
    fn figures_are_read_from_the_guest_lines() {
        let f = figures(TEXT).unwrap();
        assert_eq!(f.setup_calls, 706.0);
        assert_eq!(f.stress_updates, 1006048.0);
        assert_eq!(f.stress_secs, 8.8);
        let t = table(&f, &f, "x");
        assert!(t.contains("PTE updates per hypercall"), "{t}");
        assert!(t.contains("358.0"), "{t}");
    }

    #[test]
    fn a_failed_or_silent_stress_gives_no_figures() {
        assert!(figures(&TEXT.replace("verdict=PASS", "verdict=FAIL")).is_err());
        assert!(figures("timing: entry_to_main_us=1").is_err());
        let shadowed = format!("{TEXT}timing: paging phases (us): read=1 plan=2\n");
        let t = timing_report(&shadowed).unwrap();
        assert_eq!(t.field("paging_hypercalls"), Some("706"));
        assert!(timing_report("timing: paging phases read=1\n").is_none());
        assert!(stress_report(&TEXT.replace("stress: seed=7", "stress: sed=7")).is_none());
        let no_timing: String = TEXT.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert!(figures(&no_timing)
            .unwrap_err()
            .contains("entry_to_main_us"));
    }

    #[test]
    fn app_linux_sides_and_verdict() {
        assert_eq!(app_linux_sides("app, linux"), Ok((true, true)));
        assert_eq!(app_linux_sides("linux"), Ok((false, true)));
        let e = app_linux_sides("app,bsd").unwrap_err();
        assert_eq!(e, "--sides: \"bsd\" is not app or linux");
        let line = |met| Some((met, String::from("target")));
        let err = String::from("app: FAIL x");
        assert_eq!(app_linux_verdict(line(Some(true)), &[]), 0);
        assert_eq!(app_linux_verdict(line(Some(false)), &[]), 1);
        assert_eq!(app_linux_verdict(line(None), &[]), 0);
        assert_eq!(app_linux_verdict(None, &[]), 0);
        assert_eq!(app_linux_verdict(line(Some(false)), &[&err]), 2);
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn bench_takes_stress_or_boot() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let plain = parse(&["--seed", "7"]).unwrap();
        assert!(plain.cmd.is_none());
        assert_eq!(plain.stress.seed, 7);
        match parse(&["stress", "--cycles", "9"]).unwrap().cmd {
            Some(BenchCmd::Stress(s)) => assert_eq!(s.cycles, 9),
            other => panic!("{other:?}"),
        }
        let b = format!(
            "{:?}",
            parse(&[
                "boot",
                "--memories",
                "256,1024",
                "--runs",
                "1",
                "--domu-runs",
                "2"
            ])
            .unwrap()
        );
        assert!(
            b.contains("memories: [256, 1024]") && b.contains("domu_runs: 2"),
            "{b}"
        );
        let b = format!("{:?}", parse(&["boot"]).unwrap());
        assert!(
            b.contains("memories: [256, 1024, 2048, 4096]") && b.contains("runs: 3"),
            "{b}"
        );
        assert!(parse(&["boot", "--memories", "256,x"]).is_err());
        assert!(parse(&["boot", "--runs", "0"]).is_err());
        assert!(
            parse(&["boot", "--seed", "1"]).is_err(),
            "stress options are not boot's"
        );
        let b = format!(
            "{:?}",
            parse(&["blk", "--runs", "1", "--mib", "64"]).unwrap()
        );
        assert!(b.contains("Blk(") && b.contains("mib: 64"), "{b}");
        assert!(parse(&["blk", "--seed", "1"]).is_err());
    }
}
