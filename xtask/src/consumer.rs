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

/// A command's result as a check: exit 0 passes, else its code and output.
fn exited_zero(r: Result<(i32, String), String>) -> Result<(), String> {
    match r? {
        (0, _) => Ok(()),
        (c, t) => Err(format!("exit {c}: {t}")),
    }
}

/// Where the consumer lives: a temporary directory with the installed runner (`root/`)
/// and the crate, and the environment every command of its gets.
struct Sandbox {
    base: PathBuf,
    /// `PATH` with the installed runner first.
    path: String,
}

impl Sandbox {
    fn bin(&self) -> PathBuf {
        self.base.join("root")
    }

    fn krate(&self) -> PathBuf {
        self.base.join("hello-consumer")
    }

    /// Run `program args` in `dir` as a user would, with the sandbox's environment.
    fn run(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        dir: &Path,
    ) -> Result<(i32, String), String> {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(dir)
            .env("PATH", &self.path)
            // The checkout's unpacked Xen and box, not a second copy.
            .env("XENPV_RUN_CACHE", crate::root().join("target/xtask"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS");
        output(&mut c)
    }

    /// Step 1: the runner, from the checkout, as a user installs it (its own lock file).
    fn install_runner(&self) -> Result<(), String> {
        exited_zero(output(
            Command::new(cargo())
                .args(["install", "--locked", "--quiet", "--path"])
                .arg(crate::root().join("runner"))
                .arg("--root")
                .arg(self.bin())
                .arg("--target-dir")
                .arg(crate::root().join("target/runner-install")),
        ))
    }

    /// Step 2: the starter.
    fn new_crate(&self) -> Result<(), String> {
        let runner = self.bin().join("bin/xenpv-run");
        exited_zero(self.run(runner, &["new", "hello-consumer"], &self.base))
    }

    /// Step 3: `cargo run` with `args` exits with `status` and prints the starter's
    /// lines, its defmt line decoded (from `src/main.rs:want_line`) and saying its role.
    fn cargo_run(
        &self,
        args: &[&str],
        status: i32,
        role: &str,
        want_line: usize,
    ) -> Result<(), String> {
        let (code, text) = self.run(cargo(), args, &self.krate())?;
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
    }

    /// Step 4: `cargo test`: the library's host test, run natively through the same
    /// runner.
    fn cargo_test(&self) -> Result<(), String> {
        let (code, text) = self.run(cargo(), &["test"], &self.krate())?;
        if code == 0 && text.contains("test tests::checksum_is_fnv1a ... ok") {
            Ok(())
        } else {
            Err(format!("exit {code}:\n{text}"))
        }
    }
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
    let path = format!(
        "{}:{}",
        base.join("root/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sb = Sandbox { base, path };
    let mut step = |what: &str, r: Result<(), String>| {
        let ok = r.is_ok();
        v.push((format!("consumer: {what}"), r));
        ok
    };
    if !step("cargo install --locked --path runner", sb.install_runner())
        || !step("xenpv-run new hello-consumer", sb.new_crate())
    {
        return v;
    }
    let want_line = match defmt_line(&sb.krate()) {
        Ok(l) => l,
        Err(e) => {
            step("the starter's source", Err(e));
            return v;
        }
    };
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
        step(what, sb.cargo_run(args, status, role, want_line));
    }
    step("cargo test (host test, run natively)", sb.cargo_test());
    let _ = std::fs::remove_dir_all(&sb.base);
    v
}
