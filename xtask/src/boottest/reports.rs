//! Checks on the reports a console carries (`topic: words key=value`, the grammar of
//! `xenpv_contract::report`): a row says which report it wants and what its fields must
//! be, and the console's lines are read with the contract's parser, not picked apart.
//!
//! ```text
//! report("stress").eq("verdict", "PASS").eq("non_none_ptes", 0).at_least("per_hypercall", 256)
//! dom0_like("peer: tcp-echo PASS conns=64 ok=64").at_least("bytes", 1.0)
//! ```
use std::fmt::{self, Display};
use xenpv_contract::report::Report;

/// Whose lines a report is looked for in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The guest's console (a domU's without the box's `domU| `), not Xen's `(XEN)` lines
    /// and not dom0's.
    Guest,
    /// The box's dom0 (its script and the peer program), `dom0| ` lines.
    Dom0,
    /// The runner's own lines about the run (`xenbox: …`).
    Runner,
}

/// A condition on one report.
enum Cond {
    /// The field equals this text.
    Eq(String, String),
    /// The field is a number in `min..=max`.
    Range(String, f64, f64),
    /// The field is a whole number (what a pattern's `\d+` said).
    Int(String),
    /// The field is a hexadecimal number (`0x…`).
    Hex(String),
    /// The field is exactly this many hex digits (a hash, without `0x`).
    HexDigits(String, usize),
    /// The field is one of these.
    OneOf(String, Vec<String>),
    /// A check of the whole report, with what it checks.
    All(&'static str, fn(&Report) -> Result<(), String>),
}

impl Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Eq(k, v) => write!(f, "{k}={v}"),
            Cond::Range(k, lo, hi) if *hi == f64::INFINITY && *lo == f64::NEG_INFINITY => {
                write!(f, "{k}=<number>")
            }
            Cond::Range(k, lo, hi) if *hi == f64::INFINITY => write!(f, "{k}>={lo}"),
            Cond::Range(k, lo, hi) if *lo == f64::NEG_INFINITY => write!(f, "{k}<={hi}"),
            Cond::Range(k, lo, hi) => write!(f, "{lo}<={k}<={hi}"),
            Cond::Int(k) => write!(f, "{k}=<n>"),
            Cond::Hex(k) => write!(f, "{k}=0x<hex>"),
            Cond::HexDigits(k, n) => write!(f, "{k}=<{n} hex digits>"),
            Cond::OneOf(k, vs) => write!(f, "{k}={}", vs.join("|")),
            Cond::All(what, _) => write!(f, "({what})"),
        }
    }
}

impl Cond {
    /// Why `r` does not meet the condition, if it does not.
    fn why_not(&self, r: &Report) -> Option<String> {
        let field = |k: &String| r.field(k).ok_or(format!("no {k}="));
        let res = match self {
            Cond::Eq(k, want) => field(k).and_then(|v| {
                (v == want)
                    .then_some(())
                    .ok_or(format!("{k}={v}, not {want}"))
            }),
            Cond::Range(k, lo, hi) => r
                .parse_field::<f64>(k.as_str())
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    (*lo <= v && v <= *hi)
                        .then_some(())
                        .ok_or(format!("{k}={v}, wanted {self}"))
                }),
            Cond::Int(k) => r
                .parse_field::<u64>(k.as_str())
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Cond::Hex(k) => field(k).and_then(|v| {
                v.strip_prefix("0x")
                    .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
                    .map(|_| ())
                    .ok_or(format!("{k}={v} is not 0x<hex>"))
            }),
            Cond::HexDigits(k, n) => field(k).and_then(|v| {
                (v.len() == *n && v.chars().all(|c| c.is_ascii_hexdigit()))
                    .then_some(())
                    .ok_or(format!("{k}={v} is not {n} hex digits"))
            }),
            Cond::OneOf(k, vs) => field(k).and_then(|v| {
                vs.iter()
                    .any(|w| w == v)
                    .then_some(())
                    .ok_or(format!("{k}={v}, not one of {vs:?}"))
            }),
            Cond::All(what, f) => f(r).map_err(|e| format!("{what}: {e}")),
        };
        res.err()
    }
}

/// A report a console must (or must not) carry: its source, its topic, words it has,
/// and conditions on its fields; built with [`report`], [`dom0`] or [`runner`] and the
/// methods below.
pub struct Expect {
    source: Source,
    topic: String,
    words: Vec<Vec<String>>,
    conds: Vec<Cond>,
}

/// A report of the guest's on `topic`.
pub fn report(topic: &str) -> Expect {
    Expect {
        source: Source::Guest,
        topic: topic.into(),
        words: Vec::new(),
        conds: Vec::new(),
    }
}

/// A report of the guest's like `example` (`topic: words key=value …`, parsed as a
/// report): its words in a run, and each of its fields equal (the report may have more).
///
/// # Panics
/// If `example` is not a report: a bug in the table, found by its host test.
pub fn like(example: &str) -> Expect {
    let r: Report = example
        .parse()
        .unwrap_or_else(|e| panic!("{example:?} is not a report: {e}"));
    let mut x = report(&r.topic);
    if !r.words.is_empty() {
        x.words.push(r.words);
    }
    x.conds
        .extend(r.fields.into_iter().map(|(k, v)| Cond::Eq(k, v)));
    x
}

/// A report of dom0's like `example` (see [`like`]).
pub fn dom0_like(example: &str) -> Expect {
    Expect {
        source: Source::Dom0,
        ..like(example)
    }
}

/// A report of the runner's like `example` (see [`like`]).
pub fn runner_like(example: &str) -> Expect {
    Expect {
        source: Source::Runner,
        ..like(example)
    }
}

impl Expect {
    /// It has these words, in this order and next to each other (among others); each
    /// call asks for one more such run.
    pub fn words(mut self, words: &[&str]) -> Self {
        self.words
            .push(words.iter().map(|w| w.to_string()).collect());
        self
    }

    /// Field `key` is `value` (compared as text: `0x10` is not `16`).
    pub fn eq(mut self, key: &str, value: impl Display) -> Self {
        self.conds.push(Cond::Eq(key.into(), value.to_string()));
        self
    }

    /// Field `key` is a number at least `min`.
    pub fn at_least(mut self, key: &str, min: f64) -> Self {
        self.conds.push(Cond::Range(key.into(), min, f64::INFINITY));
        self
    }

    /// Field `key` is a number at most `max`.
    pub fn at_most(mut self, key: &str, max: f64) -> Self {
        self.conds
            .push(Cond::Range(key.into(), f64::NEG_INFINITY, max));
        self
    }

    /// Field `key` is a number in `min..=max`.
    pub fn within(mut self, key: &str, min: f64, max: f64) -> Self {
        self.conds.push(Cond::Range(key.into(), min, max));
        self
    }

    /// Each of `keys` is a whole number (any value: the report must carry it).
    pub fn nums(mut self, keys: &[&str]) -> Self {
        self.conds
            .extend(keys.iter().map(|k| Cond::Int(k.to_string())));
        self
    }

    /// Field `key` is a hexadecimal number, `0x…`.
    pub fn hex(mut self, key: &str) -> Self {
        self.conds.push(Cond::Hex(key.into()));
        self
    }

    /// Field `key` is exactly `n` hex digits (a hash printed without `0x`).
    pub fn hex_digits(mut self, key: &str, n: usize) -> Self {
        self.conds.push(Cond::HexDigits(key.into(), n));
        self
    }

    /// Field `key` is one of `values`.
    pub fn one_of(mut self, key: &str, values: &[&str]) -> Self {
        self.conds.push(Cond::OneOf(
            key.into(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
        self
    }

    /// The report passes `f` (`what` says what it checks).
    pub fn all(mut self, what: &'static str, f: fn(&Report) -> Result<(), String>) -> Self {
        self.conds.push(Cond::All(what, f));
        self
    }

    /// Every report of this source and topic with the words, in order.
    pub fn candidates<'t>(&'t self, text: &'t str) -> impl Iterator<Item = Report> + 't {
        reports(text, self.source, &self.topic).filter(|r| {
            self.words
                .iter()
                .all(|run| r.words.windows(run.len()).any(|w| w == run.as_slice()))
        })
    }

    /// Why `r` does not meet this: every condition it fails.
    fn why_not(&self, r: &Report) -> Option<String> {
        let why: Vec<String> = self.conds.iter().filter_map(|c| c.why_not(r)).collect();
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Some report meets every condition; else the closest one and what it lacks.
    pub fn find_in(&self, text: &str) -> Result<Report, String> {
        let mut closest: Option<(usize, Report, String)> = None;
        for r in self.candidates(text) {
            match self.why_not(&r) {
                None => return Ok(r),
                Some(why) => {
                    let n = why.matches(", ").count();
                    if closest.as_ref().is_none_or(|(m, _, _)| n < *m) {
                        closest = Some((n, r, why));
                    }
                }
            }
        }
        Err(match closest {
            Some((_, r, why)) => format!("no report {self}: the closest, `{r}`, has {why}"),
            None => format!("no report {self} on the console"),
        })
    }

    /// No report meets every condition.
    pub fn absent_from(&self, text: &str) -> Result<(), String> {
        match self.find_in(text) {
            Ok(r) => Err(format!("the console has `{r}`, which it must not ({self})")),
            Err(_) => Ok(()),
        }
    }
}

impl Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = match self.source {
            Source::Guest => "",
            Source::Dom0 => "dom0| ",
            Source::Runner => "",
        };
        write!(f, "`{src}{}:", self.topic)?;
        for w in self.words.iter().flatten() {
            write!(f, " {w}")?;
        }
        write!(f, "`")?;
        for c in &self.conds {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// The reports of `topic` from `source` in a console's text, parsed by the contract's
/// `Report::from_str` (lines of that topic that do not parse are not reports).
pub fn reports<'t>(
    text: &'t str,
    source: Source,
    topic: &'t str,
) -> impl Iterator<Item = Report> + 't {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(move |l| {
            let line = match source {
                Source::Dom0 => l.strip_prefix("dom0| ")?,
                Source::Guest if l.starts_with("(XEN)") || l.starts_with("dom0| ") => return None,
                Source::Guest => l.strip_prefix("domU| ").unwrap_or(l),
                Source::Runner => l,
            };
            line.strip_prefix(topic)?.starts_with(':').then_some(line)
        })
        .filter_map(|l| l.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "(XEN) stress: verdict=PASS\n\
        domU| stress: seed=5 non_none_ptes=0 per_hypercall=300.5 verdict=PASS\n\
        dom0| peer: tcp-echo PASS bytes=64 conns=8 ok=8\n\
        xenbox: dom0-script exit 0\n";

    #[test]
    fn a_report_meets_its_conditions_or_says_what_it_lacks() {
        let s = || {
            report("stress")
                .eq("verdict", "PASS")
                .eq("non_none_ptes", 0)
        };
        assert!(s().at_least("per_hypercall", 256.0).find_in(TEXT).is_ok());
        let e = s()
            .at_least("per_hypercall", 301.0)
            .find_in(TEXT)
            .unwrap_err();
        assert!(
            e.contains("per_hypercall=300.5, wanted per_hypercall>=301"),
            "{e}"
        );
        assert!(s().nums(&["cycles"]).find_in(TEXT).is_err());
        assert!(dom0_like("peer: tcp-echo PASS")
            .eq("conns", 8)
            .find_in(TEXT)
            .is_ok());
        // dom0's lines are not the guest's, nor Xen's.
        assert!(report("peer").find_in(TEXT).is_err());
        assert_eq!(reports(TEXT, Source::Guest, "stress").count(), 1);
        assert!(runner_like("xenbox: exit 1").find_in(TEXT).is_err());
        assert!(runner_like("xenbox: exit dom0-script")
            .find_in(TEXT)
            .is_err());
        assert!(report("stress").hex("seed").find_in(TEXT).is_err());
        assert!(report("stress")
            .eq("verdict", "FAIL")
            .absent_from(TEXT)
            .is_ok());
        assert!(report("stress").absent_from(TEXT).is_err());
        assert!(like("stress: verdict=PASS non_none_ptes=0")
            .find_in(TEXT)
            .is_ok());
        assert!(like("stress: verdict=PASS non_none_ptes=1")
            .find_in(TEXT)
            .is_err());
        assert!(dom0_like("peer: tcp-echo PASS conns=8")
            .find_in(TEXT)
            .is_ok());
        assert!(dom0_like("peer: tcp-echo FAIL conns=8")
            .find_in(TEXT)
            .is_err());
        assert!(runner_like("xenbox: dom0-script exit 0")
            .find_in(TEXT)
            .is_ok());
    }
}
