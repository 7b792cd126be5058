//! `cargo xtask bench migrate`: how long `xl save` + `xl restore` take and how long a
//! localhost live migration leaves the guest unanswered, for the network appliance
//! (`net`) and for a Linux PV domU of the same memory (Debian's kernel from the box,
//! xen-netfront, busybox httpd and the static UDP echo of `bench net`), booted in turn in
//! the box with `--migrate` (room for two copies, the shadow-paging hypervisor) and
//! measured by the same dom0 script:
//! - `xl save NAME /run/…` then `xl restore`, each timed in dom0;
//! - `xl migrate -s '' NAME 'xl migrate-receive'` (to the same box, no ssh) while
//!   `$PEER udp-poll` asks the guest's UDP echo (port 7) every 10 ms: the downtime is the
//!   longest time between two echoes (the last request served before, the first after).
//!
//! Medians of --runs, a table with the appliance / Linux ratios, and the target: the
//! appliance's downtime at most 1.0x Linux's. A side whose guest cannot be saved (a
//! runtime without suspend support) is reported as failed with xl's own words.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::boottest::box_with_peer;
use crate::cargo::{self, Image};
use crate::provision;
use crate::qemu::{self, Boot, Stream};
use crate::xenbox;

/// `cargo xtask bench migrate` options.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Save/restore cycles and migrations in one boot of each side (figures are medians).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Wall-clock limit of one side's box boot, in seconds.
    #[arg(long, value_name = "S", default_value_t = 1200, value_parser = clap::value_parser!(u64).range(120..=14400))]
    timeout: u64,
    /// Each domU's memory in MiB (both sides the same).
    #[arg(long, value_name = "MiB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(64..=2048))]
    memory: u64,
    /// The sides, comma-separated: `app` (the network appliance), `linux`.
    #[arg(long, value_name = "LIST", default_value = "app,linux")]
    sides: String,
}

/// The guest's address on the box's bridge.
const GUEST: &str = "169.254.100.2";

/// One figure of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// `xl save` to dom0's /run.
    Save,
    /// `xl restore` from it.
    Restore,
    /// `xl migrate` to the same box, start to end.
    Migrate,
    /// The longest time without an echo during the migration.
    Downtime,
}

impl Figure {
    /// Every figure, in the table's order.
    pub const ALL: [Figure; 4] = [
        Figure::Save,
        Figure::Restore,
        Figure::Migrate,
        Figure::Downtime,
    ];

    fn label(self) -> &'static str {
        match self {
            Figure::Save => "xl save, ms",
            Figure::Restore => "xl restore, ms",
            Figure::Migrate => "xl migrate (localhost), ms",
            Figure::Downtime => "migration downtime, ms",
        }
    }

    /// The key of the dom0 script's report lines.
    fn key(self) -> &'static str {
        match self {
            Figure::Save => "save_ms",
            Figure::Restore => "restore_ms",
            Figure::Migrate => "migrate_ms",
            Figure::Downtime => "downtime_ms",
        }
    }
}

/// dom0's side: wait for the guest, then `runs` times a save + restore, and a migration
/// under `udp-poll`. Report lines: `bench-migrate: saved run=I save_ms=A restore_ms=B`,
/// `bench-migrate: migrated run=I migrate_ms=T downtime_ms=D`, or
/// `bench-migrate: FAIL run=I step=S …` (then it stops: the guest may be gone).
pub fn script(runs: u32) -> String {
    format!(
        r#"# cargo xtask bench migrate: dom0's side (DOMU_NAME and PEER set by the box).
now_ms() {{ read -r up _ < /proc/uptime; s=${{up%.*}}; c=${{up#*.}}; echo $((s * 1000 + ${{c#0}} * 10)); }}
failed() {{ echo "bench-migrate: FAIL run=$i step=$1 $(tail -n 4 "$2" | tr '\n' ' ')"; exit 1; }}
"$PEER" wait-up {GUEST}:80 --timeout 300 || {{ echo "bench-migrate: FAIL run=0 step=up the guest never came up"; exit 100; }}
i=1
while [ $i -le {runs} ]; do
    t0=$(now_ms)
    xl save "$DOMU_NAME" /run/bench.img > /run/save.log 2>&1 || failed save /run/save.log
    t1=$(now_ms)
    xl restore /run/bench.img > /run/restore.log 2>&1 || failed restore /run/restore.log
    t2=$(now_ms)
    rm -f /run/bench.img
    echo "bench-migrate: saved run=$i save_ms=$((t1 - t0)) restore_ms=$((t2 - t1))"
    "$PEER" wait-up {GUEST}:80 --timeout 120 > /run/up.log 2>&1 || failed up-after-restore /run/up.log
    rm -f /run/poll.stop
    "$PEER" udp-poll {GUEST}:7 --every-ms 10 --until /run/poll.stop --timeout 900 > /run/poll.log 2>&1 &
    poll=$!
    sleep 2
    t0=$(now_ms)
    xl migrate -s '' "$DOMU_NAME" 'xl migrate-receive' > /run/migrate.log 2>&1
    rc=$?
    t1=$(now_ms)
    sleep 2
    touch /run/poll.stop
    wait $poll
    [ $rc = 0 ] || failed migrate /run/migrate.log
    grep '^peer: udp-poll' /run/poll.log
    grep -q '^peer: udp-poll PASS' /run/poll.log || failed poll /run/poll.log
    d=$(sed -n 's/^peer: udp-poll PASS.* downtime_ms=\([0-9]*\).*/\1/p' /run/poll.log)
    echo "bench-migrate: migrated run=$i migrate_ms=$((t1 - t0)) downtime_ms=$d"
    i=$((i + 1))
done
echo "bench-migrate: done runs={runs}"
"#
    )
}

/// One side's figures (each figure's values, run by run) and what went wrong.
#[derive(Debug, Default, PartialEq)]
pub struct Side {
    /// Values of each figure of [`Figure::ALL`], in that order.
    pub values: [Vec<f64>; 4],
    /// Failures, each naming the side.
    pub errors: Vec<String>,
}

/// Read a side's figures from its box console.
pub fn side(text: &str, who: &str, runs: u32) -> Side {
    let mut s = Side::default();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        let Some(rest) = line.strip_prefix("dom0| bench-migrate: ") else {
            continue;
        };
        if rest.starts_with("FAIL") {
            s.errors.push(format!("{who}: {rest}"));
            continue;
        }
        for (i, f) in Figure::ALL.iter().enumerate() {
            let v = rest
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(f.key())?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(v) = v {
                s.values[i].push(v);
            }
        }
    }
    if s.errors.is_empty() {
        for (i, f) in Figure::ALL.iter().enumerate() {
            if s.values[i].len() < runs as usize {
                s.errors.push(format!(
                    "{who}: {}: {} of {runs} runs measured",
                    f.label(),
                    s.values[i].len()
                ));
            }
        }
    }
    s
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The table: each figure's median for the appliance and Linux, and their ratio.
pub fn table(app: Option<&Side>, linux: Option<&Side>, runs: u32) -> String {
    let cell = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |x| format!("{x:.d$}"));
    let mut s = format!(
        "{:<28} {:>12} {:>12} {:>10}   (medians of {runs})\n",
        "", "xenpv-app", "Linux", "app/Linux"
    );
    for (i, f) in Figure::ALL.iter().enumerate() {
        let a = app.and_then(|s| median(&s.values[i]));
        let l = linux.and_then(|s| median(&s.values[i]));
        let r = a.zip(l).filter(|(_, l)| *l > 0.0).map(|(a, l)| a / l);
        s += &format!(
            "{:<28} {:>12} {:>12} {:>10}\n",
            f.label(),
            cell(a, 0),
            cell(l, 0),
            cell(r, 2)
        );
    }
    s
}

/// The target: the appliance's downtime at most 1.0x Linux's (`None`: not measured).
pub fn target(app: &Side, linux: &Side) -> (Option<bool>, String) {
    let i = 3;
    match (median(&app.values[i]), median(&linux.values[i])) {
        (Some(a), Some(l)) if l > 0.0 => {
            let r = a / l;
            let met = r <= 1.0;
            (
                Some(met),
                format!(
                    "target migration downtime <= 1.0x Linux: {r:.2}x ({a:.0} ms vs {l:.0} ms) {}",
                    if met { "MET" } else { "MISSED" }
                ),
            )
        }
        _ => (
            None,
            "target migration downtime <= 1.0x Linux: not measured".into(),
        ),
    }
}

/// Boot one side in the box (one vif, `--migrate`) with the dom0 script; its figures.
#[allow(clippy::too_many_arguments)]
fn measure(
    xen: &Path,
    bx: &Arc<xenbox::BoxImage>,
    who: &str,
    image: &Path,
    cmdline: &str,
    initrd: Option<PathBuf>,
    script: &Path,
    a: &MigrateArgs,
) -> Side {
    println!(
        "xtask bench migrate: {who}: booting the box (up to {} s): {cmdline}",
        a.timeout
    );
    let log = crate::root().join(format!("target/xtask/bench-migrate-{who}.log"));
    let out = qemu::boot_domu(
        xen,
        &Boot {
            domu: Some(bx.clone()),
            name: who.into(),
            image: image.to_path_buf(),
            cmdline: cmdline.into(),
            initrd,
            memory_mib: a.memory,
            timeout: Duration::from_secs(a.timeout),
            stream: Stream::Guest,
            log,
        },
        &xenbox::DomuExtras {
            vifs: 1,
            dom0_script: Some(script.to_path_buf()),
            migrate: true,
            room_mib: 0,
        },
    );
    let mut s = side(&out.text, who, a.runs);
    if let Err(f) = &out.status {
        // The boot's own failure says it all: not also each figure missing.
        s.errors.retain(|e| !e.ends_with("runs measured"));
        s.errors
            .push(format!("{who}: {f} (log: {})", out.log.display()));
    }
    println!(
        "xtask bench migrate: {who}: done in {:.0} s (log: {})",
        out.secs,
        out.log.display()
    );
    s
}

/// `cargo xtask bench migrate`.
pub fn migrate_command(a: MigrateArgs) -> Result<u8, String> {
    let (with_app, with_linux) = super::app_linux_sides(&a.sides)?;
    let dir = super::bench_dir()?;
    println!("xtask bench migrate: building the app, the box, xenbox-peer and the Linux initramfs");
    let xen = provision::ensure()?;
    let bx = Arc::new(box_with_peer()?);
    let script_path = dir.join("bench-migrate.sh");
    std::fs::write(&script_path, script(a.runs))
        .map_err(|e| format!("{}: {e}", script_path.display()))?;
    let app = if with_app {
        let path = cargo::build(&Image::app(), false)?;
        let cmdline = format!("net ip={GUEST}/24");
        Some(measure(
            &xen,
            &bx,
            "app",
            &path,
            &cmdline,
            None,
            &script_path,
            &a,
        ))
    } else {
        None
    };
    let linux = if with_linux {
        let init = dir.join("bench-migrate-linux.cpio");
        let udp_echo = super::net::build_udp_echo(&dir)?;
        let udp_echo =
            std::fs::read(&udp_echo).map_err(|e| format!("{}: {e}", udp_echo.display()))?;
        let netfront = xenbox::box_kernel_module("xen-netfront")?;
        xenbox::netserve_initramfs(&bx, &netfront, &udp_echo, &init)?;
        let k = bx.vmlinuz.clone();
        Some(measure(
            &xen,
            &bx,
            "linux",
            &k,
            "console=hvc0 quiet",
            Some(init),
            &script_path,
            &a,
        ))
    } else {
        None
    };
    println!();
    print!("{}", table(app.as_ref(), linux.as_ref(), a.runs));
    let verdict = app.as_ref().zip(linux.as_ref()).map(|(x, l)| target(x, l));
    let errors: Vec<&String> = app.iter().chain(&linux).flat_map(|s| &s.errors).collect();
    Ok(super::app_linux_verdict(verdict, &errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_failures_are_read_from_the_console() {
        let text = "\
dom0| bench-migrate: saved run=1 save_ms=2100 restore_ms=1900
dom0| peer: udp-poll PASS sent=500 downtime_ms=340
dom0| bench-migrate: migrated run=1 migrate_ms=5200 downtime_ms=340
dom0| bench-migrate: saved run=2 save_ms=2000 restore_ms=1800\r
dom0| bench-migrate: migrated run=2 migrate_ms=5000 downtime_ms=300
";
        let s = side(text, "linux", 2);
        assert!(s.errors.is_empty(), "{s:?}");
        assert_eq!(s.values[0], [2100.0, 2000.0]);
        assert_eq!(s.values[3], [340.0, 300.0]);
        let short = side(text, "linux", 3);
        assert_eq!(short.errors.len(), 4, "{short:?}");
        let failed = side(
            "dom0| bench-migrate: FAIL run=1 step=save xc: error: Bad mfn 0 for p2m frame list list\n",
            "app",
            3,
        );
        assert_eq!(
            failed.errors,
            ["app: FAIL run=1 step=save xc: error: Bad mfn 0 for p2m frame list list"]
        );
        let t = table(Some(&s), Some(&s), 2);
        assert!(t.contains("migration downtime, ms"), "{t}");
        assert!(t.contains("1.00"), "{t}");
        let (met, line) = target(&s, &s);
        assert_eq!(met, Some(true), "{line}");
        let (none, _) = target(&failed, &s);
        assert_eq!(none, None);
    }

    #[test]
    fn the_script_times_save_restore_and_polls_the_migration() {
        let s = script(2);
        assert!(s.contains("xl save \"$DOMU_NAME\" /run/bench.img"));
        assert!(s.contains("xl migrate -s '' \"$DOMU_NAME\" 'xl migrate-receive'"));
        assert!(s.contains("udp-poll 169.254.100.2:7 --every-ms 10"));
        assert!(s.contains("while [ $i -le 2 ]"));
    }
}
