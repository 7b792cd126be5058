//! A consumer's unikernel, outside this repository, as a new user makes it: the runner
//! installed from the checkout with `cargo install --locked --path runner`, a crate from
//! `xenpv-run new`, then `cargo run` (dev and release, as dom0 and as a domU) and
//! `cargo test`, each checked; and the network appliance of `xenpv-run new --template
//! net`: its `src/main.rs` counted (at most [`MAX_NET_MAIN_LOC`] lines of code), its
//! `cargo test` (the services over the loopback), and its boot as a domU with `--net` and
//! its own dom0 script, which checks echo, HTTP, 32 clients at once and a clean
//! `xl shutdown`. The starters cannot rot without this failing.
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

    /// Step 2: the starter (`xenpv-run new NAME` plus `extra`).
    fn new_crate(&self, name: &str, extra: &[&str]) -> Result<(), String> {
        let runner = self.bin().join("bin/xenpv-run");
        let args: Vec<&str> = ["new", name].iter().chain(extra).copied().collect();
        exited_zero(self.run(runner, &args, &self.base))
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

/// Install the runner, make the crates, and run the checks: the default starter's if
/// `filter` begins `consumer-default`, the net starter's if it begins `consumer-net`.
pub fn run(filter: &str) -> Vec<Verdict> {
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
    let installed = sb.install_runner();
    let ok = installed.is_ok();
    v.push((
        "consumer: cargo install --locked --path runner".into(),
        installed,
    ));
    if ok {
        if "consumer-default".starts_with(filter) {
            default_starter(&sb, &mut v);
        }
        if "consumer-net".starts_with(filter) {
            net_starter(&sb, &mut v);
        }
    }
    let _ = std::fs::remove_dir_all(&sb.base);
    v
}

/// The default starter: made, booted dev and release as dom0 and as a domU, tested.
fn default_starter(sb: &Sandbox, v: &mut Vec<Verdict>) {
    let mut step = |what: &str, r: Result<(), String>| {
        let ok = r.is_ok();
        v.push((format!("consumer: {what}"), r));
        ok
    };
    if !step(
        "xenpv-run new hello-consumer",
        sb.new_crate("hello-consumer", &[]),
    ) {
        return;
    }
    let want_line = match defmt_line(&sb.krate()) {
        Ok(l) => l,
        Err(e) => {
            step("the starter's source", Err(e));
            return;
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
}

/// The net starter's crate.
const NET: &str = "net-consumer";

/// The most lines of code the net starter's `src/main.rs` may have.
pub const MAX_NET_MAIN_LOC: usize = 40;

/// Lines of code in Rust source: lines neither blank nor only comment (`//…`, `/*…*/`).
pub fn lines_of_code(src: &str) -> usize {
    let mut in_block = false;
    src.lines()
        .filter(|line| {
            let mut rest = line.trim();
            let mut code = false;
            while !rest.is_empty() {
                if in_block {
                    match rest.find("*/") {
                        Some(i) => (in_block, rest) = (false, rest[i + 2..].trim_start()),
                        None => rest = "",
                    }
                } else if rest.starts_with("//") {
                    rest = "";
                } else if let Some(r) = rest.strip_prefix("/*") {
                    (in_block, rest) = (true, r);
                } else {
                    code = true;
                    rest = "";
                }
            }
            code
        })
        .count()
}

/// The net starter: made, its main.rs counted, its `cargo test`, its boot with
/// dom0-check.sh and dom0's test client as $PEER.
fn net_starter(sb: &Sandbox, v: &mut Vec<Verdict>) {
    let mut step = |what: &str, r: Result<(), String>| {
        let ok = r.is_ok();
        v.push((format!("consumer: {what}"), r));
        ok
    };
    let dir = sb.base.join(NET);
    if !step(
        "xenpv-run new net-consumer --template net",
        sb.new_crate(NET, &["--template", "net"]),
    ) {
        return;
    }
    let (what, r) = match std::fs::read_to_string(dir.join("src/main.rs")) {
        Ok(src) => {
            let n = lines_of_code(&src);
            let what =
                format!("net-consumer src/main.rs: {n} lines of code (at most {MAX_NET_MAIN_LOC})");
            let r = if n <= MAX_NET_MAIN_LOC {
                Ok(())
            } else {
                Err(format!("{n} lines of code, over {MAX_NET_MAIN_LOC}"))
            };
            (what, r)
        }
        Err(e) => ("net-consumer src/main.rs".into(), Err(e.to_string())),
    };
    step(&what, r);
    step(
        "net-consumer: cargo test (the services over the loopback)",
        net_test(sb, &dir),
    );
    // No --peer: $PEER is the client the installed xenpv-run carries in itself, as a
    // user's run gets it.
    let booted = net_boot(sb, &dir);
    step(
        "net-consumer: cargo run --release -- --domu --net --dom0-script dom0-check.sh (echo, /hello 200, 404, 32 clients, xl shutdown: status 0 within 10 s)",
        booted,
    );
}

/// The net starter's `cargo test`: passes, the loopback test and the router's among it.
fn net_test(sb: &Sandbox, dir: &Path) -> Result<(), String> {
    let (code, text) = sb.run(cargo(), &["test"], dir)?;
    let want = [
        "test tests::the_services_answer_over_the_loopback ... ok",
        "test tests::requests_are_routed ... ok",
    ];
    match want.iter().find(|w| !text.contains(*w)) {
        None if code == 0 => Ok(()),
        missing => Err(format!("exit {code}, {missing:?} missing:\n{text}")),
    }
}

/// Boot the net starter as a domU with its dom0 script (its $PEER the runner's own
/// client): every step of the script passes, and the domU stops with status 0 within 10
/// s of `xl shutdown`.
fn net_boot(sb: &Sandbox, dir: &Path) -> Result<(), String> {
    let args = [
        "run",
        "--release",
        "--",
        "--domu",
        "--net",
        "--dom0-script",
        "dom0-check.sh",
        "ip=169.254.100.2/24",
    ];
    let (code, text) = sb.run(cargo(), &args, dir)?;
    check_net_boot(code, &text)
}

/// The verdict on the net starter's boot: status 0, each of the dom0 script's steps
/// passed (2 tcp-echo, 3 http-get), the shutdown in time and the script's status 0.
pub fn check_net_boot(code: i32, text: &str) -> Result<(), String> {
    let count = |s: &str| text.lines().filter(|l| l.contains(s)).count();
    let fails = [
        (code == 0, format!("exit code {code}, expected 0")),
        (
            count("peer: tcp-echo PASS") == 2,
            "not 2 tcp-echo PASS lines".into(),
        ),
        (
            count("peer: http-get PASS") == 3,
            "not 3 http-get PASS lines".into(),
        ),
        (
            count("step failed") == 0,
            "a step of dom0-check.sh failed".into(),
        ),
        (
            count("xl shutdown: the domU stopped after") == 1 && count(": FAIL") == 0,
            "the domU did not stop within 10 s of xl shutdown".into(),
        ),
        (
            count("xenbox: dom0-script exit 0") == 1,
            "dom0-check.sh did not exit 0".into(),
        ),
    ];
    let why: Vec<&str> = fails
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, why)| why.as_str())
        .collect();
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n{text}", why.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_code_skip_blank_and_comment_lines() {
        let src =
            "//! doc\n\n#![no_std]\n/* a\n b */\nfn f() {} // tail\n  // only\n/* x */ let y;\n";
        assert_eq!(lines_of_code(src), 3);
        assert_eq!(lines_of_code(""), 0);
        let starter = include_str!("../../runner/starter/net/main.rs");
        assert!(lines_of_code(starter) <= MAX_NET_MAIN_LOC);
    }

    #[test]
    fn the_net_boot_verdict_wants_every_step() {
        let good = "dom0| peer: tcp-echo PASS a\ndom0| peer: tcp-echo PASS b\n\
                    dom0| peer: http-get PASS\ndom0| peer: http-get PASS\ndom0| peer: http-get PASS\n\
                    dom0| xl shutdown: the domU stopped after 812 ms: ok\nxenbox: dom0-script exit 0\n";
        assert_eq!(check_net_boot(0, good), Ok(()));
        assert!(check_net_boot(1, good)
            .unwrap_err()
            .starts_with("exit code 1"));
        let one_less = good.replacen("dom0| peer: http-get PASS\n", "", 1);
        assert!(check_net_boot(0, &one_less)
            .unwrap_err()
            .starts_with("not 3 http-get"));
        let slow = good.replace(
            "the domU stopped after 812 ms: ok",
            "the domU is r----- after 30012 ms (limit 10 s): FAIL",
        );
        assert!(check_net_boot(0, &slow)
            .unwrap_err()
            .starts_with("the domU did not stop"));
        let failed = format!("{good}dom0| step failed (1): $PEER http-get\n");
        assert!(check_net_boot(0, &failed)
            .unwrap_err()
            .starts_with("a step"));
    }
}
