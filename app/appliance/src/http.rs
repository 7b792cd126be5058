//! A minimal HTTP/1.1 server's decisions: parse a request head, plan the response, and
//! the `/bytes/N` body.
//!
//! Routes: `GET /` an HTML page; `GET /bytes/N` N bytes (at most [`BYTES_MAX`], 256 MiB;
//! more is 400 [`BYTES_TOO_LARGE`]) of the pattern [`pattern_byte`]; `GET /files/PATH` a file of the guest's filesystem (the path
//! checked by [`FilePath::new`], the bytes the guest's); anything else under GET is 404,
//! another method 405, a malformed or oversized head 400. Every response says
//! `Connection: close`, its `Content-Length`, and `X-Checksum-FNV1a64` (FNV-1a, 64-bit,
//! of the body, 16 lowercase hex digits), so a client can check what it got without
//! knowing the pattern or the file.
//!
//! ```
//! use xenpv_appliance::http::{parse, Parse, Route};
//! let req = b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n";
//! assert_eq!(parse(req), Parse::Done { route: Route::Bytes(10), head_len: req.len() });
//! assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parse::Incomplete);
//! ```
//!
//! # Files
//!
//! The pure side checks the path, plans the head and sizes each chunk; the guest opens
//! the file and supplies its bytes through a closure `read(offset, out)` that fills all
//! of `out` with the file's bytes from `offset` (the same closure for both passes):
//!
//! 1. [`parse`] gives [`Route::File`]; [`FilePath::absolute`] is the name to open;
//! 2. the guest opens it: a regular file of `len` bytes, or not;
//! 3. [`file_checksum`] reads it once for the checksum (the appliance takes it in
//!    bounded steps across rounds with [`FileSum`] instead), and [`respond_file`] with
//!    [`Opened::File`] plans the 200 (with [`Opened::NotFound`] a 404, with
//!    [`Opened::Failed`] a 500); [`head`] writes the head as for any route;
//! 4. [`Body::fill_with`] sizes each chunk of the body and has `read` fill it, until
//!    `len` bytes are out.
//!
//! ```
//! use xenpv_appliance::http::{
//!     file_checksum, head, parse, respond_file, Body, Fnv, Opened, Parse, Route,
//! };
//!
//! // The guest's filesystem, here one file.
//! let (name, data) = ("/docs/a.txt", b"hello, file".as_slice());
//! let read = |at: u64, out: &mut [u8]| -> Result<(), ()> {
//!     let at = at as usize;
//!     out.copy_from_slice(data.get(at..at + out.len()).ok_or(())?);
//!     Ok(())
//! };
//!
//! let req = b"GET /files/docs/a.txt HTTP/1.1\r\n\r\n";
//! let Parse::Done { route: Route::File(path), .. } = parse(req) else { unreachable!() };
//! let opened = if path.absolute() == name {
//!     let len = data.len() as u64;
//!     match file_checksum(len, read) {
//!         Ok(checksum) => Opened::File { len, checksum },
//!         Err(()) => Opened::Failed,
//!     }
//! } else {
//!     Opened::NotFound
//! };
//! let r = respond_file(opened);
//! let h = head(&r, r.body.checksum());
//! assert!(h.starts_with("HTTP/1.1 200 OK\r\n") && h.contains("Content-Length: 11\r\n"));
//!
//! // The body, in chunks as small as a socket may offer.
//! let (mut sent, mut at) = (Vec::new(), 0u64);
//! while at < r.body.len() {
//!     let mut chunk = [0u8; 4];
//!     let n = r.body.fill_with(at, &mut chunk, read).unwrap();
//!     sent.extend_from_slice(&chunk[..n]);
//!     at += n as u64;
//! }
//! assert_eq!(sent, data);
//! let mut fnv = Fnv::new();
//! fnv.update(&sent);
//! assert_eq!(r.body.checksum(), fnv.finish());
//! assert!(matches!(r.body, Body::File { len: 11, .. }));
//! ```

use core::fmt::Write as _;

pub use crate::pattern::{fill_pattern, pattern_byte, Fnv};

/// Longest request head read; a longer one is answered 400.
pub const HEAD_MAX: usize = 2048;
/// Largest `/bytes/N`: 256 MiB, what the build-time checkpoint table covers, so that a
/// head's checksum costs at most one checkpoint step (256 KiB) of hashing. A larger N
/// is answered 400 with [`BYTES_TOO_LARGE`] (hashing 4 GiB first held the whole
/// appliance for seconds natively, minutes under emulation).
pub const BYTES_MAX: u64 = crate::pattern::CHECKPOINTS as u64 * crate::pattern::CHECKPOINT_STEP;

/// The body of the 400 for a `/bytes/N` over [`BYTES_MAX`].
pub const BYTES_TOO_LARGE: &[u8] =
    b"bytes: N is over the limit: GET /bytes/N serves at most 268435456 bytes (256 MiB)\n";

/// Longest path after `/files/`, in bytes.
pub const FILE_PATH_MAX: usize = 255;

/// What a request asks for (a [`Route::File`] borrows its path from the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /`.
    Index,
    /// `GET /bytes/N`.
    Bytes(u64),
    /// `GET /files/PATH`, PATH passing [`FilePath::new`]'s check (one that fails it is
    /// [`Route::BadRequest`]).
    File(FilePath<'a>),
    /// A GET of any other path.
    NotFound,
    /// `GET /bytes/N` with N over [`BYTES_MAX`]: 400, [`BYTES_TOO_LARGE`].
    TooLarge,
    /// Not a GET.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line, or a head past [`HEAD_MAX`]; why.
    BadRequest(&'static str),
}

/// How far a request head has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// No blank line yet (and under [`HEAD_MAX`]): read more.
    Incomplete,
    /// The head is complete (or refused): its route and length.
    Done {
        /// What to answer.
        route: Route<'a>,
        /// Bytes of the head (the request's body, if any, is ignored).
        head_len: usize,
    },
}

/// A file's path as `GET /files/PATH` names it, checked: what [`Route::File`] carries.
///
/// It holds the URL's path from the `/` after `/files` on (`/a/b.txt` for
/// `/files/a/b.txt`), which is the absolute name in the guest's filesystem.
///
/// The check, on the PATH after `/files/` (the raw bytes: nothing is percent-decoded):
/// - 1 to [`FILE_PATH_MAX`] (255) bytes;
/// - only `A`-`Z`, `a`-`z`, `0`-`9`, `.`, `_`, `-` and `/` (so no `%`, `?`, `#`, `\`,
///   space or byte above 0x7f);
/// - `/`-separated components, none empty (no leading, trailing or doubled `/`), none
///   `.` or `..`.
///
/// A path that fails any of these is answered **400** ([`Route::BadRequest`], the reason
/// naming the rule), not 404: the server refuses to look such a name up at all, so it
/// cannot say the file is absent; and the client learns its request is malformed, not
/// that some such file might appear. (Nothing that fails can reach outside the
/// filesystem's root or mean two files.) **404** is kept for checked names the guest's
/// filesystem has no regular file under ([`Opened::NotFound`]), as for any unknown path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePath<'a>(&'a str);

impl<'a> FilePath<'a> {
    /// Check `absolute`: `/` then the PATH of `/files/PATH` (`/a/b.txt` for
    /// `/files/a/b.txt`); the error is why it is refused (without the leading `/`:
    /// "file path: not absolute").
    pub fn new(absolute: &'a str) -> Result<Self, &'static str> {
        Self::from_bytes(absolute.as_bytes())
    }

    fn from_bytes(absolute: &'a [u8]) -> Result<Self, &'static str> {
        let Some(path) = absolute.strip_prefix(b"/") else {
            return Err("file path: not absolute");
        };
        Self::check(path)?;
        // Checked ASCII, so UTF-8.
        core::str::from_utf8(absolute)
            .map(FilePath)
            .map_err(|_| "file path: not ASCII")
    }

    fn check(path: &[u8]) -> Result<(), &'static str> {
        if path.is_empty() {
            return Err("file path: empty");
        }
        if path.len() > FILE_PATH_MAX {
            return Err("file path: longer than 255 bytes");
        }
        if !path
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        {
            return Err("file path: a byte outside [A-Za-z0-9._/-]");
        }
        for c in path.split(|&b| b == b'/') {
            match c {
                b"" => return Err("file path: an empty component"),
                b"." | b".." => return Err("file path: a . or .. component"),
                _ => {}
            }
        }
        Ok(())
    }

    /// The path as the request gave it after `/files/` (`a/b.txt` for
    /// `/files/a/b.txt`): 1 to [`FILE_PATH_MAX`] bytes.
    pub fn as_str(&self) -> &'a str {
        &self.0[1..]
    }

    /// The absolute name to open in the guest's filesystem (`/a/b.txt` for
    /// `/files/a/b.txt`): 2 to 256 bytes.
    pub fn absolute(&self) -> &'a str {
        self.0
    }

    /// Its components, in order (none empty, `.` or `..`).
    pub fn components(&self) -> impl Iterator<Item = &'a str> {
        self.as_str().split('/')
    }
}

/// Parse what has arrived of a request.
pub fn parse(buf: &[u8]) -> Parse<'_> {
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
            Some(_) => Route::TooLarge,
            // Not a number, or past u64: also over the limit if it is all digits.
            None if !n.is_empty() && n.iter().all(u8::is_ascii_digit) => Route::TooLarge,
            None => Route::NotFound,
        }
    } else if path.starts_with(b"/files/") {
        // From the `/` after `files` on: the absolute name.
        match FilePath::from_bytes(&path[b"/files".len()..]) {
            Ok(p) => Route::File(p),
            Err(why) => Route::BadRequest(why),
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
    /// A file's `len` bytes, which the caller supplies ([`Body::fill_with`]); their
    /// checksum was taken before the head ([`file_checksum`]).
    File {
        /// Bytes.
        len: u64,
        /// FNV-1a 64 of them.
        checksum: u64,
    },
}

impl Body {
    /// Its length.
    pub fn len(&self) -> u64 {
        match *self {
            Body::Static(b) => b.len() as u64,
            Body::Pattern { len } | Body::File { len, .. } => len,
        }
    }
    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy its bytes from `offset` into `out` (as many as fit and remain): how many.
    ///
    /// A [`Body::File`]'s bytes are not here: it copies none (0); stream it with
    /// [`Body::fill_with`].
    pub fn fill(&self, offset: u64, out: &mut [u8]) -> usize {
        let n = self.chunk(offset, out.len());
        match *self {
            Body::Static(b) => out[..n].copy_from_slice(&b[offset as usize..offset as usize + n]),
            Body::Pattern { .. } => fill_pattern(offset, &mut out[..n]),
            Body::File { .. } => return 0,
        }
        n
    }
    /// Bytes of the next chunk from `offset` into a buffer of `room`: as many as fit and
    /// remain.
    fn chunk(&self, offset: u64, room: usize) -> usize {
        (self.len().saturating_sub(offset)).min(room as u64) as usize
    }
    /// Copy its bytes from `offset` into `out` (as many as fit and remain): how many. A
    /// [`Body::File`] has `read(offset, chunk)` fill the chunk (all of it, with the
    /// file's bytes from `offset`; never past `len`); `read` is not called for an empty
    /// chunk or for the other bodies, which [`Body::fill`] serves.
    pub fn fill_with<E>(
        &self,
        offset: u64,
        out: &mut [u8],
        read: impl FnOnce(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        match *self {
            Body::File { .. } => {
                let n = self.chunk(offset, out.len());
                if n > 0 {
                    read(offset, &mut out[..n])?;
                }
                Ok(n)
            }
            _ => Ok(self.fill(offset, out)),
        }
    }
    /// FNV-1a 64 of the whole body (a [`Body::File`]'s as [`file_checksum`] found it).
    pub fn checksum(&self) -> u64 {
        match *self {
            Body::File { checksum, .. } => checksum,
            Body::Pattern { len } => crate::pattern::checksum(len),
            Body::Static(b) => {
                let mut h = Fnv::new();
                h.update(b);
                h.finish()
            }
        }
    }
}

/// FNV-1a 64 of a file of `len` bytes, read once from start to end in chunks of up to
/// 4 KiB by `read(offset, chunk)` (which fills all of the chunk, as for
/// [`Body::fill_with`]); the first error of `read` ends it.
pub fn file_checksum<E>(
    len: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut h = Fnv::new();
    let mut buf = [0u8; 4096];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        read(at, &mut buf[..n])?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finish())
}

/// Bytes of a file [`FileSum::step`] reads per round by default, and bytes of body a
/// connection sends per round: 256 KiB, about 1 ms of hashing natively (a few under
/// emulation), so that no request holds the appliance's loop for long.
pub const ROUND_BYTES: u64 = 256 * 1024;

/// A file's FNV-1a 64 taken in bounded steps, one per round of the appliance's loop,
/// so that a large file (or a hostile disk's huge one) never holds the loop: the
/// connection waits in this state, the head goes out once [`FileSum::step`] is done.
#[derive(Clone, Copy, Debug)]
pub struct FileSum {
    len: u64,
    at: u64,
    fnv: Fnv,
}

impl FileSum {
    /// The checksum of a file of `len` bytes, not started.
    pub fn new(len: u64) -> Self {
        FileSum {
            len,
            at: 0,
            fnv: Fnv::new(),
        }
    }

    /// Bytes hashed so far.
    pub fn hashed(&self) -> u64 {
        self.at
    }

    /// Hash on: at most `budget` bytes (at least one chunk), read as for
    /// [`file_checksum`]; the checksum once the whole file is in, `None` while some
    /// remains. The first error of `read` comes back (the state is then unchanged from
    /// that chunk on).
    pub fn step<E>(
        &mut self,
        budget: u64,
        mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Option<u64>, E> {
        let mut buf = [0u8; 4096];
        let stop = self.at.saturating_add(budget.max(1));
        while self.at < self.len && self.at < stop {
            let n = (self.len - self.at).min(buf.len() as u64) as usize;
            read(self.at, &mut buf[..n])?;
            self.fnv.update(&buf[..n]);
            self.at += n as u64;
        }
        Ok((self.at >= self.len).then(|| self.fnv.finish()))
    }
}

/// What the guest found when it opened a [`Route::File`]'s path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A regular file (or a symlink to one), `len` bytes, FNV-1a 64 `checksum`
    /// ([`file_checksum`]): 200.
    File {
        /// Its size.
        len: u64,
        /// FNV-1a 64 of its bytes.
        checksum: u64,
    },
    /// No such path, or not a regular file (a directory, a special file), or no
    /// filesystem at all: 404.
    NotFound,
    /// The filesystem failed (a disk read error, a corrupt structure) while opening or
    /// checksumming: 500.
    Failed,
    /// The disk is not being called (its breaker is open for `left_ns` more, after a
    /// call failed: [`crate::breaker`]): 503, the body saying when it is tried again.
    Unavailable {
        /// How long until the disk is tried again (ns).
        left_ns: u64,
    },
}

/// The response to a [`Route::File`] once the guest has [`Opened`] it.
pub fn respond_file(o: Opened) -> Response {
    match o {
        Opened::File { len, checksum } => Response {
            status: 200,
            reason: "OK",
            body: Body::File { len, checksum },
        },
        Opened::NotFound => respond(Route::NotFound),
        Opened::Failed => Response {
            status: 500,
            reason: "Internal Server Error",
            body: Body::Static(b"file read failed\n"),
        },
        Opened::Unavailable { left_ns } => Response {
            status: 503,
            reason: "Service Unavailable",
            body: Body::Static(crate::breaker::unavailable_body(left_ns)),
        },
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

/// The response to `route`. For [`Route::File`], a guest with no files: 404 (a guest
/// that has them opens the path and calls [`respond_file`]).
pub fn respond(route: Route<'_>) -> Response {
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
        Route::NotFound | Route::File(_) => r(404, "Not Found", b"not found\n"),
        Route::MethodNotAllowed => r(405, "Method Not Allowed", b"only GET\n"),
        Route::BadRequest(_) => r(400, "Bad Request", b"bad request\n"),
        Route::TooLarge => r(400, "Bad Request", BYTES_TOO_LARGE),
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
        Body::Pattern { .. } | Body::File { .. } => "application/octet-stream",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bytes_head_waits_for_more_than_one_checkpoint_step_of_hashing() {
        // H1: the head of the largest `/bytes/N` carries its checksum; past the table
        // (256 MiB) that meant hashing gigabytes inline before the head went out.
        use crate::pattern::{checksum_work, CHECKPOINT_STEP};
        for n in [BYTES_MAX, BYTES_MAX - 1, BYTES_MAX / 2 + 12345] {
            let work = checksum_work(n);
            assert!(
                work <= CHECKPOINT_STEP,
                "GET /bytes/{n} hashes {work} bytes before its head (budget {CHECKPOINT_STEP})"
            );
        }
    }

    #[test]
    fn a_file_checksum_reads_at_most_its_budget_per_round() {
        // H1: `GET /files/PATH` read the whole file for its checksum inline.
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7) as u8).collect();
        let log = std::cell::RefCell::new(vec![]);
        let mut sum = FileSum::new(data.len() as u64);
        let mut rounds = 0;
        let checksum = loop {
            log.borrow_mut().clear();
            rounds += 1;
            let r = sum.step(ROUND_BYTES, reader(&data, None, &log)).unwrap();
            let read: usize = log.borrow().iter().map(|&(_, n)| n).sum();
            assert!(
                read as u64 <= ROUND_BYTES,
                "round {rounds} read {read} bytes of the file (budget {ROUND_BYTES})"
            );
            if let Some(c) = r {
                break c;
            }
            assert!(rounds < 100, "no end");
        };
        assert_eq!(rounds, (data.len() as u64).div_ceil(ROUND_BYTES) as usize);
        assert_eq!(
            checksum,
            file_checksum(data.len() as u64, reader(&data, None, &log)).unwrap()
        );
        // A failing read: the error, and the same chunk is read again next round.
        let mut sum = FileSum::new(9000);
        let short = vec![1u8; 9000];
        assert_eq!(
            sum.step(ROUND_BYTES, reader(&short, Some(5000), &log)),
            Err("disk failed")
        );
        assert_eq!(sum.hashed(), 4096);
        let c = sum.step(ROUND_BYTES, reader(&short, None, &log)).unwrap();
        assert_eq!(
            c,
            Some(file_checksum(9000, reader(&short, None, &log)).unwrap())
        );
        // An empty file is done at once; a tiny budget still makes progress.
        assert_eq!(
            FileSum::new(0).step(0, reader(&short, None, &log)),
            Ok(Some(0xcbf2_9ce4_8422_2325))
        );
        let mut sum = FileSum::new(9000);
        assert_eq!(sum.step(1, reader(&short, None, &log)), Ok(None));
        assert_eq!(sum.hashed(), 4096);
    }

    #[test]
    fn routes() {
        let p = |s: &'static str| match parse(s.as_bytes()) {
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
            Route::TooLarge
        );
        assert_eq!(p("GET /bytes/4294967296 HTTP/1.1\r\n\r\n"), Route::TooLarge);
        assert_eq!(p("GET /bytes/268435457 HTTP/1.1\r\n\r\n"), Route::TooLarge);
        assert_eq!(
            p("GET /bytes/268435456 HTTP/1.1\r\n\r\n"),
            Route::Bytes(BYTES_MAX)
        );
        let r = respond(Route::TooLarge);
        assert_eq!((r.status, r.body), (400, Body::Static(BYTES_TOO_LARGE)));
        assert!(core::str::from_utf8(BYTES_TOO_LARGE)
            .unwrap()
            .contains(&BYTES_MAX.to_string()));
        assert_eq!(p("GET /filesx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(p("GET /files HTTP/1.1\r\n\r\n"), Route::NotFound);
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

    /// The route of a GET of `path` (raw bytes), as a verdict: the file path, or why not.
    fn file_route(path: &[u8]) -> Result<String, String> {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(path);
        req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        match parse(&req) {
            Parse::Done {
                route: Route::File(p),
                ..
            } => Ok(p.absolute().to_string()),
            Parse::Done {
                route: Route::BadRequest(why),
                ..
            } => Err(why.to_string()),
            other => panic!("{path:?}: {other:?}"),
        }
    }

    #[test]
    fn file_paths_are_checked() {
        for ok in [
            "a",
            "a/b.txt",
            "A-Z_0.9/x-y_z",
            "nested/dir/deeper/inner.bin",
            ".hidden",
            "...",
            "a..b/..c/d..",
            "-",
        ] {
            assert_eq!(
                file_route(format!("/files/{ok}").as_bytes()),
                Ok(format!("/{ok}"))
            );
        }
        let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(longest.len(), FILE_PATH_MAX);
        assert_eq!(
            file_route(format!("/files/{longest}").as_bytes()),
            Ok(format!("/{longest}"))
        );
        let bad = |p: &str, why: &str| {
            let got = file_route(format!("/files/{p}").as_bytes());
            assert!(
                matches!(&got, Err(w) if w.contains(why)),
                "{p:?}: {got:?}, wanted an error with {why:?}"
            );
        };
        bad("", "empty");
        bad(&"a".repeat(FILE_PATH_MAX + 1), "longer than 255");
        bad(&format!("{longest}c"), "longer than 255");
        bad("/a", "empty component");
        bad("a/", "empty component");
        bad("a//b", "empty component");
        bad("/", "empty component");
        bad(".", ". or ..");
        bad("..", ". or ..");
        bad("./a", ". or ..");
        bad("a/.", ". or ..");
        bad("a/../b", ". or ..");
        bad("../etc/passwd", ". or ..");
        bad("a%2fb", "outside");
        bad("%2e%2e/x", "outside");
        bad("a?b=c", "outside");
        bad("a#b", "outside");
        bad("a\\b", "outside");
        bad("a:b", "outside");
        bad("~", "outside");
        bad("caf\u{e9}", "outside");
        // Every byte in the middle of a name: allowed exactly when in [A-Za-z0-9._/-].
        for b in 0..=255u8 {
            let mut path = b"/files/x".to_vec();
            path.extend_from_slice(&[b, b'y']);
            let allowed = b.is_ascii_alphanumeric() || b"._/-".contains(&b);
            assert_eq!(file_route(&path).is_ok(), allowed, "byte {b:#04x}");
        }
        // Not under /files/: as before.
        let route = |s: &'static str| match parse(s.as_bytes()) {
            Parse::Done { route, .. } => route,
            Parse::Incomplete => panic!("incomplete: {s:?}"),
        };
        assert_eq!(route("GET /files HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("GET /Files/a HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route("POST /files/a HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert!(matches!(
            route("GET /files/../x HTTP/1.1\r\n\r\n"),
            Route::BadRequest(_)
        ));
        let r = respond(route("GET /files/.. HTTP/1.1\r\n\r\n"));
        assert_eq!((r.status, r.reason), (400, "Bad Request"));
        // The accessors.
        let p = FilePath::new("/docs/a.txt").unwrap();
        assert_eq!((p.as_str(), p.absolute()), ("docs/a.txt", "/docs/a.txt"));
        assert_eq!(p.components().collect::<Vec<_>>(), ["docs", "a.txt"]);
        assert!(FilePath::new("docs/a.txt").is_err(), "not absolute");
        assert!(FilePath::new("/docs/../a.txt").is_err());
    }

    /// A file in memory as the guest's `read`: fills all of `out` from `at`, or fails
    /// past the end or at `fail_at`; logs each call.
    fn reader<'d>(
        data: &'d [u8],
        fail_at: Option<u64>,
        log: &'d std::cell::RefCell<Vec<(u64, usize)>>,
    ) -> impl FnMut(u64, &mut [u8]) -> Result<(), &'static str> + 'd {
        move |at, out| {
            log.borrow_mut().push((at, out.len()));
            if fail_at.is_some_and(|f| at + out.len() as u64 > f) {
                return Err("disk failed");
            }
            let at = at as usize;
            out.copy_from_slice(data.get(at..at + out.len()).ok_or("past the end")?);
            Ok(())
        }
    }

    #[test]
    fn files_answer_with_length_checksum_and_their_bytes() {
        let data: Vec<u8> = (0..10_007u32).map(|i| (i * 7 + i / 300) as u8).collect();
        let log = std::cell::RefCell::new(vec![]);
        let len = data.len() as u64;
        let checksum = file_checksum(len, reader(&data, None, &log)).unwrap();
        let mut h = Fnv::new();
        h.update(&data);
        assert_eq!(checksum, h.finish());
        // One pass, in order, chunks of at most 4 KiB, never past the end.
        assert_eq!(
            *log.borrow(),
            [(0, 4096), (4096, 4096), (8192, 10_007 - 8192)]
        );
        let r = respond_file(Opened::File { len, checksum });
        assert_eq!((r.status, r.reason), (200, "OK"));
        assert_eq!(r.body, Body::File { len, checksum });
        assert_eq!((r.body.len(), r.body.checksum()), (len, checksum));
        let h = head(&r, r.body.checksum());
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(h.contains("Content-Type: application/octet-stream\r\n"));
        assert!(h.contains("Content-Length: 10007\r\n"));
        assert!(h.contains(&format!("X-Checksum-FNV1a64: {checksum:016x}\r\n")));
        assert!(h.ends_with("Connection: close\r\n\r\n"));

        // The body in odd chunks: exactly the file, `read` asked only for what is left.
        for room in [1, 777, 4096, 20_000] {
            log.borrow_mut().clear();
            let mut read = reader(&data, None, &log);
            let (mut sent, mut buf) = (vec![], vec![0u8; room]);
            loop {
                let n = r
                    .body
                    .fill_with(sent.len() as u64, &mut buf, &mut read)
                    .unwrap();
                if n == 0 {
                    break;
                }
                sent.extend_from_slice(&buf[..n]);
            }
            assert!(sent == data, "chunks of {room}");
            let calls = log.borrow();
            assert_eq!(calls.len(), data.len().div_ceil(room));
            assert!(calls.iter().all(|&(at, n)| n > 0 && at + n as u64 <= len));
        }
        // Past the end, or into an empty buffer: nothing, and `read` is not asked.
        log.borrow_mut().clear();
        let mut read = reader(&data, None, &log);
        assert_eq!(r.body.fill_with(len, &mut [0; 8], &mut read), Ok(0));
        assert_eq!(r.body.fill_with(len + 5, &mut [0; 8], &mut read), Ok(0));
        assert_eq!(r.body.fill_with(0, &mut [], &mut read), Ok(0));
        assert!(log.borrow().is_empty());
        // Its bytes are the caller's: `fill` has none.
        assert_eq!(r.body.fill(0, &mut [0; 8]), 0);
    }

    #[test]
    fn file_failures_and_other_bodies() {
        let data = vec![5u8; 9000];
        let log = std::cell::RefCell::new(vec![]);
        // A read error ends the checksum pass and comes back as is.
        assert_eq!(
            file_checksum(9000, reader(&data, Some(5000), &log)),
            Err("disk failed")
        );
        // A file shorter than it said: the reader's error, not a short checksum.
        assert_eq!(
            file_checksum(9001, reader(&data, None, &log)),
            Err("past the end")
        );
        // An empty file: the offset basis, `read` never asked.
        log.borrow_mut().clear();
        let c = file_checksum(0, reader(&data, None, &log)).unwrap();
        assert_eq!(c, 0xcbf2_9ce4_8422_2325);
        assert!(log.borrow().is_empty());
        let r = respond_file(Opened::File {
            len: 0,
            checksum: c,
        });
        assert!(head(&r, r.body.checksum()).contains("Content-Length: 0\r\n"));
        // Streaming: the error of `read` is the caller's.
        let b = Body::File {
            len: 9000,
            checksum: 0,
        };
        let mut buf = [0u8; 4096];
        let mut read = reader(&data, Some(5000), &log);
        assert_eq!(b.fill_with(0, &mut buf, &mut read), Ok(4096));
        assert_eq!(b.fill_with(4096, &mut buf, &mut read), Err("disk failed"));
        // Missing, or failed.
        let r = respond_file(Opened::NotFound);
        assert_eq!((r.status, r.body), (404, Body::Static(b"not found\n")));
        let r = respond_file(Opened::Unavailable { left_ns: 1 });
        assert_eq!((r.status, r.body.len()), (503, 44));
        assert!(head(&r, r.body.checksum()).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        let r = respond_file(Opened::Failed);
        assert_eq!((r.status, r.reason), (500, "Internal Server Error"));
        assert!(head(&r, r.body.checksum()).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
        // A guest with no files answers a checked path 404, as before.
        let p = FilePath::new("/a").unwrap();
        assert_eq!(respond(Route::File(p)).status, 404);
        // The other bodies stream through `fill_with` as through `fill`, `read` unasked.
        for b in [Body::Pattern { len: 5000 }, Body::Static(INDEX)] {
            let (mut a, mut c) = ([0u8; 999], [0u8; 999]);
            let n = b.fill_with(100, &mut a, |_, _| Err("asked")).unwrap();
            assert_eq!(n, b.fill(100, &mut c));
            assert_eq!(a, c);
        }
    }
}
