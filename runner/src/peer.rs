//! dom0's test client (tools/xenbox-peer) carried in the runner: `xenpv-run` is a
//! multi-call binary, and run under the name `peer` (the box's `/run/peer`, a dom0
//! script's `$PEER`) or as `xenpv-run dom0-peer …`, it is that client.
//!
//! So every `xenpv-run --domu` run puts its own executable into the box as the peer
//! ([`carried`]): a dom0 script's `$PEER wait-up`, `tcp-echo`, `http-get`, … work without
//! a checkout of xenpv-rt. Where the runner cannot carry itself, `$PEER` is a stub that
//! fails (status 127) with one line on stderr naming why, never an empty program that
//! "passes".
//!
//! The peer runs in the box's dom0, Debian 12's userland (glibc 2.36): a runner built
//! against a newer glibc than that does not start there (the dynamic loader says which
//! symbol version is missing, and the step fails).
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The hidden subcommand that runs the peer: `xenpv-run dom0-peer wait-up HOST:PORT`.
pub const SUBCOMMAND: &str = "dom0-peer";

/// The program names under which the runner is the peer (argv\[0\]'s file name): the
/// box's `/run/peer`, or a copy named as the standalone client.
pub const NAMES: &[&str] = &["peer", "xenbox-peer"];

/// The peer's arguments if the runner was started as the peer (see [`NAMES`] and
/// [`SUBCOMMAND`]), `None` for an ordinary run.
///
/// ```
/// use std::ffi::OsString;
/// let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
/// let peer = xenpv_run::peer::called_as_peer;
/// assert_eq!(peer(&argv(&["/run/peer", "wait-up", "10.0.0.2:80"])).unwrap(), ["wait-up", "10.0.0.2:80"]);
/// assert_eq!(peer(&argv(&["xenpv-run", "dom0-peer", "--help"])).unwrap(), ["--help"]);
/// assert_eq!(peer(&argv(&["xenpv-run", "kernel.elf", "--domu"])), None);
/// ```
pub fn called_as_peer(argv: &[OsString]) -> Option<Vec<String>> {
    let words = |a: &[OsString]| a.iter().map(|w| w.to_string_lossy().into_owned()).collect();
    let name = Path::new(argv.first()?).file_name()?.to_string_lossy();
    if NAMES.contains(&name.as_ref()) {
        return Some(words(&argv[1..]));
    }
    (argv.get(1)? == SUBCOMMAND).then(|| words(&argv[2..]))
}

/// Run the peer on its arguments; its exit status (0 PASS, 1 FAIL, 2 a wrong argument).
pub fn run(args: &[String]) -> i32 {
    xenbox_peer::main_with(args)
}

/// What a `--domu` run carries as `$PEER`: `exe` (the running runner, from
/// [`std::env::current_exe`]) if it is a readable ELF program; else a stub written to
/// `stub` that fails with status 127, its stderr line naming why
/// (`$PEER: no peer program in this run: xenpv-run could not carry itself: …`). `Err`
/// only when the stub cannot be written either.
pub fn carried(exe: std::io::Result<PathBuf>, stub: &Path) -> Result<PathBuf, String> {
    let why = match exe {
        Ok(p) => match is_elf(&p) {
            Ok(()) => return Ok(p),
            Err(e) => format!("{}: {e}", p.display()),
        },
        Err(e) => format!("its executable is not found: {e}"),
    };
    fs::write(stub, stub_script(&why)).map_err(|e| format!("{}: {e}", stub.display()))?;
    Ok(stub.to_path_buf())
}

/// A readable ELF file, or why not.
fn is_elf(p: &Path) -> Result<(), String> {
    let mut magic = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| e.to_string())?;
    (magic == *b"\x7fELF")
        .then_some(())
        .ok_or_else(|| "not an ELF program".into())
}

/// The stub `$PEER` (busybox sh): one line on stderr naming `why`, status 127.
pub fn stub_script(why: &str) -> String {
    let line =
        format!("$PEER: no peer program in this run: xenpv-run could not carry itself: {why}")
            .replace('\n', " ")
            .replace('\'', r"'\''");
    format!("#!/bin/sh\necho '{line}' >&2\nexit 127\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_peer_is_chosen_by_name_or_subcommand_only() {
        let p = |a: &[&str]| called_as_peer(&argv(a));
        assert_eq!(
            p(&["/run/peer", "1", "8", "abc"]).unwrap(),
            ["1", "8", "abc"]
        );
        assert_eq!(p(&["peer"]).unwrap(), Vec::<String>::new());
        assert_eq!(p(&["./xenbox-peer", "--help"]).unwrap(), ["--help"]);
        assert_eq!(
            p(&["xenpv-run", "dom0-peer"]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            p(&["/usr/bin/xenpv-run", "dom0-peer", "wait-up", "a:1"]).unwrap(),
            ["wait-up", "a:1"]
        );
        // Ordinary runs: a kernel, `new`, the word elsewhere, a name that only contains it.
        assert_eq!(p(&["xenpv-run", "k.elf", "dom0-peer"]), None);
        assert_eq!(p(&["xenpv-run", "new", "peer"]), None);
        assert_eq!(p(&["/run/peers", "wait-up"]), None);
        assert_eq!(p(&["/run/peer/xenpv-run", "k.elf"]), None);
        assert_eq!(p(&["xenpv-run"]), None);
        assert_eq!(p(&[]), None);
    }

    #[test]
    fn a_runner_that_cannot_carry_itself_carries_a_stub_that_says_why() {
        let dir = std::env::temp_dir().join(format!("xenpv-run-peer-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let stub = dir.join("stub");
        // Readable ELF: carried as it is.
        let me = std::env::current_exe().unwrap();
        assert_eq!(carried(Ok(me.clone()), &stub).unwrap(), me);
        assert!(!stub.exists());
        // Not readable, not an ELF, not found: the stub, naming why.
        let text = dir.join("it's.sh");
        fs::write(&text, "echo\n").unwrap();
        for (exe, why) in [
            (
                Ok(dir.join("gone")),
                "gone: No such file or directory (os error 2)",
            ),
            (Ok(text), "it's.sh: not an ELF program"),
            (
                Err(std::io::Error::other("no /proc")),
                "its executable is not found: no /proc",
            ),
        ] {
            assert_eq!(carried(exe, &stub).unwrap(), stub);
            let out = Command::new("sh")
                .args([
                    stub.as_os_str(),
                    "wait-up".as_ref(),
                    "169.254.100.99:80".as_ref(),
                ])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(127));
            assert!(out.stdout.is_empty());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.starts_with(
                    "$PEER: no peer program in this run: xenpv-run could not carry itself: "
                ) && err.trim_end().ends_with(why)
                    && err.lines().count() == 1,
                "{err}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
