//! The guest command line: space-separated words, some of them `key=value`.

/// A view of the command line.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a>(pub &'a str);

/// A `key=value` word whose value did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadValue<'a> {
    pub key: &'a str,
    pub value: &'a str,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
