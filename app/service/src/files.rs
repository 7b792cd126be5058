//! Where `GET /files/…` reads from.

use xenpv_appliance::http::{Opened, Response, Route};

/// Why a read of a file failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFail {
    /// The read failed (answered 500 before the head, cut short after it).
    Failed,
    /// The source refuses to be called for `left_ns` more (a breaker: 503 before the
    /// head, cut short after it).
    Unavailable {
        /// How long until it is tried again (ns).
        left_ns: u64,
    },
}

/// A filesystem `GET /files/PATH` serves. Its calls are synchronous (a disk behind
/// them): each must be bounded by the source itself (a deadline per call); the service
/// yields to other tasks between them.
pub trait Files {
    /// An open file.
    type File;
    /// Open `path` (absolute, checked by `xenpv_appliance::http::FilePath`): a regular
    /// file and its length, or what to answer instead (404, 500, 503).
    fn open(&self, path: &str) -> Result<(Self::File, u64), Opened>;
    /// Fill all of `out` with the file's bytes from `offset`.
    fn read_at(&self, f: &mut Self::File, offset: u64, out: &mut [u8]) -> Result<(), ReadFail>;
    /// The guest's own one-line pages (`GET /state`, `GET /records`: [`Route::State`],
    /// [`Route::Records`]) where the same source keeps them; `None` (the default): 404.
    fn page(&self, route: Route<'_>) -> Option<Response> {
        let _ = route;
        None
    }
}

/// No filesystem: every `GET /files/…` is a 404.
pub struct NoFiles;

impl Files for NoFiles {
    type File = ();
    fn open(&self, _: &str) -> Result<((), u64), Opened> {
        Err(Opened::NotFound)
    }
    fn read_at(&self, _: &mut (), _: u64, _: &mut [u8]) -> Result<(), ReadFail> {
        Err(ReadFail::Failed)
    }
}

/// A reference serves as its source.
impl<F: Files> Files for &F {
    type File = F::File;
    fn open(&self, path: &str) -> Result<(Self::File, u64), Opened> {
        (**self).open(path)
    }
    fn read_at(&self, f: &mut Self::File, offset: u64, out: &mut [u8]) -> Result<(), ReadFail> {
        (**self).read_at(f, offset, out)
    }
    fn page(&self, route: Route<'_>) -> Option<Response> {
        (**self).page(route)
    }
}
