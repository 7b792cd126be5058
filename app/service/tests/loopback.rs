//! The appliance's services over xenpv-net's loopback device, with clients on the same
//! socket API: what dom0's peer checks in the boot rows, on the host.
use embassy_futures::join::join_array;
use embassy_futures::select::{select, Either};
use embassy_time::{Duration, Instant};
use embedded_io_async::{Read, Write};
use xenpv_appliance::admission::Limits;
use xenpv_appliance::http::{Fnv, Opened};
use xenpv_appliance_service::config::port_config;
use xenpv_appliance_service::{
    discard, echo, http, serve_each, udp_echo, Counters, Files, NoFiles, ReadFail,
};
use xenpv_net::{loopback, Stack, TcpListener, TcpStream, UdpSocket};

/// The services on ports 7 (UDP and TCP), 9 and 80 of `stack`, with `files`.
async fn services<F: Files>(stack: &Stack, c: &Counters, files: &F, head: Duration) {
    services_with(stack, c, files, head, false).await
}

/// [`services`], with the heap probe on or off.
async fn services_with<F: Files>(
    stack: &Stack,
    c: &Counters,
    files: &F,
    head: Duration,
    probe: bool,
) {
    let u = UdpSocket::bind(stack, 7).unwrap();
    // Each listener as the appliance binds it.
    let bind = |p| TcpListener::bind_with(stack, p, port_config(&Limits::DEFAULT, p)).unwrap();
    let (e, d, h) = (bind(7), bind(9), bind(80));
    embassy_futures::join::join4(
        udp_echo(&u, c),
        serve_each(&e, 128, c, |s| echo(s, c)),
        serve_each(&d, 128, c, |s| discard(s, c)),
        serve_each(&h, 128, c, |s| http(s, head, probe, files, c)),
    )
    .await;
}

/// `GET path`: the whole response (head and body), or what came before a reset.
async fn get(stack: &Stack, path: &str) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(stack, loopback::endpoint(80))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (all, false),
        }
    }
}

/// A response's status, a header's value and its body.
fn split(all: &[u8]) -> (u16, String, Vec<u8>) {
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, all[end..].to_vec())
}

fn fnv(b: &[u8]) -> String {
    let mut h = Fnv::new();
    h.update(b);
    format!("{:016x}", h.finish())
}

#[test]
fn bytes_index_404_and_too_large() {
    let c = Counters::default();
    loopback::run(|stack| {
        let c = &c;
        async move {
            let client = async {
                let (all, clean) = get(&stack, "/bytes/300000").await;
                assert!(clean);
                let (status, head, body) = split(&all);
                assert_eq!(status, 200);
                assert_eq!(body.len(), 300_000);
                let mut want = vec![0u8; 300_000];
                xenpv_appliance::http::fill_pattern(0, &mut want);
                assert!(body == want, "the pattern");
                assert!(head.contains(&format!("X-Checksum-FNV1a64: {}", fnv(&body))));
                let (status, _, body) = split(&get(&stack, "/").await.0);
                assert_eq!(status, 200);
                assert!(body.starts_with(b"<!DOCTYPE html>"));
                assert_eq!(split(&get(&stack, "/no/such").await.0).0, 404);
                assert_eq!(split(&get(&stack, "/bytes/4294967296").await.0).0, 400);
                assert_eq!(split(&get(&stack, "/files/a/b").await.0).0, 404);
            };
            let svc = services(&stack, c, &NoFiles, Duration::from_secs(10));
            assert!(matches!(select(svc, client).await, Either::Second(())));
        }
    });
    assert_eq!(c.http_requests.get(), 5);
    assert_eq!(c.too_large.get(), 1);
    assert!(c.http_bytes.get() >= 300_000);
}

#[test]
fn the_heap_probe_when_on_and_off() {
    for probe in [true, false] {
        let c = Counters::default();
        loopback::run(|stack| {
            let c = &c;
            async move {
                let client = async {
                    let (status, _, body) = split(&get(&stack, "/heap/3").await.0);
                    if probe {
                        assert_eq!((status, body.as_slice()), (200, &b"heap: 3 MiB ok\n"[..]));
                    } else {
                        assert_eq!(status, 404);
                    }
                };
                let svc = services_with(&stack, c, &NoFiles, Duration::from_secs(10), probe);
                assert!(matches!(select(svc, client).await, Either::Second(())));
            }
        });
    }
}

#[test]
fn sixty_four_echo_clients_at_once_and_discard() {
    let c = Counters::default();
    loopback::run(|stack| {
        let c = &c;
        async move {
            let one = |i: usize| {
                let stack = stack.clone();
                async move {
                    let mut s = TcpStream::connect(&stack, loopback::endpoint(7))
                        .await
                        .unwrap();
                    let data: Vec<u8> = (0..20_000).map(|j| (i * 7 + j) as u8).collect();
                    let (mut r, mut w) = s.split();
                    let send = async { w.write_all(&data).await.unwrap() };
                    let mut got = vec![0u8; data.len()];
                    let recv = async { r.read_exact(&mut got).await.unwrap() };
                    embassy_futures::join::join(send, recv).await;
                    assert!(got == data, "client {i}");
                    s.close().await;
                }
            };
            let clients = async {
                let all: [usize; 64] = core::array::from_fn(|i| i);
                join_array(all.map(one)).await;
                let mut s = TcpStream::connect(&stack, loopback::endpoint(9))
                    .await
                    .unwrap();
                s.write_all(&vec![1u8; 100_000]).await.unwrap();
                s.close().await;
                // The discard server has read it all once it has closed too.
                let t = Instant::now();
                while c.discarded.get() < 100_000 && t.elapsed() < Duration::from_secs(5) {
                    embassy_time::Timer::after_millis(10).await;
                }
            };
            let svc = services(&stack, c, &NoFiles, Duration::from_secs(10));
            assert!(matches!(select(svc, clients).await, Either::Second(())));
        }
    });
    assert_eq!(c.tcp_echoed.get(), 64 * 20_000);
    assert_eq!(c.discarded.get(), 100_000);
    assert!(c.conns_peak.get() >= 32, "peak {}", c.conns_peak.get());
}

#[test]
fn udp_echo_of_the_largest_datagram() {
    let c = Counters::default();
    loopback::run(|stack| {
        let c = &c;
        async move {
            let client = async {
                let u = UdpSocket::bind(&stack, 0).unwrap();
                for len in [1usize, 1472, 1473, 9000, 65_507] {
                    let data: Vec<u8> = (0..len).map(|j| (j * 13) as u8).collect();
                    u.send_to(&data, loopback::endpoint(7)).await.unwrap();
                    let mut buf = vec![0u8; 65_536];
                    let (n, _) = u.recv_from(&mut buf).await.unwrap();
                    assert_eq!(&buf[..n], &data[..], "len {len}");
                }
            };
            let svc = services(&stack, c, &NoFiles, Duration::from_secs(10));
            assert!(matches!(select(svc, client).await, Either::Second(())));
        }
    });
    assert_eq!(c.udp_echoed.get(), 5);
}

#[test]
fn a_head_not_sent_in_time_is_reset() {
    let c = Counters::default();
    loopback::run(|stack| {
        let c = &c;
        async move {
            let client = async {
                let mut s = TcpStream::connect(&stack, loopback::endpoint(80))
                    .await
                    .unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
                let t = Instant::now();
                let mut buf = [0u8; 64];
                let r = s.read(&mut buf).await;
                assert!(r.is_err() || r == Ok(0), "{r:?}");
                let waited = t.elapsed();
                assert!(waited >= Duration::from_millis(250), "{waited:?}");
                assert!(waited < Duration::from_secs(3), "{waited:?}");
            };
            let svc = services(&stack, c, &NoFiles, Duration::from_millis(300));
            assert!(matches!(select(svc, client).await, Either::Second(())));
        }
    });
    assert_eq!(c.timed_out_head.get(), 1);
    assert_eq!(c.http_requests.get(), 0);
}

/// Files in memory, 1 MB each: `/a/big` reads well, `/bad` fails past 600 kB (the
/// checksum finds it), `/flaky` fails once its checksum is taken (the body is cut short).
struct MemFiles;

/// An open file of [`MemFiles`]: its pattern offset, which one, reads so far.
type MemFile = (u64, u8, u32);

impl Files for MemFiles {
    type File = MemFile;
    fn open(&self, path: &str) -> Result<(MemFile, u64), Opened> {
        match path {
            "/a/big" => Ok(((5, 0, 0), 1_000_000)),
            "/bad" => Ok(((9, 1, 0), 1_000_000)),
            "/flaky" => Ok(((9, 2, 0), 1_000_000)),
            "/busy" => Err(Opened::Unavailable { left_ns: 1 }),
            _ => Err(Opened::NotFound),
        }
    }
    fn read_at(&self, f: &mut MemFile, off: u64, out: &mut [u8]) -> Result<(), ReadFail> {
        f.2 += 1;
        let fail = match f.1 {
            1 => off + out.len() as u64 > 600_000,
            // The checksum reads 245 chunks of 4 KiB.
            2 => f.2 > 245,
            _ => false,
        };
        if fail {
            return Err(ReadFail::Failed);
        }
        xenpv_appliance::http::fill_pattern(off + f.0, out);
        Ok(())
    }
}

#[test]
fn files_are_served_checked_refused_and_cut_short() {
    let c = Counters::default();
    let files = MemFiles;
    loopback::run(|stack| {
        let (c, files) = (&c, &files);
        async move {
            let client = async {
                let (all, clean) = get(&stack, "/files/a/big").await;
                assert!(clean);
                let (status, head, body) = split(&all);
                assert_eq!(status, 200);
                let mut want = vec![0u8; 1_000_000];
                xenpv_appliance::http::fill_pattern(5, &mut want);
                assert!(body == want);
                assert!(head.contains(&format!("X-Checksum-FNV1a64: {}", fnv(&body))));
                assert_eq!(split(&get(&stack, "/files/nope").await.0).0, 404);
                assert_eq!(split(&get(&stack, "/files/busy").await.0).0, 503);
                assert_eq!(split(&get(&stack, "/files/..").await.0).0, 400);
                // The checksum reads the whole file: a read failing at its end is a 500.
                assert_eq!(split(&get(&stack, "/files/bad").await.0).0, 500);
                // A read failing after the head: the connection is reset, the body short.
                // (The reset may overtake the head still queued.)
                let (all, clean) = get(&stack, "/files/flaky").await;
                assert!(!clean && all.len() < 1_000_000, "{} bytes", all.len());
            };
            let svc = services(&stack, c, files, Duration::from_secs(10));
            assert!(matches!(select(svc, client).await, Either::Second(())));
        }
    });
    assert!(c.checksum_steps.get() >= 4);
}

/// A source with the guest's own pages: `/state` a line, `/records` none (404).
struct Pages;

impl Files for Pages {
    type File = ();
    fn open(&self, _: &str) -> Result<((), u64), Opened> {
        Err(Opened::NotFound)
    }
    fn read_at(&self, _: &mut (), _: u64, _: &mut [u8]) -> Result<(), ReadFail> {
        Err(ReadFail::Failed)
    }
    fn page(
        &self,
        route: xenpv_appliance::http::Route<'_>,
    ) -> Option<xenpv_appliance::http::Response> {
        (route == xenpv_appliance::http::Route::State)
            .then(|| xenpv_appliance::http::respond_line("ticks=3 mono_ns=9"))
    }
}

#[test]
fn the_guests_own_pages_or_404() {
    let c = Counters::default();
    loopback::run(|stack| {
        let c = &c;
        async move {
            let client = async {
                let (all, clean) = get(&stack, "/state").await;
                assert!(clean);
                let (status, head, body) = split(&all);
                assert_eq!(
                    (status, body.as_slice()),
                    (200, b"ticks=3 mono_ns=9\n".as_slice())
                );
                assert!(head.contains(&format!("X-Checksum-FNV1a64: {}", fnv(&body))));
                assert_eq!(split(&get(&stack, "/records").await.0).0, 404);
            };
            let svc = services(&stack, c, &Pages, Duration::from_secs(10));
            assert!(matches!(select(svc, client).await, Either::Second(())));
        }
    });
    // Without the pages (no source keeps them): 404 both.
    let c = Counters::default();
    loopback::run(|stack| {
        let c = &c;
        async move {
            let client = async {
                assert_eq!(split(&get(&stack, "/state").await.0).0, 404);
                assert_eq!(split(&get(&stack, "/records").await.0).0, 404);
            };
            let svc = services(&stack, c, &NoFiles, Duration::from_secs(10));
            assert!(matches!(select(svc, client).await, Either::Second(())));
        }
    });
}
