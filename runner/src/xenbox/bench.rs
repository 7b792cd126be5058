//! The box's bench mode read back from its console: one [`BenchRun`] per run.

/// One run of the box's bench mode, read from the box's console by [`bench_runs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchRun {
    /// The run's number, from 1.
    pub index: u32,
    /// Milliseconds from just before `xl create` to the domain's end, or why the run has
    /// none.
    pub create_to_shutdown_ms: Result<u64, String>,
    /// The shutdown reason xl reported (0 poweroff, 1 reboot, 2 suspend, 3 crash), if it
    /// said one.
    pub reason: Option<u32>,
    /// The run's domU console lines (without the `domU| ` prefix).
    pub console: Vec<String>,
}

/// The runs of a box booted in bench mode, from its console text: each
/// `xenbox: bench run N create_to_shutdown_ms=MS reason=R` (or `xenbox: bench run N FAIL
/// why`) line and the `domU| ` lines after it, up to the next run line.
pub fn bench_runs(text: &str) -> Vec<BenchRun> {
    let mut runs: Vec<BenchRun> = vec![];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("xenbox: bench run ") {
            let (n, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let Ok(index) = n.parse() else { continue };
            let report = line.parse::<xenpv_contract::report::Report>().ok();
            let field = |key: &str| report.as_ref()?.field(key);
            let create_to_shutdown_ms = match rest.strip_prefix("FAIL") {
                Some(why) => Err(why.trim().to_string()),
                None => field("create_to_shutdown_ms")
                    .and_then(|v| v.parse().ok())
                    .ok_or(format!("no create_to_shutdown_ms in {line:?}")),
            };
            runs.push(BenchRun {
                index,
                create_to_shutdown_ms,
                reason: field("reason").and_then(|v| v.parse().ok()),
                console: vec![],
            });
        } else if let (Some(r), Some(g)) = (runs.last_mut(), line.strip_prefix("domU| ")) {
            r.console.push(g.to_string());
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_runs_are_split_with_their_console() {
        let text = "\
xenbox: dom0 ready
(XEN) something
xenbox: bench run 1 create_to_shutdown_ms=1432 reason=0
domU| timing: entry_to_main_us=5
domU| xenpv-rt: exit status 0
xenbox: bench run 2 FAIL domU still running after 300 s (destroyed)
domU| [    5.525123] Run /init as init process
xenbox: bench run 3 create_to_shutdown_ms=999\r
xenbox: bench done runs=3 failed=1
";
        let r = bench_runs(text);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].index, 1);
        assert_eq!(r[0].create_to_shutdown_ms, Ok(1432));
        assert_eq!(r[0].reason, Some(0));
        assert_eq!(
            r[0].console,
            ["timing: entry_to_main_us=5", "xenpv-rt: exit status 0"]
        );
        assert_eq!(
            r[1].create_to_shutdown_ms,
            Err("domU still running after 300 s (destroyed)".into())
        );
        assert_eq!(r[1].console.len(), 1);
        assert_eq!(r[2].create_to_shutdown_ms, Ok(999));
        assert_eq!(r[2].reason, None);
        assert!(r[2].console.is_empty());
        assert!(bench_runs("xenbox: bench run x y\n").is_empty());
        assert!(bench_runs("xenbox: bench run 4 reason=0\n")[0]
            .create_to_shutdown_ms
            .is_err());
    }
}
