//! `tcp-echo HOST:PORT`: over each of some concurrent connections to an RFC 862 echo
//! service, a writer thread sends seeded pseudo-random bytes while the reader checks that
//! exactly the same bytes come back.
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    check_addr, connect, extra_bytes, mbit_s, millis, read, reason, resolve, write_all, Deadline,
};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::ByteStream;
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "tcp-echo",
    args: &["HOST:PORT"],
    about: "Open --conns concurrent connections to the TCP echo service at HOST:PORT; over each,\n\
            a writer sends --bytes pseudo-random bytes (from --seed and the connection's number)\n\
            while a reader reads back as many and compares them; then our side shuts down and\n\
            the peer must not send more. Reports bytes (echoed, all connections), mbit_s (bytes\n\
            over the time until the last connection was echoed) and connN=ok or the failure.\n\
            With --together, every connection is established (or has failed) before any\n\
            sends, so all of them are open at once; refused ones are counted (refused=N).\n\
            PASS iff every connection got back exactly what it sent.",
    opts: &[
        Opt::val(
            "bytes",
            "N",
            "33554432",
            "bytes per connection (K, M, G suffixes allowed)",
        ),
        Opt::val("conns", "C", "1", "concurrent connections"),
        Opt::val("seed", "S", "1", "seed of the contents"),
        Opt::flag(
            "together",
            "open every connection before any sends a byte (all --conns open at once)",
        ),
        TIMEOUT,
    ],
};

const CHUNK: usize = 64 * 1024;

/// How one connection went.
struct ConnResult {
    /// `None` if it passed, else (reason, detail).
    fail: Option<(&'static str, String)>,
    /// Bytes read back and found identical.
    echoed: u64,
    /// When the last byte came back (or the connection failed).
    done: Instant,
    /// From connect to the last byte.
    took: Duration,
}

fn writer(s: TcpStream, n: u64, seed: u64, stream: u64, d: Deadline) -> io::Result<()> {
    let mut src = ByteStream::new(seed, stream);
    let mut buf = vec![0u8; CHUNK];
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        src.fill(&mut buf[..k]);
        write_all(&s, &buf[..k], &d)?;
        left -= k as u64;
    }
    Ok(())
}

fn one(
    addr: SocketAddr,
    i: u64,
    n: u64,
    seed: u64,
    d: Deadline,
    together: Option<Arc<Barrier>>,
) -> ConnResult {
    let t0 = Instant::now();
    let result = |fail, echoed| ConnResult {
        fail,
        echoed,
        done: Instant::now(),
        took: t0.elapsed(),
    };
    let s = connect(&addr, &d, None);
    if let Some(b) = together {
        // Every thread comes here once, connected or not (each connect has the deadline).
        b.wait();
    }
    let s = match s {
        Ok(s) => s,
        Err(e) => return result(Some((reason(&e), format!("connect: {e}"))), 0),
    };
    let w = match s.try_clone() {
        Ok(w) => w,
        Err(e) => return result(Some(("io", e.to_string())), 0),
    };
    let wt = thread::spawn(move || writer(w, n, seed, i, d));
    let mut want = ByteStream::new(seed, i);
    let mut buf = vec![0u8; CHUNK];
    let mut exp = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut fail = None;
    while got < n {
        let k = (n - got).min(CHUNK as u64) as usize;
        match read(&s, &mut buf[..k], &d, None) {
            Ok(0) => {
                fail = Some(("short", format!("eof after {got} of {n} bytes")));
                break;
            }
            Ok(m) => {
                want.fill(&mut exp[..m]);
                if let Some(j) = (0..m).find(|&j| buf[j] != exp[j]) {
                    fail = Some((
                        "mismatch",
                        format!(
                            "byte {} is {:#04x}, sent {:#04x}",
                            got + j as u64,
                            buf[j],
                            exp[j]
                        ),
                    ));
                    break;
                }
                got += m as u64;
            }
            Err(e) => {
                fail = Some((reason(&e), format!("after {got} of {n} bytes: {e}")));
                break;
            }
        }
    }
    let mut r = result(None, got);
    if fail.is_some() {
        // Stop the writer (its next write fails).
        let _ = s.shutdown(Shutdown::Both);
    }
    let wr = wt
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("writer panicked")));
    if fail.is_none() {
        if let Err(e) = wr {
            fail = Some((reason(&e), format!("writing: {e}")));
        } else {
            let extra = extra_bytes(&s, &d, Duration::from_secs(1));
            if extra > 0 {
                fail = Some(("extra-bytes", format!("{extra} bytes more than sent")));
            }
        }
    }
    r.fail = fail;
    r
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = &p.pos[0];
    check_addr(addr)?;
    let n = p.u64("bytes")?;
    let conns = p.u64_in("conns", 1, 1024)?;
    let seed = p.u64("seed")?;
    let together = p
        .flag("together")
        .then(|| Arc::new(Barrier::new(conns as usize)));
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let a = match resolve(addr, &d) {
        Ok(a) => a,
        Err(e) => {
            super::fail_io(&mut v, "resolve", &e);
            return Ok(v);
        }
    };
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let b = together.clone();
            thread::spawn(move || one(a, i, n, seed, d, b))
        })
        .collect();
    let results: Vec<ConnResult> = threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or_else(|_| ConnResult {
                fail: Some(("panic", String::new())),
                echoed: 0,
                done: Instant::now(),
                took: Duration::ZERO,
            })
        })
        .collect();
    let end = results.iter().map(|r| r.done).max().unwrap_or(start);
    let elapsed = end - start;
    let total: u64 = results.iter().map(|r| r.echoed).sum();
    let ok = results.iter().filter(|r| r.fail.is_none()).count();
    for (i, r) in results.iter().enumerate() {
        match &r.fail {
            None => progress(
                SPEC.name,
                format_args!(
                    "conn{i}: {} bytes echoed, {} Mbit/s",
                    r.echoed,
                    mbit_s(r.echoed, r.took)
                ),
            ),
            Some((why, detail)) => progress(SPEC.name, format_args!("conn{i}: {why}: {detail}")),
        }
    }
    if let Some((i, (why, detail))) = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.fail.as_ref().map(|f| (i, f)))
    {
        v.fail(why);
        v.kv("conn", i);
        v.kv("detail", detail);
    }
    v.kv("bytes", total);
    v.kv("conns", conns);
    v.kv("ok", ok);
    let refused = results
        .iter()
        .filter(|r| r.fail.as_ref().is_some_and(|f| f.0 == "refused"))
        .count();
    if refused > 0 {
        v.kv("refused", refused);
    }
    v.kv("elapsed_ms", millis(elapsed));
    v.kv("mbit_s", mbit_s(total, elapsed));
    v.kv("seed", seed);
    for (i, r) in results.iter().enumerate() {
        v.kv(&format!("conn{i}"), r.fail.as_ref().map_or("ok", |f| f.0));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::net::testsrv::{cmd, tcp_echo, TcpMode};

    #[test]
    fn passes_against_an_honest_server() {
        let a = tcp_echo(TcpMode::Honest);
        let v = cmd(&[
            "tcp-echo", &a, "--bytes", "4M", "--conns", "3", "--seed", "7",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("bytes"), Some("12582912"));
        assert_eq!(v.get("conn2"), Some("ok"));
        let v = cmd(&["tcp-echo", &a, "--bytes", "12345"]);
        assert!(v.passed(), "{v}");
        let v = cmd(&["tcp-echo", &a, "--bytes", "0"]);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn together_opens_every_connection_first() {
        let a = tcp_echo(TcpMode::Honest);
        let v = cmd(&[
            "tcp-echo",
            &a,
            "--bytes",
            "64K",
            "--conns",
            "64",
            "--together",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("ok"), Some("64"));
        let a = format!("127.0.0.1:{}", crate::net::testsrv::free_port());
        let v = cmd(&[
            "tcp-echo",
            &a,
            "--bytes",
            "1K",
            "--conns",
            "4",
            "--together",
        ]);
        assert_eq!(v.reason(), Some("refused"), "{v}");
        assert_eq!(v.get("refused"), Some("4"), "{v}");
    }

    #[test]
    fn fails_on_a_flipped_byte() {
        let a = tcp_echo(TcpMode::FlipAt(1_000_000));
        let v = cmd(&["tcp-echo", &a, "--bytes", "2M", "--conns", "2"]);
        assert_eq!(v.reason(), Some("mismatch"), "{v}");
        assert_eq!(v.get("conn0"), Some("mismatch"), "{v}");
        assert_eq!(v.get("conn1"), Some("mismatch"), "{v}");
        assert!(v.get("detail").unwrap().starts_with("byte 1000000 "), "{v}");
    }

    #[test]
    fn fails_when_the_server_closes_early() {
        let a = tcp_echo(TcpMode::CloseAfter(100_000));
        let v = cmd(&["tcp-echo", &a, "--bytes", "1M"]);
        assert!(
            matches!(v.reason(), Some("short" | "reset" | "broken-pipe")),
            "{v}"
        );
    }

    #[test]
    fn fails_when_the_server_sends_extra_bytes() {
        let a = tcp_echo(TcpMode::Extra);
        let v = cmd(&["tcp-echo", &a, "--bytes", "1000"]);
        assert_eq!(v.reason(), Some("extra-bytes"), "{v}");
    }

    #[test]
    fn a_silent_server_fails_within_the_timeout() {
        let a = tcp_echo(TcpMode::Silent);
        let t = Instant::now();
        let v = cmd(&["tcp-echo", &a, "--bytes", "32M", "--timeout", "1"]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }
}
