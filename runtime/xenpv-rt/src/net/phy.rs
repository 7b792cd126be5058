//! smoltcp over netfront: [`Netfront`] is a `smoltcp::phy::Device` (Ethernet, MTU 1500),
//! and [`now`] is smoltcp's clock from Xen system time.
//!
//! A received frame is copied out of its RX pages before smoltcp sees it (the backend may
//! write them at any time); a sent frame is written by smoltcp straight into its TX page,
//! which the backend may only read, or, longer than a page (a TCP packet of several
//! segments the backend's side cuts, GSO), into a buffer copied over its pages. TCP and
//! UDP checksums are offloaded both ways (`xenpv_protocol::offload`).
//!
//! ```no_run
//! # fn f(nic: &mut xenpv_rt::net::netfront::Netfront) {
//! use smoltcp::iface::{Config, Interface, SocketSet};
//! use smoltcp::wire::{EthernetAddress, HardwareAddress};
//! use xenpv_rt::net::phy::now;
//! let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(nic.mac())));
//! let mut iface = Interface::new(cfg, nic, now());
//! let mut sockets = SocketSet::new(vec![]);
//! iface.poll(now(), nic, &mut sockets);
//! # }
//! ```

use super::netfront::{Netfront, TxPath, GSO_FRAME_MAX, MAX_FRAME};
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::time::Instant;

/// smoltcp's clock: Xen system time.
pub fn now() -> Instant {
    Instant::from_micros((crate::time::now_ns() / 1000) as i64)
}

/// How long a poll loop waiting on `nic`'s event may wait when smoltcp wants to send at
/// once but every TX buffer is in flight (see [`poll_delay_ns`]).
pub const TX_FULL_WAIT_NS: u64 = 20_000_000;

/// How long a poll loop may wait (in ns, at most `max_ns`) for `nic`'s event before it
/// polls `iface` again: smoltcp's `poll_delay`, except that its "now" while every TX
/// buffer is in flight ([`Netfront::tx_full`]: nothing could be sent) is
/// [`TX_FULL_WAIT_NS`]. The backend's next TX response raises the event and ends the
/// wait; without this, a loop that sends faster than the backend takes spins.
///
/// ```no_run
/// # fn f(nic: &mut xenpv_rt::net::netfront::Netfront,
/// #      iface: &mut smoltcp::iface::Interface, sockets: &mut smoltcp::iface::SocketSet<'_>) {
/// use xenpv_rt::net::phy::{now, poll_delay_ns};
/// use xenpv_rt::{evtchn, time::now_ns};
/// loop {
///     nic.poll();
///     // Ingress a frame at a time, at most 64 a round (`iface.poll` takes frames for as
///     // long as the backend supplies them: a flood would keep it there), then egress.
///     for _ in 0..64 {
///         if iface.poll_ingress_single(now(), nic, sockets)
///             == smoltcp::iface::PollIngressSingleResult::None
///         {
///             break;
///         }
///     }
///     iface.poll_egress(now(), nic, sockets);
///     // … serve the sockets …
///     // (If the budget ran out with frames left, poll again at once rather than wait.)
///     let wait = poll_delay_ns(iface, sockets, nic, 100_000_000);
///     let _ = evtchn::wait(&[nic.port()], now_ns() + wait);
/// }
/// # }
/// ```
pub fn poll_delay_ns(
    iface: &mut Interface,
    sockets: &SocketSet<'_>,
    nic: &mut Netfront,
    max_ns: u64,
) -> u64 {
    let d = iface
        .poll_delay(now(), sockets)
        .map_or(max_ns, |d| d.total_micros().saturating_mul(1000))
        .min(max_ns);
    if d == 0 && nic.tx_full() {
        TX_FULL_WAIT_NS.min(max_ns)
    } else {
        d
    }
}

/// A frame received, already copied out of the shared pages (and its TCP/UDP checksum
/// checked, or vouched for by the backend).
pub struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// The right to send one frame (and the segment size smoltcp asks for, if any).
pub struct TxToken<'a> {
    path: TxPath<'a>,
    mss: Option<u16>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp asked for this token only when the largest frame had room (transmit
        // checks), but the token that comes with a received frame (for a reply) may
        // find the buffers in flight: then the frame is dropped and counted.
        self.path.send(len, self.mss, f)
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.mss = meta.segmentation_offload_size.map(|m| m.get());
    }
}

impl phy::Device for Netfront {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let (frame, path) = self.next_frame()?;
        Some((RxToken(frame), TxToken { path, mss: None }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        let mut path = self.tx_path();
        let slots = path.max_slots();
        path.ready(slots).then_some(TxToken { path, mss: None })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(64);
        // TCP and UDP checksums are left to the backend's side on TX
        // (NETTXF_csum_blank) and checked by the device on RX (blank ones from the
        // backend's domain are vouched for): see `xenpv_protocol::offload`.
        let mut c = ChecksumCapabilities::default();
        c.ipv4 = Checksum::Both;
        c.udp = Checksum::None;
        c.tcp = Checksum::None;
        c.icmpv4 = Checksum::Both;
        caps.checksum = c;
        if self.gso() {
            caps.segmentation.tcpv4 = core::num::NonZeroUsize::new(GSO_FRAME_MAX);
        }
        caps
    }
}
