//! `cargo xtask bench boot`: boot-time figures, all measured in one run.
//!
//! A. The sample app as the PV dom0, for each memory size and each start-of-day mode
//!    ([`Mode`]), `--runs` times with the modes interleaved (so machine noise hits every
//!    mode alike); medians of the guest's own `timing:` figures, and three target ratios.
//! B. The app and Debian's Linux (the box's own kernel, with an initramfs whose `/init`
//!    powers off at once) as domUs of the box, each started `--domu-runs` times in one
//!    box boot (the box's bench mode): xl create → domain gone, timed in dom0, and
//!    kernel entry → main (the app) next to kernel entry → `Run /init` (Linux).
mod dom0;
mod domu;

pub use dom0::*;
pub use domu::*;

use crate::cargo::{self, Image};
use crate::{provision, qemu, xenbox};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

pub(super) fn log_path(name: &str) -> PathBuf {
    crate::root().join(format!("target/xtask/bench-boot-{name}.log"))
}

/// The domUs' memory in MiB.
pub(super) const DOMU_MIB: u64 = 256;

/// `cargo xtask bench boot`: the dom0 boots (A), the domU starts (B), then the tables,
/// the ratios and the verdict.
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
    let boots = dom0_boots(&a, &memories, &xen, &path, &mut errors);
    let matrix: Matrix = boots.iter().map(|(k, v)| (*k, Cell::of(v))).collect();
    let unconfirmed = boots.values().flatten().any(|f| !f.mode_reported);
    let domu = if a.domu_runs > 0 {
        Some(domu_boots(&a, &xen, &path, &dir, &mut errors)?)
    } else {
        None
    };

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

/// Part A: `--runs` dom0 boots of every mode at every memory size, the modes taking
/// turns; each boot's figures by (memory, mode), and an error per boot that gave none.
fn dom0_boots(
    a: &BootArgs,
    memories: &[u64],
    xen: &Path,
    path: &Path,
    errors: &mut Vec<String>,
) -> BTreeMap<(u64, Mode), Vec<Dom0Figures>> {
    let mut boots: BTreeMap<(u64, Mode), Vec<Dom0Figures>> = BTreeMap::new();
    for &mem in memories {
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
                    xen,
                    path,
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
    boots
}

/// Part B: the app, then Linux, started `--domu-runs` times each in the box; the medians
/// of each (xenpv-rt, Linux), with an error per start that gave no figures.
fn domu_boots(
    a: &BootArgs,
    xen: &Path,
    path: &Path,
    dir: &Path,
    errors: &mut Vec<String>,
) -> Result<(DomuMedians, DomuMedians), String> {
    let bx = Arc::new(xenbox::ensure()?);
    let linux_init = dir.join("bench-linux-poweroff.cpio");
    xenbox::poweroff_initramfs(&bx, &linux_init)?;
    let (rt, mut e1) = box_bench(
        xen,
        &bx,
        DomuKernel::XenpvRt,
        path,
        Mode::OnDemand.cmdline(),
        None,
        a.domu_runs,
        a.timeout,
    );
    // loglevel=7: `Run /init as init process` is KERN_INFO, which a quieter console
    // level would hide.
    let (linux, mut e2) = box_bench(
        xen,
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
    Ok((DomuMedians::of(&rt), DomuMedians::of(&linux)))
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
