//! The network appliance (command-line word `net`): on every vif, UDP and TCP echo on
//! port 7 (RFC 862), TCP discard on port 9 (RFC 863) and a minimal HTTP/1.1 server on
//! port 80 (`xenpv_appliance::http`), over smoltcp and netfront. Addresses from `ip=`
//! (one entry per vif: `A.B.C.D/P` or `dhcp`), vifs from `vifs=N`.
//!
//! It serves until the toolstack asks it to stop (`xl shutdown`: `control/shutdown`),
//! then prints its counters and exits 0. A backend that closes (`xl network-detach`) is
//! noticed through a xenstore watch: the vif is closed and its grants ended; when a
//! backend appears again (`xl network-attach`) the vif reconnects and serves again.
//!
//! No client holds the loop or takes a service down: each round's work per vif is
//! bounded (`xenpv_appliance::round`, `ROUND_WORK`, `ROUND_BYTES`), every TCP connection
//! has deadlines and each port a growing pool of listeners with a per-peer limit
//! (`xenpv_appliance::admission`, words `tcp_idle=` `head_timeout=` `syn_timeout=`
//! `per_peer=` `tcp_listen=` `tcp_max=`), and IPv4 fragments are reassembled in bounded
//! memory (`xenpv_appliance::frag`). The counters printed at the end say what each did.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use xenpv_appliance::admission::{self, Conn, Limits, Phase, Why};
use xenpv_appliance::config::{parse_ips, Ip, MAX_VIFS};
use xenpv_appliance::frag::{self, Ledger, REASSEMBLY_TIMEOUT_MS};
use xenpv_appliance::http::{self, Body, FileSum, Opened, Parse, Route, ROUND_BYTES};
use xenpv_appliance::round;
use xenpv_rt::blk::ext4::ext4_view::{Ext4, File};
use xenpv_rt::blk::ext4::read_exact_at;
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::net::netfront::{
    CloseStep, ClosingNetfront, ConnectStep, Netfront, PendingNetfront, CONNECT_NS,
};
use xenpv_rt::net::phy::now;
use xenpv_rt::net::phy::poll_delay_ns;
use xenpv_rt::net::smoltcp;
use xenpv_rt::time::now_ns;
use xenpv_rt::xenbus::State;
use xenpv_rt::xenstore::{Xenstore, XsError};
use xenpv_rt::{evtchn, println, Boot, PageLink};

use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr,
};

/// Each port's base sockets per vif: created listening at start and kept for good,
/// with the large buffers below. Beyond them a port's pool grows on demand (see
/// `xenpv_appliance::admission`: `tcp_listen=` kept listening, up to `tcp_max=`) with
/// the small `EXTRA_*` buffers, and shrinks back as those connections close.
const ECHO_CONNS: usize = 10;
const DISCARD_CONNS: usize = 4;
const HTTP_CONNS: usize = 10;
/// The ports served over TCP, in the order of the per-port counters.
const PORTS: [u16; 3] = [7, 9, 80];
/// Socket buffers for the direction a service streams in (smoltcp scales the window;
/// under emulation a round trip is milliseconds, and throughput is window / RTT: with
/// GSO dom0 acknowledges about every 128 KiB, so a sender needs several times that
/// unacknowledged), for echo's two directions, and for the other direction.
const TCP_STREAM_BUF: usize = 1024 * 1024;
const TCP_ECHO_BUF: usize = 256 * 1024;
const TCP_SMALL_BUF: usize = 4 * 1024;
/// The buffers of the sockets a pool adds beyond its base set: 128 extra echo sockets
/// take 4 MiB, 128 extra HTTP ones 8.5 MiB (rather than 64 and 130 MiB at full size).
const EXTRA_ECHO_BUF: usize = 16 * 1024;
const EXTRA_STREAM_BUF: usize = 64 * 1024;
/// Bounded work per round of the loop, per vif (each about 1-10 ms of guest time
/// natively, a few times more under emulation), so that no client holds the loop:
/// - at most 64 received frames, or 10 ms of ingress, whichever comes first
///   (`xenpv_appliance::round`; the rest wait in the ring for the next round, which
///   comes at once);
/// - at most `ROUND_WORK` bytes of payload moved (echo copies, bodies filled, datagrams
///   echoed) and `ROUND_BYTES` (256 KiB) of file read from the disk (file checksums and
///   file bodies), the connections served round-robin from a rotating start;
/// - at most `EGRESS_CALLS` calls of smoltcp's egress.
const ROUND_WORK: u64 = 4 * 1024 * 1024;
const EGRESS_CALLS: usize = 256;
/// UDP: the largest datagram (65,535 - 20 - 8), the largest sent without fragments
/// (MTU 1500 - 20 - 8), and the socket's buffers (eight of the largest each way).
const UDP_MAX: usize = 65_507;
const UDP_UNFRAGMENTED: usize = 1472;
const UDP_BUF: usize = 8 * 65_536;
const UDP_PACKETS: usize = 256;
/// Longest wait between polls (backend and shutdown checks ride on xenstore's port).
const MAX_WAIT_NS: u64 = 100_000_000;
/// Longest time between two reads of xenstore's watch events.
const XS_CHECK_NS: u64 = 50_000_000;
/// How often a detached vif looks for a backend again.
const REATTACH_EVERY_NS: u64 = 500_000_000;

/// What the appliance counts (printed at the end, and on request).
#[derive(Default, Clone, Copy)]
struct Stats {
    udp_echoed: u64,
    udp_dropped: u64,
    tcp_echoed: u64,
    discarded: u64,
    http_requests: u64,
    http_bytes: u64,
    detached: u64,
    reattached: u64,
    file_errors: u64,
    /// TCP connections taken (past the handshake's first step), and the most sockets a
    /// port's pool held.
    tcp_conns: u64,
    pool_peak: usize,
    /// Times a pool wanted a listener more but was at `tcp_max=`, or the heap had no
    /// room for one's buffers.
    pool_full: u64,
    no_memory: u64,
    /// Connections reset for their peer's limit (`per_peer=`).
    refused_peer: u64,
    /// Connections given up: too long in SYN-RECEIVED, no whole head in time, idle,
    /// closed but not gone.
    timed_out_handshake: u64,
    timed_out_head: u64,
    timed_out_idle: u64,
    timed_out_closing: u64,
    /// Rounds whose ingress budget ran out (frames left in the ring for the next).
    ingress_cut: u64,
    /// Rounds in which a datagram to echo in fragments waited for the fragmenter.
    udp_deferred: u64,
    /// Rounds in which a file checksum took a step, and `/bytes/N` over the limit.
    checksum_steps: u64,
    too_large: u64,
    /// Time spent waiting for an event or a timer, and how many waits.
    idle_ns: u64,
    waits: u64,
}

enum Service {
    Echo,
    Discard,
    Http(Box<HttpConn>),
}

/// One HTTP connection's progress.
#[derive(Default)]
struct HttpConn {
    head: Vec<u8>,
    /// A file's checksum being taken, a step a round, before its head can go out.
    sum: Option<FileSum>,
    /// The response being sent: its head's unsent bytes and the body's offset.
    out: Option<(http::Head, usize, Body, u64)>,
    /// The file a `GET /files/…` body is read from.
    file: Option<File>,
}

/// One vif: its device (when connected), interface and sockets.
struct Vif {
    index: u32,
    nic: Option<Box<Netfront>>,
    /// Boxed: it holds smoltcp's 64 KiB fragmentation buffer.
    iface: Box<Interface>,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    /// A datagram being echoed (the largest fits).
    udp_buf: Box<[u8]>,
    /// Did the last round's egress end with smoltcp's fragmenter idle? (It holds one
    /// datagram: a second sent before the first's fragments are all out overwrites it.)
    frag_idle: bool,
    tcp: Vec<Slot>,
    /// Where this round's service starts (round-robin under the work budget).
    rr: usize,
    /// Frames were left in the ring when the ingress budget ran out, or a budget of the
    /// services ran out, or a checksum is being taken: poll again at once (the round
    /// ended to let the rest of the loop in, not because the work was done).
    more_rx: bool,
    limits: Limits,
    /// IPv4 fragments received, and what became of them (smoltcp counts none).
    frags: Ledger,
    dhcp: Option<SocketHandle>,
    /// A DHCP address to publish in xenstore (`data/xenpv-app/vif<N>-ip`) for dom0.
    announce: Option<heapless::String<24>>,
    next_probe: u64,
    /// The filesystem `GET /files/…` serves (word `files`), shared by every vif.
    files: Option<Ext4>,
}

/// A TCP socket of the pools and its connection.
struct Slot {
    h: SocketHandle,
    port: u16,
    svc: Service,
    /// One of the port's base sockets (kept for good), or one the pool added (retired
    /// when it closes while enough others listen).
    base: bool,
    /// The connection it holds (`None`: listening, or closed and about to listen).
    conn: Option<Conn>,
    /// The connection's remote IPv4 address (for `per_peer=`).
    peer: [u8; 4],
    /// Reset by `admit`: listen again only after a round's egress has sent the reset.
    hold: bool,
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
fn add_socket(
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

fn port_index(port: u16) -> usize {
    PORTS.iter().position(|&p| p == port).unwrap_or(0)
}

/// Milliseconds of Xen system time (the connections' clock).
fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Take the connections that listeners became since the last call (resetting those
/// over their peer's limit), and top each port's listeners up. Called between received
/// frames, so that a burst of SYNs finds a listener for each while the pool has room
/// (smoltcp answers a SYN no socket listens for with a reset).
fn admit(tcp: &mut Vec<Slot>, sockets: &mut SocketSet<'static>, l: &Limits, st: &mut Stats) {
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

/// The vif's device as smoltcp's ingress sees it: netfront, every IPv4 fragment
/// received noted in the ledger.
struct Counted<'a> {
    nic: &'a mut Netfront,
    frags: &'a mut Ledger,
}

/// A received frame, noted in the ledger when smoltcp takes it.
struct CountedRx<'a, T> {
    rx: T,
    frags: &'a mut Ledger,
}

impl<T: smoltcp::phy::RxToken> smoltcp::phy::RxToken for CountedRx<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let frags = self.frags;
        self.rx.consume(|frame| {
            if let Some(fr) = frag::fragment(frame) {
                frags.see(fr, now_ms());
            }
            f(frame)
        })
    }

    fn meta(&self) -> smoltcp::phy::PacketMeta {
        self.rx.meta()
    }
}

impl smoltcp::phy::Device for Counted<'_> {
    type RxToken<'b>
        = CountedRx<'b, <Netfront as smoltcp::phy::Device>::RxToken<'b>>
    where
        Self: 'b;
    type TxToken<'b>
        = <Netfront as smoltcp::phy::Device>::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, t: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.nic.receive(t)?;
        Some((
            CountedRx {
                rx,
                frags: self.frags,
            },
            tx,
        ))
    }

    fn transmit(&mut self, t: Instant) -> Option<Self::TxToken<'_>> {
        self.nic.transmit(t)
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        self.nic.capabilities()
    }
}

impl Vif {
    fn new(nic: Box<Netfront>, ip: Ip, limits: Limits) -> Vif {
        let mut nic = nic;
        let mac = EthernetAddress(nic.mac());
        let mut iface = Box::new(Interface::new(
            Config::new(HardwareAddress::Ethernet(mac)),
            &mut *nic,
            now(),
        ));
        iface.set_reassembly_timeout(Duration::from_millis(REASSEMBLY_TIMEOUT_MS));
        let mut sockets = SocketSet::new(vec![]);
        let mut dhcp = None;
        match ip {
            Ip::Static { addr, prefix } => iface.update_ip_addrs(|a| {
                let [x, y, z, w] = addr;
                let _ = a.push(IpCidr::new(IpAddress::v4(x, y, z, w), prefix));
            }),
            Ip::Dhcp => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
        }
        let udp_buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUF],
            )
        };
        let udp = sockets.add(udp::Socket::new(udp_buffer(), udp_buffer()));
        let _ = sockets.get_mut::<udp::Socket<'_>>(udp).bind(7);
        let mut tcp = Vec::new();
        for (port, n) in [(7u16, ECHO_CONNS), (9, DISCARD_CONNS), (80, HTTP_CONNS)] {
            for _ in 0..n {
                if !add_socket(&mut tcp, &mut sockets, port, true, &limits) {
                    println!("net: no memory for tcp/{port}'s sockets");
                    break;
                }
            }
        }
        Vif {
            index: nic.index(),
            nic: Some(nic),
            iface,
            sockets,
            udp,
            udp_buf: vec![0; UDP_MAX].into_boxed_slice(),
            frag_idle: true,
            tcp,
            rr: 0,
            more_rx: false,
            limits,
            frags: Ledger::new(),
            dhcp,
            announce: None,
            next_probe: 0,
            files: None,
        }
    }

    /// One round, its work bounded (see `ROUND_WORK`): the device,
    /// ingress a frame at a time (new connections admitted between frames), every
    /// service and deadline, egress.
    fn poll(&mut self, st: &mut Stats) {
        let Some(nic) = self.nic.as_deref_mut() else {
            return;
        };
        nic.poll();
        self.iface.poll_maintenance(now());
        self.more_rx = false;
        {
            let mut dev = Counted {
                nic: &mut *nic,
                frags: &mut self.frags,
            };
            // New connections are admitted before each frame, so that a burst of SYNs
            // finds listeners.
            let r = round::ingress(&round::INGRESS, now_ns, || {
                admit(&mut self.tcp, &mut self.sockets, &self.limits, st);
                self.iface
                    .poll_ingress_single(now(), &mut dev, &mut self.sockets)
                    != PollIngressSingleResult::None
            });
            admit(&mut self.tcp, &mut self.sockets, &self.limits, st);
            if r.cut {
                self.more_rx = true;
                st.ingress_cut += 1;
            }
        }
        self.frags.expire(now_ms());
        if let Some(h) = self.dhcp {
            if let Some(ev) = self.sockets.get_mut::<dhcpv4::Socket<'_>>(h).poll() {
                self.announce = dhcp_event(self.index, &mut self.iface, ev);
            }
        }
        let mut work = ROUND_WORK;
        let mut disk = ROUND_BYTES;
        serve_udp(
            self.sockets.get_mut::<udp::Socket<'_>>(self.udp),
            &mut self.udp_buf,
            self.frag_idle,
            &mut work,
            st,
        );
        let now = now_ms();
        let l = self.limits;
        let n = self.tcp.len();
        self.rr = self.rr.wrapping_add(1);
        for j in 0..n {
            let slot = &mut self.tcp[(self.rr + j) % n];
            let s = self.sockets.get_mut::<tcp::Socket<'_>>(slot.h);
            if !s.is_open() {
                if core::mem::take(&mut slot.hold) {
                    continue;
                }
                if let Service::Http(c) = &mut slot.svc {
                    **c = HttpConn::default();
                }
                slot.conn = None;
                // Listens again, or is retired below.
                let _ = s.listen(slot.port);
                continue;
            }
            let Some(conn) = slot.conn.as_mut() else {
                continue; // listening
            };
            match s.state() {
                // A reset in SYN-RECEIVED puts smoltcp's socket back to listening.
                tcp::State::Listen => {
                    slot.conn = None;
                    continue;
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
            if let Some(why) = conn.check(&l, now) {
                match why {
                    Why::Handshake => st.timed_out_handshake += 1,
                    Why::Head => st.timed_out_head += 1,
                    Why::Idle => st.timed_out_idle += 1,
                    Why::Closing => st.timed_out_closing += 1,
                }
                // A reset: the client learns at once, and the socket is free now.
                s.abort();
                continue;
            }
            let moved = match (&mut slot.svc, conn.phase()) {
                (_, Phase::Handshake | Phase::Closing) => false,
                (Service::Echo, _) => serve_echo(s, &mut work, st),
                (Service::Discard, _) => serve_discard(s, &mut work, st),
                (Service::Http(c), _) => {
                    let r = serve_http(s, c, &mut work, &mut disk, st, self.files.as_ref());
                    if c.out.is_some() || c.sum.is_some() {
                        conn.set_phase(now, Phase::Serving);
                    }
                    r
                }
            };
            if moved {
                conn.progress(now);
            }
        }
        let summing = self
            .tcp
            .iter()
            .any(|t| matches!(&t.svc, Service::Http(c) if c.sum.is_some()));
        self.more_rx |= work == 0 || disk == 0 || summing;
        retire(&mut self.tcp, &mut self.sockets, &self.limits);
        // Send what the services queued now rather than at the next wake-up.
        self.frag_idle = egress(&mut self.iface, nic, &mut self.sockets);
    }

    fn delay_ns(&mut self) -> u64 {
        if self.more_rx {
            return 0;
        }
        let Some(nic) = self.nic.as_deref_mut() else {
            return MAX_WAIT_NS;
        };
        let d = poll_delay_ns(&mut self.iface, &self.sockets, nic, MAX_WAIT_NS);
        // The next connection deadline, so that timeouts are on time when all is quiet.
        let now = now_ms();
        let l = self.limits;
        let next = self
            .tcp
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .map(|c| c.deadline(&l).saturating_sub(now))
            .min()
            .map_or(u64::MAX, |ms| ms.saturating_mul(1_000_000));
        d.min(next)
    }
}

/// Retire closed extra sockets while enough others listen on their port (their
/// buffers go back to the heap).
fn retire(tcp: &mut Vec<Slot>, sockets: &mut SocketSet<'static>, l: &Limits) {
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

/// smoltcp's egress, at most `EGRESS_CALLS` calls: until nothing is left to send now
/// (then `true`: its fragmenter is idle) or the TX buffers are all in flight. One call
/// sends at most one fragment of a fragmented datagram (a 65,507-byte datagram is 45).
fn egress(iface: &mut Interface, nic: &mut Netfront, sockets: &mut SocketSet<'_>) -> bool {
    for _ in 0..EGRESS_CALLS {
        let sent = iface.poll_egress(now(), nic, sockets) == PollResult::SocketStateChanged;
        if nic.tx_full() {
            return false;
        }
        // A zero delay with nothing sent by a socket: the fragmenter's next fragment (or
        // a socket that wants to send now), so go on.
        let now_ = now();
        let due = iface.poll_at(now_, sockets).is_some_and(|t| t <= now_);
        if !sent && !due {
            return true;
        }
    }
    false
}

/// Apply a DHCP event; the address to publish (empty: none any more).
fn dhcp_event(
    index: u32,
    iface: &mut Interface,
    ev: dhcpv4::Event<'_>,
) -> Option<heapless::String<24>> {
    use core::fmt::Write as _;
    match ev {
        dhcpv4::Event::Configured(c) => {
            iface.update_ip_addrs(|a| {
                a.clear();
                let _ = a.push(IpCidr::Ipv4(c.address));
            });
            if let Some(r) = c.router {
                let _ = iface.routes_mut().add_default_ipv4_route(r);
            }
            println!("net: vif{index} dhcp address={}", c.address);
            let mut a = heapless::String::new();
            let _ = write!(a, "{}", c.address.address());
            Some(a)
        }
        dhcpv4::Event::Deconfigured => {
            // Also the client's first event, before any lease: say so only if one is lost.
            let had = !iface.ip_addrs().is_empty();
            iface.update_ip_addrs(|a| a.clear());
            if had {
                println!("net: vif{index} dhcp lease lost");
                Some(heapless::String::new())
            } else {
                None
            }
        }
    }
}

/// Echo datagrams, up to `work` bytes. One that goes out in fragments waits while
/// smoltcp's fragmenter may still hold the last one (`frag_idle`), and goes alone in its
/// round; it stays in the socket meanwhile (order kept).
fn serve_udp(
    s: &mut udp::Socket<'_>,
    buf: &mut [u8],
    frag_idle: bool,
    work: &mut u64,
    st: &mut Stats,
) {
    let mut big_sent = false;
    while s.can_recv() && *work > 0 {
        let Ok((d, _)) = s.peek() else {
            break;
        };
        if d.len() > UDP_UNFRAGMENTED && (!frag_idle || big_sent) {
            st.udp_deferred += 1;
            break;
        }
        let Ok((n, meta)) = s.recv_slice(buf) else {
            break;
        };
        *work = work.saturating_sub(n as u64);
        big_sent |= n > UDP_UNFRAGMENTED;
        match s.send_slice(&buf[..n], meta.endpoint) {
            Ok(()) => st.udp_echoed += 1,
            // The send buffer is full: the datagram is dropped (UDP), and counted.
            Err(_) => st.udp_dropped += 1,
        }
    }
}

/// Echo what arrived, up to `work` bytes; did any move?
fn serve_echo(s: &mut tcp::Socket<'_>, work: &mut u64, st: &mut Stats) -> bool {
    let mut buf = [0u8; 4096];
    let mut moved = false;
    while s.can_recv() && s.can_send() && *work > 0 {
        let room = s.send_capacity() - s.send_queue();
        let want = room.min(buf.len());
        if want == 0 {
            break;
        }
        let Ok(n) = s.recv_slice(&mut buf[..want]) else {
            break;
        };
        if n == 0 {
            break;
        }
        // Cannot be short: `room` bytes were free.
        let _ = s.send_slice(&buf[..n]);
        st.tcp_echoed += n as u64;
        *work = work.saturating_sub(n as u64);
        moved = true;
    }
    if !s.may_recv() && s.recv_queue() == 0 && s.send_queue() == 0 {
        s.close();
    }
    moved
}

/// Discard what arrived, up to `work` bytes; did any?
fn serve_discard(s: &mut tcp::Socket<'_>, work: &mut u64, st: &mut Stats) -> bool {
    let mut moved = false;
    while s.can_recv() && *work > 0 {
        let max = usize::try_from(*work).unwrap_or(usize::MAX);
        match s.recv(|b| {
            let n = b.len().min(max);
            (n, n)
        }) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                st.discarded += n as u64;
                *work = work.saturating_sub(n as u64);
                moved = true;
            }
        }
    }
    if !s.may_recv() {
        s.close();
    }
    moved
}

/// Serve one HTTP connection a round's step: read its head, take a file's checksum a
/// step (`disk` bytes left this round), send (`work` bytes left). Did anything move?
fn serve_http(
    s: &mut tcp::Socket<'_>,
    c: &mut HttpConn,
    work: &mut u64,
    disk: &mut u64,
    st: &mut Stats,
    files: Option<&Ext4>,
) -> bool {
    let mut moved = false;
    if c.out.is_none() && c.sum.is_none() {
        while s.can_recv() && c.head.len() < http::HEAD_MAX {
            let room = http::HEAD_MAX - c.head.len();
            let _ = s.recv(|b| {
                let n = b.len().min(room);
                c.head.extend_from_slice(&b[..n]);
                moved |= n > 0;
                (n, ())
            });
        }
        match http::parse(&c.head) {
            Parse::Incomplete => {
                if !s.may_recv() {
                    s.close();
                }
                return moved;
            }
            Parse::Done {
                route: Route::File(path),
                ..
            } => {
                st.http_requests += 1;
                match open_file(files, path.absolute(), st) {
                    Ok((f, len)) => {
                        c.file = Some(f);
                        c.sum = Some(FileSum::new(len));
                    }
                    Err(opened) => {
                        let r = http::respond_file(opened);
                        c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
                    }
                }
            }
            Parse::Done { route, .. } => {
                let r = http::respond(route);
                st.http_requests += 1;
                st.too_large += u64::from(route == Route::TooLarge);
                c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
            }
        }
    }
    if let (Some(sum), Some(f)) = (c.sum.as_mut(), c.file.as_mut()) {
        if *disk == 0 {
            return moved;
        }
        // A step of the file's checksum; the head waits for the last.
        let before = sum.hashed();
        let r = sum.step(*disk, |off, out| read_exact_at(f, off, out));
        st.checksum_steps += 1;
        *disk = disk.saturating_sub(sum.hashed() - before);
        let opened = match r {
            Ok(None) => return true,
            Ok(Some(checksum)) => Opened::File {
                len: f.metadata().len(),
                checksum,
            },
            Err(e) => {
                println!("net: files: reading for the checksum: {e}");
                st.file_errors += 1;
                c.file = None;
                Opened::Failed
            }
        };
        c.sum = None;
        let r = http::respond_file(opened);
        c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
        moved = true;
    }
    let Some((head, sent, body, at)) = c.out.as_mut() else {
        return moved;
    };
    while s.can_send() && *work > 0 {
        if *sent < head.len() {
            match s.send_slice(&head.as_bytes()[*sent..]) {
                Ok(n) if n > 0 => {
                    *sent += n;
                    moved = true;
                }
                _ => return moved,
            }
            continue;
        }
        if *at >= body.len() {
            break;
        }
        let body = *body;
        let file = &mut c.file;
        let is_file = matches!(body, Body::File { .. });
        if is_file && *disk == 0 {
            return moved;
        }
        let max = usize::try_from((*work).min(if is_file { *disk } else { u64::MAX }))
            .unwrap_or(usize::MAX);
        let r = s.send(|buf| {
            let buf_len = buf.len().min(max);
            let n = body.fill_with(*at, &mut buf[..buf_len], |off, out| match file.as_mut() {
                Some(f) => read_exact_at(f, off, out).map_err(|_| ()),
                None => Err(()),
            });
            match n {
                Ok(n) => (n, Ok(n)),
                Err(()) => (0, Err(())),
            }
        });
        match r {
            Ok(Ok(n)) if n > 0 => {
                *at += n as u64;
                st.http_bytes += n as u64;
                *work = work.saturating_sub(n as u64);
                if is_file {
                    *disk = disk.saturating_sub(n as u64);
                }
                moved = true;
            }
            Ok(Err(())) => {
                // The disk failed mid-body: the length is promised, so the connection
                // is cut short, and counted.
                st.file_errors += 1;
                s.abort();
                return moved;
            }
            _ => return moved,
        }
    }
    if *sent == head.len() && *at >= body.len() {
        // Connection: close. The rest of the request (if any) is not read.
        s.close();
    }
    moved
}

/// Open `path` for `GET /files/…`: a regular file and its length (its checksum is
/// taken a step a round afterwards, `FileSum`), or why not.
fn open_file(files: Option<&Ext4>, path: &str, st: &mut Stats) -> Result<(File, u64), Opened> {
    use xenpv_rt::blk::ext4::ext4_view::Ext4Error;
    let Some(fs) = files else {
        return Err(Opened::NotFound);
    };
    match xenpv_rt::blk::ext4::open(fs, path) {
        Ok(f) => {
            let len = f.metadata().len();
            Ok((f, len))
        }
        Err(Ext4Error::NotFound | Ext4Error::IsADirectory | Ext4Error::NotADirectory) => {
            Err(Opened::NotFound)
        }
        Err(Ext4Error::IsASpecialFile) => Err(Opened::NotFound),
        Err(e) => {
            println!("net: files: open {path}: {e}");
            st.file_errors += 1;
            Err(Opened::Failed)
        }
    }
}

/// The admission limits from the command line (`tcp_idle=` …, see
/// `xenpv_appliance::admission`), or the word that is wrong, printed.
fn limits(cmd: &xenpv_rt::Cmdline<'_>) -> Option<Limits> {
    let mut l = Limits::DEFAULT;
    for w in Limits::WORDS {
        match cmd.u64(w) {
            Ok(None) => {}
            Ok(Some(v)) => {
                if let Err(e) = l.set(w, v) {
                    println!("net: {e}");
                    return None;
                }
            }
            Err(e) => {
                println!("net: {e}");
                return None;
            }
        }
    }
    Some(l)
}

/// The appliance. Its exit status: 0 after an orderly shutdown, 2 for a bad word, 9 if
/// a vif never came up.
pub fn run(boot: &mut Boot) -> i32 {
    let cmd = boot.cmdline();
    let vifs = match cmd.u64("vifs") {
        Ok(None) => 1,
        Ok(Some(n)) if (1..=MAX_VIFS as u64).contains(&n) => n as usize,
        Ok(Some(n)) => {
            println!("net: vifs={n}: the appliance brings up 1..={MAX_VIFS} vifs");
            return 2;
        }
        Err(e) => {
            println!("net: {e}");
            return 2;
        }
    };
    let ips = match parse_ips(cmd.value("ip").unwrap_or("dhcp")) {
        Ok(v) => v,
        Err(e) => {
            println!("net: {e}");
            return 2;
        }
    };
    if ips.len() < vifs {
        println!(
            "net: vifs={vifs} but ip= has {} entries (one per vif)",
            ips.len()
        );
        return 2;
    }
    let Some(limits) = limits(&cmd) else {
        return 2;
    };
    let cmd_files = cmd.has("files");
    if boot.xenstore().is_none() {
        println!("net: no xenstore (dom0 has no backends here): run it as a domU");
        return 2;
    }
    let mut gt = match GrantTable::setup(boot.memory(), 8) {
        Ok(g) => g,
        Err(e) => {
            println!("net: grant table: {e:?}");
            return 9;
        }
    };
    let (mem, xs) = boot.memory_and_xenstore();
    let Some(xs) = xs else { return 2 };
    if let Err(e) = xs.watch("control/shutdown", "shutdown") {
        println!("net: watching control/shutdown: {e}");
        return 9;
    }
    let mut list: Vec<Vif> = Vec::new();
    // Every vif's handshake at once, stepped in turn: one slow backend does not hold
    // the others up (and a stop request meanwhile is honoured).
    let mut nics = match connect_all(mem, &mut gt, xs, vifs) {
        Ok(nics) => nics,
        Err(status) => return status,
    };
    for (i, (nic, ms)) in nics.drain(..).enumerate() {
        let m = nic.mac();
        println!(
            "net: vif{i} connected in {} ms: mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} backend={} (domain {}) ip={} gso={}",
            ms,
            m[0], m[1], m[2], m[3], m[4], m[5],
            xenpv_rt::escape::Escaped(&nic.backend().path),
            nic.backend().domid,
            IpText(ips[i]),
            if nic.gso() { "on" } else { "off" },
        );
        list.push(Vif::new(nic, ips[i], limits));
    }
    let mut life: Vec<Life> = (0..vifs).map(|_| Life::Idle).collect();
    let mut st = Stats::default();
    if cmd_files {
        match open_files(mem, &mut gt, xs) {
            Ok(fs) => list.iter_mut().for_each(|v| v.files = Some(fs.clone())),
            // A disk that cannot be read costs GET /files/… only (404): serve the rest.
            Err(e) => {
                println!("net: files: {e} (serving without files)");
                st.file_errors += 1;
            }
        }
    }
    let _ = xs.write("data/xenpv-app/net", b"serving");
    println!("net: serving udp/7 tcp/7 tcp/9 tcp/80 on {vifs} vif(s)");
    println!(
        "net: limits tcp_idle={}s head_timeout={}s syn_timeout={}s per_peer={} tcp_listen={} tcp_max={} reassembly_timeout={}ms",
        limits.idle_ms / 1000,
        limits.head_ms / 1000,
        limits.syn_ms / 1000,
        limits.per_peer,
        limits.listen,
        limits.max,
        REASSEMBLY_TIMEOUT_MS
    );
    let xs_port = xs.link().port();
    let (mut xs_woke, mut xs_at) = (false, 0);
    // Events lost so far (seen), and a read of control/shutdown that failed.
    let (mut lost_epoch, mut recheck_shutdown) = (xs.lost_epoch(), false);
    loop {
        for v in list.iter_mut() {
            v.poll(&mut st);
        }
        for v in list.iter_mut() {
            if let Some(ip) = v.announce.take() {
                let mut key: heapless::String<32> = heapless::String::new();
                let _ = core::fmt::Write::write_fmt(
                    &mut key,
                    format_args!("data/xenpv-app/vif{}-ip", v.index),
                );
                let _ = xs.write(&key, ip.as_bytes());
            }
        }
        // Watch events: a stop request, a backend going away or coming back. Read when
        // xenstore's port fired (reading its ring every round costs as much as a round
        // of a busy vif), and every XS_CHECK_NS regardless.
        let mut check_backends = false;
        let t = now_ns();
        let xs_due = core::mem::take(&mut xs_woke) || evtchn::is_pending(xs_port) || t >= xs_at;
        if xs_due {
            xs_at = t + XS_CHECK_NS;
            retry_kept_grants(mem, &mut gt);
            let mut check_shutdown = core::mem::take(&mut recheck_shutdown);
            loop {
                match xs.next_event(now_ns()) {
                    Ok(Some(ev)) if ev.token.as_str() == "shutdown" => check_shutdown = true,
                    Ok(Some(_)) => check_backends = true,
                    Ok(None) => break,
                    Err(XsError::EventsLost) => {
                        println!("net: xenstore: watch events lost: reading control/shutdown and the backends again");
                        check_shutdown = true;
                        check_backends = true;
                    }
                    Err(e) => {
                        println!("net: xenstore: {e}");
                        break;
                    }
                }
            }
            // Belt and braces: a loss whose report the loop above broke off before
            // (another error came first) still makes us look again.
            if xs.lost_epoch() != lost_epoch {
                lost_epoch = xs.lost_epoch();
                check_shutdown = true;
                check_backends = true;
            }
            if check_shutdown {
                match shutdown_request(xs) {
                    Ok(Some(how)) => {
                        println!("net: shutdown requested ({how})");
                        return finish(&mut list, &mut life, mem, &mut gt, xs, &st);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        println!("net: reading control/shutdown: {e} (trying again)");
                        recheck_shutdown = true;
                    }
                }
            }
        }
        for (v, l) in list.iter_mut().zip(life.iter_mut()) {
            lifecycle(v, l, check_backends, mem, &mut gt, xs, &mut st);
        }

        let wait = list
            .iter_mut()
            .map(Vif::delay_ns)
            .min()
            .unwrap_or(MAX_WAIT_NS)
            .min(MAX_WAIT_NS)
            .min(life_delay_ns(&life));
        if wait > 0 {
            let mut ports: heapless::Vec<evtchn::Port, 8> = heapless::Vec::new();
            let _ = ports.push(xs_port);
            for v in &list {
                if let Some(n) = &v.nic {
                    let _ = ports.push(n.port());
                }
            }
            let t = now_ns();
            xs_woke = evtchn::wait(&ports, t + wait) == Ok(Some(xs_port));
            st.idle_ns += now_ns().saturating_sub(t);
            st.waits += 1;
        }
    }
}

/// The first disk (`device/vbd`), brought up with blkfront and read as ext2/3/4.
/// (Errors are written into a fixed string: `alloc::format!` pulls in unwinding code.)
// The error is one line of text for the console, made once at start.
#[allow(clippy::result_large_err)]
fn open_files(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
) -> Result<Ext4, heapless::String<200>> {
    use core::fmt::Write as _;
    use xenpv_rt::blk::blkfront::Blkfront;
    use xenpv_rt::blk::ext4::Ext4Disk;
    use xenpv_rt::blk::BlockDevice;
    let mut msg = heapless::String::new();
    let ids = match Blkfront::list(xs) {
        Ok(ids) => ids,
        Err(e) => {
            let _ = write!(msg, "listing device/vbd: {e}");
            return Err(msg);
        }
    };
    let Some(&id) = ids.first() else {
        let _ = write!(msg, "no disk (device/vbd is empty)");
        return Err(msg);
    };
    let t0 = now_ns();
    let disk = match Blkfront::connect(mem, gt, xs, id) {
        Ok(d) => d,
        Err(e) => {
            let _ = write!(msg, "vbd {id}: {e}");
            return Err(msg);
        }
    };
    let g = disk.geometry();
    let fs = match Ext4Disk(disk).load() {
        Ok(fs) => fs,
        Err(e) => {
            let _ = match xenpv_rt::blk::ext4::bad_superblock(&e) {
                Some(bad) => write!(msg, "vbd {id}: {bad}"),
                None => write!(msg, "vbd {id}: not an ext2/3/4 filesystem: {e}"),
            };
            return Err(msg);
        }
    };
    println!(
        "net: files from vbd {id} ({} sectors of {} bytes, ro={}) as ext4 in {} ms: GET /files/PATH",
        g.sectors,
        g.sector_size,
        g.read_only as u8,
        (now_ns() - t0) / 1_000_000
    );
    Ok(fs)
}

/// `control/shutdown`'s request, acknowledged (cleared) as Linux does; `None` if empty.
/// `control/shutdown`'s request, acknowledged (cleared) as Linux does; `None` if empty
/// or absent. An error is for the caller to try again: a request must not be lost.
fn shutdown_request(xs: &mut Xenstore<PageLink>) -> Result<Option<heapless::String<16>>, XsError> {
    let v = match xs.read("control/shutdown") {
        Ok(v) => v,
        Err(XsError::Xenstore(e)) if e == "ENOENT" => return Ok(None),
        Err(e) => return Err(e),
    };
    let v = v.strip_suffix(b"\0").unwrap_or(&v);
    if v.is_empty() {
        return Ok(None);
    }
    let _ = xs.write("control/shutdown", b"");
    let mut s = heapless::String::new();
    for &b in v.iter().take(16) {
        let _ = s.push(if b.is_ascii_graphic() { b as char } else { '?' });
    }
    Ok(Some(s))
}

/// Why a vif is being closed.
#[derive(Clone, Copy)]
enum CloseWhy {
    /// Its backend closed or vanished (`None`), or corrupted a ring.
    Detach(Option<State>),
    /// A re-attach failed: what it set up is taken down.
    FailedConnect,
}

/// A vif's device lifecycle, beside its serving state (`Vif::nic`). A connect or close
/// in progress is stepped when a backend's watch fired or its time came (a few xenstore
/// requests, never a wait for the backend), so a backend that never answers costs the
/// other vifs nothing.
enum Life {
    /// Connected (`Vif::nic` is set), or detached and looking for its backend again at
    /// `Vif::next_probe`.
    Idle,
    /// Re-attaching: stepped at the time given (or on a backend event); when it began.
    Connecting(Box<PendingNetfront>, u64, u64),
    /// Closing: stepped at the time given (or on a backend event); when it began, why.
    Closing(Box<ClosingNetfront>, u64, u64, CloseWhy),
}

/// Time until the first connect or close in progress is due for a step.
fn life_delay_ns(life: &[Life]) -> u64 {
    let t = now_ns();
    life.iter()
        .filter_map(|l| match l {
            Life::Idle => None,
            Life::Connecting(_, at, _) | Life::Closing(_, at, ..) => Some(at.saturating_sub(t)),
        })
        .min()
        .unwrap_or(u64::MAX)
}

/// Bring up vifs `0..n` together: each, and how long it took (ms). `Err(status)` to
/// exit with: 9 if one failed, 0 if the toolstack asked to stop meanwhile.
fn connect_all(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    n: usize,
) -> Result<Vec<(Box<Netfront>, u64)>, i32> {
    let t0 = now_ns();
    let mut pending: Vec<Option<(Box<PendingNetfront>, u64)>> = Vec::new();
    for i in 0..n {
        match Netfront::begin_connect(mem, gt, xs, i as u32) {
            Ok(p) => pending.push(Some((Box::new(p), 0))),
            Err(e) => {
                println!("net: vif{i}: {e}");
                return Err(9);
            }
        }
    }
    let mut nics: Vec<Option<(Box<Netfront>, u64)>> = (0..n).map(|_| None).collect();
    let mut seen = u64::MAX; // step everything at first
    while nics.iter().any(Option::is_none) {
        let mark = xs.events_arrived();
        let woke = mark != seen;
        seen = mark;
        let mut next = u64::MAX;
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some((p, wake_at)) = slot.take() else {
                continue;
            };
            if !woke && now_ns() < wake_at {
                next = next.min(wake_at);
                *slot = Some((p, wake_at));
                continue;
            }
            match p.step(xs) {
                ConnectStep::Pending(p, w) => {
                    next = next.min(w);
                    *slot = Some((Box::new(p), w));
                }
                ConnectStep::Connected(nic) => {
                    nics[i] = Some((Box::new(nic), (now_ns() - t0) / 1_000_000));
                }
                ConnectStep::Failed(e, closing) => {
                    println!("net: vif{i}: {e}");
                    closing.finish(mem, gt, xs);
                    return Err(9);
                }
            }
        }
        // A stop request while the vifs come up (or events lost: look anyway).
        let mut stop = false;
        loop {
            match xs.next_event(now_ns()) {
                Ok(Some(ev)) => stop |= ev.token.as_str() == "shutdown",
                Ok(None) => break,
                Err(XsError::EventsLost) => stop = true,
                Err(_) => break,
            }
        }
        if stop {
            if let Ok(Some(how)) = shutdown_request(xs) {
                println!("net: shutdown requested ({how}) while the vifs came up");
                for (nic, _) in nics.iter_mut().filter_map(Option::take) {
                    nic.close(mem, gt, xs);
                }
                for (p, _) in pending.iter_mut().filter_map(Option::take) {
                    p.abort().finish(mem, gt, xs);
                }
                return Err(0);
            }
        }
        if nics.iter().any(Option::is_none) && next != u64::MAX {
            let _ = xs.wait_event(mark, next);
        }
    }
    Ok(nics.into_iter().flatten().collect())
}

/// One round of a vif's lifecycle: notice a backend that closed, vanished or broke a
/// ring, step a close or a re-attach in progress, or look for the backend again.
fn lifecycle(
    v: &mut Vif,
    life: &mut Life,
    check_backends: bool,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    st: &mut Stats,
) {
    let t = now_ns();
    *life = match core::mem::replace(life, Life::Idle) {
        Life::Idle if v.nic.is_some() => {
            let broken = v.nic.as_ref().and_then(|n| n.broken());
            if let Some(e) = broken {
                println!(
                    "net: vif{} stopped: the backend corrupted a ring ({e})",
                    v.index
                );
            }
            if check_backends || broken.is_some() {
                check_backend(v, xs)
            } else {
                Life::Idle
            }
        }
        Life::Idle if t >= v.next_probe => {
            v.next_probe = t + REATTACH_EVERY_NS;
            reattach(v, mem, gt, xs)
        }
        Life::Connecting(p, wake_at, t0) if check_backends || t >= wake_at => match p.step(xs) {
            ConnectStep::Pending(p, w) => Life::Connecting(Box::new(p), w, t0),
            ConnectStep::Connected(nic) => {
                st.reattached += 1;
                println!(
                    "net: vif{} reattached in {} ms (backend {})",
                    v.index,
                    (now_ns() - t0) / 1_000_000,
                    xenpv_rt::escape::Escaped(&nic.backend().path)
                );
                v.nic = Some(Box::new(nic));
                Life::Idle
            }
            ConnectStep::Failed(e, closing) => {
                println!("net: vif{} reattach failed (retrying): {e}", v.index);
                v.next_probe = now_ns() + CONNECT_NS / 10;
                Life::Closing(Box::new(closing), 0, now_ns(), CloseWhy::FailedConnect)
            }
        },
        Life::Closing(c, wake_at, t0, why) if check_backends || t >= wake_at => {
            match c.step(mem, gt, xs) {
                CloseStep::Pending(c, w) => Life::Closing(Box::new(c), w, t0, why),
                CloseStep::Closed(closed) => {
                    if let CloseWhy::Detach(state) = why {
                        st.detached += 1;
                        println!(
                            "net: vif{} detached (backend {}): closed in {} ms, pages_kept={} unacknowledged={} grants_deferred={}",
                            v.index,
                            StateText(state.unwrap_or(State::Unknown)),
                            (now_ns() - t0) / 1_000_000,
                            closed.pages_kept,
                            closed.unacknowledged,
                            gt.deferred()
                        );
                    } else if closed.pages_kept > 0 {
                        println!(
                            "net: vif{} closed with {} pages still granted",
                            v.index, closed.pages_kept
                        );
                    }
                    v.next_probe = v.next_probe.max(now_ns() + REATTACH_EVERY_NS);
                    Life::Idle
                }
            }
        }
        other => other,
    };
}

/// A backend that closed or vanished, or a ring it corrupted: start closing the vif
/// (it reconnects later).
fn check_backend(v: &mut Vif, xs: &mut Xenstore<PageLink>) -> Life {
    let Some(nic) = v.nic.as_ref() else {
        return Life::Idle;
    };
    let state = nic.backend_state(xs);
    let broken = nic.broken().is_some();
    let gone = matches!(state, Ok(None)) || matches!(state, Ok(Some(s)) if s.closing());
    if !gone && !broken {
        return Life::Idle;
    }
    let Some(nic) = v.nic.take() else {
        return Life::Idle;
    };
    let t = now_ns();
    let state = state.ok().flatten();
    Life::Closing(Box::new(nic.begin_close()), t, t, CloseWhy::Detach(state))
}

/// Pages a backend kept at close (the grant table's deferred list): end the grants it
/// has let go of since, and say how many remain while any do.
fn retry_kept_grants(mem: &mut xenpv_rt::mm::Memory, gt: &mut GrantTable) {
    if gt.deferred() == 0 {
        return;
    }
    let back = gt.retry_deferred(mem);
    if back > 0 {
        println!(
            "net: {back} kept grants ended, their pages freed; grants_deferred={}",
            gt.deferred()
        );
    }
}

/// A detached vif whose backend is back (InitWait): start connecting again.
fn reattach(
    v: &mut Vif,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
) -> Life {
    let dev = xenpv_rt::xenbus::Device::new("vif", v.index);
    let Ok(be) = xenpv_rt::xenbus::probe(xs, &dev) else {
        return Life::Idle;
    };
    match xenpv_rt::xenbus::backend_state(xs, &dev, &be) {
        Ok(Some(State::InitWait)) => {}
        _ => return Life::Idle,
    }
    match Netfront::begin_connect(mem, gt, xs, v.index) {
        Ok(p) => Life::Connecting(Box::new(p), 0, now_ns()),
        Err(e) => {
            println!("net: vif{} reattach failed (retrying): {e}", v.index);
            v.next_probe = now_ns() + CONNECT_NS / 10;
            Life::Idle
        }
    }
}

/// Print the counters, then close every vif together (each within `CLOSE_NS`), those
/// being re-attached or detached included.
fn finish(
    list: &mut [Vif],
    life: &mut [Life],
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    st: &Stats,
) -> i32 {
    println!(
        "net: served udp_echoed={} udp_dropped={} tcp_echoed_bytes={} discarded_bytes={} http_requests={} http_bytes={} detached={} reattached={} file_errors={}",
        st.udp_echoed, st.udp_dropped, st.tcp_echoed, st.discarded, st.http_requests, st.http_bytes, st.detached, st.reattached, st.file_errors
    );
    println!(
        "net: tcp conns={} pool_peak={} pool_full={} no_memory={} refused_peer={} timed_out_handshake={} timed_out_head={} timed_out_idle={} timed_out_closing={}",
        st.tcp_conns, st.pool_peak, st.pool_full, st.no_memory, st.refused_peer, st.timed_out_handshake, st.timed_out_head, st.timed_out_idle, st.timed_out_closing
    );
    let mut fc = frag::Counts::default();
    let mut pending = 0;
    for v in list.iter() {
        let c = v.frags.counts;
        fc.seen += c.seen;
        fc.reassembled += c.reassembled;
        fc.dropped += c.dropped;
        fc.no_slot += c.no_slot;
        fc.expired += c.expired;
        pending += v.frags.pending();
    }
    println!(
        "net: frags seen={} reassembled={} frags_dropped={} no_slot={} expired={} pending={}",
        fc.seen, fc.reassembled, fc.dropped, fc.no_slot, fc.expired, pending
    );
    println!(
        "net: work ingress_cut={} udp_deferred={} checksum_steps={} too_large={}",
        st.ingress_cut, st.udp_deferred, st.checksum_steps, st.too_large
    );
    println!(
        "net: idle_ms={} waits={} (time spent waiting for an event or a timer)",
        st.idle_ns / 1_000_000,
        st.waits
    );
    let mut closing: Vec<(u32, Box<ClosingNetfront>, u64)> = Vec::new();
    for (v, l) in list.iter_mut().zip(life.iter_mut()) {
        if let Some(nic) = v.nic.take() {
            let (t, c) = (nic.traffic(), nic.counters());
            println!(
                "net: vif{} tx_packets={} rx_packets={} tx_bytes={} rx_bytes={} tx_gso={} rx_multi={} notifies={} refused={} failed={} tx_dropped={} bad_checksums={}",
                v.index,
                t.tx_packets,
                t.rx_packets,
                t.tx_bytes,
                t.rx_bytes,
                t.tx_gso,
                t.rx_multi,
                t.notifies,
                c.refused(),
                c.failed,
                nic.dropped(),
                nic.bad_checksums()
            );
            closing.push((v.index, Box::new(nic.begin_close()), 0));
        }
        match core::mem::replace(l, Life::Idle) {
            Life::Connecting(p, ..) => closing.push((v.index, Box::new(p.abort()), 0)),
            Life::Closing(c, ..) => closing.push((v.index, c, 0)),
            Life::Idle => {}
        }
    }
    while !closing.is_empty() {
        let mark = xs.events_arrived();
        let mut next = u64::MAX;
        let mut left = Vec::new();
        for (i, c, wake_at) in closing {
            if now_ns() < wake_at {
                next = next.min(wake_at);
                left.push((i, c, wake_at));
                continue;
            }
            match c.step(mem, gt, xs) {
                CloseStep::Pending(c, w) => {
                    next = next.min(w);
                    left.push((i, Box::new(c), w));
                }
                CloseStep::Closed(closed) => {
                    if closed.pages_kept > 0 {
                        println!(
                            "net: vif{i} closed with {} pages still granted",
                            closed.pages_kept
                        );
                    }
                }
            }
        }
        closing = left;
        if !closing.is_empty() {
            let _ = xs.wait_event(mark, next);
        }
    }
    0
}

struct IpText(Ip);

impl core::fmt::Display for IpText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ip::Static { addr, prefix } => {
                write!(
                    f,
                    "{}/{prefix}",
                    Ipv4Cidr::new(Ipv4Address::from(addr), prefix).address()
                )
            }
            Ip::Dhcp => write!(f, "dhcp"),
        }
    }
}

struct StateText(State);

impl core::fmt::Display for StateText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            State::Unknown => write!(f, "gone"),
            s => write!(f, "{s:?}"),
        }
    }
}
