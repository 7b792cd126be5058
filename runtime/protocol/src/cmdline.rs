//! The guest command line: space-separated words, some of them `key=value`.
//!
//! ```
//! use xenpv_protocol::cmdline::Cmdline;
//!
//! let c = Cmdline("panic seed=0x10 exit=7 exit=9");
//! assert!(c.has("panic"));
//! assert_eq!(c.u64("seed"), Ok(Some(16)));
//! assert_eq!(c.value("exit"), Some("9")); // the last one wins
//! assert!(Cmdline("seed=ten").u64("seed").is_err());
//! ```

/// A view of the command line (start_info's `cmd_line`).
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a>(pub &'a str);

/// A `key=value` word whose value did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadValue<'a> {
    /// The key.
    pub key: &'a str,
    /// Its value as written.
    pub value: &'a str,
    /// What the value should have been ("a number").
    pub expected: &'static str,
}

impl core::fmt::Display for BadValue<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "command line: {}={:?} is not {}",
            self.key, self.value, self.expected
        )
    }
}

impl<'a> Cmdline<'a> {
    /// The words, split on ASCII whitespace (runs of it count as one separator).
    pub fn words(&self) -> impl Iterator<Item = &'a str> {
        self.0.split_ascii_whitespace()
    }
    /// Is the bare word present?
    pub fn has(&self, word: &str) -> bool {
        self.words().any(|w| w == word)
    }
    /// The value of the last `key=value` word for `key`.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }
    /// A number (decimal or 0x-hex), if the key is present.
    pub fn u64(&self, key: &'a str) -> Result<Option<u64>, BadValue<'a>> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        let parsed = match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        };
        parsed.map(Some).map_err(|_| BadValue {
            key,
            value: v,
            expected: "a number",
        })
    }
}

/// A vif's address from `ip=` (one entry per vif, comma-separated: `dhcp` or
/// `A.B.C.D/PREFIX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpWord {
    /// Ask a DHCP server.
    Dhcp,
    /// A fixed address and prefix length (1..=32).
    Static {
        /// The address.
        addr: [u8; 4],
        /// The prefix length.
        prefix: u8,
    },
}

impl IpWord {
    /// One entry of `ip=`; the error says what is wrong with it.
    ///
    /// ```
    /// use xenpv_protocol::cmdline::IpWord;
    /// assert_eq!(IpWord::parse("dhcp"), Ok(IpWord::Dhcp));
    /// assert_eq!(IpWord::parse("10.0.0.2/8"), Ok(IpWord::Static { addr: [10, 0, 0, 2], prefix: 8 }));
    /// assert!(IpWord::parse("10.0.0.2").is_err());
    /// ```
    pub fn parse(entry: &str) -> Result<IpWord, &'static str> {
        if entry == "dhcp" {
            return Ok(IpWord::Dhcp);
        }
        let (a, p) = entry.split_once('/').ok_or("no /PREFIX")?;
        let prefix: u8 = p.parse().map_err(|_| "the prefix is not a number")?;
        if !(1..=32).contains(&prefix) {
            return Err("the prefix is not in 1..=32");
        }
        let mut addr = [0u8; 4];
        let mut parts = a.split('.');
        for b in addr.iter_mut() {
            let s = parts.next().ok_or("fewer than four numbers")?;
            if s.is_empty() || s.len() > 3 || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err("a part is not a number 0..=255");
            }
            *b = s.parse().map_err(|_| "a part is not a number 0..=255")?;
        }
        if parts.next().is_some() {
            return Err("more than four numbers");
        }
        Ok(IpWord::Static { addr, prefix })
    }
}

impl<'a> Cmdline<'a> {
    /// Vif `index`'s entry of `ip=` (`None` if there is no `ip=` or it has fewer
    /// entries).
    ///
    /// ```
    /// use xenpv_protocol::cmdline::{Cmdline, IpWord};
    /// let c = Cmdline("net ip=169.254.100.2/24,dhcp");
    /// assert_eq!(c.ip(1), Ok(Some(IpWord::Dhcp)));
    /// assert_eq!(c.ip(2), Ok(None));
    /// ```
    pub fn ip(&self, index: usize) -> Result<Option<IpWord>, BadValue<'a>> {
        let Some(v) = self.value("ip") else {
            return Ok(None);
        };
        match v.split(',').nth(index) {
            None => Ok(None),
            Some(e) => IpWord::parse(e).map(Some).map_err(|why| BadValue {
                key: "ip",
                value: v,
                expected: why,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_entries() {
        let c = Cmdline("ip=10.1.2.3/24,dhcp,1.2.3/8");
        let s = IpWord::Static {
            addr: [10, 1, 2, 3],
            prefix: 24,
        };
        assert_eq!(c.ip(0), Ok(Some(s)));
        assert_eq!(c.ip(1), Ok(Some(IpWord::Dhcp)));
        assert_eq!(c.ip(2).unwrap_err().expected, "fewer than four numbers");
        assert_eq!(c.ip(3), Ok(None));
        assert_eq!(Cmdline("net").ip(0), Ok(None));
        for bad in [
            "1.2.3.4/0",
            "1.2.3.4/33",
            "1.2.3.256/8",
            "1.2.3.4.5/8",
            "a.b.c.d/8",
        ] {
            assert!(IpWord::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn words_values_and_numbers() {
        let c = Cmdline("  panic split=1G seed=0x10 exit=7 exit=9 ");
        assert!(c.has("panic"));
        assert!(!c.has("pani"));
        assert_eq!(c.value("split"), Some("1G"));
        assert_eq!(c.u64("seed"), Ok(Some(16)));
        assert_eq!(c.u64("exit"), Ok(Some(9)), "the last one wins");
        assert_eq!(c.u64("nope"), Ok(None));
        assert_eq!(
            Cmdline("seed=abc").u64("seed"),
            Err(BadValue {
                key: "seed",
                value: "abc",
                expected: "a number"
            })
        );
    }

    #[test]
    fn words_split_on_any_run_of_ascii_whitespace() {
        let c = Cmdline("a\tb\n  c\r\nd=1 ");
        assert_eq!(c.words().collect::<Vec<_>>(), ["a", "b", "c", "d=1"]);
        assert!(c.has("c") && c.has("d=1"));
    }

    #[test]
    fn an_empty_or_blank_line_has_no_words() {
        for line in ["", "   ", "\t\n"] {
            let c = Cmdline(line);
            assert_eq!(c.words().count(), 0);
            assert!(!c.has(""));
            assert_eq!(c.value(""), None);
            assert_eq!(c.u64("seed"), Ok(None));
        }
    }

    #[test]
    fn a_bare_word_and_a_key_are_different_things() {
        let c = Cmdline("seed split=1G");
        assert!(c.has("seed"));
        assert_eq!(c.value("seed"), None, "a bare word has no value");
        assert!(!c.has("split"), "a key=value word is not the bare word");
        assert_eq!(c.value("spl"), None, "keys match whole");
    }

    #[test]
    fn values_split_at_the_first_equals_and_may_be_empty() {
        let c = Cmdline("k= a=b=c =v");
        assert_eq!(c.value("k"), Some(""));
        assert_eq!(c.value("a"), Some("b=c"));
        assert_eq!(c.value(""), Some("v"));
        assert!(c.u64("k").is_err(), "an empty value is not a number");
    }

    #[test]
    fn the_last_of_repeated_keys_wins_even_when_earlier_ones_are_bad() {
        let c = Cmdline("seed=junk seed=3 other=1 seed=0x2a");
        assert_eq!(c.value("seed"), Some("0x2a"));
        assert_eq!(c.u64("seed"), Ok(Some(42)));
        let c = Cmdline("seed=3 seed=junk");
        assert_eq!(c.u64("seed").unwrap_err().value, "junk");
    }

    #[test]
    fn numbers_at_and_past_the_u64_limits() {
        let num = |s: &'static str| Cmdline(s).u64("n");
        assert_eq!(num("n=0"), Ok(Some(0)));
        assert_eq!(num("n=18446744073709551615"), Ok(Some(u64::MAX)));
        assert_eq!(num("n=0xffffffffffffffff"), Ok(Some(u64::MAX)));
        for bad in [
            "n=18446744073709551616",
            "n=0x1ffffffffffffffff",
            "n=-1",
            "n=0x",
            "n=1G",
        ] {
            assert!(num(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_value_names_key_value_and_expectation() {
        let e = Cmdline("exit=seven").u64("exit").unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: exit=\"seven\" is not a number"
        );
    }
}
