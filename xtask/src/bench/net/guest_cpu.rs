//! The guest's own CPU cost of what it moved: Xen's CPU time of the measured domU
//! (`xenbox-peer domain-cpu`, nanoseconds) read before and after each measurement, over
//! the bytes that measurement moved through the guest. In the box the backend (dom0) is
//! the bottleneck of every throughput figure, so throughput alone says little about the
//! guest; its CPU per megabyte says how much of a real host's CPU it would take.
//!
//! Bytes moved: the TCP transfers' `bytes`; for UDP echo, every datagram that came back
//! counted twice (the guest received it and sent it back). The round-trip figure moves
//! too little to divide by and shows only the CPU share.
use super::table::{median, ratio};
use super::Figure;
use xenpv_contract::report::Report;

/// One measurement as the guest paid for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuestCpu {
    /// Xen's CPU time of the domU during the measurement.
    pub cpu_ns: u64,
    /// Bytes moved through the guest (see the module), 0 for the round trip.
    pub bytes: u64,
    /// The measurement's own length (the peer's `elapsed_ms`).
    pub elapsed_ms: f64,
}

impl GuestCpu {
    /// Milliseconds of the guest's CPU per MB (10^6 bytes) moved.
    pub fn ms_per_mb(&self) -> Option<f64> {
        (self.bytes > 0).then(|| self.cpu_ns as f64 / 1e6 / (self.bytes as f64 / 1e6))
    }

    /// The share of the measurement's time the guest was running.
    pub fn share(&self) -> Option<f64> {
        (self.elapsed_ms > 0.0).then(|| self.cpu_ns as f64 / 1e6 / self.elapsed_ms)
    }
}

/// The `cpu_ns` of a `bench-net: guest peer: domain-cpu PASS … cpu_ns=N` line's rest.
pub fn cpu_ns(rest: &str) -> Option<u64> {
    let r: Report = rest.parse().ok()?;
    (r.topic == "peer" && r.words.first()? == "domain-cpu" && r.words.get(1)? == "PASS")
        .then(|| r.parse_field::<u64>("cpu_ns").ok())?
}

/// Bytes moved and elapsed milliseconds of figure `f`'s passing verdict `v`.
pub fn moved(f: Figure, v: &Report) -> Option<(u64, f64)> {
    let elapsed = v.parse_field::<f64>("elapsed_ms").ok()?;
    let bytes = match f {
        Figure::TcpIn | Figure::TcpOut => v.parse_field::<u64>("bytes").ok()?,
        Figure::Udp64 | Figure::Udp1472 => {
            let n = v.parse_field::<u64>("received").ok()?;
            let size = v.parse_field::<u64>("size").ok()?;
            n.checked_mul(size)?.checked_mul(2)?
        }
        Figure::Rtt => 0,
    };
    Some((bytes, elapsed))
}

/// Medians per figure: (ms per MB, CPU share).
pub type Medians = [(Option<f64>, Option<f64>); 5];

/// The medians of a side's measurements.
pub fn medians(g: &[Vec<GuestCpu>; 5]) -> Medians {
    std::array::from_fn(|i| {
        let m = |f: fn(&GuestCpu) -> Option<f64>| {
            median(&g[i].iter().filter_map(f).collect::<Vec<_>>())
        };
        (m(GuestCpu::ms_per_mb), m(GuestCpu::share))
    })
}

fn cell(v: Option<f64>, d: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.d$}"))
}

/// The table: per figure, each side's ms of CPU per MB moved and its CPU share, then each
/// xenpv-rt side's ms/MB over Linux's (`NAME/L`, lower is better).
pub fn table(rt: &[(&str, Medians)], linux: Option<&Medians>) -> String {
    let mut s = format!("{:<44}", "guest CPU per MB moved, ms (share of time)");
    for (n, _) in rt {
        s += &format!("{n:>18}");
    }
    if linux.is_some() {
        s += &format!("{:>18}", "Linux");
        for (n, _) in rt {
            s += &format!("{:>14}", format!("{n}/L"));
        }
    }
    s += "\n";
    let both = |m: &Medians, i: usize| {
        format!(
            "{:>10} ({:>3}%)",
            cell(m[i].0, 2),
            cell(m[i].1.map(|x| x * 100.0), 0)
        )
    };
    for (i, f) in Figure::ALL.iter().enumerate() {
        s += &format!("{:<44}", f.label());
        for (_, m) in rt {
            s += &format!("{:>18}", both(m, i));
        }
        if let Some(l) = linux {
            s += &format!("{:>18}", both(l, i));
            for (_, m) in rt {
                s += &format!("{:>14}", cell(ratio(m[i].0, l[i].0), 2));
            }
        }
        s += "\n";
    }
    s
}

/// The headline: `NAME: guest CPU per MB moved vs Linux: tcp-in 0.41x, …` over the figures
/// that move data (lower is better).
pub fn headline(name: &str, rt: &Medians, linux: &Medians) -> String {
    let parts: Vec<String> = Figure::ALL
        .iter()
        .enumerate()
        .filter(|(_, f)| **f != Figure::Rtt)
        .map(|(i, f)| format!("{} {}x", f.tag(), cell(ratio(rt[i].0, linux[i].0), 2)))
        .collect();
    format!(
        "{name}: guest CPU per MB moved / Linux's: {} (lower is better)",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figure_is_read_from_the_peers_line_only() {
        assert_eq!(
            cpu_ns("peer: domain-cpu PASS domid=3 cpu_ns=123456789"),
            Some(123_456_789)
        );
        assert_eq!(
            cpu_ns("peer: domain-cpu FAIL no-figure domid=3 why=x"),
            None
        );
        assert_eq!(cpu_ns("peer: udp-rate PASS cpu_ns=5"), None);
        assert_eq!(cpu_ns("garbage"), None);
    }

    #[test]
    fn bytes_moved_per_figure() {
        let v = |s: &str| s.parse::<Report>().unwrap();
        let tcp = v("peer: tcp-send PASS bytes=33554432 elapsed_ms=1000 mbit_s=268.4");
        assert_eq!(moved(Figure::TcpIn, &tcp), Some((33_554_432, 1000.0)));
        let udp = v("peer: udp-rate PASS sent=12 received=10 lost=2 elapsed_ms=5000 pps=2 size=64");
        assert_eq!(moved(Figure::Udp64, &udp), Some((1280, 5000.0)));
        let rtt = v("peer: udp-echo PASS sent=200 returned=200 elapsed_ms=90 rtt_avg_us=450");
        assert_eq!(moved(Figure::Rtt, &rtt), Some((0, 90.0)));
        assert_eq!(
            moved(Figure::TcpOut, &v("peer: http-get PASS elapsed_ms=1")),
            None
        );
    }

    #[test]
    fn per_mb_and_share() {
        let g = GuestCpu {
            cpu_ns: 500_000_000,
            bytes: 100_000_000,
            elapsed_ms: 2000.0,
        };
        assert_eq!(g.ms_per_mb(), Some(5.0));
        assert_eq!(g.share(), Some(0.25));
        let rtt = GuestCpu { bytes: 0, ..g };
        assert_eq!(rtt.ms_per_mb(), None);
    }

    #[test]
    fn the_table_and_headline_compare_with_linux() {
        let g = |ms: u64| GuestCpu {
            cpu_ns: ms * 1_000_000,
            bytes: 10_000_000,
            elapsed_ms: 1000.0,
        };
        let rt = medians(&std::array::from_fn(|_| vec![g(10), g(20), g(30)]));
        let linux = medians(&std::array::from_fn(|_| vec![g(80)]));
        assert_eq!(rt[0], (Some(2.0), Some(0.02)));
        let t = table(&[("xenpv-net", rt)], Some(&linux));
        assert_eq!(t.lines().count(), 6, "{t}");
        assert!(t.lines().nth(1).unwrap().ends_with("0.25"), "{t}");
        let h = headline("xenpv-net", &rt, &linux);
        assert_eq!(
            h,
            "xenpv-net: guest CPU per MB moved / Linux's: tcp-in 0.25x, tcp-out 0.25x, \
             udp-64 0.25x, udp-1472 0.25x (lower is better)"
        );
    }
}
