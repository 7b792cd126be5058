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

mod file;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use file::*;
pub use request::*;
pub use response::*;
