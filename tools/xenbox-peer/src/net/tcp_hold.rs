//! `tcp-hold HOST:PORT`: slow clients. Open connections that send nothing and
//! connections that send half a request head, hold them, check that a normal client is
//! still served while they are held, and that the server closes the held ones within its
//! documented timeout.
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::http_get::{self, Want};
use super::{check_addr, connect, fail_io, millis, read, reason, resolve, write_all, Deadline};
use crate::args::{bad, Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "tcp-hold",
    args: &["HOST:PORT"],
    about: "Open --silent connections to HOST:PORT that send nothing and --half that send the\n\
            first half of an HTTP request head (no blank line), all at once, each connect given\n\
            --connect-ms. While they are held, GET --probe (from the local address\n\
            --probe-from, if given, so that the server does not count it as the same peer)\n\
            must be answered with status 200 within --probe-within seconds. Then each held\n\
            connection is watched until the server closes it (FIN or RST; bytes it sends\n\
            first, e.g. a 408, are counted) or --expect-closed-within seconds have passed\n\
            since it was established. Reports held (established), refused (RST or ICMP at\n\
            connect), unanswered (no answer to the SYN in --connect-ms), silent_closed and\n\
            half_closed (closed by the server in time / held), still_open, closed_max_ms (the\n\
            longest time from established to closed), probe and probe_ms.\n\
            PASS iff the probe was served in time, at least --min-held connections were\n\
            established, and the server closed every one it established in time.",
    opts: &[
        Opt::val("silent", "N", "40", "connections that send nothing"),
        Opt::val(
            "half",
            "N",
            "20",
            "connections that send half a request head",
        ),
        Opt::val(
            "connect-ms",
            "MS",
            "5000",
            "give each held connection's connect at most MS ms",
        ),
        Opt::val(
            "expect-closed-within",
            "SECS",
            "30",
            "the server must close a held connection within SECS seconds of its start",
        ),
        Opt::val("probe", "PATH", "/", "the normal client's request"),
        Opt::val(
            "probe-within",
            "SECS",
            "5",
            "the normal client must be served within SECS seconds",
        ),
        Opt {
            name: "probe-from",
            value: Some("ADDR"),
            default: None,
            required: false,
            help: "the normal client's local (source) address",
        },
        Opt::val(
            "min-held",
            "N",
            "1",
            "at least N connections must be established",
        ),
        TIMEOUT,
    ],
};

/// The first half of a request head: a request line and one header, no blank line.
const HALF_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: xenbox-peer\r\n";

/// How a held connection's connect went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opened {
    Held,
    Refused,
    Unanswered,
    Failed,
}

/// How a held connection ended.
#[derive(Debug)]
struct Held {
    half: bool,
    opened: Opened,
    /// Time from established to the server's close, if it closed in time.
    closed_after: Option<Duration>,
    /// Bytes the server sent before closing.
    got: u64,
    error: Option<String>,
}

/// Watch one established connection until the server closes it or `bound` has passed
/// since `t0`.
fn watch(s: &TcpStream, t0: Instant, bound: Duration, d: &Deadline, h: &mut Held) {
    let mut buf = [0u8; 4096];
    loop {
        let left = (t0 + bound).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match read(s, &mut buf, d, Some(left)) {
            Ok(0) => break,
            Ok(n) => h.got += n as u64,
            Err(e) if super::is_timeout(&e) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                break
            }
            Err(e) => {
                h.error = Some(e.to_string());
                return;
            }
        }
    }
    h.closed_after = Some(t0.elapsed());
}

/// One held connection: connect (reported on `opened`), then watch it.
fn hold(
    addr: SocketAddr,
    half: bool,
    connect_cap: Duration,
    bound: Duration,
    d: Deadline,
    opened: mpsc::Sender<()>,
) -> Held {
    let mut h = Held {
        half,
        opened: Opened::Failed,
        closed_after: None,
        got: 0,
        error: None,
    };
    let s = match connect(&addr, &d, Some(connect_cap)) {
        Ok(s) => s,
        Err(e) => {
            h.opened = match reason(&e) {
                "refused" | "reset" => Opened::Refused,
                "timeout" => Opened::Unanswered,
                _ => Opened::Failed,
            };
            h.error = Some(e.to_string());
            let _ = opened.send(());
            return h;
        }
    };
    let t0 = Instant::now();
    h.opened = Opened::Held;
    if half {
        if let Err(e) = write_all(&s, HALF_HEAD, &d) {
            h.error = Some(format!("sending half a head: {e}"));
        }
    }
    let _ = opened.send(());
    drop(opened);
    if h.error.is_none() {
        watch(&s, t0, bound, &d, &mut h);
    } else {
        // The write failed: the server closed or reset it already.
        h.closed_after = Some(t0.elapsed());
    }
    h
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = p.pos[0].clone();
    check_addr(&addr)?;
    let silent = p.u64_in("silent", 0, 1000)?;
    let half = p.u64_in("half", 0, 1000)?;
    let connect_cap = p.millis("connect-ms")?;
    let bound = p.secs("expect-closed-within")?;
    let probe = p.text("probe").unwrap_or("/").to_string();
    if !probe.starts_with('/') || probe.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return bad(format!("--probe: expected e.g. /, got {probe:?}"));
    }
    let probe_within = p.secs("probe-within")?;
    let from = match p.text("probe-from") {
        None => None,
        Some(v) => match v.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => return bad(format!("--probe-from: expected an address, got {v:?}")),
        },
    };
    let min_held = p.u64("min-held")?;
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let a = match resolve(&addr, &d) {
        Ok(a) => a,
        Err(e) => {
            fail_io(&mut v, "resolve", &e);
            return Ok(v);
        }
    };
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..silent + half)
        .map(|i| {
            let tx = tx.clone();
            thread::spawn(move || hold(a, i >= silent, connect_cap, bound, d, tx))
        })
        .collect();
    drop(tx);
    // Every connect has its own bound: wait for all of them (or the overall deadline).
    let mut reported = 0;
    while reported < silent + half {
        match d.left(None).map(|w| rx.recv_timeout(w)) {
            Ok(Ok(())) => reported += 1,
            _ => break,
        }
    }
    progress(
        SPEC.name,
        format_args!(
            "{reported} of {} connects done in {} ms; probing {probe}",
            silent + half,
            millis(start.elapsed())
        ),
    );
    // The normal client, while the others are held.
    let pd = Deadline::after(probe_within.min(d.left(None).unwrap_or(Duration::ZERO)));
    let t = Instant::now();
    let want = Want {
        status: 200,
        body: None,
        cut: false,
        started: None,
    };
    let probed = http_get::one(a, from, &addr, &probe, &want, pd);
    let probe_ms = millis(t.elapsed());
    let results: Vec<Held> = threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or_else(|_| Held {
                half: false,
                opened: Opened::Failed,
                closed_after: None,
                got: 0,
                error: Some("panicked".into()),
            })
        })
        .collect();
    let count = |f: &dyn Fn(&Held) -> bool| results.iter().filter(|h| f(h)).count();
    let held = count(&|h| h.opened == Opened::Held);
    let refused = count(&|h| h.opened == Opened::Refused);
    let unanswered = count(&|h| h.opened == Opened::Unanswered);
    let failed = count(&|h| h.opened == Opened::Failed);
    let closed = |half: bool| {
        (
            count(&|h| h.half == half && h.closed_after.is_some()),
            count(&|h| h.half == half && h.opened == Opened::Held),
        )
    };
    let (sc, sh) = closed(false);
    let (hc, hh) = closed(true);
    let still_open = count(&|h| h.opened == Opened::Held && h.closed_after.is_none());
    let closed_max = results.iter().filter_map(|h| h.closed_after).max();
    for (i, h) in results.iter().enumerate() {
        if let Some(e) = &h.error {
            if h.opened == Opened::Failed || h.opened == Opened::Held {
                progress(SPEC.name, format_args!("conn{i}: {:?}: {e}", h.opened));
            }
        }
    }
    if let Err(http_get::Fail(why, detail)) = &probed {
        progress(SPEC.name, format_args!("probe: {why}: {detail}"));
        v.fail("probe");
    }
    if (held as u64) < min_held {
        v.fail("too-few-held");
    }
    if still_open > 0 {
        v.fail("not-closed");
    }
    if failed > 0 {
        v.fail("io");
    }
    v.kv("held", held);
    v.kv("refused", refused);
    v.kv("unanswered", unanswered);
    if failed > 0 {
        v.kv("failed", failed);
    }
    v.kv("silent_closed", format_args!("{sc}/{sh}"));
    v.kv("half_closed", format_args!("{hc}/{hh}"));
    v.kv("still_open", still_open);
    v.kv(
        "closed_max_ms",
        closed_max.map_or("-".to_string(), |m| millis(m).to_string()),
    );
    v.kv("within_s", bound.as_secs_f64());
    v.kv(
        "probe",
        match &probed {
            Ok(g) => format!("status-{}", g.status),
            Err(http_get::Fail(why, _)) => why.to_string(),
        },
    );
    v.kv("probe_ms", probe_ms);
    v.kv("got_bytes", results.iter().map(|h| h.got).sum::<u64>());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::net::testsrv::cmd;

    /// A server that answers a full head with a small page at once and closes any
    /// connection that has not sent one within `head_ms` (as the appliance will), or
    /// never closes (`None`).
    fn server(head_ms: Option<u64>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap().to_string();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                thread::spawn(move || {
                    let mut s = s;
                    let t0 = Instant::now();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        let wait = match head_ms {
                            Some(ms) => Duration::from_millis(ms).saturating_sub(t0.elapsed()),
                            None => Duration::from_secs(30),
                        };
                        if wait.is_zero() {
                            let _ = s.write_all(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                            let _ = s.shutdown(Shutdown::Both);
                            return;
                        }
                        s.set_read_timeout(Some(wait)).unwrap();
                        match s.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                            Err(_) if head_ms.is_some() => continue,
                            Err(_) => return,
                        }
                        if head.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
                            return;
                        }
                    }
                });
            }
        });
        a
    }

    #[test]
    fn passes_when_the_server_times_idle_connections_out() {
        let a = server(Some(300));
        let v = cmd(&[
            "tcp-hold",
            &a,
            "--silent",
            "6",
            "--half",
            "3",
            "--expect-closed-within",
            "2",
            "--probe-from",
            "127.0.0.1",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("held"), Some("9"), "{v}");
        assert_eq!(v.get("silent_closed"), Some("6/6"), "{v}");
        assert_eq!(v.get("half_closed"), Some("3/3"), "{v}");
        assert_eq!(v.get("probe"), Some("status-200"), "{v}");
    }

    #[test]
    fn fails_when_the_server_keeps_idle_connections() {
        let a = server(None);
        let t = Instant::now();
        let v = cmd(&[
            "tcp-hold",
            &a,
            "--silent",
            "3",
            "--half",
            "2",
            "--expect-closed-within",
            "0.5",
        ]);
        assert_eq!(v.reason(), Some("not-closed"), "{v}");
        assert_eq!(v.get("still_open"), Some("5"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn fails_when_nothing_listens() {
        let a = format!("127.0.0.1:{}", crate::net::testsrv::free_port());
        let v = cmd(&["tcp-hold", &a, "--silent", "2", "--half", "1"]);
        assert_eq!(v.reason(), Some("probe"), "{v}");
        assert_eq!(v.get("refused"), Some("3"), "{v}");
        assert_eq!(v.get("held"), Some("0"), "{v}");
    }
}
