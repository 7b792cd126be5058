//! A listener's pool of sockets, as pure decisions: what each pooled socket's state means
//! (listening, half-open, ready to accept, dead), which ready one `accept` hands out, how
//! many listening sockets to add, and when the stack must look again.

use embassy_time::{Duration, Instant};
use smoltcp::socket::tcp::State;

/// What a pooled socket is, seen from the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a SYN.
    Listening,
    /// SYN received, handshake not finished.
    HalfOpen,
    /// Established (data may be waiting, or even the peer's FIN): ready for `accept`.
    Ready,
    /// Closed or reset before anyone accepted it: reuse it as a listening socket.
    Dead,
}

/// The listener's view of a smoltcp TCP state.
pub(crate) fn phase(state: State) -> Phase {
    match state {
        State::Listen => Phase::Listening,
        State::SynReceived | State::SynSent => Phase::HalfOpen,
        State::Established | State::CloseWait => Phase::Ready,
        _ => Phase::Dead,
    }
}

/// The bookkeeping kept per pooled socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    /// When the socket was first seen half-open.
    pub half_open_since: Option<Instant>,
    /// Arrival order among ready sockets (accept hands out the oldest first).
    pub ready_seq: Option<u64>,
}

/// What to do with one pooled socket after a poll of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing changes.
    Keep,
    /// Record the new marks.
    Mark(Mark),
    /// Abort it (the handshake took too long) and listen again.
    TimeOut,
    /// It died before `accept`: listen again.
    Relisten,
}

/// Decide about one pooled socket: `seq` is the next arrival number for a newly ready one.
pub(crate) fn decide(
    phase: Phase,
    mark: Mark,
    now: Instant,
    handshake: Duration,
    seq: u64,
) -> Action {
    match phase {
        Phase::Listening if mark == Mark::default() => Action::Keep,
        // Back to listening (a peer's RST in SYN-RECEIVED does that): forget the marks.
        Phase::Listening => Action::Mark(Mark::default()),
        Phase::HalfOpen => match mark.half_open_since {
            None => Action::Mark(Mark {
                half_open_since: Some(now),
                ready_seq: None,
            }),
            Some(t) if now.saturating_duration_since(t) >= handshake => Action::TimeOut,
            Some(_) => Action::Keep,
        },
        Phase::Ready if mark.ready_seq.is_some() => Action::Keep,
        Phase::Ready => Action::Mark(Mark {
            half_open_since: None,
            ready_seq: Some(seq),
        }),
        Phase::Dead => Action::Relisten,
    }
}

/// Which pooled socket `accept` takes: the ready one that became ready first.
pub(crate) fn pick_ready(marks: impl Iterator<Item = (Phase, Mark)>) -> Option<usize> {
    marks
        .enumerate()
        .filter(|(_, (p, m))| *p == Phase::Ready && m.ready_seq.is_some())
        .min_by_key(|(_, (_, m))| m.ready_seq)
        .map(|(i, _)| i)
}

/// How many listening sockets to add: enough to have `backlog` (at least 1) listening,
/// as long as the listener's connections stay within `max`.
/// `listening`: pooled sockets listening now; `connections`: every other connection the
/// listener holds (pooled half-open and ready ones, accepted ones still alive).
pub(crate) fn refill(listening: usize, connections: usize, backlog: usize, max: usize) -> usize {
    let want = backlog.max(1).saturating_sub(listening);
    let room = max.saturating_sub(connections + listening);
    want.min(room)
}

/// May a new connection from a peer be kept? `held`: the peer's other connections to
/// the listener; `per_peer`: the limit (0: none).
pub(crate) fn admit_peer(held: usize, per_peer: usize) -> bool {
    per_peer == 0 || held < per_peer
}

/// When the stack must look at the pool again: the earliest handshake deadline.
pub(crate) fn next_deadline(
    marks: impl Iterator<Item = Mark>,
    handshake: Duration,
) -> Option<Instant> {
    marks
        .filter_map(|m| m.half_open_since)
        .min()
        .map(|t| t + handshake)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }
    const HS: Duration = Duration::from_millis(100);

    #[test]
    fn states_map_to_phases() {
        assert_eq!(phase(State::Listen), Phase::Listening);
        assert_eq!(phase(State::SynReceived), Phase::HalfOpen);
        assert_eq!(phase(State::Established), Phase::Ready);
        assert_eq!(phase(State::CloseWait), Phase::Ready);
        for s in [
            State::Closed,
            State::TimeWait,
            State::FinWait1,
            State::LastAck,
        ] {
            assert_eq!(phase(s), Phase::Dead, "{s}");
        }
    }

    #[test]
    fn half_open_is_timed_from_first_sight() {
        let m = Mark::default();
        let first = decide(Phase::HalfOpen, m, at(1000), HS, 0);
        let marked = Mark {
            half_open_since: Some(at(1000)),
            ready_seq: None,
        };
        assert_eq!(first, Action::Mark(marked));
        assert_eq!(
            decide(Phase::HalfOpen, marked, at(1099), HS, 0),
            Action::Keep
        );
        assert_eq!(
            decide(Phase::HalfOpen, marked, at(1100), HS, 0),
            Action::TimeOut
        );
    }

    #[test]
    fn ready_gets_an_arrival_number_once() {
        let m = Mark {
            half_open_since: Some(at(5)),
            ready_seq: None,
        };
        let a = decide(Phase::Ready, m, at(10), HS, 7);
        assert_eq!(
            a,
            Action::Mark(Mark {
                half_open_since: None,
                ready_seq: Some(7)
            })
        );
        let ready = Mark {
            half_open_since: None,
            ready_seq: Some(7),
        };
        assert_eq!(decide(Phase::Ready, ready, at(10_000), HS, 8), Action::Keep);
    }

    #[test]
    fn dead_relistens_and_relistened_forgets() {
        assert_eq!(
            decide(Phase::Dead, Mark::default(), at(0), HS, 0),
            Action::Relisten
        );
        let stale = Mark {
            half_open_since: Some(at(0)),
            ready_seq: None,
        };
        assert_eq!(
            decide(Phase::Listening, stale, at(1), HS, 0),
            Action::Mark(Mark::default())
        );
        assert_eq!(
            decide(Phase::Listening, Mark::default(), at(1), HS, 0),
            Action::Keep
        );
    }

    #[test]
    fn accept_takes_the_oldest_ready() {
        let r = |s| {
            (
                Phase::Ready,
                Mark {
                    half_open_since: None,
                    ready_seq: Some(s),
                },
            )
        };
        let pool = [
            (Phase::Listening, Mark::default()),
            r(9),
            r(3),
            (Phase::HalfOpen, Mark::default()),
            r(5),
        ];
        assert_eq!(pick_ready(pool.into_iter()), Some(2));
        assert_eq!(
            pick_ready([(Phase::Listening, Mark::default())].into_iter()),
            None
        );
        // Ready but not yet numbered (seen by accept before the stack's pass): not yet.
        assert_eq!(
            pick_ready([(Phase::Ready, Mark::default())].into_iter()),
            None
        );
    }

    #[test]
    fn refill_keeps_the_backlog_ahead_of_demand() {
        // 32 clients at once: every SYN takes a listening socket, each is replaced.
        let mut listening = 4;
        let mut connections = 0;
        for _ in 0..32 {
            listening -= 1;
            connections += 1;
            listening += refill(listening, connections, 4, 1024);
            assert_eq!(listening, 4);
        }
        assert_eq!(refill(0, 0, 0, 10), 1, "backlog 0 still listens");
    }

    #[test]
    fn refill_stops_at_the_connection_limit() {
        assert_eq!(refill(0, 8, 4, 10), 2);
        assert_eq!(refill(2, 8, 4, 10), 0);
        assert_eq!(refill(0, 12, 4, 10), 0);
    }

    #[test]
    fn a_peer_is_admitted_below_its_limit_only() {
        assert!(admit_peer(0, 2));
        assert!(admit_peer(1, 2));
        assert!(!admit_peer(2, 2));
        assert!(!admit_peer(5, 2));
        assert!(admit_peer(1_000_000, 0), "0 is no limit");
    }

    #[test]
    fn deadline_is_the_oldest_half_open_plus_timeout() {
        let ms = [
            Mark::default(),
            Mark {
                half_open_since: Some(at(50)),
                ready_seq: None,
            },
            Mark {
                half_open_since: Some(at(20)),
                ready_seq: None,
            },
        ];
        assert_eq!(next_deadline(ms.into_iter(), HS), Some(at(120)));
        assert_eq!(next_deadline([Mark::default()].into_iter(), HS), None);
    }
}
