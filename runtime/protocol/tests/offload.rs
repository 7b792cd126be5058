//! Checksum and segmentation offload decided from frames' headers: the pseudo-header sum
//! left for the backend's side completes to the right checksum, segmentation is asked
//! for only past one segment, and received checksums are checked unless vouched for.

use proptest::prelude::*;
use smoltcp::wire::{checksum, IpAddress, Ipv4Address, TcpPacket, UdpPacket};
use xenpv_protocol::netif::{RxFlags, TxFlags};
use xenpv_protocol::offload::{prepare_tx, rx_checksum_ok, TxOffload};

const SRC: [u8; 4] = [169, 254, 100, 2];
const DST: [u8; 4] = [169, 254, 100, 1];

/// An Ethernet frame with an IPv4 packet (protocol `proto`) of `l4` bytes after the
/// header; IPv4 header checksum filled in.
fn frame(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&SRC);
    ip.extend_from_slice(&DST);
    let c = !checksum::data(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// A TCP segment: a 20-byte header (checksum 0) and `payload` bytes.
fn tcp(payload: usize) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..4].copy_from_slice(&[0x1f, 0x90, 0xc3, 0x50]);
    t[12] = 0x50;
    t[13] = 0x18;
    t.extend((0..payload).map(|i| (i * 7 + 3) as u8));
    t
}

fn addrs() -> (IpAddress, IpAddress) {
    (
        IpAddress::Ipv4(Ipv4Address::from(SRC)),
        IpAddress::Ipv4(Ipv4Address::from(DST)),
    )
}

/// What the backend's side does with a blank checksum (Linux's `skb_checksum_help`):
/// sum the packet from the TCP or UDP header on, the field (at `field` in that header)
/// holding the pseudo-header sum, and store the complement there.
fn complete_at(f: &mut [u8], field: usize) {
    let t = &mut f[34..];
    let c = !checksum::data(t);
    t[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// [`complete_at`] for TCP (its checksum at byte 16).
fn complete(f: &mut [u8]) {
    complete_at(f, 16);
}

#[test]
fn a_blank_tcp_checksum_completes_to_the_right_one() {
    for payload in [0, 1, 1460, 9000, 65_000] {
        let mut f = frame(6, &tcp(payload));
        let o = prepare_tx(&mut f, None);
        assert_eq!(o.flags, TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED);
        complete(&mut f);
        let (s, d) = addrs();
        assert!(
            TcpPacket::new_checked(&f[34..])
                .unwrap()
                .verify_checksum(&s, &d),
            "payload {payload}"
        );
        assert!(rx_checksum_ok(&f, RxFlags::empty()));
    }
}

#[test]
fn segmentation_is_asked_for_only_past_one_segment() {
    let mut f = frame(6, &tcp(1448));
    assert_eq!(prepare_tx(&mut f, Some(1448)).gso_mss, None);
    let mut f = frame(6, &tcp(1449));
    assert_eq!(prepare_tx(&mut f, Some(1448)).gso_mss, Some(1448));
    let mut f = frame(6, &tcp(60_000));
    assert_eq!(
        prepare_tx(&mut f, Some(0)).gso_mss,
        None,
        "no segment size, no GSO"
    );
}

#[test]
fn a_blank_udp_checksum_completes_to_the_right_one_and_is_never_segmented() {
    for payload in [0usize, 1, 56, 1472] {
        let mut u = vec![0x30, 0x39, 0, 7];
        u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend((0..payload).map(|i| (i * 13 + 5) as u8));
        let mut f = frame(17, &u);
        let o = prepare_tx(&mut f, Some(100));
        assert_eq!(o.flags, TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED);
        assert_eq!(o.gso_mss, None, "payload {payload}");
        complete_at(&mut f, 6);
        let (s, d) = addrs();
        assert!(
            UdpPacket::new_checked(&f[34..])
                .unwrap()
                .verify_checksum(&s, &d),
            "payload {payload}"
        );
        assert!(rx_checksum_ok(&f, RxFlags::empty()));
    }
}

#[test]
fn other_frames_go_out_untouched_and_unflagged() {
    let mut udp = vec![0x30, 0x39, 0, 7, 0, 12, 0xab, 0xcd, 1, 2, 3, 4];
    // ICMP.
    let mut f = frame(1, &[8, 0, 0, 0, 0, 1, 0, 1]);
    let before = f.clone();
    assert_eq!(prepare_tx(&mut f, Some(1448)), TxOffload::default());
    assert_eq!(f, before);
    // ARP, and a TCP fragment (its header is not all there to sum).
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(prepare_tx(&mut arp, None), TxOffload::default());
    let mut frag = frame(6, &tcp(100));
    frag[20] = 0x20; // more fragments
    assert_eq!(prepare_tx(&mut frag, None), TxOffload::default());
    // A UDP header whose length runs past the packet.
    let mut short = frame(17, &[0x30, 0x39, 0, 7, 0, 40, 0, 0]);
    assert_eq!(prepare_tx(&mut short, None), TxOffload::default());
    udp[6..8].copy_from_slice(&[0, 0]);
    assert!(
        rx_checksum_ok(&frame(17, &udp), RxFlags::empty()),
        "a zero UDP checksum is none"
    );
}

#[test]
fn a_wrong_checksum_is_refused_unless_the_backend_vouches_for_it() {
    let mut f = frame(6, &tcp(500));
    prepare_tx(&mut f, None);
    complete(&mut f);
    assert!(rx_checksum_ok(&f, RxFlags::empty()));
    f[100] ^= 0x40;
    assert!(
        !rx_checksum_ok(&f, RxFlags::empty()),
        "one bit flipped in the payload"
    );
    assert!(rx_checksum_ok(&f, RxFlags::DATA_VALIDATED));
    assert!(rx_checksum_ok(&f, RxFlags::CSUM_BLANK));
    // UDP: right, then wrong.
    let mut u = vec![0x30, 0x39, 0, 7, 0, 12, 0, 0, 9, 8, 7, 6];
    let f = frame(17, &u);
    let (s, d) = addrs();
    let c = !checksum::combine(&[
        checksum::pseudo_header(&s, &d, smoltcp::wire::IpProtocol::Udp, 12),
        checksum::data(&f[34..]),
    ]);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let f = frame(17, &u);
    assert!(UdpPacket::new_checked(&f[34..])
        .unwrap()
        .verify_checksum(&s, &d));
    assert!(rx_checksum_ok(&f, RxFlags::empty()));
    u[9] ^= 1;
    assert!(!rx_checksum_ok(&frame(17, &u), RxFlags::empty()));
}

proptest! {
    /// Whatever bytes a frame holds, neither side panics, and only a TCP or UDP/IPv4
    /// frame is ever flagged.
    #[test]
    fn any_frame_is_handled(mut f in prop::collection::vec(any::<u8>(), 0..200), mss in any::<u16>()) {
        let o = prepare_tx(&mut f, Some(mss));
        if !o.flags.is_empty() {
            prop_assert!(f.len() >= 42 && f[12..14] == [8, 0] && (f[23] == 6 || f[23] == 17));
        }
        let _ = rx_checksum_ok(&f, RxFlags::empty());
    }
}
