//! [`TcpListener`]: a port's pool of listening sockets, kept ahead of demand, and
//! `accept`/`serve` on top.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::Poll;

use embassy_time::Instant;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, Ipv4Address};

use super::backlog::{self, Action, Mark, Phase};
use super::orphan::Orphan;
use super::{AcceptError, BindError, TcpStream};
use crate::config::TcpConfig;
use crate::waker::WakerSet;
use crate::Stack;

/// What a listener has done, for a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerStats {
    /// Connections handed out by `accept`.
    pub accepted: u64,
    /// Half-open connections dropped at the handshake timeout.
    pub timed_out_handshake: u64,
    /// Connections that died (reset, closed) before anyone accepted them.
    pub died_before_accept: u64,
    /// Rounds in which the pool could not be refilled: `max_connections` reached (new
    /// connection attempts are refused meanwhile).
    pub at_limit: u64,
    /// Listening sockets that could not be made: no memory for their buffers.
    pub no_memory: u64,
    /// The most connections held at once (pooled and accepted).
    pub peak: usize,
    /// New connections reset because their peer held [`TcpConfig::per_peer`] already.
    pub refused_per_peer: u64,
}

/// One pooled socket.
struct Slot {
    handle: SocketHandle,
    mark: Mark,
    /// Its connection passed the per-peer check (reset when it listens again).
    admitted: bool,
    /// Its peer's IPv4 address, once admitted (`None`: not IPv4, not limited).
    peer: Option<Ipv4Address>,
}

impl Slot {
    fn listening(handle: SocketHandle) -> Slot {
        Slot {
            handle,
            mark: Mark::default(),
            admitted: false,
            peer: None,
        }
    }
}

/// A listener's state, kept in its stack (the runner tends it after every packet).
pub(crate) struct ListenerState {
    pub id: u64,
    port: u16,
    slots: Vec<Slot>,
    /// Accepted streams not yet gone, and their peers (they count against
    /// `max_connections` and `per_peer`).
    accepted: Vec<(SocketHandle, Option<Ipv4Address>)>,
    /// Tasks waiting in `accept`.
    waiters: WakerSet,
    next_seq: u64,
    stats: ListenerStats,
    /// Its TCP settings (the stack's, or its own: [`TcpListener::bind_with`]).
    pub cfg: TcpConfig,
}

/// A TCP socket with `cfg`'s buffers, listening on `port`; `None` without memory.
fn listening_socket(port: u16, cfg: &TcpConfig) -> Option<tcp::Socket<'static>> {
    let buffer = |n: usize| -> Option<Vec<u8>> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, 0);
        Some(v)
    };
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(buffer(cfg.rx_buffer.max(1))?),
        tcp::SocketBuffer::new(buffer(cfg.tx_buffer.max(1))?),
    );
    cfg.tune(&mut s);
    s.listen(port).ok()?;
    Some(s)
}

/// The IPv4 address of a socket's peer, if it has one.
fn peer_of(sock: &tcp::Socket<'static>) -> Option<Ipv4Address> {
    match sock.remote_endpoint()?.addr {
        IpAddress::Ipv4(a) => Some(a),
        _ => None,
    }
}

impl ListenerState {
    /// An accepted stream is gone (its socket removed): it no longer counts.
    pub(crate) fn release(&mut self, handle: SocketHandle) {
        if let Some(i) = self.accepted.iter().position(|(h, _)| *h == handle) {
            self.accepted.swap_remove(i);
        }
    }

    /// Connections the listener holds from `peer`, but pooled socket `except`.
    fn held_by(&self, peer: Ipv4Address, except: usize) -> usize {
        let pooled = self
            .slots
            .iter()
            .enumerate()
            .filter(|(j, s)| *j != except && s.admitted && s.peer == Some(peer))
            .count();
        pooled
            + self
                .accepted
                .iter()
                .filter(|(_, p)| *p == Some(peer))
                .count()
    }

    /// Check every new connection in the pool against its peer's limit: one from a peer
    /// holding [`TcpConfig::per_peer`] already is aborted (RST) before `accept` sees it.
    fn admit_peers(
        &mut self,
        sockets: &mut SocketSet<'static>,
        orphans: &mut Vec<Orphan>,
        now: Instant,
        cfg: &TcpConfig,
    ) {
        let mut i = 0;
        while i < self.slots.len() {
            let sock = sockets.get_mut::<tcp::Socket<'static>>(self.slots[i].handle);
            match backlog::phase(sock.state()) {
                Phase::Listening => {
                    self.slots[i].admitted = false;
                    self.slots[i].peer = None;
                }
                Phase::HalfOpen | Phase::Ready if !self.slots[i].admitted => {
                    let peer = peer_of(sock);
                    let held = peer.map_or(0, |p| self.held_by(p, i));
                    if !backlog::admit_peer(held, cfg.per_peer) {
                        sock.abort();
                        self.stats.refused_per_peer += 1;
                        let slot = self.slots.swap_remove(i);
                        orphans.push(Orphan::aborted(slot.handle, now));
                        continue;
                    }
                    self.slots[i].admitted = true;
                    self.slots[i].peer = peer;
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Look at every pooled socket: time out half-open ones, number ready ones, reuse dead
    /// ones, then add listening sockets up to the backlog. Wakes `accept`ers when any
    /// connection is ready.
    pub(crate) fn tend(
        &mut self,
        sockets: &mut SocketSet<'static>,
        orphans: &mut Vec<Orphan>,
        now: Instant,
        cfg: &TcpConfig,
    ) {
        if cfg.per_peer > 0 {
            self.admit_peers(sockets, orphans, now, cfg);
        }
        let mut ready = false;
        let mut listening = 0;
        let mut i = 0;
        while i < self.slots.len() {
            let slot = &mut self.slots[i];
            let sock = sockets.get_mut::<tcp::Socket<'static>>(slot.handle);
            let phase = backlog::phase(sock.state());
            match backlog::decide(phase, slot.mark, now, cfg.handshake_timeout, self.next_seq) {
                Action::Keep => {}
                Action::Mark(m) => {
                    if m.ready_seq.is_some() {
                        self.next_seq += 1;
                    }
                    slot.mark = m;
                }
                Action::TimeOut | Action::Relisten => {
                    if phase == Phase::HalfOpen {
                        self.stats.timed_out_handshake += 1;
                    } else {
                        self.stats.died_before_accept += 1;
                    }
                    // Not reused: smoltcp keeps per-socket state across a re-listen (a
                    // neighbour it still waits for would delay the next SYN-ACK). Aborted
                    // (its RST goes out next round), then removed; the refill replaces it.
                    sock.abort();
                    let slot = self.slots.swap_remove(i);
                    orphans.push(Orphan::aborted(slot.handle, now));
                    continue;
                }
            }
            let phase = backlog::phase(sock.state());
            listening += usize::from(phase == Phase::Listening);
            ready |= phase == Phase::Ready && slot.mark.ready_seq.is_some();
            i += 1;
        }
        self.refill(sockets, listening, cfg);
        if ready {
            self.waiters.wake_all();
        }
    }

    /// Add listening sockets up to the backlog, within `max_connections`.
    fn refill(&mut self, sockets: &mut SocketSet<'static>, listening: usize, cfg: &TcpConfig) {
        let connections = self.slots.len() - listening + self.accepted.len();
        let add = backlog::refill(listening, connections, cfg.backlog, cfg.max_connections);
        if add == 0 && listening == 0 {
            self.stats.at_limit += 1;
        }
        for _ in 0..add {
            let Some(s) = listening_socket(self.port, cfg) else {
                self.stats.no_memory += 1;
                break;
            };
            self.slots.push(Slot::listening(sockets.add(s)));
        }
        self.stats.peak = self.stats.peak.max(self.slots.len() + self.accepted.len());
    }

    /// When the runner must tend this listener again (the oldest handshake's deadline).
    pub(crate) fn next_deadline(&self, cfg: &TcpConfig) -> Option<Instant> {
        backlog::next_deadline(self.slots.iter().map(|s| s.mark), cfg.handshake_timeout)
    }

    /// Take the connection that became ready first out of the pool.
    fn take_ready(&mut self, sockets: &SocketSet<'static>) -> Option<SocketHandle> {
        let phases = self.slots.iter().map(|s| {
            let state = sockets.get::<tcp::Socket<'static>>(s.handle).state();
            (backlog::phase(state), s.mark)
        });
        let i = backlog::pick_ready(phases)?;
        let slot = self.slots.remove(i);
        self.accepted.push((slot.handle, slot.peer));
        self.stats.accepted += 1;
        Some(slot.handle)
    }
}

/// Accepts TCP connections on a port: several tasks may `accept` from one listener (it
/// takes `&self`), or [`serve`](TcpListener::serve) runs N workers.
///
/// The stack keeps [`TcpConfig::backlog`] listening sockets ready and refills them after
/// every received packet, so connection attempts are not refused while memory lasts (up
/// to [`TcpConfig::max_connections`]); established connections wait for `accept`.
/// Half-open ones are dropped after [`TcpConfig::handshake_timeout`]. Dropping the
/// listener aborts connections not yet accepted.
pub struct TcpListener {
    stack: Stack,
    id: u64,
    port: u16,
}

impl TcpListener {
    /// Listen on `port` of `stack`, with the stack's TCP settings.
    pub fn bind(stack: &Stack, port: u16) -> Result<TcpListener, BindError> {
        Self::bind_with(stack, port, stack.config().tcp)
    }

    /// Listen on `port` of `stack` with TCP settings of its own: its pooled sockets'
    /// buffers, backlog, limits and timeouts, and those of the streams it accepts. A
    /// service that streams one way takes large buffers that way (a discard service a
    /// large receive buffer, a download a large send buffer: the window, and so the
    /// throughput, follows) without every port paying for them.
    ///
    /// ```
    /// # xenpv_net::loopback::run(|stack| async move {
    /// use xenpv_net::{TcpConfig, TcpListener};
    /// let discard = TcpConfig { rx_buffer: 1 << 20, tx_buffer: 4096, ..stack.config().tcp };
    /// let listener = TcpListener::bind_with(&stack, 9, discard).unwrap();
    /// # });
    /// ```
    pub fn bind_with(stack: &Stack, port: u16, cfg: TcpConfig) -> Result<TcpListener, BindError> {
        if port == 0 {
            return Err(BindError::InvalidPort);
        }
        let id = stack.with(|inner| {
            if inner.listeners.iter().any(|l| l.port == port) {
                return Err(BindError::InUse);
            }
            let id = inner.fresh_id();
            let mut l = ListenerState {
                id,
                port,
                slots: Vec::new(),
                accepted: Vec::new(),
                waiters: WakerSet::default(),
                next_seq: 0,
                stats: ListenerStats::default(),
                cfg,
            };
            l.tend(&mut inner.sockets, &mut inner.orphans, Instant::now(), &cfg);
            inner.listeners.push(l);
            Ok(id)
        })?;
        Ok(TcpListener {
            stack: stack.clone(),
            id,
            port,
        })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the listener has done so far.
    pub fn stats(&self) -> ListenerStats {
        self.stack.with(|inner| {
            inner
                .listeners
                .iter()
                .find(|l| l.id == self.id)
                .map(|l| l.stats)
                .unwrap_or_default()
        })
    }

    /// The next established connection (the oldest waiting one).
    pub async fn accept(&self) -> Result<TcpStream, AcceptError> {
        let handle = poll_fn(|cx| {
            self.stack.with(|inner| {
                let Some(l) = inner.listeners.iter_mut().find(|l| l.id == self.id) else {
                    return Poll::Ready(Err(AcceptError::ListenerGone));
                };
                match l.take_ready(&inner.sockets) {
                    Some(h) => Poll::Ready(Ok(h)),
                    None => {
                        l.waiters.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await?;
        // The pool shrank: the runner refills it.
        self.stack.wake_runner();
        Ok(TcpStream::adopt(&self.stack, handle, Some(self.id)))
    }

    /// Serve connections with `workers` (at least 1) accept loops, each handing its
    /// connection to `handler` and accepting the next once the handler is done. Runs
    /// until dropped; the loops are joined in this one future (nothing is spawned).
    pub async fn serve<F, Fut>(&self, workers: usize, handler: F)
    where
        F: Fn(TcpStream) -> Fut,
        Fut: Future<Output = ()>,
    {
        let handler = &handler;
        let worker = || async move {
            loop {
                match self.accept().await {
                    Ok(stream) => handler(stream).await,
                    // Only a listener unregistered under us: nothing left to serve.
                    Err(AcceptError::ListenerGone) => return,
                }
            }
        };
        let mut loops: Vec<Pin<Box<_>>> = (0..workers.max(1)).map(|_| Box::pin(worker())).collect();
        let mut done = vec![false; loops.len()];
        poll_fn(|cx| {
            for (l, d) in loops.iter_mut().zip(done.iter_mut()) {
                if !*d && l.as_mut().poll(cx).is_ready() {
                    *d = true;
                }
            }
            if done.iter().all(|d| *d) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.stack.with(|inner| {
            let Some(i) = inner.listeners.iter().position(|l| l.id == self.id) else {
                return;
            };
            let l = inner.listeners.swap_remove(i);
            for s in l.slots {
                inner
                    .sockets
                    .get_mut::<tcp::Socket<'static>>(s.handle)
                    .abort();
                inner
                    .orphans
                    .push(Orphan::aborted(s.handle, Instant::now()));
            }
            inner.runner.wake();
        });
    }
}
