//! Each port's pool of TCP listeners: the sockets and their buffers, admission of new
//! connections (per-peer limit, growth up to `tcp_max=`), retirement of extra sockets,
//! and each connection's deadlines.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use xenpv_appliance::admission::{self, Conn, Limits, Phase, Why};
use xenpv_rt::net::smoltcp;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::now_ms;
use super::serve::{HttpConn, Service};
use super::stats::Stats;

/// Each port's base sockets per vif: created listening at start and kept for good,
/// with the large buffers below. Beyond them a port's pool grows on demand (see
/// `xenpv_appliance::admission`: `tcp_listen=` kept listening, up to `tcp_max=`) with
/// the small `EXTRA_*` buffers, and shrinks back as those connections close.
pub(super) const ECHO_CONNS: usize = 10;
pub(super) const DISCARD_CONNS: usize = 4;
pub(super) const HTTP_CONNS: usize = 10;
/// The ports served over TCP, in the order of the per-port counters.
pub(super) const PORTS: [u16; 3] = [7, 9, 80];
/// Socket buffers for the direction a service streams in (smoltcp scales the window;
/// under emulation a round trip is milliseconds, and throughput is window / RTT: with
/// GSO dom0 acknowledges about every 128 KiB, so a sender needs several times that
/// unacknowledged), for echo's two directions, and for the other direction.
pub(super) const TCP_STREAM_BUF: usize = 1024 * 1024;
pub(super) const TCP_ECHO_BUF: usize = 256 * 1024;
pub(super) const TCP_SMALL_BUF: usize = 4 * 1024;
/// The buffers of the sockets a pool adds beyond its base set: 128 extra echo sockets
/// take 4 MiB, 128 extra HTTP ones 8.5 MiB (rather than 64 and 130 MiB at full size).
pub(super) const EXTRA_ECHO_BUF: usize = 16 * 1024;
pub(super) const EXTRA_STREAM_BUF: usize = 64 * 1024;

/// A TCP socket of the pools and its connection.
pub(super) struct Slot {
    pub(super) h: SocketHandle,
    pub(super) port: u16,
    pub(super) svc: Service,
    /// One of the port's base sockets (kept for good), or one the pool added (retired
    /// when it closes while enough others listen).
    pub(super) base: bool,
    /// The connection it holds (`None`: listening, or closed and about to listen).
    pub(super) conn: Option<Conn>,
    /// The connection's remote IPv4 address (for `per_peer=`).
    pub(super) peer: [u8; 4],
    /// Reset by `admit`: listen again only after a round's egress has sent the reset.
    pub(super) hold: bool,
}

/// `n` zero bytes, or `None` if the heap cannot give them (a pool's growth is driven
/// by clients: it stops there rather than fail the allocation, which is fatal).
fn buffer(n: usize) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, 0);
    Some(v)
}

/// A TCP socket with `rx` and `tx` bytes of buffer, smoltcp's timeout and keep-alive
/// set from `l` (a peer that stops answering is aborted); `None` without the memory.
fn tcp_socket(rx: usize, tx: usize, l: &Limits) -> Option<tcp::Socket<'static>> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(buffer(rx)?),
        tcp::SocketBuffer::new(buffer(tx)?),
    );
    s.set_nagle_enabled(false);
    s.set_timeout(Some(Duration::from_millis(l.idle_ms)));
    s.set_keep_alive(Some(Duration::from_millis(l.keep_alive_ms())));
    Some(s)
}

/// Add a listening socket for `port` to the pool: a base one with the large buffers,
/// or an extra one with the small. `false` if the heap had no room for its buffers.
pub(super) fn add_socket(
    tcp: &mut Vec<Slot>,
    sockets: &mut SocketSet<'static>,
    port: u16,
    base: bool,
    l: &Limits,
) -> bool {
    let (rx, tx) = match (port, base) {
        (7, true) => (TCP_ECHO_BUF, TCP_ECHO_BUF),
        (7, false) => (EXTRA_ECHO_BUF, EXTRA_ECHO_BUF),
        (9, true) => (TCP_STREAM_BUF, TCP_SMALL_BUF),
        (9, false) => (EXTRA_STREAM_BUF, TCP_SMALL_BUF),
        (_, true) => (TCP_SMALL_BUF, TCP_STREAM_BUF),
        (_, false) => (TCP_SMALL_BUF, EXTRA_STREAM_BUF),
    };
    let Some(mut sock) = tcp_socket(rx, tx, l) else {
        return false;
    };
    let _ = sock.listen(port);
    let h = sockets.add(sock);
    let svc = match port {
        7 => Service::Echo,
        9 => Service::Discard,
        _ => Service::Http(Box::default()),
    };
    tcp.push(Slot {
        h,
        port,
        svc,
        base,
        conn: None,
        peer: [0; 4],
        hold: false,
    });
    true
}

pub(super) fn port_index(port: u16) -> usize {
    PORTS.iter().position(|&p| p == port).unwrap_or(0)
}

/// Take the connections that listeners became since the last call (resetting those
/// over their peer's limit), and top each port's listeners up. Called between received
/// frames, so that a burst of SYNs finds a listener for each while the pool has room
/// (smoltcp answers a SYN no socket listens for with a reset).
pub(super) fn admit(
    tcp: &mut Vec<Slot>,
    sockets: &mut SocketSet<'static>,
    l: &Limits,
    st: &mut Stats,
) {
    let now = now_ms();
    let mut listening = [0usize; PORTS.len()];
    let mut total = [0usize; PORTS.len()];
    for i in 0..tcp.len() {
        let k = port_index(tcp[i].port);
        total[k] += 1;
        if tcp[i].conn.is_some() {
            continue;
        }
        let s = sockets.get_mut::<tcp::Socket<'_>>(tcp[i].h);
        if s.is_listening() {
            listening[k] += 1;
            continue;
        }
        if !s.is_open() {
            continue; // closed: it listens again after the services' pass
        }
        let peer = match s.remote_endpoint() {
            Some(IpEndpoint {
                addr: IpAddress::Ipv4(a),
                ..
            }) => a.octets(),
            _ => [0; 4],
        };
        st.tcp_conns += 1;
        let port = tcp[i].port;
        let held = tcp
            .iter()
            .filter(|o| o.conn.is_some() && o.peer == peer && o.port == port)
            .count();
        if !admission::admit(l, held) {
            s.abort();
            tcp[i].hold = true;
            st.refused_peer += 1;
            continue;
        }
        tcp[i].peer = peer;
        tcp[i].conn = Some(Conn::new(now, Phase::Handshake));
    }
    for (k, &port) in PORTS.iter().enumerate() {
        let n = admission::to_add(l, listening[k], total[k]);
        if n == 0 && listening[k] < l.listen {
            st.pool_full += 1;
        }
        let mut added = 0;
        for _ in 0..n {
            if !add_socket(tcp, sockets, port, false, l) {
                st.no_memory += 1;
                break;
            }
            added += 1;
        }
        st.pool_peak = st.pool_peak.max(total[k] + added);
    }
}

/// Retire closed extra sockets while enough others listen on their port (their
/// buffers go back to the heap).
pub(super) fn retire(tcp: &mut Vec<Slot>, sockets: &mut SocketSet<'static>, l: &Limits) {
    let mut listening = [0usize; PORTS.len()];
    for slot in tcp.iter() {
        if slot.conn.is_none() && sockets.get::<tcp::Socket<'_>>(slot.h).is_listening() {
            listening[port_index(slot.port)] += 1;
        }
    }
    tcp.retain(|slot| {
        let k = port_index(slot.port);
        let idle = slot.conn.is_none() && sockets.get::<tcp::Socket<'_>>(slot.h).is_listening();
        // Keep one listener fewer than counted: this one goes.
        if !slot.base && idle && admission::retire(l, listening[k] - 1) {
            listening[k] -= 1;
            sockets.remove(slot.h);
            false
        } else {
            true
        }
    });
}

/// A slot's round before its service: a closed socket listens again (or waits, after a
/// reset `admit` sent, for the round's egress), the connection's phase follows its
/// socket, and a connection past its deadline is reset and counted. Serve it?
pub(super) fn track(
    slot: &mut Slot,
    s: &mut tcp::Socket<'_>,
    l: &Limits,
    now: u64,
    st: &mut Stats,
) -> bool {
    if !s.is_open() {
        if core::mem::take(&mut slot.hold) {
            return false;
        }
        if let Service::Http(c) = &mut slot.svc {
            **c = HttpConn::default();
        }
        slot.conn = None;
        // Listens again, or is retired after the services' pass (`retire`).
        let _ = s.listen(slot.port);
        return false;
    }
    let Some(conn) = slot.conn.as_mut() else {
        return false; // listening
    };
    match s.state() {
        // A reset in SYN-RECEIVED puts smoltcp's socket back to listening.
        tcp::State::Listen => {
            slot.conn = None;
            return false;
        }
        tcp::State::SynReceived => {}
        tcp::State::Established | tcp::State::CloseWait => {
            if conn.phase() == Phase::Handshake {
                let next = match slot.svc {
                    Service::Http(_) => Phase::Head,
                    _ => Phase::Serving,
                };
                conn.set_phase(now, next);
            }
        }
        _ => conn.set_phase(now, Phase::Closing),
    }
    if let Some(why) = conn.check(l, now) {
        match why {
            Why::Handshake => st.timed_out_handshake += 1,
            Why::Head => st.timed_out_head += 1,
            Why::Idle => st.timed_out_idle += 1,
            Why::Closing => st.timed_out_closing += 1,
        }
        // A reset: the client learns at once, and the socket is free now.
        s.abort();
        return false;
    }
    true
}
