//! UDP echo.

use alloc::vec;

use embassy_time::{with_timeout, Duration};
use xenpv_net::udp::UdpError;
use xenpv_net::UdpSocket;

use crate::{add, Counters};

/// The largest UDP payload (65,535 - 20 - 8).
pub const UDP_MAX: usize = 65_507;

/// How long an echo may wait for room in the socket's send queue before the datagram is
/// dropped (and counted): UDP promises nothing, and the next datagrams must not wait.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// Echo every datagram `sock` receives to its sender (RFC 862), forever.
pub async fn udp_echo(sock: &UdpSocket, c: &Counters) {
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(UdpError::Truncated) | Err(_) => {
                add(&c.udp_dropped, 1);
                continue;
            }
        };
        match with_timeout(SEND_WAIT, sock.send_to(&buf[..n], from)).await {
            Ok(Ok(())) => add(&c.udp_echoed, 1),
            _ => add(&c.udp_dropped, 1),
        }
    }
}
