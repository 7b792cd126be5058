//! Checksum and segmentation offload for netfront, decided from a frame's own headers
//! (parsed with smoltcp's wire types).
//!
//! On TX the stack leaves TCP and UDP checksums to the backend (`NETTXF_csum_blank`, as
//! Linux's netfront does for `CHECKSUM_PARTIAL`): [`prepare_tx`] puts the pseudo-header
//! sum in the checksum field, which is what the backend's side completes, and marks a TCP
//! packet longer than one segment for segmentation (GSO). On RX a packet the backend
//! marks validated or blank (made in its own domain, where Linux never computed the
//! checksum) is taken as is; any other is checked here by [`rx_checksum_ok`].
//!
//! ```
//! use xenpv_protocol::offload::{prepare_tx, rx_checksum_ok};
//! use xenpv_protocol::netif::{RxFlags, TxFlags};
//! // Ethernet + IPv4 (20 bytes, TCP, 40 bytes in all) + a TCP header with a zero checksum.
//! let mut f = [0u8; 54];
//! f[12..14].copy_from_slice(&[0x08, 0x00]);
//! f[14..24].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6]);
//! f[26..34].copy_from_slice(&[169, 254, 100, 2, 169, 254, 100, 1]);
//! f[46] = 0x50; // data offset: 5 words
//! let o = prepare_tx(&mut f, None);
//! assert_eq!(o.flags, TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED);
//! assert_eq!(o.gso_mss, None);
//! assert_ne!(&f[50..52], &[0, 0], "the pseudo-header sum is in the checksum field");
//! // Unflagged, a blank checksum is wrong: the receive check refuses it.
//! assert!(!rx_checksum_ok(&f, RxFlags::empty()));
//! ```

use crate::netif::{RxFlags, TxFlags};
use smoltcp::wire::{
    checksum, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};

/// How a frame goes out: its `NETTXF_*` flags and, for a TCP packet of more than one
/// segment, the segment payload size the backend's side cuts it into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// `NETTXF_csum_blank | NETTXF_data_validated` for TCP and UDP over IPv4, else none.
    pub flags: TxFlags,
    /// GSO: the MSS, when the TCP payload is longer than it.
    pub gso_mss: Option<u16>,
}

/// The IPv4 packet in an Ethernet frame, if it is one and whole (not a fragment).
fn ipv4(frame: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
    (!ip.more_frags() && ip.frag_offset() == 0).then_some(ip)
}

/// Ready a frame whose TCP or UDP checksum the stack left out (see the module): the
/// pseudo-header sum goes into a TCP or UDP/IPv4 packet's checksum field and the frame
/// is flagged blank and validated; a TCP payload longer than `gso_mss` is marked for
/// segmentation. Any other frame is left as it is, with no flags.
pub fn prepare_tx(frame: &mut [u8], gso_mss: Option<u16>) -> TxOffload {
    let Some((at, src, dst, proto, l4_len)) = ipv4(frame).and_then(|ip| {
        let proto = ip.next_header();
        matches!(proto, IpProtocol::Tcp | IpProtocol::Udp).then(|| {
            let hl = usize::from(ip.header_len());
            let l4_len = usize::from(ip.total_len()).saturating_sub(hl);
            (hl, ip.src_addr(), ip.dst_addr(), proto, l4_len)
        })
    }) else {
        return TxOffload::default();
    };
    let at = EthernetFrame::<&[u8]>::header_len() + at;
    let l4 = &mut frame[at..at + l4_len];
    let sum = checksum::pseudo_header_v4(&src, &dst, proto, l4_len as u32);
    let payload = if proto == IpProtocol::Udp {
        let Ok(mut udp) = UdpPacket::new_checked(l4) else {
            return TxOffload::default();
        };
        udp.set_checksum(sum);
        // UDP is never segmented.
        0
    } else {
        let Ok(mut tcp) = TcpPacket::new_checked(l4) else {
            return TxOffload::default();
        };
        tcp.set_checksum(sum);
        l4_len.saturating_sub(usize::from(tcp.header_len()))
    };
    TxOffload {
        flags: TxFlags::CSUM_BLANK.union(TxFlags::DATA_VALIDATED),
        gso_mss: gso_mss.filter(|&m| m > 0 && payload > usize::from(m)),
    }
}

/// Is a received frame's TCP or UDP checksum right? A frame the backend flagged
/// (`NETRXF_data_validated` or `NETRXF_csum_blank`) is; a frame that is not TCP or UDP
/// over whole IPv4, or too short to parse, is left to the stack (which checks the IPv4
/// and ICMP checksums itself and refuses malformed headers).
pub fn rx_checksum_ok(frame: &[u8], rx_flags: RxFlags) -> bool {
    if rx_flags.intersects(RxFlags::DATA_VALIDATED | RxFlags::CSUM_BLANK) {
        return true;
    }
    let Some(ip) = ipv4(frame) else {
        return true;
    };
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    match ip.next_header() {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(ip.payload()).map_or(true, |t| t.verify_checksum(&src, &dst))
        }
        IpProtocol::Udp => {
            UdpPacket::new_checked(ip.payload()).map_or(true, |u| u.verify_checksum(&src, &dst))
        }
        _ => true,
    }
}
