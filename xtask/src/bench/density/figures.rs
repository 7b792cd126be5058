//! The pure parts of `cargo xtask bench density`: the search for the smallest memory
//! (one step at a time, the dom0 script takes the same steps), the body both sides
//! serve, the dom0 script's report lines read back, the statistics, the table and the
//! target line.

/// The target: the appliance fits at least this many times as many domUs per GiB as
/// Linux.
pub const TARGET: f64 = 4.0;

/// Byte `i` of `/bytes/N`: the appliance's pattern (xenbox-peer's `--verify-bytes`
/// checks the same), `(i * 0x9E3779B97F4A7C15) >> 56`.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// The body of `/bytes/N`: the appliance makes it as it sends; the Linux domU serves it
/// as a file of its initramfs.
pub fn body(n: u64) -> Vec<u8> {
    (0..n).map(pattern_byte).collect()
}

/// The next memory (MiB) the search probes, given the largest memory known not to serve
/// (`lo`) and the smallest known to serve (`hi`), on a grid of `res` MiB: the middle,
/// rounded down to the grid but above `lo`; `None` once `hi` is within `res` of `lo`
/// (then `hi` is the answer). The dom0 script's loop ([`SEARCH_SH`]) is this.
pub fn next_probe(lo: u64, hi: u64, res: u64) -> Option<u64> {
    let res = res.max(1);
    if hi <= lo || hi - lo <= res {
        return None;
    }
    let mid = (lo + hi) / 2 / res * res;
    Some(if mid <= lo { lo + res } else { mid })
}

/// The search in the dom0 script: `$hi` must serve and `$lo` must not (each said with a
/// FAIL line and status 3 otherwise), then [`next_probe`]'s steps until `$hi` is the
/// smallest that served. `probe MIB` returns 0 when a domU of MIB served.
pub const SEARCH_SH: &str = r#"probe "$hi" || { say "FAIL never served at $hi MiB, the search's upper bound"; exit 3; }
if probe "$lo"; then say "FAIL served at $lo MiB, the search's lower bound: lower it"; exit 3; fi
while [ $((hi - lo)) -gt "$res" ]; do
    mid=$(((lo + hi) / 2 / res * res))
    [ "$mid" -le "$lo" ] && mid=$((lo + res))
    if probe "$mid"; then hi=$mid; else lo=$mid; fi
done
"#;

/// Check the probes the script made (memory, served) against the search's steps from
/// `(lo, hi)`: `hi` first and served, `lo` next and not, then each [`next_probe`]; the
/// smallest memory that served.
pub fn replay_search(probes: &[(u64, bool)], lo: u64, hi: u64, res: u64) -> Result<u64, String> {
    let mut it = probes.iter();
    match it.next() {
        Some(&(m, true)) if m == hi => {}
        Some(&(m, ok)) => {
            return Err(format!(
                "the first probe was {m} MiB (served: {ok}), not the upper bound {hi} MiB serving"
            ))
        }
        None => return Err("no probe was made".into()),
    }
    match it.next() {
        Some(&(m, false)) if m == lo => {}
        Some(&(m, ok)) => {
            return Err(format!(
                "the second probe was {m} MiB (served: {ok}), not the lower bound {lo} MiB failing"
            ))
        }
        None => return Err(format!("the lower bound {lo} MiB was not probed")),
    }
    let (mut lo, mut hi) = (lo, hi);
    for &(m, ok) in it {
        match next_probe(lo, hi, res) {
            Some(want) if want == m => {}
            want => {
                return Err(format!(
                    "probed {m} MiB where the search's next step is {want:?} (lo {lo}, hi {hi})"
                ))
            }
        }
        if ok {
            hi = m;
        } else {
            lo = m;
        }
    }
    match next_probe(lo, hi, res) {
        None => Ok(hi),
        Some(m) => Err(format!(
            "the search stopped before probing {m} MiB (lo {lo}, hi {hi})"
        )),
    }
}

/// The memory domUs are started at: the smallest that served and `headroom` percent
/// more, rounded up to a MiB (the same rule for both sides: at the very floor a Linux
/// domU served in the search and then panicked, "System is deadlocked on memory", on a
/// later start). The dom0 script's `mem=` is this.
pub fn with_headroom(mib: u64, headroom: u64) -> u64 {
    (mib * (100 + headroom)).div_ceil(100)
}

/// What a side was asked to do: the search's bounds and grid, the headroom (percent),
/// the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub lo: u64,
    pub hi: u64,
    pub res: u64,
    pub headroom: u64,
    pub asked: u64,
}

/// `key=value` of a report line's words; for `why` and `stop`, the rest of the line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    if key == "why" || key == "stop" {
        let at = line.find(&format!(" {key}="))?;
        return Some(&line[at + key.len() + 2..]);
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn num(line: &str, key: &str) -> Option<u64> {
    field(line, key)?.parse().ok()
}

/// One probe of the search: its memory, whether it served, create-to-serving, why not.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub mib: u64,
    pub ok: bool,
    pub ms: Option<f64>,
    pub why: String,
}

/// One side's run, read from the box's console ([`side`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Side {
    /// The search's probes, in order.
    pub probes: Vec<Probe>,
    /// The smallest memory that served (checked against the probes).
    pub smallest: Option<u64>,
    /// The memory the domUs were started at (the smallest and the headroom, checked).
    pub mib: Option<u64>,
    /// Create-to-serving of each domU started at that memory, in order (ms).
    pub up_ms: Vec<f64>,
    /// DomUs started, and how many were asked for.
    pub started: Option<u64>,
    pub asked: u64,
    /// First `xl create` to the last domU serving, ms.
    pub total_ms: Option<f64>,
    /// Why starting stopped: `count` (all asked for), or memory running out.
    pub stop: String,
    /// Xen's free memory before the first domU and with all of them up, MiB.
    pub free_before: Option<u64>,
    pub free_after: Option<u64>,
    /// The sweep once all were up: domUs checked, and how many did not serve.
    pub swept: Option<(u64, u64)>,
    /// What went wrong, each naming the side.
    pub errors: Vec<String>,
}

impl Side {
    /// Xen's memory per running domU (the drop of `xl info`'s free_memory), MiB.
    pub fn host_mib_per_domu(&self) -> Option<f64> {
        let (b, a, n) = (self.free_before?, self.free_after?, self.started?);
        (n > 0 && b >= a).then(|| (b - a) as f64 / n as f64)
    }

    /// DomUs per GiB at the per-domU memory found.
    pub fn per_gib(&self) -> Option<f64> {
        self.mib.filter(|&m| m > 0).map(|m| 1024.0 / m as f64)
    }
}

/// Read a side's run from the box's console (`dom0| density: …` lines), done as `plan`
/// says.
pub fn side(text: &str, who: &str, plan: &Plan) -> Side {
    let mut s = Side {
        asked: plan.asked,
        ..Side::default()
    };
    let (mut smallest, mut mem) = (None, None);
    let mut done = false;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        let Some(l) = line.strip_prefix("dom0| density: ") else {
            continue;
        };
        let l = &format!(" {l}");
        let word = l.split_whitespace().next().unwrap_or("");
        match word {
            "probe" => s.probes.push(Probe {
                mib: num(l, "mib").unwrap_or(0),
                ok: field(l, "ok") == Some("1"),
                ms: num(l, "ms").map(|x| x as f64),
                why: field(l, "why").unwrap_or("").to_string(),
            }),
            "smallest" => smallest = num(l, "mib"),
            "phase2" => {
                s.free_before = num(l, "free_mib");
                mem = num(l, "mib");
            }
            "up" => s.up_ms.extend(num(l, "ms").map(|x| x as f64)),
            "started" => {
                s.started = num(l, "count");
                s.total_ms = num(l, "total_ms").map(|x| x as f64);
                s.stop = field(l, "stop").unwrap_or("?").to_string();
            }
            "all-up" => s.free_after = num(l, "free_mib"),
            "sweep" if field(l, "ok") == Some("0") => {
                s.errors.push(format!("{who}: sweep: {}", l.trim()));
            }
            "swept" => s.swept = num(l, "count").zip(num(l, "bad")),
            "done" => done = true,
            "FAIL" => s.errors.push(format!("{who}: {}", l.trim())),
            _ => {}
        }
    }
    check(&mut s, who, plan, smallest, done);
    if let (Some(m), Some(start)) = (s.smallest, mem) {
        let want = with_headroom(m, plan.headroom);
        if start == want {
            s.mib = Some(start);
        } else {
            s.errors.push(format!(
                "{who}: domUs started at {start} MiB, not {want} MiB ({m} MiB + {}%)",
                plan.headroom
            ));
        }
    }
    s
}

/// The checks of a side read back: the search replayed, every count agreeing.
fn check(s: &mut Side, who: &str, plan: &Plan, said: Option<u64>, done: bool) {
    let (lo, hi, res) = (plan.lo, plan.hi, plan.res);
    let probes: Vec<(u64, bool)> = s.probes.iter().map(|p| (p.mib, p.ok)).collect();
    let failed = !s.errors.is_empty();
    match (replay_search(&probes, lo, hi, res), said) {
        (Ok(m), Some(x)) if x == m => s.smallest = Some(m),
        (Ok(m), Some(x)) => s.errors.push(format!(
            "{who}: the script says {x} MiB, the probes say {m} MiB"
        )),
        (Ok(_), None) if !failed => s.errors.push(format!("{who}: no smallest memory reported")),
        (Err(e), _) if !failed => s.errors.push(format!("{who}: search: {e}")),
        _ => {}
    }
    if !s.errors.is_empty() {
        return;
    }
    match s.started {
        Some(n) if n as usize == s.up_ms.len() => {}
        n => s.errors.push(format!(
            "{who}: {} domUs timed, {n:?} said started",
            s.up_ms.len()
        )),
    }
    if s.started == Some(0) {
        s.errors
            .push(format!("{who}: no domU started ({})", s.stop));
    }
    if s.swept.map(|(n, _)| Some(n)) != Some(s.started) {
        s.errors
            .push(format!("{who}: the sweep did not check every domU started"));
    }
    if !done {
        s.errors.push(format!("{who}: the script did not finish"));
    }
}

/// The median and the 90th percentile (nearest rank) of `v`.
pub fn median_p90(v: &[f64]) -> Option<(f64, f64)> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let rank = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    (n > 0).then(|| {
        let med = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        (med, rank(0.9))
    })
}

/// The table: a row per figure, the appliance's and Linux's, and app/Linux.
pub fn table(app: &Side, linux: &Side) -> String {
    let cell = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |x| format!("{x:.d$}"));
    type Get = fn(&Side) -> Option<f64>;
    let rows: [(&str, Get, usize); 10] = [
        (
            "smallest memory that served (MiB)",
            |s| s.smallest.map(|m| m as f64),
            0,
        ),
        (
            "per-domU memory, with the headroom (MiB)",
            |s| s.mib.map(|m| m as f64),
            0,
        ),
        ("domUs started", |s| s.started.map(|n| n as f64), 0),
        (
            "create-to-serving median (ms)",
            |s| median_p90(&s.up_ms).map(|x| x.0),
            0,
        ),
        (
            "create-to-serving p90 (ms)",
            |s| median_p90(&s.up_ms).map(|x| x.1),
            0,
        ),
        (
            "total, first create to all serving (s)",
            |s| s.total_ms.map(|t| t / 1000.0),
            1,
        ),
        (
            "Xen memory per domU (free_memory drop, MiB)",
            Side::host_mib_per_domu,
            1,
        ),
        (
            "probes to find the memory",
            |s| Some(s.probes.len() as f64),
            0,
        ),
        ("domUs per GiB (1024 / per-domU memory)", Side::per_gib, 1),
        (
            "domUs per GiB of Xen memory (1024 / drop)",
            |s| {
                s.host_mib_per_domu()
                    .filter(|&m| m > 0.0)
                    .map(|m| 1024.0 / m)
            },
            1,
        ),
    ];
    let mut t = format!(
        "{:<46} {:>10} {:>10} {:>10}\n",
        format!("density (asked for {} each)", app.asked.max(linux.asked)),
        "xenpv-app",
        "Linux",
        "app/Linux"
    );
    for (label, get, d) in rows {
        let (a, l) = (get(app), get(linux));
        let r = a.zip(l).filter(|(_, l)| *l > 0.0).map(|(a, l)| a / l);
        t += &format!(
            "{label:<46} {:>10} {:>10} {:>10}\n",
            cell(a, d),
            cell(l, d),
            cell(r, 2)
        );
    }
    for (name, s) in [("xenpv-app", app), ("Linux", linux)] {
        t += &format!(
            "{name} stopped by: {}\n",
            if s.stop.is_empty() { "-" } else { &s.stop }
        );
    }
    t
}

/// The target line, `None` in the verdict when a side has no figure.
pub fn target(app: &Side, linux: &Side) -> (Option<bool>, String) {
    let head = format!("target domUs per GiB >= {TARGET:.1}x Linux:");
    match (app.per_gib(), linux.per_gib()) {
        (Some(a), Some(l)) if l > 0.0 => {
            let r = a / l;
            let met = r >= TARGET;
            (
                Some(met),
                format!(
                    "{head} {r:.2}x ({a:.1} vs {l:.1}: {} MiB vs {} MiB) {}",
                    app.mib.unwrap_or(0),
                    linux.mib.unwrap_or(0),
                    if met { "MET" } else { "MISSED" }
                ),
            )
        }
        _ => (None, format!("{head} not measured")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' plan: search 8..64 MiB on a 1 MiB grid, `headroom` percent, 3 domUs.
    fn plan(headroom: u64) -> Plan {
        Plan {
            lo: 8,
            hi: 64,
            res: 1,
            headroom,
            asked: 3,
        }
    }

    /// The search against a domU that serves from `floor` MiB on: every probe, in order.
    fn search(lo: u64, hi: u64, res: u64, floor: u64) -> Vec<(u64, bool)> {
        let mut probes = vec![(hi, hi >= floor), (lo, lo >= floor)];
        let (mut l, mut h) = (lo, hi);
        while let Some(m) = next_probe(l, h, res) {
            let ok = m >= floor;
            probes.push((m, ok));
            if ok {
                h = m;
            } else {
                l = m;
            }
        }
        probes
    }

    #[test]
    fn the_search_finds_the_floor_in_few_probes() {
        for floor in 9..=64 {
            let p = search(8, 64, 1, floor);
            assert_eq!(replay_search(&p, 8, 64, 1), Ok(floor), "{p:?}");
            assert!(p.len() <= 2 + 6, "{floor}: {p:?}");
        }
        // On a grid of 8 MiB: the smallest grid point that serves.
        let p = search(32, 256, 8, 75);
        assert_eq!(replay_search(&p, 32, 256, 8), Ok(80), "{p:?}");
        assert!(p.iter().all(|(m, _)| m % 8 == 0), "{p:?}");
        assert_eq!(next_probe(15, 16, 1), None);
        assert_eq!(next_probe(14, 16, 1), Some(15));
        assert_eq!(next_probe(8, 64, 1), Some(36));
        // A mid-point that rounds down onto lo moves one grid step up.
        assert_eq!(next_probe(32, 47, 8), Some(40));
        assert_eq!(next_probe(33, 47, 8), Some(40));
        assert_eq!(next_probe(33, 40, 8), None);
        assert_eq!(next_probe(64, 8, 1), None);
    }

    #[test]
    fn a_search_the_script_did_not_take_is_refused() {
        let good = search(8, 64, 1, 16);
        assert_eq!(
            good,
            [
                (64, true),
                (8, false),
                (36, true),
                (22, true),
                (15, false),
                (18, true),
                (16, true)
            ]
        );
        assert!(replay_search(&good[..good.len() - 1], 8, 64, 1)
            .unwrap_err()
            .contains("stopped before probing 16 MiB"));
        let mut skipped = good.clone();
        skipped[3].0 = 21;
        assert!(replay_search(&skipped, 8, 64, 1)
            .unwrap_err()
            .contains("probed 21 MiB where the search's next step is Some(22)"));
        let e = replay_search(&[(64, false)], 8, 64, 1).unwrap_err();
        assert!(e.contains("not the upper bound 64 MiB serving"), "{e}");
        let e = replay_search(&[(64, true), (8, true)], 8, 64, 1).unwrap_err();
        assert!(e.contains("lower bound 8 MiB failing"), "{e}");
        assert!(replay_search(&[], 8, 64, 1).is_err());
    }

    /// The script's search loop ([`SEARCH_SH`]) run by `sh` against a fake probe takes
    /// the same steps as [`next_probe`].
    #[test]
    fn the_scripts_search_is_the_step_function() {
        for (lo, hi, res, floor) in [
            (8, 64, 1, 16),
            (8, 64, 1, 9),
            (32, 256, 8, 75),
            (4, 5, 1, 5),
        ] {
            let sh = format!(
                "say() {{ echo \"say $*\"; }}\nprobe() {{ echo \"probe $1\"; [ \"$1\" -ge {floor} ]; }}\nlo={lo} hi={hi} res={res}\n{SEARCH_SH}echo \"smallest $hi\"\n"
            );
            let out = std::process::Command::new("sh")
                .args(["-c", &sh])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let probed: Vec<u64> = text
                .lines()
                .filter_map(|l| l.strip_prefix("probe ")?.parse().ok())
                .collect();
            let want = search(lo, hi, res, floor);
            let want_mib: Vec<u64> = want.iter().map(|p| p.0).collect();
            assert_eq!(probed, want_mib, "{text}");
            let smallest = replay_search(&want, lo, hi, res).unwrap();
            assert!(text.ends_with(&format!("smallest {smallest}\n")), "{text}");
        }
        // Bounds that do not hold: the script says so and stops with status 3.
        for (floor, says) in [(100, "never served at 64 MiB"), (4, "served at 8 MiB")] {
            let sh = format!(
                "say() {{ echo \"say $*\"; }}\nprobe() {{ [ \"$1\" -ge {floor} ]; }}\nlo=8 hi=64 res=1\n{SEARCH_SH}"
            );
            let out = std::process::Command::new("sh")
                .args(["-c", &sh])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(3));
            assert!(String::from_utf8_lossy(&out.stdout).contains(says));
        }
    }

    #[test]
    fn the_body_is_the_appliances_pattern() {
        assert_eq!(pattern_byte(0), 0);
        assert_eq!(pattern_byte(1), 0x9E);
        assert_eq!(
            pattern_byte(2),
            (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(2) >> 56) as u8
        );
        assert_eq!(body(3), [0, 0x9E, pattern_byte(2)]);
        assert_eq!(body(1 << 20).len(), 1 << 20);
    }

    fn console(app: bool) -> String {
        let (side, m) = if app { ("app", 16) } else { ("linux", 80) };
        let mut t =
            format!("xenbox: dom0 ready\ndom0| density: search side={side} lo=8 hi=64 res=1\n");
        let probes = search(8, 64, 1, m.min(64));
        for (mib, ok) in &probes {
            if *ok {
                t += &format!("dom0| density: probe mib={mib} ok=1 ms=4000\n");
            } else {
                t += &format!("dom0| density: probe mib={mib} ok=0 why=the domain is gone: net: does not fit\n");
            }
        }
        t += &format!(
            "dom0| density: smallest mib={}\ndom0| density: phase2 mib=16 count=3 free_mib=1000\n",
            m.min(64)
        );
        for (i, ms) in [(1, 3000), (2, 5000), (3, 4000)] {
            t += &format!("dom0| density: up i={i} ms={ms} free_mib=1000\r\n");
        }
        t += "dom0| density: started count=3 of=3 total_ms=12500 stop=count\n\
              dom0| density: all-up free_mib=949\n\
              dom0| density: sweep i=1 ok=1\ndom0| density: sweep i=2 ok=1\ndom0| density: sweep i=3 ok=1\n\
              dom0| density: swept count=3 bad=0 ms=900\n\
              dom0| density: done side=app\n";
        t
    }

    #[test]
    fn a_side_is_read_from_the_console() {
        let s = side(&console(true), "app", &plan(0));
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.mib, Some(16));
        assert_eq!(s.probes.len(), 7);
        assert_eq!(s.probes[4].why, "the domain is gone: net: does not fit");
        assert_eq!(s.probes[0].ms, Some(4000.0));
        assert_eq!(s.up_ms, [3000.0, 5000.0, 4000.0]);
        assert_eq!((s.started, s.total_ms), (Some(3), Some(12500.0)));
        assert_eq!(s.stop, "count");
        assert_eq!(s.host_mib_per_domu(), Some(17.0));
        assert_eq!(s.per_gib(), Some(64.0));
        assert_eq!(s.swept, Some((3, 0)));
    }

    #[test]
    fn a_failed_or_short_side_is_named() {
        let c = console(true);
        // The app side's errors with `from` in its console replaced by `to`.
        let errors = |from: &str, to: &str| side(&c.replace(from, to), "app", &plan(0)).errors;
        let why = "sweep i=2 ok=0 why=no answer within 60 s";
        assert_eq!(
            errors("sweep i=2 ok=1", why),
            [format!("app: sweep: {why}")]
        );
        assert_eq!(
            errors("dom0| density: done side=app\n", ""),
            ["app: the script did not finish"]
        );
        assert_eq!(
            errors("smallest mib=16", "smallest mib=17"),
            ["app: the script says 17 MiB, the probes say 16 MiB"]
        );
        let e = errors("started count=3", "started count=4");
        assert!(
            e[0].contains("3 domUs timed, Some(4) said started"),
            "{e:?}"
        );
        assert!(errors("swept count=3", "swept count=2")[0].contains("did not check every domU"));
        // A domU that never served: the script's FAIL line, nothing else piled on.
        let cut = c.split("dom0| density: up i=3").next().unwrap().to_string()
            + "dom0| density: FAIL up i=3 mib=16 never served: no answer within 150 s\n";
        let s = side(&cut, "app", &plan(0));
        assert_eq!(
            s.errors,
            ["app: FAIL up i=3 mib=16 never served: no answer within 150 s"]
        );
        // The search's bound did not hold.
        let s = side("dom0| density: probe mib=64 ok=0 why=x\ndom0| density: FAIL never served at 64 MiB, the search's upper bound\n", "linux", &plan(0));
        assert_eq!(
            s.errors,
            ["linux: FAIL never served at 64 MiB, the search's upper bound"]
        );
        assert_eq!(s.mib, None);
        let s = side("", "linux", &plan(0));
        assert_eq!(s.errors, ["linux: search: no probe was made"]);
    }

    #[test]
    fn domus_start_at_the_smallest_memory_and_the_headroom() {
        assert_eq!(with_headroom(16, 0), 16);
        assert_eq!(with_headroom(15, 5), 16);
        assert_eq!(with_headroom(85, 5), 90);
        assert_eq!(with_headroom(20, 5), 21);
        assert_eq!(with_headroom(100, 5), 105);
        // The console's smallest is 16 MiB: +5% is 17 MiB.
        let c = console(true);
        let s = side(
            &c.replace("phase2 mib=16", "phase2 mib=17"),
            "app",
            &plan(5),
        );
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(
            (s.smallest, s.mib, s.per_gib()),
            (Some(16), Some(17), Some(1024.0 / 17.0))
        );
        let s = side(&c, "app", &plan(5));
        assert_eq!(
            s.errors,
            ["app: domUs started at 16 MiB, not 17 MiB (16 MiB + 5%)"]
        );
        assert_eq!(s.mib, None);
    }

    #[test]
    fn medians_and_p90() {
        assert_eq!(median_p90(&[]), None);
        assert_eq!(median_p90(&[5.0]), Some((5.0, 5.0)));
        assert_eq!(median_p90(&[4.0, 1.0, 3.0, 2.0]), Some((2.5, 4.0)));
        let v: Vec<f64> = (1..=32).map(f64::from).rev().collect();
        // Nearest rank: ceil(0.9 * 32) = 29.
        assert_eq!(median_p90(&v), Some((16.5, 29.0)));
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(median_p90(&v), Some((5.5, 9.0)));
    }

    #[test]
    fn the_table_and_the_target() {
        let app = side(&console(true), "app", &plan(0));
        let linux = side(
            &console(false).replace("mib=16 count", "mib=64 count"),
            "linux",
            &plan(0),
        );
        assert!(linux.errors.is_empty(), "{:?}", linux.errors);
        assert_eq!(linux.mib, Some(64));
        let t = table(&app, &linux);
        let row = |label: &str| {
            t.lines()
                .find(|l| l.starts_with(label))
                .unwrap()
                .to_string()
        };
        assert!(
            row("per-domU memory, with the headroom").ends_with("16         64       0.25"),
            "{t}"
        );
        assert!(
            row("create-to-serving median (ms)").contains(" 4000 "),
            "{t}"
        );
        assert!(row("create-to-serving p90 (ms)").contains(" 5000 "), "{t}");
        assert!(
            row("domUs per GiB").ends_with("64.0       16.0       4.00"),
            "{t}"
        );
        assert!(row("total, first create").contains("12.5"), "{t}");
        // Both sides' free memory fell by 51 MiB for 3 domUs: 17 MiB each.
        assert!(
            row("domUs per GiB of Xen memory").ends_with("60.2       60.2       1.00"),
            "{t}"
        );
        assert!(t.contains("xenpv-app stopped by: count"), "{t}");
        let (met, line) = target(&app, &linux);
        assert_eq!(met, Some(true));
        assert_eq!(
            line,
            "target domUs per GiB >= 4.0x Linux: 4.00x (64.0 vs 16.0: 16 MiB vs 64 MiB) MET"
        );
        let mut small = linux.clone();
        small.mib = Some(63);
        let (met, line) = target(&app, &small);
        assert_eq!(met, Some(false));
        assert!(
            line.ends_with("3.94x (64.0 vs 16.3: 16 MiB vs 63 MiB) MISSED"),
            "{line}"
        );
        assert_eq!(target(&app, &Side::default()).0, None);
    }
}
