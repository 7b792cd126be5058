//! The guest's side of the toolstack's `control/` keys, decided as Linux's
//! `drivers/xen/manage.c` does (`shutdown_handler`, `sysrq_handler`):
//! - `control/shutdown` holds a request ([`ShutdownRequest`]). One the guest honours
//!   (poweroff, halt, reboot, crash) is acknowledged by clearing the key, then acted on;
//!   the first one decides how the guest ends, later ones are acknowledged and ignored.
//!   `suspend` is refused: never acknowledged (libxl gives up after its timeout and
//!   clears the key itself), said once per request; unless the guest supports it
//!   ([`Control::with_suspend`]), when it is acknowledged and acted on
//!   ([`Action::Suspend`]) like the others, except that it does not stop the guest. An unknown word is left
//!   unacknowledged too, as Linux does ("Ignoring shutdown request").
//! - `control/sysrq` holds one letter (`xl sysrq DOMID X`), acknowledged by clearing it:
//!   `b` reboots, `o` powers off, `c` crashes (as requests of their own); any other is
//!   not supported, said in a line.
//! - `control/feature-*`: what the guest honours, written once at boot ([`FEATURES`]).

use super::shutdown::ShutdownRequest;

/// The key the toolstack writes its shutdown requests to.
pub const SHUTDOWN_KEY: &str = "control/shutdown";
/// The key `xl sysrq` writes its letter to.
pub const SYSRQ_KEY: &str = "control/sysrq";
/// The feature keys the guest writes (value `1`) at boot: the requests it honours.
/// Not `feature-suspend` (refused by a guest without save/restore), nor
/// `feature-balloon`.
pub const FEATURES: [&str; 2] = ["control/feature-poweroff", "control/feature-reboot"];
/// The feature keys of a guest that suspends ([`Control::with_suspend`]): [`FEATURES`]
/// and `control/feature-suspend`.
pub const FEATURES_SUSPEND: [&str; 3] = [
    "control/feature-poweroff",
    "control/feature-reboot",
    "control/feature-suspend",
];

/// What to do about a value read from a control key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: no request, or one already said.
    Nothing,
    /// Stop with this request (the first one honoured).
    Stop(ShutdownRequest),
    /// A request honoured while already stopping for `first`: acknowledged, ignored.
    AlreadyStopping {
        /// The request just read.
        request: ShutdownRequest,
        /// The request the guest is stopping for.
        first: ShutdownRequest,
    },
    /// `suspend`, refused (left unacknowledged); said once per request.
    RefuseSuspend,
    /// `suspend`, acknowledged: suspend now (only with [`Control::with_suspend`]).
    Suspend,
    /// A word the guest does not know, left unacknowledged; said once per request.
    Unknown(ShutdownRequest),
    /// A sysrq letter with no meaning here (printable ASCII, else `?`).
    SysrqUnsupported(char),
}

/// The control keys' state across reads: the request the guest stops for, and the
/// unacknowledged request last said (so that a key read again is not said again).
#[derive(Clone, Debug, Default)]
pub struct Control {
    stopping: Option<ShutdownRequest>,
    said: Option<ShutdownRequest>,
    /// The guest suspends: `suspend` is acknowledged and acted on.
    suspend: bool,
}

impl Control {
    /// Nothing read yet.
    pub fn new() -> Control {
        Control::default()
    }

    /// Nothing read yet, for a guest that suspends: `suspend` is acknowledged and gives
    /// [`Action::Suspend`], unless the guest is already stopping (then it is refused, as
    /// without suspend support: a guest on its way out is not saved).
    ///
    /// ```
    /// use xenpv_protocol::xenbus::{Action, Control, ShutdownRequest};
    /// let mut c = Control::with_suspend();
    /// assert_eq!(c.shutdown(b"suspend"), (true, Action::Suspend));
    /// assert_eq!(c.shutdown(b""), (false, Action::Nothing)); // our own clear
    /// assert_eq!(c.shutdown(b"suspend"), (true, Action::Suspend)); // the next save
    /// ```
    pub fn with_suspend() -> Control {
        Control {
            suspend: true,
            ..Control::default()
        }
    }

    /// Does this guest suspend ([`Control::with_suspend`])?
    pub fn suspends(&self) -> bool {
        self.suspend
    }

    /// The feature keys to write at boot: with `control/feature-suspend` only for a
    /// guest that suspends.
    pub fn features(&self) -> &'static [&'static str] {
        if self.suspend {
            &FEATURES_SUSPEND
        } else {
            &FEATURES
        }
    }

    /// The request the guest is stopping for, if any.
    pub fn stopping(&self) -> Option<&ShutdownRequest> {
        self.stopping.as_ref()
    }

    /// Decide about a value of `control/shutdown`; `true` with it: acknowledge (clear the
    /// key) before acting.
    ///
    /// ```
    /// use xenpv_protocol::xenbus::{Action, Control, ShutdownRequest};
    /// let mut c = Control::new();
    /// assert_eq!(c.shutdown(b"suspend"), (false, Action::RefuseSuspend));
    /// assert_eq!(c.shutdown(b"suspend"), (false, Action::Nothing)); // said once
    /// assert_eq!(c.shutdown(b"reboot"), (true, Action::Stop(ShutdownRequest::Reboot)));
    /// ```
    pub fn shutdown(&mut self, value: &[u8]) -> (bool, Action) {
        let Some(r) = ShutdownRequest::parse(value) else {
            // Cleared (by us, or by the toolstack cancelling a refused suspend): a later
            // request is a new one.
            self.said = None;
            return (false, Action::Nothing);
        };
        if r.reason().is_some() {
            self.said = None;
            return (true, self.honour(r));
        }
        if r == ShutdownRequest::Suspend && self.suspend && self.stopping.is_none() {
            // Acknowledged (cleared): a later `suspend` is the next save.
            self.said = None;
            return (true, Action::Suspend);
        }
        if self.said.as_ref() == Some(&r) {
            return (false, Action::Nothing);
        }
        self.said = Some(r.clone());
        match r {
            ShutdownRequest::Suspend => (false, Action::RefuseSuspend),
            other => (false, Action::Unknown(other)),
        }
    }

    /// Decide about a value of `control/sysrq`: `None` if it holds no letter (nothing to
    /// do, nothing to acknowledge); else the letter and what to do, after clearing the
    /// key (Linux reads the first byte and acknowledges every letter).
    ///
    /// ```
    /// use xenpv_protocol::xenbus::{Action, Control, ShutdownRequest};
    /// let mut c = Control::new();
    /// assert_eq!(c.sysrq(b"h"), Some(('h', Action::SysrqUnsupported('h'))));
    /// assert_eq!(c.sysrq(b""), None);
    /// assert_eq!(c.sysrq(b"o"), Some(('o', Action::Stop(ShutdownRequest::Poweroff))));
    /// ```
    pub fn sysrq(&mut self, value: &[u8]) -> Option<(char, Action)> {
        let &b = value.first().filter(|&&b| b != 0)?;
        let key = if b.is_ascii_graphic() { b as char } else { '?' };
        let request = match b {
            b'b' => ShutdownRequest::Reboot,
            b'o' => ShutdownRequest::Poweroff,
            b'c' => ShutdownRequest::Crash,
            _ => return Some((key, Action::SysrqUnsupported(key))),
        };
        Some((key, self.honour(request)))
    }

    fn honour(&mut self, r: ShutdownRequest) -> Action {
        match &self.stopping {
            None => {
                self.stopping = Some(r.clone());
                Action::Stop(r)
            }
            Some(first) => Action::AlreadyStopping {
                request: r,
                first: first.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Action as A, Control};
    use crate::xenbus::ShutdownRequest as R;

    #[test]
    fn each_honoured_request_is_acknowledged_and_the_first_decides() {
        let mut c = Control::new();
        assert_eq!(c.shutdown(b""), (false, A::Nothing));
        assert_eq!(c.shutdown(b"poweroff\0"), (true, A::Stop(R::Poweroff)));
        assert_eq!(
            c.shutdown(b"reboot"),
            (
                true,
                A::AlreadyStopping {
                    request: R::Reboot,
                    first: R::Poweroff
                }
            )
        );
        assert_eq!(c.stopping(), Some(&R::Poweroff));
        for (v, r) in [
            (&b"halt"[..], R::Halt),
            (b"reboot", R::Reboot),
            (b"crash", R::Crash),
        ] {
            assert_eq!(Control::new().shutdown(v), (true, A::Stop(r)));
        }
    }

    #[test]
    fn suspend_is_refused_unacknowledged_once_per_request() {
        let mut c = Control::new();
        assert_eq!(c.shutdown(b"suspend"), (false, A::RefuseSuspend));
        assert_eq!(c.shutdown(b"suspend"), (false, A::Nothing));
        // libxl cancels (writes ""), then asks again: a new request, said again.
        assert_eq!(c.shutdown(b""), (false, A::Nothing));
        assert_eq!(c.shutdown(b"suspend"), (false, A::RefuseSuspend));
        assert_eq!(c.stopping(), None);
        // A poweroff written over a refused suspend is honoured.
        assert_eq!(c.shutdown(b"poweroff"), (true, A::Stop(R::Poweroff)));
    }

    #[test]
    fn with_suspend_each_suspend_is_acknowledged_and_does_not_stop() {
        let mut c = Control::with_suspend();
        assert_eq!(c.features().last(), Some(&"control/feature-suspend"));
        assert!(!Control::new()
            .features()
            .contains(&"control/feature-suspend"));
        for _ in 0..3 {
            assert_eq!(c.shutdown(b"suspend\0"), (true, A::Suspend));
            assert_eq!(c.shutdown(b""), (false, A::Nothing));
        }
        // Read again before our clear landed: a second ack is harmless (xl waits for "").
        assert_eq!(c.shutdown(b"suspend"), (true, A::Suspend));
        assert_eq!(c.stopping(), None);
        // A guest on its way out refuses (unacknowledged, said once).
        assert_eq!(c.shutdown(b"poweroff"), (true, A::Stop(R::Poweroff)));
        assert_eq!(c.shutdown(b"suspend"), (false, A::RefuseSuspend));
        assert_eq!(c.shutdown(b"suspend"), (false, A::Nothing));
    }

    #[test]
    fn an_unknown_word_is_left_and_said_once() {
        let mut c = Control::new();
        let (ack, a) = c.shutdown(b"hibernate");
        assert!(!ack);
        assert!(matches!(a, A::Unknown(ref r) if r.as_str() == "hibernate"));
        assert_eq!(c.shutdown(b"hibernate"), (false, A::Nothing));
        assert!(matches!(c.shutdown(b"x"), (false, A::Unknown(_))));
    }

    #[test]
    fn sysrq_letters() {
        let mut c = Control::new();
        assert_eq!(c.sysrq(b""), None);
        assert_eq!(c.sysrq(b"\0"), None);
        assert_eq!(c.sysrq(b"h"), Some(('h', A::SysrqUnsupported('h'))));
        assert_eq!(c.sysrq(b"\x07"), Some(('?', A::SysrqUnsupported('?'))));
        assert_eq!(c.sysrq(b"b"), Some(('b', A::Stop(R::Reboot))));
        assert_eq!(
            c.sysrq(b"c"),
            Some((
                'c',
                A::AlreadyStopping {
                    request: R::Crash,
                    first: R::Reboot
                }
            ))
        );
        assert_eq!(
            Control::new().sysrq(b"oops"),
            Some(('o', A::Stop(R::Poweroff)))
        );
        assert_eq!(Control::new().sysrq(b"c"), Some(('c', A::Stop(R::Crash))));
    }
}
