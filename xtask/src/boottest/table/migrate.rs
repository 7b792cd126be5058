//! Save, restore and live migration of the appliance (a vif, and a raw disk its writer
//! fills with a record a second): `xl save` + `xl restore` three times, `xl save -c`, ten
//! localhost `xl migrate`s, a migration whose receiver is killed, and a consumer without
//! the runtime's `suspend` refusing. After each operation the appliance must serve
//! (`/bytes/1048576` checked), one echo connection opened before the first operation
//! must still echo after the last, its tick counter and clock must not go back
//! (`GET /state`), and its records must verify in the guest (`GET /records`) and from
//! dom0 after it ended (`xenbox-peer disk-records`).
use super::{appliance_row, script_with};
use crate::boottest::reports::{dom0_like, like, reports, runner_like, Source};
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;
use crate::qemu::Outcome;
use xenpv_contract::report::Report;

/// `xl save` + `xl restore` rounds of `domu-save-restore`.
const SAVE_ROUNDS: u32 = 3;
/// Localhost migrations of `domu-migrate`.
const MIGRATIONS: u32 = 10;
/// The appliance's memory in these rows: a save image and, during a migration, a second
/// copy of the domain must fit in the box.
const MEMORY_MIB: u64 = 128;
/// The records disk (raw; 32768 sectors, nine hours of records).
const DISK_MIB: u64 = 16;

/// The save/restore/migration rows, in the order they run.
pub fn rows() -> Vec<BootTest> {
    vec![
        save_restore(),
        save_checkpoint(),
        migrate(),
        migrate_receiver_killed(),
        suspend_refused(),
    ]
}

/// Does the appliance build with the runtime's `suspend` (app/Cargo.toml: its feature
/// `suspend` forwards to `xenpv-rt/suspend` and is on by default)? Read at test time, so
/// the rows that depend on it (`domu-reboot`'s feature keys) follow the manifest.
pub fn appliance_suspends() -> bool {
    let manifest =
        std::fs::read_to_string(crate::root().join("app/Cargo.toml")).unwrap_or_default();
    suspends_in(&manifest)
}

/// Does this app manifest forward `suspend` to the runtime and turn it on by default?
fn suspends_in(manifest: &str) -> bool {
    let line = |key: &str| {
        manifest
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    line("suspend =").contains("\"xenpv-rt/suspend\"") && line("default =").contains("\"suspend\"")
}

/// An appliance row for these operations: the writer on (`records`), a long TCP idle
/// limit (the held connection waits through each operation), a blank raw disk, and the
/// shared dom0 functions (migrate_prelude.sh) before `script`.
fn row(
    name: &str,
    timeout_s: u64,
    rounds: u32,
    script: &'static str,
    checks: Vec<Check>,
) -> BootTest {
    let mut b = appliance_row(
        name,
        "net records ip=169.254.100.2/24 tcp_idle=3600",
        timeout_s,
        checks,
    );
    b.checks.extend(common_checks(rounds));
    b.memory_mib = MEMORY_MIB;
    // The box's room for a save image and a second copy, and its shadow-paging Xen
    // (log-dirty, which a PV live migration needs).
    b.migrate = true;
    let prelude = include_str!("../scripts/migrate_prelude.sh");
    b.dom0_script = Some(script_with(
        &[("ROUNDS", rounds.to_string())],
        Box::leak(format!("{prelude}{script}").into_boxed_str()),
    ));
    b.prepare = Some(|b| {
        let path = crate::disks::blank(&format!("{}.img", b.name), DISK_MIB)?;
        b.disks = vec![crate::xenbox::Disk {
            path,
            read_only: false,
            throttle: None,
        }];
        Ok(())
    });
    b
}

/// What every such row ends with: the writer's disk connected, the held connection
/// passing on its one connection, the records verified in the guest and from dom0 (as
/// many as the guest wrote), the clock never seen going back, no dom0 line failing. A
/// write in flight when the guest moves to a new domain fails (its outcome unknown) and
/// is written again with the same seq: at most two such per operation (`ops`).
fn common_checks(ops: u32) -> Vec<Check> {
    let errors = f64::from(2 * ops);
    vec![
        Check::Report(like("net: records vbd=51712 every_ms=1000").nums(&["sectors"])),
        Check::Report(
            dom0_like("peer: echo-hold PASS conns=1")
                .at_least("rounds", 2.0)
                .nums(&["bytes", "max_round_ms"]),
        ),
        Check::Regex(r"dom0\| records in the guest: net: records pass=1 .*bad=none"),
        Check::Report(
            like("net: records pass=1 bad=none")
                .nums(&["checked"])
                .at_most("write_errors", errors),
        ),
        Check::Report(dom0_like("peer: disk-records PASS").at_least("records", 5.0)),
        Check::Report(
            like("net: state final mono_back=0 records=1")
                .nums(&["ticks"])
                .at_most("write_errors", errors),
        ),
        Check::Custom(
            "dom0 finds every record the guest wrote",
            records_as_written,
        ),
        Check::Custom("no dom0 line says FAIL", no_dom0_fail),
    ]
}

/// `xl save` + `xl restore`, [`SAVE_ROUNDS`] times: each resume in a new domain with
/// the next epoch and the clock kept, the box following the new domain, the appliance
/// serving after each.
pub fn save_restore() -> BootTest {
    row(
        "domu-save-restore",
        1800,
        SAVE_ROUNDS,
        include_str!("../scripts/save_restore_test.sh"),
        vec![
            Check::Regex(r"dom0\| xl save 3: \d+ ms, \d+ bytes: ok"),
            Check::Regex(r"dom0\| xl restore 3: \d+ ms: now domain \d+: ok"),
            Check::Regex(r"dom0\| state after restore 3: ticks=\d+ .*: ok"),
            // The vif and the disk re-handshaken with the last domain's backends.
            Check::Report(like("xenpv-rt: vif0 resumed epoch=3 garp=1").nums(&["ms"])),
            Check::Report(like("disk: resumed id=51712 epoch=3").nums(&["requeued", "ms"])),
            Check::Custom("three resumes in new domains, epochs 1 to 3", |o| {
                resumes(o, "new", SAVE_ROUNDS)
            }),
            Check::Custom("the box follows each new domain", |o| {
                box_follows(o, SAVE_ROUNDS)
            }),
            Check::Custom("/bytes/1048576 served before and after each restore", |o| {
                gets(o, SAVE_ROUNDS + 1)
            }),
        ],
    )
}

/// `xl save -c` (a checkpoint): the guest resumes in the same domain (cancelled, epoch
/// 0), its vif not reconnected, and serves on.
pub fn save_checkpoint() -> BootTest {
    row(
        "domu-save-checkpoint",
        900,
        1,
        include_str!("../scripts/save_checkpoint_test.sh"),
        vec![
            Check::Regex(r"dom0\| xl save -c: \d+ ms, \d+ bytes: ok"),
            Check::Regex(r"dom0\| after xl save -c: still domain \d+: ok"),
            Check::Report(like("suspend: resumed kind=cancelled epoch=0").nums(&["ms", "rc"])),
            Check::NoReport(like("suspend: resumed kind=new")),
            Check::NoReport(like("xenpv-rt: vif0 resumed")),
            Check::NoReport(like("disk: resumed")),
            Check::Custom("/bytes/1048576 served before and after", |o| gets(o, 2)),
        ],
    )
}

/// [`MIGRATIONS`] live migrations to the same host: each a resume in a new domain with
/// the next epoch, the appliance serving after each, Xen's log clean. Needs the box's
/// hypervisor with shadow paging (log-dirty for PV guests).
pub fn migrate() -> BootTest {
    row(
        "domu-migrate",
        3600,
        MIGRATIONS,
        include_str!("../scripts/migrate_test.sh"),
        vec![
            Check::Regex(r"dom0\| xl migrate 10: \d+ ms: domain \d+ is now domain \d+: ok"),
            Check::Regex(r"dom0\| state after migration 10: ticks=\d+ .*: ok"),
            has("dom0| xl dmesg: 0 lines with error/failed/bug/assert"),
            Check::Report(like("xenpv-rt: vif0 resumed epoch=10 garp=1").nums(&["ms"])),
            Check::Report(like("disk: resumed id=51712 epoch=10").nums(&["requeued", "ms"])),
            Check::Custom("ten resumes in new domains, epochs 1 to 10", |o| {
                resumes(o, "new", MIGRATIONS)
            }),
            Check::Custom("the box follows each new domain", |o| {
                box_follows(o, MIGRATIONS)
            }),
            Check::Custom(
                "/bytes/1048576 served before and after each migration",
                |o| gets(o, MIGRATIONS + 1),
            ),
        ],
    )
}

/// A live migration whose receiver is killed mid-stream: xl resumes the domain at the
/// sender (the cancelled path if the guest had suspended, else it never did), which
/// keeps its id and serves on.
pub fn migrate_receiver_killed() -> BootTest {
    row(
        "domu-migrate-receiver-killed",
        1200,
        1,
        include_str!("../scripts/migrate_receiver_killed_test.sh"),
        vec![
            Check::Regex(r"dom0\| killed the receiver \(pid \d+\) mid-stream: ok"),
            Check::Regex(
                r"dom0\| xl migrate failed \(status \d+\) and resumed the domU at the sender: ok",
            ),
            Check::Regex(r"dom0\| after the killed migration: still domain \d+: ok"),
            Check::NoReport(like("suspend: resumed kind=new")),
            Check::Custom(
                "cancelled at the sender, or never suspended",
                cancelled_or_never,
            ),
            Check::Custom("/bytes/1048576 served before and after", |o| gets(o, 2)),
        ],
    )
}

/// A consumer built without the runtime's `suspend` (examples/http-server): `xl save`
/// asks it to suspend; it refuses visibly, never acknowledges, xl gives up and fails,
/// and the guest is the same domain, serving on; it never offered `feature-suspend`.
pub fn suspend_refused() -> BootTest {
    let mut b = t(
        "domu-suspend-refused",
        Image::HttpServer,
        "ip=169.254.100.2/24",
        0,
        vec![
            Check::Regex(r"dom0\| control/feature-suspend is '', not 1: ok"),
            Check::Regex(r"xenpv-rt: suspend refused|suspend: refused reason="),
            Check::NoReport(like("suspend: acked")),
            Check::Regex(r"dom0\| xl save failed after \d+ ms: .*didn't acknowledge suspend"),
            Check::Regex(r"dom0\| after the refused save: still domain \d+, running: ok"),
            Check::Custom("served before and after the refused save", |o| {
                count_dom0(o, "http-get", |r| r.field("status") == Some("200"), 2)
            }),
            has("http-server: shutdown requested"),
            Check::Report(runner_like("xenbox: dom0-script exit 0")),
            Check::ExitLine,
        ],
    );
    b.vifs = 1;
    b.memory_mib = MEMORY_MIB;
    b.timeout_s = 600;
    b.dom0_script = Some(script_with(
        &[],
        include_str!("../scripts/suspend_refused_test.sh"),
    ));
    b
}

/// dom0's PASS reports of `cmd` meeting `f`: at least `n` of them.
fn count_dom0(o: &Outcome, cmd: &str, f: fn(&Report) -> bool, n: u32) -> Result<(), String> {
    let got = reports(&o.text, Source::Dom0, "peer")
        .filter(|r| r.words.first().map(String::as_str) == Some(cmd))
        .filter(|r| r.words.get(1).map(String::as_str) == Some("PASS") && f(r))
        .count();
    (got >= n as usize)
        .then_some(())
        .ok_or(format!("{got} passing `peer: {cmd}` reports, {n} expected"))
}

/// At least `n` checked `GET /bytes/1048576`.
fn gets(o: &Outcome, n: u32) -> Result<(), String> {
    count_dom0(o, "http-get", |r| r.field("bytes") == Some("1048576"), n)
}

/// Exactly `n` resumes of `kind`, epochs 1 to `n` in order, each with the clock kept
/// (`mono_after` ≥ `mono_before`).
fn resumes(o: &Outcome, kind: &str, n: u32) -> Result<(), String> {
    let mut epochs = Vec::new();
    for r in reports(&o.text, Source::Guest, "suspend") {
        if r.words.first().map(String::as_str) != Some("resumed") || r.field("kind") != Some(kind) {
            continue;
        }
        let num = |k: &str| r.field(k).and_then(|v| v.parse::<u64>().ok());
        match (num("epoch"), num("mono_before"), num("mono_after")) {
            (Some(e), Some(b), Some(a)) if a >= b => epochs.push(e),
            _ => return Err(format!("`{r}`: no epoch, or the clock went back")),
        }
    }
    let want: Vec<u64> = (1..=u64::from(n)).collect();
    (epochs == want).then_some(()).ok_or(format!(
        "resumes kind={kind} with epochs {epochs:?}, expected {want:?}"
    ))
}

/// The box said `xenbox: domU NAME resumed: now domain N` at least `n` times.
fn box_follows(o: &Outcome, n: u32) -> Result<(), String> {
    let re = regex::Regex::new(r"xenbox: domU \S+ resumed: now domain \d+").expect("a regex");
    let got = re.find_iter(&o.text).count();
    (got >= n as usize)
        .then_some(())
        .ok_or(format!("the box followed {got} new domains, {n} expected"))
}

/// The guest resumed cancelled after its ack, or never acknowledged a suspend.
fn cancelled_or_never(o: &Outcome) -> Result<(), String> {
    let acked = reports(&o.text, Source::Guest, "suspend")
        .filter(|r| r.words.first().map(String::as_str) == Some("acked"))
        .count();
    let cancelled = reports(&o.text, Source::Guest, "suspend")
        .filter(|r| r.field("kind") == Some("cancelled"))
        .count();
    (acked == cancelled).then_some(()).ok_or(format!(
        "{acked} suspends acknowledged, {cancelled} resumed cancelled"
    ))
}

/// dom0's `disk-records` counts as many records as the guest said it wrote at the end.
fn records_as_written(o: &Outcome) -> Result<(), String> {
    let dom0 = reports(&o.text, Source::Dom0, "peer")
        .filter(|r| r.words.first().map(String::as_str) == Some("disk-records"))
        .find_map(|r| r.field("records").map(str::to_string));
    let guest = reports(&o.text, Source::Guest, "net")
        .filter(|r| r.words == ["state", "final"])
        .find_map(|r| r.field("written").map(str::to_string));
    match (dom0, guest) {
        (Some(d), Some(g)) if d == g => Ok(()),
        (d, g) => Err(format!("dom0 found records={d:?}, the guest wrote {g:?}")),
    }
}

/// No line of the dom0 script says FAIL.
fn no_dom0_fail(o: &Outcome) -> Result<(), String> {
    match o
        .text
        .lines()
        .find(|l| l.starts_with("dom0| ") && l.contains("FAIL"))
    {
        Some(l) => Err(format!("`{l}`")),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod judged;

#[cfg(test)]
mod tests {
    use super::suspends_in;

    #[test]
    fn the_manifest_says_whether_the_appliance_suspends() {
        let on = "[features]\ndefault = [\"suspend\"]\nsuspend = [\"xenpv-rt/suspend\"]\n";
        assert!(suspends_in(on));
        assert!(!suspends_in("[features]\nsuspend = []\n"));
        assert!(!suspends_in(
            "[features]\nsuspend = [\"xenpv-rt/suspend\"]\n"
        ));
        assert!(!suspends_in(""));
        // What the appliance's manifest says now is read the same way.
        let _ = super::appliance_suspends();
    }
}
