//! TCP: listeners with a backlog ([`TcpListener`]), streams ([`TcpStream`]), their errors,
//! and the end of a stream's life (orphans: dropped streams finishing their close).

pub(crate) mod backlog;
pub(crate) mod listener;
pub(crate) mod stream;

use core::fmt;

use embassy_time::Instant;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};

pub use listener::{ListenerStats, TcpListener};
pub use stream::TcpStream;

use crate::stack::Inner;

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

/// A stream no task holds any more, finishing its close before the stack forgets it.
pub(crate) struct Orphan {
    pub handle: SocketHandle,
    /// Abort (RST) if still not closed by then.
    pub deadline: Instant,
    /// The listener that counted this connection, if any.
    pub listener: Option<u64>,
    /// Aborted in an earlier round: its RST has gone out, remove it.
    pub aborted: bool,
}

/// What to do with an orphan this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrphanAction {
    /// Still closing: wait (and drain what the peer sends, so it can finish).
    Wait,
    /// Past its deadline: abort it (RST goes out next round).
    Abort,
    /// Done: remove the socket.
    Remove,
}

/// Decide about an orphan: done once closed (or in TIME-WAIT: the peer has closed too),
/// aborted at its deadline, removed the round after an abort.
pub(crate) fn orphan_action(
    state: State,
    aborted: bool,
    now: Instant,
    deadline: Instant,
) -> OrphanAction {
    if aborted || matches!(state, State::Closed | State::TimeWait) {
        OrphanAction::Remove
    } else if now >= deadline {
        OrphanAction::Abort
    } else {
        OrphanAction::Wait
    }
}

/// Tend the orphans; returns the earliest deadline among those still closing.
pub(crate) fn tend_orphans(inner: &mut Inner) -> Option<Instant> {
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    let mut i = 0;
    while i < inner.orphans.len() {
        let o = &mut inner.orphans[i];
        let sock = inner.sockets.get_mut::<tcp::Socket<'static>>(o.handle);
        match orphan_action(sock.state(), o.aborted, now, o.deadline) {
            OrphanAction::Wait => {
                // Throw away what arrives: nobody reads it, and the peer must get room
                // to send its FIN.
                while sock.can_recv() && sock.recv(|b| (b.len(), ())).is_ok() {}
                next = Some(next.map_or(o.deadline, |n| n.min(o.deadline)));
                i += 1;
            }
            OrphanAction::Abort => {
                sock.abort();
                o.aborted = true;
                // Come back next round to remove it once the RST is out.
                next = Some(now);
                i += 1;
            }
            OrphanAction::Remove => {
                let o = inner.orphans.swap_remove(i);
                inner.sockets.remove(o.handle);
                if let Some(id) = o.listener {
                    if let Some(l) = inner.listeners.iter_mut().find(|l| l.id == id) {
                        l.accepted_alive = l.accepted_alive.saturating_sub(1);
                    }
                }
            }
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_wait_abort_then_go() {
        let t = Instant::from_millis;
        assert_eq!(
            orphan_action(State::FinWait1, false, t(5), t(10)),
            OrphanAction::Wait
        );
        assert_eq!(
            orphan_action(State::FinWait2, false, t(10), t(10)),
            OrphanAction::Abort
        );
        assert_eq!(
            orphan_action(State::Closed, true, t(11), t(10)),
            OrphanAction::Remove
        );
        assert_eq!(
            orphan_action(State::TimeWait, false, t(1), t(10)),
            OrphanAction::Remove
        );
        assert_eq!(
            orphan_action(State::Closed, false, t(1), t(10)),
            OrphanAction::Remove
        );
    }
}
