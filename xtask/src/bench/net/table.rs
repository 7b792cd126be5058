//! `cargo xtask bench net`'s figures side by side: medians, the table of every side with
//! each xenpv-rt side's ratio to Linux, dom0's CPU, the targets against Linux, and two
//! sides compared figure by figure (embassy-net against xenpv-net).

use super::{Cpu, Figure, Side};

/// The median of `v`, `None` if it is empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// `a / b`, `None` without both (or with a zero `b`).
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn opt(v: Option<f64>, d: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.d$}"))
}

/// The medians of each side, per [`Figure`].
pub type Medians = [Option<f64>; 5];

/// The medians of a side's runs.
pub fn medians(s: &Side) -> Medians {
    std::array::from_fn(|i| median(&s.values[i]))
}

/// A column of the table: a side's name and its medians.
pub struct Column<'a> {
    pub name: &'a str,
    pub medians: Medians,
}

/// The table: one row per figure; a column per xenpv-rt side, then Linux's (if
/// measured), then each xenpv-rt side's ratio to Linux (`NAME/L`).
pub fn table(rt: &[Column<'_>], linux: Option<&Medians>, runs: u32) -> String {
    let mut s = format!("{:<44}", format!("medians of {runs} run(s)"));
    for c in rt {
        s += &format!("{:>14}", c.name);
    }
    if linux.is_some() {
        s += &format!("{:>14}", "Linux");
        for c in rt {
            s += &format!("{:>14}", format!("{}/L", c.name));
        }
    }
    s += "\n";
    for (i, f) in Figure::ALL.iter().enumerate() {
        let d = f.decimals();
        s += &format!("{:<44}", f.label());
        for c in rt {
            s += &format!("{:>14}", opt(c.medians[i], d));
        }
        if let Some(l) = linux {
            s += &format!("{:>14}", opt(l[i], d));
            for c in rt {
                s += &format!("{:>14}", opt(ratio(c.medians[i], l[i]), 2));
            }
        }
        s += "\n";
    }
    s
}

/// Side `b`'s figure over side `a`'s, for figure `i`, the higher the better for `b`:
/// `b / a`, and for the RTT (lower is better) `a / b`.
pub fn compare_ratio(a: &Medians, b: &Medians, i: usize) -> Option<f64> {
    if Figure::ALL[i] == Figure::Rtt {
        ratio(a[i], b[i])
    } else {
        ratio(b[i], a[i])
    }
}

/// `B / A: tcp-in …x, … per figure` ([`compare_ratio`] of every figure, `?` if missing).
pub fn compare(b_name: &str, b: &Medians, a_name: &str, a: &Medians) -> String {
    let detail: Vec<String> = Figure::ALL
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} {}x", f.tag(), opt(compare_ratio(a, b, i), 2)))
        .collect();
    format!("{b_name} / {a_name}: {} per figure", detail.join(", "))
}

/// The medians of a side's CPU shares, per [`Figure`].
pub fn cpu_medians(s: &Side) -> [Option<Cpu>; 5] {
    std::array::from_fn(|i| {
        let c = &s.cpu[i];
        let m = |f: fn(&Cpu) -> f64| median(&c.iter().map(f).collect::<Vec<_>>());
        Some(Cpu {
            busy: m(|c| c.busy)?,
            steal: m(|c| c.steal)?,
            idle: m(|c| c.idle)?,
        })
    })
}

/// Where the time went: dom0's CPU shares during each figure, a column per side
/// (its name and medians).
pub fn cpu_table(sides: &[(&str, [Option<Cpu>; 5])]) -> String {
    let cell = |c: &Option<Cpu>| match c {
        Some(c) => format!(
            "{:>3.0}% {:>3.0}% {:>3.0}%",
            c.busy * 100.0,
            c.steal * 100.0,
            c.idle * 100.0
        ),
        None => format!("{:>14}", "?"),
    };
    let (mut head, mut sub) = (
        format!("{:<44}", "dom0's CPU during each (medians)"),
        format!("{:<44}", ""),
    );
    for (name, _) in sides {
        head += &format!("{name:>18}");
        sub += &format!("{:>18}", "busy steal idle");
    }
    let mut s = format!("{head}\n{sub}\n");
    for (i, f) in Figure::ALL.iter().enumerate() {
        s += &format!("{:<44}", f.label());
        for (_, c) in sides {
            s += &format!("{:>18}", cell(&c[i]));
        }
        s += "\n";
    }
    s
}

/// A target: xenpv-rt / Linux ≥ 1.0 for every figure in it.
pub struct Target {
    pub what: &'static str,
    pub figures: &'static [Figure],
}

/// The targets: TCP throughput both ways, UDP packets per second at both sizes.
pub const TARGETS: [Target; 2] = [
    Target {
        what: "TCP throughput >= 1.0x Linux (both directions)",
        figures: &[Figure::TcpIn, Figure::TcpOut],
    },
    Target {
        what: "UDP packets/s >= 1.0x Linux (64 B and 1472 B)",
        figures: &[Figure::Udp64, Figure::Udp1472],
    },
];

impl Target {
    /// Met (`Some(true)`), missed, or `None` if a figure is missing; and the line.
    pub fn verdict(&self, rt: &Medians, linux: &Medians) -> (Option<bool>, String) {
        let idx = |f: &Figure| Figure::ALL.iter().position(|g| g == f).expect("a figure");
        let rs: Vec<(Figure, Option<f64>)> = self
            .figures
            .iter()
            .map(|f| (*f, ratio(rt[idx(f)], linux[idx(f)])))
            .collect();
        let met = rs
            .iter()
            .map(|(_, r)| r.map(|r| r >= 1.0))
            .try_fold(true, |a, m| m.map(|m| a && m));
        let detail: Vec<String> = rs
            .iter()
            .map(|(f, r)| format!("{} {}x", f.tag(), opt(*r, 2)))
            .collect();
        let word = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a (no figures)",
        };
        (
            met,
            format!("{}: {word} ({})", self.what, detail.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RT: Medians = [
        Some(200.0),
        Some(100.0),
        Some(3000.0),
        Some(1000.0),
        Some(300.0),
    ];
    const LINUX: Medians = [
        Some(100.0),
        Some(100.0),
        Some(1500.0),
        Some(2000.0),
        Some(600.0),
    ];

    #[test]
    fn medians_ratios_and_targets() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        let t = table(
            &[Column {
                name: "async",
                medians: RT,
            }],
            Some(&LINUX),
            3,
        );
        assert_eq!(t.lines().count(), 6, "{t}");
        assert!(t
            .lines()
            .next()
            .unwrap()
            .ends_with("async         Linux       async/L"));
        assert!(t.lines().nth(1).unwrap().ends_with("2.00"), "{t}");
        assert!(t.lines().nth(5).unwrap().ends_with("0.50"), "{t}");
        let (met, line) = TARGETS[0].verdict(&RT, &LINUX);
        assert_eq!(met, Some(true), "{line}");
        assert!(
            line.ends_with(": met (tcp-in 2.00x, tcp-out 1.00x)"),
            "{line}"
        );
        let (met, line) = TARGETS[1].verdict(&RT, &LINUX);
        assert_eq!(met, Some(false));
        assert!(
            line.contains("MISSED (udp-64 2.00x, udp-1472 0.50x)"),
            "{line}"
        );
        let none: Medians = [None; 5];
        assert_eq!(TARGETS[0].verdict(&RT, &none).0, None);
        let c = [Column {
            name: "polled",
            medians: RT,
        }];
        assert!(table(&c, Some(&none), 1).contains('?'));
    }

    #[test]
    fn the_table_has_a_column_per_side_and_a_ratio_per_xenpv_side() {
        let cols = [
            Column {
                name: "polled",
                medians: RT,
            },
            Column {
                name: "async",
                medians: [Some(100.0), None, Some(3000.0), Some(1000.0), Some(600.0)],
            },
        ];
        let t = table(&cols, Some(&LINUX), 1);
        let head: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            head[head.len() - 5..],
            ["polled", "async", "Linux", "polled/L", "async/L"]
        );
        let tcp_in: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            tcp_in[tcp_in.len() - 5..],
            ["200.0", "100.0", "100.0", "2.00", "1.00"]
        );
        let tcp_out: Vec<&str> = t.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(
            tcp_out[tcp_out.len() - 5..],
            ["100.0", "?", "100.0", "1.00", "?"]
        );
        // Without Linux: the sides' figures only.
        let t = table(&cols, None, 1);
        assert!(
            t.lines().next().unwrap().trim_end().ends_with("async"),
            "{t}"
        );
        assert!(!t.contains("/L"), "{t}");
    }

    #[test]
    fn two_sides_are_compared_per_figure() {
        // b: tcp-in 0.95x, tcp-out 0.90x, udp 1.00x, RTT 300 -> 250 us (faster: 1.20x).
        let b: Medians = [
            Some(190.0),
            Some(90.0),
            Some(3000.0),
            Some(1000.0),
            Some(250.0),
        ];
        assert_eq!(
            compare("b", &b, "a", &RT),
            "b / a: tcp-in 0.95x, tcp-out 0.90x, udp-64 1.00x, udp-1472 1.00x, \
             rtt 1.20x per figure"
        );
        // A slower RTT (300 -> 400 us) is below 1; a figure missing on either side is `?`.
        let mut slow = b;
        slow[4] = Some(400.0);
        slow[2] = None;
        let line = compare("b", &slow, "a", &RT);
        assert!(
            line.contains("rtt 0.75x") && line.contains("udp-64 ?x"),
            "{line}"
        );
    }

    #[test]
    fn the_cpu_table_has_a_column_per_side() {
        let c = Some(Cpu {
            busy: 0.5,
            steal: 0.25,
            idle: 0.25,
        });
        let t = cpu_table(&[("polled", [c; 5]), ("async", [None; 5]), ("Linux", [c; 5])]);
        assert_eq!(t.lines().count(), 7, "{t}");
        let head: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(head[head.len() - 3..], ["polled", "async", "Linux"]);
        assert_eq!(
            t.lines().nth(1).unwrap().matches("busy steal idle").count(),
            3
        );
        let row = t.lines().nth(2).unwrap();
        assert!(row.contains(" 50%  25%  25%"), "{t}");
        assert_eq!(row.matches('?').count(), 1, "{t}");
    }
}
