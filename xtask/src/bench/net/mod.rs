//! `cargo xtask bench net`: the network appliance next to a Linux PV domU, every side a
//! domU of the box with one vif on dom0's bridge, measured by the same dom0 script in
//! the same run, one side after the other (`--sides`; `xenpv-net,linux` by default):
//!
//! - xenpv-net: the app's appliance, over the async runtime and xenpv-net,
//!   `net ip=169.254.100.2/24`.
//! - embassy-net (only when named): the same services over embassy-net on netfront,
//!   `enet ip=169.254.100.2/24`, the kept alternative to xenpv-net.
//! - Linux: Debian's kernel from the box with an initramfs
//!   ([`xenbox::netserve_initramfs`]) whose `/init` loads `xen-netfront`, takes the same
//!   address and serves the same services: busybox `httpd` (a 32 MiB file at
//!   `/bytes/33554432`), busybox `nc -ll -e` running `dd` to `/dev/null` as TCP discard,
//!   and a small static UDP echo program built here with `rustc` (busybox has no UDP
//!   server: no inetd, and its `nc` has no `-u`).
//!
//! The dom0 script ([`script`]) runs every measurement `--runs` times in one boot of each
//! side with `xenbox-peer`; the figures are medians. The table ([`table`]) shows each
//! xenpv-rt side's ratio to Linux and, with both, embassy-net's figures over xenpv-net's.
mod table;

pub use table::median;

use crate::boottest::box_with_peer;
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Stream};
use crate::{provision, xenbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use table::Column;
use xenpv_contract::report::Report;

/// `cargo xtask bench net` options.
#[derive(clap::Args, Debug)]
pub struct NetArgs {
    /// Times each measurement is repeated in one boot of each side (figures are medians).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Wall-clock limit of one side's box boot (all its measurements), in seconds.
    #[arg(long, value_name = "S", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(120..=14400))]
    timeout: u64,
    /// The sides measured, comma-separated, each booted in turn in this order:
    /// `xenpv-net` (the app's `net`), `embassy-net` (the app's `enet`: discard, /bytes
    /// and UDP echo over embassy-net), `linux` (a Linux domU). At least one xenpv-rt
    /// side; the ratios to Linux need linux.
    #[arg(long, value_name = "LIST", default_value = "xenpv-net,linux", value_parser = parse_sides)]
    sides: Sides,
}

/// Which sides a run measures (always in the order xenpv-net, embassy-net, Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    pub xenpv_net: bool,
    pub embassy: bool,
    pub linux: bool,
}

/// `--sides`: a comma-separated list of `xenpv-net`, `embassy-net`, `linux` (repeats
/// allowed), with at least one xenpv-rt side.
fn parse_sides(s: &str) -> Result<Sides, String> {
    let mut out = Sides {
        xenpv_net: false,
        embassy: false,
        linux: false,
    };
    for w in s.split(',').map(str::trim) {
        match w {
            "xenpv-net" => out.xenpv_net = true,
            "embassy-net" => out.embassy = true,
            "linux" => out.linux = true,
            _ => {
                return Err(format!(
                    "{w:?} is not a side (xenpv-net, embassy-net or linux)"
                ))
            }
        }
    }
    if !out.xenpv_net && !out.embassy {
        return Err("no xenpv-rt side: name xenpv-net or embassy-net".into());
    }
    Ok(out)
}

/// One xenpv-rt side: its name (in the table, the log's name), the app's command line.
struct RtSide {
    name: &'static str,
    cmdline: String,
}

impl Sides {
    /// The xenpv-rt sides chosen, in order.
    fn rt(self) -> Vec<RtSide> {
        let mut v = Vec::new();
        if self.xenpv_net {
            v.push(RtSide {
                name: "xenpv-net",
                cmdline: format!("net ip={GUEST}/24"),
            });
        }
        if self.embassy {
            v.push(RtSide {
                name: "embassy-net",
                cmdline: format!("enet ip={GUEST}/24"),
            });
        }
        v
    }
}

/// The guest's address on the box's bridge (dom0 is 169.254.100.1).
const GUEST: &str = "169.254.100.2";
/// Bytes per TCP transfer.
const TCP_BYTES: u64 = 32 << 20;
/// Each domU's memory in MiB.
const DOMU_MIB: u64 = 256;
/// Seconds of each UDP rate measurement.
const UDP_SECONDS: u32 = 5;
/// Datagrams of the round-trip measurement (56 bytes each, one outstanding at a time).
const RTT_COUNT: u32 = 200;

/// One figure of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// dom0 sends to the guest's TCP discard service (`tcp-send` to port 9).
    TcpIn,
    /// The guest sends to dom0: an HTTP GET of `/bytes/33554432` (port 80).
    TcpOut,
    /// UDP echo (port 7), 64-byte datagrams, 32 outstanding: echoes per second.
    Udp64,
    /// The same with 1472-byte datagrams (a full 1500-byte frame).
    Udp1472,
    /// UDP echo round trip, 56-byte datagrams one at a time: the mean, in microseconds.
    Rtt,
}

impl Figure {
    /// Every figure, in the order measured and shown.
    pub const ALL: [Figure; 5] = [
        Figure::TcpIn,
        Figure::TcpOut,
        Figure::Udp64,
        Figure::Udp1472,
        Figure::Rtt,
    ];

    /// The tag of the script's `bench-net: measure TAG RUN` lines.
    fn tag(self) -> &'static str {
        match self {
            Figure::TcpIn => "tcp-in",
            Figure::TcpOut => "tcp-out",
            Figure::Udp64 => "udp-64",
            Figure::Udp1472 => "udp-1472",
            Figure::Rtt => "rtt",
        }
    }

    /// The row's label.
    fn label(self) -> &'static str {
        match self {
            Figure::TcpIn => "TCP dom0 -> guest (Mbit/s)",
            Figure::TcpOut => "TCP guest -> dom0 (Mbit/s)",
            Figure::Udp64 => "UDP echo 64 B (packets/s)",
            Figure::Udp1472 => "UDP echo 1472 B (packets/s)",
            Figure::Rtt => "RTT, UDP echo 56 B (us; lower is better)",
        }
    }

    /// The xenbox-peer command measuring it (after `"$PEER"`).
    fn command(self) -> String {
        match self {
            Figure::TcpIn => format!("tcp-send {GUEST}:9 --bytes {TCP_BYTES} --timeout 300"),
            Figure::TcpOut => {
                format!("http-get {GUEST}:80 /bytes/{TCP_BYTES} --timeout 300")
            }
            Figure::Udp64 | Figure::Udp1472 => format!(
                "udp-rate {GUEST}:7 --size {} --seconds {UDP_SECONDS} --timeout 60",
                if self == Figure::Udp64 { 64 } else { 1472 }
            ),
            Figure::Rtt => {
                format!("udp-echo {GUEST}:7 --count {RTT_COUNT} --min 56 --max 56 --timeout 120")
            }
        }
    }

    /// The verdict's subcommand and the key holding the figure.
    fn verdict(self) -> (&'static str, &'static str) {
        match self {
            Figure::TcpIn => ("tcp-send", "mbit_s"),
            Figure::TcpOut => ("http-get", "mbit_s"),
            Figure::Udp64 | Figure::Udp1472 => ("udp-rate", "pps"),
            Figure::Rtt => ("udp-echo", "rtt_avg_us"),
        }
    }

    fn decimals(self) -> usize {
        match self {
            Figure::TcpIn | Figure::TcpOut => 1,
            _ => 0,
        }
    }
}

/// The dom0 script, the same for both sides: wait for the guest's HTTP port (served
/// last by both), then `runs` rounds of every [`Figure`], each announced by a
/// `bench-net: measure TAG RUN` line before its verdict and bracketed by dom0's CPU
/// times (`bench-net: cpu …`, the first line of `/proc/stat`). Its status is the number
/// of measurements that failed.
pub fn script(runs: u32) -> String {
    let mut s = format!(
        "# cargo xtask bench net: dom0's side (DOMID and PEER set by the box).\n\
         fails=0\n\
         \"$PEER\" wait-up {GUEST}:80 --timeout 300 || {{ echo \"bench-net: the guest never came up\"; exit 100; }}\n\
         i=1\n\
         while [ $i -le {runs} ]; do\n"
    );
    for f in Figure::ALL {
        s += &format!(
            "    echo \"bench-net: measure {} $i\"\n    echo \"bench-net: $(head -1 /proc/stat)\"\n    \"$PEER\" {} || fails=$((fails + 1))\n    echo \"bench-net: $(head -1 /proc/stat)\"\n",
            f.tag(),
            f.command()
        );
    }
    s += "    i=$((i + 1))\ndone\nexit $fails\n";
    s
}

/// One side's figures: per [`Figure`] (in [`Figure::ALL`]'s order) the value of every
/// run that passed and dom0's CPU during it, and an error per run that failed or gave
/// none.
#[derive(Debug, Default, PartialEq)]
pub struct Side {
    pub values: [Vec<f64>; 5],
    pub cpu: [Vec<Cpu>; 5],
    pub errors: Vec<String>,
}

/// Where dom0's time went during one measurement, as shares of it (the box has one CPU,
/// so the two domains take turns): dom0 working (user, system, interrupts), dom0
/// runnable but waiting while the domU ran (Xen's steal time), and dom0 idle (blocked:
/// the domU running or nothing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cpu {
    pub busy: f64,
    pub steal: f64,
    pub idle: f64,
}

/// The `cpu` line of `/proc/stat` in ticks: user nice system idle iowait irq softirq
/// steal.
fn cpu_ticks(line: &str) -> Option<[u64; 8]> {
    let mut w = line.split_whitespace();
    (w.next()? == "cpu").then_some(())?;
    let v: Vec<u64> = w.take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    v.try_into().ok()
}

/// dom0's shares between two `cpu` lines; `None` if they do not parse or no time passed.
fn cpu_between(before: &str, after: &str) -> Option<Cpu> {
    let (a, b) = (cpu_ticks(before)?, cpu_ticks(after)?);
    let d: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| y.saturating_sub(*x) as f64)
        .collect();
    let total: f64 = d.iter().sum();
    (total > 0.0).then(|| Cpu {
        busy: (d[0] + d[1] + d[2] + d[5] + d[6]) / total,
        steal: d[7] / total,
        idle: (d[3] + d[4]) / total,
    })
}

/// Read one side's figures from the box's console text: every
/// `dom0| bench-net: measure TAG RUN` line and the verdict line after it; `who` names the
/// side in errors, `runs` is how many runs of each figure there should be.
pub fn side(text: &str, who: &str, runs: u32) -> Side {
    let mut out = Side::default();
    // The figure being measured, its run, and whether its verdict came; the CPU line
    // before it.
    let mut current: Option<(usize, String, bool)> = None;
    let (mut cpu_before, mut passed): (Option<String>, bool) = (None, false);
    let close = |cur: &mut Option<(usize, String, bool)>, out: &mut Side| {
        if let Some((i, run, false)) = cur.take() {
            out.errors.push(format!(
                "{who}: {} run {run}: no verdict",
                Figure::ALL[i].label()
            ));
        }
    };
    for line in text.lines() {
        let Some(l) = line.trim_end_matches('\r').strip_prefix("dom0| ") else {
            continue;
        };
        if let Some(rest) = l.strip_prefix("bench-net: measure ") {
            close(&mut current, &mut out);
            let (tag, run) = rest.split_once(' ').unwrap_or((rest, "?"));
            current = Figure::ALL
                .iter()
                .position(|f| f.tag() == tag)
                .map(|i| (i, run.trim().to_string(), false));
            (cpu_before, passed) = (None, false);
        } else if let Some(cpu) = l.strip_prefix("bench-net: cpu ") {
            match (cpu_before.take(), current.as_ref()) {
                (Some(b), Some((i, _, true))) if passed => {
                    if let Some(c) = cpu_between(&b, &format!("cpu {cpu}")) {
                        out.cpu[*i].push(c);
                    }
                }
                (None, Some((_, _, false))) => cpu_before = Some(format!("cpu {cpu}")),
                _ => {}
            }
        } else if let Some((i, run, seen)) = current.as_mut() {
            let f = Figure::ALL[*i];
            let (cmd, key) = f.verdict();
            // The peer's verdict: `peer: CMD PASS k=v ...` or `peer: CMD FAIL why k=v ...`.
            let v = match l.parse::<Report>() {
                Ok(v) if v.topic == "peer" && v.words.first().is_some_and(|w| w == cmd) => v,
                _ => continue,
            };
            let outcome = v.words.get(1).map(String::as_str);
            if outcome == Some("PASS") {
                match v.parse_field::<f64>(key) {
                    Ok(x) => {
                        out.values[*i].push(x);
                        passed = true;
                    }
                    Err(_) => out
                        .errors
                        .push(format!("{who}: {} run {run}: no {key} in {l:?}", f.label())),
                }
                *seen = true;
            } else if outcome == Some("FAIL") {
                out.errors
                    .push(format!("{who}: {} run {run}: {l}", f.label()));
                *seen = true;
            }
        }
    }
    close(&mut current, &mut out);
    for (i, f) in Figure::ALL.iter().enumerate() {
        let got = out.values[i].len();
        if got < runs as usize && !out.errors.iter().any(|e| e.contains(f.label())) {
            out.errors.push(format!(
                "{who}: {}: {got} of {runs} runs measured",
                f.label()
            ));
        }
    }
    out
}

/// A UDP echo server for the Linux domU (`udp-echo PORT`): busybox has none.
const UDP_ECHO_RS: &str = r#"use std::net::UdpSocket;
fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "7".into());
    let s = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-echo: bind udp/{port}: {e}");
            std::process::exit(1);
        }
    };
    let mut b = vec![0u8; 65536];
    loop {
        if let Ok((n, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(&b[..n], from);
        }
    }
}
"#;

/// Build [`UDP_ECHO_RS`] as a static x86-64 Linux program in `dir`; its path.
pub(super) fn build_udp_echo(dir: &Path) -> Result<PathBuf, String> {
    super::static_linux_program(
        dir,
        "bench-net-udp-echo",
        UDP_ECHO_RS,
        "the Linux side's UDP echo",
    )
}

/// Boot one side in the box with one vif and the dom0 script; its figures, and an error
/// if the boot itself ended badly (`ok_status`: the statuses accepted).
#[allow(clippy::too_many_arguments)]
fn measure(
    xen: &Path,
    bx: &Arc<xenbox::BoxImage>,
    who: &str,
    name: &str,
    image: &Path,
    cmdline: &str,
    initrd: Option<PathBuf>,
    script: &Path,
    a: &NetArgs,
    ok_status: &[i32],
) -> Side {
    println!(
        "xtask bench net: {who}: booting the box ({} runs of each measurement; up to {} s): {cmdline}",
        a.runs, a.timeout
    );
    let log = crate::root().join(format!("target/xtask/bench-net-{}.log", who.to_lowercase()));
    let out = qemu::boot_domu(
        xen,
        &Boot {
            domu: Some(bx.clone()),
            name: name.into(),
            image: image.to_path_buf(),
            cmdline: cmdline.into(),
            initrd,
            memory_mib: DOMU_MIB,
            timeout: Duration::from_secs(a.timeout),
            stream: Stream::Guest,
            log,
        },
        &xenbox::DomuExtras {
            vifs: 1,
            dom0_script: Some(script.to_path_buf()),
            migrate: false,
            room_mib: 0,
        },
    );
    let mut s = side(&out.text, who, a.runs);
    match &out.status {
        Ok(st) if ok_status.contains(st) => {}
        Ok(st) => s.errors.push(format!(
            "{who}: box status {st} (log: {})",
            out.log.display()
        )),
        Err(f) => s
            .errors
            .push(format!("{who}: {f} (log: {})", out.log.display())),
    }
    println!(
        "xtask bench net: {who}: done in {:.0} s ({:?}; log: {})",
        out.secs,
        out.status,
        out.log.display()
    );
    for (i, f) in Figure::ALL.iter().enumerate() {
        let v: Vec<String> = s.values[i]
            .iter()
            .map(|x| format!("{x:.d$}", d = f.decimals()))
            .collect();
        println!("  {who}: {}: {}", f.label(), v.join(", "));
    }
    s
}

/// `cargo xtask bench net`.
pub fn net_command(a: NetArgs) -> Result<u8, String> {
    let dir = crate::root().join("target/xtask");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("xtask bench net: building the app, the box, xenbox-peer and the Linux initramfs");
    let path = cargo::build(&Image::app(), false)?;
    let xen = provision::ensure()?;
    let bx = Arc::new(box_with_peer()?);
    let script_path = dir.join("bench-net.sh");
    std::fs::write(&script_path, script(a.runs))
        .map_err(|e| format!("{}: {e}", script_path.display()))?;
    let linux_init = if a.sides.linux {
        let udp_echo = build_udp_echo(&dir)?;
        let udp_echo =
            std::fs::read(&udp_echo).map_err(|e| format!("{}: {e}", udp_echo.display()))?;
        let netfront = xenbox::box_kernel_module("xen-netfront")?;
        let init = dir.join("bench-net-linux.cpio");
        xenbox::netserve_initramfs(&bx, &netfront, &udp_echo, &init)?;
        Some(init)
    } else {
        None
    };

    let rt: Vec<(&'static str, Side)> = a
        .sides
        .rt()
        .into_iter()
        .map(|r| {
            let s = measure(
                &xen,
                &bx,
                r.name,
                "xenpv-app",
                &path,
                &r.cmdline,
                None,
                &script_path,
                &a,
                &[0],
            );
            (r.name, s)
        })
        .collect();
    // The Linux domU has no exit line for the box to read: its status is 125 even when
    // it powered off cleanly at `xl shutdown`.
    let linux = linux_init.map(|init| {
        measure(
            &xen,
            &bx,
            "Linux",
            "linux",
            &bx.vmlinuz,
            "console=hvc0 quiet",
            Some(init),
            &script_path,
            &a,
            &[0, qemu::EXIT_NO_STATUS as i32],
        )
    });
    Ok(report(&rt, linux.as_ref(), a.runs))
}

/// Print the tables and verdicts of the sides measured; the exit status: 2 if a
/// measurement failed, 1 if a target was missed, else 0.
fn report(rt: &[(&'static str, Side)], linux: Option<&Side>, runs: u32) -> u8 {
    let cols: Vec<Column<'_>> = rt
        .iter()
        .map(|(name, s)| Column {
            name,
            medians: table::medians(s),
        })
        .collect();
    let mlinux = linux.map(table::medians);
    println!();
    print!("{}", table::table(&cols, mlinux.as_ref(), runs));
    if linux.is_some() {
        println!(
            "NAME/L = that side / Linux (for the RTT, lower is better: a ratio below 1 is faster)"
        );
    }
    println!();
    let mut cpu: Vec<(&str, _)> = rt
        .iter()
        .map(|(n, s)| (*n, table::cpu_medians(s)))
        .collect();
    if let Some(l) = linux {
        cpu.push(("Linux", table::cpu_medians(l)));
    }
    print!("{}", table::cpu_table(&cpu));
    println!(
        "(the box has one CPU: dom0's steal is time the domU ran while dom0 waited; its idle, \
         time the domU ran or nothing did)"
    );
    println!();
    let mut missed = false;
    if let Some(l) = &mlinux {
        for c in &cols {
            for t in &table::TARGETS {
                let (met, line) = t.verdict(&c.medians, l);
                missed |= met == Some(false);
                println!("{}: {line}", c.name);
            }
        }
    }
    let find = |n: &str| cols.iter().find(|c| c.name == n).map(|c| c.medians);
    if let (Some(x), Some(e)) = (find("xenpv-net"), find("embassy-net")) {
        println!("{}", table::compare("embassy-net", &e, "xenpv-net", &x));
        println!("(each figure of embassy-net over xenpv-net's, measured in this run; for the RTT, xenpv-net's over embassy-net's: higher is better everywhere)");
    }
    let errors: Vec<&String> = rt
        .iter()
        .map(|(_, s)| s)
        .chain(linux)
        .flat_map(|s| &s.errors)
        .collect();
    for e in &errors {
        println!("error: {e}");
    }
    if !errors.is_empty() {
        2
    } else if missed {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_text(tag: &str, run: u32, verdict: &str) -> String {
        format!(
            "dom0| bench-net: measure {tag} {run}\n\
             dom0| bench-net: cpu  100 0 200 50 0 0 10 40 0 0\n\
             dom0| peer: x: progress\ndom0| {verdict}\n\
             dom0| bench-net: cpu  130 0 250 70 0 0 20 {} 0 0\n",
            40 + 10 * run
        )
    }

    fn all_runs(runs: u32) -> String {
        let mut t = String::from("domU| net: serving\n");
        for r in 1..=runs {
            t += &run_text(
                "tcp-in",
                r,
                "peer: tcp-send PASS bytes=33554432 elapsed_ms=1000 mbit_s=268.4 send_ms=900",
            );
            t += &run_text(
                "tcp-out",
                r,
                &format!(
                    "peer: http-get PASS status=200 bytes=33554432 elapsed_ms=1 mbit_s={}",
                    100 * r
                ),
            );
            t += &run_text("udp-64", r, "peer: udp-rate PASS sent=10 received=10 lost=0 bad=0 late=0 elapsed_ms=5000 pps=2000 mbit_s=1 size=64 window=32");
            t += &run_text("udp-1472", r, "peer: udp-rate PASS sent=10 received=10 lost=0 bad=0 late=0 elapsed_ms=5000 pps=1500 mbit_s=1 size=1472 window=32");
            t += &run_text("rtt", r, "peer: udp-echo PASS sent=200 returned=200 lost=0 mismatched=0 late=0 dup=0 elapsed_ms=1 pps=1 rtt_avg_us=450 rtt_max_us=900");
        }
        t
    }

    #[test]
    fn the_script_measures_every_figure_each_run() {
        let s = script(3);
        assert!(s.contains("while [ $i -le 3 ]"), "{s}");
        for f in Figure::ALL {
            assert!(
                s.contains(&format!("bench-net: measure {} $i", f.tag())),
                "{s}"
            );
            assert!(s.contains(&f.command()), "{s}");
        }
        assert_eq!(
            s.matches("echo \"bench-net: $(head -1 /proc/stat)\"")
                .count(),
            10
        );
        assert!(s.contains("tcp-send 169.254.100.2:9 --bytes 33554432"));
        assert!(s.contains("http-get 169.254.100.2:80 /bytes/33554432"));
        assert!(s.contains("udp-rate 169.254.100.2:7 --size 64 --seconds 5"));
        assert!(s.contains("udp-rate 169.254.100.2:7 --size 1472 --seconds 5"));
        assert!(s.contains("udp-echo 169.254.100.2:7 --count 200 --min 56 --max 56"));
        let st = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn figures_are_read_per_run() {
        let s = side(&all_runs(3), "xenpv-rt", 3);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.values[0], [268.4, 268.4, 268.4]);
        assert_eq!(s.values[1], [100.0, 200.0, 300.0]);
        assert_eq!(s.values[2], [2000.0; 3]);
        assert_eq!(s.values[3], [1500.0; 3]);
        assert_eq!(s.values[4], [450.0; 3]);
        let m = table::medians(&s);
        assert_eq!(m[1], Some(200.0));
        // dom0: 30 + 50 + 10 busy, 20 idle, steal 10 * run.
        assert_eq!(s.cpu[1].len(), 3);
        let c = s.cpu[1][1];
        assert!((c.busy - 90.0 / 130.0).abs() < 1e-9, "{c:?}");
        assert!((c.steal - 20.0 / 130.0).abs() < 1e-9, "{c:?}");
        assert!((c.idle - 20.0 / 130.0).abs() < 1e-9, "{c:?}");
        let cm = table::cpu_medians(&s);
        assert_eq!(cm[1], Some(c));
        let t = table::cpu_table(&[("async", cm), ("Linux", [None; 5])]);
        assert_eq!(t.lines().count(), 7, "{t}");
        assert!(t.lines().nth(3).unwrap().contains(" 69%  15%  15%"), "{t}");
        assert!(t.lines().nth(3).unwrap().trim_end().ends_with('?'), "{t}");
    }

    #[test]
    fn cpu_lines_count_only_around_a_verdict() {
        assert_eq!(
            cpu_ticks("cpu  1 2 3 4 5 6 7 8 9 10"),
            Some([1, 2, 3, 4, 5, 6, 7, 8])
        );
        assert_eq!(cpu_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(cpu_ticks("cpu 1 2 x"), None);
        assert_eq!(
            cpu_between("cpu 1 1 1 1 1 1 1 1", "cpu 1 1 1 1 1 1 1 1"),
            None
        );
        // A failed run's CPU lines are dropped, as is a line with no run before it.
        let t = "dom0| bench-net: cpu 0 0 0 0 0 0 0 0\n".to_string()
            + &all_runs(1).replace("tcp-send PASS", "tcp-send FAIL x");
        let s = side(&t, "x", 1);
        assert!(s.cpu[0].is_empty());
        assert_eq!(s.cpu[1].len(), 1);
    }

    #[test]
    fn a_failed_or_missing_measurement_is_named() {
        let t = all_runs(2).replacen(
            "peer: udp-rate PASS sent=10 received=10 lost=0 bad=0 late=0 elapsed_ms=5000 pps=2000",
            "peer: udp-rate FAIL no echo sent=10 received=0",
            1,
        );
        let s = side(&t, "Linux", 2);
        assert_eq!(s.values[2].len(), 1);
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert!(
            s.errors[0].starts_with("Linux: UDP echo 64 B (packets/s) run 1: peer: udp-rate FAIL")
        );
        // A run cut short (the script killed): no verdict, and too few runs.
        let cut = format!("{}dom0| bench-net: measure tcp-in 3\n", all_runs(2));
        let s = side(&cut, "xenpv-rt", 3);
        assert!(
            s.errors
                .iter()
                .any(|e| e.contains("TCP dom0 -> guest (Mbit/s) run 3: no verdict")),
            "{:?}",
            s.errors
        );
        assert!(
            s.errors
                .iter()
                .any(|e| e.contains("RTT, UDP echo 56 B (us; lower is better): 2 of 3 runs")),
            "{:?}",
            s.errors
        );
        let s = side("", "xenpv-rt", 1);
        assert_eq!(s.errors.len(), 5);
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        net: NetArgs,
    }

    #[test]
    fn options_have_defaults_and_limits() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let p = |a: &[&str]| Cli::try_parse_from(std::iter::once("net").chain(a.iter().copied()));
        let d = p(&[]).unwrap().net;
        assert_eq!((d.runs, d.timeout), (3, 1500));
        assert_eq!(
            d.sides,
            Sides {
                xenpv_net: true,
                embassy: false,
                linux: true,
            }
        );
        let o = p(&["--runs", "5", "--timeout", "600"]).unwrap().net;
        assert_eq!((o.runs, o.timeout), (5, 600));
        assert!(p(&["--runs", "0"]).is_err());
        assert!(p(&["--timeout", "10"]).is_err());
        assert!(p(&["--seed", "1"]).is_err());
        // Any order, repeats and spaces: measured xenpv-net, embassy-net, then Linux.
        let r = p(&["--sides", "linux, embassy-net,xenpv-net,embassy-net"])
            .unwrap()
            .net
            .sides;
        let names: Vec<String> = r
            .rt()
            .iter()
            .map(|r| format!("{} {}", r.name, r.cmdline))
            .collect();
        assert_eq!(
            names,
            [
                "xenpv-net net ip=169.254.100.2/24",
                "embassy-net enet ip=169.254.100.2/24"
            ]
        );
        assert!(r.linux);
        let e = p(&["--sides", "embassy-net"]).unwrap().net.sides;
        assert!(!e.linux && !e.xenpv_net && e.embassy);
        let e = p(&["--sides", "linux"]).unwrap_err().to_string();
        assert!(e.contains("no xenpv-rt side"), "{e}");
        let e = p(&["--sides", "xenpv-net,bsd"]).unwrap_err().to_string();
        assert!(e.contains("\"bsd\" is not a side"), "{e}");
        assert!(p(&["--sides", ""]).is_err());
    }
}
