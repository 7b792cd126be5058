//! How a stack gets its address and how its TCP sockets behave, and the pure logic that
//! turns an addressing choice (or a DHCP event) into the interface's address and route.

use embassy_time::Duration;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// Where a stack's IPv4 address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// A fixed address and prefix, and an optional default gateway.
    Static {
        /// The interface's address and prefix length, e.g. `169.254.100.2/24`.
        cidr: Ipv4Cidr,
        /// Where packets for other networks go; `None`: only the local network.
        gateway: Option<Ipv4Address>,
    },
    /// Ask a DHCPv4 server; the stack is up once a lease is bound.
    Dhcp,
}

/// How the TCP sockets of a stack behave: buffers, timeouts, the listeners' backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// A read or write on a [`TcpStream`](crate::TcpStream) that waits longer than this
    /// fails with [`Error::TimedOut`](crate::tcp::Error::TimedOut) (`None`: waits forever;
    /// per stream: [`TcpStream::set_idle_timeout`](crate::TcpStream::set_idle_timeout)).
    pub idle_timeout: Option<Duration>,
    /// A half-open connection (SYN received, no ACK yet) older than this is dropped; it
    /// also bounds [`TcpStream::connect`](crate::TcpStream::connect).
    pub handshake_timeout: Duration,
    /// How long [`TcpStream::close`](crate::TcpStream::close) (or dropping a stream) waits
    /// for the peer to take the remaining data and the FIN before it aborts (RST).
    pub close_timeout: Duration,
    /// Receive buffer per connection, in bytes.
    pub rx_buffer: usize,
    /// Transmit buffer per connection, in bytes.
    pub tx_buffer: usize,
    /// Listening sockets a [`TcpListener`](crate::TcpListener) keeps ready ahead of
    /// demand (at least 1). The stack refills them after every received packet, so a
    /// burst of connection attempts is never refused; connections wait, established, for
    /// `accept` without limit but `max_connections`.
    pub backlog: usize,
    /// At most this many connections per listener (half-open, waiting for `accept`, and
    /// accepted ones not yet dropped): the bound on the memory a flood can take. Beyond
    /// it, new connection attempts are refused (and counted).
    pub max_connections: usize,
    /// At most this many connections per remote IPv4 address per listener (half-open,
    /// waiting for `accept`, and accepted ones not yet gone); 0: no limit. A new
    /// connection from a peer that holds as many is reset before it reaches `accept`,
    /// and counted in [`ListenerStats::refused_per_peer`](crate::tcp::ListenerStats):
    /// one client cannot take a whole listener (the default is below
    /// `max_connections`).
    pub per_peer: usize,
    /// Nagle's algorithm (hold small segments while data is unacknowledged). Off by
    /// default: request/response services and echo wait on it otherwise.
    pub nagle: bool,
    /// How long an ACK may wait to ride on data (`None`: at once). Off by default: a
    /// delayed ACK stalls a sender whose window is full (throughput fell 2.5× with
    /// smoltcp's 10 ms, measured in the echo boot rows).
    pub ack_delay: Option<Duration>,
}

/// [`TcpConfig::per_peer`]'s default: connections a peer may hold per listener.
pub const DEFAULT_PER_PEER: usize = 100;

impl TcpConfig {
    /// Apply the per-socket settings (Nagle, ACK delay) to a new socket.
    pub(crate) fn tune(&self, s: &mut smoltcp::socket::tcp::Socket<'_>) {
        s.set_nagle_enabled(self.nagle);
        s.set_ack_delay(
            self.ack_delay
                .map(|d| smoltcp::time::Duration::from_micros(d.as_micros())),
        );
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            idle_timeout: Some(Duration::from_secs(60)),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            rx_buffer: 64 * 1024,
            tx_buffer: 64 * 1024,
            backlog: 4,
            max_connections: 1024,
            per_peer: DEFAULT_PER_PEER,
            nagle: false,
            ack_delay: None,
        }
    }
}

/// A stack's configuration: its addressing, its TCP behaviour, IPv4 reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Static or DHCP.
    pub addressing: Addressing,
    /// Buffers, timeouts and backlog of the TCP sockets.
    pub tcp: TcpConfig,
    /// How long a fragmented IPv4 datagram may take to arrive whole, from its first
    /// fragment, before its reassembly buffer is freed (and its fragments counted
    /// dropped: [`Stack::frag_counts`](crate::Stack::frag_counts)). Default 3 s
    /// ([`crate::frag::REASSEMBLY_TIMEOUT_MS`]): a flood of incomplete fragments holds
    /// the 16 buffers no longer than that.
    pub reassembly_timeout: Duration,
}

/// [`Config::reassembly_timeout`]'s default.
pub const DEFAULT_REASSEMBLY_TIMEOUT: Duration =
    Duration::from_millis(crate::frag::REASSEMBLY_TIMEOUT_MS);

impl Config {
    /// A static address (and optional gateway) with default TCP settings.
    pub fn ipv4_static(cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) -> Self {
        Config {
            addressing: Addressing::Static { cidr, gateway },
            tcp: TcpConfig::default(),
            reassembly_timeout: DEFAULT_REASSEMBLY_TIMEOUT,
        }
    }

    /// DHCP with default TCP settings.
    pub fn dhcp() -> Self {
        Config {
            addressing: Addressing::Dhcp,
            tcp: TcpConfig::default(),
            reassembly_timeout: DEFAULT_REASSEMBLY_TIMEOUT,
        }
    }
}

/// The address an interface should carry right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Ipv4State {
    /// The address and prefix, once configured.
    pub cidr: Option<Ipv4Cidr>,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4Address>,
}

/// What the DHCP client reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DhcpEvent {
    /// A lease: address and router.
    Bound {
        cidr: Ipv4Cidr,
        router: Option<Ipv4Address>,
    },
    /// The lease is gone (expired, or the link was lost).
    Lost,
}

/// The address a stack starts with: a static one at once, DHCP none until bound.
pub(crate) fn initial_state(addressing: &Addressing) -> Ipv4State {
    match *addressing {
        Addressing::Static { cidr, gateway } => Ipv4State {
            cidr: Some(cidr),
            gateway,
        },
        Addressing::Dhcp => Ipv4State::default(),
    }
}

/// The address after a DHCP event; a static stack ignores DHCP (it runs no client).
/// A gateway outside the leased network is dropped: the route could never be used.
pub(crate) fn apply_dhcp(addressing: &Addressing, now: Ipv4State, event: DhcpEvent) -> Ipv4State {
    if let Addressing::Static { .. } = addressing {
        return now;
    }
    match event {
        DhcpEvent::Bound { cidr, router } => {
            let gateway = router.filter(|r| cidr.contains_addr(r) && *r != cidr.address());
            Ipv4State {
                cidr: Some(cidr),
                gateway,
            }
        }
        DhcpEvent::Lost => Ipv4State::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(a: [u8; 4], p: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Address::new(a[0], a[1], a[2], a[3]), p)
    }

    #[test]
    fn static_is_up_at_once_and_dhcp_is_not() {
        let c = cidr([10, 0, 0, 2], 24);
        let gw = Some(Ipv4Address::new(10, 0, 0, 1));
        let s = initial_state(&Addressing::Static {
            cidr: c,
            gateway: gw,
        });
        assert_eq!(
            s,
            Ipv4State {
                cidr: Some(c),
                gateway: gw
            }
        );
        assert_eq!(initial_state(&Addressing::Dhcp), Ipv4State::default());
    }

    #[test]
    fn dhcp_lease_binds_and_loss_unbinds() {
        let c = cidr([192, 168, 1, 7], 24);
        let r = Ipv4Address::new(192, 168, 1, 1);
        let bound = apply_dhcp(
            &Addressing::Dhcp,
            Ipv4State::default(),
            DhcpEvent::Bound {
                cidr: c,
                router: Some(r),
            },
        );
        assert_eq!(
            bound,
            Ipv4State {
                cidr: Some(c),
                gateway: Some(r)
            }
        );
        assert_eq!(
            apply_dhcp(&Addressing::Dhcp, bound, DhcpEvent::Lost),
            Ipv4State::default()
        );
    }

    #[test]
    fn dhcp_router_off_the_network_is_dropped() {
        let c = cidr([192, 168, 1, 7], 24);
        for r in [
            Ipv4Address::new(10, 0, 0, 1),
            Ipv4Address::new(192, 168, 1, 7),
        ] {
            let s = apply_dhcp(
                &Addressing::Dhcp,
                Ipv4State::default(),
                DhcpEvent::Bound {
                    cidr: c,
                    router: Some(r),
                },
            );
            assert_eq!(s.gateway, None, "{r}");
        }
    }

    #[test]
    fn static_ignores_dhcp() {
        let a = Addressing::Static {
            cidr: cidr([10, 0, 0, 2], 8),
            gateway: None,
        };
        let s = initial_state(&a);
        assert_eq!(apply_dhcp(&a, s, DhcpEvent::Lost), s);
    }
}
