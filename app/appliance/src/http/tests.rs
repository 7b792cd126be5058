use super::*;

#[test]
fn no_bytes_head_waits_for_more_than_one_checkpoint_step_of_hashing() {
    // H1: the head of the largest `/bytes/N` carries its checksum; past the table
    // (256 MiB) that meant hashing gigabytes inline before the head went out.
    use crate::pattern::{checksum_work, CHECKPOINT_STEP};
    for n in [BYTES_MAX, BYTES_MAX - 1, BYTES_MAX / 2 + 12345] {
        let work = checksum_work(n);
        assert!(
            work <= CHECKPOINT_STEP,
            "GET /bytes/{n} hashes {work} bytes before its head (budget {CHECKPOINT_STEP})"
        );
    }
}

#[test]
fn a_file_checksum_reads_at_most_its_budget_per_round() {
    // H1: `GET /files/PATH` read the whole file for its checksum inline.
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7) as u8).collect();
    let log = std::cell::RefCell::new(vec![]);
    let mut sum = FileSum::new(data.len() as u64);
    let mut rounds = 0;
    let checksum = loop {
        log.borrow_mut().clear();
        rounds += 1;
        let r = sum.step(ROUND_BYTES, reader(&data, None, &log)).unwrap();
        let read: usize = log.borrow().iter().map(|&(_, n)| n).sum();
        assert!(
            read as u64 <= ROUND_BYTES,
            "round {rounds} read {read} bytes of the file (budget {ROUND_BYTES})"
        );
        if let Some(c) = r {
            break c;
        }
        assert!(rounds < 100, "no end");
    };
    assert_eq!(rounds, (data.len() as u64).div_ceil(ROUND_BYTES) as usize);
    assert_eq!(
        checksum,
        file_checksum(data.len() as u64, reader(&data, None, &log)).unwrap()
    );
    // A failing read: the error, and the same chunk is read again next round.
    let mut sum = FileSum::new(9000);
    let short = vec![1u8; 9000];
    assert_eq!(
        sum.step(ROUND_BYTES, reader(&short, Some(5000), &log)),
        Err("disk failed")
    );
    assert_eq!(sum.hashed(), 4096);
    let c = sum.step(ROUND_BYTES, reader(&short, None, &log)).unwrap();
    assert_eq!(
        c,
        Some(file_checksum(9000, reader(&short, None, &log)).unwrap())
    );
    // An empty file is done at once; a tiny budget still makes progress.
    assert_eq!(
        FileSum::new(0).step(0, reader(&short, None, &log)),
        Ok(Some(0xcbf2_9ce4_8422_2325))
    );
    let mut sum = FileSum::new(9000);
    assert_eq!(sum.step(1, reader(&short, None, &log)), Ok(None));
    assert_eq!(sum.hashed(), 4096);
}

#[test]
fn routes() {
    let p = |s: &'static str| match parse(s.as_bytes()) {
        Parse::Done { route, .. } => route,
        Parse::Incomplete => panic!("incomplete: {s:?}"),
    };
    assert_eq!(p("GET / HTTP/1.0\r\n\r\n"), Route::Index);
    assert_eq!(
        p("GET /bytes/67108864 HTTP/1.1\r\nA: b\r\n\r\n"),
        Route::Bytes(67108864)
    );
    assert_eq!(p("GET /bytes/ HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(p("GET /bytes/-1 HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(
        p("GET /bytes/99999999999999999999999 HTTP/1.1\r\n\r\n"),
        Route::TooLarge
    );
    assert_eq!(p("GET /bytes/4294967296 HTTP/1.1\r\n\r\n"), Route::TooLarge);
    assert_eq!(p("GET /bytes/268435457 HTTP/1.1\r\n\r\n"), Route::TooLarge);
    assert_eq!(
        p("GET /bytes/268435456 HTTP/1.1\r\n\r\n"),
        Route::Bytes(BYTES_MAX)
    );
    let r = respond(Route::TooLarge);
    assert_eq!((r.status, r.body), (400, Body::Static(BYTES_TOO_LARGE)));
    assert!(core::str::from_utf8(BYTES_TOO_LARGE)
        .unwrap()
        .contains(&BYTES_MAX.to_string()));
    assert_eq!(p("GET /filesx HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(p("GET /files HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(p("POST / HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
    assert!(matches!(p("GET / SPDY\r\n\r\n"), Route::BadRequest(_)));
    assert!(matches!(p("GET /\r\n\r\n"), Route::BadRequest(_)));
    assert!(matches!(
        p("GET / HTTP/1.1 x\r\n\r\n"),
        Route::BadRequest(_)
    ));
    let long = vec![b'a'; HEAD_MAX];
    assert!(matches!(
        parse(&long),
        Parse::Done {
            route: Route::BadRequest(_),
            ..
        }
    ));
    assert_eq!(parse(&long[..HEAD_MAX - 1]), Parse::Incomplete);
}

#[test]
fn bodies_fill_in_pieces_as_a_whole() {
    let b = Body::Pattern { len: 10_000 };
    let mut whole = vec![0u8; 10_000];
    fill_pattern(0, &mut whole);
    let mut pieces = vec![];
    let mut buf = [0u8; 777];
    loop {
        let n = b.fill(pieces.len() as u64, &mut buf);
        if n == 0 {
            break;
        }
        pieces.extend_from_slice(&buf[..n]);
    }
    assert_eq!(pieces, whole);
    let mut h = Fnv::new();
    h.update(&whole);
    assert_eq!(b.checksum(), h.finish());
    // The documented pattern: top byte of i * 0x9E3779B97F4A7C15.
    assert_eq!(&whole[..4], &[0x00, 0x9e, 0x3c, 0xda]);
    assert_eq!(Body::Pattern { len: 0 }.checksum(), 0xcbf2_9ce4_8422_2325);
}

#[test]
fn heads_carry_length_and_checksum() {
    let r = respond(Route::Bytes(5));
    let h = head(&r, r.body.checksum());
    assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(h.contains("Content-Length: 5\r\n"));
    assert!(h.contains(&format!(
        "X-Checksum-FNV1a64: {:016x}\r\n",
        r.body.checksum()
    )));
    assert!(h.ends_with("\r\n\r\n"));
    let r = respond(Route::NotFound);
    assert!(head(&r, 0).starts_with("HTTP/1.1 404 Not Found\r\n"));
    // The longest head fits.
    let r = respond(Route::Bytes(BYTES_MAX));
    assert!(head(&r, u64::MAX).contains("Connection: close"));
}

/// The route of a GET of `path` (raw bytes), as a verdict: the file path, or why not.
fn file_route(path: &[u8]) -> Result<String, String> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(path);
    req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    match parse(&req) {
        Parse::Done {
            route: Route::File(p),
            ..
        } => Ok(p.absolute().to_string()),
        Parse::Done {
            route: Route::BadRequest(why),
            ..
        } => Err(why.to_string()),
        other => panic!("{path:?}: {other:?}"),
    }
}

#[test]
fn file_paths_are_checked() {
    for ok in [
        "a",
        "a/b.txt",
        "A-Z_0.9/x-y_z",
        "nested/dir/deeper/inner.bin",
        ".hidden",
        "...",
        "a..b/..c/d..",
        "-",
    ] {
        assert_eq!(
            file_route(format!("/files/{ok}").as_bytes()),
            Ok(format!("/{ok}"))
        );
    }
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(longest.len(), FILE_PATH_MAX);
    assert_eq!(
        file_route(format!("/files/{longest}").as_bytes()),
        Ok(format!("/{longest}"))
    );
    let bad = |p: &str, why: &str| {
        let got = file_route(format!("/files/{p}").as_bytes());
        assert!(
            matches!(&got, Err(w) if w.contains(why)),
            "{p:?}: {got:?}, wanted an error with {why:?}"
        );
    };
    bad("", "empty");
    bad(&"a".repeat(FILE_PATH_MAX + 1), "longer than 255");
    bad(&format!("{longest}c"), "longer than 255");
    bad("/a", "empty component");
    bad("a/", "empty component");
    bad("a//b", "empty component");
    bad("/", "empty component");
    bad(".", ". or ..");
    bad("..", ". or ..");
    bad("./a", ". or ..");
    bad("a/.", ". or ..");
    bad("a/../b", ". or ..");
    bad("../etc/passwd", ". or ..");
    bad("a%2fb", "outside");
    bad("%2e%2e/x", "outside");
    bad("a?b=c", "outside");
    bad("a#b", "outside");
    bad("a\\b", "outside");
    bad("a:b", "outside");
    bad("~", "outside");
    bad("caf\u{e9}", "outside");
    // Every byte in the middle of a name: allowed exactly when in [A-Za-z0-9._/-].
    for b in 0..=255u8 {
        let mut path = b"/files/x".to_vec();
        path.extend_from_slice(&[b, b'y']);
        let allowed = b.is_ascii_alphanumeric() || b"._/-".contains(&b);
        assert_eq!(file_route(&path).is_ok(), allowed, "byte {b:#04x}");
    }
    // Not under /files/: as before.
    let route = |s: &'static str| match parse(s.as_bytes()) {
        Parse::Done { route, .. } => route,
        Parse::Incomplete => panic!("incomplete: {s:?}"),
    };
    assert_eq!(route("GET /files HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(route("GET /Files/a HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(
        route("POST /files/a HTTP/1.1\r\n\r\n"),
        Route::MethodNotAllowed
    );
    assert!(matches!(
        route("GET /files/../x HTTP/1.1\r\n\r\n"),
        Route::BadRequest(_)
    ));
    let r = respond(route("GET /files/.. HTTP/1.1\r\n\r\n"));
    assert_eq!((r.status, r.reason), (400, "Bad Request"));
    // The accessors.
    let p = FilePath::new("/docs/a.txt").unwrap();
    assert_eq!((p.as_str(), p.absolute()), ("docs/a.txt", "/docs/a.txt"));
    assert_eq!(p.components().collect::<Vec<_>>(), ["docs", "a.txt"]);
    assert!(FilePath::new("docs/a.txt").is_err(), "not absolute");
    assert!(FilePath::new("/docs/../a.txt").is_err());
}

/// A file in memory as the guest's `read`: fills all of `out` from `at`, or fails
/// past the end or at `fail_at`; logs each call.
fn reader<'d>(
    data: &'d [u8],
    fail_at: Option<u64>,
    log: &'d std::cell::RefCell<Vec<(u64, usize)>>,
) -> impl FnMut(u64, &mut [u8]) -> Result<(), &'static str> + 'd {
    move |at, out| {
        log.borrow_mut().push((at, out.len()));
        if fail_at.is_some_and(|f| at + out.len() as u64 > f) {
            return Err("disk failed");
        }
        let at = at as usize;
        out.copy_from_slice(data.get(at..at + out.len()).ok_or("past the end")?);
        Ok(())
    }
}

#[test]
fn files_answer_with_length_checksum_and_their_bytes() {
    let data: Vec<u8> = (0..10_007u32).map(|i| (i * 7 + i / 300) as u8).collect();
    let log = std::cell::RefCell::new(vec![]);
    let len = data.len() as u64;
    let checksum = file_checksum(len, reader(&data, None, &log)).unwrap();
    let mut h = Fnv::new();
    h.update(&data);
    assert_eq!(checksum, h.finish());
    // One pass, in order, chunks of at most 4 KiB, never past the end.
    assert_eq!(
        *log.borrow(),
        [(0, 4096), (4096, 4096), (8192, 10_007 - 8192)]
    );
    let r = respond_file(Opened::File { len, checksum });
    assert_eq!((r.status, r.reason), (200, "OK"));
    assert_eq!(r.body, Body::File { len, checksum });
    assert_eq!((r.body.len(), r.body.checksum()), (len, checksum));
    let h = head(&r, r.body.checksum());
    assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(h.contains("Content-Type: application/octet-stream\r\n"));
    assert!(h.contains("Content-Length: 10007\r\n"));
    assert!(h.contains(&format!("X-Checksum-FNV1a64: {checksum:016x}\r\n")));
    assert!(h.ends_with("Connection: close\r\n\r\n"));

    // The body in odd chunks: exactly the file, `read` asked only for what is left.
    for room in [1, 777, 4096, 20_000] {
        log.borrow_mut().clear();
        let mut read = reader(&data, None, &log);
        let (mut sent, mut buf) = (vec![], vec![0u8; room]);
        loop {
            let n = r
                .body
                .fill_with(sent.len() as u64, &mut buf, &mut read)
                .unwrap();
            if n == 0 {
                break;
            }
            sent.extend_from_slice(&buf[..n]);
        }
        assert!(sent == data, "chunks of {room}");
        let calls = log.borrow();
        assert_eq!(calls.len(), data.len().div_ceil(room));
        assert!(calls.iter().all(|&(at, n)| n > 0 && at + n as u64 <= len));
    }
    // Past the end, or into an empty buffer: nothing, and `read` is not asked.
    log.borrow_mut().clear();
    let mut read = reader(&data, None, &log);
    assert_eq!(r.body.fill_with(len, &mut [0; 8], &mut read), Ok(0));
    assert_eq!(r.body.fill_with(len + 5, &mut [0; 8], &mut read), Ok(0));
    assert_eq!(r.body.fill_with(0, &mut [], &mut read), Ok(0));
    assert!(log.borrow().is_empty());
    // Its bytes are the caller's: `fill` has none.
    assert_eq!(r.body.fill(0, &mut [0; 8]), 0);
}

#[test]
fn file_failures_and_other_bodies() {
    let data = vec![5u8; 9000];
    let log = std::cell::RefCell::new(vec![]);
    // A read error ends the checksum pass and comes back as is.
    assert_eq!(
        file_checksum(9000, reader(&data, Some(5000), &log)),
        Err("disk failed")
    );
    // A file shorter than it said: the reader's error, not a short checksum.
    assert_eq!(
        file_checksum(9001, reader(&data, None, &log)),
        Err("past the end")
    );
    // An empty file: the offset basis, `read` never asked.
    log.borrow_mut().clear();
    let c = file_checksum(0, reader(&data, None, &log)).unwrap();
    assert_eq!(c, 0xcbf2_9ce4_8422_2325);
    assert!(log.borrow().is_empty());
    let r = respond_file(Opened::File {
        len: 0,
        checksum: c,
    });
    assert!(head(&r, r.body.checksum()).contains("Content-Length: 0\r\n"));
    // Streaming: the error of `read` is the caller's.
    let b = Body::File {
        len: 9000,
        checksum: 0,
    };
    let mut buf = [0u8; 4096];
    let mut read = reader(&data, Some(5000), &log);
    assert_eq!(b.fill_with(0, &mut buf, &mut read), Ok(4096));
    assert_eq!(b.fill_with(4096, &mut buf, &mut read), Err("disk failed"));
    // Missing, or failed.
    let r = respond_file(Opened::NotFound);
    assert_eq!((r.status, r.body), (404, Body::Static(b"not found\n")));
    let r = respond_file(Opened::Unavailable { left_ns: 1 });
    assert_eq!((r.status, r.body.len()), (503, 44));
    assert!(head(&r, r.body.checksum()).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    let r = respond_file(Opened::Failed);
    assert_eq!((r.status, r.reason), (500, "Internal Server Error"));
    assert!(head(&r, r.body.checksum()).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    // A guest with no files answers a checked path 404, as before.
    let p = FilePath::new("/a").unwrap();
    assert_eq!(respond(Route::File(p)).status, 404);
    // The other bodies stream through `fill_with` as through `fill`, `read` unasked.
    for b in [Body::Pattern { len: 5000 }, Body::Static(INDEX)] {
        let (mut a, mut c) = ([0u8; 999], [0u8; 999]);
        let n = b.fill_with(100, &mut a, |_, _| Err("asked")).unwrap();
        assert_eq!(n, b.fill(100, &mut c));
        assert_eq!(a, c);
    }
}

#[test]
fn the_heap_probe_route() {
    fn p(s: &str) -> Route<'_> {
        match parse(s.as_bytes()) {
            Parse::Done { route, .. } => route,
            Parse::Incomplete => panic!("incomplete"),
        }
    }
    assert_eq!(p("GET /heap/150 HTTP/1.1\r\n\r\n"), Route::Heap(150));
    assert_eq!(p("GET /heap/0 HTTP/1.1\r\n\r\n"), Route::Heap(0));
    assert_eq!(p("GET /heap/ HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(p("GET /heap/x1 HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert!(matches!(
        p("GET /heap/99999999999999999999999 HTTP/1.1\r\n\r\n"),
        Route::BadRequest(_)
    ));
    assert!(matches!(
        p("GET /heap/1048577 HTTP/1.1\r\n\r\n"),
        Route::BadRequest(_)
    ));
    // Off (no `heap-probe`): 404, as for any unknown path.
    assert_eq!(respond(Route::Heap(150)).status, 404);
    assert_eq!(respond_heap(150, HeapProbe::Off).status, 404);
    let body = |r: &Response| {
        let mut out = vec![0u8; r.body.len() as usize];
        assert_eq!(r.body.fill(0, &mut out), out.len());
        String::from_utf8(out).unwrap()
    };
    let ok = respond_heap(150, HeapProbe::Ok);
    assert_eq!((ok.status, body(&ok).as_str()), (200, "heap: 150 MiB ok\n"));
    let h = head(&ok, ok.body.checksum());
    assert!(
        h.contains("Content-Length: 17\r\n") && h.contains("text/plain"),
        "{h}"
    );
    let why = "memory allocation failed because the memory allocator returned an error, at length";
    let no = respond_heap(4096, HeapProbe::Failed(why));
    let b = body(&no);
    assert_eq!(no.status, 507);
    assert!(b.starts_with("heap: 4096 MiB failed: memory allocation") && b.ends_with('\n'));
    assert!(b.len() < LINE_MAX, "cut to fit: {b:?}");
    // Read in pieces, as a socket takes it.
    let mut got = vec![];
    let mut at = 0u64;
    while at < no.body.len() {
        let mut c = [0u8; 7];
        let n = no.body.fill(at, &mut c);
        got.extend_from_slice(&c[..n]);
        at += n as u64;
    }
    assert_eq!(String::from_utf8(got).unwrap(), b);
}

#[test]
fn the_state_and_records_routes() {
    fn p(s: &str) -> Route<'_> {
        match parse(s.as_bytes()) {
            Parse::Done { route, .. } => route,
            Parse::Incomplete => panic!("incomplete"),
        }
    }
    assert_eq!(p("GET /state HTTP/1.1\r\n\r\n"), Route::State);
    assert_eq!(p("GET /records HTTP/1.1\r\n\r\n"), Route::Records);
    assert_eq!(p("GET /state/x HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(p("GET /recordsx HTTP/1.1\r\n\r\n"), Route::NotFound);
    // A guest that keeps neither: 404.
    assert_eq!(respond(Route::State).status, 404);
    assert_eq!(respond(Route::Records).status, 404);
    let r = respond_line("ticks=5 mono_ns=7");
    let mut out = vec![0u8; r.body.len() as usize];
    r.body.fill(0, &mut out);
    assert_eq!(
        (r.status, out.as_slice()),
        (200, b"ticks=5 mono_ns=7\n".as_slice())
    );
    // Cut to fit, the newline kept, at a character boundary.
    let long = "é".repeat(200);
    let r = respond_line(&long);
    let mut out = vec![0u8; r.body.len() as usize];
    r.body.fill(0, &mut out);
    let s = String::from_utf8(out).unwrap();
    assert!(s.len() <= LINE_MAX && s.ends_with("é\n"), "{s:?}");
}
