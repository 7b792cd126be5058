//! The service of the `http-server` example: an HTTP server built with
//! [picoserve](https://docs.rs/picoserve/0.20), an existing `no_std` HTTP server crate,
//! running unmodified over xenpv-net's [`TcpListener`] and [`TcpStream`].
//!
//! The guest (the `http-server-example` crate beside this one) connects vif 0 and calls
//! [`serve`]; the host test (`tests/loopback.rs`) calls the same [`serve`] over
//! xenpv-net's loopback device and fetches every route with a client on the same socket
//! API, so the service is tested without Xen. It is a crate of its own so that its test
//! build (xenpv-net's loopback, which keeps time with std) never shares a package with
//! the guest binary.
//!
//! # Why picoserve (and not edge-http)
//! Both are `no_std` servers on `embedded-io-async`. picoserve asks for two small trait
//! impls ([`glue`]: a `Socket` that splits into a read and a write half, and a `Timer`),
//! and brings an axum-like router with path parameters and JSON. edge-http asks for
//! five edge-nal traits (`TcpAccept`, `TcpSplit`, `Readable`, `TcpShutdown` and the
//! streams' `Read`/`Write`) and leaves routing to a hand-written handler. Neither needs
//! a change to run here; picoserve needs less glue.
//!
//! # Routes
//! - `GET /`: a line of text.
//! - `GET /hello/{name}`: `Hello, {name}!`.
//! - `GET /info`: JSON, `{"server":"picoserve","runtime":"xenpv-rt","uptime_ms":…}`.
//! - `GET /bytes/{n}`: `n` bytes (at most [`MAX_BYTES`]) of a fixed pattern, with their
//!   FNV-1a 64 in `X-Checksum-FNV1a64` (what `xenbox-peer http-get --verify-bytes`
//!   checks).
//! - anything else: 404.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod glue;

use alloc::format;
use alloc::string::String;
use picoserve::response::{Content, IntoResponse, Json, Response, StatusCode};
use picoserve::routing::{get, parse_path_segment, PathRouter};
use picoserve::Router;
use xenpv_net::TcpListener;
#[cfg(doc)]
use xenpv_net::TcpStream;

/// The text `GET /` answers with.
pub const ROOT_TEXT: &str = "Hello from picoserve on xenpv-rt\n";

/// The largest body `GET /bytes/{n}` sends: larger asks get 413.
pub const MAX_BYTES: usize = 64 << 20;

/// The HTTP port the example listens on.
pub const PORT: u16 = 80;

/// How many connections are served at once (each holds a [`HTTP_BUFFER`]-byte buffer);
/// more wait in the listener's backlog.
pub const WORKERS: usize = 8;

/// The size of the buffer picoserve reads a request into, per connection.
pub const HTTP_BUFFER: usize = 2048;

/// The example's routes (see the crate's docs).
pub fn router() -> Router<impl PathRouter> {
    Router::new()
        .route("/", get(|| async { ROOT_TEXT }))
        .route(
            ("/hello", parse_path_segment::<String>()),
            get(|name: String| async move { format!("Hello, {name}!\n") }),
        )
        .route("/info", get(|| async { Json(info()) }))
        .route(
            ("/bytes", parse_path_segment::<usize>()),
            get(|n: usize| async move { bytes(n) }),
        )
}

/// What `GET /info` answers, as JSON.
#[derive(serde::Serialize)]
pub struct Info {
    /// The HTTP server crate: `picoserve`.
    pub server: &'static str,
    /// The runtime: `xenpv-rt`.
    pub runtime: &'static str,
    /// Milliseconds since boot (embassy-time's clock).
    pub uptime_ms: u64,
}

fn info() -> Info {
    Info {
        server: "picoserve",
        runtime: "xenpv-rt",
        uptime_ms: embassy_time::Instant::now().as_millis(),
    }
}

/// `GET /bytes/{n}`: the pattern and its checksum header, or 413 past [`MAX_BYTES`].
fn bytes(n: usize) -> impl IntoResponse {
    if n > MAX_BYTES {
        return Err((StatusCode::new(413), "at most 64 MiB\n"));
    }
    let fnv = Pattern { len: n }.fnv1a64();
    Ok(Response::ok(Pattern { len: n }).with_header("X-Checksum-FNV1a64", format!("{fnv:016x}")))
}

/// Byte `i` of `/bytes/{n}`: `(i * 0x9E3779B97F4A7C15) >> 56` (what the dom0 client
/// checks with `--verify-bytes`).
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// A body of `len` pattern bytes, made as it is sent (never held in memory).
pub struct Pattern {
    /// Its length in bytes.
    pub len: usize,
}

impl Pattern {
    /// The FNV-1a 64 of the body.
    pub fn fnv1a64(&self) -> u64 {
        (0..self.len as u64).fold(0xcbf2_9ce4_8422_2325, |h, i| {
            (h ^ u64::from(pattern_byte(i))).wrapping_mul(0x100_0000_01b3)
        })
    }
}

impl Content for Pattern {
    fn content_type(&self) -> &'static str {
        "application/octet-stream"
    }

    fn content_length(&self) -> usize {
        self.len
    }

    async fn write_content<W: picoserve::io::Write>(self, mut w: W) -> Result<(), W::Error> {
        let mut chunk = [0u8; 1024];
        let mut at = 0;
        while at < self.len {
            let n = chunk.len().min(self.len - at);
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern_byte((at + k) as u64);
            }
            w.write_all(&chunk[..n]).await?;
            at += n;
        }
        Ok(())
    }
}

/// The server's configuration: picoserve's default timeouts (5 s for the first request
/// head, 1 s for later ones on a kept-alive connection, 3 s for the rest of a request,
/// 1 s per write) and keep-alive on (there are [`WORKERS`] workers).
pub static CONFIG: picoserve::Config = picoserve::Config::const_default().keep_connection_alive();

/// Serve `app` on `listener` with [`WORKERS`] connections at a time, forever: each
/// accepted [`TcpStream`] goes to picoserve through [`glue::Connection`]. A connection
/// that fails (a timeout, a reset) is closed and its worker accepts the next one.
pub async fn serve<P: PathRouter>(listener: &TcpListener, app: &Router<P>) {
    listener
        .serve(WORKERS, |stream| async move {
            let mut buf = [0u8; HTTP_BUFFER];
            let server = picoserve::Server::custom(app, glue::Timer, &CONFIG, &mut buf);
            // Errors end this connection only; picoserve has closed it by then.
            let _ = server.serve(glue::Connection(stream)).await;
        })
        .await
}
