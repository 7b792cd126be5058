//! Reading an HTTP/1.1 response from a stream, bounded by a deadline: the head (status
//! and the headers that matter here) and a body by Content-Length, chunked or to EOF.
use std::io;
use std::net::TcpStream;

use super::super::{read, reason, Deadline};
use crate::data::{fnv1a64, pattern_mismatch};

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
    pub(super) pos: usize,
    pub(super) end: usize,
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
    pub(crate) chunked: bool,
    pub(crate) checksum: Option<String>,
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
pub(super) struct Body {
    pub(super) len: u64,
    pub(super) fnv: u64,
    /// Check against the `/bytes/N` pattern.
    pub(super) verify: bool,
    pub(super) first_bad: Option<u64>,
    /// Written (`started BYTES`) once [`STARTED_BYTES`] of the body have come, then
    /// `None` (--started-file).
    pub(super) started: Option<std::path::PathBuf>,
}

/// How much of a body makes a transfer "started" (--started-file).
pub(super) const STARTED_BYTES: u64 = 256 * 1024;

impl Body {
    pub(super) fn eat(&mut self, b: &[u8]) {
        if self.verify && self.first_bad.is_none() {
            self.first_bad = pattern_mismatch(self.len, b);
        }
        self.fnv = fnv1a64(self.fnv, b);
        self.len += b.len() as u64;
        if self.len >= STARTED_BYTES {
            if let Some(f) = self.started.take() {
                // Written whole then renamed: a watcher never reads half a line.
                let tmp = f.with_extension("tmp");
                let done = std::fs::write(&tmp, format!("started {}\n", self.len))
                    .and_then(|()| std::fs::rename(&tmp, &f));
                if let Err(e) = done {
                    crate::verdict::progress("http-get", format_args!("--started-file: {e}"));
                }
            }
        }
    }
}

/// Read exactly `n` body bytes.
pub(super) fn exactly(r: &mut Reader<'_>, mut n: u64, body: &mut Body) -> Result<(), Fail> {
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

/// Read a chunked body to its last chunk and trailers.
pub(super) fn chunked(r: &mut Reader<'_>, body: &mut Body) -> Result<(), Fail> {
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
