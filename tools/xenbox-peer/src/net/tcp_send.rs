//! `tcp-send HOST:PORT --bytes N`: stream bytes to an RFC 863 discard service and time
//! it until the service, having read everything, closes (throughput towards the guest).
use std::time::Instant;

use super::{check_addr, connect, fail_io, mbit_s, millis, read, resolve, write_all, Deadline};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::data::ByteStream;
use crate::verdict::Verdict;

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "tcp-send",
    args: &["HOST:PORT"],
    about: "Connect to the TCP discard service at HOST:PORT, send --bytes pseudo-random bytes,\n\
            shut our side down and wait for the service to close its side (a clean EOF: it has\n\
            read everything). Reports bytes, elapsed_ms (connected to EOF), mbit_s and\n\
            send_ms (until the last byte was handed to the kernel). FAIL if the service sends\n\
            anything, resets the connection or does not close before --timeout.",
    opts: &[
        Opt::req("bytes", "N", "bytes to send (K, M, G suffixes allowed)"),
        Opt::val("seed", "S", "1", "seed of the contents"),
        TIMEOUT,
    ],
};

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = &p.pos[0];
    check_addr(addr)?;
    let n = p.u64("bytes")?;
    let seed = p.u64("seed")?;
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let s = match resolve(addr, &d).and_then(|a| connect(&a, &d, None)) {
        Ok(s) => s,
        Err(e) => {
            fail_io(&mut v, "connect", &e);
            return Ok(v);
        }
    };
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    ByteStream::new(seed, 0).fill(&mut buf);
    let mut sent = 0u64;
    let mut phase = "send";
    let mut r = Ok(());
    while sent < n {
        let k = (n - sent).min(buf.len() as u64) as usize;
        r = write_all(&s, &buf[..k], &d);
        if r.is_err() {
            break;
        }
        sent += k as u64;
    }
    let send_time = start.elapsed();
    if r.is_ok() {
        phase = "close";
        r = s.shutdown(std::net::Shutdown::Write);
    }
    let mut unexpected = 0u64;
    if r.is_ok() {
        let mut small = [0u8; 4096];
        loop {
            match read(&s, &mut small, &d, None) {
                Ok(0) => break,
                Ok(k) => unexpected += k as u64,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    if let Err(e) = &r {
        fail_io(&mut v, phase, e);
    }
    if unexpected > 0 {
        v.fail("unexpected-data");
        v.kv("unexpected_bytes", unexpected);
    }
    v.kv("bytes", sent);
    v.kv("elapsed_ms", millis(elapsed));
    v.kv("mbit_s", mbit_s(sent, elapsed));
    v.kv("send_ms", millis(send_time));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::net::testsrv::{cmd, discard, DiscardMode};

    #[test]
    fn passes_against_an_honest_server() {
        let a = discard(DiscardMode::Honest);
        let v = cmd(&["tcp-send", &a, "--bytes", "16M"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("bytes"), Some("16777216"));
        let v = cmd(&["tcp-send", &a, "--bytes", "0"]);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn fails_when_the_server_talks_back() {
        let a = discard(DiscardMode::Chatty);
        let v = cmd(&["tcp-send", &a, "--bytes", "1M"]);
        assert_eq!(v.reason(), Some("unexpected-data"), "{v}");
    }

    #[test]
    fn fails_when_the_server_closes_before_reading_everything() {
        let a = discard(DiscardMode::CloseAfter(100_000));
        let v = cmd(&["tcp-send", &a, "--bytes", "8M", "--timeout", "10"]);
        assert!(matches!(v.reason(), Some("reset" | "broken-pipe")), "{v}");
    }

    #[test]
    fn fails_within_the_timeout_when_the_server_stalls_or_never_closes() {
        let t = Instant::now();
        let a = discard(DiscardMode::Silent);
        let v = cmd(&["tcp-send", &a, "--bytes", "64M", "--timeout", "1"]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert_eq!(v.get("phase"), Some("send"), "{v}");
        let a = discard(DiscardMode::NeverClose);
        let v = cmd(&["tcp-send", &a, "--bytes", "1M", "--timeout", "1"]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert_eq!(v.get("phase"), Some("close"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
