//! Rows that boot the app as a domU of a Linux dom0 in the box (xl, xenstored,
//! xenconsoled): the console and xenstore, paging, and early errors on the ring console.
use super::faults::{fault, stack_overflow};
use super::{blk, metrics, net};
use crate::boottest::checks::{burst_complete, heap_pass, layout_ok};
use crate::boottest::reports::{like, report, runner_like};
use crate::boottest::{has, t, BootTest, Check, InitrdSpec};
use crate::cargo::Image;
use xenpv_contract::report::Report;
use xenpv_contract::status::parse_exit_line;

/// Every domU row, in the order they run.
pub fn rows() -> Vec<BootTest> {
    let hello = hello();
    let loaded = hello_under_load(&hello);
    let mut v = vec![hello, loaded];
    v.extend(paging());
    for b in &mut v {
        // The guest's last line must come through the stream too.
        b.checks.push(Check::ExitLine);
    }
    v.extend(early_errors());
    v.push(net::appliance());
    v.push(net::dhcp());
    v.push(as_xenpv_run());
    v.push(net::http_server_example());
    v.push(blk::blk());
    v.push(blk::files());
    v.push(blk::read_file());
    // Issue 24: nothing a client or a disk sends can stall, starve or crash the appliance.
    v.push(net::hostile_clients());
    v.push(net::shutdown_during("detach"));
    v.push(net::shutdown_during("attach"));
    v.push(net::fragments());
    v.push(net::smoke());
    v.extend(metrics::rows());
    v.push(blk::hostile_ext4());
    v.push(blk::stalled_disk());
    // The lifecycle as a toolstack drives it: reboot, shutdown mid-transfer, sysrq,
    // suspend refused, a crash request, feature keys.
    v.push(super::lifecycle::reboot());
    v.push(super::lifecycle::shutdown_mid_get());
    v.push(super::lifecycle::crash_request());
    // Save, restore and live migration: the appliance moves without dropping a
    // connection or a record.
    v.extend(super::migrate::rows());
    for b in &mut v {
        b.domu = true;
        b.timeout_s = b.timeout_s.max(240);
    }
    v
}

/// The console, xenstore and a grant dom0 maps, with a burst of 3000 lines.
fn hello() -> BootTest {
    let app = Image::app;
    let mut hello = t(
        "domu-hello-console-xenstore",
        app(),
        "xenstore grant burst=3000",
        0,
        vec![
            Check::Report(
                like("grant: offered to=dom0 access=read-only published=yes")
                    .nums(&["ref"])
                    .all("fnv= is 16 hex digits", |r| fnv_of(r).map(drop)),
            ),
            Check::Report(
                runner_like("xenbox: peer: mapped grant match=yes")
                    .words(&["4096", "bytes"])
                    .all("fnv= and expected= are 16 hex digits", |r| {
                        fnv_of(r)?;
                        hex16(r, "expected").map(drop)
                    })
                    .all("of a domU (domain > 0)", of_a_domu),
            ),
            Check::Custom("dom0 saw the page the domU granted", |o| {
                let offered = like("grant: offered").find_in(&o.text)?;
                let mapped = runner_like("xenbox: peer: mapped grant").find_in(&o.text)?;
                match (fnv_of(&offered)?, fnv_of(&mapped)?) {
                    (a, b) if a == b => Ok(()),
                    other => Err(format!("domU and dom0 hashes: {other:?}")),
                }
            }),
            has("xenpv-app: hello from xenpv-rt 0.1.0 (domU)"),
            Check::Report(
                like(r#"start_info: magic="xen-3.0-x86_64" flags=0x0 [] cmdline="xenstore grant burst=3000""#)
                    .nums(&["nr_pages"])
                    .all("console=mfn0x<hex>/evtchn<n>: a ring page and its channel", console_ring),
            ),
            Check::Report(
                like("xenstore: name=xenpv-app status_write=ok")
                    .at_least("domid", 1.0)
                    .nums(&["domid"]),
            ),
            Check::Report(runner_like("xenbox: xenstore-read").words(&["=", "ok"]).all(
                "read a domU's /local/domain/N/data/xenpv-app/status",
                domu_status_path,
            )),
            Check::Report(like("burst: done n=3000 lost=0")),
            Check::Custom(
                "the 3000-line burst arrived complete and in order",
                burst_complete,
            ),
            Check::Report(runner_like("xenbox: domU state=---s-- reason=0")),
        ],
    );
    hello.checks.extend(layout_ok());
    hello.memory_mib = 128;
    hello
}

/// The same run while every host core is busy: the stream must still carry all of it.
fn hello_under_load(hello: &BootTest) -> BootTest {
    let mut loaded = t(
        &format!("{}-under-load", hello.name),
        hello.image.clone(),
        &hello.cmdline,
        0,
        Vec::new(),
    );
    loaded.checks = vec![
        Check::Report(like("burst: done n=3000 lost=0")),
        Check::Custom(
            "the 3000-line burst arrived complete and in order",
            burst_complete,
        ),
        Check::Report(runner_like("xenbox: domU state=---s-- reason=0")),
    ];
    loaded.memory_mib = 128;
    loaded.under_load = true;
    loaded
}

/// Large initrds: 1024 MiB is the largest ramdisk xl can load (libxenguest's
/// XC_DOM_DECOMPRESS_MAX), and still spills the domU's boot mapping into L3[511].
fn paging() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
    for (mib, seed) in [(600, 2), (1024, 4)] {
        let mut b = t(
            &format!("domu-paging-1G-initrd-{mib}M"),
            app(),
            "split=1G",
            0,
            layout_ok(),
        );
        b.checks.push(Check::Report(runner_like(
            "xenbox: domU state=---s-- reason=0",
        )));
        if mib == 1024 {
            // libxenguest puts the p2m list after the ramdisk: past 1 GiB it is under L3[511].
            b.checks
                .push(Check::Report(report("start_info").hex("mfn_list").all(
                    "the domU's boot mapping reaches into L3[511]",
                    |r| {
                        let v = r.field("mfn_list").unwrap_or_default();
                        let va = u64::from_str_radix(v.trim_start_matches("0x"), 16)
                            .map_err(|e| e.to_string())?;
                        (va >= 0xffff_ffff_c000_0000)
                            .then_some(())
                            .ok_or(format!("mfn_list at {va:#x}"))
                    },
                )));
        }
        b.initrd = InitrdSpec::Checked { mib, seed };
        b.memory_mib = mib + 256;
        b.timeout_s = 400;
        v.push(b);
    }
    v
}

/// Early errors: a refused layout is said on the ring console (attached before any
/// step that can fail), and a fault is reported and symbolized through it.
fn early_errors() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
    v.push(t(
        "domu-refused-layout",
        app(),
        "split=2G",
        102,
        vec![
            has("xenpv-rt: fatal: split=\"2G\": the kernel/module split is 512M or 1G"),
            Check::ExitLine,
        ],
    ));
    let mut null_write = fault("null-write", "#PF page fault vector=14 error=0x2", false);
    null_write.name = "domu-fault-null-write".into();
    null_write.memory_mib = 128;
    v.push(null_write);
    let mut heap = t("domu-heap-stress", app(), "heap", 0, vec![heap_pass()]);
    heap.memory_mib = 1024;
    v.push(heap);
    v.push(stack_overflow("domu-fault-recursion"));
    // A panic and a fault while the console ring's lock is held (in the middle of a
    // console write): the report still comes out, with the status.
    let mut panic_held = t(
        "domu-panic-holding-console",
        app(),
        "panic hold-console",
        101,
        vec![
            Check::Regex(r"xenpv-rt: panicked at app/src/main\.rs:\d+:\d+: provoked panic"),
            Check::ExitLine,
        ],
    );
    panic_held.memory_mib = 128;
    v.push(panic_held);
    let mut fault_held = fault("null-write", "#PF page fault vector=14 error=0x2", false);
    fault_held.name = "domu-fault-holding-console".into();
    fault_held.cmdline = "fault=null-write hold-console".into();
    fault_held.memory_mib = 128;
    v.push(fault_held);
    v
}

/// A dom0 script in the box as `xenpv-run` boots it, whose `$PEER` is the xenpv-run
/// binary itself: the docs' example (`xl network-list $DOMID && ls …/brif`) passes, real
/// `$PEER` steps against the appliance (wait-up, tcp-echo, http-get) pass, and its last
/// step, `$PEER wait-up` to an address with no host, fails with the client's own FAIL
/// verdict and status 1 (not the stub's 127, never a silent 0), which is the run's (the
/// guest itself exits 0 when the box stops it after the script).
fn as_xenpv_run() -> BootTest {
    let mut b = t(
        "domu-dom0-script-as-xenpv-run",
        Image::app(),
        "net ip=169.254.100.2/24",
        1,
        vec![
            Check::Regex(r"dom0\| .*00:16:3e:00:00:02"),
            Check::Regex(r"dom0\| vif\d+\.0"),
            has("dom0| the docs' example passed"),
            has("dom0| peer: wait-up PASS "),
            has("dom0| peer: tcp-echo PASS "),
            has("dom0| peer: http-get PASS "),
            has("dom0| the peer's steps against the appliance passed"),
            Check::Regex(r"dom0\| peer: wait-up: 169\.254\.100\.99:80: "),
            has("dom0| peer: wait-up FAIL "),
            Check::NotContains("no peer program".into()),
            Check::Report(runner_like("xenbox: dom0-script exit 1")),
            Check::Report(like("net: shutdown requested how=poweroff")),
            Check::Custom("the guest itself exited 0 (1 is the script's)", |o| match o
                .guest_lines()
                .filter_map(parse_exit_line)
                .last()
            {
                Some(0) => Ok(()),
                other => Err(format!("the guest's last exit line names {other:?}")),
            }),
        ],
    );
    b.vifs = 1;
    b.as_xenpv_run = true;
    b.dom0_script = Some(include_str!("../scripts/xenpv_run_peer_test.sh"));
    b
}

/// A report's `key=` as 16 hex digits (an FNV-1a hash as the peer and the app print it).
fn hex16<'r>(r: &'r Report, key: &str) -> Result<&'r str, String> {
    let v = r.field(key).ok_or(format!("no {key}="))?;
    (v.len() == 16 && v.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(v)
        .ok_or(format!("{key}={v} is not 16 hex digits"))
}

/// The `fnv=` of a report.
fn fnv_of(r: &Report) -> Result<&str, String> {
    hex16(r, "fnv")
}

/// `… of domain N: …` with N > 0 (the peer mapped a domU's grant, not dom0's).
fn of_a_domu(r: &Report) -> Result<(), String> {
    r.words
        .windows(3)
        .find(|w| w[0] == "of" && w[1] == "domain")
        .and_then(|w| w[2].strip_suffix(':')?.parse::<u32>().ok())
        .filter(|&d| d > 0)
        .map(drop)
        .ok_or(format!("no `of domain N:` with N > 0 in {:?}", r.words))
}

/// `console=mfn0x<hex>/evtchn<n>`: a domU's console is a ring page and its channel.
fn console_ring(r: &Report) -> Result<(), String> {
    let c = r.field("console").ok_or("no console=")?;
    let ok = c
        .strip_prefix("mfn0x")
        .and_then(|c| c.split_once("/evtchn"))
        .is_some_and(|(m, e)| {
            !m.is_empty() && m.chars().all(|c| c.is_ascii_hexdigit()) && e.parse::<u32>().is_ok()
        });
    ok.then_some(()).ok_or(format!("console={c}"))
}

/// `xenbox: xenstore-read /local/domain/N/data/xenpv-app/status = ok`, N > 0.
fn domu_status_path(r: &Report) -> Result<(), String> {
    let ok = r.words.iter().any(|w| {
        w.strip_prefix("/local/domain/")
            .and_then(|w| w.strip_suffix("/data/xenpv-app/status"))
            .and_then(|d| d.parse::<u32>().ok())
            .is_some_and(|d| d > 0)
    });
    ok.then_some(())
        .ok_or(format!("no domU status path in {:?}", r.words))
}
