//! Report lines: the one grammar of the console lines a host tool reads back.
//!
//! A report is a topic, then words and `key=value` fields:
//!
//! ```text
//! report = topic ":" *( 1*WS item ) *WS
//! topic  = name
//! item   = field / word
//! field  = name "=" value
//! name   = 1*( "a"-"z" / "0"-"9" / "_" / "." / "-" )
//! value  = bare / quoted
//! bare   = *( any char but whitespace ), not starting with DQUOTE
//! quoted = DQUOTE *( any char but "\" and DQUOTE / "\\" / "\"" / "\n" / "\r" / "\t" ) DQUOTE
//! word   = 1*( any char but whitespace ), not read as a field ("name=...")
//! ```
//!
//! So `stress: verdict=PASS per_hypercall=312` has topic `stress` and two fields, and
//! `peer: tcp-rr PASS rate=41234` has two words before its field. Words are for the
//! human reading along (and for lines that name what they are about); what a host
//! decides on is in fields. Writers quote a value only when it must be (empty, with
//! whitespace or a control character, or starting with `"`), so most lines read as
//! plain `k=v`, and reading back what was written gives the same report.
//!
//! A guest writes reports without allocating, through [`Writer`] (or
//! [`report!`](crate::report!)); a host reads them with `Report`'s `FromStr` (feature
//! `alloc`) and `find` in a console text.
//!
//! ```
//! use xenpv_contract::report;
//!
//! let n = 312u64;
//! let line = format!("{}", report!("stress", verdict = "PASS", per_hypercall = n));
//! assert_eq!(line, "stress: verdict=PASS per_hypercall=312");
//! # #[cfg(feature = "alloc")] {
//! let r: xenpv_contract::report::Report = line.parse().unwrap();
//! assert_eq!(r.field("verdict"), Some("PASS"));
//! assert_eq!(r.parse_field::<u64>("per_hypercall").unwrap(), 312);
//! # }
//! ```

use core::fmt::{self, Display, Write as _};

#[cfg(feature = "alloc")]
mod owned;
#[cfg(feature = "alloc")]
pub use owned::{find, FieldError, ParseError, Report};

/// Whether `s` is a topic or a key: `[a-z0-9_.-]+`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// Whether `s` can stand as a word: non-empty, no whitespace, and not read as a field
/// (`name=...`).
pub fn is_word(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(char::is_whitespace)
        && !s.split_once('=').is_some_and(|(k, _)| is_name(k))
}

/// Whether a value must be written quoted.
fn needs_quotes(s: &str) -> bool {
    s.is_empty() || s.starts_with('"') || s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Write `v` as a value: bare when it can be, else quoted with `\\`, `\"`, `\n`, `\r`,
/// `\t` escaped.
pub fn write_value(f: &mut dyn fmt::Write, v: &str) -> fmt::Result {
    if !needs_quotes(v) {
        return f.write_str(v);
    }
    f.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Scans a formatted value without storing it: is it empty, or does it need quotes?
struct Scan {
    empty: bool,
    quote: bool,
}

impl fmt::Write for Scan {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.is_empty() {
            return Ok(());
        }
        if self.empty && s.starts_with('"') {
            self.quote = true;
        }
        self.empty = false;
        self.quote |= s.chars().any(|c| c.is_whitespace() || c.is_control());
        Ok(())
    }
}

/// Escapes what is written through it, for a quoted value.
struct Escape<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for Escape<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Write a `Display` value as a report value, quoting it when it must be (the value is
/// formatted twice: once to look, once to write, so nothing is buffered).
fn write_display(f: &mut fmt::Formatter<'_>, v: &dyn Display) -> fmt::Result {
    let mut scan = Scan {
        empty: true,
        quote: false,
    };
    write!(scan, "{v}")?;
    if !(scan.empty || scan.quote) {
        return write!(f, "{v}");
    }
    f.write_char('"')?;
    write!(Escape(f), "{v}")?;
    f.write_char('"')
}

/// The items written after a report's topic: `()` for none, and `(earlier, Item)` for
/// one more (built by [`Writer::field`] and [`Writer::word`]).
pub trait Items {
    /// Write every item, each preceded by a space.
    fn write_items(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl Items for () {
    fn write_items(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// One item of a [`Writer`]: a field (with a key) or a word (without).
pub struct Item<'a, V: ?Sized> {
    key: Option<&'a str>,
    value: &'a V,
}

impl<P: Items, V: Display + ?Sized> Items for (P, Item<'_, V>) {
    fn write_items(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_items(f)?;
        f.write_char(' ')?;
        match self.1.key {
            Some(k) => {
                write!(f, "{k}=")?;
                write_display(f, &self.1.value)
            }
            // A word is written as it is: the writer promises it is one ([`is_word`]).
            None => write!(f, "{}", self.1.value),
        }
    }
}

/// A report being written, borrowed and without allocation: a topic and its items,
/// [`Display`]ed as one line (no newline). Topic, keys and words must follow the
/// grammar ([`is_name`], [`is_word`]); debug builds check them.
///
/// ```
/// use xenpv_contract::report::Writer;
///
/// let (calls, secs) = (12u64, 0.25f64);
/// let r = Writer::new("peer").word("tcp-rr").field("calls", &calls).field("secs", &secs);
/// assert_eq!(r.to_string(), "peer: tcp-rr calls=12 secs=0.25");
/// let why = "no disk";
/// assert_eq!(Writer::new("blk").field("why", &why).to_string(), r#"blk: why="no disk""#);
/// ```
pub struct Writer<'a, I> {
    topic: &'a str,
    items: I,
}

impl<'a> Writer<'a, ()> {
    /// A report of `topic` with no items yet.
    pub fn new(topic: &'a str) -> Self {
        debug_assert!(is_name(topic), "report topic {topic:?}");
        Writer { topic, items: () }
    }
}

impl<'a, I: Items> Writer<'a, I> {
    /// One more field, `key=value` (quoted if it must be).
    pub fn field<V: Display + ?Sized>(
        self,
        key: &'a str,
        value: &'a V,
    ) -> Writer<'a, (I, Item<'a, V>)> {
        debug_assert!(is_name(key), "report key {key:?}");
        Writer {
            topic: self.topic,
            items: (
                self.items,
                Item {
                    key: Some(key),
                    value,
                },
            ),
        }
    }

    /// One more word (see [`is_word`]).
    pub fn word(self, word: &'a str) -> Writer<'a, (I, Item<'a, str>)> {
        debug_assert!(is_word(word), "report word {word:?}");
        Writer {
            topic: self.topic,
            items: (
                self.items,
                Item {
                    key: None,
                    value: word,
                },
            ),
        }
    }
}

impl<I: Items> Display for Writer<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.topic)?;
        self.items.write_items(f)
    }
}

/// A report as a [`Writer`]: `report!("topic", key = value, ...)`; a value is any
/// expression whose type is `Display`, a key an identifier (or a string literal for keys
/// that are not identifiers: `"a.b" = v`).
///
/// ```
/// use xenpv_contract::report;
/// let per_hypercall = 312;
/// assert_eq!(
///     report!("stress", per_hypercall, "pages.mapped" = 7, verdict = "PASS").to_string(),
///     "stress: per_hypercall=312 pages.mapped=7 verdict=PASS",
/// );
/// ```
#[macro_export]
macro_rules! report {
    ($topic:expr $(, $($rest:tt)*)?) => {
        $crate::report!(@items $crate::report::Writer::new($topic); $($($rest)*)?)
    };
    (@items $w:expr; ) => { $w };
    (@items $w:expr; $key:ident = $v:expr $(, $($rest:tt)*)?) => {
        $crate::report!(@items $w.field(stringify!($key), &$v); $($($rest)*)?)
    };
    (@items $w:expr; $key:literal = $v:expr $(, $($rest:tt)*)?) => {
        $crate::report!(@items $w.field($key, &$v); $($($rest)*)?)
    };
    (@items $w:expr; $key:ident $(, $($rest:tt)*)?) => {
        $crate::report!(@items $w.field(stringify!($key), &$key); $($($rest)*)?)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_words() {
        for n in ["stress", "a", "x.y-z_0", "per_hypercall"] {
            assert!(is_name(n), "{n}");
        }
        for n in ["", "Stress", "a b", "a:", "a=b", "é"] {
            assert!(!is_name(n), "{n}");
        }
        for w in [
            "PASS", "tcp-rr", "(write,", "fault:", "=x", "A=b", "a\"b", "#PF", "\"x", "x\u{7}",
        ] {
            assert!(is_word(w), "{w}");
        }
        for w in ["", "a=b", "a b", "k=", "x\n", "k=\"v\""] {
            assert!(!is_word(w), "{w:?}");
        }
    }

    #[test]
    fn the_writer_quotes_only_when_it_must() {
        let (e, sp, q, nl) = ("", "a b", "\"x", "l1\nl2");
        let mid = "a\"b\\c";
        let r = Writer::new("t")
            .field("e", &e)
            .field("sp", &sp)
            .field("q", &q)
            .field("nl", &nl)
            .field("mid", &mid)
            .field("n", &-3i64);
        assert_eq!(
            r.to_string(),
            r#"t: e="" sp="a b" q="\"x" nl="l1\nl2" mid=a"b\c n=-3"#
        );
        assert_eq!(Writer::new("empty").to_string(), "empty:");
    }

    #[test]
    fn write_value_agrees_with_the_writer() {
        for v in ["", "plain", "a b", "\"", "tab\there", "x\\y", "\u{a0}"] {
            let mut s = String::new();
            write_value(&mut s, v).unwrap();
            assert_eq!(
                format!("t: k={s}"),
                Writer::new("t").field("k", &v).to_string(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn the_macro_takes_idents_literals_and_shorthand() {
        let secs = 1.5;
        let w = report!("bench", "a.b" = 1, secs, verdict = "PASS",);
        assert_eq!(w.to_string(), "bench: a.b=1 secs=1.5 verdict=PASS");
        assert_eq!(report!("x").to_string(), "x:");
    }
}
