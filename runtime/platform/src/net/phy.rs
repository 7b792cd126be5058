//! smoltcp over netfront: [`Netfront`] is a `smoltcp::phy::Device` (Ethernet, MTU 1500),
//! and [`now`] is smoltcp's clock from Xen system time.
//!
//! A received frame is copied out of its RX page before smoltcp sees it (the backend may
//! write that page at any time); a sent frame is written by smoltcp straight into its TX
//! page, which the backend may only read.
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

use super::netfront::{Netfront, MAX_FRAME};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// smoltcp's clock: Xen system time.
pub fn now() -> Instant {
    Instant::from_micros((crate::time::now_ns() / 1000) as i64)
}

/// A frame received, already copied out of the shared page.
pub struct RxToken {
    buf: [u8; MAX_FRAME],
    len: usize,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.buf[..self.len])
    }
}

/// The right to send one frame.
pub struct TxToken<'a>(&'a mut Netfront);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        match self.0.send(len, |b| (f.take().expect("called once"))(b)) {
            Ok(r) => r,
            // smoltcp asked for this token only when a buffer was free (transmit checks
            // can_send), but the token that comes with a received frame (for a reply)
            // may find every buffer in flight: the frame is built in a scratch buffer,
            // dropped and counted (TCP retransmits; `Netfront::dropped`).
            Err(_) => {
                self.0.count_dropped();
                let mut scratch = [0u8; MAX_FRAME];
                let n = len.min(MAX_FRAME);
                (f.take().expect("not called yet"))(&mut scratch[..n])
            }
        }
    }
}

impl phy::Device for Netfront {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let mut buf = [0u8; MAX_FRAME];
        let len = self.recv(&mut buf)?;
        Some((RxToken { buf, len }, TxToken(self)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        self.can_send().then_some(TxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(64);
        // feature-no-csum-offload: every checksum is computed and checked here.
        let mut c = ChecksumCapabilities::default();
        c.ipv4 = Checksum::Both;
        c.udp = Checksum::Both;
        c.tcp = Checksum::Both;
        c.icmpv4 = Checksum::Both;
        caps.checksum = c;
        caps
    }
}
