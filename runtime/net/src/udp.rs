//! [`UdpSocket`]: datagrams to and from a port.

use alloc::vec;
use core::fmt;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use crate::tcp::BindError;
use crate::Stack;

/// How much a [`UdpSocket`] queues each way (received, not yet read; sent, not yet out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBuffers {
    /// Datagrams (at least 1).
    pub packets: usize,
    /// Payload bytes: the largest datagram the socket sends or receives whole. A full
    /// queue drops what arrives (and `send_to` waits).
    pub bytes: usize,
}

impl UdpBuffers {
    /// What [`UdpSocket::bind`] gives: 32 datagrams and 64 KiB each way (the largest
    /// datagram, 65,507 bytes, fits, one at a time).
    pub const DEFAULT: UdpBuffers = UdpBuffers {
        packets: 32,
        bytes: 64 * 1024,
    };
}

impl Default for UdpBuffers {
    fn default() -> Self {
        UdpBuffers::DEFAULT
    }
}

/// A UDP `recv_from` or `send_to` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// The datagram was longer than the buffer; its first bytes were kept.
    Truncated,
    /// The destination cannot be sent to (unspecified address or port 0).
    Unaddressable,
    /// The datagram is larger than the socket's buffer.
    TooLarge,
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UdpError::Truncated => "datagram truncated",
            UdpError::Unaddressable => "unaddressable endpoint",
            UdpError::TooLarge => "datagram too large",
        })
    }
}

impl core::error::Error for UdpError {}

/// A UDP socket bound to a port. Several tasks may use it at once (`&self`).
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
    port: u16,
    /// Its send buffer's bytes (a longer datagram can never be sent).
    max: usize,
}

impl UdpSocket {
    /// Bind `port` (0: an ephemeral port) on `stack`, with [`UdpBuffers::DEFAULT`].
    pub fn bind(stack: &Stack, port: u16) -> Result<UdpSocket, BindError> {
        UdpSocket::bind_with(stack, port, UdpBuffers::DEFAULT)
    }

    /// [`Self::bind`] with buffers of `buffers`' size (e.g. several of the largest
    /// datagrams each way, for a server that echoes them).
    pub fn bind_with(
        stack: &Stack,
        port: u16,
        buffers: UdpBuffers,
    ) -> Result<UdpSocket, BindError> {
        let (handle, port) = stack.with(|inner| {
            let port = if port == 0 {
                inner.ephemeral_port()
            } else {
                port
            };
            let taken = inner.sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Udp(u) => u.endpoint().port == port,
                _ => false,
            });
            if taken {
                return Err(BindError::InUse);
            }
            let buffer = || {
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; buffers.packets.max(1)],
                    vec![0u8; buffers.bytes],
                )
            };
            let mut s = udp::Socket::new(buffer(), buffer());
            s.bind(port).map_err(|_| BindError::InvalidPort)?;
            Ok((inner.sockets.add(s), port))
        })?;
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
            port,
            max: buffers.bytes,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next datagram: its length and sender. A datagram longer than `buf` fails
    /// with [`UdpError::Truncated`] (its first `buf.len()` bytes are in `buf`).
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), UdpError> {
        poll_fn(|cx| {
            self.stack.with(|inner| {
                let s = inner.sockets.get_mut::<udp::Socket<'static>>(self.handle);
                match s.recv() {
                    Ok((data, meta)) => {
                        let n = data.len().min(buf.len());
                        buf[..n].copy_from_slice(&data[..n]);
                        if n < data.len() {
                            return Poll::Ready(Err(UdpError::Truncated));
                        }
                        Poll::Ready(Ok((n, meta.endpoint)))
                    }
                    Err(udp::RecvError::Exhausted) | Err(udp::RecvError::Truncated) => {
                        s.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }

    /// Send `buf` to `to` (waits while the socket's send queue is full).
    pub async fn send_to(&self, buf: &[u8], to: IpEndpoint) -> Result<(), UdpError> {
        if buf.len() > self.max {
            return Err(UdpError::TooLarge);
        }
        poll_fn(|cx| {
            self.stack.with(|inner| {
                let s = inner.sockets.get_mut::<udp::Socket<'static>>(self.handle);
                match s.send_slice(buf, to) {
                    Ok(()) => {
                        inner.runner.wake();
                        Poll::Ready(Ok(()))
                    }
                    Err(udp::SendError::BufferFull) => {
                        s.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(udp::SendError::Unaddressable) => Poll::Ready(Err(UdpError::Unaddressable)),
                }
            })
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.with(|inner| {
            inner.sockets.remove(self.handle);
        });
    }
}
