//! Part B of the boot bench: the app and Linux as domUs of the box, each started several
//! times in one box boot; their figures and table.
use super::dom0::{div, median, opt};
use super::{log_path, DOMU_MIB};
use crate::bench::timing_report;
use crate::qemu::{self, Boot, Stream};
use crate::xenbox;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
            timing_report(&text)
                .ok_or("its console has no timing: entry_to_main_us=")?
                .parse_field::<u64>("entry_to_main_us")
                .map_err(|e| e.to_string())?
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

/// Start `kernel` `runs` times in one box boot; its runs' figures, and a message per
/// start that gave none.
#[allow(clippy::too_many_arguments)]
pub(super) fn box_bench(
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
