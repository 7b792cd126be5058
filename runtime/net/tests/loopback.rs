//! The socket API end to end over the loopback device: echo, a backlog under 32
//! concurrent clients, idle and handshake timeouts, a bounded close, UDP.

use std::time::Instant as StdInstant;

use embassy_futures::join::{join, join_array};
use embassy_futures::select::{select, Either};
use embassy_time::{Duration, Timer};
use embedded_io_async::{Read, Write};
use xenpv_net::loopback;
use xenpv_net::tcp::Error;
use xenpv_net::{Config, TcpListener, TcpStream, UdpSocket};

/// Fail a test that hangs (a broken timeout would otherwise wait forever).
async fn guarded<F: core::future::Future>(test: F) -> F::Output {
    embassy_time::with_timeout(Duration::from_secs(20), test)
        .await
        .expect("the test took over 20 s")
}

/// A config at 127.0.0.1/8 with `tcp` changed by `f`.
fn config_with(f: impl FnOnce(&mut xenpv_net::TcpConfig)) -> Config {
    let mut c = loopback::config();
    f(&mut c.tcp);
    c
}

/// Echo until the peer closes, then close.
async fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    s.close().await;
}

/// Run `client` against a listener on `port` served by `workers` running `handler`.
async fn against<H, HF, C>(
    listener: &TcpListener,
    workers: usize,
    handler: H,
    client: C,
) -> C::Output
where
    H: Fn(TcpStream) -> HF,
    HF: core::future::Future<Output = ()>,
    C: core::future::Future,
{
    match select(listener.serve(workers, handler), client).await {
        Either::First(()) => panic!("serve ended"),
        Either::Second(out) => out,
    }
}

#[test]
fn echo_returns_megabytes_identical() {
    let data: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let data = &data;
    let back = loopback::run(|stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 7).unwrap();
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(7))
                    .await
                    .unwrap();
                let mut back = Vec::with_capacity(data.len());
                let (mut rx, mut tx) = c.split();
                // Full duplex: write everything while reading the echo back.
                let send = async {
                    for chunk in data.chunks(10_000) {
                        tx.write_all(chunk).await.unwrap();
                    }
                    tx.flush().await.unwrap();
                };
                let receive = async {
                    let mut r = [0u8; 8192];
                    while back.len() < data.len() {
                        let n = rx.read(&mut r).await.unwrap();
                        assert!(n > 0, "early EOF");
                        back.extend_from_slice(&r[..n]);
                    }
                };
                join(send, receive).await;
                assert!(c.close().await, "clean close");
                back
            };
            against(&listener, 1, echo, client).await
        })
    });
    assert_eq!(back.len(), data.len());
    assert!(&back == data, "echoed bytes differ");
}

#[test]
fn thirty_two_clients_all_served_by_four_workers() {
    let (replies, stats) = loopback::run(|stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            // Each worker holds its connection a while: the other clients wait in the backlog.
            let handler = |mut s: TcpStream| async move {
                let mut buf = [0u8; 16];
                let n = s.read(&mut buf).await.unwrap();
                Timer::after(Duration::from_millis(20)).await;
                s.write_all(b"re:").await.unwrap();
                s.write_all(&buf[..n]).await.unwrap();
                s.close().await;
            };
            let stack = &stack;
            let clients: [_; 32] = core::array::from_fn(|i| async move {
                let mut c = TcpStream::connect(stack, loopback::endpoint(80))
                    .await
                    .map_err(|e| (i, e))?;
                c.write_all(format!("{i}").as_bytes()).await.unwrap();
                let mut out = Vec::new();
                c.read_to_end(&mut out).await.unwrap();
                Ok::<_, (usize, xenpv_net::tcp::ConnectError)>(String::from_utf8(out).unwrap())
            });
            let replies = against(&listener, 4, handler, join_array(clients)).await;
            (replies, listener.stats())
        })
    });
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.as_deref(), Ok(format!("re:{i}").as_str()), "client {i}");
    }
    assert_eq!(stats.accepted, 32, "{stats:?}");
    assert!(
        stats.peak > 4,
        "connections waited in the backlog: {stats:?}"
    );
}

#[test]
fn idle_client_is_cut_by_the_idle_timeout() {
    let cfg = config_with(|t| t.idle_timeout = Some(Duration::from_millis(200)));
    let (server, client) = loopback::run_with(cfg, |stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            let server = async {
                let mut s = listener.accept().await.unwrap();
                let start = StdInstant::now();
                let r = s.read(&mut [0u8; 8]).await;
                drop(s);
                (r, start.elapsed())
            };
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                c.set_idle_timeout(None);
                // Silent; then sees the server go.
                c.read(&mut [0u8; 8]).await
            };
            join(server, client).await
        })
    });
    let (r, waited) = server;
    assert_eq!(r, Err(Error::TimedOut));
    assert!(
        waited >= std::time::Duration::from_millis(190)
            && waited < std::time::Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(client, Ok(0), "the client sees the server close");
}

#[test]
fn close_against_a_peer_that_never_reads_ends_at_its_deadline() {
    let cfg = config_with(|t| {
        t.close_timeout = Duration::from_millis(300);
        t.idle_timeout = Some(Duration::from_millis(200));
    });
    let (clean, took, client_saw) = loopback::run_with(cfg, |stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            let server = async {
                let mut s = listener.accept().await.unwrap();
                // Fill the peer's window and our buffer: the write stalls, then times out.
                let big = vec![7u8; 1 << 20];
                assert_eq!(s.write_all(&big).await, Err(Error::TimedOut));
                let start = StdInstant::now();
                let clean = s.close().await;
                (clean, start.elapsed())
            };
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                c.set_idle_timeout(None);
                Timer::after(Duration::from_millis(1500)).await;
                // Only now read: the server aborted meanwhile.
                let mut sink = Vec::new();
                c.read_to_end(&mut sink).await
            };
            let ((clean, took), saw) = join(server, client).await;
            (clean, took, saw)
        })
    });
    assert!(!clean, "a peer that never reads cannot close cleanly");
    assert!(
        took >= std::time::Duration::from_millis(290) && took < std::time::Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(client_saw.err(), Some(Error::ConnectionReset));
}

#[test]
fn dropping_a_stream_still_delivers_what_it_wrote() {
    let got = loopback::run(|stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            let handler = |mut s: TcpStream| async move {
                s.write_all(&[5u8; 40_000]).await.unwrap();
                // Dropped without close: the data still goes out, then a FIN.
            };
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                let mut out = Vec::new();
                c.read_to_end(&mut out).await.unwrap();
                out
            };
            against(&listener, 1, handler, client).await
        })
    });
    assert_eq!(got, vec![5u8; 40_000]);
}

#[test]
fn udp_echo() {
    let got = loopback::run(|stack| {
        guarded(async move {
            let server = UdpSocket::bind(&stack, 9).unwrap();
            let client = UdpSocket::bind(&stack, 0).unwrap();
            let serve = async {
                let mut buf = [0u8; 1500];
                loop {
                    let (n, from) = server.recv_from(&mut buf).await.unwrap();
                    server.send_to(&buf[..n], from).await.unwrap();
                }
            };
            let ask = async {
                let mut got = Vec::new();
                for msg in [&b"one"[..], b"two", &[9u8; 1400]] {
                    client.send_to(msg, loopback::endpoint(9)).await.unwrap();
                    let mut buf = [0u8; 1500];
                    let (n, from) = client.recv_from(&mut buf).await.unwrap();
                    assert_eq!(from, loopback::endpoint(9));
                    got.push(buf[..n].to_vec());
                }
                got
            };
            match select(serve, ask).await {
                Either::First(()) => unreachable!(),
                Either::Second(got) => got,
            }
        })
    });
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), vec![9u8; 1400]]);
}

#[test]
fn binding_a_taken_port_fails() {
    loopback::run(|stack| {
        guarded(async move {
            let _l = TcpListener::bind(&stack, 80).unwrap();
            assert!(TcpListener::bind(&stack, 80).is_err());
            assert!(TcpListener::bind(&stack, 0).is_err());
            let _u = UdpSocket::bind(&stack, 53).unwrap();
            assert!(UdpSocket::bind(&stack, 53).is_err());
        })
    });
}

/// A bare SYN from 127.0.0.2:`sport` (a peer that never finishes the handshake).
fn syn_frame(sport: u16, dport: u16) -> Vec<u8> {
    use xenpv_net::smoltcp::phy::ChecksumCapabilities;
    use xenpv_net::smoltcp::wire::*;
    let src = Ipv4Address::new(127, 0, 0, 2);
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 4096,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: loopback::ADDRESS,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x99]),
        dst_addr: EthernetAddress(loopback::MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    let ip_buf = &mut frame[eth.buffer_len()..];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_buf), &caps);
    let tcp_buf = &mut ip_buf[ip.buffer_len()..];
    tcp.emit(
        &mut TcpPacket::new_unchecked(tcp_buf),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(loopback::ADDRESS),
        &caps,
    );
    frame
}

#[test]
fn half_open_handshake_is_dropped_and_others_still_served() {
    let cfg = config_with(|t| t.handshake_timeout = Duration::from_millis(200));
    let device = loopback::Loopback::new();
    let raw = device.injector();
    let (before, after, reply) = loopback::run_on(cfg, device, |stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            // Learn 127.0.0.1's MAC first: the SYN-ACK to the raw peer's unknown address
            // starts an ARP, and smoltcp then holds every ARP request for a second.
            let _ = TcpStream::connect(&stack, loopback::endpoint(81)).await;
            raw.inject(syn_frame(40_000, 80));
            Timer::after(Duration::from_millis(50)).await;
            let before = listener.stats();
            Timer::after(Duration::from_millis(400)).await;
            let after = listener.stats();
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                c.write_all(b"x").await.unwrap();
                let mut out = Vec::new();
                c.read_to_end(&mut out).await.unwrap();
                out
            };
            (
                before,
                after,
                against(&listener, 1, echo_once, client).await,
            )
        })
    });
    assert_eq!(before.timed_out_handshake, 0, "{before:?}");
    assert!(before.peak >= 1 && before.accepted == 0, "{before:?}");
    assert_eq!(after.timed_out_handshake, 1, "{after:?}");
    assert_eq!(reply, b"x");
}

/// Echo one read, then close.
async fn echo_once(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    if let Ok(n) = s.read(&mut buf).await {
        let _ = s.write_all(&buf[..n]).await;
    }
    s.close().await;
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let r = loopback::run(|stack| {
        guarded(async move {
            TcpStream::connect(&stack, loopback::endpoint(81))
                .await
                .err()
        })
    });
    assert_eq!(r, Some(xenpv_net::tcp::ConnectError::Refused));
}

#[test]
fn static_address_is_up_at_once() {
    let ip = loopback::run(|stack| {
        guarded(async move {
            stack.wait_config_up().await;
            stack.ipv4()
        })
    });
    assert_eq!(ip, Some(xenpv_net::Ipv4Cidr::new(loopback::ADDRESS, 8)));
}

#[test]
fn runner_ends_when_the_link_goes_down_and_a_new_device_carries_on() {
    use xenpv_net::{RunEnd, Runner, Stack};
    let served = loopback::block_on(guarded(async {
        let stack = Stack::new(loopback::config(), loopback::MAC);
        let first = loopback::Loopback::new();
        let link = first.injector();
        let mut runner = Runner::new(stack.clone(), first);
        let listener = TcpListener::bind(&stack, 80).unwrap();
        // Served over the first device, then its link goes down: run() returns.
        let round = async {
            let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                .await
                .unwrap();
            c.write_all(b"a").await.unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            link.set_link_up(false);
            out
        };
        let served = async { select(listener.serve(1, echo_once), round).await };
        let (end, first) = join(runner.run(), served).await;
        assert_eq!(end, RunEnd::LinkDown);
        let Either::Second(first) = first else {
            panic!("serve ended")
        };
        let _old = runner.into_device();
        // A new device in the same stack: the listener bound before still serves.
        let mut runner = Runner::new(stack.clone(), loopback::Loopback::new());
        let round = async {
            let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                .await
                .unwrap();
            c.write_all(b"b").await.unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            out
        };
        let second = match select(runner.run(), select(listener.serve(1, echo_once), round)).await {
            Either::Second(Either::Second(out)) => out,
            _ => panic!("runner or server ended"),
        };
        [first, second]
    }));
    assert_eq!(served, [b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn abort_resets_the_peer_at_once() {
    let (saw, took) = loopback::run(|stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            let server = async {
                let s = listener.accept().await.unwrap();
                s.abort();
            };
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                let start = StdInstant::now();
                (c.read(&mut [0u8; 8]).await, start.elapsed())
            };
            join(server, client).await.1
        })
    });
    assert_eq!(saw, Err(Error::ConnectionReset));
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");
}

#[test]
fn beyond_max_connections_attempts_are_refused_and_counted() {
    let cfg = config_with(|t| {
        t.max_connections = 2;
        t.backlog = 1;
    });
    let (results, stats) = loopback::run_with(cfg, |stack| {
        guarded(async move {
            // Nobody accepts: connections pile up in the pool up to the limit.
            let listener = TcpListener::bind(&stack, 80).unwrap();
            let mut results = Vec::new();
            let mut held = Vec::new();
            for _ in 0..3 {
                match TcpStream::connect(&stack, loopback::endpoint(80)).await {
                    Ok(c) => {
                        held.push(c);
                        results.push(Ok(()));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            (results, listener.stats())
        })
    });
    use xenpv_net::ConnectError::Refused;
    assert_eq!(results, [Ok(()), Ok(()), Err(Refused)]);
    assert!(stats.at_limit > 0 && stats.peak == 2, "{stats:?}");
}

#[test]
fn a_peer_beyond_its_limit_is_refused_while_the_first_are_served() {
    let cfg = config_with(|t| {
        t.per_peer = 2;
        t.backlog = 4;
    });
    let (third, after, stats) = loopback::run_with(cfg, |stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 7).unwrap();
            let client = async {
                let connect = || TcpStream::connect(&stack, loopback::endpoint(7));
                let mut a = connect().await.unwrap();
                let mut b = connect().await.unwrap();
                // Both are served (the echo comes back) while the third is refused.
                for c in [&mut a, &mut b] {
                    c.write_all(b"hi").await.unwrap();
                    let mut buf = [0u8; 2];
                    c.read_exact(&mut buf).await.unwrap();
                    assert_eq!(&buf, b"hi");
                }
                let third = connect().await.map(|_| ());
                a.write_all(b"still").await.unwrap();
                let mut buf = [0u8; 5];
                a.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"still");
                // One closes: once the server has let go of it, a new one is taken.
                drop(b);
                let mut after = Err(Refused);
                for _ in 0..50 {
                    after = connect().await;
                    if after.is_ok() {
                        break;
                    }
                    Timer::after(Duration::from_millis(20)).await;
                }
                let mut c = after.map_err(|e| format!("{e:?}"))?;
                c.write_all(b"new").await.unwrap();
                let mut buf = [0u8; 3];
                c.read_exact(&mut buf).await.unwrap();
                Ok::<_, String>((third, buf))
            };
            let (third, after) = against(&listener, 4, echo, client).await.unwrap();
            (third, after, listener.stats())
        })
    });
    use xenpv_net::ConnectError::Refused;
    assert_eq!(third, Err(Refused));
    assert_eq!(&after, b"new");
    assert!(stats.refused_per_peer >= 1, "{stats:?}");
    assert_eq!(stats.accepted, 3, "{stats:?}");
}

#[test]
fn a_syn_flood_and_a_peer_that_stops_reading_hold_no_one_else() {
    let cfg = config_with(|t| {
        t.max_connections = 32;
        t.per_peer = 8;
        t.handshake_timeout = Duration::from_secs(5);
        t.idle_timeout = Some(Duration::from_secs(5));
    });
    let device = loopback::Loopback::new();
    let raw = device.injector();
    let (served_in, stats) = loopback::run_on(cfg, device, |stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 80).unwrap();
            // Learn 127.0.0.1's MAC first (see half_open_handshake_…).
            let _ = TcpStream::connect(&stack, loopback::endpoint(81)).await;
            // Writes a megabyte to whoever connects, then echoes once.
            let handler = |mut s: TcpStream| async move {
                let mut first = [0u8; 1];
                if s.read_exact(&mut first).await.is_err() {
                    return;
                }
                if first[0] == b'b' {
                    let _ = s.write_all(&vec![1u8; 1 << 20]).await;
                } else {
                    let _ = s.write_all(&first).await;
                }
            };
            let clients = async {
                // A peer that asks for the megabyte and never reads it.
                let mut stalled = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                stalled.set_idle_timeout(None);
                stalled.write_all(b"b").await.unwrap();
                // 64 SYNs from 127.0.0.2 that never complete, twice the listener's limit.
                for port in 0..64 {
                    raw.inject(syn_frame(40_000 + port, 80));
                }
                Timer::after(Duration::from_millis(100)).await;
                // Served at once, long before any handshake or idle deadline frees a slot.
                let start = StdInstant::now();
                let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                c.write_all(b"x").await.unwrap();
                let mut back = [0u8; 1];
                c.read_exact(&mut back).await.unwrap();
                assert_eq!(&back, b"x");
                let took = start.elapsed();
                drop(stalled);
                took
            };
            let took = against(&listener, 4, handler, clients).await;
            (took, listener.stats())
        })
    });
    assert!(
        served_in < std::time::Duration::from_secs(1),
        "{served_in:?}"
    );
    assert_eq!(stats.refused_per_peer, 64 - 8, "{stats:?}");
}
