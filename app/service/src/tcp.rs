//! TCP echo and discard, and a listener's connections served each as its own future.

use alloc::vec::Vec;
use core::cell::Cell;
use core::future::Future;

use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};
use futures_util::stream::{FuturesUnordered, StreamExt};
use xenpv_net::{TcpListener, TcpStream};

use crate::{add, note_error, Counters};

/// Bytes a service moves per read or write: large, so that a stream's transmit buffer
/// is filled in few calls (each a pass through the stack's lock and the runner's wake).
pub const CHUNK: usize = 32 * 1024;

/// Echo what `s` sends until it closes its side (`Ok`), counting the bytes in `echoed`;
/// `buf` is the chunk moved at a time.
pub async fn echo_loop<S: Read + Write>(
    s: &mut S,
    buf: &mut [u8],
    echoed: &Cell<u64>,
) -> Result<(), S::Error> {
    loop {
        let n = s.read(buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
        add(echoed, n as u64);
    }
}

/// Read and drop what `s` sends until it closes its side (`Ok`), counting the bytes.
pub async fn discard_loop<S: Read>(
    s: &mut S,
    buf: &mut [u8],
    discarded: &Cell<u64>,
) -> Result<(), S::Error> {
    loop {
        let n = s.read(buf).await?;
        if n == 0 {
            return Ok(());
        }
        add(discarded, n as u64);
    }
}

/// End a connection: a clean close after `r` is `Ok` (a close the peer does not finish
/// in time is counted and reset), a reset after an error (a timeout counted).
pub(crate) async fn finish<E: embedded_io_async::Error>(
    s: TcpStream,
    r: Result<(), E>,
    c: &Counters,
) {
    match r {
        Ok(()) => {
            if !s.close().await {
                add(&c.timed_out_closing, 1);
            }
        }
        Err(e) => {
            note_error(&e, &c.timed_out_idle);
            s.abort();
        }
    }
}

/// `n` zero bytes, or `None` if the heap cannot give them (then counted in
/// `no_memory`): clients drive how many connections there are, and a failed allocation
/// would end the guest.
pub(crate) fn buffer(n: usize, c: &Counters) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    if v.try_reserve_exact(n).is_err() {
        add(&c.no_memory, 1);
        return None;
    }
    v.resize(n, 0);
    Some(v)
}

/// TCP echo on one connection (RFC 862).
pub async fn echo(mut s: TcpStream, c: &Counters) {
    let Some(mut buf) = buffer(CHUNK, c) else {
        s.abort();
        return;
    };
    let r = echo_loop(&mut s, &mut buf, &c.tcp_echoed).await;
    finish(s, r, c).await;
}

/// TCP discard on one connection (RFC 863): what arrives is dropped in the socket's own
/// buffer (no copy).
pub async fn discard(mut s: TcpStream, c: &Counters) {
    let r = loop {
        match s.read_with(|b| (b.len(), b.len())).await {
            Ok(0) => break Ok(()),
            Ok(n) => add(&c.discarded, n as u64),
            Err(e) => break Err(e),
        }
    };
    finish(s, r, c).await;
}

/// Accept connections on `listener` and run `handler` on each, at most `limit` at once
/// (beyond, connections wait established in the listener's backlog, up to its
/// `max_connections`). Each connection is a future of its own, polled only when woken.
/// Runs until the listener is gone.
pub async fn serve_each<F, Fut>(listener: &TcpListener, limit: usize, c: &Counters, handler: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut conns = FuturesUnordered::new();
    loop {
        if conns.is_empty() {
            match listener.accept().await {
                Ok(s) => conns.push(handler(s)),
                Err(_) => return,
            }
        } else if conns.len() >= limit.max(1) {
            conns.next().await;
            continue;
        } else {
            // A pending accept takes nothing: dropping it when a connection ends is safe.
            match select(listener.accept(), conns.next()).await {
                Either::First(Ok(s)) => conns.push(handler(s)),
                Either::First(Err(_)) => return,
                Either::Second(_) => continue,
            }
        }
        add(&c.tcp_conns, 1);
        c.conns_peak.set(c.conns_peak.get().max(conns.len() as u64));
    }
}
