//! Which TCP connections the appliance takes, and how long it keeps them: the limits and
//! timeouts of its command line, which xenpv-net's listeners enforce (the service crate
//! maps them onto each listener's `TcpConfig`):
//! - **handshake**: a connection still in SYN-RECEIVED [`Limits::syn_ms`] after the SYN
//!   (a spoofed or vanished client) is reset;
//! - **head**: an HTTP connection that has not sent a whole request head within
//!   [`Limits::head_ms`] of connecting (slowloris, silent clients) is closed;
//! - **idle**: no byte in or out for [`Limits::idle_ms`] (a silent echo client, a client
//!   that stopped reading a body): closed;
//! - **per peer**: a new connection from a remote IPv4 address that already holds
//!   [`Limits::per_peer`] connections to the same port of the vif is reset, so one peer
//!   cannot take a whole port (the default is below [`Limits::max`]);
//! - **backlog and cap**: [`Limits::listen`] connections may wait to be accepted, and a
//!   port holds at most [`Limits::max`].
//!
//! The defaults ([`Limits::DEFAULT`]) change with command-line words ([`Limits::set`]):
//! `tcp_idle=S`, `head_timeout=S`, `syn_timeout=S` (seconds), `per_peer=N`,
//! `tcp_listen=N`, `tcp_max=N`.
//!
//! ```
//! use xenpv_appliance::admission::Limits;
//! let mut l = Limits::DEFAULT;
//! l.set("tcp_idle", 30).unwrap();
//! assert_eq!(l.idle_ms, 30_000);
//! assert!(l.set("tcp_max", 0).is_err());
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

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits::DEFAULT;

    #[test]
    fn the_default_per_peer_limit_fits_the_hostile_rows() {
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
