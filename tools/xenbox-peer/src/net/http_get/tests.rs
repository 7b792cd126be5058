//! http-get against the test servers of [`crate::net::testsrv`]: honest, keep-alive,
//! chunked and lying ones.
use std::time::{Duration, Instant};

use crate::args::Usage;
use crate::data::{fnv1a64, FNV_OFFSET};
use crate::net::testsrv::{cmd, http, http_canned, HttpMode};

/// The contents of an `n`-byte file.
fn file(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 % 251) as u8).collect()
}

/// The FNV-1a 64 of `b` as --expect-file and X-Checksum-FNV1a64 spell it.
fn fnv(b: &[u8]) -> String {
    format!("{:016x}", fnv1a64(FNV_OFFSET, b))
}

/// The --expect-file value for `b`.
fn expect(b: &[u8]) -> String {
    format!("{}:{}", b.len(), fnv(b))
}

/// A server answering 200 with these header lines (each ending in CRLF), then `body`.
fn files(headers: &str, body: &[u8]) -> String {
    http_canned(
        &format!("HTTP/1.1 200 OK\r\nServer: testsrv\r\n{headers}Connection: close\r\n"),
        body,
    )
}

/// A server answering as the appliance does for a file with contents `body`.
fn honest_file(body: &[u8]) -> String {
    files(
        &format!(
            "Content-Length: {}\r\nX-Checksum-FNV1a64: {}\r\n",
            body.len(),
            fnv(body)
        ),
        body,
    )
}

/// The message `args` are refused with; checks that the program exits 2 on them.
fn refused(args: &[&str]) -> String {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    assert_eq!(crate::main_with(&argv), 2, "{args:?}");
    let c = crate::command(args[0]).unwrap();
    match crate::run_command(c, &argv[1..]) {
        Err(Usage::Bad(m)) => m,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn passes_against_an_honest_server() {
    let a = http(HttpMode::Honest);
    let v = cmd(&[
        "http-get",
        &a,
        "/bytes/3000000",
        "--verify-bytes",
        "--conns",
        "3",
    ]);
    assert!(v.passed(), "{v}");
    assert_eq!(v.get("bytes"), Some("9000000"));
    assert_eq!(v.get("status"), Some("200"));
    let v = cmd(&["http-get", &a, "/bytes/0", "--verify-bytes"]);
    assert!(v.passed(), "{v}");
    assert_eq!(v.get("fnv"), Some("cbf29ce484222325"));
    let v = cmd(&["http-get", &a, "/"]);
    assert!(v.passed(), "{v}");
    let v = cmd(&["http-get", &a, "/nope", "--expect-status", "404"]);
    assert!(v.passed(), "{v}");
}

#[test]
fn handles_keep_alive_and_chunked_servers() {
    let a = http(HttpMode::KeepAlive);
    let v = cmd(&[
        "http-get",
        &a,
        "/bytes/100000",
        "--verify-bytes",
        "--timeout",
        "5",
    ]);
    assert!(v.passed(), "{v}");
    let a = http(HttpMode::Chunked);
    let v = cmd(&["http-get", &a, "/"]);
    assert!(v.passed(), "{v}");
    let v = cmd(&["http-get", &a, "/bytes/100000"]);
    assert!(v.passed(), "{v}");
    assert_eq!(v.get("bytes"), Some("100000"));
    // --verify-bytes insists on a Content-Length.
    let v = cmd(&["http-get", &a, "/bytes/100000", "--verify-bytes"]);
    assert_eq!(v.reason(), Some("content-length"), "{v}");
}

#[test]
fn fails_on_a_wrong_status() {
    let a = http(HttpMode::Honest);
    let v = cmd(&["http-get", &a, "/nope"]);
    assert_eq!(v.reason(), Some("status"), "{v}");
    let v = cmd(&["http-get", &a, "/", "--expect-status", "404"]);
    assert_eq!(v.reason(), Some("status"), "{v}");
    let a = http(HttpMode::EmptyRoot);
    let v = cmd(&["http-get", &a, "/"]);
    assert_eq!(v.reason(), Some("empty-body"), "{v}");
}

#[test]
fn fails_on_a_flipped_byte() {
    let a = http(HttpMode::FlipAt(77_777));
    let v = cmd(&[
        "http-get",
        &a,
        "/bytes/100000",
        "--verify-bytes",
        "--conns",
        "2",
    ]);
    assert_eq!(v.reason(), Some("body-mismatch"), "{v}");
    assert!(v.get("detail").unwrap().ends_with("offset 77777"), "{v}");
    assert_eq!(v.get("ok"), Some("0"), "{v}");
}

#[test]
fn fails_on_a_wrong_checksum_header() {
    let a = http(HttpMode::WrongChecksum);
    let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
    assert_eq!(v.reason(), Some("checksum"), "{v}");
}

#[test]
fn fails_on_a_wrong_content_length() {
    let a = http(HttpMode::LengthPlus(10));
    let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
    assert_eq!(v.reason(), Some("content-length"), "{v}");
    let v = cmd(&["http-get", &a, "/bytes/5000"]);
    assert_eq!(v.reason(), Some("short-body"), "{v}");
    let a = http(HttpMode::LengthMinus(10));
    let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
    assert_eq!(v.reason(), Some("content-length"), "{v}");
    let v = cmd(&["http-get", &a, "/bytes/5000"]);
    assert_eq!(v.reason(), Some("extra-bytes"), "{v}");
}

#[test]
fn a_silent_server_fails_within_the_timeout() {
    let a = http(HttpMode::Silent);
    let t = Instant::now();
    let v = cmd(&["http-get", &a, "/", "--conns", "4", "--timeout", "0.8"]);
    assert_eq!(v.reason(), Some("timeout"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn expect_file_passes_for_a_good_file() {
    for n in [0, 1, 4096, 300_000] {
        let f = file(n);
        let a = honest_file(&f);
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("status"), Some("200"), "{v}");
        assert_eq!(v.get("fnv"), Some(fnv(&f).as_str()), "{v}");
        assert_eq!(v.get("bytes"), Some(n.to_string().as_str()), "{v}");
        let line = format!(
            "peer: http-get PASS status=200 fnv={} bytes={n} conns=1 ok=1 elapsed_ms=",
            fnv(&f)
        );
        assert!(v.to_string().starts_with(&line), "{v}");
    }
    // An empty body is fine here: its FNV is the offset basis.
    let a = honest_file(b"");
    let v = cmd(&[
        "http-get",
        &a,
        "/files/empty",
        "--expect-file=0:cbf29ce484222325",
        "--expect-status",
        "200",
    ]);
    assert!(v.passed(), "{v}");
    assert_eq!(v.get("fnv"), Some("cbf29ce484222325"), "{v}");
    // Header names in any case, several connections.
    let f = file(10_000);
    let a = files(
        &format!(
            "content-length: 10000\r\nx-checksum-fnv1a64: {}\r\n",
            fnv(&f)
        ),
        &f,
    );
    let v = cmd(&[
        "http-get",
        &a,
        "/files/f",
        "--expect-file",
        &expect(&f),
        "--conns",
        "3",
    ]);
    assert!(v.passed(), "{v}");
    assert_eq!(v.get("bytes"), Some("30000"), "{v}");
}

#[test]
fn expect_file_fails_on_a_wrong_status() {
    let a = http_canned(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n",
        b"not found",
    );
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(b"")]);
    assert_eq!(v.reason(), Some("status"), "{v}");
}

#[test]
fn expect_file_fails_on_a_wrong_length() {
    let f = file(1000);
    let sum = fnv(&f);
    // The file has 1000 bytes and the server says so: expected otherwise.
    let a = honest_file(&f);
    for want in [format!("1001:{sum}"), format!("999:{sum}"), expect(b"")] {
        let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &want]);
        assert_eq!(v.reason(), Some("content-length"), "{v}");
    }
    // No Content-Length (the body ends at EOF).
    let a = files(&format!("X-Checksum-FNV1a64: {sum}\r\n"), &f);
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
    assert_eq!(v.reason(), Some("content-length"), "{v}");
    // The right Content-Length, the wrong number of bytes.
    let head = format!("Content-Length: 1000\r\nX-Checksum-FNV1a64: {sum}\r\n");
    let a = files(&head, &f[..999]);
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
    assert_eq!(v.reason(), Some("short-body"), "{v}");
    let a = files(&head, &[&f[..], b"x"].concat());
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
    assert_eq!(v.reason(), Some("extra-bytes"), "{v}");
    // Chunked (which wins over Content-Length) with one byte fewer.
    let mut body = format!("{:x}\r\n", 999).into_bytes();
    body.extend_from_slice(&f[..999]);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let a = files(&format!("{head}Transfer-Encoding: chunked\r\n"), &body);
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
    assert_eq!(v.reason(), Some("body-length"), "{v}");
}

#[test]
fn expect_file_fails_on_a_wrong_body_byte() {
    let f = file(100_000);
    let mut g = f.clone();
    g[77_777] ^= 0x10;
    // The header has the file's checksum (read before the body went wrong) ...
    let a = files(
        &format!(
            "Content-Length: 100000\r\nX-Checksum-FNV1a64: {}\r\n",
            fnv(&f)
        ),
        &g,
    );
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
    assert_eq!(v.reason(), Some("body-checksum"), "{v}");
    assert_eq!(v.get("fnv"), None, "{v}");
    // ... or the body's own: either way, it is not the file expected.
    let a = honest_file(&g);
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
    assert_eq!(v.reason(), Some("body-checksum"), "{v}");
    let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&g)]);
    assert!(v.passed(), "{v}");
    // An empty body, expected with another checksum.
    let a = honest_file(b"");
    let v = cmd(&[
        "http-get",
        &a,
        "/files/f",
        "--expect-file",
        "0:0000000000000000",
    ]);
    assert_eq!(v.reason(), Some("body-checksum"), "{v}");
}

#[test]
fn expect_file_fails_on_a_missing_or_wrong_checksum_header() {
    for f in [file(5000), file(0)] {
        let n = f.len();
        let sum = fnv1a64(FNV_OFFSET, &f);
        let wrong = [
            String::new(),
            format!("X-Checksum-FNV1a64: {:016x}\r\n", sum ^ 1),
            format!("X-Checksum-FNV1a64: {sum:016X}\r\n"),
            format!("X-Checksum-FNV1a64: {sum:x}0\r\n"),
            "X-Checksum-FNV1a64:\r\n".to_string(),
        ];
        for h in wrong {
            let a = files(&format!("Content-Length: {n}\r\n{h}"), &f);
            let v = cmd(&["http-get", &a, "/files/f", "--expect-file", &expect(&f)]);
            assert_eq!(v.reason(), Some("checksum"), "{h:?}: {v}");
        }
    }
}

#[test]
fn expect_file_refuses_malformed_values_and_verify_bytes() {
    let a = "127.0.0.1:1";
    for bad in [
        "",
        "5",
        "5:",
        ":cbf29ce484222325",
        "x:cbf29ce484222325",
        "+5:cbf29ce484222325",
        "-5:cbf29ce484222325",
        "5K:cbf29ce484222325",
        "0x10:cbf29ce484222325",
        " 5:cbf29ce484222325",
        "99999999999999999999:cbf29ce484222325",
        "5:CBF29CE484222325",
        "5:cbf29ce48422232",
        "5:cbf29ce4842223250",
        "5:0xcbf29ce4842223",
        "5:cbf29ce48422232g",
        "5:cbf29ce484222325:1",
        "5:cbf29ce484222325 ",
    ] {
        let m = refused(&["http-get", a, "/files/f", "--expect-file", bad]);
        assert!(m.starts_with("--expect-file: "), "{m}");
        assert!(m.ends_with(&format!("got {bad:?}")), "{m}");
    }
    let m = refused(&["http-get", a, "/files/f", "--expect-file"]);
    assert_eq!(m, "--expect-file needs a value (LEN:FNV)");
    let m = refused(&[
        "http-get",
        a,
        "/bytes/5",
        "--verify-bytes",
        "--expect-file",
        "5:cbf29ce484222325",
    ]);
    assert!(
        m.contains("--expect-file") && m.contains("--verify-bytes"),
        "{m}"
    );
    let m = refused(&[
        "http-get",
        a,
        "/files/f",
        "--expect-file",
        "5:cbf29ce484222325",
        "--expect-status",
        "404",
    ]);
    assert!(m.starts_with("--expect-file: ") && m.contains("404"), "{m}");
}

#[test]
fn expect_cut_passes_only_for_a_body_cut_short() {
    // The server closes 10 bytes short of its Content-Length: cut by a close.
    let a = http(HttpMode::LengthPlus(10));
    let dir = std::env::temp_dir().join(format!("http-get-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let started = dir.join("started");
    let v = cmd(&[
        "http-get",
        &a,
        "/bytes/300000",
        "--expect-cut",
        "--started-file",
        started.to_str().unwrap(),
    ]);
    assert!(v.passed(), "{v}");
    assert_eq!(v.get("cut"), Some("close"), "{v}");
    assert_eq!(v.get("bytes"), Some("300000"), "{v}");
    let said = std::fs::read_to_string(&started).unwrap();
    assert!(said.starts_with("started "), "{said:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    // A whole body is a FAIL, and so is a server that never cuts (a timeout).
    let v = cmd(&[
        "http-get",
        &http(HttpMode::Honest),
        "/bytes/5000",
        "--expect-cut",
    ]);
    assert_eq!(v.reason(), Some("not-cut"), "{v}");
    let v = cmd(&[
        "http-get",
        &http(HttpMode::Silent),
        "/",
        "--expect-cut",
        "--timeout",
        "0.8",
    ]);
    assert_eq!(v.reason(), Some("timeout"), "{v}");
    let m = refused(&["http-get", &a, "/", "--expect-cut", "--conns", "2"]);
    assert!(m.contains("--expect-cut"), "{m}");
}

#[test]
fn no_checksum_header_still_checks_the_body() {
    // busybox httpd serving the pattern as a file: no X-Checksum-FNV1a64.
    let mut b = vec![0u8; 5000];
    crate::data::pattern_fill(0, &mut b);
    let a = files("Content-Length: 5000\r\n", &b);
    let v = cmd(&["http-get", &a, "/bytes/5000", "--verify-bytes"]);
    assert_eq!(v.reason(), Some("checksum"), "{v}");
    // Both ways of checking a body, without the header.
    let want = expect(&b);
    let ways: [&[&str]; 2] = [
        &["/bytes/5000", "--verify-bytes"],
        &["/files/f", "--expect-file", &want],
    ];
    let get = |a: &str, way: &[&str]| {
        let args = [&["http-get", a][..], way, &["--no-checksum-header"]].concat();
        cmd(&args)
    };
    for way in ways {
        let v = get(&a, way);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("fnv"), Some(fnv(&b).as_str()), "{v}");
    }
    // The body is still checked: a wrong byte, a wrong checksum.
    let mut bad = b.clone();
    bad[4321] ^= 1;
    let a = files("Content-Length: 5000\r\n", &bad);
    for (way, why) in ways.iter().zip(["body-mismatch", "body-checksum"]) {
        let v = get(&a, way);
        assert_eq!(v.reason(), Some(why), "{v}");
    }
    let e = refused(&["http-get", "127.0.0.1:1", "/", "--no-checksum-header"]);
    assert!(e.contains("--verify-bytes or --expect-file"), "{e}");
}
