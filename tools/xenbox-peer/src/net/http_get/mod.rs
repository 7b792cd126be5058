//! `http-get HOST:PORT PATH`: fetch PATH over concurrent HTTP/1.1 connections, check the
//! status and (for the appliance's `/bytes/N`, or a `/files/PATH` whose length and FNV-1a
//! 64 are known) the length, contents and `X-Checksum-FNV1a64` header of the body. Bodies
//! are streamed, never held in memory.
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    check_addr, connect_from, extra_bytes, mbit_s, millis, reason, resolve, write_all, Deadline,
};
use crate::args::{bad, Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::FNV_OFFSET;
use crate::verdict::{progress, Verdict};

mod response;
use response::{chunked, exactly, Body};
pub(crate) use response::{head, Fail, Reader};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "http-get",
    args: &["HOST:PORT", "PATH"],
    about: "GET PATH from the HTTP server at HOST:PORT over --conns concurrent connections\n\
            (HTTP/1.1, Connection: close; bodies delimited by Content-Length, chunked encoding\n\
            or EOF) and check that the status is --expect-status and, if it is 200, that the\n\
            body is not empty. With --verify-bytes (PATH must be /bytes/N), also check that\n\
            Content-Length is N, the body is the appliance's pattern (byte i =\n\
            (i * 0x9E3779B97F4A7C15) >> 56) and X-Checksum-FNV1a64 is the FNV-1a 64 of the body\n\
            received. With --expect-file LEN:FNV (for the appliance's /files/PATH: LEN decimal\n\
            bytes, FNV the file's FNV-1a 64 as 16 lowercase hex digits; not with\n\
            --verify-bytes), check instead that the status is 200, Content-Length is LEN, the\n\
            body has LEN bytes (0 is fine) and FNV-1a 64 FNV, and X-Checksum-FNV1a64 is the\n\
            FNV-1a 64 of the body received (with --no-checksum-header, for a server that sends\n\
            none such as busybox httpd, the header is not asked for; the body still is checked).\n\
            No bytes may follow the body. Reports status, fnv\n\
            (the body's FNV-1a 64, with --verify-bytes or --expect-file), bytes (bodies, all\n\
            connections), elapsed_ms and mbit_s.\n\
            With --expect-cut (one connection, status 200), the body must NOT come whole: the\n\
            server must end the connection mid-body (a reset or a close; `cut=` says which),\n\
            the bytes that came still checked with --verify-bytes; a hang is a timeout FAIL.\n\
            --started-file FILE is written (`started BYTES`) once 256 KiB of the body came.",
    opts: &[
        Opt::val(
            "expect-status",
            "CODE",
            "200",
            "the status every response must have",
        ),
        Opt::val(
            "conns",
            "C",
            "1",
            "concurrent connections, one request each",
        ),
        Opt::flag(
            "verify-bytes",
            "check a /bytes/N body, its length and checksum header",
        ),
        Opt {
            name: "expect-file",
            value: Some("LEN:FNV"),
            default: None,
            required: false,
            help: "check a 200 body of LEN bytes with FNV-1a 64 FNV, and its checksum header",
        },
        Opt::flag(
            "no-checksum-header",
            "with --verify-bytes or --expect-file: the server sends no X-Checksum-FNV1a64 (busybox httpd); the body is still checked",
        ),
        Opt::flag(
            "expect-cut",
            "the server must cut the body short (reset or close), not complete it or hang",
        ),
        Opt {
            name: "started-file",
            value: Some("FILE"),
            default: None,
            required: false,
            help: "write FILE once 256 KiB of the body came (a script waits for it)",
        },
        TIMEOUT,
    ],
};

/// What the body must be, with --verify-bytes or --expect-file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expect {
    /// Its length, which Content-Length must announce too.
    len: u64,
    /// Whether it must be the `/bytes/N` pattern (--verify-bytes).
    pattern: bool,
    /// Its FNV-1a 64, if known (--expect-file).
    fnv: Option<u64>,
    /// Whether X-Checksum-FNV1a64 must come with it (not with --no-checksum-header).
    header: bool,
}

/// What the test wants of each response.
pub(crate) struct Want {
    pub(crate) status: u16,
    /// `None`: any body (but not an empty one with status 200).
    pub(crate) body: Option<Expect>,
    /// The body must be cut short by the server (--expect-cut).
    pub(crate) cut: bool,
    /// Written once the body has started (--started-file).
    pub(crate) started: Option<std::path::PathBuf>,
}

/// The value of --expect-file, `LEN:FNV`: LEN decimal, FNV 16 lowercase hex digits.
fn expect_file(v: &str) -> Option<Expect> {
    let (len, fnv) = v.split_once(':')?;
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fnv.len() != 16 || !fnv.bytes().all(hex) {
        return None;
    }
    Some(Expect {
        len: len.parse().ok()?,
        pattern: false,
        fnv: Some(u64::from_str_radix(fnv, 16).ok()?),
        header: true,
    })
}

/// The X-Checksum-FNV1a64 header `sum` must be there and be the body's `fnv`.
fn checksum_header(sum: Option<&str>, fnv: u64) -> Result<(), Fail> {
    let Some(sum) = sum else {
        return Err(Fail("checksum", "no X-Checksum-FNV1a64 header".into()));
    };
    let valid = sum.len() == 16 && sum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid || u64::from_str_radix(sum, 16).ok() != Some(fnv) {
        return Err(Fail(
            "checksum",
            format!("X-Checksum-FNV1a64 {sum:?}, body's is {fnv:016x}"),
        ));
    }
    Ok(())
}

/// One successful request.
pub(crate) struct Got {
    pub(crate) status: u16,
    pub(crate) len: u64,
    fnv: u64,
    done: Instant,
    /// How the server cut the body short (--expect-cut): `reset` or `close`.
    cut: Option<&'static str>,
}

/// One request for `path` (from the local address `from`, if given), checked against
/// `want`.
pub(crate) fn one(
    addr: SocketAddr,
    from: Option<IpAddr>,
    host: &str,
    path: &str,
    want: &Want,
    d: Deadline,
) -> Result<Got, Fail> {
    let s = connect_from(&addr, from, &d, None)
        .map_err(|e| Fail(reason(&e), format!("connect: {e}")))?;
    let mut req = Vec::new();
    write!(
        req,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xenbox-peer\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    write_all(&s, &req, &d)?;
    let mut r = Reader::new(&s, d);
    let h = head(&mut r)?;
    if h.status != want.status {
        return Err(Fail(
            "status",
            format!("got {}, expected {}", h.status, want.status),
        ));
    }
    if let Some(Expect { len: n, .. }) = want.body {
        match h.content_length {
            Some(cl) if cl == n => {}
            Some(cl) => {
                return Err(Fail(
                    "content-length",
                    format!("Content-Length {cl}, expected {n}"),
                ))
            }
            None => return Err(Fail("content-length", "no Content-Length".into())),
        }
    }
    let mut body = Body {
        len: 0,
        fnv: FNV_OFFSET,
        verify: want.body.is_some_and(|e| e.pattern),
        first_bad: None,
        started: want.started.clone(),
    };
    let read = match (h.chunked, h.content_length) {
        (true, _) => chunked(&mut r, &mut body),
        (false, Some(n)) => exactly(&mut r, n, &mut body),
        (false, None) => loop {
            match r.take(u64::MAX) {
                Ok([]) => break Ok(()),
                Ok(b) => body.eat(b),
                Err(e) => break Err(e.into()),
            }
        },
    };
    if want.cut {
        return cut_short(read, &body, h.status);
    }
    read?;
    let done = Instant::now();
    // Asked to close, the server should now; it must not send more either way.
    let extra = (r.end - r.pos) as u64 + extra_bytes(&s, &d, Duration::from_secs(1));
    if extra > 0 {
        return Err(Fail(
            "extra-bytes",
            format!("{extra} bytes after the {}-byte body", body.len),
        ));
    }
    if let Some(e) = want.body {
        if body.len != e.len {
            return Err(Fail(
                "body-length",
                format!("{} body bytes, expected {}", body.len, e.len),
            ));
        }
        if let Some(i) = body.first_bad {
            return Err(Fail(
                "body-mismatch",
                format!("first wrong byte at offset {i}"),
            ));
        }
        if let Some(fnv) = e.fnv.filter(|&f| f != body.fnv) {
            return Err(Fail(
                "body-checksum",
                format!("body's FNV-1a 64 is {:016x}, expected {fnv:016x}", body.fnv),
            ));
        }
        if e.header {
            checksum_header(h.checksum.as_deref(), body.fnv)?;
        }
    } else if h.status == 200 && body.len == 0 {
        return Err(Fail("empty-body", "status 200 with an empty body".into()));
    }
    Ok(Got {
        status: h.status,
        len: body.len,
        fnv: body.fnv,
        done,
        cut: None,
    })
}

/// --expect-cut: the body's read must have ended early on the server's reset or close
/// (the bytes that came right, with --verify-bytes); a whole body or a timeout fails.
fn cut_short(read: Result<(), Fail>, body: &Body, status: u16) -> Result<Got, Fail> {
    let cut = match read {
        Ok(()) => {
            return Err(Fail(
                "not-cut",
                format!("the whole {}-byte body came", body.len),
            ))
        }
        Err(Fail("reset" | "broken-pipe", _)) => "reset",
        Err(Fail("short-body" | "eof", _)) => "close",
        Err(f) => return Err(f),
    };
    if let Some(i) = body.first_bad {
        return Err(Fail(
            "body-mismatch",
            format!("first wrong byte at offset {i}"),
        ));
    }
    Ok(Got {
        status,
        len: body.len,
        fnv: body.fnv,
        done: Instant::now(),
        cut: Some(cut),
    })
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = p.pos[0].clone();
    check_addr(&addr)?;
    let path = p.pos[1].clone();
    if !path.starts_with('/') || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return bad(format!("PATH: expected e.g. /bytes/4096, got {path:?}"));
    }
    let status = p.u64_in("expect-status", 100, 999)? as u16;
    let conns = p.u64_in("conns", 1, 1024)?;
    let body = match (p.flag("verify-bytes"), p.text("expect-file")) {
        (true, Some(_)) => return bad("--expect-file and --verify-bytes exclude each other"),
        (true, None) => match path
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(len) => Some(Expect {
                len,
                pattern: true,
                fnv: None,
                header: true,
            }),
            None => {
                return bad(format!(
                    "--verify-bytes: PATH must be /bytes/N, got {path:?}"
                ))
            }
        },
        (false, Some(v)) => match expect_file(v) {
            Some(e) if status == 200 => Some(e),
            Some(_) => {
                return bad(format!(
                    "--expect-file: wants status 200, not --expect-status {status}"
                ))
            }
            None => {
                return bad(format!(
                    "--expect-file: expected LEN:FNV (decimal bytes, 16 lowercase hex digits), got {v:?}"
                ))
            }
        },
        (false, None) => None,
    };
    let body = match (body, p.flag("no-checksum-header")) {
        (None, true) => {
            return bad("--no-checksum-header checks a body: give --verify-bytes or --expect-file")
        }
        (Some(e), true) => Some(Expect { header: false, ..e }),
        (b, false) => b,
    };
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let a = match resolve(&addr, &d) {
        Ok(a) => a,
        Err(e) => {
            super::fail_io(&mut v, "resolve", &e);
            return Ok(v);
        }
    };
    let cut = p.flag("expect-cut");
    if cut && (conns != 1 || status != 200) {
        return bad("--expect-cut wants one connection (--conns 1) and status 200");
    }
    let started = p.text("started-file").map(std::path::PathBuf::from);
    let want = std::sync::Arc::new(Want {
        status,
        body,
        cut,
        started,
    });
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (host, path, want) = (addr.clone(), path.clone(), want.clone());
            thread::spawn(move || one(a, None, &host, &path, &want, d))
        })
        .collect();
    let results: Vec<Result<Got, Fail>> = threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| Err(Fail("panic", String::new())))
        })
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let elapsed = match results.iter().flatten().map(|g| g.done).max() {
        Some(end) if ok == results.len() => end - start,
        _ => start.elapsed(),
    };
    let total: u64 = results.iter().flatten().map(|g| g.len).sum();
    for (i, r) in results.iter().enumerate() {
        if let Err(Fail(why, detail)) = r {
            progress(SPEC.name, format_args!("conn{i}: {why}: {detail}"));
        }
    }
    if let Some((i, Fail(why, detail))) = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.as_ref().err().map(|f| (i, f)))
    {
        v.fail(why);
        v.kv("conn", i);
        v.kv("detail", detail);
    }
    if let Some(g) = results.iter().flatten().next() {
        v.kv("status", g.status);
        if let Some(cut) = g.cut {
            v.kv("cut", cut);
        }
        if body.is_some() {
            v.kv("fnv", format_args!("{:016x}", g.fnv));
        }
    }
    v.kv("bytes", total);
    v.kv("conns", conns);
    v.kv("ok", ok);
    v.kv("elapsed_ms", millis(elapsed));
    v.kv("mbit_s", mbit_s(total, elapsed));
    Ok(v)
}

#[cfg(test)]
mod tests;
