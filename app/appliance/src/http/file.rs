//! `GET /files/PATH`: the checksum taken in bounded steps, and the response planned
//! from what the guest found.

use super::*;

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
