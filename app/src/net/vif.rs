//! One vif's serving state: its smoltcp interface and sockets over netfront, and a
//! round of its work (ingress, services, egress), each step bounded.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use xenpv_appliance::admission::{Limits, Phase};
use xenpv_appliance::config::Ip;
use xenpv_appliance::http::ROUND_BYTES;
use xenpv_appliance::round;
use xenpv_contract::report::Writer;
use xenpv_rt::blk::ext4::ext4_view::Ext4;
use xenpv_rt::net::netfront::Netfront;
use xenpv_rt::net::phy::now;
use xenpv_rt::net::phy::poll_delay_ns;
use xenpv_rt::net::smoltcp;
use xenpv_rt::println;
use xenpv_rt::time::now_ns;
use xenpv_rt::xenpv_net::frag::{self, Ledger, REASSEMBLY_TIMEOUT_MS};

use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use super::pool::{self, add_socket, admit, retire, Slot, DISCARD_CONNS, ECHO_CONNS, HTTP_CONNS};
use super::serve::{
    serve_discard, serve_echo, serve_http, serve_udp, Service, UDP_BUF, UDP_MAX, UDP_PACKETS,
};
use super::stats::Stats;
use super::{now_ms, MAX_WAIT_NS};

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

/// One vif: its device (when connected), interface and sockets.
pub(super) struct Vif {
    pub(super) index: u32,
    pub(super) nic: Option<Box<Netfront>>,
    /// Boxed: it holds smoltcp's 64 KiB fragmentation buffer.
    pub(super) iface: Box<Interface>,
    pub(super) sockets: SocketSet<'static>,
    pub(super) udp: SocketHandle,
    /// A datagram being echoed (the largest fits).
    pub(super) udp_buf: Box<[u8]>,
    /// Did the last round's egress end with smoltcp's fragmenter idle? (It holds one
    /// datagram: a second sent before the first's fragments are all out overwrites it.)
    pub(super) frag_idle: bool,
    pub(super) tcp: Vec<Slot>,
    /// Where this round's service starts (round-robin under the work budget).
    pub(super) rr: usize,
    /// Frames were left in the ring when the ingress budget ran out, or a budget of the
    /// services ran out, or a checksum is being taken: poll again at once (the round
    /// ended to let the rest of the loop in, not because the work was done).
    pub(super) more_rx: bool,
    pub(super) limits: Limits,
    /// IPv4 fragments received, and what became of them (smoltcp counts none).
    pub(super) frags: Ledger,
    pub(super) dhcp: Option<SocketHandle>,
    /// A DHCP address to publish in xenstore (`data/xenpv-app/vif<N>-ip`) for dom0.
    pub(super) announce: Option<heapless::String<24>>,
    pub(super) next_probe: u64,
    /// The filesystem `GET /files/…` serves (word `files`), shared by every vif.
    pub(super) files: Option<Ext4>,
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
    pub(super) fn new(nic: Box<Netfront>, ip: Ip, limits: Limits) -> Vif {
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
    pub(super) fn poll(&mut self, st: &mut Stats) {
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
            if !pool::track(slot, s, &l, now, st) {
                continue;
            }
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
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

    pub(super) fn delay_ns(&mut self) -> u64 {
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
            println!(
                "{}",
                Writer::new("net")
                    .word(&super::vif_word(index))
                    .word("dhcp")
                    .field("address", &c.address)
            );
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
