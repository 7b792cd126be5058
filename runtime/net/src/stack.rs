//! The stack: one interface and its sockets behind a shared handle ([`Stack`]), and the
//! round a [`Runner`](crate::Runner) does on it.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Context, Poll};

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::socket::tcp::State;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::config::{self, Config, DhcpEvent, Ipv4State};
use crate::frag::{self, FragCounts, Ledger};
use crate::tcp::listener::ListenerState;
use crate::tcp::orphan::Orphan;
use crate::waker::{WakerSet, WakerSlot};
use crate::Driver;

/// At most this many received packets per round, so one busy device cannot starve the
/// executor's other tasks; the runner comes back at once for the rest.
const INGRESS_PER_ROUND: usize = 256;
/// At most this many calls of smoltcp's egress per round (one call sends at most one
/// fragment of a fragmented datagram: a 65,507-byte one is 45); the runner comes back at
/// once for the rest.
const EGRESS_PER_ROUND: usize = 1024;

/// A network stack: an interface (address, routes, neighbours) and its sockets.
///
/// A cheap handle (`Clone` shares it); sockets ([`TcpListener`](crate::TcpListener),
/// [`TcpStream`](crate::TcpStream), [`UdpSocket`](crate::UdpSocket)) are made from it,
/// and a [`Runner`](crate::Runner) moves its packets through a device. Single-threaded:
/// it is not `Send`; every task using it runs on one executor.
#[derive(Clone)]
pub struct Stack {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

/// What a [`Stack`] holds.
pub(crate) struct Inner {
    pub sockets: SocketSet<'static>,
    /// Made when a device is plugged in (a `Runner`); it needs the device's capabilities.
    pub iface: Option<Interface>,
    pub config: Config,
    pub mac: [u8; 6],
    pub ipv4: Ipv4State,
    pub dhcp: Option<SocketHandle>,
    /// The runner, woken when a socket has something new to send.
    pub runner: WakerSlot,
    /// Tasks in `wait_config_up`.
    pub config_waiters: WakerSet,
    pub listeners: Vec<ListenerState>,
    /// Streams dropped or closed, finishing (FIN, or RST at their deadline) before they
    /// are removed.
    pub orphans: Vec<Orphan>,
    pub next_id: u64,
    pub next_port: u16,
    /// IPv4 fragments received, and what became of them (smoltcp counts none).
    pub frags: Ledger,
    /// Is smoltcp's fragmenter sending a datagram? (Seen on the way out.)
    pub outgoing: Outgoing,
}

/// Milliseconds of embassy-time (the fragment ledger's clock, smoltcp's too).
fn now_ms() -> u64 {
    embassy_time::Instant::now().as_millis()
}

/// smoltcp's clock from embassy-time's.
pub(crate) fn smol_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(embassy_time::Instant::now().as_micros() as i64)
}

/// smoltcp's duration from embassy-time's.
fn smol_duration(d: embassy_time::Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(d.as_micros())
}

/// embassy-time's instant from smoltcp's.
pub(crate) fn embassy_at(t: smoltcp::time::Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(t.total_micros().max(0) as u64)
}

/// The next local port from the ephemeral range (49152..=65535), wrapping around.
pub(crate) fn next_ephemeral(last: u16) -> u16 {
    if (49152..65535).contains(&last) {
        last + 1
    } else {
        49152
    }
}

impl Stack {
    /// A stack configured by `config`, for an interface with Ethernet address `mac` (a
    /// device plugged in later brings its own: [`Driver::mac`] wins). It moves no packet
    /// until a [`Runner`](crate::Runner) plugs a device in; sockets can be made before.
    pub fn new(config: Config, mac: [u8; 6]) -> Stack {
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = match config.addressing {
            config::Addressing::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
            config::Addressing::Static { .. } => None,
        };
        let inner = Inner {
            sockets,
            iface: None,
            config,
            mac,
            ipv4: config::initial_state(&config.addressing),
            dhcp,
            runner: WakerSlot::default(),
            config_waiters: WakerSet::default(),
            listeners: Vec::new(),
            orphans: Vec::new(),
            next_id: 0,
            next_port: 0,
            frags: Ledger::with_timeout(config.reassembly_timeout.as_millis()),
            outgoing: Outgoing::default(),
        };
        Stack {
            inner: Rc::new(RefCell::new(inner)),
        }
    }

    /// The interface's IPv4 address and prefix, once configured (static at once, DHCP
    /// once bound).
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.inner.borrow().ipv4.cidr
    }

    /// The default gateway, if configured (static, or the DHCP lease's router).
    pub fn gateway(&self) -> Option<Ipv4Address> {
        self.inner.borrow().ipv4.gateway
    }

    /// The stack's configuration.
    pub fn config(&self) -> Config {
        self.inner.borrow().config
    }

    /// Wait until the interface has an address (at once for a static one; for DHCP,
    /// until a lease is bound).
    pub async fn wait_config_up(&self) {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if inner.ipv4.cidr.is_some() {
                return Poll::Ready(());
            }
            inner.config_waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The IPv4 fragments the stack's devices received, and what became of them (the
    /// datagrams completed, the fragments dropped at the reassembly timeout or for want
    /// of a reassembly buffer, those held now): see [`crate::frag`].
    pub fn frag_counts(&self) -> FragCounts {
        self.with(|inner| {
            inner.frags.expire(now_ms());
            inner.frags.frag_counts()
        })
    }

    /// Change [`Config::reassembly_timeout`] (datagrams being reassembled keep theirs).
    pub fn set_reassembly_timeout(&self, timeout: embassy_time::Duration) {
        self.with(|inner| {
            inner.config.reassembly_timeout = timeout;
            inner.frags.set_timeout(timeout.as_millis());
            if let Some(iface) = inner.iface.as_mut() {
                iface.set_reassembly_timeout(smol_duration(timeout));
            }
        });
    }

    /// Reset every TCP connection: each sends a RST at the runner's next round (then the
    /// stack forgets it), listeners stop. For the end of a guest or a device: a peer in
    /// the middle of a transfer sees the connection reset, not a silence it waits out.
    /// Returns how many connections were reset; [`Self::resets_pending`] says when their
    /// RSTs are out.
    pub fn reset_all(&self) -> usize {
        self.with(|inner| {
            let mut n = 0;
            for (_, socket) in inner.sockets.iter_mut() {
                if let smoltcp::socket::Socket::Tcp(s) = socket {
                    let connected = s.remote_endpoint().is_some()
                        && !matches!(s.state(), State::Closed | State::TimeWait);
                    n += usize::from(connected);
                    s.abort();
                }
            }
            inner.runner.wake();
            n
        })
    }

    /// Whether a RST of [`Self::reset_all`] (or of any abort) is still to be sent.
    pub fn resets_pending(&self) -> bool {
        self.with(|inner| {
            inner.sockets.iter().any(|(_, socket)| match socket {
                smoltcp::socket::Socket::Tcp(s) => {
                    s.state() == State::Closed && s.remote_endpoint().is_some()
                }
                _ => false,
            })
        })
    }

    /// Run `f` on the stack's state.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.borrow_mut())
    }

    /// Wake the runner: a socket has something new (data to send, buffer space, a close).
    pub(crate) fn wake_runner(&self) {
        self.inner.borrow_mut().runner.wake();
    }
}

impl Inner {
    /// A fresh id (listeners).
    pub(crate) fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A local port for an outgoing connection.
    pub(crate) fn ephemeral_port(&mut self) -> u16 {
        self.next_port = next_ephemeral(self.next_port);
        self.next_port
    }

    /// Plug a device in: a new interface with its capabilities, carrying the address the
    /// stack has (DHCP starts over: the new link may lead elsewhere).
    pub(crate) fn attach<D: Driver>(&mut self, device: &mut D) {
        self.mac = device.mac();
        let hw = HardwareAddress::Ethernet(EthernetAddress(self.mac));
        let mut cfg = smoltcp::iface::Config::new(hw);
        let now = smol_now();
        cfg.random_seed = u64::from_le_bytes([
            self.mac[0],
            self.mac[1],
            self.mac[2],
            self.mac[3],
            self.mac[4],
            self.mac[5],
            0,
            0,
        ]) ^ now.total_micros() as u64;
        let mut iface = Interface::new(cfg, device, now);
        iface.set_reassembly_timeout(smol_duration(self.config.reassembly_timeout));
        self.iface = Some(iface);
        // A new interface's fragmenter is empty.
        self.outgoing = Outgoing::default();
        if let Some(h) = self.dhcp {
            self.sockets.get_mut::<dhcpv4::Socket<'static>>(h).reset();
            self.set_ipv4(config::apply_dhcp(
                &self.config.addressing,
                self.ipv4,
                DhcpEvent::Lost,
            ));
        }
        self.apply_ipv4();
    }

    /// Record a new address and tell whoever waits for it.
    fn set_ipv4(&mut self, state: Ipv4State) {
        self.ipv4 = state;
        if state.cidr.is_some() {
            self.config_waiters.wake_all();
        }
    }

    /// Put the stack's address and default route on the interface.
    fn apply_ipv4(&mut self) {
        let Some(iface) = self.iface.as_mut() else {
            return;
        };
        let state = self.ipv4;
        iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(c) = state.cidr {
                // The list has room for one address at least.
                let _ = addrs.push(IpCidr::Ipv4(c));
            }
        });
        iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = state.gateway {
            // Only a full route table fails, and the default route was just removed.
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
    }

    /// Take what the DHCP client reports into the address.
    fn poll_dhcp(&mut self) {
        let Some(h) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket<'static>>(h).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => DhcpEvent::Bound {
                cidr: c.address,
                router: c.router,
            },
            Some(dhcpv4::Event::Deconfigured) => DhcpEvent::Lost,
        };
        let state = config::apply_dhcp(&self.config.addressing, self.ipv4, event);
        self.set_ipv4(state);
        self.apply_ipv4();
    }

    /// One round: send what sockets have, tend orphans, then take in what the device
    /// received (refilling listeners after every packet, so a burst of SYNs finds
    /// listening sockets), run DHCP, tend listeners. Returns when to come back (`None`:
    /// only when woken).
    ///
    /// Egress comes first: what the round received is answered by the next round, after
    /// the tasks it woke have run (a runner that is woken or whose "now" timer fires
    /// only runs again once they have). So an echo's data carries the ACK, and a reader's
    /// ACK the window it opened, instead of a bare ACK each before the tasks run: about
    /// half the packets for the backend to handle, as the polled loop's round (ingress,
    /// services, egress) does.
    pub(crate) fn poll<D: Driver>(&mut self, device: &mut D) -> Option<embassy_time::Instant> {
        let now = smol_now();
        let iface = self.iface.as_mut()?;
        iface.poll_maintenance(now);
        let mut dev = Counted::new(device, &mut self.frags, &mut self.outgoing);
        let mut more = !egress(iface, now, &mut dev, &mut self.sockets);
        // Right after egress: an orphan aborted before this round has had its RST sent.
        let listeners = &mut self.listeners;
        let orphan_at =
            crate::tcp::orphan::tend(&mut self.sockets, &mut self.orphans, |id, handle| {
                if let Some(l) = listeners.iter_mut().find(|l| l.id == id) {
                    l.release(handle);
                }
            });
        for i in 0..=INGRESS_PER_ROUND {
            if i == INGRESS_PER_ROUND {
                more = true;
                break;
            }
            let iface = self.iface.as_mut()?;
            let mut dev = Counted::new(device, &mut self.frags, &mut self.outgoing);
            match iface.poll_ingress_single(now, &mut dev, &mut self.sockets) {
                smoltcp::iface::PollIngressSingleResult::None => break,
                _ => self.tend_listeners(),
            }
        }
        self.frags.expire(now_ms());
        self.poll_dhcp();
        self.tend_listeners();
        let iface = self.iface.as_mut()?;
        let mut next = iface.poll_at(now, &self.sockets).map(embassy_at);
        // Sockets aborted in this round (a listener's) send their RST in the next.
        if more || self.orphans.iter().any(|o| o.aborted) {
            next = Some(embassy_time::Instant::now());
        }
        let listen_at = self
            .listeners
            .iter()
            .filter_map(|l| l.next_deadline(&l.cfg))
            .min();
        [next, listen_at, orphan_at].into_iter().flatten().min()
    }

    /// Every listener looks at its pool (cheap: a pass over a few sockets).
    fn tend_listeners(&mut self) {
        let now = embassy_time::Instant::now();
        for l in self.listeners.iter_mut() {
            let cfg = l.cfg;
            l.tend(&mut self.sockets, &mut self.orphans, now, &cfg);
        }
    }

    /// Wait on `cx` until the runner reports the condition.
    #[allow(dead_code)]
    pub(crate) fn register_runner(&mut self, cx: &Context<'_>) {
        self.runner.register(cx.waker());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_wrap_in_range() {
        assert_eq!(next_ephemeral(0), 49152);
        assert_eq!(next_ephemeral(49152), 49153);
        assert_eq!(next_ephemeral(65534), 65535);
        assert_eq!(next_ephemeral(65535), 49152);
    }
}

/// smoltcp's egress until nothing is left to send now (`true`), [`EGRESS_PER_ROUND`]
/// calls at most (`false`: come back at once). A call that sent a fragment of a datagram
/// being fragmented goes on even if no socket sent anything.
fn egress<D: Driver>(
    iface: &mut Interface,
    now: smoltcp::time::Instant,
    dev: &mut Counted<'_, D>,
    sockets: &mut SocketSet<'static>,
) -> bool {
    for _ in 0..EGRESS_PER_ROUND {
        dev.out.given = 0;
        let sent = dev.out.sent;
        let r = iface.poll_egress(now, dev, sockets);
        let fragment_out = dev.out.fragmenting && dev.out.sent != sent;
        if r == smoltcp::iface::PollResult::None && !fragment_out {
            return true;
        }
    }
    false
}

/// What the stack knows of smoltcp's fragmenter, from the frames going out: it holds
/// one datagram, and a second one sent before the first's fragments are all out would
/// overwrite it (smoltcp 0.14). So while it is busy, the device gives smoltcp's egress
/// one transmit token per call: the fragmenter's, which comes first.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outgoing {
    /// The last frame out was an IPv4 fragment with more to follow.
    fragmenting: bool,
    /// Tokens given in this call of smoltcp's egress.
    given: u32,
    /// Frames sent so far (wrapping).
    sent: u64,
}

impl Outgoing {
    /// May smoltcp have another transmit token in this call?
    fn may_transmit(&self) -> bool {
        !self.fragmenting || self.given == 0
    }

    /// A frame went out.
    fn saw(&mut self, frame: &[u8]) {
        self.sent = self.sent.wrapping_add(1);
        self.fragmenting = frag::more_fragments(frame);
    }
}

/// The stack's device as smoltcp sees it: every frame received is shown to the fragment
/// ledger, every frame sent to [`Outgoing`].
struct Counted<'a, D> {
    device: &'a mut D,
    frags: &'a mut Ledger,
    out: &'a mut Outgoing,
}

impl<'a, D> Counted<'a, D> {
    fn new(device: &'a mut D, frags: &'a mut Ledger, out: &'a mut Outgoing) -> Self {
        Counted { device, frags, out }
    }
}

/// A received frame, shown to the ledger when smoltcp takes it.
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

/// A frame to send, shown to [`Outgoing`] once written.
struct CountedTx<'a, T> {
    tx: T,
    out: &'a mut Outgoing,
}

impl<T: smoltcp::phy::TxToken> smoltcp::phy::TxToken for CountedTx<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let out = self.out;
        self.tx.consume(len, |frame| {
            let r = f(frame);
            out.saw(frame);
            r
        })
    }

    fn set_meta(&mut self, meta: smoltcp::phy::PacketMeta) {
        self.tx.set_meta(meta)
    }
}

impl<D: Driver> smoltcp::phy::Device for Counted<'_, D> {
    type RxToken<'b>
        = CountedRx<'b, D::RxToken<'b>>
    where
        Self: 'b;
    type TxToken<'b>
        = CountedTx<'b, D::TxToken<'b>>
    where
        Self: 'b;

    fn receive(
        &mut self,
        t: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.device.receive(t)?;
        let rx = CountedRx {
            rx,
            frags: self.frags,
        };
        Some((rx, CountedTx { tx, out: self.out }))
    }

    fn transmit(&mut self, t: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        if !self.out.may_transmit() {
            return None;
        }
        self.out.given += 1;
        let tx = self.device.transmit(t)?;
        Some(CountedTx { tx, out: self.out })
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        self.device.capabilities()
    }
}
