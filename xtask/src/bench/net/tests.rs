//! `bench net`'s reading of the script's output, its script and its options.
use super::*;

fn run_text(tag: &str, run: u32, verdict: &str) -> String {
    format!(
        "dom0| bench-net: measure {tag} {run}\n\
         dom0| bench-net: cpu  100 0 200 50 0 0 10 40 0 0\n\
         dom0| bench-net: guest peer: domain-cpu PASS domid=2 cpu_ns=1000000000\n\
         dom0| peer: x: progress\ndom0| {verdict}\n\
         dom0| bench-net: cpu  130 0 250 70 0 0 20 {} 0 0\n\
         dom0| bench-net: guest peer: domain-cpu PASS domid=2 cpu_ns={}\n",
        40 + 10 * run,
        1_000_000_000 + 100_000_000 * u64::from(run)
    )
}

fn all_runs(runs: u32) -> String {
    let mut t = String::from("domU| net: serving\n");
    for r in 1..=runs {
        t += &run_text(
            "tcp-in",
            r,
            "peer: tcp-send PASS bytes=33554432 elapsed_ms=1000 mbit_s=268.4 send_ms=900",
        );
        t += &run_text(
            "tcp-out",
            r,
            &format!(
                "peer: http-get PASS status=200 bytes=33554432 elapsed_ms=1 mbit_s={}",
                100 * r
            ),
        );
        t += &run_text("udp-64", r, "peer: udp-rate PASS sent=10 received=10 lost=0 bad=0 late=0 elapsed_ms=5000 pps=2000 mbit_s=1 size=64 window=32");
        t += &run_text("udp-1472", r, "peer: udp-rate PASS sent=10 received=10 lost=0 bad=0 late=0 elapsed_ms=5000 pps=1500 mbit_s=1 size=1472 window=32");
        t += &run_text("rtt", r, "peer: udp-echo PASS sent=200 returned=200 lost=0 mismatched=0 late=0 dup=0 elapsed_ms=1 pps=1 rtt_avg_us=450 rtt_max_us=900");
    }
    t
}

#[test]
fn the_script_measures_every_figure_each_run() {
    let s = script(3);
    assert!(s.contains("while [ $i -le 3 ]"), "{s}");
    for f in Figure::ALL {
        assert!(
            s.contains(&format!("bench-net: measure {} $i", f.tag())),
            "{s}"
        );
        assert!(s.contains(&f.command()), "{s}");
    }
    assert_eq!(
        s.matches("echo \"bench-net: $(head -1 /proc/stat)\"")
            .count(),
        10
    );
    assert_eq!(
        s.matches("echo \"bench-net: guest $(\"$PEER\" domain-cpu \"$DOMID\")\"")
            .count(),
        10
    );
    assert!(s.contains("tcp-send 169.254.100.2:9 --bytes 33554432"));
    assert!(s.contains("http-get 169.254.100.2:80 /bytes/33554432"));
    assert!(s.contains("udp-rate 169.254.100.2:7 --size 64 --seconds 5"));
    assert!(s.contains("udp-rate 169.254.100.2:7 --size 1472 --seconds 5"));
    assert!(s.contains("udp-echo 169.254.100.2:7 --count 200 --min 56 --max 56"));
    let st = std::process::Command::new("sh")
        .args(["-n", "-c", &s])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn figures_are_read_per_run() {
    let s = side(&all_runs(3), "xenpv-rt", 3);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.values[0], [268.4, 268.4, 268.4]);
    assert_eq!(s.values[1], [100.0, 200.0, 300.0]);
    assert_eq!(s.values[2], [2000.0; 3]);
    assert_eq!(s.values[3], [1500.0; 3]);
    assert_eq!(s.values[4], [450.0; 3]);
    let m = table::medians(&s);
    assert_eq!(m[1], Some(200.0));
    // dom0: 30 + 50 + 10 busy, 20 idle, steal 10 * run.
    assert_eq!(s.cpu[1].len(), 3);
    let c = s.cpu[1][1];
    assert!((c.busy - 90.0 / 130.0).abs() < 1e-9, "{c:?}");
    assert!((c.steal - 20.0 / 130.0).abs() < 1e-9, "{c:?}");
    assert!((c.idle - 20.0 / 130.0).abs() < 1e-9, "{c:?}");
    let cm = table::cpu_medians(&s);
    assert_eq!(cm[1], Some(c));
    let t = table::cpu_table(&[("async", cm), ("Linux", [None; 5])]);
    assert_eq!(t.lines().count(), 7, "{t}");
    assert!(t.lines().nth(3).unwrap().contains(" 69%  15%  15%"), "{t}");
    assert!(t.lines().nth(3).unwrap().trim_end().ends_with('?'), "{t}");
    // The guest: 100 ms * run of CPU over 32 MiB, over 1000 ms (tcp-in's elapsed).
    assert_eq!(s.guest[0].len(), 3);
    let g = s.guest[0][1];
    assert_eq!(
        (g.cpu_ns, g.bytes, g.elapsed_ms),
        (200_000_000, 33_554_432, 1000.0)
    );
    assert_eq!(s.guest[2][0].bytes, 2 * 10 * 64);
    assert_eq!(guest_cpu::medians(&s.guest)[0].1, Some(0.2));
}

#[test]
fn a_missing_guest_cpu_figure_fails_the_side() {
    // As when the peer cannot read it (not root, another Xen): never a quiet blank.
    let t = all_runs(1).replacen(
        "domain-cpu PASS domid=2 cpu_ns=1100000000",
        "domain-cpu FAIL no-figure domid=2 why=x",
        1,
    );
    let s = side(&t, "x", 1);
    assert!(
        s.errors.iter().any(|e| e.contains("no figure")),
        "{:?}",
        s.errors
    );
    assert!(
        s.errors
            .iter()
            .any(|e| e.contains("CPU time missing for 1 of 1 runs")),
        "{:?}",
        s.errors
    );
}

#[test]
fn cpu_lines_count_only_around_a_verdict() {
    assert_eq!(
        cpu_ticks("cpu  1 2 3 4 5 6 7 8 9 10"),
        Some([1, 2, 3, 4, 5, 6, 7, 8])
    );
    assert_eq!(cpu_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
    assert_eq!(cpu_ticks("cpu 1 2 x"), None);
    assert_eq!(
        cpu_between("cpu 1 1 1 1 1 1 1 1", "cpu 1 1 1 1 1 1 1 1"),
        None
    );
    // A failed run's CPU lines are dropped, as is a line with no run before it.
    let t = "dom0| bench-net: cpu 0 0 0 0 0 0 0 0\n".to_string()
        + &all_runs(1).replace("tcp-send PASS", "tcp-send FAIL x");
    let s = side(&t, "x", 1);
    assert!(s.cpu[0].is_empty());
    assert_eq!(s.cpu[1].len(), 1);
}

#[test]
fn a_failed_or_missing_measurement_is_named() {
    let t = all_runs(2).replacen(
        "peer: udp-rate PASS sent=10 received=10 lost=0 bad=0 late=0 elapsed_ms=5000 pps=2000",
        "peer: udp-rate FAIL no echo sent=10 received=0",
        1,
    );
    let s = side(&t, "Linux", 2);
    assert_eq!(s.values[2].len(), 1);
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert!(s.errors[0].starts_with("Linux: UDP echo 64 B (packets/s) run 1: peer: udp-rate FAIL"));
    // A run cut short (the script killed): no verdict, and too few runs.
    let cut = format!("{}dom0| bench-net: measure tcp-in 3\n", all_runs(2));
    let s = side(&cut, "xenpv-rt", 3);
    assert!(
        s.errors
            .iter()
            .any(|e| e.contains("TCP dom0 -> guest (Mbit/s) run 3: no verdict")),
        "{:?}",
        s.errors
    );
    assert!(
        s.errors
            .iter()
            .any(|e| e.contains("RTT, UDP echo 56 B (us; lower is better): 2 of 3 runs")),
        "{:?}",
        s.errors
    );
    let s = side("", "xenpv-rt", 1);
    assert_eq!(s.errors.len(), 5);
}

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    net: NetArgs,
}

#[test]
fn options_have_defaults_and_limits() {
    use clap::{CommandFactory, Parser};
    Cli::command().debug_assert();
    let p = |a: &[&str]| Cli::try_parse_from(std::iter::once("net").chain(a.iter().copied()));
    let d = p(&[]).unwrap().net;
    assert_eq!((d.runs, d.timeout), (3, 1500));
    assert_eq!(
        d.sides,
        Sides {
            xenpv_net: true,
            xenpv_copy: false,
            embassy: false,
            linux: true,
        }
    );
    let o = p(&["--runs", "5", "--timeout", "600"]).unwrap().net;
    assert_eq!((o.runs, o.timeout), (5, 600));
    assert!(p(&["--runs", "0"]).is_err());
    assert!(p(&["--timeout", "10"]).is_err());
    assert!(p(&["--seed", "1"]).is_err());
    // Any order, repeats and spaces: measured xenpv-net, embassy-net, then Linux.
    let r = p(&[
        "--sides",
        "linux, embassy-net,xenpv-copy,xenpv-net,embassy-net",
    ])
    .unwrap()
    .net
    .sides;
    let names: Vec<String> = r
        .rt()
        .iter()
        .map(|r| format!("{} {}", r.name, r.cmdline))
        .collect();
    assert_eq!(
        names,
        [
            "xenpv-net net ip=169.254.100.2/24",
            "xenpv-copy net tx_copy ip=169.254.100.2/24",
            "embassy-net enet ip=169.254.100.2/24"
        ]
    );
    assert!(r.linux);
    let e = p(&["--sides", "embassy-net"]).unwrap().net.sides;
    assert!(!e.linux && !e.xenpv_net && e.embassy);
    let e = p(&["--sides", "linux"]).unwrap_err().to_string();
    assert!(e.contains("no xenpv-rt side"), "{e}");
    let e = p(&["--sides", "xenpv-net,bsd"]).unwrap_err().to_string();
    assert!(e.contains("\"bsd\" is not a side"), "{e}");
    assert!(p(&["--sides", ""]).is_err());
}
