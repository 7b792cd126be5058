//! A minimal HTTP/1.1 server's decisions: parse a request head, plan the response, and
//! the `/bytes/N` body.
//!
//! Routes: `GET /` an HTML page; `GET /bytes/N` N bytes (at most [`BYTES_MAX`]) of the
//! pattern [`pattern_byte`]; anything else under GET is 404, another method 405, a
//! malformed or oversized head 400. Every response says `Connection: close`, its
//! `Content-Length`, and `X-Checksum-FNV1a64` (FNV-1a, 64-bit, of the body, 16 lowercase
//! hex digits), so a client can check what it got without knowing the pattern.
//!
//! ```
//! use xenpv_appliance::http::{parse, Parse, Route};
//! let req = b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n";
//! assert_eq!(parse(req), Parse::Done { route: Route::Bytes(10), head_len: req.len() });
//! assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parse::Incomplete);
//! ```

use core::fmt::Write as _;

/// Longest request head read; a longer one is answered 400.
pub const HEAD_MAX: usize = 2048;
/// Largest `/bytes/N`.
pub const BYTES_MAX: u64 = 1 << 32;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`.
    Index,
    /// `GET /bytes/N`.
    Bytes(u64),
    /// A GET of any other path.
    NotFound,
    /// Not a GET.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line, or a head past [`HEAD_MAX`]; why.
    BadRequest(&'static str),
}

/// How far a request head has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// No blank line yet (and under [`HEAD_MAX`]): read more.
    Incomplete,
    /// The head is complete (or refused): its route and length.
    Done {
        /// What to answer.
        route: Route,
        /// Bytes of the head (the request's body, if any, is ignored).
        head_len: usize,
    },
}

/// Parse what has arrived of a request.
pub fn parse(buf: &[u8]) -> Parse {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= HEAD_MAX {
            Parse::Done {
                route: Route::BadRequest("request head too long"),
                head_len: buf.len(),
            }
        } else {
            Parse::Incomplete
        };
    };
    let head_len = end + 4;
    let line = buf[..end].split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Done {
            route: Route::BadRequest("the request line is not METHOD PATH VERSION"),
            head_len,
        };
    };
    if !version.starts_with(b"HTTP/1.") {
        return Parse::Done {
            route: Route::BadRequest("not HTTP/1.x"),
            head_len,
        };
    }
    let route = if method != b"GET" {
        Route::MethodNotAllowed
    } else if path == b"/" {
        Route::Index
    } else if let Some(n) = path.strip_prefix(b"/bytes/") {
        match core::str::from_utf8(n).ok().and_then(|s| {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        }) {
            Some(n) if n <= BYTES_MAX => Route::Bytes(n),
            _ => Route::NotFound,
        }
    } else {
        Route::NotFound
    };
    Parse::Done { route, head_len }
}

/// The index page.
pub const INDEX: &[u8] = b"<!DOCTYPE html>\n<html><head><title>xenpv-rt appliance</title></head>\n<body><h1>xenpv-rt appliance</h1>\n<p>A unikernel on Xen, serving:</p>\n<ul><li>UDP and TCP echo on port 7 (RFC 862)</li>\n<li>TCP discard on port 9 (RFC 863)</li>\n<li><code>GET /bytes/N</code>: N bytes of a deterministic pattern, with <code>X-Checksum-FNV1a64</code></li></ul>\n</body></html>\n";

/// A response's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Fixed bytes.
    Static(&'static [u8]),
    /// `len` bytes of the pattern.
    Pattern {
        /// Bytes.
        len: u64,
    },
}

impl Body {
    /// Its length.
    pub fn len(&self) -> u64 {
        match *self {
            Body::Static(b) => b.len() as u64,
            Body::Pattern { len } => len,
        }
    }
    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy its bytes from `offset` into `out` (as many as fit and remain): how many.
    pub fn fill(&self, offset: u64, out: &mut [u8]) -> usize {
        let n = (self.len().saturating_sub(offset)).min(out.len() as u64) as usize;
        match *self {
            Body::Static(b) => out[..n].copy_from_slice(&b[offset as usize..offset as usize + n]),
            Body::Pattern { .. } => fill_pattern(offset, &mut out[..n]),
        }
        n
    }
    /// FNV-1a 64 of the whole body.
    pub fn checksum(&self) -> u64 {
        let mut h = Fnv::new();
        let mut buf = [0u8; 4096];
        let mut at = 0;
        loop {
            let n = self.fill(at, &mut buf);
            if n == 0 {
                return h.finish();
            }
            h.update(&buf[..n]);
            at += n as u64;
        }
    }
}

/// A planned response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// The body.
    pub body: Body,
}

/// The response to `route`.
pub fn respond(route: Route) -> Response {
    let r = |status, reason, body: &'static [u8]| Response {
        status,
        reason,
        body: Body::Static(body),
    };
    match route {
        Route::Index => r(200, "OK", INDEX),
        Route::Bytes(len) => Response {
            status: 200,
            reason: "OK",
            body: Body::Pattern { len },
        },
        Route::NotFound => r(404, "Not Found", b"not found\n"),
        Route::MethodNotAllowed => r(405, "Method Not Allowed", b"only GET\n"),
        Route::BadRequest(_) => r(400, "Bad Request", b"bad request\n"),
    }
}

/// A response head, at most this long.
pub type Head = heapless::String<256>;

/// The response's head, given its body's checksum ([`Body::checksum`]).
pub fn head(r: &Response, checksum: u64) -> Head {
    let mut h = Head::new();
    let ty = match r.body {
        Body::Static(b) if b.starts_with(b"<!DOCTYPE") => "text/html",
        Body::Static(_) => "text/plain",
        Body::Pattern { .. } => "application/octet-stream",
    };
    // 256 bytes hold the longest head (a 20-digit length).
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nX-Checksum-FNV1a64: {checksum:016x}\r\nConnection: close\r\n\r\n",
        r.status,
        r.reason,
        r.body.len()
    );
    h
}

/// Byte `i` of the `/bytes/N` pattern: the top byte of `i` times 2^64 / phi.
pub const fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// The pattern from byte `offset` into `out`.
pub fn fill_pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = pattern_byte(offset + i as u64);
    }
}

/// FNV-1a, 64-bit.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    /// The offset basis.
    pub const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    /// Hash `bytes` in.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The hash.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let p = |s: &str| match parse(s.as_bytes()) {
            Parse::Done { route, .. } => route,
            Parse::Incomplete => panic!("incomplete: {s:?}"),
        };
        assert_eq!(p("GET / HTTP/1.0\r\n\r\n"), Route::Index);
        assert_eq!(
            p("GET /bytes/67108864 HTTP/1.1\r\nA: b\r\n\r\n"),
            Route::Bytes(67108864)
        );
        assert_eq!(p("GET /bytes/ HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(p("GET /bytes/-1 HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            p("GET /bytes/99999999999999999999999 HTTP/1.1\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(p("GET /bytes/4294967297 HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(p("GET /files/x HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(p("POST / HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert!(matches!(p("GET / SPDY\r\n\r\n"), Route::BadRequest(_)));
        assert!(matches!(p("GET /\r\n\r\n"), Route::BadRequest(_)));
        assert!(matches!(
            p("GET / HTTP/1.1 x\r\n\r\n"),
            Route::BadRequest(_)
        ));
        let long = vec![b'a'; HEAD_MAX];
        assert!(matches!(
            parse(&long),
            Parse::Done {
                route: Route::BadRequest(_),
                ..
            }
        ));
        assert_eq!(parse(&long[..HEAD_MAX - 1]), Parse::Incomplete);
    }

    #[test]
    fn bodies_fill_in_pieces_as_a_whole() {
        let b = Body::Pattern { len: 10_000 };
        let mut whole = vec![0u8; 10_000];
        fill_pattern(0, &mut whole);
        let mut pieces = vec![];
        let mut buf = [0u8; 777];
        loop {
            let n = b.fill(pieces.len() as u64, &mut buf);
            if n == 0 {
                break;
            }
            pieces.extend_from_slice(&buf[..n]);
        }
        assert_eq!(pieces, whole);
        let mut h = Fnv::new();
        h.update(&whole);
        assert_eq!(b.checksum(), h.finish());
        // The documented pattern: top byte of i * 0x9E3779B97F4A7C15.
        assert_eq!(&whole[..4], &[0x00, 0x9e, 0x3c, 0xda]);
        assert_eq!(Body::Pattern { len: 0 }.checksum(), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn heads_carry_length_and_checksum() {
        let r = respond(Route::Bytes(5));
        let h = head(&r, r.body.checksum());
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(h.contains("Content-Length: 5\r\n"));
        assert!(h.contains(&format!(
            "X-Checksum-FNV1a64: {:016x}\r\n",
            r.body.checksum()
        )));
        assert!(h.ends_with("\r\n\r\n"));
        let r = respond(Route::NotFound);
        assert!(head(&r, 0).starts_with("HTTP/1.1 404 Not Found\r\n"));
        // The longest head fits.
        let r = respond(Route::Bytes(BYTES_MAX));
        assert!(head(&r, u64::MAX).contains("Connection: close"));
    }
}
