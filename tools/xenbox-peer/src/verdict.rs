//! The one line each network subcommand ends with —
//! `peer: <subcommand> PASS key=value ...` or `peer: <subcommand> FAIL <reason> key=value ...`
//! — and the `peer: <subcommand>: ...` progress lines that may come before it. The
//! verdict is a report (`xenpv_contract::report`): the host reads it back with `Report`.
use std::fmt;
use xenpv_contract::report::write_value;

/// The outcome of a subcommand: pass or fail (with a one-word reason) plus measurements.
#[derive(Clone, Debug)]
pub struct Verdict {
    cmd: &'static str,
    fail: Option<String>,
    kv: Vec<(String, String)>,
}

impl Verdict {
    /// A passing verdict for `cmd`, with no measurements yet.
    pub fn new(cmd: &'static str) -> Self {
        Self {
            cmd,
            fail: None,
            kv: Vec::new(),
        }
    }

    /// Mark as failed for `reason` (one word, e.g. `timeout`), unless it failed already:
    /// the first reason stands.
    pub fn fail(&mut self, reason: &str) {
        if self.fail.is_none() {
            self.fail = Some(reason.replace(char::is_whitespace, "-"));
        }
    }

    /// Append `key=value` (quoted as the report grammar says: values that are empty,
    /// with whitespace, or starting with `"`).
    pub fn kv(&mut self, key: &str, value: impl fmt::Display) {
        self.kv.push((key.to_string(), value.to_string()));
    }

    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.fail.is_none()
    }

    /// The failure reason, if it failed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn reason(&self) -> Option<&str> {
        self.fail.as_deref()
    }

    /// The value of `key`, if reported.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.kv
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer: {} ", self.cmd)?;
        match &self.fail {
            None => f.write_str("PASS")?,
            Some(r) => write!(f, "FAIL {r}")?,
        }
        for (k, v) in &self.kv {
            write!(f, " {k}=")?;
            write_value(f, v)?;
        }
        Ok(())
    }
}

/// Print a progress line, `peer: <cmd>: <msg>`.
pub fn progress(cmd: &str, msg: impl fmt::Display) {
    println!("peer: {cmd}: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut v = Verdict::new("udp-echo");
        v.kv("sent", 3);
        v.kv("error", "connection refused");
        assert!(v.passed());
        assert_eq!(
            v.to_string(),
            "peer: udp-echo PASS sent=3 error=\"connection refused\""
        );
        v.fail("lost");
        v.fail("timeout");
        assert_eq!(v.reason(), Some("lost"));
        assert_eq!(v.get("sent"), Some("3"));
        assert_eq!(
            v.to_string(),
            "peer: udp-echo FAIL lost sent=3 error=\"connection refused\""
        );
    }

    #[test]
    fn the_host_reads_a_verdict_back_as_a_report() {
        use xenpv_contract::report::Report;
        let mut v = Verdict::new("http-get");
        for (k, val) in [
            ("mbit_s", "812.5"),
            ("empty", ""),
            ("eq", "a=b"),
            ("spaced", "two words"),
            ("quoted", "\"x\" \\ y"),
        ] {
            v.kv(k, val);
        }
        v.fail("short read");
        let r: Report = v.to_string().parse().unwrap();
        assert_eq!(r.topic, "peer");
        assert_eq!(r.words, ["http-get", "FAIL", "short-read"]);
        for (k, val) in &v.kv {
            assert_eq!(r.field(k), Some(val.as_str()), "{k}");
        }
        assert_eq!(r.parse_field::<f64>("mbit_s").unwrap(), 812.5);
    }
}
