//! The table of boot tests, by area: each row says what to boot and what the console
//! must show.
use super::reports::{like, runner_like};
use super::{t, BootTest, Check};
use crate::cargo::Image;

mod async_rt;
mod balloon;
mod blk;
mod density;
mod dom0;
mod domu;
mod faults;
mod floor;
mod libvirt;
mod lifecycle;
mod metrics;
mod migrate;
mod net;
mod suspend;

/// The table of boot tests, in the order they run.
pub fn table() -> Vec<BootTest> {
    let mut v = vec![dom0::hello()];
    v.extend(faults::dom0());
    v.extend(dom0::basics());
    v.extend(dom0::services());
    v.push(async_rt::timers());
    v.extend(dom0::direct_map());
    v.extend(dom0::paging());
    v.extend(domu::rows());
    v.extend(floor::rows());
    v.extend(density::rows());
    v.push(libvirt::row());
    v.push(async_rt::net(false));
    v.push(async_rt::net(true));
    v.push(async_rt::embassy_net());
    v.push(balloon::balloon());
    v.push(suspend::bare());
    v.push(suspend::migrate());
    v
}

/// A row of the appliance on one vif (256 MiB) with a dom0 script: `checks`, then what
/// every such row ends with (the script's exit 0, the appliance asked to power off, and
/// the guest's exit status 0).
fn appliance_row(name: &str, cmdline: &str, timeout_s: u64, checks: Vec<Check>) -> BootTest {
    let mut b = t(name, Image::app(), cmdline, 0, checks);
    b.checks.extend([
        Check::Report(runner_like("xenbox: dom0-script exit 0")),
        Check::Report(like("net: shutdown requested how=poweroff")),
        Check::ExitLine,
    ]);
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = timeout_s;
    b
}

/// What the hostile rows' dom0 scripts share: `step`, the check that fails without the
/// client program (`$PEER`), `now_ms`, `alive` and `up`.
const DOM0_PRELUDE: &str = include_str!("../scripts/dom0_prelude.sh");

/// A dom0 script: `vars` (NAME=VALUE lines), then [`DOM0_PRELUDE`], then `script`.
fn script_with(vars: &[(&str, String)], script: &str) -> &'static str {
    let mut s = String::new();
    for (k, v) in vars {
        s += &format!("{k}={v}\n");
    }
    s += DOM0_PRELUDE;
    s += script;
    Box::leak(s.into_boxed_str())
}
