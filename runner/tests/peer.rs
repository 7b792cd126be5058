//! `xenpv-run` as a multi-call binary: under the name `peer` (the box's `/run/peer`) or
//! as `xenpv-run dom0-peer …` it is dom0's test client, with the client's own verdicts
//! and statuses; any other name or word is the runner.
use std::path::PathBuf;
use std::process::{Command, Output};

const RUNNER: &str = env!("CARGO_BIN_EXE_xenpv-run");

/// The runner under the name `peer`, as the box's init lays it out (there a copy; here a
/// symbolic link, as a copy's write handle can leak into a concurrently spawned child and
/// make exec fail with ETXTBSY; argv\[0\] is what the script calls either way).
fn as_peer(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xenpv-run-as-peer-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let peer = dir.join("peer");
    let _ = std::fs::remove_file(&peer);
    std::os::unix::fs::symlink(RUNNER, &peer).unwrap();
    peer
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn named_peer_it_is_the_client_and_its_failure_is_its_own() {
    let peer = as_peer("named");
    // Nothing listens on port 1 of the loopback: the client's own FAIL verdict, status 1
    // (not the stub's 127, not the runner's usage error 2).
    let o = Command::new(&peer)
        .args(["wait-up", "127.0.0.1:1", "--timeout", "1"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.lines()
            .last()
            .unwrap_or("")
            .starts_with("peer: wait-up FAIL timeout "),
        "{out}"
    );
    // And a PASS: something listens.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    let o = Command::new(&peer)
        .args(["wait-up", &a, "--timeout", "5"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.lines()
            .last()
            .unwrap_or("")
            .starts_with("peer: wait-up PASS "),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(peer.parent().unwrap());
}

#[test]
fn the_hidden_subcommand_is_the_client_too() {
    let o = Command::new(RUNNER)
        .args(["dom0-peer", "--help"])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.starts_with("usage:\n  xenbox-peer [grant] DOMID REF FNV"),
        "{out}"
    );
    let o = Command::new(RUNNER)
        .args(["dom0-peer", "wait-up"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("xenbox-peer wait-up: "), "{err}");
}

#[test]
fn under_its_own_name_it_is_the_runner() {
    let o = Command::new(RUNNER).arg("--help").output().unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.starts_with("Boot a Xen PV kernel"), "{out}");
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("dom0-peer")),
        "the subcommand is not listed: {out}"
    );
    // A kernel that is not there is the runner's error, whatever the words after it.
    let o = Command::new(RUNNER)
        .args(["/no/such/kernel", "dom0-peer"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("/no/such/kernel: no such file"), "{err}");
}
