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
mod guest_cpu;
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
    /// `xenpv-net` (the app's `net`), `xenpv-copy` (`net tx_copy`: long frames copied
    /// over the TX pages, not written in place), `embassy-net` (the app's `enet`:
    /// discard, /bytes and UDP echo over embassy-net), `linux` (a Linux domU). At least
    /// one xenpv-rt side; the ratios to Linux need linux.
    #[arg(long, value_name = "LIST", default_value = "xenpv-net,linux", value_parser = parse_sides)]
    sides: Sides,
}

/// Which sides a run measures (always in the order xenpv-net, xenpv-copy, embassy-net,
/// Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    pub xenpv_net: bool,
    /// The appliance with `tx_copy`: long frames copied over the TX pages, not written
    /// in place (what the copy costs).
    pub xenpv_copy: bool,
    pub embassy: bool,
    pub linux: bool,
}

/// `--sides`: a comma-separated list of `xenpv-net`, `embassy-net`, `linux` (repeats
/// allowed), with at least one xenpv-rt side.
fn parse_sides(s: &str) -> Result<Sides, String> {
    let mut out = Sides {
        xenpv_net: false,
        xenpv_copy: false,
        embassy: false,
        linux: false,
    };
    for w in s.split(',').map(str::trim) {
        match w {
            "xenpv-net" => out.xenpv_net = true,
            "xenpv-copy" => out.xenpv_copy = true,
            "embassy-net" => out.embassy = true,
            "linux" => out.linux = true,
            _ => {
                return Err(format!(
                    "{w:?} is not a side (xenpv-net, xenpv-copy, embassy-net or linux)"
                ))
            }
        }
    }
    if !out.xenpv_net && !out.xenpv_copy && !out.embassy {
        return Err("no xenpv-rt side: name xenpv-net, xenpv-copy or embassy-net".into());
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
        if self.xenpv_copy {
            v.push(RtSide {
                name: "xenpv-copy",
                cmdline: format!("net tx_copy ip={GUEST}/24"),
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
/// times (`bench-net: cpu …`, the first line of `/proc/stat`) and the guest's
/// (`bench-net: guest peer: domain-cpu …`, Xen's CPU time of domain `$DOMID`). Its
/// status is the number of measurements that failed.
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
            "    echo \"bench-net: measure {} $i\"\n    echo \"bench-net: $(head -1 /proc/stat)\"\n    echo \"bench-net: guest $(\"$PEER\" domain-cpu \"$DOMID\")\"\n    \"$PEER\" {} || fails=$((fails + 1))\n    echo \"bench-net: $(head -1 /proc/stat)\"\n    echo \"bench-net: guest $(\"$PEER\" domain-cpu \"$DOMID\")\"\n",
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
    /// The guest's CPU time and the bytes it moved, per run that passed.
    pub guest: [Vec<guest_cpu::GuestCpu>; 5],
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
    // The guest's CPU time before, and what the measurement moved (from its verdict).
    let (mut guest_before, mut moved): (Option<u64>, Option<(u64, f64)>) = (None, None);
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
            (guest_before, moved) = (None, None);
        } else if let Some(g) = l.strip_prefix("bench-net: guest ") {
            let Some(ns) = guest_cpu::cpu_ns(g) else {
                out.errors
                    .push(format!("{who}: the guest's CPU time: no figure in {l:?}"));
                continue;
            };
            match (guest_before.take(), current.as_ref(), moved) {
                (Some(b), Some((i, _, true)), Some((bytes, elapsed_ms))) if passed => {
                    out.guest[*i].push(guest_cpu::GuestCpu {
                        cpu_ns: ns.saturating_sub(b),
                        bytes,
                        elapsed_ms,
                    });
                }
                (None, Some((_, _, false)), _) => guest_before = Some(ns),
                _ => {}
            }
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
                        moved = guest_cpu::moved(f, &v);
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
        let (g, got) = (out.guest[i].len(), out.values[i].len());
        if g < got {
            out.errors.push(format!(
                "{who}: {}: the guest's CPU time missing for {} of {got} runs",
                f.label(),
                got - g
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
    let grt: Vec<(&str, guest_cpu::Medians)> = rt
        .iter()
        .map(|(n, s)| (*n, guest_cpu::medians(&s.guest)))
        .collect();
    let glinux = linux.map(|l| guest_cpu::medians(&l.guest));
    print!("{}", guest_cpu::table(&grt, glinux.as_ref()));
    println!(
        "(Xen's CPU time of the guest's domain during each measurement, over the bytes it \
         moved; UDP echo counts each datagram in and out)"
    );
    if let Some(l) = &glinux {
        for (n, m) in &grt {
            println!("{}", guest_cpu::headline(n, m, l));
        }
    }
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
mod tests;
