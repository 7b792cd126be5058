//! The glue between picoserve and xenpv-net: picoserve runs unmodified over any socket
//! that implements its [`Socket`] trait and any clock that implements its [`Timer`].
//!
//! - [`Connection`] wraps a [`TcpStream`]: picoserve splits it into a read half (xenpv-net's
//!   reader, an `embedded_io_async::Read`) and a write half ([`WriteHalf`]: xenpv-net's
//!   writer plus picoserve's `write_with`, through a small buffer); when it is done it
//!   closes the stream gracefully (FIN, then wait for the peer's, within xenpv-net's
//!   deadline) or aborts it (a RST at once).
//! - [`Timer`] is embassy-time's timer, the clock xenpv-net's timeouts use too (Xen
//!   system time in a guest, the host's clock in a host test).
use core::future::Future;
use picoserve::io::{ErrorType, Socket};
use picoserve::mem::{BorrowedBuffer, BorrowedCursor};
use xenpv_net::{TcpReader, TcpStream, TcpWriter};

/// The "runtime" picoserve's traits are parameterised by: xenpv-rt's executor (or any
/// executor driving xenpv-net, such as `block_on` in a host test).
pub struct Xenpv;

/// picoserve's timer: `embassy_time::Timer`.
pub struct Timer;

impl picoserve::Timer<Xenpv> for Timer {
    fn delay(&self, d: picoserve::time::Duration) -> impl Future<Output = ()> {
        embassy_time::Timer::after_millis(d.as_millis())
    }
}

/// An accepted connection, as picoserve wants it.
pub struct Connection(pub TcpStream);

/// The error of xenpv-net's streams.
type Error = <TcpStream as ErrorType>::Error;

/// The write half: xenpv-net's writer, with picoserve's `write_with`.
pub struct WriteHalf<'a>(TcpWriter<'a>);

impl ErrorType for WriteHalf<'_> {
    type Error = Error;
}

impl embedded_io_async::Write for WriteHalf<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.0.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.0.flush().await
    }
}

impl picoserve::io::Write for WriteHalf<'_> {
    /// Lets `f` fill a 1 KiB buffer (picoserve formats headers into it), then writes it
    /// all: the stream's own transmit buffer is inside smoltcp, out of reach.
    async fn write_with<F: FnOnce(BorrowedCursor<'_>) -> R, R>(
        &mut self,
        f: F,
    ) -> Result<R, Error> {
        let mut space = [0u8; 1024];
        let mut buffer = BorrowedBuffer::new(&mut space);
        let out = f(buffer.unfilled());
        embedded_io_async::Write::write_all(&mut self.0, buffer.filled()).await?;
        Ok(out)
    }
}

impl Socket<Xenpv> for Connection {
    type Error = Error;
    type ReadHalf<'a> = TcpReader<'a>;
    type WriteHalf<'a> = WriteHalf<'a>;

    fn split(&mut self) -> (TcpReader<'_>, WriteHalf<'_>) {
        let (r, w) = self.0.split();
        (r, WriteHalf(w))
    }

    async fn abort<T: picoserve::Timer<Xenpv>>(
        self,
        _timeouts: &picoserve::Timeouts,
        _timer: &T,
    ) -> Result<(), picoserve::Error<Error>> {
        self.0.abort();
        Ok(())
    }

    /// A graceful close: xenpv-net bounds the wait for the peer's FIN itself.
    async fn shutdown<T: picoserve::Timer<Xenpv>>(
        self,
        _timeouts: &picoserve::Timeouts,
        _timer: &T,
    ) -> Result<(), picoserve::Error<Error>> {
        self.0.close().await;
        Ok(())
    }
}
