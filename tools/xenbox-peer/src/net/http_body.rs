//! `http-body HOST:PORT PATH`: GET a short text page (the appliance's `/state`,
//! `/records`) and print its body, line by line, for a script to read: no shell HTTP
//! client needed (busybox's wget has been seen to crash in the box's dom0).
use std::io::Write as _;

use super::{check_addr, connect, read, reason, resolve, write_all, Deadline};
use crate::args::{Parsed, Spec, Usage, TIMEOUT};
use crate::verdict::{progress, Verdict};

/// The most bytes read (head and body).
const MAX: usize = 64 * 1024;

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "http-body",
    args: &["HOST:PORT", "PATH"],
    about: "GET PATH from HOST:PORT (HTTP/1.1, Connection: close), read the response until\n\
            the server closes (64 KiB at most) and print each line of its body as\n\
            `peer: http-body: body LINE`. Reports status and bytes (of the body).\n\
            PASS iff the status is 200.",
    opts: &[TIMEOUT],
};

/// Run `http-body`.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    check_addr(&p.pos[0])?;
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let got = fetch(&p.pos[0], &p.pos[1], &d);
    let all = match got {
        Ok(b) => b,
        Err((why, e)) => {
            v.fail(why);
            v.kv("error", e);
            return Ok(v);
        }
    };
    let (status, body) = split(&all);
    for l in String::from_utf8_lossy(body).lines() {
        progress(SPEC.name, format_args!("body {l}"));
    }
    let _ = std::io::stdout().flush();
    v.kv("status", status.map_or(-1, i32::from));
    v.kv("bytes", body.len());
    if status != Some(200) {
        v.fail("status");
    }
    Ok(v)
}

/// The whole response (until the server's close).
fn fetch(addr: &str, path: &str, d: &Deadline) -> Result<Vec<u8>, (&'static str, String)> {
    let e = |e: std::io::Error| (reason(&e), e.to_string());
    let s = resolve(addr, d)
        .and_then(|a| connect(&a, d, None))
        .map_err(e)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    write_all(&s, req.as_bytes(), d).map_err(e)?;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read(&s, &mut buf, d, None).map_err(e)? {
            0 => return Ok(all),
            n if all.len() + n > MAX => return Err(("too-long", format!("over {MAX} bytes"))),
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and the body of a response.
fn split(all: &[u8]) -> (Option<u16>, &[u8]) {
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (None, &[]);
    };
    let line = all[..end].split(|&b| b == b'\r').next().unwrap_or_default();
    let status = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    (status, &all[end + 4..])
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_the_status_and_the_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nticks=1\n";
        assert_eq!(split(r), (Some(200), b"ticks=1\n".as_slice()));
        assert_eq!(split(b"HTTP/1.1 404 Not Found\r\n\r\n").0, Some(404));
        assert_eq!(split(b"garbage"), (None, b"".as_slice()));
    }
}
