//! Part A of the boot bench: the app as the PV dom0, its figures by memory size and
//! start-of-day mode, the table and the three target ratios.
use super::Mode;
use crate::bench::timing_report;
use std::collections::BTreeMap;

/// One dom0 boot's figures, from its `timing:` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Dom0Figures {
    /// Guest entry to `main`, µs.
    pub entry_to_main_us: f64,
    /// The paging takeover, µs.
    pub paging_setup_us: f64,
    /// MiB mapped at the start of day (`None`: not reported).
    pub mapped_mib: Option<f64>,
    /// Whether the guest reported `direct_map=` and `pt_write=` (a runtime from before
    /// the modes does not).
    pub mode_reported: bool,
}

/// The figures of one dom0 boot's console text, checked against the mode asked for:
/// once the guest says which `direct_map=`/`pt_write=` it used, they must be `mode`'s.
pub fn dom0_figures(text: &str, mode: Mode) -> Result<Dom0Figures, String> {
    let t = timing_report(text).ok_or("the guest printed no timing: entry_to_main_us=")?;
    let num = |key: &str| t.parse_field::<f64>(key).map_err(|e| e.to_string());
    let entry_to_main_us = num("entry_to_main_us")?;
    let paging_setup_us = num("paging_setup_us")?;
    let dm = t.field("direct_map");
    if let Some(dm) = dm.filter(|d| *d != mode.direct_map()) {
        return Err(format!(
            "asked for {:?} but the guest reports direct_map={dm}",
            mode.cmdline()
        ));
    }
    let pw = t.field("pt_write");
    if let (Some(want), Some(got)) = (mode.pt_write(), pw) {
        if want != got {
            return Err(format!(
                "asked for {:?} (pt_write={want}) but the guest reports pt_write={got}",
                mode.cmdline()
            ));
        }
    }
    let mapped_mib = match t.field("mapped_mib") {
        Some(_) => Some(num("mapped_mib")?),
        None => None,
    };
    Ok(Dom0Figures {
        entry_to_main_us,
        paging_setup_us,
        mapped_mib,
        mode_reported: dm.is_some() && pw.is_some(),
    })
}

/// The median (the mean of the middle two for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Medians of one (memory, mode) cell, in ms and MiB; `None` where no boot gave a figure.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cell {
    /// Guest entry to `main`, ms.
    pub entry_ms: Option<f64>,
    /// The paging takeover, ms.
    pub setup_ms: Option<f64>,
    /// MiB mapped at the start of day.
    pub mapped_mib: Option<f64>,
}

impl Cell {
    /// The medians of a cell's boots.
    pub fn of(boots: &[Dom0Figures]) -> Cell {
        let col = |f: fn(&Dom0Figures) -> Option<f64>| {
            median(&boots.iter().filter_map(f).collect::<Vec<_>>())
        };
        Cell {
            entry_ms: col(|b| Some(b.entry_to_main_us / 1000.0)),
            setup_ms: col(|b| Some(b.paging_setup_us / 1000.0)),
            mapped_mib: col(|b| b.mapped_mib),
        }
    }
}

/// The dom0 medians by (memory MiB, mode).
pub type Matrix = BTreeMap<(u64, Mode), Cell>;

/// A figure or `?`.
pub(super) fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.decimals$}"))
}

/// The dom0 table: a row per memory size, entry-to-main and paging setup (ms) per mode,
/// and the MiB on-demand mapped.
pub fn dom0_table(m: &Matrix, memories: &[u64]) -> String {
    let mut s = format!("{:<10}", "dom0");
    for mode in Mode::ALL {
        let w = if mode == Mode::OnDemand { 33 } else { 22 };
        s += &format!("{:>w$}", mode.name());
    }
    s += &format!("\n{:<10}", "MiB");
    for mode in Mode::ALL {
        s += &format!("{:>11}{:>11}", "entry ms", "setup ms");
        if mode == Mode::OnDemand {
            s += &format!("{:>11}", "mapped MiB");
        }
    }
    s.push('\n');
    for &mem in memories {
        s += &format!("{mem:<10}");
        for mode in Mode::ALL {
            let c = m.get(&(mem, mode)).copied().unwrap_or_default();
            s += &format!("{:>11}{:>11}", opt(c.entry_ms, 1), opt(c.setup_ms, 1));
            if mode == Mode::OnDemand {
                s += &format!("{:>11}", opt(c.mapped_mib, 0));
            }
        }
        s.push('\n');
    }
    s
}

/// A target ratio: its value (`None`: not computable from this run) and its ceiling.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    /// What is divided by what.
    pub what: String,
    /// The ratio.
    pub value: Option<f64>,
    /// The target: the ratio must be at most this.
    pub target: f64,
    /// Figures behind it worth printing too.
    pub detail: String,
}

impl Ratio {
    /// Met, missed, or `None` when there is no value.
    pub fn met(&self) -> Option<bool> {
        self.value.map(|v| v <= self.target)
    }

    /// `what: value (target <= T): met|MISSED`.
    pub fn line(&self) -> String {
        let verdict = match self.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a (no figures)",
        };
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!("; {}", self.detail)
        };
        format!(
            "{}: {} (target <= {}): {verdict}{detail}",
            self.what,
            opt(self.value, 2),
            self.target
        )
    }
}

/// `a / b` when both are there and `b` is positive.
pub(super) fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The three targets, comparing the largest memory size with the smallest (256 MiB as
/// the defaults go). With a single memory size the two that need a span have no value.
pub fn ratios(m: &Matrix, memories: &[u64]) -> Vec<Ratio> {
    let (lo, hi) = match (memories.iter().min(), memories.iter().max()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => (0, 0),
    };
    let get = |mem, mode| m.get(&(mem, mode)).copied().unwrap_or_default();
    let spread = hi > lo;
    // ms of paging setup per MiB of dom0 between the two sizes: what each extra MiB costs.
    let per_mib = |mode| match (get(hi, mode).setup_ms, get(lo, mode).setup_ms) {
        (Some(h), Some(l)) if spread => Some((h - l) / (hi - lo) as f64),
        _ => None,
    };
    let (eager, mmu) = (per_mib(Mode::Eager), per_mib(Mode::EagerMmu));
    vec![
        Ratio {
            what: format!("1. on-demand entry-to-main, {hi} MiB / {lo} MiB"),
            value: div(
                get(hi, Mode::OnDemand).entry_ms,
                get(lo, Mode::OnDemand).entry_ms,
            )
            .filter(|_| spread),
            target: 1.5,
            detail: String::new(),
        },
        Ratio {
            what: format!("2. entry-to-main at {lo} MiB, on-demand / eager-mmu"),
            value: div(
                get(lo, Mode::OnDemand).entry_ms,
                get(lo, Mode::EagerMmu).entry_ms,
            ),
            target: 0.25,
            detail: String::new(),
        },
        Ratio {
            what: format!("3. paging setup per MiB ({lo}..{hi} MiB), eager / eager-mmu"),
            value: div(eager, mmu),
            target: 0.6,
            detail: format!(
                "eager {} ms/MiB, eager-mmu {} ms/MiB",
                opt(eager, 4),
                opt(mmu, 4)
            ),
        },
    ]
}
