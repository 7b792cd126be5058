//! `udp-echo HOST:PORT`: send datagrams of cycling sizes with seeded contents to an
//! RFC 862 echo service and check each comes back byte-identical; no retransmission, so
//! every loss shows.
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use super::{
    check_addr, fail_io, is_timeout, millis, per_s, udp_connect, udp_recv, udp_send, Deadline,
};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::{datagram, datagram_seq};
use crate::verdict::Verdict;

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "udp-echo",
    args: &["HOST:PORT"],
    about: "Send --count datagrams to the UDP echo service at HOST:PORT, their sizes cycling\n\
            min, min+1, ..., max, min, ... and their contents pseudo-random from --seed (the\n\
            first 8 bytes of those of 8 bytes or more are their sequence number), and check\n\
            that each comes back byte-identical. Up to --window datagrams of 8 bytes or more\n\
            are outstanding at once, replies matched by sequence number; smaller ones are sent\n\
            alone. A datagram not echoed within --reply-ms is lost (never resent).\n\
            With --sizes, the sizes cycle through that list instead (datagrams over the\n\
            link's MTU are fragmented by dom0's kernel, and the echo must come back whole).\n\
            PASS iff lost=0 and mismatched=0 (late and duplicate echoes are only reported).",
    opts: &[
        Opt::val("count", "N", "10000", "datagrams to send"),
        Opt::val("min", "B", "1", "smallest datagram, bytes"),
        Opt::val(
            "max",
            "B",
            "1472",
            "largest datagram, bytes (at most 65507)",
        ),
        Opt {
            name: "sizes",
            value: Some("B,B,..."),
            default: None,
            required: false,
            help: "cycle these datagram sizes instead of --min..=--max (each at most 65507)",
        },
        Opt::val("seed", "S", "1", "seed of the contents"),
        Opt::val("window", "W", "1", "datagrams outstanding at once"),
        Opt::val(
            "reply-ms",
            "MS",
            "3000",
            "a datagram not echoed within MS ms is lost",
        ),
        TIMEOUT,
    ],
};

/// A datagram sent and not yet answered.
struct Pending {
    data: Vec<u8>,
    sent: Instant,
}

/// The counts the verdict reports.
#[derive(Default)]
struct Stats {
    sent: u64,
    returned: u64,
    lost: u64,
    mismatched: u64,
    late: u64,
    dup: u64,
    refused: u64,
    rtt_sum: Duration,
    rtt_max: Duration,
    first_lost: Option<(u64, usize)>,
    first_bad: Option<(u64, usize, usize)>,
}

/// How many small (< 8 bytes, so unnumbered) datagrams to remember for recognising late
/// and duplicate echoes of them.
const RECENT_SMALL: usize = 64;

struct Run {
    window: usize,
    reply: Duration,
    out: BTreeMap<u64, Pending>,
    lost_seqs: HashSet<u64>,
    /// Recent small datagrams: (contents, lost?).
    recent_small: VecDeque<(Vec<u8>, bool)>,
    st: Stats,
}

impl Run {
    fn remember_small(&mut self, data: Vec<u8>, lost: bool) {
        if self.recent_small.len() == RECENT_SMALL {
            self.recent_small.pop_front();
        }
        self.recent_small.push_back((data, lost));
    }

    fn answered(&mut self, seq: u64, p: Pending, r: &[u8]) {
        if p.data == r {
            let rtt = p.sent.elapsed();
            self.st.returned += 1;
            self.st.rtt_sum += rtt;
            self.st.rtt_max = self.st.rtt_max.max(rtt);
        } else {
            self.st.mismatched += 1;
            self.st
                .first_bad
                .get_or_insert((seq, p.data.len(), r.len()));
        }
        if p.data.len() < 8 {
            self.remember_small(p.data, false);
        }
    }

    /// Datagrams outstanding for longer than --reply-ms are lost.
    fn expire(&mut self, now: Instant) {
        while let Some(e) = self.out.first_entry() {
            if e.get().sent + self.reply > now {
                break;
            }
            let (seq, p) = e.remove_entry();
            self.st.lost += 1;
            self.st.first_lost.get_or_insert((seq, p.data.len()));
            if p.data.len() >= 8 {
                self.lost_seqs.insert(seq);
            } else {
                self.remember_small(p.data, true);
            }
        }
    }

    /// Whether the next datagram, of `size` bytes, may go out now.
    fn may_send(&self, size: usize) -> bool {
        match self.out.first_key_value() {
            None => true,
            Some((_, first)) => {
                size >= 8
                    && self.window > 1
                    && first.data.len() >= 8
                    && self.out.len() < self.window
            }
        }
    }

    /// Account for the echo `r`, given that datagrams `0..next` went out.
    fn reply(&mut self, r: &[u8], next: u64, size_of: impl Fn(u64) -> usize) {
        if let Some(seq) = datagram_seq(r).filter(|&s| s < next && size_of(s) >= 8) {
            if let Some(p) = self.out.remove(&seq) {
                self.answered(seq, p, r);
            } else if self.lost_seqs.contains(&seq) {
                self.st.late += 1;
            } else {
                self.st.dup += 1;
            }
            return;
        }
        // No usable sequence number: it can only be the echo of a datagram that went
        // alone (or a late or repeated echo of a recent small one).
        let alone = self.out.len() == 1
            && (self.window == 1 || self.out.values().next().is_some_and(|p| p.data.len() < 8));
        if alone && self.out.values().next().is_some_and(|p| p.data == r) {
            let (seq, p) = self.out.pop_first().unwrap();
            self.answered(seq, p, r);
        } else if let Some((_, lost)) = self.recent_small.iter().find(|(d, _)| d == r) {
            if *lost {
                self.st.late += 1;
            } else {
                self.st.dup += 1;
            }
        } else if alone {
            let (seq, p) = self.out.pop_first().unwrap();
            self.answered(seq, p, r);
        } else {
            // An echo of nothing we sent (e.g. a corrupted sequence number): the datagram
            // it was will also be counted lost.
            self.st.mismatched += 1;
            self.st.first_bad.get_or_insert((u64::MAX, 0, r.len()));
        }
    }
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = &p.pos[0];
    check_addr(addr)?;
    let count = p.u64_in("count", 1, 1 << 40)?;
    let min = p.u64_in("min", 0, 65507)?;
    let max = p.u64_in("max", 0, 65507)?;
    if min > max {
        return crate::args::bad(format!("--min {min} is above --max {max}"));
    }
    let sizes: Vec<u64> = match p.text("sizes") {
        None => (min..=max).collect(),
        Some(list) => {
            let mut v = Vec::new();
            for w in list.split(',') {
                match crate::args::number(w) {
                    Some(n) if n <= 65507 => v.push(n),
                    _ => {
                        return crate::args::bad(format!(
                            "--sizes: {w:?} is not a size of 0..=65507 bytes"
                        ))
                    }
                }
            }
            v
        }
    };
    let seed = p.u64("seed")?;
    let window = p.u64_in("window", 1, 1 << 16)? as usize;
    let reply = p.millis("reply-ms")?;
    let d = Deadline::after(p.timeout()?);

    let size_of = |seq: u64| sizes[(seq % sizes.len() as u64) as usize] as usize;
    let mut v = Verdict::new(SPEC.name);
    let sock = match udp_connect(addr, &d) {
        Ok(s) => s,
        Err(e) => {
            fail_io(&mut v, "socket", &e);
            return Ok(v);
        }
    };
    let mut r = Run {
        window,
        reply,
        out: BTreeMap::new(),
        lost_seqs: HashSet::new(),
        recent_small: VecDeque::new(),
        st: Stats::default(),
    };
    let mut buf = vec![0u8; 65536];
    let mut next = 0u64;
    let start = Instant::now();
    let failed: Option<(&str, io::Error)> = 'run: loop {
        r.expire(Instant::now());
        while next < count && r.may_send(size_of(next)) {
            let data = datagram(seed, next, size_of(next));
            if let Err(e) = udp_send(&sock, &data, &d) {
                break 'run Some(("send", e));
            }
            r.out.insert(
                next,
                Pending {
                    data,
                    sent: Instant::now(),
                },
            );
            r.st.sent += 1;
            next += 1;
        }
        let Some((_, oldest)) = r.out.first_key_value() else {
            break None;
        };
        match udp_recv(&sock, &mut buf, oldest.sent + reply, &d) {
            Ok(None) => {}
            Ok(Some(n)) => r.reply(&buf[..n], next, size_of),
            // An ICMP port unreachable for an earlier datagram (nothing listening yet?).
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => r.st.refused += 1,
            Err(e) => break Some(("recv", e)),
        }
    };
    let elapsed = start.elapsed();
    let st = &r.st;
    if let Some((phase, e)) = &failed {
        fail_io(&mut v, phase, e);
        if is_timeout(e) {
            v.kv("outstanding", r.out.len());
            v.kv("unsent", count - next);
        }
    }
    if st.mismatched > 0 {
        v.fail("mismatch");
    }
    if st.lost > 0 {
        v.fail("lost");
    }
    v.kv("sent", st.sent);
    v.kv("returned", st.returned);
    v.kv("lost", st.lost);
    v.kv("mismatched", st.mismatched);
    v.kv("late", st.late);
    v.kv("dup", st.dup);
    if st.refused > 0 {
        v.kv("icmp_refused", st.refused);
    }
    v.kv("elapsed_ms", millis(elapsed));
    v.kv("pps", per_s(st.returned, elapsed));
    if st.returned > 0 {
        v.kv("rtt_avg_us", (st.rtt_sum / st.returned as u32).as_micros());
        v.kv("rtt_max_us", st.rtt_max.as_micros());
    }
    match p.text("sizes") {
        Some(list) => v.kv("sizes", list),
        None => v.kv("sizes", format_args!("{min}..={max}")),
    }
    v.kv("window", window);
    v.kv("seed", seed);
    if let Some((seq, size)) = st.first_lost {
        v.kv("first_lost", format_args!("{seq}/{size}B"));
    }
    if let Some((seq, size, got)) = st.first_bad {
        if seq == u64::MAX {
            v.kv("first_bad", format_args!("stray/{got}B"));
        } else {
            v.kv("first_bad", format_args!("{seq}/{size}B->{got}B"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::net::testsrv::{cmd, udp_echo, UdpMode};

    #[test]
    fn passes_against_an_honest_server() {
        let a = udp_echo(UdpMode::Honest);
        let v = cmd(&["udp-echo", &a, "--count", "3000", "--timeout", "30"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("returned"), Some("3000"));
        assert_eq!(v.get("lost"), Some("0"));
    }

    #[test]
    fn passes_with_a_window_and_all_sizes() {
        let a = udp_echo(UdpMode::Honest);
        let v = cmd(&[
            "udp-echo", &a, "--count", "3000", "--min", "0", "--max", "1472", "--window", "16",
            "--seed", "9",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("returned"), Some("3000"));
        let v = cmd(&["udp-echo", &a, "--count", "50", "--min", "1", "--max", "7"]);
        assert!(v.passed(), "{v}");
        let v = cmd(&[
            "udp-echo", &a, "--count", "20", "--min", "9000", "--max", "9000",
        ]);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn cycles_a_list_of_sizes_past_the_mtu() {
        let a = udp_echo(UdpMode::Honest);
        let v = cmd(&[
            "udp-echo",
            &a,
            "--count",
            "20",
            "--sizes",
            "1473,2960,9000,65507",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("sizes"), Some("1473,2960,9000,65507"));
        let a = udp_echo(UdpMode::Drop(3));
        let v = cmd(&[
            "udp-echo",
            &a,
            "--count",
            "8",
            "--sizes",
            "1473,65507",
            "--reply-ms",
            "300",
        ]);
        assert_eq!(v.get("first_lost"), Some("3/65507B"), "{v}");
    }

    #[test]
    fn fails_on_a_flipped_byte() {
        for window in ["1", "8"] {
            let a = udp_echo(UdpMode::FlipLastByteOf(100));
            let v = cmd(&["udp-echo", &a, "--count", "300", "--window", window]);
            assert_eq!(v.reason(), Some("mismatch"), "{v}");
            assert_eq!(v.get("mismatched"), Some("1"), "{v}");
            assert_eq!(v.get("lost"), Some("0"), "{v}");
            assert_eq!(v.get("first_bad"), Some("100/101B->101B"), "{v}");
        }
    }

    #[test]
    fn fails_on_a_flipped_small_datagram() {
        let a = udp_echo(UdpMode::FlipLastByteOf(2));
        let v = cmd(&["udp-echo", &a, "--count", "20", "--window", "4"]);
        assert_eq!(v.reason(), Some("mismatch"), "{v}");
        assert_eq!(v.get("mismatched"), Some("1"), "{v}");
        assert_eq!(v.get("returned"), Some("19"), "{v}");
    }

    #[test]
    fn fails_on_a_dropped_datagram() {
        for window in ["1", "8"] {
            let a = udp_echo(UdpMode::Drop(123));
            let v = cmd(&[
                "udp-echo",
                &a,
                "--count",
                "400",
                "--reply-ms",
                "300",
                "--window",
                window,
            ]);
            assert_eq!(v.reason(), Some("lost"), "{v}");
            assert_eq!(v.get("lost"), Some("1"), "{v}");
            assert_eq!(v.get("returned"), Some("399"), "{v}");
            assert_eq!(v.get("first_lost"), Some("123/124B"), "{v}");
        }
    }

    #[test]
    fn late_and_duplicate_echoes_are_reported_not_failed_on() {
        let a = udp_echo(UdpMode::Duplicate);
        let v = cmd(&["udp-echo", &a, "--count", "100", "--window", "4"]);
        assert!(v.passed(), "{v}");
        assert!(v.get("dup").unwrap().parse::<u64>().unwrap() > 0, "{v}");
        // Datagrams 5 and 6 (small) and 7 (numbered) come back after 600 ms, 200 ms
        // after they were given up on; the echoes of 5 and 6 arrive during the next wait.
        let a = udp_echo(UdpMode::Delay(5, Duration::from_millis(600)));
        let v = cmd(&["udp-echo", &a, "--count", "8", "--reply-ms", "400"]);
        assert_eq!(v.reason(), Some("lost"), "{v}");
        assert_eq!(v.get("lost"), Some("3"), "{v}");
        assert_eq!(v.get("late"), Some("2"), "{v}");
        assert_eq!(v.get("mismatched"), Some("0"), "{v}");
        let a = udp_echo(UdpMode::Delay(1, Duration::from_millis(300)));
        let v = cmd(&[
            "udp-echo",
            &a,
            "--count",
            "3",
            "--min",
            "8",
            "--reply-ms",
            "200",
        ]);
        assert_eq!(v.get("lost"), Some("2"), "{v}");
        assert_eq!(v.get("late"), Some("1"), "{v}");
        assert_eq!(v.get("mismatched"), Some("0"), "{v}");
    }

    #[test]
    fn a_silent_server_fails_without_hanging() {
        let a = udp_echo(UdpMode::Silent);
        let t = Instant::now();
        let v = cmd(&["udp-echo", &a, "--count", "3", "--reply-ms", "200"]);
        assert_eq!(v.reason(), Some("lost"), "{v}");
        assert_eq!(v.get("lost"), Some("3"), "{v}");
        let v = cmd(&["udp-echo", &a, "--count", "1000", "--timeout", "0.5"]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn nothing_listening_is_lost_not_an_error() {
        let a = format!("127.0.0.1:{}", crate::net::testsrv::free_udp_port());
        let v = cmd(&["udp-echo", &a, "--count", "2", "--reply-ms", "100"]);
        assert_eq!(v.reason(), Some("lost"), "{v}");
    }
}
