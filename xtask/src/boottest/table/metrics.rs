//! The guest metrics rows: dom0 reads with `xenstore-read` what the runtime publishes
//! for the toolstack (the xen-guest-agent's keys: the PV "addons" version, the OS, the
//! memory, the vif's IPv4 address, `data/updated`). The DHCP case is the DHCP row's
//! (`net::dhcp`), which uses [`dom0_view`] and [`METRICS_DOM0`] too.
use super::{appliance_row, script_with};
use crate::boottest::reports::{dom0_like, like, Expect};
use crate::boottest::{BootTest, Check};
use xenpv_contract::report::Report;

/// dom0's reading of the keys (`metrics_wait`, `metrics_report`), put before a row's
/// script.
pub const METRICS_DOM0: &str = include_str!("../scripts/metrics_dom0.sh");

/// How soon after the appliance serves the vif's address must be in xenstore.
const STATIC_ADDRESS_S: u64 = 30;

/// How soon after `xl network-detach` the vif's keys must be gone, and after `xl
/// network-attach` back.
const REPLUG_S: u64 = 30;

/// How soon after `xl mem-set` `data/meminfo_total` must be the new size: the balloon
/// acts on its watch at once and calls `metrics::refresh_soon` when done (without it the
/// next 10 s period would publish it; about 0.7 s measured in the box).
const MEMSET_S: u64 = 5;

/// How soon after `xl shutdown` the appliance must have stopped.
const SHUTDOWN_S: u64 = 10;

/// The rows.
pub fn rows() -> Vec<BootTest> {
    vec![static_address()]
}

/// The appliance on one vif with a static address: dom0 finds every key, the memory
/// figures next to what `xl list` says, `attr/vif/0/ipv4/0` = the address; the guest
/// says what it published; the vif detached, its keys go within [`REPLUG_S`], attached
/// again, they are back within as long; `xl mem-set` to 128 MiB and back to 256,
/// `data/meminfo_total` follows within [`MEMSET_S`].
fn static_address() -> BootTest {
    let mut checks = vec![Check::Report(
        dom0_view("169.254.100.2").at_most("ipv4_waited_ms", (STATIC_ADDRESS_S * 1000) as f64),
    )];
    checks.push(Check::Report(published(1)));
    // Unplugged, the vif's keys go; plugged again, they come back.
    checks.push(Check::Report(
        dom0_like("xenstore: vif-replug gone=yes vif0_ipv4_0=169.254.100.2")
            .at_most("gone_ms", (REPLUG_S * 1000) as f64)
            .at_most("back_ms", (REPLUG_S * 1000) as f64),
    ));
    for mib in [128u64, 256] {
        let kb = (mib * 1024) as f64;
        checks.push(Check::Report(
            dom0_like(&format!("xenstore: mem-set target_mib={mib}"))
                .within("meminfo_total", kb * 0.98, kb * 1.02)
                .at_most("waited_ms", (MEMSET_S * 1000) as f64)
                .all("meminfo_free in 1..=meminfo_total", memory_free),
        ));
    }
    let mut b = appliance_row("domu-metrics", "net ip=169.254.100.2/24", 600, checks);
    b.dom0_script = Some(script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_S.to_string()),
            ("REPLUG_WITHIN", (REPLUG_S + 5).to_string()),
            ("MEMSET_WITHIN", (MEMSET_S + 25).to_string()),
        ],
        &format!(
            "{METRICS_DOM0}{}",
            include_str!("../scripts/metrics_test.sh")
        ),
    ));
    b
}

/// The guest's line for a batch that published the vif with `addrs` addresses, the
/// memory in kB.
pub fn published(addrs: u32) -> Expect {
    like(&format!("metrics: published vifs=1 addrs={addrs}"))
        .nums(&["keys", "meminfo_total_kb", "meminfo_free_kb"])
        .at_least("meminfo_free_kb", 1.0)
}

/// dom0's `xenstore: metrics …` line (`metrics_report`): the xen-guest-agent's keys as
/// a xenpv-rt guest publishes them, `meminfo_total` within 2% of `xl list`'s memory,
/// `meminfo_free` in `1..=meminfo_total`, `data/updated` a date as xe-guest-utilities
/// writes it, and the vif's first address `addr` (`leased`: the one DHCP leased, as the
/// line's `leased=` says).
pub fn dom0_view(addr: &str) -> Expect {
    let version = runtime_version();
    let (major, minor) = {
        let mut it = version.split('.');
        (it.next().unwrap_or("0"), it.next().unwrap_or("0"))
    };
    let mut e = dom0_like(&format!(
        "xenstore: metrics installed=1 major=1 minor=0 micro=0 build=xenpv-rt-{version} \
         os_distro=xenpv-rt os_majorver={major} os_minorver={minor} os_uname={version} \
         vif0=\"\" vif0_ipv4_1=\"\""
    ))
    .eq("os_name", format!("xenpv-rt {version}"))
    .nums(&["meminfo_total", "meminfo_free", "xl_mem_mib"])
    .all("meminfo_total within 2% of xl list's memory", memory_total)
    .all("meminfo_free in 1..=meminfo_total", memory_free)
    .all("updated like `Mon Jan  2 15:04:05 2006`", updated_date);
    e = if addr == "leased" {
        e.all("vif0_ipv4_0 is the leased address", |r| {
            let (a, l) = (r.field("vif0_ipv4_0"), r.field("leased"));
            (a.is_some() && a == l)
                .then_some(())
                .ok_or(format!("vif0_ipv4_0={a:?} leased={l:?}"))
        })
    } else {
        e.eq("vif0_ipv4_0", addr)
    };
    e
}

/// The runtime's version (the root workspace's `[workspace.package]` version), which
/// the guest publishes.
fn runtime_version() -> &'static str {
    const ROOT: &str = include_str!("../../../../Cargo.toml");
    ROOT.split("[workspace.package]")
        .nth(1)
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"'))
        .unwrap_or("unknown")
}

fn num(r: &Report, k: &str) -> Result<u64, String> {
    r.field(k)
        .and_then(|v| v.parse().ok())
        .ok_or(format!("{k}={:?}", r.field(k)))
}

fn memory_total(r: &Report) -> Result<(), String> {
    let (total, xl) = (num(r, "meminfo_total")?, num(r, "xl_mem_mib")? * 1024);
    (total.abs_diff(xl) * 50 <= xl)
        .then_some(())
        .ok_or(format!("meminfo_total={total} kB, xl list {xl} kB"))
}

fn memory_free(r: &Report) -> Result<(), String> {
    let (free, total) = (num(r, "meminfo_free")?, num(r, "meminfo_total")?);
    (1..=total)
        .contains(&free)
        .then_some(())
        .ok_or(format!("meminfo_free={free} meminfo_total={total}"))
}

/// `Www Mmm dd hh:mm:ss yyyy` (the day padded with a space).
fn updated_date(r: &Report) -> Result<(), String> {
    let u = r.field("updated").unwrap_or_default();
    let re = regex::Regex::new(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 1-3][0-9] \d\d:\d\d:\d\d \d{4}$")
        .map_err(|e| e.to_string())?;
    re.is_match(u).then_some(()).ok_or(format!("updated={u:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dom0's line from a passing run of the DHCP row (the static row's is the same
    /// but for the address and `leased=`).
    const GOOD: &str = "dom0| xenstore: metrics installed=\"1\" major=\"1\" minor=\"0\" \
        micro=\"0\" build=\"xenpv-rt-0.1.0\" os_distro=\"xenpv-rt\" \
        os_name=\"xenpv-rt 0.1.0\" os_majorver=\"0\" os_minorver=\"1\" os_uname=\"0.1.0\" \
        meminfo_total=\"262144\" meminfo_free=\"238328\" vif0=\"\" \
        vif0_ipv4_0=\"169.254.100.59\" vif0_ipv4_1=\"\" \
        updated=\"Mon Dec  7 18:00:34 2026\" xl_mem_mib=\"256\" leased=169.254.100.59 \
        ipv4_waited_ms=200";

    fn judge(e: &Expect, line: &str) -> Result<(), String> {
        e.find_in(line).map(drop)
    }

    /// Each condition passes on a real line and fails when its part is wrong.
    #[test]
    fn the_dom0_view_fails_on_each_wrong_key() {
        let dhcp = dom0_view("leased").at_most("ipv4_waited_ms", 3000.0);
        judge(&dhcp, GOOD).unwrap();
        let stat = GOOD
            .replace("169.254.100.59", "169.254.100.2")
            .replace(" leased=169.254.100.2", "");
        judge(&dom0_view("169.254.100.2"), &stat).unwrap();
        for (from, to, why) in [
            ("major=\"1\"", "major=\"0\"", "major=0, not 1"),
            ("installed=\"1\"", "installed=\"\"", "installed=, not 1"),
            ("os_name=\"xenpv-rt 0.1.0\"", "os_name=\"\"", "os_name="),
            (
                "meminfo_total=\"262144\"",
                "meminfo_total=\"65536\"",
                "within 2%",
            ),
            (
                "meminfo_free=\"238328\"",
                "meminfo_free=\"0\"",
                "meminfo_free=0",
            ),
            (
                "meminfo_free=\"238328\"",
                "meminfo_free=\"300000\"",
                "meminfo_free=300000",
            ),
            (
                "updated=\"Mon Dec  7 18:00:34 2026\"",
                "updated=\"2\"",
                "updated=\"2\"",
            ),
            ("vif0=\"\"", "vif0=\"x\"", "vif0=x"),
            (
                "vif0_ipv4_0=\"169.254.100.59\"",
                "vif0_ipv4_0=\"\"",
                "the leased address",
            ),
            (
                "vif0_ipv4_1=\"\"",
                "vif0_ipv4_1=\"10.0.0.1\"",
                "vif0_ipv4_1=10.0.0.1",
            ),
            (
                "ipv4_waited_ms=200",
                "ipv4_waited_ms=6100",
                "ipv4_waited_ms=6100",
            ),
        ] {
            let bad = GOOD.replace(from, to);
            assert_ne!(bad, GOOD, "{from}");
            let e = judge(&dhcp, &bad).unwrap_err();
            assert!(e.contains(why), "{from} -> {to}: {e}");
        }
        let e = judge(&dom0_view("169.254.100.2"), GOOD).unwrap_err();
        assert!(
            e.contains("vif0_ipv4_0=169.254.100.59, not 169.254.100.2"),
            "{e}"
        );
    }

    #[test]
    fn the_guest_line_fails_without_the_vif_or_its_address() {
        let good = "domU| metrics: published keys=1 vifs=1 addrs=1 meminfo_total_kb=262144 \
                    meminfo_free_kb=238328";
        judge(&published(1), good).unwrap();
        for bad in [
            good.replace("addrs=1", "addrs=0"),
            good.replace("vifs=1", "vifs=0"),
            good.replace("published", "publish"),
            good.replace("meminfo_free_kb=238328", "meminfo_free_kb=0"),
            good.replace(" keys=1", ""),
        ] {
            assert!(judge(&published(1), &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_runtime_version_is_the_workspace_one() {
        let v = runtime_version();
        assert!(
            v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{v}"
        );
    }
}
