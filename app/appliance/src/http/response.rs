//! The planned response: status, body and head.

use super::*;
use core::fmt::Write as _;

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
    /// A short line made for this response (the heap probe's answer).
    Line {
        /// The bytes, `len` of them used.
        buf: [u8; LINE_MAX],
        /// Bytes used.
        len: u8,
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
            Body::Line { len, .. } => u64::from(len),
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
            Body::Line { ref buf, .. } => {
                out[..n].copy_from_slice(&buf[offset as usize..offset as usize + n])
            }
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
            Body::Line { ref buf, len } => {
                let mut h = Fnv::new();
                h.update(&buf[..usize::from(len)]);
                h.finish()
            }
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
        // A guest that keeps them answers with `respond_line`.
        Route::NotFound | Route::File(_) | Route::State | Route::Records => {
            r(404, "Not Found", b"not found\n")
        }
        Route::MethodNotAllowed => r(405, "Method Not Allowed", b"only GET\n"),
        Route::BadRequest(_) => r(400, "Bad Request", b"bad request\n"),
        Route::TooLarge => r(400, "Bad Request", BYTES_TOO_LARGE),
        // A guest that runs the probe answers with `respond_heap`.
        Route::Heap(_) => r(404, "Not Found", b"not found\n"),
    }
}

/// Longest [`Body::Line`].
pub const LINE_MAX: usize = 120;
/// The most MiB `GET /heap/N` asks for.
pub const HEAP_PROBE_MAX_MIB: u64 = 1 << 20;

/// How the guest's heap probe went (`GET /heap/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapProbe<'a> {
    /// The probe is off (the guest was not asked for it): 404.
    Off,
    /// N MiB were reserved, every page touched, and freed: 200 `heap: N MiB ok`.
    Ok,
    /// The reservation failed, why: 507 `heap: N MiB failed: why`.
    Failed(&'a str),
}

/// The response to `GET /heap/<mib>` after the probe.
pub fn respond_heap(mib: u64, probe: HeapProbe<'_>) -> Response {
    let mut line = heapless::String::<LINE_MAX>::new();
    let (status, reason) = match probe {
        HeapProbe::Off => return respond(Route::NotFound),
        HeapProbe::Ok => {
            let _ = writeln!(line, "heap: {mib} MiB ok");
            (200, "OK")
        }
        HeapProbe::Failed(why) => {
            // Cut to fit: the line says what it can.
            let _ = write!(line, "heap: {mib} MiB failed: ");
            for c in why.chars() {
                if line.len() + c.len_utf8() + 1 >= LINE_MAX || line.push(c).is_err() {
                    break;
                }
            }
            let _ = line.push('\n');
            (507, "Insufficient Storage")
        }
    };
    let mut buf = [0u8; LINE_MAX];
    buf[..line.len()].copy_from_slice(line.as_bytes());
    Response {
        status,
        reason,
        body: Body::Line {
            buf,
            len: line.len() as u8,
        },
    }
}

/// A 200 whose body is `text` and a newline, cut to [`LINE_MAX`] bytes at a character
/// boundary (`GET /state`, `GET /records`).
pub fn respond_line(text: &str) -> Response {
    let mut buf = [0u8; LINE_MAX];
    let mut len = 0;
    for c in text.chars() {
        let n = c.len_utf8();
        if len + n + 1 > LINE_MAX {
            break;
        }
        c.encode_utf8(&mut buf[len..len + n]);
        len += n;
    }
    buf[len] = b'\n';
    Response {
        status: 200,
        reason: "OK",
        body: Body::Line {
            buf,
            len: (len + 1) as u8,
        },
    }
}

/// A response head, at most this long.
pub type Head = heapless::String<256>;

/// The response's head, given its body's checksum ([`Body::checksum`]).
pub fn head(r: &Response, checksum: u64) -> Head {
    let mut h = Head::new();
    let ty = match r.body {
        Body::Static(b) if b.starts_with(b"<!DOCTYPE") => "text/html",
        Body::Static(_) | Body::Line { .. } => "text/plain",
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
