//! `cargo xtask bench density`: how many network appliances fit in a host next to how
//! many Linux domUs, each side booted in turn in the box with room for many domUs
//! ([`xenbox::DomuExtras::room_mib`]), its dom0 script ([`script`]) doing the work with
//! `xl` in dom0:
//!
//! 1. the smallest memory that serves, searched the same way for both sides: the upper
//!    bound must serve and the lower must not, then bisection on a grid of
//!    `--resolution` MiB ([`figures::next_probe`]); each probe is an `xl create`, an HTTP
//!    GET of `/bytes/N` that must bring the appliance's pattern within
//!    `--serve-timeout`, then `xl destroy`;
//! 2. at that memory and `--headroom` percent more (default 5, both sides), domUs started one after another (each its own name, MAC and
//!    link-local address on the bridge) until `--count` or Xen's free memory runs out
//!    (`xl info` free_memory below one more domU, or `xl create` failing), each checked
//!    on arrival (create-to-serving timed with dom0's clock), then all of them checked
//!    again once all are up; then all destroyed.
//!
//! The appliance is the app's `net ip=…`; Linux is Debian's kernel from the box with a
//! small initramfs ([`xenbox::INIT_MOUNTS`] and [`LINUX_INIT`]): xen-netfront and
//! busybox `httpd` serving the same body as a file. Both serve the same `/bytes/N` (the appliance's pattern) and dom0
//! checks both with the same `xenbox-peer http-get --verify-bytes`, every byte (the
//! appliance's X-Checksum-FNV1a64 too; busybox httpd sends no such header:
//! `--no-checksum-header` for Linux).
mod figures;

use crate::boottest::box_with_peer;
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Stream};
use crate::{provision, xenbox};
use figures::Side;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `cargo xtask bench density` options.
#[derive(clap::Args, Debug)]
pub struct DensityArgs {
    /// DomUs to start at the smallest memory, per side (fewer if memory runs out first).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    count: u64,
    /// Memory in MiB the box's Xen gets for each side's domUs, on top of dom0's 512 MiB
    /// (QEMU's memory grows by as much): the default fits 32 Linux domUs of up to 128
    /// MiB; a side stops early, and says so, when it runs out.
    #[arg(long, value_name = "MiB", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(256..=16384))]
    box_mib: u64,
    /// The appliance's search range in MiB, `LO,HI`: HI must serve, LO must not.
    #[arg(long, value_name = "LO,HI", default_value = "8,64", value_parser = parse_range)]
    app_mib: (u64, u64),
    /// Linux's search range in MiB, `LO,HI`: HI must serve, LO must not.
    #[arg(long, value_name = "LO,HI", default_value = "32,256", value_parser = parse_range)]
    linux_mib: (u64, u64),
    /// The domUs start at the smallest memory that served plus this many percent, rounded
    /// up to a MiB (both sides): at the very floor a Linux domU that served once can
    /// panic out of memory on its next start.
    #[arg(long, value_name = "PERCENT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=100))]
    headroom: u64,
    /// The search's grid in MiB (both sides).
    #[arg(long, value_name = "MiB", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    resolution: u64,
    /// The body each GET fetches, `/bytes/N` (Linux keeps it as a file in its memory,
    /// the appliance makes it as it sends).
    #[arg(long, value_name = "N", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(16 << 20)))]
    bytes: u64,
    /// Seconds a new domU has to serve (the GET with the right checksum) before it
    /// counts as not serving.
    #[arg(long, value_name = "S", default_value_t = 150, value_parser = clap::value_parser!(u64).range(10..=1800))]
    serve_timeout: u64,
    /// Wall-clock limit of one side's box boot, in seconds.
    #[arg(long, value_name = "S", default_value_t = 5400, value_parser = clap::value_parser!(u64).range(300..=36000))]
    timeout: u64,
    /// The sides, comma-separated, booted in this order: `app`, `linux` (the ratios and
    /// the target need both).
    #[arg(long, value_name = "LIST", default_value = "app,linux")]
    sides: String,
}

/// The most domUs a side starts: each takes one address of 169.254.100.11 on.
const MAX_COUNT: u64 = 200;

/// `LO,HI` in MiB with 4 <= LO < HI <= 4096.
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = s
        .split_once(',')
        .ok_or(format!("{s:?} is not LO,HI (MiB)"))?;
    let n = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|e| format!("{x:?} in {s:?}: {e}"))
    };
    let (lo, hi) = (n(lo)?, n(hi)?);
    if !(4..=4096).contains(&lo) || !(4..=4096).contains(&hi) || lo >= hi {
        return Err(format!(
            "{s:?}: LO and HI must be 4..=4096 MiB with LO < HI"
        ));
    }
    Ok((lo, hi))
}

/// Which kernel a side starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    App,
    Linux,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Linux => "linux",
        }
    }
}

/// The `/init` of the Linux domUs after [`xenbox::INIT_MOUNTS`]: xen-netfront, the
/// address from the kernel command line's `density_ip=` (Linux hands init such words as
/// variables), busybox `httpd` serving `/www` (the body is a file of the initramfs),
/// `density: serving`, then wait.
pub const LINUX_INIT: &str = r#"trap 'poweroff -f' USR2 TERM
fail() { echo "density: FAIL $*"; }
[ -n "$density_ip" ] || fail "no density_ip= on the kernel command line"
insmod /lib/modules/xen-netfront.ko || fail "insmod xen-netfront"
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip addr add "$density_ip/24" dev eth0 || fail "no eth0"
ip link set eth0 up
httpd -p 80 -h /www || fail "httpd"
echo "density: serving"
while :; do sleep 3600 & wait $!; done
"#;

/// `rdinit=/poweroff`: the box's own domU of the Linux side stops at once (the script
/// starts its own).
const POWEROFF: &str = "#!/bin/busybox sh\n/bin/busybox poweroff -f\n";

/// The dom0 script of one side: the search ([`figures::SEARCH_SH`]), the start of
/// `count` domUs, the sweep, every step a `density: …` line ([`figures::side`] reads
/// them). Status 3 when the search cannot start, 4 when a domU did not serve.
fn script(kind: Kind, (lo, hi): (u64, u64), a: &DensityArgs) -> String {
    let vars = format!(
        "side={} lo={lo} hi={hi} res={} headroom={} count={} bytes={} limit={}\n",
        kind.name(),
        a.resolution,
        a.headroom,
        a.count,
        a.bytes,
        a.serve_timeout
    );
    format!(
        "# cargo xtask bench density: dom0's side (DOMU_NAME and PEER set by the box).\n{vars}{}{}{}",
        include_str!("prelude.sh"),
        figures::SEARCH_SH,
        include_str!("start.sh")
    )
}

/// Write the Linux side's initramfs to `out`: [`LINUX_INIT`], xen-netfront, the body as
/// `/www/bytes/N`, and `/poweroff` for the box's own domU.
fn linux_initramfs(bx: &xenbox::BoxImage, bytes: u64, out: &Path) -> Result<(), String> {
    let netfront = xenbox::box_kernel_module("xen-netfront")?;
    let body = figures::body(bytes);
    let page = format!("www/bytes/{bytes}");
    xenbox::linux_initramfs(
        bx,
        &format!("{}{LINUX_INIT}", xenbox::INIT_MOUNTS),
        &[
            ("lib/modules/xen-netfront.ko", &netfront, 0o644),
            (&page, &body, 0o644),
            ("poweroff", POWEROFF.as_bytes(), 0o755),
        ],
        out,
    )
}

/// Boot one side in the box with its script; what it measured.
fn measure(
    xen: &Path,
    bx: &Arc<xenbox::BoxImage>,
    kind: Kind,
    image: &Path,
    initrd: Option<PathBuf>,
    a: &DensityArgs,
) -> Side {
    let (range, cmdline) = match kind {
        // The box's own domU leaves at once: the script starts its own.
        Kind::App => (a.app_mib, "exit=0"),
        Kind::Linux => (a.linux_mib, "console=hvc0 quiet rdinit=/poweroff"),
    };
    let who = kind.name();
    let dir = crate::root().join("target/xtask");
    let sh = dir.join(format!("bench-density-{who}.sh"));
    let mut s = Side::default();
    if let Err(e) = std::fs::write(&sh, script(kind, range, a)) {
        s.errors.push(format!("{who}: {}: {e}", sh.display()));
        return s;
    }
    println!(
        "xtask bench density: {who}: booting the box (Xen gets {} MiB for domUs; up to {} s): search {}..{} MiB, then {} domUs",
        a.box_mib, a.timeout, range.0, range.1, a.count
    );
    let first = range.1;
    let out = qemu::boot_domu(
        xen,
        &Boot {
            domu: Some(bx.clone()),
            name: format!("density-{who}-box"),
            image: image.to_path_buf(),
            cmdline: cmdline.into(),
            initrd,
            memory_mib: first,
            timeout: Duration::from_secs(a.timeout),
            stream: Stream::Guest,
            log: dir.join(format!("bench-density-{who}.log")),
        },
        &xenbox::DomuExtras {
            vifs: 0,
            dom0_script: Some(sh),
            migrate: false,
            room_mib: a.box_mib.saturating_sub(first),
        },
    );
    let plan = figures::Plan {
        lo: range.0,
        hi: range.1,
        res: a.resolution,
        headroom: a.headroom,
        asked: a.count,
    };
    let mut s = figures::side(&out.text, who, &plan);
    if let Err(f) = &out.status {
        s.errors
            .push(format!("{who}: {f} (log: {})", out.log.display()));
    }
    println!(
        "xtask bench density: {who}: done in {:.0} s (log: {})",
        out.secs,
        out.log.display()
    );
    s
}

/// `cargo xtask bench density`.
pub fn density_command(a: DensityArgs) -> Result<u8, String> {
    let (with_app, with_linux) = super::app_linux_sides(&a.sides)?;
    let dir = super::bench_dir()?;
    println!("xtask bench density: building the app, the box, xenbox-peer and the Linux initramfs");
    let xen = provision::ensure()?;
    let bx = Arc::new(box_with_peer()?);
    let app = if with_app {
        let path = cargo::build(&Image::app(), false)?;
        Some(measure(&xen, &bx, Kind::App, &path, None, &a))
    } else {
        None
    };
    let linux = if with_linux {
        let init = dir.join("bench-density-linux.cpio");
        linux_initramfs(&bx, a.bytes, &init)?;
        Some(measure(&xen, &bx, Kind::Linux, &bx.vmlinuz, Some(init), &a))
    } else {
        None
    };
    let none = Side::default();
    println!();
    print!(
        "{}",
        figures::table(
            app.as_ref().unwrap_or(&none),
            linux.as_ref().unwrap_or(&none)
        )
    );
    println!("(app/Linux: above 1 the appliance has more of it; for memory and times, below 1 it needs less)");
    let verdict = app
        .as_ref()
        .zip(linux.as_ref())
        .map(|(x, l)| figures::target(x, l));
    let errors: Vec<&String> = app.iter().chain(&linux).flat_map(|s| &s.errors).collect();
    Ok(super::app_linux_verdict(verdict, &errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        d: DensityArgs,
    }

    fn parse(a: &[&str]) -> Result<DensityArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("density").chain(a.iter().copied())).map(|c| c.d)
    }

    #[test]
    fn options_have_defaults_and_limits() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.count, d.box_mib, d.resolution, d.bytes),
            (32, 4096, 1, 1 << 20)
        );
        assert_eq!((d.app_mib, d.linux_mib), ((8, 64), (32, 256)));
        let o = parse(&["--count", "200", "--app-mib", "12, 20"]).unwrap();
        assert_eq!((o.count, o.app_mib), (200, (12, 20)));
        assert!(parse(&["--count", "201"]).is_err());
        assert!(parse(&["--count", "0"]).is_err());
        for bad in ["20,12", "12,12", "3,12", "12", "a,12", "12,5000"] {
            let e = parse(&["--linux-mib", bad]).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn the_script_is_sh_and_says_its_side() {
        let a = parse(&["--count", "3", "--bytes", "4096", "--serve-timeout", "90"]).unwrap();
        for (kind, range) in [(Kind::App, a.app_mib), (Kind::Linux, a.linux_mib)] {
            let s = script(kind, range, &a);
            let vars = format!(
                "side={} lo={} hi={} res=1 headroom=5 count=3 bytes=4096 limit=90\n",
                kind.name(),
                range.0,
                range.1
            );
            assert!(s.contains(&vars), "{s}");
            assert!(s.contains(figures::SEARCH_SH));
            assert!(
                s.contains("\"$PEER\" http-get \"$2:80\" \"/bytes/$bytes\" --verify-bytes $nohdr")
            );
            let st = std::process::Command::new("sh")
                .args(["-n", "-c", &s])
                .status()
                .unwrap();
            assert!(st.success());
        }
        // The script's memory for the domUs is figures::with_headroom.
        let line = include_str!("start.sh")
            .lines()
            .find(|l| l.starts_with("mem="))
            .unwrap();
        for (hi, pct) in [(15, 5), (85, 5), (16, 0), (20, 5), (97, 33)] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("hi={hi} headroom={pct}\n{line}\necho $mem")])
                .output()
                .unwrap();
            let mem = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(
                mem,
                figures::with_headroom(hi, pct).to_string(),
                "{hi} {pct}"
            );
        }
        assert!(LINUX_INIT.contains("ip addr add \"$density_ip/24\" dev eth0"));
        assert!(LINUX_INIT.contains("httpd -p 80 -h /www"));
    }
}
