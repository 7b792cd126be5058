//! Text from a peer, made safe to print: xenstored's error names, backend paths, keys.
//! A peer's string may hold escape sequences (ESC `[2J` clears a terminal, others retitle
//! it or move the cursor over earlier lines), and the console is read on a terminal.
//! [`Escaped`] writes control characters as escapes instead (`\x1b`, `\u{9b}`), and a
//! backslash as `\\` so an escape cannot be forged; everything else as it is.
//!
//! ```
//! use xenpv_protocol::escape::{Escaped, EscapedBytes};
//!
//! assert_eq!(Escaped("ENOENT").to_string(), "ENOENT");
//! assert_eq!(Escaped("E\x1b[2J").to_string(), "E\\x1b[2J");
//! assert_eq!(EscapedBytes(b"a\xffb\n").to_string(), "a\\xffb\\x0a");
//! ```

use core::fmt::{self, Write as _};

/// A peer's string, displayed with its control characters escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a str);

/// A peer's bytes, displayed as printable ASCII with every other byte as `\xNN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscapedBytes<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of plain characters go out in one write.
        let mut plain = 0;
        for (i, c) in self.0.char_indices() {
            if c.is_control() || c == '\\' {
                f.write_str(&self.0[plain..i])?;
                match c {
                    '\\' => f.write_str("\\\\")?,
                    c if c.is_ascii() => write!(f, "\\x{:02x}", c as u32)?,
                    c => write!(f, "\\u{{{:x}}}", c as u32)?,
                }
                plain = i + c.len_utf8();
            }
        }
        f.write_str(&self.0[plain..])
    }
}

impl fmt::Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b' '..=b'~' => f.write_char(b as char)?,
                b => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenbus::{ErrorKind, XenbusError};
    use crate::xenstore::XsError;

    /// Nothing a terminal acts on: no C0/C1 control, no DEL.
    fn inert(s: &str) -> bool {
        !s.chars().any(|c| c.is_control())
    }

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("ENOENT", "ENOENT"),
            ("", ""),
            ("E\x1b[2J", "E\\x1b[2J"),
            ("a\nb\rc\td\0", "a\\x0ab\\x0dc\\x09d\\x00"),
            ("\x7f", "\\x7f"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("back\\slash", "back\\\\slash"),
            (
                "/local/domain/0/backend/vif/5/0",
                "/local/domain/0/backend/vif/5/0",
            ),
            ("héllo ✓", "héllo ✓"),
        ];
        for (raw, want) in cases {
            let got = Escaped(raw).to_string();
            assert_eq!(got, want, "{raw:?}");
            assert!(inert(&got), "{raw:?} -> {got:?}");
        }
        assert_eq!(
            EscapedBytes(b"ok\x1b\xff\\").to_string(),
            "ok\\x1b\\xff\\\\"
        );
        assert!(inert(&EscapedBytes(&[0x9b, 0x1b, 0x07]).to_string()));
    }

    #[test]
    fn peer_strings_in_errors_are_escaped() {
        // xenstored's error name (a peer's bytes, cut to ERRNO_MAX).
        let e = XsError::Xenstore("E\x1b]0;pwned\x07".try_into().unwrap());
        let s = e.to_string();
        assert!(inert(&s), "{s:?}");
        assert!(s.contains("E\\x1b]0;pwned\\x07"), "{s}");
        // A backend path (a peer's value) in a key of a xenbus error.
        let key = "/local/domain/0/backend/vif/5/0\x1b[2J/state";
        for kind in [
            ErrorKind::<XsError>::Missing {
                key: key.try_into().unwrap(),
            },
            ErrorKind::BadValue {
                key: key.try_into().unwrap(),
                why: "not a number",
            },
            ErrorKind::Timeout {
                key: key.try_into().unwrap(),
                want: "Connected",
                last: None,
            },
            ErrorKind::Store(XsError::Xenstore("EBAD\x1bc".try_into().unwrap())),
        ] {
            let e = XenbusError {
                device: "device/vif/0".try_into().unwrap(),
                kind,
            };
            let s = e.to_string();
            assert!(inert(&s), "{s:?}");
            assert!(s.starts_with("device/vif/0: "), "{s}");
        }
    }
}
