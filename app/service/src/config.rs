//! The appliance's admission limits (`xenpv_appliance::admission::Limits`, its command
//! line's words) as xenpv-net's TCP settings.

use embassy_time::Duration;
use xenpv_appliance::admission::Limits;
use xenpv_net::TcpConfig;

use crate::sizing::Sizes;

pub use crate::sizing::{BUFFER, SMALL_BUFFER, STREAM_BUFFER};

/// The stack's TCP settings for `l`: `tcp_idle=` is each stream's idle timeout,
/// `syn_timeout=` the handshake's, `tcp_listen=` the listeners' backlog, `tcp_max=` the
/// most connections per listener, `per_peer=` the most one remote IPv4 address holds to
/// a listener. (`head_timeout=` is the HTTP service's own deadline, [`crate::http`].)
pub fn tcp_config(l: &Limits) -> TcpConfig {
    TcpConfig {
        idle_timeout: Some(Duration::from_millis(l.idle_ms)),
        handshake_timeout: Duration::from_millis(l.syn_ms),
        rx_buffer: BUFFER,
        tx_buffer: BUFFER,
        backlog: l.listen,
        max_connections: l.max,
        per_peer: l.per_peer,
        ..TcpConfig::default()
    }
}

/// The TCP settings of the listener on `port` (each connection it accepts has them):
/// [`tcp_config`]'s, with the buffers sized for the service: discard (9) receives in
/// [`STREAM_BUFFER`], HTTP (80) sends from one, echo (7 and any other) has [`BUFFER`]
/// each way.
pub fn port_config(l: &Limits, port: u16) -> TcpConfig {
    sized_port_config(l, port, &Sizes::FULL)
}

/// [`port_config`] with the buffers of `s` ([`crate::sizing::size`]'s choice for the
/// domain's memory): discard receives in `s.stream`, HTTP sends from it, echo has
/// `s.echo` each way, the other directions `s.small`.
pub fn sized_port_config(l: &Limits, port: u16, s: &Sizes) -> TcpConfig {
    let (rx_buffer, tx_buffer) = match port {
        9 => (s.stream, s.small),
        80 => (s.small, s.stream),
        _ => (s.echo, s.echo),
    };
    TcpConfig {
        rx_buffer,
        tx_buffer,
        ..tcp_config(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_lands_in_its_setting() {
        let mut l = Limits::DEFAULT;
        for (w, v) in [
            ("tcp_idle", 7),
            ("syn_timeout", 3),
            ("tcp_listen", 9),
            ("tcp_max", 77),
            ("per_peer", 5),
            ("head_timeout", 2),
        ] {
            l.set(w, v).unwrap();
        }
        let c = tcp_config(&l);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(7)));
        assert_eq!(c.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.backlog, 9);
        assert_eq!(c.max_connections, 77);
        assert_eq!(c.per_peer, 5);
        // The defaults are the polled appliance's.
        let d = tcp_config(&Limits::DEFAULT);
        assert_eq!((d.backlog, d.max_connections, d.per_peer), (4, 128, 100));
        assert_eq!(d.idle_timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn each_port_streams_through_its_large_buffer() {
        let l = Limits::DEFAULT;
        let b = |p| {
            let c = port_config(&l, p);
            (c.rx_buffer, c.tx_buffer)
        };
        assert_eq!(b(9), (STREAM_BUFFER, SMALL_BUFFER));
        assert_eq!(b(80), (SMALL_BUFFER, STREAM_BUFFER));
        assert_eq!(b(7), (BUFFER, BUFFER));
        assert_eq!(port_config(&l, 80).max_connections, 128);
    }
}
