//! The appliance's services, kept in a library: async Rust over any `embedded-io-async`
//! stream, which `cargo test` runs natively over xenpv-net's loopback device (the same
//! sockets as on a vif, no Xen).
#![cfg_attr(not(test), no_std)]

use embassy_futures::join::join;
use embedded_io_async::{Read, Write};
use xenpv_net::tcp::BindError;
use xenpv_net::{Stack, TcpListener, TcpStream};

/// The port of the TCP echo service (RFC 862).
pub const ECHO_PORT: u16 = 7;
/// The port of the HTTP service.
pub const HTTP_PORT: u16 = 80;

/// Serve echo and HTTP on `stack`, `workers` connections of each at once (more wait in
/// the listeners' backlog), each closed when its handler is done. Returns only if a port
/// cannot be bound.
pub async fn serve(stack: &Stack, workers: usize) -> Result<(), BindError> {
    let echo_listener = TcpListener::bind(stack, ECHO_PORT)?;
    let http_listener = TcpListener::bind(stack, HTTP_PORT)?;
    join(
        echo_listener.serve(workers, |mut s: TcpStream| async move {
            let _ = echo(&mut s).await;
            s.close().await;
        }),
        http_listener.serve(workers, |mut s: TcpStream| async move {
            let _ = http(&mut s).await;
            s.close().await;
        }),
    )
    .await;
    Ok(())
}

/// Echo: write back every byte read until the peer closes its side; returns the count.
pub async fn echo<S: Read + Write>(s: &mut S) -> Result<u64, S::Error> {
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(echoed);
        }
        s.write_all(&buf[..n]).await?;
        echoed += n as u64;
    }
}

/// One HTTP/1.1 exchange: read the request head (at most 1 KiB), answer `GET /hello`
/// with 200 and `hello`, another path with 404, anything else with 400; returns the
/// status sent. The connection is not kept alive.
pub async fn http<S: Read + Write>(s: &mut S) -> Result<u16, S::Error> {
    let mut head = [0u8; 1024];
    let mut len = 0;
    while len < head.len() && !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut head[len..]).await? {
            0 => break,
            n => len += n,
        }
    }
    let status = route(&head[..len]);
    s.write_all(response(status)).await?;
    s.flush().await?;
    Ok(status)
}

/// The whole response for `status` (200, 404, else 400): head and a short text body.
pub fn response(status: u16) -> &'static [u8] {
    match status {
        200 => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\nhello\n",
        404 => b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 10\r\n\r\nnot found\n",
        _ => b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 12\r\n\r\nbad request\n",
    }
}

/// The status for a request head: 200 for `GET /hello`, 404 for another path, 400 for a
/// head that is not a complete `GET` request.
pub fn route(head: &[u8]) -> u16 {
    if !head.ends_with(b"\r\n\r\n") {
        return 400;
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    match (words.next(), words.next(), words.next()) {
        (Some(b"GET"), Some(b"/hello"), Some(b"HTTP/1.1" | b"HTTP/1.0")) => 200,
        (Some(b"GET"), Some([b'/', ..]), Some(b"HTTP/1.1" | b"HTTP/1.0")) => 404,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_futures::select::select;
    use xenpv_net::loopback;

    #[test]
    fn requests_are_routed() {
        assert_eq!(route(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(route(b"GET /other HTTP/1.0\r\n\r\n"), 404);
        assert_eq!(route(b"POST /hello HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(route(b"GET /hello HTTP/1.1\r\n"), 400, "an unfinished head");
    }

    #[test]
    fn each_response_announces_its_body_length() {
        for status in [200, 404, 400] {
            let text = core::str::from_utf8(response(status)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
            assert!(
                head.ends_with(&format!("Content-Length: {}", body.len())),
                "{head}"
            );
        }
    }

    async fn connect(stack: &Stack, port: u16) -> TcpStream {
        let to = loopback::endpoint(port);
        TcpStream::connect(stack, to).await.expect("connect")
    }

    /// GET `path` on the loopback; the whole answer (the server closes).
    async fn get(stack: &Stack, path: &str) -> String {
        let mut c = connect(stack, HTTP_PORT).await;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        c.write_all(request.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("read");
        c.close().await;
        String::from_utf8(got).expect("a text answer")
    }

    /// Send `bytes` to the echo service a chunk at a time; what came back.
    async fn echoed(stack: &Stack, bytes: &[u8]) -> Vec<u8> {
        let mut c = connect(stack, ECHO_PORT).await;
        let mut back = vec![0u8; bytes.len()];
        for (out, back) in bytes.chunks(1000).zip(back.chunks_mut(1000)) {
            c.write_all(out).await.expect("write");
            c.read_exact(back).await.expect("the echo");
        }
        c.close().await;
        back
    }

    #[test]
    fn the_services_answer_over_the_loopback() {
        loopback::run(|stack| async move {
            let clients = async {
                let hello = get(&stack, "/hello").await;
                assert!(hello.starts_with("HTTP/1.1 200 OK\r\n"), "{hello}");
                assert!(hello.ends_with("\r\n\r\nhello\n"), "{hello}");
                let other = get(&stack, "/hello/there").await;
                assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
                let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
                let back = echoed(&stack, &bytes).await;
                let differs = back.iter().zip(&bytes).position(|(b, s)| b != s);
                assert_eq!(differs, None, "the first byte echoed wrong");
            };
            select(serve(&stack, 2), clients).await;
        });
    }
}
