//! `echo-hold HOST:PORT`: one TCP connection to an RFC 862 echo service held open while
//! something happens to the server (a save and restore, a live migration): a round every
//! --every-ms (a few seeded pseudo-random bytes sent, the same read back, in order),
//! until a file appears; then one more round, our side shut, and the server's close
//! awaited. One connection for the whole run: a reset, an early close or a wrong byte
//! fails it.
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{check_addr, connect, millis, read, reason, resolve, write_all, Deadline};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::ByteStream;
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "echo-hold",
    args: &["HOST:PORT"],
    about: "Open one connection to the TCP echo service at HOST:PORT and hold it: every\n\
            --every-ms, send --round bytes (seeded pseudo-random, one stream for the whole\n\
            connection) and read the same bytes back, each round given --stall-s. Once\n\
            --until-file exists, run one more round, shut our side and wait for the server\n\
            to close (no byte more). Prints `peer: echo-hold: connected local=ADDR` after\n\
            the first round. Reports conns (1), rounds, bytes, max_round_ms (the longest\n\
            round: the outage the connection saw) and local.\n\
            PASS iff every round echoed in order and in time on the one connection, and\n\
            the server closed it cleanly at the end.",
    opts: &[
        Opt::val("every-ms", "MS", "200", "time between rounds"),
        Opt::req(
            "until-file",
            "F",
            "stop once this file exists (the operations are over)",
        ),
        Opt::val("round", "B", "64", "bytes per round"),
        Opt::val(
            "stall-s",
            "SECS",
            "300",
            "the longest a round may take (a save and restore under emulation is slow)",
        ),
        Opt::val("seed", "S", "1", "seed of the bytes"),
        TIMEOUT,
    ],
};

/// The run's settings.
struct Hold {
    every: Duration,
    until: String,
    round: usize,
    stall: Duration,
    seed: u64,
}

/// What the connection has seen.
#[derive(Default)]
struct Seen {
    rounds: u64,
    bytes: u64,
    max_round: Duration,
}

/// Run `echo-hold`.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    check_addr(&p.pos[0])?;
    let h = Hold {
        every: p.millis("every-ms")?,
        until: p.text("until-file").unwrap_or_default().to_string(),
        round: p.u64_in("round", 1, 65536)? as usize,
        stall: p.secs("stall-s")?,
        seed: p.u64("seed")?,
    };
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let s = match resolve(&p.pos[0], &d).and_then(|a| connect(&a, &d, None)) {
        Ok(s) => s,
        Err(e) => {
            super::fail_io(&mut v, "connect", &e);
            v.kv("conns", 0);
            return Ok(v);
        }
    };
    v.kv("conns", 1);
    let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut seen = Seen::default();
    let r = hold(&s, &h, &d, &mut seen, &local);
    v.kv("rounds", seen.rounds);
    v.kv("bytes", seen.bytes);
    v.kv("max_round_ms", millis(seen.max_round));
    v.kv("local", &local);
    if let Err((why, detail)) = r {
        v.fail(why);
        v.kv("error", detail);
    }
    Ok(v)
}

/// The rounds until the file appears, the last one, and the close.
fn hold(
    s: &TcpStream,
    h: &Hold,
    d: &Deadline,
    seen: &mut Seen,
    local: &str,
) -> Result<(), (&'static str, String)> {
    let (mut out, mut want) = (ByteStream::new(h.seed, 0), ByteStream::new(h.seed, 0));
    let (mut buf, mut got) = (vec![0u8; h.round], vec![0u8; h.round]);
    loop {
        let last = Path::new(&h.until).exists();
        let t = Instant::now();
        out.fill(&mut buf);
        write_all(s, &buf, d)
            .map_err(|e| (reason(&e), format!("round {}: send: {e}", seen.rounds)))?;
        want.fill(&mut buf);
        let mut at = 0;
        while at < h.round {
            match read(s, &mut got[at..], d, Some(h.stall)) {
                Ok(0) => return Err(("closed", format!("round {}: eof", seen.rounds))),
                Ok(n) => at += n,
                Err(e) => return Err((reason(&e), format!("round {}: {e}", seen.rounds))),
            }
        }
        if let Some(j) = (0..h.round).find(|&j| got[j] != buf[j]) {
            let b = seen.bytes + j as u64;
            return Err((
                "mismatch",
                format!("byte {b}: {:#04x}, sent {:#04x}", got[j], buf[j]),
            ));
        }
        seen.rounds += 1;
        seen.bytes += h.round as u64;
        seen.max_round = seen.max_round.max(t.elapsed());
        if seen.rounds == 1 {
            progress(SPEC.name, format_args!("connected local={local}"));
        }
        if last {
            break;
        }
        thread::sleep(h.every);
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut tail = [0u8; 512];
    match read(s, &mut tail, d, Some(Duration::from_secs(30))) {
        Ok(0) => Ok(()),
        Ok(n) => Err(("extra", format!("{n} bytes after our shutdown"))),
        Err(e) => Err((reason(&e), format!("the close: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testsrv::cmd;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// An echo server for one connection: it echoes `flip_at` bytes faithfully, then
    /// one wrong byte (`Some`), or closes after `close_after` bytes.
    fn server(flip_at: Option<u64>, close_after: Option<u64>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut n = 0u64;
            let mut b = [0u8; 256];
            loop {
                let k = match s.read(&mut b) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => k,
                };
                for x in &mut b[..k] {
                    if flip_at == Some(n) {
                        *x ^= 0xff;
                    }
                    n += 1;
                }
                if close_after.is_some_and(|c| n > c) {
                    return;
                }
                if s.write_all(&b[..k]).is_err() {
                    return;
                }
            }
        });
        port
    }

    fn run(port: u16, file: &std::path::Path) -> crate::verdict::Verdict {
        let addr = format!("127.0.0.1:{port}");
        let f = file.to_str().unwrap();
        cmd(&[
            "echo-hold",
            &addr,
            "--every-ms",
            "5",
            "--until-file",
            f,
            "--timeout",
            "20",
        ])
    }

    #[test]
    fn holds_one_connection_until_the_file_then_closes() {
        let file = std::env::temp_dir().join(format!("echo-hold-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let f2 = file.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::fs::write(f2, b"").unwrap();
        });
        let v = run(server(None, None), &file);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("conns"), Some("1"));
        assert!(v.get("rounds").unwrap().parse::<u64>().unwrap() >= 3, "{v}");
        // Already there: one round, and the close.
        let v = run(server(None, None), &file);
        assert!(v.passed() && v.get("rounds") == Some("1"), "{v}");
        let v = run(server(Some(100), None), &file);
        assert!(
            v.passed(),
            "one round of 64 bytes never reaches byte 100: {v}"
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn a_wrong_byte_or_a_close_fails() {
        let file = std::env::temp_dir().join(format!("echo-hold-none-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let v = run(server(Some(100), None), &file);
        assert_eq!(v.reason(), Some("mismatch"), "{v}");
        assert!(v.get("error").unwrap().starts_with("byte 100:"), "{v}");
        let v = run(server(None, Some(300)), &file);
        assert!(matches!(v.reason(), Some("closed" | "reset")), "{v}");
        assert_eq!(v.get("conns"), Some("1"));
    }
}
