//! HTTP: one request per connection (`Connection: close`), as `xenpv_appliance::http`
//! plans it.

use alloc::vec::Vec;

use embassy_time::{with_timeout, Duration};
use embedded_io_async::{Read, Write};

use xenpv_appliance::http::{
    self, FileSum, HeapProbe, Opened, Parse, Route, HEAD_MAX, ROUND_BYTES,
};
use xenpv_net::TcpStream;

use crate::files::{Files, ReadFail};
use crate::{add, Counters};

/// How an exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (or the client left before a whole head): close.
    Done,
    /// Reset the connection: no whole head within the deadline, or a file failed after
    /// its head promised a length.
    Abort,
}

/// Read a request head: `None` if the deadline passed first.
async fn read_head<S: Read>(
    s: &mut S,
    head: &mut Vec<u8>,
    deadline: Duration,
) -> Option<Result<(), S::Error>> {
    let read = async {
        let mut buf = [0u8; 512];
        loop {
            if !matches!(http::parse(head), Parse::Incomplete) {
                return Ok(());
            }
            let room = (HEAD_MAX - head.len()).min(buf.len());
            let n = s.read(&mut buf[..room]).await?;
            if n == 0 {
                return Ok(()); // the client closed its side: what came is parsed
            }
            head.extend_from_slice(&buf[..n]);
        }
    };
    with_timeout(deadline, read).await.ok()
}

/// Open `path` on `files` and take its checksum, a bounded step at a time (other tasks
/// run between steps): what was found, and the open file.
async fn open_file<F: Files>(files: &F, path: &str, c: &Counters) -> (Opened, Option<F::File>) {
    let (mut f, len) = match files.open(path) {
        Ok(x) => x,
        Err(o) => return (o, None),
    };
    let mut sum = FileSum::new(len);
    loop {
        let r = sum.step(ROUND_BYTES, |off, out| files.read_at(&mut f, off, out));
        add(&c.checksum_steps, 1);
        match r {
            Ok(Some(checksum)) => return (Opened::File { len, checksum }, Some(f)),
            Ok(None) => embassy_futures::yield_now().await,
            Err(ReadFail::Failed) => return (Opened::Failed, None),
            Err(ReadFail::Unavailable { left_ns }) => {
                return (Opened::Unavailable { left_ns }, None)
            }
        }
    }
}

/// The heap probe (`GET /heap/N`): reserve `mib` MiB of heap, touch every page, free
/// it. A failure is the reservation's error, never a panic.
pub fn heap_probe(mib: u64) -> Result<(), alloc::collections::TryReserveError> {
    let bytes = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes)?;
    for b in v.spare_capacity_mut().iter_mut().step_by(4096) {
        b.write(0x5a);
    }
    Ok(())
}

/// The response to `GET /heap/<mib>`: the probe run if `on`, else 404.
fn heap_response(mib: u64, on: bool) -> http::Response {
    if !on {
        return http::respond_heap(mib, HeapProbe::Off);
    }
    match heap_probe(mib) {
        Ok(()) => http::respond_heap(mib, HeapProbe::Ok),
        Err(e) => http::respond_heap(mib, HeapProbe::Failed(&alloc::format!("{e}"))),
    }
}

/// Most body bytes made at once (a file's read from the disk, the pattern computed)
/// straight into the socket's send buffer: a bounded hold of the executor.
pub const BODY_STEP: usize = ROUND_BYTES as usize;

/// Serve one HTTP request on `s`: read its head (within `head_timeout`, else
/// [`Outcome::Abort`], counted), answer it, the body made straight in the socket's send
/// buffer, [`BODY_STEP`] bytes at most at a time; `GET /heap/N` runs [`heap_probe`] if
/// `heap_probe_on` (404 otherwise). The caller closes or resets the connection as the
/// outcome says.
pub async fn http_exchange<F: Files>(
    s: &mut TcpStream,
    head_timeout: Duration,
    heap_probe_on: bool,
    files: &F,
    c: &Counters,
) -> Result<Outcome, xenpv_net::tcp::Error> {
    let mut head = Vec::with_capacity(HEAD_MAX);
    match read_head(s, &mut head, head_timeout).await {
        None => {
            add(&c.timed_out_head, 1);
            return Ok(Outcome::Abort);
        }
        Some(r) => r?,
    }
    let route = match http::parse(&head) {
        Parse::Incomplete => return Ok(Outcome::Done),
        Parse::Done { route, .. } => route,
    };
    add(&c.http_requests, 1);
    let mut file = None;
    let r = match route {
        Route::File(path) => {
            let (opened, f) = open_file(files, path.absolute(), c).await;
            file = f;
            http::respond_file(opened)
        }
        Route::Heap(mib) => heap_response(mib, heap_probe_on),
        Route::State | Route::Records => files.page(route).unwrap_or_else(|| http::respond(route)),
        route => {
            add(&c.too_large, u64::from(route == Route::TooLarge));
            http::respond(route)
        }
    };
    let h = http::head(&r, r.body.checksum());
    s.write_all(h.as_bytes()).await?;
    let (body, len) = (r.body, r.body.len());
    let mut at = 0u64;
    while at < len {
        let fill = s
            .write_with(|b| {
                let k = b.len().min(BODY_STEP);
                let b = &mut b[..k];
                let r = body.fill_with(at, b, |off, out| match file.as_mut() {
                    Some(f) => files.read_at(f, off, out),
                    None => Err(ReadFail::Failed),
                });
                (*r.as_ref().unwrap_or(&0), r)
            })
            .await?;
        let Ok(n) = fill else {
            // The head promised a length: the connection is cut short.
            return Ok(Outcome::Abort);
        };
        add(&c.http_bytes, n as u64);
        at += n as u64;
        if file.is_some() {
            // A disk read is synchronous: let the others run between chunks.
            embassy_futures::yield_now().await;
        }
    }
    Ok(Outcome::Done)
}

/// HTTP on one connection ([`http_exchange`]), then its close or reset.
pub async fn http<F: Files>(
    mut s: TcpStream,
    head_timeout: Duration,
    heap_probe_on: bool,
    files: &F,
    c: &Counters,
) {
    let r = http_exchange(&mut s, head_timeout, heap_probe_on, files, c).await;
    match r {
        Ok(Outcome::Done) => crate::tcp::finish::<xenpv_net::tcp::Error>(s, Ok(()), c).await,
        Ok(Outcome::Abort) => s.abort(),
        Err(e) => crate::tcp::finish(s, Err(e), c).await,
    }
}
