//! The guest's lifecycle as a toolstack drives it (the runtime's control task): `xl
//! reboot` (a new domain that serves again), `xl shutdown` in the middle of a large
//! transfer, `xl sysrq`, a refused `suspend`, a `crash` request, the feature keys.
use super::{appliance_row, script_with};
use crate::boottest::reports::{dom0_like, like, runner_like};
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;
use crate::qemu::Outcome;

/// How soon after `xl shutdown` the appliance must have stopped (the issue's bar).
const SHUTDOWN_WITHIN_S: u64 = 10;
/// How soon after `xl reboot` a new domain must be listed under the same name.
const REBOOT_WITHIN_S: u64 = 120;
/// How soon after `xl shutdown` a client in the middle of a large GET must have seen
/// its connection cut (a hang lasts until the client's own timeout, minutes).
const CUT_WITHIN_S: u64 = 20;

/// The appliance's line once it serves (one per boot).
const SERVING: &str = "net: serving udp/7 tcp/7 tcp/9 tcp/80 on 1 vif(s)";

/// `xl reboot`: the appliance ends with reason reboot and comes back as a new domain
/// (the box follows it: `xenbox: domU … rebooted: now domain N`) whose console shows
/// the second boot and which serves HTTP again; `xl sysrq b` does the same once more;
/// then `xl shutdown` ends it with status 0 and reason poweroff within
/// [`SHUTDOWN_WITHIN_S`]. Before the reboot: the feature
/// keys (poweroff, reboot, and suspend as the appliance's manifest says:
/// [`super::migrate::appliance_suspends`]), `xl sysrq h` answered and cleared, and,
/// for an appliance without suspend, a `suspend` refused (unacknowledged, said once,
/// the guest serving on).
pub fn reboot() -> BootTest {
    let suspends = super::migrate::appliance_suspends();
    let mut checks = vec![
        Check::Regex(r"dom0\| /local/domain/\d+/control/feature-poweroff = '1' after \d+ ms: ok"),
        Check::Regex(r"dom0\| /local/domain/\d+/control/feature-reboot = '1' after \d+ ms: ok"),
        has("xenpv-rt: sysrq h: not supported (b reboot, o poweroff, c crash)"),
        Check::Regex(r"dom0\| /local/domain/\d+/control/sysrq = '' after \d+ ms: ok"),
    ];
    if suspends {
        // The appliance saves and restores (the `domu-save-*` rows): it offers it, and
        // a bare `suspend` here would suspend it; the refusal is `domu-suspend-refused`'s.
        checks.push(Check::Regex(r"dom0\| control/feature-suspend is '1': ok"));
    } else {
        checks.extend([
            Check::Regex(r"dom0\| control/feature-suspend is '', not 1: ok"),
            has("dom0| control/shutdown 3 s after suspend was asked: 'suspend'"),
            Check::Custom("the suspend refusal is said once", suspend_refused_once),
        ]);
    }
    checks.extend([
        Check::Report(like("net: shutdown requested how=reboot")),
        Check::Report(like("xenpv-rt: shutdown reason=reboot")),
        Check::Regex(r"xenbox: domU \S+ rebooted: now domain \d+"),
        Check::Regex(r"dom0\| xl reboot \d+: domain \d+ is now domain \d+ after \d+ ms: ok"),
        has("xenpv-rt: sysrq b: reboot"),
        Check::Regex(r"dom0\| xl sysrq \d+ b: domain \d+ is now domain \d+ after \d+ ms: ok"),
        Check::Custom("three boots, the first two ending in a reboot", three_boots),
        Check::Report(
            dom0_like("peer: http-get PASS status=200 bytes=1048576 conns=1 ok=1")
                .hex_digits("fnv", 16),
        ),
        Check::Regex(r"dom0\| xl shutdown after the reboot: the domU stopped after \d+ ms .*: ok"),
        Check::Regex(r"dom0\| domain \d+ shutdown reason code: 0"),
        Check::Report(like("xenpv-rt: shutdown reason=poweroff")),
    ]);
    let mut b = appliance_row("domu-reboot", "net ip=169.254.100.2/24", 900, checks);
    b.dom0_script = Some(script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string()),
            ("REBOOT_WITHIN", REBOOT_WITHIN_S.to_string()),
            ("SUSPENDS", u8::from(suspends).to_string()),
        ],
        include_str!("../scripts/lifecycle_reboot_test.sh"),
    ));
    b
}

/// `xl shutdown` while a client is in the middle of `GET /bytes/268435456` (the largest the appliance serves): the domU
/// stops within [`SHUTDOWN_WITHIN_S`] with status 0, having reset the connection (the
/// runtime resets a vif's connections before closing it), and the client sees it cut
/// (reset or closed, the bytes so far right) within [`CUT_WITHIN_S`], not a hang.
pub fn shutdown_mid_get() -> BootTest {
    let mut b = appliance_row(
        "domu-shutdown-mid-get",
        "net ip=169.254.100.2/24",
        600,
        vec![
            Check::Regex(r"dom0\| the GET: started \d+ bytes in, xl shutdown now"),
            Check::Regex(r"dom0\| xl shutdown mid-GET: the domU stopped after \d+ ms .*: ok"),
            Check::Regex(r"dom0\| the GET ended \d+ ms after xl shutdown .*: ok"),
            Check::Report(
                dom0_like("peer: http-get PASS status=200 conns=1 ok=1")
                    .one_of("cut", &["reset", "close"])
                    .at_least("bytes", 262_144.0)
                    .nums(&["bytes"]),
            ),
            Check::Report(
                like("xenpv-rt: vif0 reset pending=false")
                    .at_least("connections", 1.0)
                    .nums(&["connections", "flushed_ms"]),
            ),
            Check::Report(like("xenpv-rt: shutdown reason=poweroff")),
        ],
    );
    b.dom0_script = Some(script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string()),
            ("CUT_WITHIN", CUT_WITHIN_S.to_string()),
        ],
        include_str!("../scripts/lifecycle_mid_get_test.sh"),
    ));
    b
}

/// `crash` written to `control/shutdown` (what a toolstack may ask; xl has no command
/// for it): acknowledged (the key cleared), the application told (`how=crash`), and the
/// domain ends within [`SHUTDOWN_WITHIN_S`] as crashed (reason code 3, state `c`), its
/// exit status still 0 (the application returned it).
pub fn crash_request() -> BootTest {
    let mut b = t(
        "domu-crash-request",
        Image::app(),
        "net ip=169.254.100.2/24",
        0,
        vec![
            Check::Report(dom0_like("peer: http-get PASS status=200 bytes=65536")),
            Check::Regex(r"dom0\| crash request: the domU stopped after \d+ ms .*: ok"),
            has("dom0| control/shutdown after it: ''"),
            Check::Regex(r"dom0\| domain \d+ state \S*c\S* shutdown reason code: 3"),
            Check::Report(like("net: shutdown requested how=crash")),
            Check::Report(like("xenpv-rt: shutdown reason=crash")),
            Check::NotContains("status 0 but shutdown reason crash".into()),
            Check::Report(runner_like("xenbox: dom0-script exit 0")),
            Check::ExitLine,
        ],
    );
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 600;
    b.dom0_script = Some(script_with(
        &[("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string())],
        include_str!("../scripts/lifecycle_crash_test.sh"),
    ));
    b
}

/// The suspend refusal comes once for the one request (the key is read many times
/// while it stays).
fn suspend_refused_once(o: &Outcome) -> Result<(), String> {
    let n = o
        .guest_lines()
        .filter(|l| l.contains("xenpv-rt: suspend refused: built without the feature `suspend` (no save, restore or migration)"))
        .count();
    (n == 1).then_some(()).ok_or(format!("said {n} times"))
}

/// The console shows three boots of the appliance: the first serving, asked to reboot
/// (`xl reboot`) and ending with reason reboot; the second the same through `xl sysrq b`;
/// the third serving and ending with reason poweroff.
fn three_boots(o: &Outcome) -> Result<(), String> {
    let order = [
        SERVING,
        "net: shutdown requested how=reboot",
        "xenpv-rt: shutdown reason=reboot",
        SERVING,
        "xenpv-rt: sysrq b: reboot",
        "net: shutdown requested how=reboot",
        "xenpv-rt: shutdown reason=reboot",
        SERVING,
        "net: shutdown requested how=poweroff",
        "xenpv-rt: shutdown reason=poweroff",
    ];
    let mut next = order.iter().peekable();
    for l in o.guest_lines() {
        if next.peek().is_some_and(|w| l.contains(**w)) {
            next.next();
        }
    }
    match next.next() {
        None => Ok(()),
        Some(w) => Err(format!(
            "the console lacks {w:?} in its place (boot, xl reboot, boot, sysrq b, boot, poweroff)"
        )),
    }
}
