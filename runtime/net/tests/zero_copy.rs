//! `TcpStream::read_with` / `write_with` (and on the split halves): the closure works on
//! the socket's own buffers; bytes arrive identical and in order, a partial consume
//! leaves the rest, the peer's FIN is an empty slice, a reset is an error.

use embassy_futures::join::join;
use embassy_futures::select::{select, Either};
use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use xenpv_net::loopback;
use xenpv_net::tcp::Error;
use xenpv_net::{TcpListener, TcpStream};

async fn guarded<F: core::future::Future>(test: F) -> F::Output {
    embassy_time::with_timeout(Duration::from_secs(20), test)
        .await
        .expect("the test took over 20 s")
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Echo through the socket buffers: take at most 1000 bytes of what is there (so a
/// read leaves some for the next), write them with `write_with` (as much as fits), until
/// the peer's FIN.
async fn zero_copy_echo(mut s: TcpStream) {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let eof = s
            .read_with(|b| {
                let n = b.len().min(1000);
                pending.extend_from_slice(&b[..n]);
                (n, b.is_empty())
            })
            .await
            .unwrap();
        while !pending.is_empty() {
            let n = s
                .write_with(|b| {
                    let n = b.len().min(pending.len());
                    b[..n].copy_from_slice(&pending[..n]);
                    (n, n)
                })
                .await
                .unwrap();
            assert!(n > 0, "write_with gave an empty buffer");
            pending.drain(..n);
        }
        if eof {
            break;
        }
    }
    s.close().await;
}

#[test]
fn bytes_round_trip_through_the_socket_buffers() {
    let data = pattern(1 << 20);
    let data = &data;
    let back = loopback::run(|stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 7).unwrap();
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(7))
                    .await
                    .unwrap();
                let mut back = Vec::new();
                let (mut rx, mut tx) = c.split();
                let send = async {
                    let mut sent = 0;
                    while sent < data.len() {
                        sent += tx
                            .write_with(|b| {
                                let n = b.len().min(data.len() - sent).min(3000);
                                b[..n].copy_from_slice(&data[sent..sent + n]);
                                (n, n)
                            })
                            .await
                            .unwrap();
                    }
                    tx.flush().await.unwrap();
                };
                let receive = async {
                    while back.len() < data.len() {
                        let n = rx
                            .read_with(|b| {
                                back.extend_from_slice(b);
                                (b.len(), b.len())
                            })
                            .await
                            .unwrap();
                        assert!(n > 0, "early EOF");
                    }
                };
                join(send, receive).await;
                assert!(c.close().await, "clean close");
                back
            };
            match select(listener.serve(1, zero_copy_echo), client).await {
                Either::First(()) => panic!("serve ended"),
                Either::Second(b) => b,
            }
        })
    });
    assert_eq!(back.len(), data.len());
    assert!(&back == data, "echoed bytes differ");
}

#[test]
fn the_peers_fin_is_an_empty_slice_and_a_reset_an_error() {
    let (seen, after_reset) = loopback::run(|stack| {
        guarded(async move {
            let listener = TcpListener::bind(&stack, 9).unwrap();
            let server = async {
                let mut s = listener.accept().await.unwrap();
                let mut seen = Vec::new();
                loop {
                    let n = s
                        .read_with(|b| {
                            seen.push(b.len());
                            (b.len(), b.len())
                        })
                        .await
                        .unwrap();
                    if n == 0 {
                        break;
                    }
                }
                // The FIN stays: reading again gives the empty slice again.
                assert_eq!(s.read_with(|b| (0, b.len())).await, Ok(0));
                seen
            };
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(9))
                    .await
                    .unwrap();
                c.write_all(b"hello").await.unwrap();
                assert!(c.close().await);
            };
            let (seen, ()) = join(server, client).await;
            // A reset connection: read_with and write_with fail, `f` is never called.
            let accepted = core::cell::Cell::new(false);
            let server = async {
                let mut s = listener.accept().await.unwrap();
                accepted.set(true);
                let mut buf = [0u8; 1];
                // Wait for the RST.
                while s.read(&mut buf).await.is_ok() {}
                let r = s.read_with(|_| -> (usize, ()) { panic!("f called") }).await;
                let w = s
                    .write_with(|_| -> (usize, ()) { panic!("f called") })
                    .await;
                (r, w)
            };
            let client = async {
                let c = TcpStream::connect(&stack, loopback::endpoint(9))
                    .await
                    .unwrap();
                // Once accepted (a connection reset before is never handed out).
                while !accepted.get() {
                    embassy_time::Timer::after(Duration::from_millis(1)).await;
                }
                c.abort();
            };
            let (after_reset, ()) = join(server, client).await;
            (seen, after_reset)
        })
    });
    assert_eq!(seen.iter().sum::<usize>(), 5, "{seen:?}");
    assert_eq!(seen.last(), Some(&0), "{seen:?}");
    assert_eq!(
        after_reset,
        (Err(Error::ConnectionReset), Err(Error::ConnectionReset))
    );
}

#[test]
fn a_listener_with_settings_of_its_own_gives_them_to_its_streams() {
    // The client's 200 KB fit only if the server's receive buffer is the listener's
    // 1 MiB (the stack's 64 KiB and the client's 64 KiB hold 128 KiB): the server reads
    // nothing until the client has written it all.
    let (idle, wrote_all) = loopback::run(|stack| {
        guarded(async move {
            let own = xenpv_net::TcpConfig {
                rx_buffer: 1 << 20,
                idle_timeout: Some(Duration::from_millis(1234)),
                ..stack.config().tcp
            };
            assert_ne!(stack.config().tcp.rx_buffer, own.rx_buffer);
            let listener = TcpListener::bind_with(&stack, 9, own).unwrap();
            let other = TcpListener::bind(&stack, 10).unwrap();
            let (written_tx, written) =
                (core::cell::Cell::new(false), core::cell::Cell::new(false));
            let server = async {
                let s = listener.accept().await.unwrap();
                let idle = s.idle_timeout();
                while !written_tx.get() {
                    embassy_time::Timer::after(Duration::from_millis(5)).await;
                }
                written.set(true);
                drop(s);
                idle
            };
            let client = async {
                let mut c = TcpStream::connect(&stack, loopback::endpoint(9))
                    .await
                    .unwrap();
                let data = vec![7u8; 200_000];
                let done = embassy_time::with_timeout(Duration::from_secs(2), async {
                    c.write_all(&data).await.unwrap();
                    c.flush().await.unwrap();
                })
                .await
                .is_ok();
                written_tx.set(true);
                done
            };
            let (idle, done) = join(server, client).await;
            assert!(written.get());
            // The other listener keeps the stack's settings.
            let probe = async {
                let _c = TcpStream::connect(&stack, loopback::endpoint(10))
                    .await
                    .unwrap();
                let s = other.accept().await.unwrap();
                s.idle_timeout()
            };
            assert_eq!(probe.await, stack.config().tcp.idle_timeout);
            (idle, done)
        })
    });
    assert_eq!(idle, Some(Duration::from_millis(1234)));
    assert!(
        wrote_all,
        "200 KB did not fit in the listener's 1 MiB window"
    );
}
