//! The rows judged on the lines a passing run prints (made here as the guest, dom0's
//! script and the box print them), and each check failing when the step it judges went
//! wrong.
use super::*;

/// The lines of a passing run with `ops` operations: each `op(i)` lines, the resume
/// (`kind`, epoch `i` for a new domain, 0 for a cancelled one).
fn passing(ops: u32, kind: &str, op: fn(u32) -> String) -> String {
    let get = "dom0| peer: http-get PASS status=200 fnv=d84ee1ab8006ba81 bytes=1048576 conns=1 ok=1 elapsed_ms=117 mbit_s=71.39\n";
    let mut t = String::from(
        "domU| net: serving udp/7 tcp/7 tcp/9 tcp/80 on 1 vif(s)\n\
         domU| net: records vbd=51712 sectors=32768 every_ms=1000\n\
         dom0| the held echo connection is up: local=169.254.100.1:39182\n",
    );
    t += get;
    t += "dom0| state before: ticks=17 mono_ns=41486721355 epoch=0 last_seq=0 written=1 mono_back=0: ok\n";
    for i in 1..=ops {
        let epoch = if kind == "new" { i } else { 0 };
        t += "domU| suspend: acked\n";
        t += &format!(
            "domU| suspend: resumed kind={kind} rc={} epoch={epoch} domid={} mono_before={} mono_after={} ms=300\n",
            u32::from(kind != "new"),
            i + 1,
            u64::from(i) * 10_000_000_000,
            u64::from(i) * 10_000_000_000 + 5
        );
        if kind == "new" {
            t += &format!("xenbox: domU xenpv-app resumed: now domain {}\n", i + 1);
            t += &format!("domU| xenpv-rt: vif0 resumed epoch={i} ms=40 garp=1\n");
            t += &format!("domU| disk: resumed id=51712 epoch={i} requeued=0 in_flight=0 indirect=32 flush=1 request_bytes=131072 ms=30\n");
        }
        t += &op(i);
        t += get;
    }
    t += "domU| net: records pass=1 checked=60 written=60 bad=none write_errors=0\n\
          dom0| records in the guest: net: records pass=1 checked=60 written=60 bad=none write_errors=0\n\
          dom0| peer: echo-hold PASS conns=1 rounds=280 bytes=17920 max_round_ms=12000 local=169.254.100.1:39182\n\
          domU| xenpv-rt: shutdown requested (poweroff)\n\
          domU| net: shutdown requested how=poweroff\n\
          domU| net: state final ticks=700 mono_back=0 records=1 written=62 write_errors=0\n\
          domU| xenpv-rt: exit status 0\n\
          dom0| xl shutdown -w 4: status 0 after 1800 ms\n\
          dom0| peer: disk-records PASS records=62 last_seq=61 last_mono_ns=70000000000 last_epoch=3\n\
          xenbox: dom0-script exit 0\n";
    t
}

fn judge(row: &BootTest, text: &str) -> Result<(), String> {
    let o = Outcome {
        status: Ok(0),
        text: text.into(),
        secs: 1.0,
        log: "/dev/null".into(),
    };
    crate::boottest::run::evaluate(row, &o, None)
}

/// `judge` passes on `text`, and fails on each `(from, to)` replacement.
fn each_can_fail(row: &BootTest, text: &str, breaks: &[(&str, &str)]) {
    judge(row, text).unwrap();
    for (from, to) in breaks {
        let broken = text.replacen(from, to, 1);
        assert_ne!(&broken, text, "{from}");
        let e = judge(row, &broken).expect_err(from);
        println!("{from:?} -> {to:?}: {e}");
    }
}

/// What every row of the appliance checks the same way.
const COMMON_BREAKS: &[(&str, &str)] = &[
    ("every_ms=1000", "every_ms=0"),
    ("echo-hold PASS conns=1", "echo-hold FAIL reset conns=1"),
    ("rounds=280", "rounds=1"),
    ("guest: net: records pass=1", "guest: net: records pass=0"),
    ("domU| net: records pass=1", "domU| net: records pass=0"),
    (
        "bad=none write_errors=0\nd",
        "bad=at7-magic write_errors=0\nd",
    ),
    (
        "disk-records PASS records=62",
        "disk-records FAIL bad-record records=62",
    ),
    ("records=62", "records=61"),
    ("mono_back=0 records=1", "mono_back=2 records=1"),
    ("written=62 write_errors=0", "written=62 write_errors=99"),
    (
        "written=60 bad=none write_errors=0",
        "written=60 bad=none write_errors=99",
    ),
    (
        "mono_ns=41486721355 epoch=0 last_seq=0 written=1 mono_back=0: ok",
        "FAIL",
    ),
    ("dom0-script exit 0", "dom0-script exit 1"),
    ("how=poweroff", "how=reboot"),
];

#[test]
fn save_restore_is_judged_and_each_check_can_fail() {
    let op = |i: u32| {
        format!(
            "dom0| xl save {i}: 5000 ms, 134217728 bytes: ok\n\
             dom0| xl restore {i}: 6000 ms: now domain {}: ok\n\
             dom0| state after restore {i}: ticks={} mono_ns={} epoch={i} last_seq=9 written=10 mono_back=0: ok\n",
            i + 1,
            100 * i,
            u64::from(i) * 10_000_000_000 + 9
        )
    };
    let text = passing(SAVE_ROUNDS, "new", op);
    let mut breaks = COMMON_BREAKS.to_vec();
    breaks.extend([
        (
            "xl save 3: 5000 ms, 134217728 bytes: ok",
            "xl save 3 failed: FAIL",
        ),
        (
            "xl restore 3: 6000 ms: now domain 4: ok",
            "xl restore 3 failed",
        ),
        (
            "state after restore 3: ticks=300",
            "state after restore 3: no answer",
        ),
        ("epoch=2", "epoch=5"),
        ("mono_after=20000000005", "mono_after=19000000005"),
        ("kind=new rc=0 epoch=3", "kind=cancelled rc=1 epoch=3"),
        ("xenbox: domU xenpv-app resumed: now domain 3\n", ""),
        ("http-get PASS", "http-get FAIL"),
        (
            "vif0 resumed epoch=3 ms=40 garp=1",
            "vif0 resumed epoch=3 ms=40 garp=0",
        ),
        (
            "disk: resumed id=51712 epoch=3",
            "disk: resumed id=51712 epoch=2",
        ),
    ]);
    each_can_fail(&save_restore(), &text, &breaks);
}

#[test]
fn the_checkpoint_is_judged_and_each_check_can_fail() {
    let op = |_| {
        "dom0| xl save -c: 3000 ms, 134217728 bytes: ok\n\
         dom0| after xl save -c: still domain 1: ok\n"
            .to_string()
    };
    let text = passing(1, "cancelled", op);
    let mut breaks = COMMON_BREAKS.to_vec();
    breaks.extend([
        ("kind=cancelled rc=1 epoch=0", "kind=new rc=0 epoch=1"),
        (
            "after xl save -c: still domain 1: ok",
            "after xl save -c: domain 1 is now '2': FAIL",
        ),
        (
            "dom0| xl save -c: 3000 ms",
            "dom0| xl save -c failed after 3000 ms",
        ),
        (
            "domU| suspend: acked\n",
            "domU| xenpv-rt: vif0 resumed epoch=0 ms=3 garp=1\n",
        ),
    ]);
    each_can_fail(&save_checkpoint(), &text, &breaks);
}

#[test]
fn the_killed_migration_is_judged_and_each_check_can_fail() {
    let op = |_| {
        "dom0| killed the receiver (pid 812) mid-stream: ok\n\
         dom0| xl migrate failed (status 1) and resumed the domU at the sender: ok\n\
         dom0| after the killed migration: still domain 1: ok\n"
            .to_string()
    };
    let text = passing(1, "cancelled", op);
    let mut breaks = COMMON_BREAKS.to_vec();
    breaks.extend([
        ("kind=cancelled rc=1", "kind=new rc=0"),
        (
            "domU| suspend: resumed kind=cancelled",
            "domU| suspend: refused reason=x",
        ),
        (
            "killed the receiver (pid 812) mid-stream: ok",
            "no receiver to kill",
        ),
        (
            "resumed the domU at the sender: ok",
            "no 'resuming at sender': FAIL",
        ),
    ]);
    each_can_fail(&migrate_receiver_killed(), &text, &breaks);
}

#[test]
fn the_refusal_is_judged_and_each_check_can_fail() {
    let get =
        "dom0| peer: http-get PASS status=200 bytes=38 conns=1 ok=1 elapsed_ms=9 mbit_s=0.03\n";
    let text = format!(
        "domU| http-server: serving http://169.254.100.2:80/\n{get}\
         dom0| control/feature-suspend is '', not 1: ok\n\
         domU| xenpv-rt: suspend refused: built without the feature `suspend` (no save, restore or migration)\n\
         dom0| xl save failed after 60210 ms: Saving to /run/refused new xl format libxl: error: libxl_dom_suspend.c:358:suspend_common_wait_guest_timeout: Domain 1:guest didn't acknowledge suspend, cancelling request Failed to save domain, resuming domain\n\
         dom0| after the refused save: still domain 1, running: ok\n{get}\
         xenbox: dom0-script exit 0\n\
         domU| http-server: shutdown requested\n\
         domU| xenpv-rt: exit status 0\n"
    );
    each_can_fail(
        &suspend_refused(),
        &text,
        &[
            (
                "is '', not 1: ok",
                "is '1' on a consumer without suspend: FAIL",
            ),
            (
                "xenpv-rt: suspend refused",
                "suspend: acked\nxenpv-rt: suspended",
            ),
            ("didn't acknowledge suspend", "domain did not respond"),
            (
                "still domain 1, running: ok",
                "domain 1 is now '' (state gone): FAIL",
            ),
            ("http-get PASS", "http-get FAIL"),
        ],
    );
}
