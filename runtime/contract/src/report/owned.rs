//! The owned, parsed form of a report (feature `alloc`): what the host tools read.

extern crate alloc;

use super::{is_name, is_word, write_value};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

/// A parsed report: its topic, its words and its fields, each in the order written.
/// `Display` writes the topic, the words, then the fields, quoting values that must be,
/// so that parsing what it writes gives the same report.
///
/// ```
/// use xenpv_contract::report::Report;
///
/// let r: Report = r#"peer: tcp-rr PASS rate=41234 note="two words""#.parse().unwrap();
/// assert_eq!(r.topic, "peer");
/// assert_eq!(r.words, ["tcp-rr", "PASS"]);
/// assert_eq!(r.field("note"), Some("two words"));
/// assert_eq!(r.parse_field::<u64>("rate").unwrap(), 41234);
/// assert!(r.parse_field::<u64>("nope").is_err());
/// assert_eq!(r.to_string().parse::<Report>().unwrap(), r);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// What the line is about (`[a-z0-9_.-]+`).
    pub topic: String,
    /// The words, in order (each [`is_word`]).
    pub words: Vec<String>,
    /// The fields, `(key, value)` in order (keys [`is_name`]); a key may repeat, and
    /// [`Report::field`] reads the first.
    pub fields: Vec<(String, String)>,
}

/// Why a line is not a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No `topic:` at the start of the line.
    NoTopic,
    /// The topic is not `[a-z0-9_.-]+`.
    BadTopic(String),
    /// No whitespace between the topic's colon and the first item, or between two items.
    NoSpace {
        /// Byte offset in the line.
        at: usize,
    },
    /// A quoted value without its closing quote.
    Unterminated {
        /// The field's key.
        key: String,
    },
    /// A backslash before something other than `\`, `"`, `n`, `r` or `t` in a quoted value.
    BadEscape {
        /// The field's key.
        key: String,
        /// The character after the backslash (`None`: the line ended).
        after: Option<char>,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NoTopic => write!(f, "no `topic:` at the start"),
            ParseError::BadTopic(t) => write!(f, "topic {t:?} is not [a-z0-9_.-]+"),
            ParseError::NoSpace { at } => write!(f, "no space before the item at byte {at}"),
            ParseError::Unterminated { key } => write!(f, "{key}=: the quoted value is not closed"),
            ParseError::BadEscape { key, after } => {
                write!(f, "{key}=: bad escape \\{after:?} in the quoted value")
            }
        }
    }
}

/// Why [`Report::parse_field`] found no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldError<E> {
    /// The report has no such field.
    Missing {
        /// The report's topic.
        topic: String,
        /// The key asked for.
        key: String,
    },
    /// The field's value does not parse as the type asked for.
    Invalid {
        /// The key asked for.
        key: String,
        /// The value.
        value: String,
        /// The type's parse error.
        error: E,
    },
}

impl<E: fmt::Display> fmt::Display for FieldError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::Missing { topic, key } => write!(f, "{topic}: no {key}="),
            FieldError::Invalid { key, value, error } => write!(f, "{key}={value}: {error}"),
        }
    }
}

impl Report {
    /// An empty report of `topic`.
    pub fn new(topic: &str) -> Self {
        Report {
            topic: topic.to_string(),
            ..Report::default()
        }
    }

    /// The value of the first field named `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the field `key`, parsed as a `T`.
    pub fn parse_field<T: FromStr>(&self, key: &str) -> Result<T, FieldError<T::Err>> {
        let v = self.field(key).ok_or_else(|| FieldError::Missing {
            topic: self.topic.clone(),
            key: key.to_string(),
        })?;
        v.parse().map_err(|error| FieldError::Invalid {
            key: key.to_string(),
            value: v.to_string(),
            error,
        })
    }

    /// Whether `word` is one of the report's words.
    pub fn has_word(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.topic)?;
        for w in &self.words {
            debug_assert!(is_word(w), "report word {w:?}");
            write!(f, " {w}")?;
        }
        for (k, v) in &self.fields {
            write!(f, " {k}=")?;
            write_value(f, v)?;
        }
        Ok(())
    }
}

/// The quoted value at the start of `s` (after its opening quote): the value and the
/// bytes consumed, closing quote included.
fn unquote(s: &str, key: &str) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => out.push(match chars.next().map(|(_, c)| c) {
                Some('"') => '"',
                Some('\\') => '\\',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                after => {
                    return Err(ParseError::BadEscape {
                        key: key.to_string(),
                        after,
                    })
                }
            }),
            c => out.push(c),
        }
    }
    Err(ParseError::Unterminated {
        key: key.to_string(),
    })
}

impl FromStr for Report {
    type Err = ParseError;

    /// Parse one line (a trailing `\r` or newline is ignored; nothing may come before
    /// the topic: strip a console's prefix first, see [`find`]).
    fn from_str(line: &str) -> Result<Self, ParseError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (topic, mut rest) = line.split_once(':').ok_or(ParseError::NoTopic)?;
        if !is_name(topic) {
            return Err(ParseError::BadTopic(topic.to_string()));
        }
        let mut r = Report::new(topic);
        loop {
            let trimmed = rest.trim_start();
            if trimmed.is_empty() {
                return Ok(r);
            }
            let at = line.len() - trimmed.len();
            if trimmed.len() == rest.len() {
                return Err(ParseError::NoSpace { at });
            }
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            let token = &trimmed[..end];
            match token.split_once('=') {
                Some((k, v)) if is_name(k) => {
                    let vstart = k.len() + 1;
                    if v.starts_with('"') {
                        let (value, used) = unquote(&trimmed[vstart + 1..], k)?;
                        r.fields.push((k.to_string(), value));
                        rest = &trimmed[vstart + 1 + used..];
                    } else {
                        r.fields.push((k.to_string(), v.to_string()));
                        rest = &trimmed[end..];
                    }
                }
                _ => {
                    r.words.push(token.to_string());
                    rest = &trimmed[end..];
                }
            }
        }
    }
}

/// Every report of `topic` in a console text, in order. A line may carry a console's
/// source prefix (`domU| `, `dom0| `: a name then `| `), which is skipped; lines of
/// other topics, and lines of this topic that do not parse, are not reports of it (so a
/// check that wants one fails by not finding it).
///
/// ```
/// use xenpv_contract::report::find;
///
/// let text = "hello\r\ndomU| stress: verdict=PASS\nstress: verdict=FAIL why=\"no pages\"\n";
/// let v: Vec<_> = find(text, "stress").map(|r| r.field("verdict").unwrap().to_string()).collect();
/// assert_eq!(v, ["PASS", "FAIL"]);
/// ```
pub fn find<'t>(text: &'t str, topic: &'t str) -> impl Iterator<Item = Report> + 't {
    text.lines().filter_map(move |l| {
        let l = strip_source(l.trim_end_matches('\r'));
        let rest = l.strip_prefix(topic)?;
        if !rest.starts_with(':') {
            return None;
        }
        l.parse().ok()
    })
}

/// A line without its console's source prefix (`domU| `), if it has one.
pub fn strip_source(line: &str) -> &str {
    match line.split_once("| ") {
        Some((src, rest))
            if !src.is_empty()
                && src
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            rest
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Report, ParseError> {
        s.parse()
    }

    #[test]
    fn the_lines_we_print_today_parse() {
        let r = p("timing: entry_to_main_us=1234 paging_setup_us=56 direct_map=on-demand").unwrap();
        assert_eq!(r.topic, "timing");
        assert!(r.words.is_empty());
        assert_eq!(r.parse_field::<u64>("entry_to_main_us").unwrap(), 1234);
        assert_eq!(r.field("direct_map"), Some("on-demand"));

        let r = p("xenpv-rt: fault: #PF page fault vector=14 error=0x2 rip=0xffffffff80004a1b rsp=0xffffffff8006ff08 cr2=0x0 (write, page not present)").unwrap();
        assert_eq!(r.topic, "xenpv-rt");
        assert_eq!(r.words[..4], ["fault:", "#PF", "page", "fault"]);
        assert_eq!(r.field("rip"), Some("0xffffffff80004a1b"));
        assert_eq!(r.field("cr2"), Some("0x0"));
        assert!(r.has_word("present)"));

        let r = p("xenbox: bench run 3 create_to_shutdown_ms=812 reason=0\r").unwrap();
        assert_eq!(r.words, ["bench", "run", "3"]);
        assert_eq!(r.parse_field::<u32>("reason").unwrap(), 0);

        let r = p("blkbench: seq_read_mib_s=512.5 bytes=67108864").unwrap();
        assert_eq!(r.parse_field::<f64>("seq_read_mib_s").unwrap(), 512.5);
    }

    #[test]
    fn fields_read_the_first_and_parse_errors_say_which() {
        let r = p("t: a=1 a=2 b=x").unwrap();
        assert_eq!(r.field("a"), Some("1"));
        assert_eq!(r.field("c"), None);
        assert!(matches!(
            r.parse_field::<u8>("c"),
            Err(FieldError::Missing { ref key, .. }) if key == "c"
        ));
        let e = r.parse_field::<u8>("b").unwrap_err();
        assert!(matches!(e, FieldError::Invalid { ref value, .. } if value == "x"));
        assert_eq!(e.to_string(), "b=x: invalid digit found in string");
    }

    #[test]
    fn what_is_not_a_report() {
        assert_eq!(p("no colon here"), Err(ParseError::NoTopic));
        assert_eq!(p(""), Err(ParseError::NoTopic));
        assert!(matches!(p("Big: a=1"), Err(ParseError::BadTopic(_))));
        assert!(matches!(p("domU| t: a=1"), Err(ParseError::BadTopic(_))));
        assert!(matches!(p(": a=1"), Err(ParseError::BadTopic(_))));
        assert_eq!(p("t:a=1"), Err(ParseError::NoSpace { at: 2 }));
        assert_eq!(p(r#"t: a="x"b=1"#), Err(ParseError::NoSpace { at: 8 }));
        assert!(matches!(
            p(r#"t: a="x"#),
            Err(ParseError::Unterminated { .. })
        ));
        assert!(matches!(
            p(r#"t: a="\q""#),
            Err(ParseError::BadEscape {
                after: Some('q'),
                ..
            })
        ));
        assert!(matches!(
            p(r#"t: a="\"#),
            Err(ParseError::BadEscape { after: None, .. })
        ));
        // Only values are quoted: a word is read as it is, quotes and all.
        assert_eq!(p(r#"t: "a b""#).unwrap().words, [r#""a"#, r#"b""#]);
        assert_eq!(p("t:"), Ok(Report::new("t")));
        assert_eq!(p("t:   \r\n"), Ok(Report::new("t")));
    }

    #[test]
    fn quoted_values_unescape() {
        let r = p(r#"t: why="no disk \"xvda\"" path="a\\b" nl="x\ny\tz\r" e="""#).unwrap();
        assert_eq!(r.field("why"), Some("no disk \"xvda\""));
        assert_eq!(r.field("path"), Some("a\\b"));
        assert_eq!(r.field("nl"), Some("x\ny\tz\r"));
        assert_eq!(r.field("e"), Some(""));
        assert_eq!(p("t: k=").unwrap().field("k"), Some(""));
    }

    #[test]
    fn find_skips_sources_other_topics_and_broken_lines() {
        let text = "stress: n=1\ndom0| stress: n=2\r\nstressed: n=9\nstress:n=9\nx| y| stress: n=9\nstress: n=\"3\n  stress: n=9\nstress: n=4";
        let n: Vec<String> = find(text, "stress")
            .map(|r| r.field("n").unwrap().to_string())
            .collect();
        assert_eq!(n, ["1", "2", "4"]);
        assert_eq!(strip_source("domU| a: b"), "a: b");
        assert_eq!(strip_source("a| b"), "b");
        assert_eq!(strip_source("a b| c"), "a b| c");
        assert_eq!(strip_source("| c"), "| c");
    }

    #[test]
    fn the_writer_and_the_parser_agree() {
        let (v, w) = ("two words", "x\"y");
        let line = crate::report!("t", a = v, b = w, c = 3).to_string();
        let r = p(&line).unwrap();
        assert_eq!(r.field("a"), Some(v));
        assert_eq!(r.field("b"), Some(w));
        assert_eq!(r.field("c"), Some("3"));
        assert_eq!(r.to_string(), line);
    }

    fn report() -> impl Strategy<Value = Report> {
        let name = "[a-z0-9_.-]{1,8}";
        let word = "\\S{1,9}".prop_filter("a word", |w: &String| is_word(w));
        let value = any::<String>();
        (
            name,
            proptest::collection::vec(word, 0..4),
            proptest::collection::vec((name, value), 0..5),
        )
            .prop_map(|(topic, words, fields)| Report {
                topic,
                words,
                fields,
            })
    }

    proptest! {
        #[test]
        fn parse_of_display_is_the_report(r in report()) {
            let line = r.to_string();
            prop_assert!(!line.contains('\n'), "{:?}", line);
            prop_assert_eq!(p(&line), Ok(r.clone()));
            // A console adds its prefix and a carriage return: find still reads it.
            let console = format!("junk\ndomU| {line}\r\n");
            let found: Vec<Report> = find(&console, &r.topic).collect();
            prop_assert_eq!(found, vec![r]);
        }

        #[test]
        fn the_parser_never_panics(s in any::<String>()) {
            let _ = p(&s);
        }
    }
}
