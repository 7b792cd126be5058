//! `control/shutdown`: what the toolstack asks a guest to do (`xl shutdown`, `xl reboot`,
//! …), as Linux's `drivers/xen/manage.c` reads it. The guest acknowledges a request by
//! clearing the key (writing an empty value), then acts on it; it ends with the
//! [`ShutdownReason`] the request maps to ([`ShutdownRequest::reason`]).

/// A request found in `control/shutdown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff` (`xl shutdown`, `xl destroy` with a PV-aware guest).
    Poweroff,
    /// `reboot` (`xl reboot`).
    Reboot,
    /// `halt`.
    Halt,
    /// `crash`: end as crashed (`SHUTDOWN_crash`: the toolstack's `on_crash` applies).
    Crash,
    /// `suspend` (save or migrate). This runtime cannot suspend yet: the request is
    /// refused (never acknowledged, see [`crate::xenbus::Control`]), the guest goes on.
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
            b"crash" => ShutdownRequest::Crash,
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
            ShutdownRequest::Crash => "crash",
            ShutdownRequest::Suspend => "suspend",
            ShutdownRequest::Other(s) => s.as_str(),
        }
    }

    /// How the domain ends when it honours this request (`SCHEDOP_shutdown`'s reason):
    /// poweroff and halt power off, reboot reboots, crash crashes; `None` for a request
    /// the guest does not stop for (suspend, anything unknown).
    ///
    /// ```
    /// use xenpv_protocol::xenbus::{ShutdownReason, ShutdownRequest};
    /// assert_eq!(ShutdownRequest::Reboot.reason(), Some(ShutdownReason::Reboot));
    /// assert_eq!(ShutdownRequest::Suspend.reason(), None);
    /// ```
    pub fn reason(&self) -> Option<ShutdownReason> {
        match self {
            ShutdownRequest::Poweroff | ShutdownRequest::Halt => Some(ShutdownReason::Poweroff),
            ShutdownRequest::Reboot => Some(ShutdownReason::Reboot),
            ShutdownRequest::Crash => Some(ShutdownReason::Crash),
            ShutdownRequest::Suspend | ShutdownRequest::Other(_) => None,
        }
    }
}

/// How a domain ends: the reason it gives `SCHEDOP_shutdown` (`SHUTDOWN_*` in
/// `xen/include/public/sched.h`), which the toolstack's `on_poweroff`, `on_reboot` and
/// `on_crash` act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff` (0): stop.
    Poweroff,
    /// `SHUTDOWN_reboot` (1): restart (a new domain, under xl `on_reboot = "restart"`).
    Reboot,
    /// `SHUTDOWN_crash` (3): stopped on an error.
    Crash,
}

impl ShutdownReason {
    /// The `SHUTDOWN_*` code.
    pub fn code(self) -> u32 {
        match self {
            ShutdownReason::Poweroff => xen_sys::SHUTDOWN_poweroff,
            ShutdownReason::Reboot => xen_sys::SHUTDOWN_reboot,
            ShutdownReason::Crash => xen_sys::SHUTDOWN_crash,
        }
    }

    /// Its name in the report line (`poweroff`, `reboot`, `crash`).
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Crash => "crash",
        }
    }

    /// The reason a guest ends with: a failing status (non-zero) is a crash whatever
    /// was asked; status 0 ends as the toolstack asked (`requested`), or powers off.
    ///
    /// ```
    /// use xenpv_protocol::xenbus::ShutdownReason as R;
    /// assert_eq!(R::for_exit(0, Some(R::Reboot)), R::Reboot);
    /// assert_eq!(R::for_exit(0, None), R::Poweroff);
    /// assert_eq!(R::for_exit(2, Some(R::Reboot)), R::Crash);
    /// ```
    pub fn for_exit(status: i32, requested: Option<ShutdownReason>) -> ShutdownReason {
        match (status, requested) {
            (0, Some(r)) => r,
            (0, None) => ShutdownReason::Poweroff,
            _ => ShutdownReason::Crash,
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
        assert_eq!(R::parse(b"crash"), Some(R::Crash));
        assert_eq!(R::parse(b"\0"), None);
    }

    #[test]
    fn each_request_ends_with_its_reason() {
        use super::ShutdownReason as E;
        assert_eq!(R::Poweroff.reason(), Some(E::Poweroff));
        assert_eq!(R::Halt.reason(), Some(E::Poweroff));
        assert_eq!(R::Reboot.reason(), Some(E::Reboot));
        assert_eq!(R::Crash.reason(), Some(E::Crash));
        assert_eq!(R::parse(b"hibernate").unwrap().reason(), None);
        assert_eq!(
            [E::Poweroff.code(), E::Reboot.code(), E::Crash.code()],
            [0, 1, 3]
        );
        assert_eq!(E::for_exit(0, Some(E::Crash)), E::Crash);
        assert_eq!(E::for_exit(-1, None), E::Crash);
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
