//! The async runtime's rows (xenpv-rt feature `async`): the executor, its timers on
//! Xen's clock and event-channel wakers.
use crate::boottest::reports::{dom0_like, runner_like};
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;

/// Timers and tasks (`async`): `Timer::after` waits as long as Xen's clock says (never
/// less, at most 500 ms more), spawned tasks end in their timers' order, a
/// `with_timeout` fires, and a loopback event wakes the task registered for its port.
pub fn timers() -> BootTest {
    let waited = |what: &str, us: u64| {
        Check::Regex(Box::leak(
            format!(r"async: {what} waited \d+ us \(want {us} us\) ok").into_boxed_str(),
        ))
    };
    t(
        "async-timers",
        Image::app(),
        "async",
        0,
        vec![
            waited(r"Timer::after\(50ms\)", 50_000),
            has("async: tasks finished in order [3, 2, 1] ok"),
            waited(r"with_timeout\(20ms\)", 20_000),
            has("async: with_timeout fired: true"),
            has("async: wake_on heard the loopback event: true ok"),
            Check::Regex(
                r"async: Timer::after\(50ms\) beside a task yielding in a loop waited \d+ us \(want 50000 us\) ok",
            ),
            has("async: timers and tasks ok"),
            Check::ExitLine,
        ],
    )
}

/// How soon after `xl shutdown` an async app (or the runtime, for one that ignores
/// it) must have stopped.
const SHUTDOWN_WITHIN_S: u64 = 10;

/// The async runtime as a domU with a vif (`async_net`): `rt.devices().net(0)` up with
/// the `ip=` address, TCP echo over xenpv-net answered to dom0's `$PEER` (one client,
/// then 8 at once, 256 KiB each), and `xl shutdown` ending the guest with status 0 within
/// [`SHUTDOWN_WITHIN_S`]: the app returns from `rt.shutdown()` (`ignore` false), or it
/// ignores it and the runtime's grace period ends it (`ignore` true). Without `ignore`,
/// the vif is also detached and attached again before the shutdown: the runtime closes
/// it, connects the new backend to the same stack, and echo works again.
pub fn net(ignore: bool) -> BootTest {
    let (name, cmdline) = if ignore {
        (
            "async-net-ignore",
            "async_net ignore_shutdown ip=169.254.100.2/24",
        )
    } else {
        ("async-net", "async_net ip=169.254.100.2/24")
    };
    let mut checks = vec![
        Check::Regex(r"xenpv-rt: vif0 connected mac=00:16:3e:00:00:02 ip=169\.254\.100\.2/24"),
        has("async-net: vif0 up ip=169.254.100.2/24"),
        Check::Report(dom0_like("peer: tcp-echo PASS bytes=1048576 conns=1 ok=1")),
        Check::Report(dom0_like("peer: tcp-echo PASS bytes=2097152 conns=8 ok=8")),
        has("xenpv-rt: shutdown requested (poweroff)"),
        Check::Regex(r"dom0\| xl shutdown: the domU stopped after \d+ ms .*: ok"),
        Check::Regex(r"xenpv-rt: vif0 closed \(the guest is ending\) in \d+ ms pages_kept=0"),
        Check::Report(runner_like("xenbox: dom0-script exit 0")),
        // No idle poll named a closed port (Xen refuses it).
        Check::NotContains("exec: SCHEDOP_poll on ports".into()),
        Check::ExitLine,
    ];
    if ignore {
        checks.push(has(
            "xenpv-rt: the application did not return after shutdown: exit 0",
        ));
    } else {
        checks.extend([
            has("async-net: shutdown poweroff: returning 0"),
            Check::Regex(r"xenpv-rt: vif0 closed \(its backend went away\) in \d+ ms pages_kept=0"),
            has("xenpv-rt: vif0 reattached"),
            has("dom0| after re-attach: ok"),
        ]);
    }
    let mut b = t(name, Image::app(), cmdline, 0, checks);
    b.domu = true;
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 600;
    b.dom0_script = Some(super::script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string()),
            ("REATTACH", u8::from(!ignore).to_string()),
        ],
        include_str!("../scripts/async_net_test.sh"),
    ));
    b
}

/// embassy-net over netfront (`enet`, the alternative `cargo xtask bench net` measures
/// against xenpv-net): TCP discard, `GET /bytes/4194304` with the right bytes, a 404,
/// UDP echo of 1..=1472 bytes, and `xl shutdown` ending it with status 0 within
/// [`SHUTDOWN_WITHIN_S`].
pub fn embassy_net() -> BootTest {
    let checks = vec![
        has("enet: vif0 up ip=169.254.100.2/24: serving udp/7 tcp/9 tcp/80 (embassy-net)"),
        Check::Report(dom0_like("peer: tcp-send PASS bytes=4194304")),
        Check::Report(
            dom0_like("peer: http-get PASS status=200 bytes=4194304 conns=1 ok=1")
                .hex_digits("fnv", 16),
        ),
        Check::Report(dom0_like("peer: http-get PASS status=404")),
        Check::Report(dom0_like(
            "peer: udp-echo PASS sent=50 returned=50 lost=0 mismatched=0",
        )),
        has("enet: shutdown poweroff: returning 0"),
        Check::Regex(r"dom0\| xl shutdown: the domU stopped after \d+ ms .*: ok"),
        Check::Report(runner_like("xenbox: dom0-script exit 0")),
        Check::ExitLine,
    ];
    let mut b = t(
        "async-embassy-net",
        Image::app(),
        "enet ip=169.254.100.2/24",
        0,
        checks,
    );
    b.domu = true;
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 600;
    b.dom0_script = Some(super::script_with(
        &[("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string())],
        include_str!("../scripts/enet_test.sh"),
    ));
    b
}
