//! `udp-rate HOST:PORT --size B`: a benchmark — keep a window of datagrams outstanding
//! at the UDP echo service for some seconds and count the echoes per second. Losses are
//! allowed (and reported).
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Instant;

use super::{
    check_addr, fail_io, mbit_s, millis, per_s, udp_connect, udp_recv, udp_send, Deadline,
};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::{datagram, datagram_seq};
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "udp-rate",
    args: &["HOST:PORT"],
    about: "For --seconds, keep --window datagrams of --size bytes outstanding at the UDP echo\n\
            service at HOST:PORT (sending another whenever one is echoed or lost) and count the\n\
            echoes. A datagram not echoed within --reply-ms is lost; echoes of 8 bytes or more\n\
            are matched by sequence number and checked (bad = corrupted). Reports sent,\n\
            received, lost, bad, pps (received per second) and mbit_s (echoed payload, one\n\
            way). PASS iff received > 0.",
    opts: &[
        Opt::req("size", "B", "datagram size, bytes (at most 65507)"),
        Opt::val("seconds", "S", "5", "how long to send (fractions allowed)"),
        Opt::val("window", "W", "32", "datagrams outstanding at once"),
        Opt::val("seed", "S", "1", "seed of the contents"),
        Opt::val(
            "reply-ms",
            "MS",
            "1000",
            "a datagram not echoed within MS ms is lost",
        ),
        TIMEOUT,
    ],
};

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = &p.pos[0];
    check_addr(addr)?;
    let size = p.u64_in("size", 0, 65507)? as usize;
    let seconds = p.secs("seconds")?;
    let window = p.u64_in("window", 1, 1 << 16)? as usize;
    let seed = p.u64("seed")?;
    let reply = p.millis("reply-ms")?;
    let d = Deadline::after(p.timeout()?);

    let mut v = Verdict::new(SPEC.name);
    let sock = match udp_connect(addr, &d) {
        Ok(s) => s,
        Err(e) => {
            fail_io(&mut v, "socket", &e);
            return Ok(v);
        }
    };
    // Outstanding datagrams by sequence number, and in the order they went out (entries
    // of answered ones are skipped when they come to the front).
    let mut out: HashMap<u64, Instant> = HashMap::new();
    let mut order: VecDeque<(u64, Instant)> = VecDeque::new();
    let (mut sent, mut received, mut lost, mut bad, mut late, mut refused) = (0u64, 0, 0, 0, 0, 0);
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let send_end = start + seconds;
    let mut stopped = None;
    let mut last_rx = start;
    let failed: Option<(&str, io::Error)> = 'run: loop {
        let now = Instant::now();
        while let Some(&(seq, t)) = order.front() {
            if !out.contains_key(&seq) {
                order.pop_front();
            } else if t + reply <= now {
                order.pop_front();
                out.remove(&seq);
                lost += 1;
            } else {
                break;
            }
        }
        if now < send_end {
            while out.len() < window {
                let data = datagram(seed, sent, size);
                if let Err(e) = udp_send(&sock, &data, &d) {
                    break 'run Some(("send", e));
                }
                let t = Instant::now();
                out.insert(sent, t);
                order.push_back((sent, t));
                sent += 1;
            }
        } else {
            stopped.get_or_insert(now);
            if out.is_empty() {
                break None;
            }
        }
        let oldest = order.front().map_or(now, |&(_, t)| t);
        let n = match udp_recv(&sock, &mut buf, oldest + reply, &d) {
            Ok(None) => continue,
            Ok(Some(n)) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                refused += 1;
                continue;
            }
            Err(e) => break Some(("recv", e)),
        };
        let r = &buf[..n];
        let seq = if size >= 8 {
            datagram_seq(r).filter(|s| out.contains_key(s))
        } else {
            order.iter().map(|&(s, _)| s).find(|s| out.contains_key(s))
        };
        let Some(seq) = seq else {
            late += 1;
            continue;
        };
        out.remove(&seq);
        let ok = if size >= 8 {
            r == datagram(seed, seq, size)
        } else {
            r.len() == size
        };
        if ok {
            received += 1;
            last_rx = Instant::now();
        } else {
            bad += 1;
        }
    };
    let stopped = stopped.unwrap_or_else(Instant::now);
    let span = last_rx.max(stopped) - start;
    if let Some((phase, e)) = &failed {
        fail_io(&mut v, phase, e);
    }
    if received == 0 {
        v.fail("no-echo");
    }
    v.kv("sent", sent);
    v.kv("received", received);
    v.kv("lost", lost + out.len() as u64);
    v.kv("bad", bad);
    v.kv("late", late);
    if refused > 0 {
        v.kv("icmp_refused", refused);
    }
    v.kv("elapsed_ms", millis(span));
    v.kv("pps", per_s(received, span));
    v.kv("mbit_s", mbit_s(received * size as u64, span));
    v.kv("size", size);
    v.kv("window", window);
    if lost > 0 || bad > 0 {
        progress(
            SPEC.name,
            format_args!("{lost} lost, {bad} corrupted (allowed)"),
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::net::testsrv::{cmd, udp_echo, UdpMode};

    #[test]
    fn counts_echoes() {
        let a = udp_echo(UdpMode::Honest);
        for size in ["1400", "4"] {
            let v = cmd(&["udp-rate", &a, "--size", size, "--seconds", "0.5"]);
            assert!(v.passed(), "{v}");
            assert!(
                v.get("received").unwrap().parse::<u64>().unwrap() > 100,
                "{v}"
            );
            assert_eq!(v.get("lost"), Some("0"), "{v}");
            assert_eq!(v.get("bad"), Some("0"), "{v}");
        }
    }

    #[test]
    fn losses_and_corruption_are_reported_but_pass() {
        let a = udp_echo(UdpMode::Drop(10));
        let v = cmd(&[
            "udp-rate",
            &a,
            "--size",
            "64",
            "--seconds",
            "0.5",
            "--reply-ms",
            "100",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("lost"), Some("1"), "{v}");
        let a = udp_echo(UdpMode::FlipLastByteOf(10));
        let v = cmd(&["udp-rate", &a, "--size", "64", "--seconds", "0.5"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("bad"), Some("1"), "{v}");
    }

    #[test]
    fn a_silent_server_fails_without_hanging() {
        let a = udp_echo(UdpMode::Silent);
        let t = Instant::now();
        let v = cmd(&[
            "udp-rate",
            &a,
            "--size",
            "64",
            "--seconds",
            "0.3",
            "--reply-ms",
            "200",
        ]);
        assert_eq!(v.reason(), Some("no-echo"), "{v}");
        assert!(v.get("lost").unwrap().parse::<u64>().unwrap() >= 32, "{v}");
        let v = cmd(&[
            "udp-rate",
            &a,
            "--size",
            "64",
            "--seconds",
            "30",
            "--timeout",
            "0.5",
        ]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
