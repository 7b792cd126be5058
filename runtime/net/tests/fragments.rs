//! IPv4 fragments end to end: large UDP datagrams echoed across a 1500-byte wire (sent
//! several at once, so smoltcp's single fragmenter is shared), and a flood of incomplete
//! fragments counted by the stack's ledger and freed at its reassembly timeout.

use embassy_futures::join::join;
use embassy_futures::select::{select3, Either3};
use embassy_time::{Duration, Timer};
use xenpv_net::smoltcp::wire::Ipv4Packet;
use xenpv_net::{loopback, Config, FragCounts, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use xenpv_net::{Runner, Stack, UdpBuffers, UdpSocket};

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
/// Eight of the largest datagrams each way.
const BIG: UdpBuffers = UdpBuffers {
    packets: 64,
    bytes: 8 * 65_536,
};

/// Datagram `i` of `len` bytes: its number in the first byte, then a pattern of it.
fn datagram(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| {
            if j == 0 {
                i
            } else {
                (j as u8).wrapping_mul(31) ^ i
            }
        })
        .collect()
}

/// Echo datagrams on `sock` forever.
async fn echo(sock: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    loop {
        if let Ok((n, from)) = sock.recv_from(&mut buf).await {
            sock.send_to(&buf[..n], from).await.unwrap();
        }
    }
}

#[test]
fn large_datagrams_sent_together_are_echoed_whole_and_counted_reassembled() {
    let sizes = [65_507, 30_000, 1_473, 65_507, 2_000, 65_000, 9_000, 65_507];
    let (a_mac, b_mac) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    let (a_end, b_end) = loopback::wire(a_mac, b_mac);
    let (echoed, client_frags, server_frags) = loopback::block_on(async {
        let client = Stack::new(Config::ipv4_static(Ipv4Cidr::new(CLIENT, 24), None), a_mac);
        let server = Stack::new(Config::ipv4_static(Ipv4Cidr::new(SERVER, 24), None), b_mac);
        let mut a = Runner::new(client.clone(), a_end);
        let mut b = Runner::new(server.clone(), b_end);
        let served = UdpSocket::bind_with(&server, 7, BIG).unwrap();
        let sock = UdpSocket::bind_with(&client, 0, BIG).unwrap();
        let test = async {
            let to = IpEndpoint::new(IpAddress::Ipv4(SERVER), 7);
            // All queued at once: the client's and the server's fragmenters each get
            // several datagrams to send back to back.
            for (i, &n) in sizes.iter().enumerate() {
                sock.send_to(&datagram(i as u8, n), to).await.unwrap();
            }
            let mut back = vec![None; sizes.len()];
            let mut buf = vec![0u8; 65_536];
            for _ in 0..sizes.len() {
                let (n, _) = sock.recv_from(&mut buf).await.unwrap();
                let i = buf[0] as usize;
                back[i] = Some(buf[..n] == datagram(i as u8, sizes[i])[..]);
            }
            (back, client.frag_counts(), server.frag_counts())
        };
        let runners = join(a.run(), b.run());
        let guarded = embassy_time::with_timeout(Duration::from_secs(20), test);
        match select3(runners, echo(&served), guarded).await {
            Either3::Third(r) => r.expect("the echoes did not all come back in 20 s"),
            _ => panic!("a runner or the echo ended"),
        }
    });
    assert_eq!(echoed, vec![Some(true); sizes.len()]);
    // 1473 bytes of UDP payload is one byte over a 1500-byte packet: all are fragmented.
    let fragments: u64 = sizes.iter().map(|&n| (n as u64 + 8).div_ceil(1480)).sum();
    for (who, f) in [("client", client_frags), ("server", server_frags)] {
        assert_eq!(
            f,
            FragCounts {
                seen: fragments,
                reassembled: sizes.len() as u64,
                ..FragCounts::default()
            },
            "{who}"
        );
    }
}

/// An Ethernet frame to the loopback stack from 127.0.0.2 with an IPv4 fragment of a
/// UDP datagram to port 7 (identification `id`): `payload` at `offset` (bytes), MF.
fn fragment(id: u16, offset: usize, payload: &[u8], more: bool) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + payload.len()];
    f[..6].copy_from_slice(&loopback::MAC);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    let flags = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    ip[6..8].copy_from_slice(&flags.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[127, 0, 0, 2]);
    ip[16..20].copy_from_slice(&loopback::ADDRESS.octets());
    ip[20..].copy_from_slice(payload);
    Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
    f
}

/// A UDP datagram to port 7 with `data`, in two fragments (UDP checksum 0: none).
fn two_fragments(id: u16, data: &[u8]) -> [Vec<u8>; 2] {
    let mut udp = vec![0u8; 8];
    udp[..2].copy_from_slice(&9999u16.to_be_bytes());
    udp[2..4].copy_from_slice(&7u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    udp.extend_from_slice(data);
    let (head, tail) = udp.split_at(1480);
    [fragment(id, 0, head, true), fragment(id, 1480, tail, false)]
}

#[test]
fn incomplete_fragments_are_counted_and_freed_at_the_reassembly_timeout() {
    let mut cfg = loopback::config();
    cfg.reassembly_timeout = Duration::from_millis(300);
    let device = loopback::Loopback::new();
    let raw = device.injector();
    let (flooded, expired, got) = loopback::run_on(cfg, device, |stack| async move {
        let sock = UdpSocket::bind(&stack, 7).unwrap();
        // 20 first fragments of datagrams that never complete: 16 take smoltcp's
        // reassembly buffers, 4 find none.
        for id in 0..20 {
            raw.inject(fragment(id, 0, &[0u8; 1480], true));
        }
        Timer::after(Duration::from_millis(100)).await;
        let flooded = stack.frag_counts();
        // A whole datagram in two fragments finds its buffer once the timeout freed
        // them (smoltcp's default timeout is 60 s: it would not, here).
        Timer::after(Duration::from_millis(300)).await;
        let expired = stack.frag_counts();
        let data = datagram(7, 2000);
        for f in two_fragments(100, &data) {
            raw.inject(f);
        }
        let mut buf = vec![0u8; 4096];
        let got = embassy_time::with_timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .map(|r| r.map(|(n, _)| buf[..n] == data[..]));
        (flooded, expired, got)
    });
    assert_eq!(
        flooded,
        FragCounts {
            seen: 20,
            dropped: 4,
            no_slot: 4,
            pending: 16,
            ..FragCounts::default()
        }
    );
    assert_eq!(
        expired,
        FragCounts {
            seen: 20,
            dropped: 20,
            no_slot: 4,
            expired: 16,
            ..FragCounts::default()
        }
    );
    assert_eq!(got, Ok(Ok(true)), "the datagram after the flood");
}
