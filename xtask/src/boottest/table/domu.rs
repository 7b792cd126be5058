//! Rows that boot the app as a domU of a Linux dom0 in the box (xl, xenstored,
//! xenconsoled): the console and xenstore, paging, and early errors on the ring console.
use super::faults::{fault, stack_overflow};
use super::{blk, net};
use crate::boottest::checks::{burst_complete, layout_ok, HEAP_PASS};
use crate::boottest::{has, t, BootTest, Check, InitrdSpec};
use crate::cargo::Image;

/// Every domU row, in the order they run.
pub fn rows() -> Vec<BootTest> {
    let hello = hello();
    let loaded = hello_under_load(&hello);
    let mut v = vec![hello, loaded];
    v.extend(paging());
    for b in &mut v {
        // The guest's last line must come through the stream too.
        b.checks.push(has("xenpv-rt: exit status 0"));
    }
    v.extend(early_errors());
    v.push(net::appliance());
    v.push(net::dhcp());
    v.push(blk::blk());
    v.push(blk::files());
    // Issue 24: nothing a client or a disk sends can stall, starve or crash the appliance.
    v.push(net::hostile_clients());
    v.push(net::shutdown_during("detach"));
    v.push(net::shutdown_during("attach"));
    v.push(net::fragments());
    v.push(blk::hostile_ext4());
    v.push(blk::stalled_disk());
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
            Check::Regex(
                r"grant: offered ref \d+ to dom0 read-only, fnv=[0-9a-f]{16}, published=yes",
            ),
            Check::Regex(
                r"xenbox: peer: mapped grant \d+ of domain [1-9]\d*: 4096 bytes fnv=([0-9a-f]{16}) expected=[0-9a-f]{16} match=yes",
            ),
            Check::Custom("dom0 saw the page the domU granted", |o| {
                let said = |p: &str| {
                    o.text.lines().find(|l| l.contains(p)).and_then(|l| {
                        l.split_whitespace()
                            .find_map(|w| w.strip_prefix("fnv="))
                            .map(|f| f.trim_end_matches(','))
                    })
                };
                match (said("grant: offered ref"), said("peer: mapped grant")) {
                    (Some(a), Some(b)) if a == b => Ok(()),
                    other => Err(format!("domU and dom0 hashes: {other:?}")),
                }
            }),
            has("xenpv-app: hello from xenpv-rt 0.1.0 (domU)"),
            Check::Regex(
                r#"start_info: magic="xen-3\.0-x86_64" nr_pages=\d+ flags=0x0 \[\].* console=mfn0x[0-9a-f]+/evtchn\d+ cmdline="xenstore grant burst=3000""#,
            ),
            Check::Regex(r"xenstore: domid=[1-9]\d* name=xenpv-app status_write=ok"),
            Check::Regex(
                r"xenbox: xenstore-read /local/domain/[1-9]\d*/data/xenpv-app/status = ok",
            ),
            has("burst: done n=3000 lost=0"),
            Check::Custom(
                "the 3000-line burst arrived complete and in order",
                burst_complete,
            ),
            has("xenbox: domU state=---s-- reason=0"),
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
        has("burst: done n=3000 lost=0"),
        Check::Custom(
            "the 3000-line burst arrived complete and in order",
            burst_complete,
        ),
        has("xenbox: domU state=---s-- reason=0"),
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
        b.checks.push(has("xenbox: domU state=---s-- reason=0"));
        if mib == 1024 {
            // libxenguest puts the p2m list after the ramdisk: past 1 GiB it is under L3[511].
            b.checks.push(Check::Custom(
                "the domU's boot mapping reaches into L3[511]",
                |o| {
                    let line = o
                        .guest_lines()
                        .find(|l| l.starts_with("start_info:"))
                        .ok_or("no start_info line")?;
                    let v = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("mfn_list=0x"))
                        .ok_or("no mfn_list")?;
                    let va = u64::from_str_radix(v, 16).map_err(|e| e.to_string())?;
                    (va >= 0xffff_ffff_c000_0000)
                        .then_some(())
                        .ok_or(format!("mfn_list at {va:#x}"))
                },
            ));
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
            has("xenpv-rt: exit status 102"),
        ],
    ));
    let mut null_write = fault("null-write", "#PF page fault vector=14 error=0x2", false);
    null_write.name = "domu-fault-null-write".into();
    null_write.memory_mib = 128;
    v.push(null_write);
    let mut heap = t(
        "domu-heap-stress",
        app(),
        "heap",
        0,
        vec![Check::Regex(HEAP_PASS)],
    );
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
            has("xenpv-rt: exit status 101"),
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
