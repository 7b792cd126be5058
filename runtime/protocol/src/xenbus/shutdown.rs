//! `control/shutdown`: what the toolstack asks a guest to do (`xl shutdown`, `xl reboot`,
//! …), as Linux's `drivers/xen/manage.c` reads it. The guest acknowledges a request by
//! clearing the key (writing an empty value), then acts on it.

/// A request found in `control/shutdown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff` (`xl shutdown`, `xl destroy` with a PV-aware guest).
    Poweroff,
    /// `reboot` (`xl reboot`).
    Reboot,
    /// `halt`.
    Halt,
    /// `suspend` (save or migrate); this runtime cannot suspend, so it treats it as a
    /// request to stop.
    Suspend,
    /// Anything else: the value, printable ASCII only (others become `?`), at most 16
    /// bytes.
    Other(heapless::String<16>),
}

impl ShutdownRequest {
    /// The request in a value of `control/shutdown` (a trailing NUL ignored); `None` for an
    /// empty value (no request, or one already acknowledged).
    ///
    /// ```
    /// use xenpv_protocol::xenbus::ShutdownRequest;
    /// assert_eq!(ShutdownRequest::parse(b"poweroff"), Some(ShutdownRequest::Poweroff));
    /// assert_eq!(ShutdownRequest::parse(b""), None);
    /// ```
    pub fn parse(v: &[u8]) -> Option<ShutdownRequest> {
        let v = v.strip_suffix(b"\0").unwrap_or(v);
        Some(match v {
            b"" => return None,
            b"poweroff" => ShutdownRequest::Poweroff,
            b"reboot" => ShutdownRequest::Reboot,
            b"halt" => ShutdownRequest::Halt,
            b"suspend" => ShutdownRequest::Suspend,
            other => {
                let mut s = heapless::String::new();
                for &b in other.iter().take(16) {
                    let _ = s.push(if b.is_ascii_graphic() { b as char } else { '?' });
                }
                ShutdownRequest::Other(s)
            }
        })
    }

    /// The word as the toolstack wrote it (`"poweroff"`, …).
    pub fn as_str(&self) -> &str {
        match self {
            ShutdownRequest::Poweroff => "poweroff",
            ShutdownRequest::Reboot => "reboot",
            ShutdownRequest::Halt => "halt",
            ShutdownRequest::Suspend => "suspend",
            ShutdownRequest::Other(s) => s.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ShutdownRequest as R;

    #[test]
    fn parses_the_words_linux_knows() {
        assert_eq!(R::parse(b"poweroff\0"), Some(R::Poweroff));
        assert_eq!(R::parse(b"reboot"), Some(R::Reboot));
        assert_eq!(R::parse(b"halt"), Some(R::Halt));
        assert_eq!(R::parse(b"suspend"), Some(R::Suspend));
        assert_eq!(R::parse(b"\0"), None);
    }

    #[test]
    fn a_hostile_value_is_bounded_and_printable() {
        let r = R::parse(&[
            b'x', 0xff, b'\n', b'y', b'z', b'z', b'z', b'z', b'z', b'z', b'z', b'z', b'z', b'z',
            b'z', b'z', b'z', b'z', b'z',
        ])
        .unwrap();
        assert_eq!(r.as_str(), "x??yzzzzzzzzzzzz");
    }
}
