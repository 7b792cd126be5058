//! `http-get HOST:PORT PATH`: fetch PATH over concurrent HTTP/1.1 connections, check the
//! status and (for the appliance's `/bytes/N`) the length, contents and
//! `X-Checksum-FNV1a64` header of the body. Bodies are streamed, never held in memory.
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    check_addr, connect, extra_bytes, mbit_s, millis, read, reason, resolve, write_all, Deadline,
};
use crate::args::{bad, Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::{fnv1a64, pattern_mismatch, FNV_OFFSET};
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "http-get",
    args: &["HOST:PORT", "PATH"],
    about: "GET PATH from the HTTP server at HOST:PORT over --conns concurrent connections\n\
            (HTTP/1.1, Connection: close; bodies delimited by Content-Length, chunked encoding\n\
            or EOF) and check that the status is --expect-status and, if it is 200, that the\n\
            body is not empty. With --verify-bytes (PATH must be /bytes/N), also check that\n\
            Content-Length is N, the body is the appliance's pattern (byte i =\n\
            (i * 0x9E3779B97F4A7C15) >> 56) and X-Checksum-FNV1a64 is the FNV-1a 64 of the body\n\
            received. No bytes may follow the body. Reports status, bytes (bodies, all\n\
            connections), elapsed_ms and mbit_s.",
    opts: &[
        Opt::val(
            "expect-status",
            "CODE",
            "200",
            "the status every response must have",
        ),
        Opt::val(
            "conns",
            "C",
            "1",
            "concurrent connections, one request each",
        ),
        Opt::flag(
            "verify-bytes",
            "check a /bytes/N body, its length and checksum header",
        ),
        TIMEOUT,
    ],
};

/// Why one request failed: a one-word reason and details.
#[derive(Debug)]
struct Fail(&'static str, String);

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail(reason(&e), e.to_string())
    }
}

/// A buffered reader of a response, bounded by the deadline.
struct Reader<'a> {
    s: &'a TcpStream,
    d: Deadline,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    /// Make sure some bytes are buffered; `false` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = read(self.s, &mut self.buf, &self.d, None)?;
        }
        Ok(self.pos < self.end)
    }

    /// Up to `max` buffered bytes (reading if none are), empty at EOF.
    fn take(&mut self, max: u64) -> io::Result<&[u8]> {
        self.fill()?;
        let n = (self.end - self.pos).min(max.min(usize::MAX as u64) as usize);
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    /// One line, without its CRLF (or LF).
    fn line(&mut self, what: &str) -> Result<String, Fail> {
        let mut l = Vec::new();
        loop {
            if !self.fill()? {
                return Err(Fail("eof", format!("eof in the {what}")));
            }
            let avail = &self.buf[self.pos..self.end];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    l.extend_from_slice(&avail[..i]);
                    self.pos += i + 1;
                    break;
                }
                None => {
                    l.extend_from_slice(avail);
                    self.pos = self.end;
                }
            }
            if l.len() > 16 * 1024 {
                return Err(Fail("bad-response", format!("{what} line too long")));
            }
        }
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        String::from_utf8(l).map_err(|_| Fail("bad-response", format!("{what} is not UTF-8")))
    }
}

/// The response head: status and the headers that matter here.
#[derive(Debug, Default)]
struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    checksum: Option<String>,
}

fn head(r: &mut Reader<'_>) -> Result<Head, Fail> {
    let line = r.line("status line")?;
    let mut w = line.split_whitespace();
    let status = match (w.next(), w.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(s))) if v.starts_with("HTTP/1.") && (100..1000).contains(&s) => s,
        _ => return Err(Fail("bad-response", format!("status line {line:?}"))),
    };
    let mut h = Head {
        status,
        ..Head::default()
    };
    for _ in 0..200 {
        let line = r.line("headers")?;
        if line.is_empty() {
            return Ok(h);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Fail("bad-response", format!("header {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| Fail("bad-response", format!("Content-Length {value:?}")))?;
                if h.content_length.is_some_and(|m| m != n) {
                    return Err(Fail("bad-response", "conflicting Content-Lengths".into()));
                }
                h.content_length = Some(n);
            }
            "transfer-encoding" => h.chunked = value.to_ascii_lowercase().contains("chunked"),
            "x-checksum-fnv1a64" => h.checksum = Some(value.to_string()),
            _ => {}
        }
    }
    Err(Fail("bad-response", "too many headers".into()))
}

/// What the body looked like.
struct Body {
    len: u64,
    fnv: u64,
    /// Check against the `/bytes/N` pattern.
    verify: bool,
    first_bad: Option<u64>,
}

impl Body {
    fn eat(&mut self, b: &[u8]) {
        if self.verify && self.first_bad.is_none() {
            self.first_bad = pattern_mismatch(self.len, b);
        }
        self.fnv = fnv1a64(self.fnv, b);
        self.len += b.len() as u64;
    }
}

/// Read exactly `n` body bytes.
fn exactly(r: &mut Reader<'_>, mut n: u64, body: &mut Body) -> Result<(), Fail> {
    while n > 0 {
        let b = r.take(n)?;
        if b.is_empty() {
            return Err(Fail(
                "short-body",
                format!("eof after {} body bytes, {n} missing", body.len),
            ));
        }
        n -= b.len() as u64;
        body.eat(b);
    }
    Ok(())
}

fn chunked(r: &mut Reader<'_>, body: &mut Body) -> Result<(), Fail> {
    loop {
        let line = r.line("chunk size")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let n = u64::from_str_radix(hex, 16)
            .map_err(|_| Fail("bad-chunk", format!("chunk size {line:?}")))?;
        if n == 0 {
            while !r.line("trailers")?.is_empty() {}
            return Ok(());
        }
        exactly(r, n, body)?;
        let end = r.line("chunk end")?;
        if !end.is_empty() {
            return Err(Fail("bad-chunk", format!("{end:?} after a chunk")));
        }
    }
}

/// What the test wants of each response.
struct Want {
    status: u16,
    /// `Some(N)` with --verify-bytes.
    bytes: Option<u64>,
}

/// One successful request.
struct Got {
    status: u16,
    len: u64,
    fnv: u64,
    done: Instant,
}

fn one(addr: SocketAddr, host: &str, path: &str, want: &Want, d: Deadline) -> Result<Got, Fail> {
    let s = connect(&addr, &d, None).map_err(|e| Fail(reason(&e), format!("connect: {e}")))?;
    let mut req = Vec::new();
    write!(
        req,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xenbox-peer\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    write_all(&s, &req, &d)?;
    let mut r = Reader {
        s: &s,
        d,
        buf: vec![0; 64 * 1024],
        pos: 0,
        end: 0,
    };
    let h = head(&mut r)?;
    if h.status != want.status {
        return Err(Fail(
            "status",
            format!("got {}, expected {}", h.status, want.status),
        ));
    }
    if let Some(n) = want.bytes {
        match h.content_length {
            Some(cl) if cl == n => {}
            Some(cl) => {
                return Err(Fail(
                    "content-length",
                    format!("Content-Length {cl}, expected {n}"),
                ))
            }
            None => return Err(Fail("content-length", "no Content-Length".into())),
        }
    }
    let mut body = Body {
        len: 0,
        fnv: FNV_OFFSET,
        verify: want.bytes.is_some(),
        first_bad: None,
    };
    match (h.chunked, h.content_length) {
        (true, _) => chunked(&mut r, &mut body)?,
        (false, Some(n)) => exactly(&mut r, n, &mut body)?,
        (false, None) => loop {
            let b = r.take(u64::MAX)?;
            if b.is_empty() {
                break;
            }
            body.eat(b);
        },
    }
    let done = Instant::now();
    // Asked to close, the server should now; it must not send more either way.
    let extra = (r.end - r.pos) as u64 + extra_bytes(&s, &d, Duration::from_secs(1));
    if extra > 0 {
        return Err(Fail(
            "extra-bytes",
            format!("{extra} bytes after the {}-byte body", body.len),
        ));
    }
    if let Some(n) = want.bytes {
        if body.len != n {
            return Err(Fail(
                "body-length",
                format!("{} body bytes, expected {n}", body.len),
            ));
        }
        if let Some(i) = body.first_bad {
            return Err(Fail(
                "body-mismatch",
                format!("first wrong byte at offset {i}"),
            ));
        }
        let Some(sum) = h.checksum else {
            return Err(Fail("checksum", "no X-Checksum-FNV1a64 header".into()));
        };
        let valid = sum.len() == 16 && sum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid || u64::from_str_radix(&sum, 16).ok() != Some(body.fnv) {
            return Err(Fail(
                "checksum",
                format!("X-Checksum-FNV1a64 {sum:?}, body's is {:016x}", body.fnv),
            ));
        }
    } else if h.status == 200 && body.len == 0 {
        return Err(Fail("empty-body", "status 200 with an empty body".into()));
    }
    Ok(Got {
        status: h.status,
        len: body.len,
        fnv: body.fnv,
        done,
    })
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = p.pos[0].clone();
    check_addr(&addr)?;
    let path = p.pos[1].clone();
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return bad(format!("PATH: expected e.g. /bytes/4096, got {path:?}"));
    }
    let status = p.u64_in("expect-status", 100, 999)? as u16;
    let conns = p.u64_in("conns", 1, 1024)?;
    let bytes = if p.flag("verify-bytes") {
        match path
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => Some(n),
            None => {
                return bad(format!(
                    "--verify-bytes: PATH must be /bytes/N, got {path:?}"
                ))
            }
        }
    } else {
        None
    };
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let a = match resolve(&addr, &d) {
        Ok(a) => a,
        Err(e) => {
            super::fail_io(&mut v, "resolve", &e);
            return Ok(v);
        }
    };
    let want = std::sync::Arc::new(Want { status, bytes });
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (host, path, want) = (addr.clone(), path.clone(), want.clone());
            thread::spawn(move || one(a, &host, &path, &want, d))
        })
        .collect();
    let results: Vec<Result<Got, Fail>> = threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| Err(Fail("panic", String::new())))
        })
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let elapsed = match results.iter().flatten().map(|g| g.done).max() {
        Some(end) if ok == results.len() => end - start,
        _ => start.elapsed(),
    };
    let total: u64 = results.iter().flatten().map(|g| g.len).sum();
    for (i, r) in results.iter().enumerate() {
        if let Err(Fail(why, detail)) = r {
            progress(SPEC.name, format_args!("conn{i}: {why}: {detail}"));
        }
    }
    if let Some((i, Fail(why, detail))) = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.as_ref().err().map(|f| (i, f)))
    {
        v.fail(why);
        v.kv("conn", i);
        v.kv("detail", detail);
    }
    if let Some(g) = results.iter().flatten().next() {
        v.kv("status", g.status);
        if bytes.is_some() {
            v.kv("fnv", format_args!("{:016x}", g.fnv));
        }
    }
    v.kv("bytes", total);
    v.kv("conns", conns);
    v.kv("ok", ok);
    v.kv("elapsed_ms", millis(elapsed));
    v.kv("mbit_s", mbit_s(total, elapsed));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::net::testsrv::{cmd, http, HttpMode};

    #[test]
    fn passes_against_an_honest_server() {
        let a = http(HttpMode::Honest);
        let v = cmd(&[
            "http-get",
            &a,
            "/bytes/3000000",
            "--verify-bytes",
            "--conns",
            "3",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("bytes"), Some("9000000"));
        assert_eq!(v.get("status"), Some("200"));
        let v = cmd(&["http-get", &a, "/bytes/0", "--verify-bytes"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("fnv"), Some("cbf29ce484222325"));
        let v = cmd(&["http-get", &a, "/"]);
        assert!(v.passed(), "{v}");
        let v = cmd(&["http-get", &a, "/nope", "--expect-status", "404"]);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn handles_keep_alive_and_chunked_servers() {
        let a = http(HttpMode::KeepAlive);
        let v = cmd(&[
            "http-get",
            &a,
            "/bytes/100000",
            "--verify-bytes",
            "--timeout",
            "5",
        ]);
        assert!(v.passed(), "{v}");
        let a = http(HttpMode::Chunked);
        let v = cmd(&["http-get", &a, "/"]);
        assert!(v.passed(), "{v}");
        let v = cmd(&["http-get", &a, "/bytes/100000"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("bytes"), Some("100000"));
        // --verify-bytes insists on a Content-Length.
        let v = cmd(&["http-get", &a, "/bytes/100000", "--verify-bytes"]);
        assert_eq!(v.reason(), Some("content-length"), "{v}");
    }

    #[test]
    fn fails_on_a_wrong_status() {
        let a = http(HttpMode::Honest);
        let v = cmd(&["http-get", &a, "/nope"]);
        assert_eq!(v.reason(), Some("status"), "{v}");
        let v = cmd(&["http-get", &a, "/", "--expect-status", "404"]);
        assert_eq!(v.reason(), Some("status"), "{v}");
        let a = http(HttpMode::EmptyRoot);
        let v = cmd(&["http-get", &a, "/"]);
        assert_eq!(v.reason(), Some("empty-body"), "{v}");
    }

    #[test]
    fn fails_on_a_flipped_byte() {
        let a = http(HttpMode::FlipAt(77_777));
        let v = cmd(&[
            "http-get",
            &a,
            "/bytes/100000",
            "--verify-bytes",
            "--conns",
            "2",
        ]);
        assert_eq!(v.reason(), Some("body-mismatch"), "{v}");
        assert!(v.get("detail").unwrap().ends_with("offset 77777"), "{v}");
        assert_eq!(v.get("ok"), Some("0"), "{v}");
    }

    #[test]
    fn fails_on_a_wrong_checksum_header() {
        let a = http(HttpMode::WrongChecksum);
        let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
        assert_eq!(v.reason(), Some("checksum"), "{v}");
    }

    #[test]
    fn fails_on_a_wrong_content_length() {
        let a = http(HttpMode::LengthPlus(10));
        let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
        assert_eq!(v.reason(), Some("content-length"), "{v}");
        let v = cmd(&["http-get", &a, "/bytes/5000"]);
        assert_eq!(v.reason(), Some("short-body"), "{v}");
        let a = http(HttpMode::LengthMinus(10));
        let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
        assert_eq!(v.reason(), Some("content-length"), "{v}");
        let v = cmd(&["http-get", &a, "/bytes/5000"]);
        assert_eq!(v.reason(), Some("extra-bytes"), "{v}");
    }

    #[test]
    fn a_silent_server_fails_within_the_timeout() {
        let a = http(HttpMode::Silent);
        let t = Instant::now();
        let v = cmd(&["http-get", &a, "/", "--conns", "4", "--timeout", "0.8"]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }
}
