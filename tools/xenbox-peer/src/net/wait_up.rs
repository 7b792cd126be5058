//! `wait-up HOST:PORT`: retry a TCP connect until one succeeds (the guest is serving) or
//! the `--timeout` passes.
use std::time::Duration;

use super::{check_addr, connect, millis, resolve, Deadline};
use crate::args::{Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::verdict::{progress, Verdict};

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "wait-up",
    args: &["HOST:PORT"],
    about: "Retry a TCP connect to HOST:PORT (every 100 ms; refused, unreachable and timed-out\n\
            attempts alike) until one succeeds, then close it. Reports elapsed_ms and attempts.",
    opts: &[
        Opt::val(
            "connect-ms",
            "MS",
            "2000",
            "give one connect attempt at most MS ms",
        ),
        TIMEOUT,
    ],
};

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let addr = &p.pos[0];
    check_addr(addr)?;
    let attempt = p.millis("connect-ms")?;
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let mut attempts = 0u64;
    let mut last = String::new();
    loop {
        if d.expired() {
            break;
        }
        attempts += 1;
        let r = resolve(addr, &d).and_then(|a| connect(&a, &d, Some(attempt)));
        match r {
            Ok(_) => {
                v.kv("elapsed_ms", millis(d.elapsed()));
                v.kv("attempts", attempts);
                return Ok(v);
            }
            Err(e) => {
                let e = e.to_string();
                if e != last {
                    progress(SPEC.name, format_args!("{addr}: {e} (still trying)"));
                    last = e;
                }
            }
        }
        if let Ok(nap) = d.left(Some(Duration::from_millis(100))) {
            std::thread::sleep(nap);
        }
    }
    v.fail("timeout");
    v.kv("elapsed_ms", millis(d.elapsed()));
    v.kv("attempts", attempts);
    v.kv("error", last);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use crate::net::testsrv::{cmd, free_port};

    #[test]
    fn passes_when_a_listener_is_up() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap().to_string();
        let v = cmd(&["wait-up", &a, "--timeout", "5"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("attempts"), Some("1"));
    }

    #[test]
    fn waits_for_a_late_listener() {
        let port = free_port();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let _ = l.accept();
        });
        let v = cmd(&["wait-up", &format!("127.0.0.1:{port}"), "--timeout", "10"]);
        assert!(v.passed(), "{v}");
        assert!(
            v.get("elapsed_ms").unwrap().parse::<u64>().unwrap() >= 300,
            "{v}"
        );
        assert!(
            v.get("attempts").unwrap().parse::<u64>().unwrap() > 1,
            "{v}"
        );
        t.join().unwrap();
    }

    #[test]
    fn fails_within_the_timeout_when_nothing_listens() {
        let a = format!("127.0.0.1:{}", free_port());
        let t = Instant::now();
        let v = cmd(&["wait-up", &a, "--timeout", "0.7"]);
        assert_eq!(v.reason(), Some("timeout"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(v.get("error").unwrap().contains("refused"), "{v}");
    }
}
