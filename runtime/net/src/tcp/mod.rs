//! TCP: listeners with a backlog ([`TcpListener`]), streams ([`TcpStream`]), their errors,
//! and (in `orphan`) the end of a stream's life.

pub(crate) mod backlog;
pub(crate) mod listener;
pub(crate) mod orphan;
pub(crate) mod stream;

use core::fmt;

pub use listener::{ListenerStats, TcpListener};
pub use stream::{TcpReader, TcpStream, TcpWriter};

/// A stream's read or write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The connection was reset (by the peer, or aborted here).
    ConnectionReset,
    /// Nothing moved for longer than the stream's idle timeout.
    TimedOut,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::ConnectionReset => "connection reset",
            Error::TimedOut => "timed out (idle)",
        })
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        match self {
            Error::ConnectionReset => embedded_io_async::ErrorKind::ConnectionReset,
            Error::TimedOut => embedded_io_async::ErrorKind::TimedOut,
        }
    }
}

/// [`TcpListener::bind`] or [`UdpSocket::bind`](crate::UdpSocket::bind) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// Another listener (or UDP socket) of this stack has the port.
    InUse,
    /// Port 0 cannot be listened on.
    InvalidPort,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindError::InUse => "port in use",
            BindError::InvalidPort => "invalid port",
        })
    }
}

impl core::error::Error for BindError {}

/// [`TcpListener::accept`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The listener is no longer registered with its stack.
    ListenerGone,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("listener gone")
    }
}

impl core::error::Error for AcceptError {}

/// [`TcpStream::connect`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// No device has been plugged into the stack yet, or it has no address.
    NoRoute,
    /// The address cannot be connected to (unspecified address or port 0).
    Unaddressable,
    /// The peer refused (RST) or the connection died during the handshake.
    Refused,
    /// No answer within the handshake timeout.
    TimedOut,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectError::NoRoute => "no route (no device or no address yet)",
            ConnectError::Unaddressable => "unaddressable endpoint",
            ConnectError::Refused => "connection refused",
            ConnectError::TimedOut => "connect timed out",
        })
    }
}

impl core::error::Error for ConnectError {}
