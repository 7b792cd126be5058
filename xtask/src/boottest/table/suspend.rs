//! Suspend in the runtime (feature `suspend`) on a guest without devices: the app's
//! `ticker` word, built with the feature, through `xl save -c` (the same domain goes on)
//! and `xl save` + `xl restore` (a new domain, the epoch one more), its monotonic clock
//! never going back. The rows with devices (vif, disk, migrate) are in `migrate.rs`.
use super::script_with;
use crate::boottest::reports::{like, runner_like};
use crate::boottest::{t, BootTest, Check};
use crate::cargo::Image;
use crate::qemu::Outcome;

/// `xl save` + `xl restore` rounds after the checkpoint.
const SAVES: u32 = 3;
/// `xl migrate` rounds to the same host.
const MIGRATES: u32 = 3;
/// How soon after `xl shutdown` the guest must have stopped.
const SHUTDOWN_WITHIN_S: u64 = 10;

/// The app built with the runtime's `suspend` feature.
pub fn image() -> Image {
    Image::App {
        features: vec!["xenpv-rt/suspend".into()],
    }
}

/// `domu-save-restore-bare`: the checkpoint resumes with `kind=cancelled epoch=0` in the
/// same domain; each of [`SAVES`] save + restore rounds with `kind=new` and the next
/// epoch in a new domain; the clock never goes back (in the resume lines and in the
/// ticks); `xl shutdown` ends it with status 0.
pub fn bare() -> BootTest {
    let mut checks = vec![
        Check::Regex(r"dom0\| /local/domain/\d+/control/feature-suspend = '1' after \d+ ms: ok"),
        Check::Report(like("suspend: acked")),
        Check::Regex(r"suspend: resumed kind=cancelled rc=1 epoch=0 domid=\d+ "),
        Check::Regex(r"dom0\| xl save -c: domain \d+ goes on after \d+ ms: ok"),
    ];
    for i in 1..=SAVES {
        checks.push(Check::Regex(Box::leak(
            format!(r"suspend: resumed kind=new rc=0 epoch={i} domid=\d+ ").into_boxed_str(),
        )));
        checks.push(Check::Regex(Box::leak(
            format!(r"dom0\| save/restore {i}: domain \d+ is now domain \d+ .*: ok")
                .into_boxed_str(),
        )));
    }
    bare_row(
        "domu-save-restore-bare",
        checks,
        saves_in_order,
        SAVES,
        script(true, SAVES, 0),
    )
}

/// `domu-migrate-bare`: [`MIGRATES`] × `xl migrate` to the same host (on the box's
/// shadow-paging Xen: log-dirty), each a new domain with the next epoch, the clock never
/// back, the guest ticking on; `xl shutdown` ends it with status 0.
pub fn migrate() -> BootTest {
    let mut checks = vec![Check::Regex(
        r"dom0\| /local/domain/\d+/control/feature-suspend = '1' after \d+ ms: ok",
    )];
    for i in 1..=MIGRATES {
        checks.push(Check::Regex(Box::leak(
            format!(r"suspend: resumed kind=new rc=0 epoch={i} domid=\d+ ").into_boxed_str(),
        )));
        checks.push(Check::Regex(Box::leak(
            format!(r"dom0\| migrate {i}: domain \d+ is now domain \d+ .*: ok").into_boxed_str(),
        )));
    }
    bare_row(
        "domu-migrate-bare",
        checks,
        migrations_in_order,
        MIGRATES,
        script(false, 0, MIGRATES),
    )
}

/// A bare row's common end: the resumes in order (`in_order`), the ticker stopped at
/// epoch `last_epoch` with its clock never back, `xl shutdown` within its limit, the
/// script and the guest ending well; a 64 MiB domU with room for a second copy (and the
/// box's shadow-paging Xen).
fn bare_row(
    name: &str,
    mut checks: Vec<Check>,
    in_order: fn(&Outcome) -> Result<(), String>,
    last_epoch: u32,
    dom0_script: &'static str,
) -> BootTest {
    checks.extend([
        Check::Custom("the resumes in order, the clock never back", in_order),
        Check::Report(like(&format!(
            "ticker: stopped how=poweroff back=0 epoch={last_epoch}"
        ))),
        Check::Regex(r"dom0\| xl shutdown: the domU stopped after \d+ ms .*: ok"),
        Check::Report(runner_like("xenbox: dom0-script exit 0")),
        Check::ExitLine,
    ]);
    let mut b = t(name, image(), "ticker tick_every=2", 0, checks);
    b.domu = true;
    // Room for the save image in dom0 (and the shadow-paging Xen the box uses for it).
    b.migrate = true;
    b.memory_mib = 64;
    b.timeout_s = 1200;
    b.dom0_script = Some(dom0_script);
    b
}

/// The dom0 script: the checkpoint or not, then `saves` save + restore rounds, then
/// `migrates` migrations.
fn script(checkpoint: bool, saves: u32, migrates: u32) -> &'static str {
    script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string()),
            ("CHECKPOINT", u8::from(checkpoint).to_string()),
            ("SAVES", saves.to_string()),
            ("MIGRATES", migrates.to_string()),
        ],
        include_str!("../scripts/suspend_bare_test.sh"),
    )
}

/// The bare row's resumes: cancelled (epoch 0), then new with epochs 1..=SAVES.
fn saves_in_order(o: &Outcome) -> Result<(), String> {
    let mut want = vec![("cancelled".to_string(), 0u32)];
    want.extend((1..=SAVES).map(|i| ("new".to_string(), i)));
    resumes_in_order(o, &want)
}

/// The migrate row's resumes: new with epochs 1..=MIGRATES.
fn migrations_in_order(o: &Outcome) -> Result<(), String> {
    let want: Vec<_> = (1..=MIGRATES).map(|i| ("new".to_string(), i)).collect();
    resumes_in_order(o, &want)
}

/// A field's value in a report line (`key=value`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The resume lines are `want` (kind, epoch), in the order of their `mono_before`, and
/// the guest's clock never goes back. Judged on the values, not on the order the lines
/// reached the console log (across a migration the box streams two logs, and lines of
/// the old and the new domain can interleave): the ticks, in the order of their count,
/// have rising times; each resume's `mono_after` is at least its `mono_before`; a resume
/// into epoch E comes after every tick of an earlier epoch and before every tick of E
/// or later.
fn resumes_in_order(o: &Outcome, want: &[(String, u32)]) -> Result<(), String> {
    let num = |l: &str, k: &str| -> Result<u64, String> {
        field(l, k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {k}= in {l:?}"))
    };
    // (n, mono, epoch) and (mono_before, mono_after, kind, epoch, line).
    let (mut ticks, mut resumes) = (Vec::new(), Vec::new());
    for l in o.guest_lines() {
        if l.starts_with("suspend: resumed ") {
            let kind = field(l, "kind").unwrap_or("?").to_string();
            let (b, a, e) = (
                num(l, "mono_before")?,
                num(l, "mono_after")?,
                num(l, "epoch")?,
            );
            resumes.push((b, a, kind, e as u32, l.to_string()));
        } else if l.starts_with("ticker: n=") {
            ticks.push((num(l, "n")?, num(l, "mono_ns")?, num(l, "epoch")? as u32));
        }
    }
    resumes.sort_by_key(|r| r.0);
    let got: Vec<(String, u32)> = resumes.iter().map(|r| (r.2.clone(), r.3)).collect();
    if got != want {
        return Err(format!("resumes {got:?}, want {want:?}"));
    }
    ticks.sort_by_key(|t| t.0);
    if let Some(w) = ticks.windows(2).find(|w| w[1].1 <= w[0].1) {
        return Err(format!(
            "tick {} at {} ns after tick {} at {} ns",
            w[1].0, w[1].1, w[0].0, w[0].1
        ));
    }
    for (before, after, kind, epoch, line) in &resumes {
        let back = after < before
            || (kind == "new"
                && ticks
                    .iter()
                    .any(|&(_, m, e)| (e < *epoch && m > *before) || (e >= *epoch && m < *after)));
        if back {
            return Err(format!("the clock went back around {line:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(text: &str) -> Outcome {
        Outcome {
            status: Ok(0),
            text: text.into(),
            secs: 0.0,
            log: "x.log".into(),
        }
    }

    #[test]
    fn fields_are_found_whole() {
        let l = "suspend: resumed kind=new rc=0 epoch=2 mono_before=5 mono_after=7";
        assert_eq!(field(l, "epoch"), Some("2"));
        assert_eq!(field(l, "mono_after"), Some("7"));
        assert_eq!(field(l, "mono"), None);
    }

    /// As domu-migrate-bare's run printed it: the new domain's first tick reached the
    /// log before the resume line (two logs streamed), which is no step back.
    const MIGRATED: &str = "\
domU| ticker: n=12 mono_ns=50195587559 back=0 epoch=0
domU| ticker: n=14 mono_ns=52201507191 back=0 epoch=1
domU| suspend: resumed kind=new rc=0 epoch=1 domid=2 mono_before=50763801964 mono_after=50809784966 ms=45
domU| ticker: n=16 mono_ns=54209932494 back=0 epoch=1
";

    #[test]
    fn lines_interleaved_across_logs_pass_and_a_step_back_fails() {
        let want = [("new".to_string(), 1)];
        assert_eq!(resumes_in_order(&outcome(MIGRATED), &want), Ok(()));
        // The new domain's clock restarting from the host's (no offset): a tick of epoch
        // 1 before the resume's own time.
        let back = MIGRATED.replace("n=14 mono_ns=52201507191", "n=14 mono_ns=3000000000");
        let e = resumes_in_order(&outcome(&back), &want).unwrap_err();
        assert!(e.contains("tick 14 at 3000000000 ns after tick 12"), "{e}");
        let back = MIGRATED.replace("mono_before=50763801964", "mono_before=49000000000");
        let e = resumes_in_order(&outcome(&back), &want).unwrap_err();
        assert!(e.contains("the clock went back around"), "{e}");
        let e = resumes_in_order(&outcome(MIGRATED), &[("cancelled".into(), 0)]).unwrap_err();
        assert!(e.contains("resumes [(\"new\", 1)]"), "{e}");
    }
}
