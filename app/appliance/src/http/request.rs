//! The request head: parsed, and its route.

use super::*;

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
    /// `GET /heap/N`: the heap probe of N MiB (at most [`HEAP_PROBE_MAX_MIB`]; a larger
    /// N is [`Route::BadRequest`]); answered by [`respond_heap`].
    Heap(u64),
    /// `GET /state`: the guest's clocks and counters, one line (a guest that keeps none
    /// answers 404).
    State,
    /// `GET /records`: the guest checks its disk writer's records and answers one line
    /// (a guest without the writer answers 404).
    Records,
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

/// A decimal number of 1 or more digits that fits a u64.
fn digits(n: &[u8]) -> Option<u64> {
    let s = core::str::from_utf8(n).ok()?;
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse::<u64>().ok())
        .flatten()
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
    } else if path == b"/state" {
        Route::State
    } else if path == b"/records" {
        Route::Records
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
    } else if let Some(n) = path.strip_prefix(b"/heap/") {
        match digits(n) {
            Some(n) if n <= HEAP_PROBE_MAX_MIB => Route::Heap(n),
            Some(_) => Route::BadRequest("heap probe: more MiB than the limit"),
            None if !n.is_empty() && n.iter().all(u8::is_ascii_digit) => {
                Route::BadRequest("heap probe: more MiB than the limit")
            }
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
