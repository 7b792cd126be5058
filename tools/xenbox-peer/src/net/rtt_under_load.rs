//! `rtt-under-load HOST:PORT`: bounded work. UDP echo round trips measured idle, then
//! while one large HTTP GET is in progress on another connection; the busy median may not
//! exceed a multiple of the idle one. The transfer can be kept going afterwards (until a
//! stop file appears) so that a script can act during it (e.g. `xl shutdown`).
use std::io::{self, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::http_get::{self, Reader};
use super::{
    check_addr, connect, fail_io, millis, resolve, udp_connect, udp_recv, udp_send, write_all,
    Deadline,
};
use crate::args::{bad, number, Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::datagram;
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "rtt-under-load",
    args: &["HOST:PORT"],
    about:
        "Measure UDP echo round trips to HOST:PORT (64-byte datagrams, one at a time, --gap-ms\n\
            apart, each given --reply-ms) --idle times; then GET --path from the HTTP server at\n\
            --http and, while that transfer is in progress (its body read and discarded at\n\
            --read-rate bytes/s), measure --busy round trips more. The response must be status\n\
            200 or, within --head-within seconds, a 4xx (a size the server refuses, saying so),\n\
            after which --fallback is fetched instead and must be 200. A round trip not answered\n\
            in --reply-ms counts as infinitely long (the busy ones stop once more than half are\n\
            lost: the median is decided). Reports idle_median_us, busy_median_us,\n\
            ratio (busy median over the idle one, the idle one taken as at least --floor-us),\n\
            busy_p90_us, busy_max_us, the lost echoes, status (the first response's), head_ms,\n\
            path (the one transferred) and how the transfer went (transfer_bytes, transfer_end).\n\
            With --ready-file, after the busy round trips the file is written (`in-progress` if\n\
            the transfer still is, else `ended`) and the transfer kept going until --stop-file\n\
            exists, the transfer ends, or the --timeout; how it ends then is only reported.\n\
            PASS iff ratio <= --max-ratio, a 200 head came within --head-within seconds (after a\n\
            4xx: the fallback's), and the transfer was still in progress when the busy round\n\
            trips were done.",
    opts: &[
        Opt::req("http", "HOST:PORT", "the HTTP server"),
        Opt::val("path", "PATH", "/bytes/4294967296", "the large request"),
        Opt::val(
            "fallback",
            "PATH",
            "/bytes/268435456",
            "the request after a 4xx for --path",
        ),
        Opt::val(
            "head-within",
            "SECS",
            "5",
            "the response head must come within SECS seconds",
        ),
        Opt::val("idle", "N", "50", "round trips measured idle"),
        Opt::val(
            "busy",
            "N",
            "100",
            "round trips measured during the transfer",
        ),
        Opt::val("gap-ms", "MS", "20", "pause between round trips"),
        Opt::val(
            "reply-ms",
            "MS",
            "2000",
            "an echo not back in MS ms is lost",
        ),
        Opt::val(
            "max-ratio",
            "R",
            "10",
            "the busy median may be at most R times the idle one",
        ),
        Opt::val(
            "floor-us",
            "US",
            "1000",
            "the idle median is taken as at least US microseconds",
        ),
        Opt::val(
            "read-rate",
            "BYTES",
            "8M",
            "read the body at most BYTES per second (K, M, G suffixes allowed)",
        ),
        Opt {
            name: "ready-file",
            value: Some("FILE"),
            default: None,
            required: false,
            help: "written once the busy round trips are done",
        },
        Opt {
            name: "stop-file",
            value: Some("FILE"),
            default: None,
            required: false,
            help: "with --ready-file: keep the transfer going until FILE exists",
        },
        TIMEOUT,
    ],
};

/// What the transfer thread reports.
enum Ev {
    /// A response head (its status) for `path`, or none in time.
    Head(&'static str, Result<u16, String>),
    /// The connection now carrying the transfer (for the main thread to stop it).
    Stream(TcpStream),
    /// The transfer is over: how, and the body bytes read.
    Ended(String),
}

/// Send `GET path` on a new connection and read the head.
fn request(addr: SocketAddr, host: &str, path: &str, d: Deadline) -> Result<TcpStream, String> {
    let s = connect(&addr, &d, None).map_err(|e| format!("connect: {e}"))?;
    let mut req = Vec::new();
    write!(
        req,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xenbox-peer\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    write_all(&s, &req, &d).map_err(|e| format!("request: {e}"))?;
    Ok(s)
}

/// The transfer: GET `path` (then `fallback` after a 4xx), body read at `rate`.
#[allow(clippy::too_many_arguments)]
fn transfer(
    addr: SocketAddr,
    host: String,
    path: &'static str,
    fallback: &'static str,
    rate: u64,
    bytes: Arc<AtomicU64>,
    tx: mpsc::Sender<Ev>,
    d: Deadline,
) {
    let mut which = path;
    loop {
        let s = match request(addr, &host, which, d) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Ev::Head(which, Err(e.clone())));
                let _ = tx.send(Ev::Ended(format!("failed: {e}")));
                return;
            }
        };
        if let Ok(c) = s.try_clone() {
            let _ = tx.send(Ev::Stream(c));
        }
        let mut r = Reader::new(&s, d);
        let h = match http_get::head(&mut r) {
            Ok(h) => h,
            Err(http_get::Fail(why, detail)) => {
                let _ = tx.send(Ev::Head(which, Err(format!("{why}: {detail}"))));
                let _ = tx.send(Ev::Ended(why.to_string()));
                return;
            }
        };
        let _ = tx.send(Ev::Head(which, Ok(h.status)));
        if (400..500).contains(&h.status) && which == path && fallback != path {
            drop(r);
            let _ = s.shutdown(Shutdown::Both);
            which = fallback;
            continue;
        }
        if h.status != 200 {
            let _ = tx.send(Ev::Ended(format!("status-{}", h.status)));
            return;
        }
        // The body: the rest of what the reader holds, then the socket, paced.
        let t0 = Instant::now();
        let mut got = 0u64;
        let len = h.content_length;
        let end = loop {
            if len.is_some_and(|n| got >= n) {
                break "complete".to_string();
            }
            let want = len.map_or(64 * 1024, |n| (n - got).min(64 * 1024));
            match r.take(want) {
                Ok([]) => {
                    break if len.is_none() {
                        "complete".into()
                    } else {
                        "eof".into()
                    }
                }
                Ok(b) => {
                    got += b.len() as u64;
                    bytes.store(got, Ordering::Relaxed);
                }
                Err(e) => break super::reason(&e).to_string(),
            }
            let due = Duration::from_secs_f64(got as f64 / rate as f64);
            if let Some(nap) = due.checked_sub(t0.elapsed()) {
                thread::sleep(nap.min(d.left(None).unwrap_or(Duration::ZERO)));
            }
        };
        let _ = tx.send(Ev::Ended(end));
        return;
    }
}

/// Round trips of 64-byte datagrams; `None` for a lost one. With `decided`, it stops
/// once more than half of `n` are lost (the median is then infinite whatever follows).
fn round_trips(
    sock: &std::net::UdpSocket,
    n: u64,
    first_seq: u64,
    gap: Duration,
    reply: Duration,
    decided: bool,
    d: &Deadline,
) -> io::Result<Vec<Option<Duration>>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    for i in 0..n {
        let seq = first_seq + i;
        let data = datagram(7, seq, 64);
        let t = Instant::now();
        udp_send(sock, &data, d)?;
        let until = t + reply;
        let rtt = loop {
            match udp_recv(sock, &mut buf, until, d) {
                Ok(Some(m)) if buf[..m] == data[..] => break Some(t.elapsed()),
                // A late echo of an earlier one.
                Ok(Some(_)) => continue,
                Ok(None) if Instant::now() < until => continue,
                Ok(None) => break None,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if Instant::now() >= until {
                        break None;
                    }
                }
                Err(e) => return Err(e),
            }
        };
        out.push(rtt);
        if d.expired() || (decided && out.iter().filter(|r| r.is_none()).count() as u64 > n / 2) {
            break;
        }
        thread::sleep(gap.min(d.left(None).unwrap_or(Duration::ZERO)));
    }
    Ok(out)
}

/// The `q`-quantile (0..=1) of the round trips, lost ones counting as infinitely long.
fn quantile(rtts: &[Option<Duration>], q: f64) -> Option<Duration> {
    let mut v: Vec<Duration> = rtts.iter().map(|r| r.unwrap_or(Duration::MAX)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[i])
}

/// Microseconds of `d`, `inf` for a lost echo.
fn us(d: Option<Duration>) -> String {
    match d {
        Some(d) if d != Duration::MAX => d.as_micros().to_string(),
        Some(_) => "inf".into(),
        None => "-".into(),
    }
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let udp = p.pos[0].clone();
    check_addr(&udp)?;
    let http = p.text("http").unwrap_or_default().to_string();
    check_addr(&http)?;
    let path_of = |name: &str| -> Result<&'static str, Usage> {
        let v = p.text(name).unwrap_or("/");
        if !v.starts_with('/') || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return bad(format!("--{name}: expected e.g. /bytes/4096, got {v:?}"));
        }
        Ok(Box::leak(v.to_string().into_boxed_str()))
    };
    let path = path_of("path")?;
    let fallback = path_of("fallback")?;
    let head_within = p.secs("head-within")?;
    let idle_n = p.u64_in("idle", 1, 1 << 20)?;
    let busy_n = p.u64_in("busy", 1, 1 << 20)?;
    let gap = Duration::from_millis(p.u64_in("gap-ms", 0, 60_000)?);
    let reply = p.millis("reply-ms")?;
    let max_ratio: f64 = match p.text("max-ratio").unwrap_or("").parse::<f64>() {
        Ok(r) if r > 0.0 => r,
        _ => return bad("--max-ratio: expected a positive number"),
    };
    let floor = Duration::from_micros(p.u64("floor-us")?);
    let rate = match number(p.text("read-rate").unwrap_or("")) {
        Some(r) if r > 0 => r,
        _ => return bad("--read-rate: expected a positive number of bytes"),
    };
    let ready = p.text("ready-file").map(str::to_string);
    let stop = p.text("stop-file").map(str::to_string);
    if stop.is_some() && ready.is_none() {
        return bad("--stop-file goes with --ready-file");
    }
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let sock = match udp_connect(&udp, &d) {
        Ok(s) => s,
        Err(e) => {
            fail_io(&mut v, "socket", &e);
            return Ok(v);
        }
    };
    let haddr = match resolve(&http, &d) {
        Ok(a) => a,
        Err(e) => {
            fail_io(&mut v, "resolve", &e);
            return Ok(v);
        }
    };
    let idle = match round_trips(&sock, idle_n, 0, gap, reply, false, &d) {
        Ok(r) => r,
        Err(e) => {
            fail_io(&mut v, "idle", &e);
            return Ok(v);
        }
    };
    let idle_median = quantile(&idle, 0.5);
    progress(
        SPEC.name,
        format_args!(
            "idle: median {} us over {} round trips; GET {path}",
            us(idle_median),
            idle.len()
        ),
    );
    // The transfer, in a thread of its own.
    let bytes = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let t = {
        let (host, bytes) = (http.clone(), bytes.clone());
        thread::spawn(move || transfer(haddr, host, path, fallback, rate, bytes, tx, d))
    };
    let sent = Instant::now();
    let mut streams: Vec<TcpStream> = Vec::new();
    let mut first_status: Option<u16> = None;
    let mut head_ms: Option<u64> = None;
    let mut used = path;
    let mut ended: Option<String> = None;
    let mut head_fail: Option<String> = None;
    // Wait for a 200 head (after a 4xx: the fallback's) until --head-within.
    let head_by = sent + head_within;
    loop {
        let wait = head_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Ev::Stream(s)) => streams.push(s),
            Ok(Ev::Head(which, Ok(status))) => {
                first_status.get_or_insert(status);
                used = which;
                if status == 200 {
                    head_ms = Some(millis(sent.elapsed()));
                    break;
                }
            }
            Ok(Ev::Head(which, Err(e))) => {
                used = which;
                head_fail = Some(e);
            }
            Ok(Ev::Ended(how)) => {
                ended = Some(how);
                break;
            }
            Err(_) => break,
        }
    }
    progress(
        SPEC.name,
        format_args!(
            "{used}: {}; measuring round trips during the transfer",
            match head_ms {
                Some(ms) => format!("status 200 after {ms} ms"),
                None => format!("no 200 head within {} s", head_within.as_secs_f64()),
            }
        ),
    );
    let busy = round_trips(&sock, busy_n, idle_n, gap, reply, true, &d);
    // Whatever else the transfer thread said meanwhile.
    let mut drain = |ended: &mut Option<String>, streams: &mut Vec<TcpStream>| {
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Ev::Stream(s) => streams.push(s),
                Ev::Ended(how) => *ended = Some(how),
                Ev::Head(which, r) => {
                    if let Ok(st) = r {
                        first_status.get_or_insert(st);
                        if st == 200 && head_ms.is_none() {
                            head_ms = Some(millis(sent.elapsed()));
                        }
                    }
                    used = which;
                }
            }
        }
    };
    drain(&mut ended, &mut streams);
    let in_progress = ended.is_none();
    let during = bytes.load(Ordering::Relaxed);
    if let Some(f) = &ready {
        let what = if in_progress { "in-progress" } else { "ended" };
        if let Err(e) = std::fs::write(f, format!("{what}\n")) {
            progress(SPEC.name, format_args!("--ready-file {f}: {e}"));
        }
        if in_progress {
            progress(
                SPEC.name,
                format_args!("ready ({f}); transfer kept going until the stop file"),
            );
        }
        // Keep it going until the stop file, its end or the deadline.
        while ended.is_none() && !d.expired() {
            if stop
                .as_deref()
                .is_some_and(|s| std::path::Path::new(s).exists())
            {
                break;
            }
            if let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
                match ev {
                    Ev::Stream(s) => streams.push(s),
                    Ev::Ended(how) => ended = Some(how),
                    Ev::Head(..) => {}
                }
            }
        }
    }
    // Stopped by us while in progress: say so, whatever the reader then saw.
    let end = ended.clone().unwrap_or_else(|| "stopped".into());
    for s in &streams {
        let _ = s.shutdown(Shutdown::Both);
    }
    let _ = t.join();
    drain(&mut ended, &mut streams);
    let busy = match busy {
        Ok(b) => b,
        Err(e) => {
            fail_io(&mut v, "busy", &e);
            return Ok(v);
        }
    };
    let busy_median = quantile(&busy, 0.5);
    let base = idle_median.map(|m| m.max(floor));
    let ratio = match (busy_median, base) {
        (Some(b), Some(i)) if b != Duration::MAX && i != Duration::MAX => {
            Some(b.as_secs_f64() / i.as_secs_f64())
        }
        _ => None,
    };
    match ratio {
        Some(r) if r <= max_ratio => {}
        _ => v.fail("slow"),
    }
    if head_ms.is_none() {
        v.fail(if first_status.is_some_and(|s| s != 200) {
            "status"
        } else {
            "no-head"
        });
    }
    if !in_progress {
        v.fail("transfer-ended-early");
    }
    let lost = |r: &[Option<Duration>]| r.iter().filter(|x| x.is_none()).count();
    v.kv("idle_median_us", us(idle_median));
    v.kv("busy_median_us", us(busy_median));
    v.kv("ratio", ratio.map_or("inf".into(), |r| format!("{r:.2}")));
    v.kv("max_ratio", max_ratio);
    v.kv("busy_p90_us", us(quantile(&busy, 0.9)));
    v.kv("busy_max_us", us(quantile(&busy, 1.0)));
    v.kv("idle_lost", format_args!("{}/{}", lost(&idle), idle.len()));
    v.kv("busy_lost", format_args!("{}/{}", lost(&busy), busy.len()));
    v.kv(
        "status",
        first_status.map_or("none".into(), |s| s.to_string()),
    );
    v.kv("head_ms", head_ms.map_or("none".into(), |m| m.to_string()));
    v.kv("path", used);
    v.kv("bytes_during", during);
    v.kv("transfer_bytes", bytes.load(Ordering::Relaxed));
    v.kv("transfer_end", end);
    if let Some(e) = head_fail {
        v.kv("head_error", e);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use crate::data::pattern_fill;
    use crate::net::testsrv::{cmd, udp_echo, UdpMode};

    /// An HTTP server for `/bytes/N`: refuses sizes over `max` with a 413 at once, and
    /// streams the others; with `block`, nothing is answered and `busy` is set while a
    /// request is being "worked on" (an appliance whose loop is held).
    fn server(max: u64, busy: Option<Arc<AtomicBool>>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap().to_string();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let busy = busy.clone();
                thread::spawn(move || {
                    let mut s = s;
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let n: u64 = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.strip_prefix("/bytes/"))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    if let Some(b) = busy {
                        b.store(true, Ordering::SeqCst);
                        thread::sleep(Duration::from_secs(3));
                        b.store(false, Ordering::SeqCst);
                        return;
                    }
                    if n > max {
                        let _ = s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    }
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                    );
                    let mut at = 0u64;
                    let mut chunk = vec![0u8; 65536];
                    while at < n {
                        let k = (n - at).min(65536) as usize;
                        pattern_fill(at, &mut chunk[..k]);
                        if s.write_all(&chunk[..k]).is_err() {
                            return;
                        }
                        at += k as u64;
                    }
                });
            }
        });
        a
    }

    /// A UDP echo that stops answering while `busy` is set.
    fn held_udp_echo(busy: Arc<AtomicBool>) -> String {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = s.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                while busy.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(5));
                }
                let _ = s.send_to(&buf[..n], from);
            }
        });
        a
    }

    #[test]
    fn passes_while_the_server_streams_and_after_a_refusal() {
        let u = udp_echo(UdpMode::Honest);
        let h = server(u64::MAX, None);
        let base = [
            "rtt-under-load",
            &u,
            "--http",
            &h,
            "--idle",
            "10",
            "--busy",
            "20",
            "--gap-ms",
            "1",
            "--read-rate",
            "1M",
            "--path",
            "/bytes/100000000",
        ];
        let v = cmd(&base);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("status"), Some("200"), "{v}");
        let h = server(1 << 30, None);
        let mut args = base.to_vec();
        args[3] = &h;
        let last = args.len() - 1;
        args[last] = "/bytes/4294967296";
        let args = [&args[..], &["--fallback", "/bytes/50000000"]].concat();
        let v = cmd(&args);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("status"), Some("413"), "{v}");
        assert_eq!(v.get("path"), Some("/bytes/50000000"), "{v}");
    }

    #[test]
    fn fails_when_the_request_holds_the_server() {
        let busy = Arc::new(AtomicBool::new(false));
        let u = held_udp_echo(busy.clone());
        let h = server(u64::MAX, Some(busy));
        let v = cmd(&[
            "rtt-under-load",
            &u,
            "--http",
            &h,
            "--idle",
            "5",
            "--busy",
            "5",
            "--gap-ms",
            "1",
            "--head-within",
            "0.5",
            "--reply-ms",
            "300",
            "--timeout",
            "20",
        ]);
        assert_eq!(v.reason(), Some("slow"), "{v}");
        assert_eq!(v.get("head_ms"), Some("none"), "{v}");
    }

    #[test]
    fn the_ready_and_stop_files_hold_the_transfer() {
        let u = udp_echo(UdpMode::Honest);
        let h = server(u64::MAX, None);
        let dir = std::env::temp_dir().join(format!("rtt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ready, stop) = (dir.join("ready"), dir.join("stop"));
        let (r2, s2) = (ready.clone(), stop.clone());
        let t = thread::spawn(move || {
            for _ in 0..200 {
                if r2.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            std::fs::write(&s2, "").unwrap();
        });
        let v = cmd(&[
            "rtt-under-load",
            &u,
            "--http",
            &h,
            "--idle",
            "3",
            "--busy",
            "3",
            "--read-rate",
            "1M",
            "--ready-file",
            ready.to_str().unwrap(),
            "--stop-file",
            stop.to_str().unwrap(),
            "--timeout",
            "30",
        ]);
        t.join().unwrap();
        assert!(v.passed(), "{v}");
        assert_eq!(std::fs::read_to_string(&ready).unwrap(), "in-progress\n");
        assert_eq!(v.get("transfer_end"), Some("stopped"), "{v}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
