//! Test servers on 127.0.0.1 standing in for the guest appliance — honest ones and ones
//! broken in one particular way — and [`cmd`], which runs a subcommand in-process.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use crate::data::{fnv1a64, pattern_fill, FNV_OFFSET};
use crate::verdict::Verdict;

/// Run the subcommand `args[0]` with the rest of `args`; panics on a usage error.
pub fn cmd(args: &[&str]) -> Verdict {
    let c = crate::command(args[0]).expect("a subcommand");
    let rest: Vec<String> = args[1..].iter().map(|s| s.to_string()).collect();
    let v = crate::run_command(c, &rest).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
    println!("{v}");
    v
}

/// A TCP port nothing listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port nothing listens on (just now).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long servers that never answer hold on.
const FOREVER: Duration = Duration::from_secs(30);

/// How a UDP echo server behaves; datagrams are counted from 0 in order of arrival.
#[derive(Clone, Copy, Debug)]
pub enum UdpMode {
    /// Echo every datagram.
    Honest,
    /// Flip the last byte of datagram N.
    FlipLastByteOf(u64),
    /// Drop datagram N.
    Drop(u64),
    /// Echo every datagram twice.
    Duplicate,
    /// Echo datagrams from N on after a delay.
    Delay(u64, Duration),
    /// Echo nothing.
    Silent,
}

/// Start a UDP echo server; returns its `HOST:PORT`.
pub fn udp_echo(mode: UdpMode) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        for k in 0u64.. {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let d = &mut buf[..n];
            match mode {
                UdpMode::Honest => {}
                UdpMode::FlipLastByteOf(j) if j == k => {
                    if let Some(b) = d.last_mut() {
                        *b ^= 0x55;
                    }
                }
                UdpMode::FlipLastByteOf(_) => {}
                UdpMode::Drop(j) if j == k => continue,
                UdpMode::Drop(_) => {}
                UdpMode::Duplicate => {
                    let _ = s.send_to(d, from);
                }
                UdpMode::Delay(j, dt) if k >= j => {
                    let (s, d) = (s.try_clone().unwrap(), d.to_vec());
                    thread::spawn(move || {
                        thread::sleep(dt);
                        let _ = s.send_to(&d, from);
                    });
                    continue;
                }
                UdpMode::Delay(..) => {}
                UdpMode::Silent => continue,
            }
            let _ = s.send_to(d, from);
        }
    });
    a
}

/// Start a TCP server handling each connection with `f` in a thread of its own.
fn tcp_server(f: impl Fn(TcpStream) + Send + Sync + Copy + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || f(s));
        }
    });
    a
}

/// How a TCP echo server behaves.
#[derive(Clone, Copy, Debug)]
pub enum TcpMode {
    /// Echo everything; close after the client does.
    Honest,
    /// Flip the byte at this offset of each connection.
    FlipAt(u64),
    /// Echo this many bytes, then close.
    CloseAfter(u64),
    /// Echo everything, and send a few bytes more when the client shuts down.
    Extra,
    /// Accept and never read.
    Silent,
}

/// Start a TCP echo server; returns its `HOST:PORT`.
pub fn tcp_echo(mode: TcpMode) -> String {
    match mode {
        TcpMode::Honest => tcp_server(|s| echo(s, u64::MAX, None, false)),
        TcpMode::FlipAt(i) => tcp_server(move |s| echo(s, u64::MAX, Some(i), false)),
        TcpMode::CloseAfter(n) => tcp_server(move |s| echo(s, n, None, false)),
        TcpMode::Extra => tcp_server(|s| echo(s, u64::MAX, None, true)),
        TcpMode::Silent => tcp_server(|s| {
            thread::sleep(FOREVER);
            drop(s);
        }),
    }
}

fn echo(mut s: TcpStream, limit: u64, flip: Option<u64>, extra: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    while at < limit {
        let want = (limit - at).min(buf.len() as u64) as usize;
        let n = match s.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(i) = flip.filter(|i| (at..at + n as u64).contains(i)) {
            buf[(i - at) as usize] ^= 0x01;
        }
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
        at += n as u64;
    }
    if extra {
        let _ = s.write_all(b"extra");
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// How a TCP discard server behaves.
#[derive(Clone, Copy, Debug)]
pub enum DiscardMode {
    /// Read everything, close at EOF.
    Honest,
    /// Say something first (a discard service never does).
    Chatty,
    /// Read this many bytes, then close (resetting the connection).
    CloseAfter(u64),
    /// Accept and never read.
    Silent,
    /// Read everything but never close.
    NeverClose,
}

/// Start a TCP discard server; returns its `HOST:PORT`.
pub fn discard(mode: DiscardMode) -> String {
    tcp_server(move |mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        match mode {
            DiscardMode::Silent => {
                thread::sleep(FOREVER);
                return;
            }
            DiscardMode::Chatty => {
                let _ = s.write_all(b"hello");
            }
            _ => {}
        }
        let limit = match mode {
            DiscardMode::CloseAfter(n) => n,
            _ => u64::MAX,
        };
        while got < limit {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
        if let DiscardMode::NeverClose = mode {
            thread::sleep(FOREVER);
        }
    })
}

/// How an HTTP server behaves (`/`: a page, `/bytes/N`: the pattern, else 404).
#[derive(Clone, Copy, Debug)]
pub enum HttpMode {
    /// As the appliance should.
    Honest,
    /// Flip the byte at this offset of a `/bytes/N` body.
    FlipAt(u64),
    /// Send a wrong X-Checksum-FNV1a64.
    WrongChecksum,
    /// Announce a Content-Length this much larger than the body.
    LengthPlus(u64),
    /// Announce a Content-Length this much smaller than the body.
    LengthMinus(u64),
    /// Keep the connection open after the response.
    KeepAlive,
    /// Chunked bodies, no Content-Length.
    Chunked,
    /// `/` is empty.
    EmptyRoot,
    /// Read the request and never answer.
    Silent,
}

/// Start an HTTP server; returns its `HOST:PORT`.
pub fn http(mode: HttpMode) -> String {
    tcp_server(move |s| {
        let _ = serve(s, mode);
    })
}

/// Start an HTTP server answering every request with `head` (the status line and header
/// lines, each ending in CRLF; the blank line is added) and then `body` as they are, and
/// closing; returns its `HOST:PORT`.
pub fn http_canned(head: &str, body: &[u8]) -> String {
    let mut r = head.as_bytes().to_vec();
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    let r: &'static [u8] = r.leak();
    tcp_server(move |mut s| {
        if let Ok(Some(_)) = request(&mut s) {
            let _ = s.write_all(r);
            let _ = s.shutdown(Shutdown::Write);
        }
    })
}

/// Read a request's head; `None` if the client closed first.
fn request(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        req.extend_from_slice(&buf[..n]);
    }
    Ok(Some(req))
}

const PAGE: &[u8] = b"<!doctype html><title>xenpv</title><h1>hello from the guest</h1>\n";

fn serve(mut s: TcpStream, mode: HttpMode) -> std::io::Result<()> {
    let Some(req) = request(&mut s)? else {
        return Ok(());
    };
    if let HttpMode::Silent = mode {
        thread::sleep(FOREVER);
        return Ok(());
    }
    let req = String::from_utf8_lossy(&req);
    let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
    let bytes = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<u64>().ok());
    let (status, len) = match (path.as_str(), bytes) {
        ("/", _) if matches!(mode, HttpMode::EmptyRoot) => ("200 OK", 0),
        ("/", _) => ("200 OK", PAGE.len() as u64),
        (_, Some(n)) => ("200 OK", n),
        _ => ("404 Not Found", 9),
    };
    let mut head = format!("HTTP/1.1 {status}\r\nServer: testsrv\r\n");
    if let Some(n) = bytes {
        let mut sum = FNV_OFFSET;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < n {
            let k = (n - at).min(chunk.len() as u64) as usize;
            pattern_fill(at, &mut chunk[..k]);
            sum = fnv1a64(sum, &chunk[..k]);
            at += k as u64;
        }
        if let HttpMode::WrongChecksum = mode {
            sum ^= 1;
        }
        head += &format!("X-Checksum-FNV1a64: {sum:016x}\r\n");
    }
    let announced = match mode {
        HttpMode::LengthPlus(d) => len + d,
        HttpMode::LengthMinus(d) => len - d,
        _ => len,
    };
    if let HttpMode::Chunked = mode {
        head += "Transfer-Encoding: chunked\r\n";
    } else {
        head += &format!("Content-Length: {announced}\r\n");
    }
    if let HttpMode::KeepAlive = mode {
        head += "Connection: keep-alive\r\n\r\n";
    } else {
        head += "Connection: close\r\n\r\n";
    }
    s.write_all(head.as_bytes())?;
    let mut body = |b: &[u8]| -> std::io::Result<()> {
        if let HttpMode::Chunked = mode {
            s.write_all(format!("{:x};x=y\r\n", b.len()).as_bytes())?;
            s.write_all(b)?;
            s.write_all(b"\r\n")
        } else {
            s.write_all(b)
        }
    };
    match bytes {
        Some(n) if path != "/" => {
            let mut chunk = vec![0u8; 64 * 1024];
            let mut at = 0;
            while at < n {
                let k = (n - at).min(chunk.len() as u64) as usize;
                pattern_fill(at, &mut chunk[..k]);
                if let HttpMode::FlipAt(i) = mode {
                    if (at..at + k as u64).contains(&i) {
                        chunk[(i - at) as usize] ^= 0x80;
                    }
                }
                body(&chunk[..k])?;
                at += k as u64;
            }
        }
        _ if status.starts_with("404") => body(b"not found")?,
        _ if len > 0 => body(PAGE)?,
        _ => {}
    }
    if let HttpMode::Chunked = mode {
        s.write_all(b"0\r\n\r\n")?;
    }
    if let HttpMode::KeepAlive = mode {
        thread::sleep(FOREVER);
    }
    s.shutdown(Shutdown::Write)
}
