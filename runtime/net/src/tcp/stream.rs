//! [`TcpStream`]: one connection, as `embedded-io-async` `Read` and `Write`, with an idle
//! timeout and a bounded close.

use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::task::Poll;

use embassy_time::{with_deadline, with_timeout, Duration, Instant};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::IpEndpoint;

use super::orphan::Orphan;
use super::{ConnectError, Error};
use crate::Stack;

/// A TCP connection: from [`TcpListener::accept`](crate::TcpListener::accept) or
/// [`TcpStream::connect`].
///
/// A `read` or `write` (or `flush`) that waits longer than the idle timeout fails with
/// [`Error::TimedOut`]; the connection stays as it was (drop or close it). `read` returns
/// `Ok(0)` once the peer has closed its side. Dropping a stream closes it like
/// [`close`](TcpStream::close), in the background: queued data still goes out, and the
/// connection is aborted if the peer has not finished within the close timeout.
pub struct TcpStream {
    stack: Stack,
    handle: SocketHandle,
    remote: IpEndpoint,
    local: IpEndpoint,
    idle: Option<Duration>,
    close_timeout: Duration,
    listener: Option<u64>,
}

/// Wait for `fut`, failing with `Error::TimedOut` after `idle` (if any).
async fn idle_bound<T>(
    idle: Option<Duration>,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match idle {
        Some(d) => with_timeout(d, fut).await.unwrap_or(Err(Error::TimedOut)),
        None => fut.await,
    }
}

impl TcpStream {
    /// A stream over a connected socket of `stack`'s set.
    pub(crate) fn adopt(stack: &Stack, handle: SocketHandle, listener: Option<u64>) -> TcpStream {
        let (remote, local, tcp_cfg) = stack.with(|inner| {
            let s = inner.sockets.get::<tcp::Socket<'static>>(handle);
            let unspecified = || IpEndpoint::new(smoltcp::wire::IpAddress::v4(0, 0, 0, 0), 0);
            // Its listener's settings, if it has one.
            let cfg = listener
                .and_then(|id| inner.listeners.iter().find(|l| l.id == id))
                .map_or(inner.config.tcp, |l| l.cfg);
            (
                s.remote_endpoint().unwrap_or_else(unspecified),
                s.local_endpoint().unwrap_or_else(unspecified),
                cfg,
            )
        });
        TcpStream {
            stack: stack.clone(),
            handle,
            remote,
            local,
            idle: tcp_cfg.idle_timeout,
            close_timeout: tcp_cfg.close_timeout,
            listener,
        }
    }

    /// Connect to `remote` (within the stack's handshake timeout).
    pub async fn connect(stack: &Stack, remote: IpEndpoint) -> Result<TcpStream, ConnectError> {
        let handle = stack.with(|inner| {
            let cfg = inner.config.tcp;
            let port = inner.ephemeral_port();
            let iface = inner.iface.as_mut().ok_or(ConnectError::NoRoute)?;
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(alloc::vec![0u8; cfg.rx_buffer.max(1)]),
                tcp::SocketBuffer::new(alloc::vec![0u8; cfg.tx_buffer.max(1)]),
            );
            cfg.tune(&mut s);
            s.connect(iface.context(), remote, port)
                .map_err(|e| match e {
                    tcp::ConnectError::Unaddressable => ConnectError::Unaddressable,
                    tcp::ConnectError::InvalidState => ConnectError::Refused,
                })?;
            inner.runner.wake();
            Ok(inner.sockets.add(s))
        })?;
        // From here the stream owns the socket: dropping it (an error below) cleans up.
        let stream = TcpStream::adopt(stack, handle, None);
        let timeout = stack.config().tcp.handshake_timeout;
        let established = poll_fn(|cx| {
            stream.with(|s| match s.state() {
                State::Established | State::CloseWait => Poll::Ready(Ok(())),
                State::SynSent | State::SynReceived => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                _ => Poll::Ready(Err(ConnectError::Refused)),
            })
        });
        with_timeout(timeout, established)
            .await
            .unwrap_or(Err(ConnectError::TimedOut))?;
        let mut stream = stream;
        stream.remote = remote;
        Ok(stream)
    }

    /// Run `f` on this stream's socket.
    fn with<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        self.stack
            .with(|inner| f(inner.sockets.get_mut::<tcp::Socket<'static>>(self.handle)))
    }

    /// The peer's address and port.
    pub fn remote(&self) -> IpEndpoint {
        self.remote
    }

    /// This end's address and port.
    pub fn local(&self) -> IpEndpoint {
        self.local
    }

    /// Change this stream's idle timeout (`None`: reads and writes wait forever).
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.idle = timeout;
    }

    /// The idle timeout in force.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }

    /// Change how long [`close`](TcpStream::close) (or a drop) waits for the peer.
    pub fn set_close_timeout(&mut self, timeout: Duration) {
        self.close_timeout = timeout;
    }

    /// Close: send what is queued and a FIN, then wait (discarding what still arrives)
    /// until the peer has closed too, at most the close timeout; then abort (RST).
    /// Returns `true` if the close completed cleanly.
    pub async fn close(self) -> bool {
        let deadline = Instant::now() + self.close_timeout;
        self.with(|s| s.close());
        self.stack.wake_runner();
        let done = poll_fn(|cx| {
            let state = self.with(|s| {
                while s.can_recv() && s.recv(|b| (b.len(), ())).is_ok() {}
                s.register_recv_waker(cx.waker());
                s.register_send_waker(cx.waker());
                s.state()
            });
            // Receiving may have opened the window: let the runner tell the peer.
            self.stack.wake_runner();
            match state {
                State::Closed | State::TimeWait => Poll::Ready(()),
                _ => Poll::Pending,
            }
        });
        let clean = with_deadline(deadline, done).await.is_ok();
        if !clean {
            self.with(|s| s.abort());
        }
        clean
        // Dropped here: an orphan the runner removes (after the RST, if aborted).
    }
}

impl TcpStream {
    /// Abort now: a RST goes out, what is queued either way is thrown away.
    pub fn abort(self) {
        self.with(|s| s.abort());
        // Dropped here: already closed, so the runner removes it once the RST is out.
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let deadline = Instant::now() + self.close_timeout;
        let (handle, listener) = (self.handle, self.listener);
        self.stack.with(|inner| {
            let s = inner.sockets.get_mut::<tcp::Socket<'static>>(handle);
            let aborted = s.state() == State::Closed;
            s.close();
            inner.orphans.push(Orphan {
                handle,
                deadline,
                listener,
                aborted,
            });
            inner.runner.wake();
        });
    }
}

impl TcpStream {
    /// Split into a reading and a writing half that can wait at the same time (in two
    /// futures joined, or two tasks): full-duplex use of one connection.
    pub fn split(&mut self) -> (TcpReader<'_>, TcpWriter<'_>) {
        let s: &TcpStream = self;
        (TcpReader { stream: s }, TcpWriter { stream: s })
    }

    async fn read_shared(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let read = poll_fn(|cx| {
            let r = self.with(|s| match s.recv_slice(buf) {
                Ok(0) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(tcp::RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(tcp::RecvError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            });
            if let Poll::Ready(Ok(1..)) = r {
                // The window opened: the runner may have to say so.
                self.stack.wake_runner();
            }
            r
        });
        idle_bound(self.idle, read).await
    }

    async fn write_shared(&self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let write = poll_fn(|cx| {
            let r = self.with(|s| match s.send_slice(buf) {
                Ok(0) => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(tcp::SendError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            });
            if r.is_ready() {
                self.stack.wake_runner();
            }
            r
        });
        idle_bound(self.idle, write).await
    }

    async fn read_with_shared<R>(
        &self,
        mut f: impl FnMut(&mut [u8]) -> (usize, R),
    ) -> Result<R, Error> {
        let read = poll_fn(|cx| {
            let r = self.with(|s| {
                if s.can_recv() {
                    // `can_recv` vouches for the state: `recv` does not fail.
                    return match s.recv(|b| {
                        let (n, r) = f(b);
                        (n.min(b.len()), (n, r))
                    }) {
                        Ok(x) => Poll::Ready(Ok(x)),
                        Err(_) => Poll::Ready(Err(Error::ConnectionReset)),
                    };
                }
                // Nothing to read: why (an empty read checks the state, `f` is kept for
                // the data).
                match s.recv_slice(&mut []) {
                    Ok(_) => {
                        s.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(tcp::RecvError::Finished) => Poll::Ready(Ok((0, f(&mut []).1))),
                    Err(tcp::RecvError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
                }
            });
            self.moved(r)
        });
        idle_bound(self.idle, read).await
    }

    /// A closure's result once it ran on the socket's buffer, `n` bytes taken or given:
    /// if any moved, the runner may have something to say (a window opened, data to
    /// send), so it is woken.
    fn moved<R>(&self, r: Poll<Result<(usize, R), Error>>) -> Poll<Result<R, Error>> {
        r.map(|res| {
            res.map(|(n, r)| {
                if n > 0 {
                    self.stack.wake_runner();
                }
                r
            })
        })
    }

    async fn write_with_shared<R>(
        &self,
        mut f: impl FnMut(&mut [u8]) -> (usize, R),
    ) -> Result<R, Error> {
        let write = poll_fn(|cx| {
            let r = self.with(|s| {
                if !s.may_send() {
                    return Poll::Ready(Err(Error::ConnectionReset));
                }
                if !s.can_send() {
                    s.register_send_waker(cx.waker());
                    return Poll::Pending;
                }
                match s.send(|b| {
                    let (n, r) = f(b);
                    (n.min(b.len()), (n, r))
                }) {
                    Ok(x) => Poll::Ready(Ok(x)),
                    Err(_) => Poll::Ready(Err(Error::ConnectionReset)),
                }
            });
            self.moved(r)
        });
        idle_bound(self.idle, write).await
    }

    async fn flush_shared(&self) -> Result<(), Error> {
        let flush = poll_fn(|cx| {
            self.with(|s| {
                let closing =
                    matches!(s.state(), State::FinWait1 | State::Closing | State::LastAck);
                if s.send_queue() == 0 {
                    Poll::Ready(Ok(()))
                } else if !s.may_send() && !closing {
                    Poll::Ready(Err(Error::ConnectionReset))
                } else {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        });
        idle_bound(self.idle, flush).await
    }
}

/// The reading half of a [`TcpStream`] (see [`TcpStream::split`]).
pub struct TcpReader<'a> {
    stream: &'a TcpStream,
}

/// The writing half of a [`TcpStream`] (see [`TcpStream::split`]).
pub struct TcpWriter<'a> {
    stream: &'a TcpStream,
}

impl embedded_io_async::ErrorType for TcpStream {
    type Error = Error;
}

impl embedded_io_async::ErrorType for TcpReader<'_> {
    type Error = Error;
}

impl embedded_io_async::ErrorType for TcpWriter<'_> {
    type Error = Error;
}

impl embedded_io_async::Read for TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.read_shared(buf).await
    }
}

impl embedded_io_async::Read for TcpReader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.stream.read_shared(buf).await
    }
}

impl embedded_io_async::Write for TcpStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.write_shared(buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.flush_shared().await
    }
}

impl embedded_io_async::Write for TcpWriter<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.stream.write_shared(buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.stream.flush_shared().await
    }
}

impl TcpStream {
    /// Wait until received bytes are there (or the peer has closed its side), then call
    /// `f` once on the longest contiguous run of them in the socket's own buffer; it
    /// returns how many it consumed (at most the slice's length; the rest stays for the
    /// next read) and a value passed on. After the peer's FIN, with everything before it
    /// consumed, `f` gets an empty slice (`read`'s `Ok(0)`). No copy: a service that
    /// discards or parses in place saves one. Bounded by the idle timeout like `read`.
    pub async fn read_with<R>(
        &mut self,
        f: impl FnMut(&mut [u8]) -> (usize, R),
    ) -> Result<R, Error> {
        self.read_with_shared(f).await
    }

    /// Wait until the send buffer has room, then call `f` once on the longest contiguous
    /// free run of it; it returns how many bytes it wrote there (at most the slice's
    /// length; they go out in order) and a value passed on. No copy: a service that
    /// generates its output writes it into the buffer directly. Bounded by the idle
    /// timeout like `write`.
    pub async fn write_with<R>(
        &mut self,
        f: impl FnMut(&mut [u8]) -> (usize, R),
    ) -> Result<R, Error> {
        self.write_with_shared(f).await
    }
}

impl TcpReader<'_> {
    /// [`TcpStream::read_with`] on this half.
    pub async fn read_with<R>(
        &mut self,
        f: impl FnMut(&mut [u8]) -> (usize, R),
    ) -> Result<R, Error> {
        self.stream.read_with_shared(f).await
    }
}

impl TcpWriter<'_> {
    /// [`TcpStream::write_with`] on this half.
    pub async fn write_with<R>(
        &mut self,
        f: impl FnMut(&mut [u8]) -> (usize, R),
    ) -> Result<R, Error> {
        self.stream.write_with_shared(f).await
    }
}

impl TcpStream {
    /// Read everything the peer sends until it closes its side; returns the count.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize, Error> {
        use embedded_io_async::Read;
        let mut buf = [0u8; 2048];
        let start = out.len();
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out.len() - start);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}
