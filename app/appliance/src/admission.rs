//! Which TCP connections the appliance takes, and how long it keeps them: timeouts, a
//! pool of listening sockets per port (a backlog), and a per-peer limit.
//!
//! smoltcp has no accept queue: a listening socket *becomes* the connection. So the
//! appliance keeps a pool per port: at least [`Limits::listen`] sockets listening at any
//! time (topped up between received frames, see [`to_add`]), growing up to
//! [`Limits::max`] sockets, so that a SYN finds a listener while the port has room,
//! however slow the connections already served are. Sockets added beyond a port's base
//! set are retired when they close and enough others listen ([`retire`]).
//!
//! Every connection has a [`Conn`]: its [`Phase`] and two clocks. [`Conn::check`] says
//! when to give up on it ([`Why`]):
//! - **handshake**: still in SYN-RECEIVED [`Limits::syn_ms`] after the SYN (a spoofed
//!   or vanished client): reset;
//! - **head**: an HTTP connection that has not sent a whole request head within
//!   [`Limits::head_ms`] of connecting (slowloris, silent clients): closed;
//! - **idle**: no byte in or out for [`Limits::idle_ms`] (a silent echo client, a client
//!   that stopped reading a body): closed;
//! - **closing**: closed by us but not gone [`Limits::idle_ms`] later (a peer that never
//!   sends its FIN): reset.
//!
//! A new connection from a peer (remote IPv4 address) that already holds
//! [`Limits::per_peer`] connections to the same port of the vif is reset ([`admit`]):
//! one peer cannot take a whole pool (the default is below [`Limits::max`]), and a
//! peer's slow connections to one service do not cost it another.
//!
//! The defaults ([`Limits::DEFAULT`]) change with command-line words ([`Limits::set`]):
//! `tcp_idle=S`, `head_timeout=S`, `syn_timeout=S` (seconds), `per_peer=N`,
//! `tcp_listen=N`, `tcp_max=N`.
//!
//! ```
//! use xenpv_appliance::admission::{Conn, Limits, Phase, Why};
//! let l = Limits::DEFAULT;
//! let mut c = Conn::new(0, Phase::Handshake);
//! c.set_phase(1_000, Phase::Head);
//! assert_eq!(c.check(&l, 5_000), None);
//! assert_eq!(c.check(&l, 1_000 + l.head_ms), Some(Why::Head));
//! ```

use core::fmt;

/// The appliance's admission limits and timeouts (times in milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A connection with no byte in or out for this long is closed (`tcp_idle=S`); also
    /// smoltcp's own timeout for a peer that stops answering (keep-alive every quarter
    /// of it).
    pub idle_ms: u64,
    /// An HTTP connection must send its whole request head within this long
    /// (`head_timeout=S`).
    pub head_ms: u64,
    /// Longest time in SYN-RECEIVED (`syn_timeout=S`).
    pub syn_ms: u64,
    /// Most connections one remote IPv4 address holds to one port of a vif
    /// (`per_peer=N`).
    pub per_peer: usize,
    /// Sockets kept listening per port (`tcp_listen=N`).
    pub listen: usize,
    /// Most sockets per port, listening or connected (`tcp_max=N`).
    pub max: usize,
}

/// A word that could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLimit {
    /// The word.
    pub word: &'static str,
    /// Its allowed range, as text.
    pub range: &'static str,
}

impl fmt::Display for BadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}= must be in {}", self.word, self.range)
    }
}

impl Limits {
    /// The defaults: idle 60 s, head 10 s, handshake 5 s, 100 connections per peer, 4
    /// listening and at most 128 sockets per port.
    pub const DEFAULT: Limits = Limits {
        idle_ms: 60_000,
        head_ms: 10_000,
        syn_ms: 5_000,
        per_peer: 100,
        listen: 4,
        max: 128,
    };

    /// The command-line words [`Limits::set`] takes.
    pub const WORDS: [&'static str; 6] = [
        "tcp_idle",
        "head_timeout",
        "syn_timeout",
        "per_peer",
        "tcp_listen",
        "tcp_max",
    ];

    /// Set the limit named by `word` (one of [`Limits::WORDS`]) to `v` (seconds for the
    /// timeouts), or say its range. An unknown word is refused as well.
    pub fn set(&mut self, word: &str, v: u64) -> Result<(), BadLimit> {
        let bad = |word, range| Err(BadLimit { word, range });
        let secs = |v: u64| v * 1000;
        match word {
            "tcp_idle" if (1..=3600).contains(&v) => self.idle_ms = secs(v),
            "tcp_idle" => return bad("tcp_idle", "1..=3600 (seconds)"),
            "head_timeout" if (1..=3600).contains(&v) => self.head_ms = secs(v),
            "head_timeout" => return bad("head_timeout", "1..=3600 (seconds)"),
            "syn_timeout" if (1..=600).contains(&v) => self.syn_ms = secs(v),
            "syn_timeout" => return bad("syn_timeout", "1..=600 (seconds)"),
            "per_peer" if (1..=4096).contains(&v) => self.per_peer = v as usize,
            "per_peer" => return bad("per_peer", "1..=4096"),
            "tcp_listen" if (1..=64).contains(&v) => self.listen = v as usize,
            "tcp_listen" => return bad("tcp_listen", "1..=64"),
            "tcp_max" if (1..=1024).contains(&v) => self.max = v as usize,
            "tcp_max" => return bad("tcp_max", "1..=1024"),
            _ => {
                return bad(
                    "(unknown)",
                    "tcp_idle head_timeout syn_timeout per_peer tcp_listen tcp_max",
                )
            }
        }
        Ok(())
    }

    /// smoltcp's keep-alive interval for these limits: a quarter of the idle timeout (at
    /// least 1 s), so that a dead peer is found (smoltcp's timeout, [`Limits::idle_ms`],
    /// counts from the last segment received).
    pub fn keep_alive_ms(&self) -> u64 {
        (self.idle_ms / 4).max(1000)
    }
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// SYN received, handshake not complete.
    Handshake,
    /// HTTP: connected, waiting for the whole request head.
    Head,
    /// Serving (echo, discard, an HTTP response, including its checksum).
    Serving,
    /// We closed it; waiting for the peer to finish.
    Closing,
}

/// Why a connection is given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Too long in SYN-RECEIVED.
    Handshake,
    /// No whole request head in time.
    Head,
    /// No progress for the idle timeout.
    Idle,
    /// Closed by us, not gone in time.
    Closing,
}

/// One connection's phase and clocks (milliseconds of the caller's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    phase: Phase,
    /// When the phase began.
    since: u64,
    /// Last byte in or out (or the phase's start).
    progress: u64,
}

impl Conn {
    /// A connection entering `phase` at `now`.
    pub fn new(now: u64, phase: Phase) -> Conn {
        Conn {
            phase,
            since: now,
            progress: now,
        }
    }

    /// Its phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Move to `phase` at `now` (a new phase restarts both clocks; the same phase
    /// changes nothing).
    pub fn set_phase(&mut self, now: u64, phase: Phase) {
        if phase != self.phase {
            *self = Conn::new(now, phase);
        }
    }

    /// Bytes moved at `now`.
    pub fn progress(&mut self, now: u64) {
        self.progress = self.progress.max(now);
    }

    /// Give up on it at `now`? Why, or `None` to keep it.
    pub fn check(&self, l: &Limits, now: u64) -> Option<Why> {
        let since = now.saturating_sub(self.since);
        let idle = now.saturating_sub(self.progress);
        match self.phase {
            Phase::Handshake if since >= l.syn_ms => Some(Why::Handshake),
            Phase::Head if since >= l.head_ms => Some(Why::Head),
            Phase::Closing if since >= l.idle_ms => Some(Why::Closing),
            Phase::Head | Phase::Serving if idle >= l.idle_ms => Some(Why::Idle),
            _ => None,
        }
    }

    /// When [`Conn::check`] will next give up on it, if nothing moves (to bound how
    /// long the loop may sleep).
    pub fn deadline(&self, l: &Limits) -> u64 {
        let at = |base: u64, d: u64| base.saturating_add(d);
        match self.phase {
            Phase::Handshake => at(self.since, l.syn_ms),
            Phase::Head => at(self.since, l.head_ms).min(at(self.progress, l.idle_ms)),
            Phase::Serving => at(self.progress, l.idle_ms),
            Phase::Closing => at(self.since, l.idle_ms),
        }
    }
}

/// Sockets to add to a port's pool that has `listening` sockets listening out of
/// `total`: enough to have [`Limits::listen`] listening, within [`Limits::max`].
pub fn to_add(l: &Limits, listening: usize, total: usize) -> usize {
    l.listen
        .saturating_sub(listening)
        .min(l.max.saturating_sub(total))
}

/// Should a socket added beyond the port's base set, now closed, be retired (removed,
/// its buffers freed) rather than listen again, when `listening` others listen?
pub fn retire(l: &Limits, listening: usize) -> bool {
    listening >= l.listen
}

/// Admit a new connection from a peer that already holds `held` connections to the
/// same port (not counting this one)?
pub fn admit(l: &Limits, held: usize) -> bool {
    held < l.per_peer
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits::DEFAULT;

    #[test]
    fn a_silent_connection_is_given_up_at_its_phase_deadline() {
        // SYN-RECEIVED that never completes (a spoofed SYN).
        let c = Conn::new(100, Phase::Handshake);
        assert_eq!(c.check(&L, 100 + L.syn_ms - 1), None);
        assert_eq!(c.check(&L, 100 + L.syn_ms), Some(Why::Handshake));
        assert_eq!(c.deadline(&L), 100 + L.syn_ms);
        // Connected, sends nothing, or half a head, even byte by byte: the head
        // deadline holds whatever arrives.
        let mut c = Conn::new(0, Phase::Handshake);
        c.set_phase(1000, Phase::Head);
        for t in (1000..1000 + L.head_ms).step_by(500) {
            c.progress(t);
            assert_eq!(c.check(&L, t), None, "at {t}");
        }
        assert_eq!(c.check(&L, 1000 + L.head_ms), Some(Why::Head));
        assert_eq!(c.deadline(&L), 1000 + L.head_ms);
        // Serving: idle counts from the last byte.
        let mut c = Conn::new(0, Phase::Serving);
        c.progress(30_000);
        assert_eq!(c.check(&L, 30_000 + L.idle_ms - 1), None);
        assert_eq!(c.check(&L, 30_000 + L.idle_ms), Some(Why::Idle));
        assert_eq!(c.deadline(&L), 30_000 + L.idle_ms);
        // A stale progress time never moves the clock back.
        c.progress(10);
        assert_eq!(c.deadline(&L), 30_000 + L.idle_ms);
        // Closing: the peer never finishes.
        let c = Conn::new(5, Phase::Closing);
        assert_eq!(c.check(&L, 5 + L.idle_ms), Some(Why::Closing));
        // Setting the same phase again changes nothing; a clock behind the start is
        // no deadline.
        let mut c = Conn::new(50, Phase::Head);
        c.set_phase(9_000, Phase::Head);
        assert_eq!(c.check(&L, 50 + L.head_ms), Some(Why::Head));
        assert_eq!(c.check(&L, 0), None);
    }

    #[test]
    fn the_pool_keeps_listeners_up_to_its_cap_and_retires_extras() {
        // A burst: after each SYN (one frame at a time), one listener fewer; the pool
        // grows back until the cap.
        let (mut listening, mut total) = (L.listen, L.listen);
        let mut served = 0;
        for _syn in 0..200 {
            if listening == 0 {
                break; // the SYN finds no listener: refused
            }
            listening -= 1;
            served += 1;
            let n = to_add(&L, listening, total);
            listening += n;
            total += n;
            assert!(total <= L.max);
        }
        assert_eq!(served, L.max, "every socket of the pool serves one");
        assert_eq!(to_add(&L, 0, L.max), 0);
        assert_eq!(to_add(&L, L.listen, 10), 0);
        assert_eq!(to_add(&L, 1, 10), L.listen - 1);
        assert_eq!(to_add(&L, 0, L.max - 1), 1);
        // 64 clients at once get 64 sockets (the boot test's echo burst).
        const { assert!(L.max >= 64 + L.listen) };
        // Retire a closed extra only while enough others listen.
        assert!(retire(&L, L.listen));
        assert!(!retire(&L, L.listen - 1));
    }

    #[test]
    fn a_peer_is_admitted_up_to_its_limit() {
        assert!(admit(&L, 0));
        assert!(admit(&L, L.per_peer - 1));
        assert!(!admit(&L, L.per_peer));
        let mut l = L;
        l.set("per_peer", 2).unwrap();
        assert!(admit(&l, 1) && !admit(&l, 2));
        // 60 slow clients plus one more from one address fit the default.
        const { assert!(L.per_peer > 61 && L.per_peer < L.max) };
    }

    #[test]
    fn words_set_limits_within_their_ranges() {
        let mut l = Limits::DEFAULT;
        l.set("tcp_idle", 5).unwrap();
        l.set("head_timeout", 2).unwrap();
        l.set("syn_timeout", 1).unwrap();
        l.set("tcp_listen", 8).unwrap();
        l.set("tcp_max", 16).unwrap();
        assert_eq!(
            l,
            Limits {
                idle_ms: 5000,
                head_ms: 2000,
                syn_ms: 1000,
                per_peer: 100,
                listen: 8,
                max: 16
            }
        );
        assert_eq!(l.keep_alive_ms(), 1250);
        assert_eq!(Limits::DEFAULT.keep_alive_ms(), 15_000);
        for w in Limits::WORDS {
            assert!(l.set(w, 0).is_err(), "{w}=0");
            assert!(l.set(w, 1 << 40).is_err(), "{w}=2^40");
            assert!(l.set(w, 1).is_ok(), "{w}=1");
        }
        let e = l.set("tcp_idle", 0).unwrap_err();
        assert_eq!(e.to_string(), "tcp_idle= must be in 1..=3600 (seconds)");
        assert!(l.set("nope", 1).is_err());
    }
}
