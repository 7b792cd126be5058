//! A consumer's unikernel, outside this repository, as a new user makes it: the runner
//! installed from the checkout with `cargo install --locked --path runner`, a crate from
//! `xenpv-run new`, then `cargo run` (dev and release, as dom0 and as a domU) and
//! `cargo test`, each checked. The starter cannot rot without this failing.
use std::path::{Path, PathBuf};
use std::process::Command;

/// One check's name and verdict.
pub type Verdict = (String, Result<(), String>);

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Run `cmd`, returning (exit code, stdout + stderr).
fn output(cmd: &mut Command) -> Result<(i32, String), String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    Ok((o.status.code().unwrap_or(-1), text))
}

/// The line of `src/main.rs` holding the starter's `defmt::info!`.
fn defmt_line(krate: &Path) -> Result<usize, String> {
    let src = std::fs::read_to_string(krate.join("src/main.rs")).map_err(|e| e.to_string())?;
    src.lines()
        .position(|l| l.contains("defmt::info!("))
        .map(|i| i + 1)
        .ok_or_else(|| "no defmt::info! in the starter's src/main.rs".into())
}

/// Install the runner, make the crate, and run the checks.
pub fn run() -> Vec<Verdict> {
    let mut v = Vec::new();
    let base = std::env::temp_dir().join(format!("xenpv-consumer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    if let Err(e) = std::fs::create_dir_all(&base) {
        v.push(("consumer: temp dir".into(), Err(e.to_string())));
        return v;
    }
    let bin = base.join("root");
    // 1. The runner, from the checkout, as a user installs it (its own lock file).
    let install = output(
        Command::new(cargo())
            .args(["install", "--locked", "--quiet", "--path"])
            .arg(crate::root().join("runner"))
            .arg("--root")
            .arg(&bin)
            .arg("--target-dir")
            .arg(crate::root().join("target/runner-install")),
    );
    let ok = matches!(install, Ok((0, _)));
    v.push((
        "consumer: cargo install --locked --path runner".into(),
        match install {
            Ok((0, _)) => Ok(()),
            Ok((c, t)) => Err(format!("exit {c}: {t}")),
            Err(e) => Err(e),
        },
    ));
    if !ok {
        return v;
    }
    let path = format!(
        "{}:{}",
        bin.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |c: &mut Command| {
        c.env("PATH", &path)
            // The checkout's unpacked Xen and box, not a second copy.
            .env("XENPV_RUN_CACHE", crate::root().join("target/xtask"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS");
    };
    // 2. The starter.
    let krate: PathBuf = base.join("hello-consumer");
    let made = {
        let mut c = Command::new(bin.join("bin/xenpv-run"));
        c.args(["new", "hello-consumer"]).current_dir(&base);
        env(&mut c);
        output(&mut c)
    };
    let ok = matches!(made, Ok((0, _)));
    v.push((
        "consumer: xenpv-run new hello-consumer".into(),
        made.and_then(|(c, t)| {
            if c == 0 {
                Ok(())
            } else {
                Err(format!("exit {c}: {t}"))
            }
        }),
    ));
    if !ok {
        return v;
    }
    let want_line = match defmt_line(&krate) {
        Ok(l) => l,
        Err(e) => {
            v.push(("consumer: the starter's source".into(), Err(e)));
            return v;
        }
    };
    let cargo_in = |args: &[&str]| {
        let mut c = Command::new(cargo());
        c.args(args).current_dir(&krate);
        env(&mut c);
        output(&mut c)
    };
    // 3. cargo run, dev and release: the status main returns, the defmt line decoded.
    for (what, args, status, role) in [
        (
            "cargo run -- exit=3 (dev)",
            &["run", "--", "exit=3"][..],
            3,
            "dom0",
        ),
        ("cargo run --release", &["run", "--release"][..], 0, "dom0"),
        (
            "cargo run --release -- --domu exit=5",
            &["run", "--release", "--", "--domu", "exit=5"][..],
            5,
            "domU",
        ),
    ] {
        let r = cargo_in(args).and_then(|(code, text)| {
            let defmt = format!("(src/main.rs:{want_line})");
            let dom0 = role == "dom0";
            let said = format!("hello-consumer runs as dom0: {dom0}");
            if code != status {
                return Err(format!("exit code {code}, expected {status}:\n{text}"));
            }
            let line = text
                .lines()
                .find(|l| l.contains(&said))
                .ok_or_else(|| format!("no decoded defmt line {said:?}:\n{text}"))?;
            if !line.starts_with("INFO  ") || !line.ends_with(&defmt) {
                return Err(format!("defmt line {line:?} lacks INFO or {defmt}"));
            }
            for want in [
                "hello from hello-consumer",
                "heap: 100000 squares, the last 9999800001",
            ] {
                if !text.contains(want) {
                    return Err(format!("no {want:?}:\n{text}"));
                }
            }
            Ok(())
        });
        v.push((format!("consumer: {what}"), r));
    }
    // 4. cargo test: the library's host test, run natively through the same runner.
    let r = cargo_in(&["test"]).and_then(|(code, text)| {
        if code == 0 && text.contains("test tests::checksum_is_fnv1a ... ok") {
            Ok(())
        } else {
            Err(format!("exit {code}:\n{text}"))
        }
    });
    v.push(("consumer: cargo test (host test, run natively)".into(), r));
    let _ = std::fs::remove_dir_all(&base);
    v
}
