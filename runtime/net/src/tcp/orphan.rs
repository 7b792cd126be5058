//! Streams no task holds any more (dropped or closed), finishing their close before the
//! stack forgets them: removed once closed, aborted (RST) at their deadline.

use alloc::vec::Vec;

use embassy_time::Instant;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};

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

impl Orphan {
    /// A socket aborted now (its RST goes out next round), counted by no listener: the
    /// stack removes it after that round.
    pub fn aborted(handle: SocketHandle, now: Instant) -> Orphan {
        Orphan {
            handle,
            deadline: now,
            listener: None,
            aborted: true,
        }
    }
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

/// Tend the orphans; `release` is told the listener and socket of each connection
/// removed. Returns
/// the earliest deadline among those still closing.
pub(crate) fn tend(
    sockets: &mut SocketSet<'static>,
    orphans: &mut Vec<Orphan>,
    mut release: impl FnMut(u64, SocketHandle),
) -> Option<Instant> {
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    let mut i = 0;
    while i < orphans.len() {
        let o = &mut orphans[i];
        let sock = sockets.get_mut::<tcp::Socket<'static>>(o.handle);
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
                let o = orphans.swap_remove(i);
                sockets.remove(o.handle);
                if let Some(id) = o.listener {
                    release(id, o.handle);
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
