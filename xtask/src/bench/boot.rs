//! `cargo xtask bench boot`: boot-time figures, all measured in one run.
//!
//! A. The sample app as the PV dom0, for each memory size and each start-of-day mode
//!    ([`Mode`]), `--runs` times with the modes interleaved (so machine noise hits every
//!    mode alike); medians of the guest's own `timing:` figures, and three target ratios.
//! B. The app and Debian's Linux (the box's own kernel, with an initramfs whose `/init`
//!    powers off at once) as domUs of the box, each started `--domu-runs` times in one
//!    box boot (the box's bench mode): xl create → domain gone, timed in dom0, and
//!    kernel entry → main (the app) next to kernel entry → `Run /init` (Linux).
use super::line_field;
use super::timing_field;
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Stream};
use crate::{provision, xenbox};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `cargo xtask bench boot` options.
#[derive(clap::Args, Debug)]
pub struct BootArgs {
    /// dom0 memory sizes in MiB (comma list); the ratios compare the largest with the
    /// smallest (256 MiB by default).
    #[arg(long, value_name = "MIB,...", value_delimiter = ',', default_value = "256,1024,2048,4096",
          value_parser = clap::value_parser!(u64).range(64..=16384))]
    memories: Vec<u64>,
    /// dom0 boots per memory size and mode (the modes take turns).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// domU starts per kernel in the box (0: skip the domU rows).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    domu_runs: u32,
    /// Wall-clock limit of one dom0 boot, and of one domU start in the box, in seconds.
    #[arg(long, value_name = "S", default_value_t = 600, value_parser = clap::value_parser!(u64).range(30..=7200))]
    timeout: u64,
}

/// How the guest builds its direct map at the start of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Mapped as it is first used.
    OnDemand,
    /// All of it up front, page tables written with plain stores.
    Eager,
    /// All of it up front through MMU hypercalls: today's method, the baseline.
    EagerMmu,
}

impl Mode {
    /// Every mode, in the order they are booted and shown.
    pub const ALL: [Mode; 3] = [Mode::OnDemand, Mode::Eager, Mode::EagerMmu];

    /// The mode's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Mode::OnDemand => "on-demand",
            Mode::Eager => "eager",
            Mode::EagerMmu => "eager-mmu",
        }
    }

    /// The guest command-line words that ask for it.
    pub fn cmdline(self) -> &'static str {
        match self {
            Mode::OnDemand => "direct_map=on-demand",
            Mode::Eager => "direct_map=eager",
            Mode::EagerMmu => "direct_map=eager pt_write=mmu",
        }
    }

    /// The `direct_map=` the guest must report.
    fn direct_map(self) -> &'static str {
        match self {
            Mode::OnDemand => "on-demand",
            Mode::Eager | Mode::EagerMmu => "eager",
        }
    }

    /// The `pt_write=` the guest must report, if the mode decides it. `eager` is only
    /// worth measuring as the stores path: the same `mmu` as the baseline would make
    /// ratio 3 compare the baseline with itself.
    fn pt_write(self) -> Option<&'static str> {
        match self {
            Mode::OnDemand => None,
            Mode::Eager => Some("stores"),
            Mode::EagerMmu => Some("mmu"),
        }
    }
}

/// One dom0 boot's figures, from its `timing:` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Dom0Figures {
    /// Guest entry to `main`, µs.
    pub entry_to_main_us: f64,
    /// The paging takeover, µs.
    pub paging_setup_us: f64,
    /// MiB mapped at the start of day (`None`: not reported).
    pub mapped_mib: Option<f64>,
    /// Whether the guest reported `direct_map=` and `pt_write=` (a runtime from before
    /// the modes does not).
    pub mode_reported: bool,
}

/// The figures of one dom0 boot's console text, checked against the mode asked for:
/// once the guest says which `direct_map=`/`pt_write=` it used, they must be `mode`'s.
pub fn dom0_figures(text: &str, mode: Mode) -> Result<Dom0Figures, String> {
    let num = |key: &str| -> Result<f64, String> {
        timing_field(text, key)
            .ok_or(format!("the guest printed no timing: {key}="))?
            .parse::<f64>()
            .map_err(|e| format!("{key}: {e}"))
    };
    let entry_to_main_us = num("entry_to_main_us")?;
    let paging_setup_us = num("paging_setup_us")?;
    let dm = timing_field(text, "direct_map");
    if let Some(dm) = dm.filter(|d| *d != mode.direct_map()) {
        return Err(format!(
            "asked for {:?} but the guest reports direct_map={dm}",
            mode.cmdline()
        ));
    }
    let pw = timing_field(text, "pt_write");
    if let (Some(want), Some(got)) = (mode.pt_write(), pw) {
        if want != got {
            return Err(format!(
                "asked for {:?} (pt_write={want}) but the guest reports pt_write={got}",
                mode.cmdline()
            ));
        }
    }
    let mapped_mib = match timing_field(text, "mapped_mib") {
        Some(v) => Some(v.parse::<f64>().map_err(|e| format!("mapped_mib: {e}"))?),
        None => None,
    };
    Ok(Dom0Figures {
        entry_to_main_us,
        paging_setup_us,
        mapped_mib,
        mode_reported: dm.is_some() && pw.is_some(),
    })
}

/// The median (the mean of the middle two for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Medians of one (memory, mode) cell, in ms and MiB; `None` where no boot gave a figure.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cell {
    /// Guest entry to `main`, ms.
    pub entry_ms: Option<f64>,
    /// The paging takeover, ms.
    pub setup_ms: Option<f64>,
    /// MiB mapped at the start of day.
    pub mapped_mib: Option<f64>,
}

impl Cell {
    /// The medians of a cell's boots.
    pub fn of(boots: &[Dom0Figures]) -> Cell {
        let col = |f: fn(&Dom0Figures) -> Option<f64>| {
            median(&boots.iter().filter_map(f).collect::<Vec<_>>())
        };
        Cell {
            entry_ms: col(|b| Some(b.entry_to_main_us / 1000.0)),
            setup_ms: col(|b| Some(b.paging_setup_us / 1000.0)),
            mapped_mib: col(|b| b.mapped_mib),
        }
    }
}

/// The dom0 medians by (memory MiB, mode).
pub type Matrix = BTreeMap<(u64, Mode), Cell>;

/// A figure or `?`.
fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.decimals$}"))
}

/// The dom0 table: a row per memory size, entry-to-main and paging setup (ms) per mode,
/// and the MiB on-demand mapped.
pub fn dom0_table(m: &Matrix, memories: &[u64]) -> String {
    let mut s = format!("{:<10}", "dom0");
    for mode in Mode::ALL {
        let w = if mode == Mode::OnDemand { 33 } else { 22 };
        s += &format!("{:>w$}", mode.name());
    }
    s += &format!("\n{:<10}", "MiB");
    for mode in Mode::ALL {
        s += &format!("{:>11}{:>11}", "entry ms", "setup ms");
        if mode == Mode::OnDemand {
            s += &format!("{:>11}", "mapped MiB");
        }
    }
    s.push('\n');
    for &mem in memories {
        s += &format!("{mem:<10}");
        for mode in Mode::ALL {
            let c = m.get(&(mem, mode)).copied().unwrap_or_default();
            s += &format!("{:>11}{:>11}", opt(c.entry_ms, 1), opt(c.setup_ms, 1));
            if mode == Mode::OnDemand {
                s += &format!("{:>11}", opt(c.mapped_mib, 0));
            }
        }
        s.push('\n');
    }
    s
}

/// A target ratio: its value (`None`: not computable from this run) and its ceiling.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    /// What is divided by what.
    pub what: String,
    /// The ratio.
    pub value: Option<f64>,
    /// The target: the ratio must be at most this.
    pub target: f64,
    /// Figures behind it worth printing too.
    pub detail: String,
}

impl Ratio {
    /// Met, missed, or `None` when there is no value.
    pub fn met(&self) -> Option<bool> {
        self.value.map(|v| v <= self.target)
    }

    /// `what: value (target <= T): met|MISSED`.
    pub fn line(&self) -> String {
        let verdict = match self.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a (no figures)",
        };
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!("; {}", self.detail)
        };
        format!(
            "{}: {} (target <= {}): {verdict}{detail}",
            self.what,
            opt(self.value, 2),
            self.target
        )
    }
}

/// `a / b` when both are there and `b` is positive.
fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The three targets, comparing the largest memory size with the smallest (256 MiB as
/// the defaults go). With a single memory size the two that need a span have no value.
pub fn ratios(m: &Matrix, memories: &[u64]) -> Vec<Ratio> {
    let (lo, hi) = match (memories.iter().min(), memories.iter().max()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => (0, 0),
    };
    let get = |mem, mode| m.get(&(mem, mode)).copied().unwrap_or_default();
    let spread = hi > lo;
    // ms of paging setup per MiB of dom0 between the two sizes: what each extra MiB costs.
    let per_mib = |mode| match (get(hi, mode).setup_ms, get(lo, mode).setup_ms) {
        (Some(h), Some(l)) if spread => Some((h - l) / (hi - lo) as f64),
        _ => None,
    };
    let (eager, mmu) = (per_mib(Mode::Eager), per_mib(Mode::EagerMmu));
    vec![
        Ratio {
            what: format!("1. on-demand entry-to-main, {hi} MiB / {lo} MiB"),
            value: div(
                get(hi, Mode::OnDemand).entry_ms,
                get(lo, Mode::OnDemand).entry_ms,
            )
            .filter(|_| spread),
            target: 1.5,
            detail: String::new(),
        },
        Ratio {
            what: format!("2. entry-to-main at {lo} MiB, on-demand / eager-mmu"),
            value: div(
                get(lo, Mode::OnDemand).entry_ms,
                get(lo, Mode::EagerMmu).entry_ms,
            ),
            target: 0.25,
            detail: String::new(),
        },
        Ratio {
            what: format!("3. paging setup per MiB ({lo}..{hi} MiB), eager / eager-mmu"),
            value: div(eager, mmu),
            target: 0.6,
            detail: format!(
                "eager {} ms/MiB, eager-mmu {} ms/MiB",
                opt(eager, 4),
                opt(mmu, 4)
            ),
        },
    ]
}

/// Linux's printk timestamp of `Run /init as init process`, in µs (kernel entry to
/// user space, as near as Linux says it).
pub fn run_init_us<'a>(console: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    console.into_iter().find_map(|l| {
        let (ts, rest) = l.trim_start().strip_prefix('[')?.split_once(']')?;
        if rest.trim() != "Run /init as init process" {
            return None;
        }
        let (s, frac) = ts.trim().split_once('.')?;
        if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let micros: u64 = format!("{frac:0<6}").parse().ok()?;
        Some(s.parse::<u64>().ok()? * 1_000_000 + micros)
    })
}

/// Which kernel a box bench starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomuKernel {
    /// The sample app on xenpv-rt.
    XenpvRt,
    /// Debian's Linux (the box's own kernel) with the power-off initramfs.
    Linux,
}

impl DomuKernel {
    fn name(self) -> &'static str {
        match self {
            DomuKernel::XenpvRt => "xenpv-rt",
            DomuKernel::Linux => "Linux",
        }
    }
}

/// One domU start's figures: (xl create → domain gone ms, kernel entry → main or
/// `Run /init` µs).
pub fn domu_figures(run: &xenbox::BenchRun, kernel: DomuKernel) -> Result<(f64, f64), String> {
    let ms = run.create_to_shutdown_ms.clone()?;
    if let Some(r) = run.reason.filter(|&r| r != 0) {
        return Err(format!(
            "the domain shut down with reason {r}, not poweroff (0)"
        ));
    }
    let us = match kernel {
        DomuKernel::XenpvRt => {
            let text = run.console.join("\n");
            line_field(&text, super::TIMING, "entry_to_main_us")
                .ok_or("its console has no timing: entry_to_main_us=")?
                .parse::<u64>()
                .map_err(|e| format!("entry_to_main_us: {e}"))?
        }
        DomuKernel::Linux => run_init_us(run.console.iter().map(String::as_str))
            .ok_or("its console has no \"[ time] Run /init as init process\" line")?,
    };
    Ok((ms as f64, us as f64))
}

/// Medians of a kernel's domU starts: (xl create → domain gone ms, entry → main/init ms).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DomuMedians {
    /// xl create → domain gone, ms.
    pub create_ms: Option<f64>,
    /// Kernel entry → main (xenpv-rt) or `Run /init` (Linux), ms.
    pub entry_ms: Option<f64>,
}

impl DomuMedians {
    /// The medians of `(ms, µs)` figures.
    pub fn of(figs: &[(f64, f64)]) -> DomuMedians {
        DomuMedians {
            create_ms: median(&figs.iter().map(|f| f.0).collect::<Vec<_>>()),
            entry_ms: median(&figs.iter().map(|f| f.1 / 1000.0).collect::<Vec<_>>()),
        }
    }
}

/// The domU table: xenpv-rt next to Linux, and their ratio.
pub fn domu_table(rt: DomuMedians, linux: DomuMedians, memory_mib: u64, runs: u32) -> String {
    let mut s = format!(
        "{:<50}{:>10}{:>10}{:>16}\n",
        format!("domU in the box ({memory_mib} MiB, {runs} starts each, medians)"),
        "xenpv-rt",
        "Linux",
        "xenpv-rt/Linux"
    );
    for (what, a, b) in [
        (
            "  xl create -> domain gone (ms)",
            rt.create_ms,
            linux.create_ms,
        ),
        (
            "  kernel entry -> main | Run /init (ms)",
            rt.entry_ms,
            linux.entry_ms,
        ),
    ] {
        s += &format!(
            "{what:<50}{:>10}{:>10}{:>16}\n",
            opt(a, 1),
            opt(b, 1),
            opt(div(a, b), 3)
        );
    }
    s
}

fn log_path(name: &str) -> PathBuf {
    crate::root().join(format!("target/xtask/bench-boot-{name}.log"))
}

/// Start `kernel` `runs` times in one box boot; its runs' figures, and a message per
/// start that gave none.
#[allow(clippy::too_many_arguments)]
fn box_bench(
    xen: &Path,
    bx: &Arc<xenbox::BoxImage>,
    kernel: DomuKernel,
    image: &Path,
    cmdline: &str,
    initrd: Option<PathBuf>,
    runs: u32,
    timeout_s: u64,
) -> (Vec<(f64, f64)>, Vec<String>) {
    let who = kernel.name();
    println!("xtask bench boot: {who} domU in the box, {runs} starts: {cmdline}");
    let out = qemu::boot_box_bench(
        xen,
        &Boot {
            domu: Some(bx.clone()),
            name: if kernel == DomuKernel::Linux {
                "linux".into()
            } else {
                "xenpv-app".into()
            },
            image: image.to_path_buf(),
            cmdline: cmdline.into(),
            initrd,
            memory_mib: DOMU_MIB,
            // The box's own start, then every start's limit.
            timeout: Duration::from_secs(300 + runs as u64 * timeout_s),
            stream: Stream::Quiet,
            log: log_path(&format!("domu-{}", who.to_lowercase())),
        },
        xenbox::BenchMode {
            runs,
            run_timeout_s: timeout_s,
        },
    );
    let got = xenbox::bench_runs(&out.text);
    let mut figs = vec![];
    let mut errors = vec![];
    for run in &got {
        match domu_figures(run, kernel) {
            Ok(f) => {
                println!(
                    "  {who} start {}: xl create -> gone {:.0} ms, entry -> {} {:.1} ms",
                    run.index,
                    f.0,
                    if kernel == DomuKernel::Linux {
                        "Run /init"
                    } else {
                        "main"
                    },
                    f.1 / 1000.0
                );
                figs.push(f);
            }
            Err(e) => errors.push(format!("{who} domU start {}: {e}", run.index)),
        }
    }
    if got.len() < runs as usize || !matches!(out.status, Ok(0) | Ok(1)) {
        let st = match &out.status {
            Ok(s) => format!("box status {s}"),
            Err(f) => f.to_string(),
        };
        errors.push(format!(
            "{who} box: {} of {runs} starts reported ({st}; log: {})",
            got.len(),
            out.log.display()
        ));
    }
    (figs, errors)
}

/// The domUs' memory in MiB.
const DOMU_MIB: u64 = 256;

/// `cargo xtask bench boot`.
pub fn boot_command(a: BootArgs) -> Result<u8, String> {
    // The logs, the box's payload disks and the Linux initramfs go here.
    let dir = crate::root().join("target/xtask");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut memories = a.memories.clone();
    memories.sort_unstable();
    memories.dedup();
    let image = Image::app();
    let path = cargo::build(&image, false)?;
    let xen = provision::ensure()?;
    let mut errors: Vec<String> = vec![];
    let mut boots: BTreeMap<(u64, Mode), Vec<Dom0Figures>> = BTreeMap::new();
    for &mem in &memories {
        println!(
            "xtask bench boot: dom0 {mem} MiB (QEMU -m {}), {} runs of each mode",
            qemu::qemu_memory(mem, 0),
            a.runs
        );
        // The modes take turns so that machine noise hits each alike.
        for run in 1..=a.runs {
            for mode in Mode::ALL {
                let what = format!("dom0 {mem} MiB {} run {run}", mode.name());
                let out = super::boot_dom0(
                    &xen,
                    &path,
                    mode.cmdline().into(),
                    None,
                    mem,
                    a.timeout,
                    log_path(&format!("dom0-{mem}-{}-{run}", mode.name())),
                );
                let got = match &out.status {
                    Ok(0) => dom0_figures(&out.text, mode),
                    Ok(st) => Err(format!("guest status {st}")),
                    Err(f) => Err(f.to_string()),
                };
                match got {
                    Ok(f) => {
                        println!(
                            "  {what}: entry-to-main {:.1} ms, paging setup {:.1} ms, mapped {} MiB ({:.1} s)",
                            f.entry_to_main_us / 1000.0,
                            f.paging_setup_us / 1000.0,
                            opt(f.mapped_mib, 0),
                            out.secs
                        );
                        boots.entry((mem, mode)).or_default().push(f);
                    }
                    Err(e) => {
                        let e = format!("{what}: {e} (log: {})", out.log.display());
                        println!("  {e}");
                        errors.push(e);
                    }
                }
            }
        }
    }
    let matrix: Matrix = boots.iter().map(|(k, v)| (*k, Cell::of(v))).collect();
    let unconfirmed = boots.values().flatten().any(|f| !f.mode_reported);

    let mut domu = None;
    if a.domu_runs > 0 {
        let bx = Arc::new(xenbox::ensure()?);
        let linux_init = dir.join("bench-linux-poweroff.cpio");
        xenbox::poweroff_initramfs(&bx, &linux_init)?;
        let (rt, mut e1) = box_bench(
            &xen,
            &bx,
            DomuKernel::XenpvRt,
            &path,
            Mode::OnDemand.cmdline(),
            None,
            a.domu_runs,
            a.timeout,
        );
        // loglevel=7: `Run /init as init process` is KERN_INFO, which a quieter console
        // level would hide.
        let (linux, mut e2) = box_bench(
            &xen,
            &bx,
            DomuKernel::Linux,
            &bx.vmlinuz,
            "console=hvc0 loglevel=7",
            Some(linux_init),
            a.domu_runs,
            a.timeout,
        );
        errors.append(&mut e1);
        errors.append(&mut e2);
        domu = Some((DomuMedians::of(&rt), DomuMedians::of(&linux)));
    }

    println!();
    println!(
        "dom0 boots: medians of {} run(s); entry = guest entry to main, setup = paging setup",
        a.runs
    );
    print!("{}", dom0_table(&matrix, &memories));
    if unconfirmed {
        println!(
            "note: the guest did not report direct_map=/mapped_mib=/pt_write= on every boot (shown as ?): those modes are not confirmed"
        );
    }
    let rs = ratios(&matrix, &memories);
    for r in &rs {
        println!("{}", r.line());
    }
    if let Some((rt, linux)) = domu {
        println!();
        print!("{}", domu_table(rt, linux, DOMU_MIB, a.domu_runs));
    }
    for e in &errors {
        println!("error: {e}");
    }
    Ok(if !errors.is_empty() {
        2
    } else if rs.iter().any(|r| r.met() == Some(false)) {
        1
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "(XEN) hello\ntiming: entry_to_main_us=649745 paging_setup_us=635954 paging_pte_updates=359530 paging_hypercalls=706 paging_per_hypercall=509 paging_pages_per_s=563562\n";

    fn new_line(dm: &str, pw: &str) -> String {
        format!("timing: entry_to_main_us=1500 paging_setup_us=900 paging_pte_updates=1 paging_hypercalls=1 paging_per_hypercall=1 paging_pages_per_s=1 direct_map={dm} mapped_mib=64 pt_write={pw}\n")
    }

    #[test]
    fn dom0_figures_without_the_new_fields_are_unconfirmed() {
        let f = dom0_figures(OLD, Mode::Eager).unwrap();
        assert_eq!(f.entry_to_main_us, 649745.0);
        assert_eq!(f.paging_setup_us, 635954.0);
        assert_eq!(f.mapped_mib, None);
        assert!(!f.mode_reported);
        assert!(dom0_figures("timing: paging_setup_us=1", Mode::Eager)
            .unwrap_err()
            .contains("entry_to_main_us"));
        assert!(dom0_figures("timing: entry_to_main_us=x paging_setup_us=1", Mode::Eager).is_err());
    }

    #[test]
    fn dom0_figures_check_the_mode_the_guest_reports() {
        let f = dom0_figures(&new_line("on-demand", "stores"), Mode::OnDemand).unwrap();
        assert_eq!(f.entry_to_main_us, 1500.0);
        assert_eq!(f.mapped_mib, Some(64.0));
        assert!(f.mode_reported);
        assert!(dom0_figures(&new_line("eager", "mmu"), Mode::EagerMmu).is_ok());
        assert!(dom0_figures(&new_line("eager", "stores"), Mode::Eager).is_ok());
        let e = dom0_figures(&new_line("eager", "stores"), Mode::OnDemand).unwrap_err();
        assert!(e.contains("direct_map=eager"), "{e}");
        let e = dom0_figures(&new_line("eager", "stores"), Mode::EagerMmu).unwrap_err();
        assert!(e.contains("pt_write=stores"), "{e}");
        assert!(dom0_figures(&new_line("eager", "mmu"), Mode::Eager).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 100.0]), Some(3.5));
    }

    fn cell(entry: f64, setup: f64) -> Cell {
        Cell {
            entry_ms: Some(entry),
            setup_ms: Some(setup),
            mapped_mib: None,
        }
    }

    fn matrix() -> Matrix {
        let mut m = Matrix::new();
        m.insert((256, Mode::OnDemand), cell(20.0, 15.0));
        m.insert((4096, Mode::OnDemand), cell(28.0, 20.0));
        m.insert((256, Mode::EagerMmu), cell(100.0, 90.0));
        m.insert((4096, Mode::EagerMmu), cell(1100.0, 1050.0));
        m.insert((256, Mode::Eager), cell(60.0, 50.0));
        m.insert((4096, Mode::Eager), cell(500.0, 434.0));
        m
    }

    #[test]
    fn ratios_and_their_targets() {
        let r = ratios(&matrix(), &[256, 4096]);
        assert_eq!(r.len(), 3);
        assert!((r[0].value.unwrap() - 1.4).abs() < 1e-9);
        assert_eq!(r[0].met(), Some(true));
        assert!((r[1].value.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(r[1].met(), Some(true));
        // (434 - 50) / 3840 = 0.1 ms/MiB against (1050 - 90) / 3840 = 0.25 ms/MiB.
        assert!((r[2].value.unwrap() - 0.4).abs() < 1e-9);
        assert!(r[2]
            .line()
            .contains("eager 0.1000 ms/MiB, eager-mmu 0.2500 ms/MiB"));
        assert!(r[2]
            .line()
            .ends_with(&"met; eager 0.1000 ms/MiB, eager-mmu 0.2500 ms/MiB"));

        let mut m = matrix();
        m.insert((4096, Mode::OnDemand), cell(31.0, 20.0));
        m.insert((256, Mode::OnDemand), cell(20.0, 15.0));
        m.insert((4096, Mode::Eager), cell(700.0, 700.0));
        let r = ratios(&m, &[4096, 256]);
        assert_eq!(r[0].met(), Some(false));
        assert!(
            r[0].line().contains("1.55 (target <= 1.5): MISSED"),
            "{}",
            r[0].line()
        );
        assert_eq!(r[2].met(), Some(false));
    }

    #[test]
    fn a_ratio_at_its_target_is_met() {
        let r = |v: f64| Ratio {
            what: "x".into(),
            value: Some(v),
            target: 0.25,
            detail: String::new(),
        };
        assert_eq!(r(0.25).met(), Some(true));
        assert_eq!(r(0.2501).met(), Some(false));
        assert_eq!(r(0.2501).line(), "x: 0.25 (target <= 0.25): MISSED");
    }

    #[test]
    fn ratios_without_figures_are_not_verdicts() {
        let r = ratios(&matrix(), &[256]);
        assert_eq!(r[0].value, None, "one size: no span");
        assert_eq!(r[2].value, None);
        assert_eq!(r[1].met(), Some(true));
        assert!(r[0].line().contains("n/a"));
        let r = ratios(&Matrix::new(), &[256, 1024]);
        assert!(r.iter().all(|r| r.met().is_none()));
    }

    #[test]
    fn the_dom0_table_has_a_row_per_memory() {
        let t = dom0_table(&matrix(), &[256, 1024, 4096]);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 5, "{t}");
        assert!(rows[0].contains("on-demand") && rows[0].contains("eager-mmu"));
        assert!(rows[2].starts_with("256") && !rows[2].contains("1100.0"));
        assert!(rows[3].starts_with("1024") && rows[3].contains('?'));
        assert!(rows[4].contains("1100.0"), "{t}");
    }

    #[test]
    fn linux_run_init_timestamp() {
        let c = [
            "[    0.000000] Linux version 6.1.0",
            "[    5.525123] Run /init as init process",
            "[    6.000000] Run /init as init process",
        ];
        assert_eq!(run_init_us(c), Some(5_525_123));
        assert_eq!(
            run_init_us(["[   12.5] Run /init as init process"]),
            Some(12_500_000)
        );
        assert_eq!(
            run_init_us(["[    5.525123] Run /sbin/init as init process"]),
            None
        );
        assert_eq!(run_init_us(["Run /init as init process"]), None);
        assert_eq!(run_init_us(["[    x.1] Run /init as init process"]), None);
    }

    #[test]
    fn domu_figures_per_start() {
        let run = |ms: Result<u64, String>, reason, console: &[&str]| xenbox::BenchRun {
            index: 1,
            create_to_shutdown_ms: ms,
            reason,
            console: console.iter().map(|s| s.to_string()).collect(),
        };
        let rt = run(
            Ok(1432),
            Some(0),
            &[
                "xenpv-app: hello",
                "timing: entry_to_main_us=2500 paging_setup_us=1",
                "timing: paging phases (us): read=1",
            ],
        );
        assert_eq!(domu_figures(&rt, DomuKernel::XenpvRt), Ok((1432.0, 2500.0)));
        assert!(domu_figures(&rt, DomuKernel::Linux).is_err());
        let linux = run(
            Ok(9000),
            None,
            &["[    5.525123] Run /init as init process"],
        );
        assert_eq!(
            domu_figures(&linux, DomuKernel::Linux),
            Ok((9000.0, 5_525_123.0))
        );
        let crashed = run(Ok(10), Some(3), &["timing: entry_to_main_us=1"]);
        assert!(domu_figures(&crashed, DomuKernel::XenpvRt)
            .unwrap_err()
            .contains("reason 3"));
        let late = run(Err("domU still running".into()), None, &[]);
        assert_eq!(
            domu_figures(&late, DomuKernel::XenpvRt),
            Err("domU still running".into())
        );
        let m = DomuMedians::of(&[(1000.0, 2000.0), (3000.0, 4000.0), (2000.0, 1000.0)]);
        assert_eq!(m.create_ms, Some(2000.0));
        assert_eq!(m.entry_ms, Some(2.0));
        let t = domu_table(
            m,
            DomuMedians {
                create_ms: Some(8000.0),
                entry_ms: Some(4.0),
            },
            256,
            3,
        );
        assert!(t.contains("0.250") && t.contains("0.500"), "{t}");
        assert!(domu_table(m, DomuMedians::default(), 256, 3).contains('?'));
    }
}
