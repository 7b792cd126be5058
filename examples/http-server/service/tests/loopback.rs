//! The example's service, host-tested: picoserve over xenpv-net's sockets on the
//! loopback device, and a client on the same socket API fetching every route.
use embassy_futures::join::join_array;
use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};
use http_server_service::{pattern_byte, router, serve, Pattern, ROOT_TEXT};
use xenpv_net::{Stack, TcpListener, TcpStream};

const PORT: u16 = 8080;

/// A response: status, headers (lower-cased names) and body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on one connection (`Connection: close`), read to the end.
async fn get(stack: &Stack, path: &str) -> Got {
    let mut s = TcpStream::connect(stack, xenpv_net::loopback::endpoint(PORT))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.flush().await.expect("flush");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await.expect("read") {
            0 => break,
            n => all.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.close().await;
    parse(&all)
}

fn parse(all: &[u8]) -> Got {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = std::str::from_utf8(&all[..end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("name: value");
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let got = Got {
        status: status.parse().unwrap(),
        headers,
        body: all[end + 4..].to_vec(),
    };
    if let Some(len) = got.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            got.body.len(),
            "Content-Length"
        );
    }
    got
}

/// Run `client` against the example's server on the loopback device.
fn with_server<F, Fut>(client: F)
where
    F: FnOnce(Stack) -> Fut,
    Fut: core::future::Future<Output = ()>,
{
    xenpv_net::loopback::run(|stack| async move {
        let listener = TcpListener::bind(&stack, PORT).expect("bind");
        let app = router();
        match select(serve(&listener, &app), client(stack.clone())).await {
            Either::First(()) => panic!("the server stopped"),
            Either::Second(()) => {}
        }
    });
}

#[test]
fn text_routes_and_404() {
    with_server(|stack| async move {
        let g = get(&stack, "/").await;
        assert_eq!(g.status, 200);
        assert_eq!(g.body, ROOT_TEXT.as_bytes());
        let g = get(&stack, "/hello/xen").await;
        assert_eq!(g.status, 200);
        assert_eq!(g.body, b"Hello, xen!\n");
        assert_eq!(get(&stack, "/no/such/page").await.status, 404);
        assert_eq!(get(&stack, "/hello").await.status, 404);
    });
}

#[test]
fn json_route() {
    with_server(|stack| async move {
        let g = get(&stack, "/info").await;
        assert_eq!(g.status, 200);
        assert_eq!(g.header("content-type"), Some("application/json"));
        let body = String::from_utf8(g.body).unwrap();
        assert!(
            body.starts_with(r#"{"server":"picoserve","runtime":"xenpv-rt","uptime_ms":"#),
            "{body}"
        );
    });
}

#[test]
fn large_body_with_its_checksum() {
    with_server(|stack| async move {
        let n = 300_000;
        let g = get(&stack, &format!("/bytes/{n}")).await;
        assert_eq!(g.status, 200);
        assert_eq!(g.body.len(), n);
        assert!(g
            .body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(i as u64)));
        let fnv = format!("{:016x}", Pattern { len: n }.fnv1a64());
        assert_eq!(g.header("x-checksum-fnv1a64"), Some(fnv.as_str()));
        assert_eq!(get(&stack, "/bytes/67108865").await.status, 413);
    });
}

#[test]
fn concurrent_clients_all_served() {
    with_server(|stack| async move {
        let names: [String; 16] = core::array::from_fn(|i| format!("client{i}"));
        let stack = &stack;
        let got = join_array(core::array::from_fn::<_, 16, _>(|i| {
            let name = names[i].clone();
            async move { (get(stack, &format!("/hello/{name}")).await, name) }
        }))
        .await;
        for (g, name) in got {
            assert_eq!(g.status, 200);
            assert_eq!(g.body, format!("Hello, {name}!\n").as_bytes());
        }
    });
}

/// A client that connects and says nothing is closed at picoserve's first-request
/// deadline (5 s, through the glue's `Timer`), while another is served meanwhile.
#[test]
fn a_silent_client_is_closed_at_the_request_deadline() {
    with_server(|stack| async move {
        let mut silent = TcpStream::connect(&stack, xenpv_net::loopback::endpoint(PORT))
            .await
            .expect("connect");
        let t0 = embassy_time::Instant::now();
        assert_eq!(get(&stack, "/hello/other").await.body, b"Hello, other!\n");
        let mut buf = [0u8; 64];
        let end = embassy_time::with_timeout(
            embassy_time::Duration::from_secs(10),
            silent.read(&mut buf),
        )
        .await
        .expect("closed within 10 s");
        let waited = t0.elapsed().as_millis();
        assert!(
            matches!(end, Ok(0) | Err(_)),
            "the silent client got {end:?}"
        );
        assert!((4_500..8_000).contains(&waited), "closed after {waited} ms");
    });
}
