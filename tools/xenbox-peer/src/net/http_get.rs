//! `http-get HOST:PORT PATH`: fetch PATH over concurrent HTTP/1.1 connections, check the
//! status and (for the appliance's `/bytes/N`, or a `/files/PATH` whose length and FNV-1a
//! 64 are known) the length, contents and `X-Checksum-FNV1a64` header of the body. Bodies
//! are streamed, never held in memory.
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    check_addr, connect_from, extra_bytes, mbit_s, millis, read, reason, resolve, write_all,
    Deadline,
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
            received. With --expect-file LEN:FNV (for the appliance's /files/PATH: LEN decimal\n\
            bytes, FNV the file's FNV-1a 64 as 16 lowercase hex digits; not with\n\
            --verify-bytes), check instead that the status is 200, Content-Length is LEN, the\n\
            body has LEN bytes (0 is fine) and FNV-1a 64 FNV, and X-Checksum-FNV1a64 is the\n\
            FNV-1a 64 of the body received. No bytes may follow the body. Reports status, fnv\n\
            (the body's FNV-1a 64, with --verify-bytes or --expect-file), bytes (bodies, all\n\
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
        Opt {
            name: "expect-file",
            value: Some("LEN:FNV"),
            default: None,
            required: false,
            help: "check a 200 body of LEN bytes with FNV-1a 64 FNV, and its checksum header",
        },
        TIMEOUT,
    ],
};

/// Why one request failed: a one-word reason and details.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) &'static str, pub(crate) String);

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail(reason(&e), e.to_string())
    }
}

/// A buffered reader of a response, bounded by the deadline.
pub(crate) struct Reader<'a> {
    s: &'a TcpStream,
    d: Deadline,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `s`, each read bounded by `d`.
    pub(crate) fn new(s: &'a TcpStream, d: Deadline) -> Self {
        Reader {
            s,
            d,
            buf: vec![0; 64 * 1024],
            pos: 0,
            end: 0,
        }
    }

    /// Make sure some bytes are buffered; `false` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = read(self.s, &mut self.buf, &self.d, None)?;
        }
        Ok(self.pos < self.end)
    }

    /// Up to `max` buffered bytes (reading if none are), empty at EOF.
    pub(crate) fn take(&mut self, max: u64) -> io::Result<&[u8]> {
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
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) content_length: Option<u64>,
    chunked: bool,
    checksum: Option<String>,
}

pub(crate) fn head(r: &mut Reader<'_>) -> Result<Head, Fail> {
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

/// What the body must be, with --verify-bytes or --expect-file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expect {
    /// Its length, which Content-Length must announce too.
    len: u64,
    /// Whether it must be the `/bytes/N` pattern (--verify-bytes).
    pattern: bool,
    /// Its FNV-1a 64, if known (--expect-file).
    fnv: Option<u64>,
}

/// What the test wants of each response.
pub(crate) struct Want {
    pub(crate) status: u16,
    /// `None`: any body (but not an empty one with status 200).
    pub(crate) body: Option<Expect>,
}

/// The value of --expect-file, `LEN:FNV`: LEN decimal, FNV 16 lowercase hex digits.
fn expect_file(v: &str) -> Option<Expect> {
    let (len, fnv) = v.split_once(':')?;
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fnv.len() != 16 || !fnv.bytes().all(hex) {
        return None;
    }
    Some(Expect {
        len: len.parse().ok()?,
        pattern: false,
        fnv: Some(u64::from_str_radix(fnv, 16).ok()?),
    })
}

/// One successful request.
pub(crate) struct Got {
    pub(crate) status: u16,
    pub(crate) len: u64,
    fnv: u64,
    done: Instant,
}

/// One request for `path` (from the local address `from`, if given), checked against
/// `want`.
pub(crate) fn one(
    addr: SocketAddr,
    from: Option<IpAddr>,
    host: &str,
    path: &str,
    want: &Want,
    d: Deadline,
) -> Result<Got, Fail> {
    let s = connect_from(&addr, from, &d, None)
        .map_err(|e| Fail(reason(&e), format!("connect: {e}")))?;
    let mut req = Vec::new();
    write!(
        req,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xenbox-peer\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    write_all(&s, &req, &d)?;
    let mut r = Reader::new(&s, d);
    let h = head(&mut r)?;
    if h.status != want.status {
        return Err(Fail(
            "status",
            format!("got {}, expected {}", h.status, want.status),
        ));
    }
    if let Some(Expect { len: n, .. }) = want.body {
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
        verify: want.body.is_some_and(|e| e.pattern),
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
    if let Some(e) = want.body {
        if body.len != e.len {
            return Err(Fail(
                "body-length",
                format!("{} body bytes, expected {}", body.len, e.len),
            ));
        }
        if let Some(i) = body.first_bad {
            return Err(Fail(
                "body-mismatch",
                format!("first wrong byte at offset {i}"),
            ));
        }
        if let Some(fnv) = e.fnv.filter(|&f| f != body.fnv) {
            return Err(Fail(
                "body-checksum",
                format!("body's FNV-1a 64 is {:016x}, expected {fnv:016x}", body.fnv),
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
    let body = match (p.flag("verify-bytes"), p.text("expect-file")) {
        (true, Some(_)) => return bad("--expect-file and --verify-bytes exclude each other"),
        (true, None) => match path
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(len) => Some(Expect {
                len,
                pattern: true,
                fnv: None,
            }),
            None => {
                return bad(format!(
                    "--verify-bytes: PATH must be /bytes/N, got {path:?}"
                ))
            }
        },
        (false, Some(v)) => match expect_file(v) {
            Some(e) if status == 200 => Some(e),
            Some(_) => {
                return bad(format!(
                    "--expect-file: wants status 200, not --expect-status {status}"
                ))
            }
            None => {
                return bad(format!(
                    "--expect-file: expected LEN:FNV (decimal bytes, 16 lowercase hex digits), got {v:?}"
                ))
            }
        },
        (false, None) => None,
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
    let want = std::sync::Arc::new(Want { status, body });
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (host, path, want) = (addr.clone(), path.clone(), want.clone());
            thread::spawn(move || one(a, None, &host, &path, &want, d))
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
        if body.is_some() {
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

    use crate::args::Usage;
    use crate::data::{fnv1a64, FNV_OFFSET};
    use crate::net::testsrv::{cmd, http, http_canned, HttpMode};

    /// The contents of an `n`-byte file.
    fn file(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 % 251) as u8).collect()
    }

    /// The FNV-1a 64 of `b` as --expect-file and X-Checksum-FNV1a64 spell it.
    fn fnv(b: &[u8]) -> String {
        format!("{:016x}", fnv1a64(FNV_OFFSET, b))
    }

    /// The --expect-file value for `b`.
    fn expect(b: &[u8]) -> String {
        format!("{}:{}", b.len(), fnv(b))
    }

    /// A server answering 200 with these header lines (each ending in CRLF), then `body`.
    fn files(headers: &str, body: &[u8]) -> String {
        http_canned(
            &format!("HTTP/1.1 200 OK\r\nServer: testsrv\r\n{headers}Connection: close\r\n"),
            body,
        )
    }

    /// A server answering as the appliance does for a file with contents `body`.
    fn honest_file(body: &[u8]) -> String {
        files(
            &format!(
                "Content-Length: {}\r\nX-Checksum-FNV1a64: {}\r\n",
                body.len(),
                fnv(body)
            ),
            body,
        )
    }

    /// The message `args` are refused with; checks that the program exits 2 on them.
    fn refused(args: &[&str]) -> String {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        assert_eq!(crate::dispatch(&argv), 2, "{args:?}");
        let c = crate::command(args[0]).unwrap();
        match crate::run_command(c, &argv[1..]) {
            Err(Usage::Bad(m)) => m,
            other => panic!("{args:?}: {other:?}"),
        }
    }

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

    #[test]
    fn expect_file_passes_for_a_good_file() {
        for n in [0, 1, 4096, 300_000] {
            let f = file(n);
            let a = honest_file(&f);
            let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
            assert!(v.passed(), "{v}");
            assert_eq!(v.get("status"), Some("200"), "{v}");
            assert_eq!(v.get("fnv"), Some(fnv(&f).as_str()), "{v}");
            assert_eq!(v.get("bytes"), Some(n.to_string().as_str()), "{v}");
            let line = format!(
                "peer: http-get PASS status=200 fnv={} bytes={n} conns=1 ok=1 elapsed_ms=",
                fnv(&f)
            );
            assert!(v.to_string().starts_with(&line), "{v}");
        }
        // An empty body is fine here: its FNV is the offset basis.
        let a = honest_file(b"");
        let v = cmd(&[
            "http-get",
            &a,
            "/files/empty",
            "--expect-file=0:cbf29ce484222325",
            "--expect-status",
            "200",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("fnv"), Some("cbf29ce484222325"), "{v}");
        // Header names in any case, several connections.
        let f = file(10_000);
        let a = files(
            &format!(
                "content-length: 10000\r\nx-checksum-fnv1a64: {}\r\n",
                fnv(&f)
            ),
            &f,
        );
        let v = cmd(&[
            "http-get",
            &a,
            "/files/f",
            "--expect-file",
            &expect(&f),
            "--conns",
            "3",
        ]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("bytes"), Some("30000"), "{v}");
    }

    #[test]
    fn expect_file_fails_on_a_wrong_status() {
        let a = http_canned(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n",
            b"not found",
        );
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(b"")]);
        assert_eq!(v.reason(), Some("status"), "{v}");
    }

    #[test]
    fn expect_file_fails_on_a_wrong_length() {
        let f = file(1000);
        let sum = fnv(&f);
        // The file has 1000 bytes and the server says so: expected otherwise.
        let a = honest_file(&f);
        for want in [format!("1001:{sum}"), format!("999:{sum}"), expect(b"")] {
            let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &want]);
            assert_eq!(v.reason(), Some("content-length"), "{v}");
        }
        // No Content-Length (the body ends at EOF).
        let a = files(&format!("X-Checksum-FNV1a64: {sum}\r\n"), &f);
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert_eq!(v.reason(), Some("content-length"), "{v}");
        // The right Content-Length, the wrong number of bytes.
        let head = format!("Content-Length: 1000\r\nX-Checksum-FNV1a64: {sum}\r\n");
        let a = files(&head, &f[..999]);
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert_eq!(v.reason(), Some("short-body"), "{v}");
        let a = files(&head, &[&f[..], b"x"].concat());
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert_eq!(v.reason(), Some("extra-bytes"), "{v}");
        // Chunked (which wins over Content-Length) with one byte fewer.
        let mut body = format!("{:x}\r\n", 999).into_bytes();
        body.extend_from_slice(&f[..999]);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let a = files(&format!("{head}Transfer-Encoding: chunked\r\n"), &body);
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert_eq!(v.reason(), Some("body-length"), "{v}");
    }

    #[test]
    fn expect_file_fails_on_a_wrong_body_byte() {
        let f = file(100_000);
        let mut g = f.clone();
        g[77_777] ^= 0x10;
        // The header has the file's checksum (read before the body went wrong) ...
        let a = files(
            &format!(
                "Content-Length: 100000\r\nX-Checksum-FNV1a64: {}\r\n",
                fnv(&f)
            ),
            &g,
        );
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert_eq!(v.reason(), Some("body-checksum"), "{v}");
        assert_eq!(v.get("fnv"), None, "{v}");
        // ... or the body's own: either way, it is not the file expected.
        let a = honest_file(&g);
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert_eq!(v.reason(), Some("body-checksum"), "{v}");
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&g)]);
        assert!(v.passed(), "{v}");
        // An empty body, expected with another checksum.
        let a = honest_file(b"");
        let v = cmd(&[
            "http-get",
            &a,
            "/files/f",
            "--expect-file",
            "0:0000000000000000",
        ]);
        assert_eq!(v.reason(), Some("body-checksum"), "{v}");
    }

    #[test]
    fn expect_file_fails_on_a_missing_or_wrong_checksum_header() {
        for f in [file(5000), file(0)] {
            let n = f.len();
            let sum = fnv1a64(FNV_OFFSET, &f);
            let wrong = [
                String::new(),
                format!("X-Checksum-FNV1a64: {:016x}\r\n", sum ^ 1),
                format!("X-Checksum-FNV1a64: {sum:016X}\r\n"),
                format!("X-Checksum-FNV1a64: {sum:x}0\r\n"),
                "X-Checksum-FNV1a64:\r\n".to_string(),
            ];
            for h in wrong {
                let a = files(&format!("Content-Length: {n}\r\n{h}"), &f);
                let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
                assert_eq!(v.reason(), Some("checksum"), "{h:?}: {v}");
            }
        }
    }

    #[test]
    fn expect_file_refuses_malformed_values_and_verify_bytes() {
        let a = "127.0.0.1:1";
        for bad in [
            "",
            "5",
            "5:",
            ":cbf29ce484222325",
            "x:cbf29ce484222325",
            "+5:cbf29ce484222325",
            "-5:cbf29ce484222325",
            "5K:cbf29ce484222325",
            "0x10:cbf29ce484222325",
            " 5:cbf29ce484222325",
            "99999999999999999999:cbf29ce484222325",
            "5:CBF29CE484222325",
            "5:cbf29ce48422232",
            "5:cbf29ce4842223250",
            "5:0xcbf29ce4842223",
            "5:cbf29ce48422232g",
            "5:cbf29ce484222325:1",
            "5:cbf29ce484222325 ",
        ] {
            let m = refused(&["http-get", a, "/files/f", "--expect-file", bad]);
            assert!(m.starts_with("--expect-file: "), "{m}");
            assert!(m.ends_with(&format!("got {bad:?}")), "{m}");
        }
        let m = refused(&["http-get", a, "/files/f", "--expect-file"]);
        assert_eq!(m, "--expect-file needs a value (LEN:FNV)");
        let m = refused(&[
            "http-get",
            a,
            "/bytes/5",
            "--verify-bytes",
            "--expect-file",
            "5:cbf29ce484222325",
        ]);
        assert!(
            m.contains("--expect-file") && m.contains("--verify-bytes"),
            "{m}"
        );
        let m = refused(&[
            "http-get",
            a,
            "/files/f",
            "--expect-file",
            "5:cbf29ce484222325",
            "--expect-status",
            "404",
        ]);
        assert!(m.starts_with("--expect-file: ") && m.contains("404"), "{m}");
    }
}
