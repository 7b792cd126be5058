//! The network appliance's services over xenpv-net's sockets, host-tested over the
//! loopback device (the guest binary in `app/` only wires them to its vifs):
//! - [`config::tcp_config`]: the admission limits as the stack's TCP settings;
//! - [`sizing::size`]: socket buffers and connection pools sized to the domain's memory;
//! - [`udp_echo`]: UDP echo (RFC 862), datagrams up to 65,507 bytes;
//! - [`echo`] and [`discard`]: TCP echo (RFC 862) and discard (RFC 863);
//! - [`http`]: the minimal HTTP/1.1 server of `xenpv_appliance::http` (`/`, `/bytes/N`
//!   streamed from the pattern, `/files/…` from a [`Files`] source, `/heap/N` the heap
//!   probe when the guest turns it on), the request head read under a deadline;
//! - [`serve_each`]: a listener's connections, each its own future, polled only when
//!   woken (a thousand idle connections cost a busy one nothing).
//!
//! What they did is counted in [`Counters`] (shared by every vif: single-threaded).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
mod files;
mod http;
pub mod sizing;
mod tcp;
mod udp;

pub use files::{Files, NoFiles, ReadFail};
pub use http::{heap_probe, http, http_exchange, Outcome, BODY_STEP};
pub use tcp::{discard, discard_loop, echo, echo_loop, serve_each, CHUNK};
pub use udp::{udp_echo, UDP_MAX};

use core::cell::Cell;

/// What the services count (printed when the appliance stops).
#[derive(Default)]
pub struct Counters {
    /// Datagrams echoed, and those dropped (the send queue stayed full, or too large).
    pub udp_echoed: Cell<u64>,
    /// Datagrams not echoed.
    pub udp_dropped: Cell<u64>,
    /// Bytes echoed over TCP.
    pub tcp_echoed: Cell<u64>,
    /// Bytes discarded.
    pub discarded: Cell<u64>,
    /// HTTP requests answered (every status).
    pub http_requests: Cell<u64>,
    /// HTTP body bytes sent.
    pub http_bytes: Cell<u64>,
    /// `GET /bytes/N` over the limit.
    pub too_large: Cell<u64>,
    /// Steps of a file's checksum taken.
    pub checksum_steps: Cell<u64>,
    /// HTTP connections closed for want of a whole head in time (`head_timeout=`).
    pub timed_out_head: Cell<u64>,
    /// Connections closed for silence (the stream's idle timeout, `tcp_idle=`).
    pub timed_out_idle: Cell<u64>,
    /// Closes that did not complete in time (the peer never finished: reset).
    pub timed_out_closing: Cell<u64>,
    /// Connections taken by [`serve_each`].
    pub tcp_conns: Cell<u64>,
    /// The most connections [`serve_each`] served at once on one listener.
    pub conns_peak: Cell<u64>,
    /// Connections reset for want of heap for their buffer.
    pub no_memory: Cell<u64>,
}

/// Add `n` to a counter.
pub fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().saturating_add(n));
}

/// Note an error of a stream: a timeout is counted in `idle`.
fn note_error<E: embedded_io_async::Error>(e: &E, idle: &Cell<u64>) {
    if e.kind() == embedded_io_async::ErrorKind::TimedOut {
        add(idle, 1);
    }
}
