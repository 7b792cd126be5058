//! The balloon's row: the appliance as a domU follows `xl mem-set` (xenpv-rt's balloon
//! driver), checked from dom0 (`xl list`, xenstore) and from the guest's reports.
use super::{appliance_row, script_with};
use crate::boottest::reports::{dom0_like, like, report};
use crate::boottest::{BootTest, Check};

/// How soon after `xl shutdown` the appliance must have stopped.
const SHUTDOWN_S: u64 = 10;

/// FNV-1a 64 of `heap: 150 MiB ok\n`, the heap probe's 200 body.
const HEAP_FNV: &str = "81ee90c2f64ced1d";

/// `domu-balloon`: the appliance (256 MiB, one vif, `heap-probe`) is set to 96 MiB
/// (`xl list` shows it within 20 s, the guest says how many frames it gave back, then
/// serves a 64 MiB `/bytes` exactly), back to 256 MiB (and a 150 MiB heap allocation
/// succeeds), then to 8 MiB, below its floor: it stops there, says so (a report and
/// `data/balloon/shortfall_kb`, read by dom0) and keeps serving HTTP and TCP echo; and
/// back to 256 MiB (the shortfall 0 again, 150 MiB of heap again). The guest checks
/// itself after each change (p2m, M2P, direct map, allocator, Xen's count).
pub fn balloon() -> BootTest {
    let pass = |example: &str| Check::Report(dom0_like(example));
    let mut b = appliance_row(
        "domu-balloon",
        "net ip=169.254.100.2/24 heap-probe",
        900,
        vec![
            Check::Report(like("balloon: ready reserve_kb=4096").nums(&["nr_pages", "xen_pages"])),
            Check::Regex(r"dom0\| mem-set 96: xl list shows 9[4-8] MiB after \d+ ms \(limit 20 s\): ok"),
            Check::Report(
                like("balloon: target_kb=98304 current_kb=98304 shortfall_kb=0 populated=0 errors=0 leaked=0")
                    .at_least("released", 40_000.0)
                    .nums(&["ms", "floor_kb"]),
            ),
            Check::Report(
                dom0_like("peer: http-get PASS status=200 bytes=67108864 conns=1 ok=1")
                    .hex_digits("fnv", 16),
            ),
            Check::Regex(r"dom0\| mem-set 256: xl list shows 25[4-8] MiB after \d+ ms \(limit 60 s\): ok"),
            Check::Report(
                like("balloon: target_kb=262144 current_kb=262144 shortfall_kb=0 released=0 errors=0 leaked=0")
                    .at_least("populated", 40_000.0)
                    .nums(&["ms"]),
            ),
            pass("peer: http-get PASS status=200 bytes=17 conns=1 ok=1"),
            // Below the floor: as low as it can go, the 150 MiB the heap no longer uses
            // given back too.
            Check::Report(
                like("balloon: target_kb=8192 populated=0")
                    .at_least("shortfall_kb", 1.0)
                    .at_least("heap_returned_kb", 100_000.0)
                    .at_most("current_kb", 96_000.0)
                    .nums(&["released", "floor_kb", "ms"]),
            ),
            Check::Report(
                like("balloon: floor reached target_kb=8192")
                    .at_least("shortfall_kb", 1.0)
                    .nums(&["floor_kb"]),
            ),
            Check::Regex(r"dom0\| mem-set 8: shortfall_kb=[1-9]\d* after \d+ ms, xl list shows \d+ MiB \(8 \+ shortfall: \d+\): ok"),
            Check::Report(
                dom0_like("peer: http-get PASS status=200 bytes=1048576 conns=1 ok=1")
                    .hex_digits("fnv", 16),
            ),
            pass("peer: tcp-echo PASS bytes=262144 conns=1 ok=1"),
            // Back up from the floor: every frame given at 8 MiB taken again.
            Check::Report(
                like("balloon: target_kb=262144 current_kb=262144 shortfall_kb=0 released=0 leaked=0")
                    .at_least("populated", 50_000.0)
                    .nums(&["ms"]),
            ),
            Check::Regex(r"dom0\| back to 256: shortfall_kb=0: ok"),
            Check::Report(
                like("balloon: self-check ok pfns=65536").nums(&["ballooned", "ptes", "xen_pages"]),
            ),
            Check::NoReport(report("balloon").words(&["self-check", "failed"])),
            Check::Regex(r"dom0\| xl shutdown: the domU stopped after \d+ ms .*: ok"),
        ],
    );
    b.domu = true;
    b.dom0_script = Some(script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_S.to_string()),
            ("HEAP_FNV", HEAP_FNV.to_string()),
        ],
        include_str!("../scripts/balloon_test.sh"),
    ));
    b
}
