//! DHCP end to end: a stack with `Addressing::Dhcp` on one end of a wire, a minimal DHCP
//! server (a UDP socket on port 67 of a static stack) on the other; then TCP across.

use embassy_futures::join::join;
use embassy_futures::select::{select, select3, Either3};
use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use xenpv_net::smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};
use xenpv_net::{loopback, Config, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr, Runner, Stack};
use xenpv_net::{TcpListener, TcpStream, UdpSocket};

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const LEASED: Ipv4Address = Ipv4Address::new(10, 0, 0, 50);

/// The reply a DHCP server gives to `req`: an offer for a discover, an ack for a request.
fn reply(req: &DhcpRepr<'_>) -> Option<Vec<u8>> {
    let message_type = match req.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let repr = DhcpRepr {
        message_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: LEASED,
        server_ip: SERVER,
        router: Some(SERVER),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(SERVER),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
        .ok()?;
    Some(buf)
}

/// Answer DHCP on `sock` forever.
async fn dhcp_server(sock: &UdpSocket) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, _)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(packet) = DhcpPacket::new_checked(&buf[..n]) else {
            continue;
        };
        let Some(out) = DhcpRepr::parse(&packet).ok().as_ref().and_then(reply) else {
            continue;
        };
        let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::BROADCAST), 68);
        sock.send_to(&out, to).await.unwrap();
    }
}

#[test]
fn dhcp_lease_configures_the_stack_and_tcp_flows_across_the_wire() {
    let (a_mac, b_mac) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    let (a_end, b_end) = loopback::wire(a_mac, b_mac);
    let (ip, reply) = loopback::block_on(async {
        let client = Stack::new(Config::dhcp(), a_mac);
        let server = Stack::new(Config::ipv4_static(Ipv4Cidr::new(SERVER, 24), None), b_mac);
        let mut a = Runner::new(client.clone(), a_end);
        let mut b = Runner::new(server.clone(), b_end);
        let dhcp = UdpSocket::bind(&server, 67).unwrap();
        let listener = TcpListener::bind(&server, 7).unwrap();
        let test = async {
            assert_eq!(client.ipv4(), None, "no address before the lease");
            client.wait_config_up().await;
            let ip = client.ipv4();
            assert_eq!(
                client.gateway(),
                Some(SERVER),
                "the router became the gateway"
            );
            let mut c = TcpStream::connect(&client, IpEndpoint::new(IpAddress::Ipv4(SERVER), 7))
                .await
                .unwrap();
            assert_eq!(c.local().addr, IpAddress::Ipv4(LEASED));
            c.write_all(b"over the wire").await.unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            (ip, out)
        };
        let serve = listener.serve(1, |mut s: TcpStream| async move {
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
            s.close().await;
        });
        let runners = join(a.run(), b.run());
        let guarded = embassy_time::with_timeout(Duration::from_secs(20), test);
        match select3(runners, select(dhcp_server(&dhcp), serve), guarded).await {
            Either3::Third(r) => r.expect("the test took over 20 s"),
            _ => panic!("a runner or server ended"),
        }
    });
    assert_eq!(ip, Some(Ipv4Cidr::new(LEASED, 24)));
    assert_eq!(reply, b"over the wire");
}
