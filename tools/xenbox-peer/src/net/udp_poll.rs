//! `udp-poll HOST:PORT`: ask a UDP echo service every few milliseconds until told to
//! stop, and report the longest time without an answer: a migration's downtime as a
//! client sees it (the last request served before, the first after).
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{check_addr, fail_io, is_timeout, millis, udp_connect, udp_recv, udp_send, Deadline};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::verdict::Verdict;

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "udp-poll",
    args: &["HOST:PORT"],
    about: "Send an 8-byte datagram (its sequence number) to the UDP echo service at HOST:PORT\n\
            every --every-ms ms until the file --until exists (or --timeout passes) and take\n\
            the time each echo arrives. The downtime is the longest time between two echoes\n\
            in a row (served_before_ms and served_after_ms: when they came, from the start;\n\
            seq_before and seq_after: their requests). Reports sent, answered, downtime_ms.\n\
            PASS iff at least one echo came before and after the longest gap and the last\n\
            datagram sent within 2 s of the end was answered (the service came back).",
    opts: &[
        Opt::val("every-ms", "MS", "10", "send a datagram every MS ms"),
        Opt::req("until", "FILE", "stop once FILE exists"),
        TIMEOUT,
    ],
};

/// The echoes' arrival times and what the longest gap between two of them was.
#[derive(Debug, Default, PartialEq)]
pub struct Gaps {
    /// (arrival since the start, sequence number) of the echo before the longest gap,
    /// and of the one after it.
    pub worst: Option<((Duration, u64), (Duration, u64))>,
    last: Option<(Duration, u64)>,
    /// Echoes taken.
    pub answered: u64,
}

impl Gaps {
    /// An echo of request `seq` arrived `at` after the start.
    pub fn echo(&mut self, at: Duration, seq: u64) {
        self.answered += 1;
        if let Some(prev) = self.last {
            let longer = match self.worst {
                Some((a, b)) => at.saturating_sub(prev.0) > b.0.saturating_sub(a.0),
                None => true,
            };
            if longer {
                self.worst = Some((prev, (at, seq)));
            }
        }
        self.last = Some((at, seq));
    }

    /// The longest gap between two echoes in a row.
    pub fn downtime(&self) -> Option<Duration> {
        self.worst.map(|(a, b)| b.0.saturating_sub(a.0))
    }

    /// The last echo's arrival and request.
    pub fn last(&self) -> Option<(Duration, u64)> {
        self.last
    }
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = &p.pos[0];
    check_addr(addr)?;
    let every = p.millis("every-ms")?.max(Duration::from_millis(1));
    let until = p.text("until").unwrap_or_default().to_string();
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let s = match udp_connect(addr, &d) {
        Ok(s) => s,
        Err(e) => {
            fail_io(&mut v, "connect", &e);
            return Ok(v);
        }
    };
    let start = Instant::now();
    let (mut seq, mut gaps, mut send_errors) = (0u64, Gaps::default(), 0u64);
    let mut next = start;
    let mut sent_at: Vec<Duration> = vec![];
    while !d.expired() && !Path::new(&until).exists() {
        if Instant::now() >= next {
            // A send can fail while the domain is away (no route, no ARP answer): that
            // request is simply not served.
            if udp_send(&s, &seq.to_le_bytes(), &d).is_err() {
                send_errors += 1;
            }
            sent_at.push(start.elapsed());
            seq += 1;
            next += every;
        }
        let mut buf = [0u8; 64];
        let until_next = next.max(Instant::now() + Duration::from_millis(1));
        match udp_recv(&s, &mut buf, until_next, &d) {
            Ok(Some(n)) if n >= 8 => {
                let got = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
                if got < seq {
                    gaps.echo(start.elapsed(), got);
                }
            }
            Ok(_) => {}
            // An ICMP error (the domain away) comes back as a refused receive.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                fail_io(&mut v, "recv", &e);
                break;
            }
        }
    }
    let end = start.elapsed();
    v.kv("sent", seq);
    v.kv("answered", gaps.answered);
    v.kv("send_errors", send_errors);
    v.kv("every_ms", millis(every));
    match (gaps.worst, gaps.last()) {
        (Some(((a, sa), (b, sb))), Some((_, last_seq))) => {
            v.kv("downtime_ms", millis(gaps.downtime().unwrap_or_default()));
            v.kv("served_before_ms", millis(a));
            v.kv("served_after_ms", millis(b));
            v.kv("seq_before", sa);
            v.kv("seq_after", sb);
            // Did the service come back for good: an echo of one of the requests of the
            // last 2 s?
            let recent = sent_at
                .iter()
                .position(|t| end.saturating_sub(*t) <= Duration::from_secs(2))
                .unwrap_or(sent_at.len()) as u64;
            if last_seq < recent {
                v.fail("no-echo-at-the-end");
            }
        }
        _ => v.fail("too-few-echoes"),
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testsrv::cmd;
    use std::net::UdpSocket;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_longest_gap_between_echoes_is_the_downtime() {
        let mut g = Gaps::default();
        for (t, s) in [(10, 0), (20, 1), (30, 2), (530, 40), (540, 41), (600, 47)] {
            g.echo(ms(t), s);
        }
        assert_eq!(g.downtime(), Some(ms(500)));
        assert_eq!(g.worst, Some(((ms(30), 2), (ms(530), 40))));
        assert_eq!(g.answered, 6);
        assert_eq!(g.last(), Some((ms(600), 47)));
        let mut one = Gaps::default();
        one.echo(ms(5), 0);
        assert_eq!(one.downtime(), None);
    }

    /// An echo service that stops answering for a while: the gap shows, the end is
    /// answered, PASS; one that never answers: FAIL.
    #[test]
    fn a_pause_of_the_service_is_measured() {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = srv.local_addr().unwrap().to_string();
        let stop = std::env::temp_dir().join(format!("udp-poll-stop-{}", std::process::id()));
        let _ = std::fs::remove_file(&stop);
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let mut buf = [0u8; 64];
            srv.set_read_timeout(Some(ms(50))).unwrap();
            while start.elapsed() < ms(1500) {
                if let Ok((n, from)) = srv.recv_from(&mut buf) {
                    let e = start.elapsed();
                    // Deaf from 400 ms to 700 ms.
                    if e < ms(400) || e > ms(700) {
                        srv.send_to(&buf[..n], from).unwrap();
                    }
                }
            }
            std::fs::write(&stop2, b"").unwrap();
        });
        let v = cmd(&[
            "udp-poll",
            &a,
            "--until",
            stop.to_str().unwrap(),
            "--timeout",
            "10",
        ]);
        t.join().unwrap();
        std::fs::remove_file(&stop).unwrap();
        assert!(v.passed(), "{v}");
        let down: u64 = v.get("downtime_ms").unwrap().parse().unwrap();
        assert!((250..=500).contains(&down), "{v}");
        // Nobody answers.
        let deaf = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = deaf.local_addr().unwrap().to_string();
        let v = cmd(&[
            "udp-poll",
            &a,
            "--until",
            "/nonexistent/x",
            "--timeout",
            "1",
        ]);
        assert!(!v.passed(), "{v}");
        assert_eq!(v.reason(), Some("too-few-echoes"), "{v}");
    }
}
