//! The program as its callers see it: arguments, verdict lines and exit statuses.
use std::net::UdpSocket;
use std::process::{Command, Output};

fn peer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xenbox-peer"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A UDP echo server that echoes `n` datagrams, then stops answering.
fn udp_echo(n: usize) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..n {
            let (k, from) = s.recv_from(&mut buf).unwrap();
            s.send_to(&buf[..k], from).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    a
}

#[test]
fn pass_exits_0_with_one_verdict_line() {
    let a = udp_echo(100);
    let o = peer(&["udp-echo", &a, "--count", "100", "--max", "200"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    let verdicts: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("peer: udp-echo "))
        .collect();
    assert_eq!(verdicts.len(), 1, "{out}");
    assert!(
        verdicts[0].starts_with("peer: udp-echo PASS sent=100 returned=100 lost=0"),
        "{out}"
    );
    assert!(out.lines().all(|l| l.starts_with("peer: ")), "{out}");
}

#[test]
fn fail_exits_1() {
    let a = udp_echo(5);
    let o = peer(&[
        "udp-echo",
        &a,
        "--count",
        "10",
        "--reply-ms",
        "100",
        "--timeout",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert_eq!(
        out.lines()
            .last()
            .unwrap()
            .split(' ')
            .take(4)
            .collect::<Vec<_>>(),
        ["peer:", "udp-echo", "FAIL", "lost"],
        "{out}"
    );
    assert!(out.contains(" lost=5 "), "{out}");
}

#[test]
fn wrong_arguments_exit_2_naming_them() {
    for (args, names) in [
        (&["udp-echo"][..], "missing HOST:PORT"),
        (&["udp-echo", "127.0.0.1:7", "--count", "many"], "--count"),
        (
            &["udp-echo", "127.0.0.1:7", "--min", "9", "--max", "8"],
            "--min",
        ),
        (&["tcp-echo", "127.0.0.1:7", "--bogus"], "--bogus"),
        (&["tcp-send", "127.0.0.1:9"], "--bytes"),
        (&["udp-rate", "127.0.0.1:7"], "--size"),
        (&["http-get", "127.0.0.1:80"], "PATH"),
        (
            &["http-get", "127.0.0.1:80", "/", "--verify-bytes"],
            "--verify-bytes",
        ),
        (&["wait-up", "10.0.0.2", "--timeout", "1"], "HOST:PORT"),
        (
            &["wait-up", "10.0.0.2:80", "--timeout", "soon"],
            "--timeout",
        ),
        (&["frobnicate"], "frobnicate"),
    ] {
        let o = peer(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(stderr(&o).contains(names), "{args:?}: {}", stderr(&o));
        assert!(!stdout(&o).contains(" PASS"), "{args:?}");
    }
    assert_eq!(peer(&[]).status.code(), Some(2));
}

#[test]
fn help_everywhere() {
    let o = peer(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for sub in [
        "grant", "wait-up", "udp-echo", "tcp-echo", "tcp-send", "http-get", "udp-rate",
    ] {
        assert!(
            stdout(&o).contains(&format!("xenbox-peer {sub}")) || sub == "grant",
            "{sub}"
        );
        let o = peer(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        assert!(
            stdout(&o).starts_with("usage: xenbox-peer "),
            "{sub}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn grant_keeps_its_original_form() {
    // Three positional arguments, as the box's init script passes them; both forms
    // behave alike (here: no gntdev, or a bad argument, so exit 2 with `peer: <why>`).
    for args in [&["1", "8", "00ff"][..], &["grant", "1", "8", "00ff"]] {
        let o = peer(args);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(stdout(&o).starts_with("peer: "), "{o:?}");
    }
    for args in [&["x", "8", "00ff"][..], &["grant", "x", "8", "00ff"]] {
        let o = peer(args);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(stdout(&o).starts_with("peer: domid \"x\": "), "{o:?}");
    }
    let o = peer(&["grant", "1", "8"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "peer: usage: xenbox-peer grant DOMID REF FNV\n");
}
