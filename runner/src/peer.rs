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
//! The peer runs in the box's dom0, Debian 12's userland (glibc 2.36, the `libc6` pin of
//! runner/xenbox/packages.lock): a runner whose dynamic symbols need a newer glibc (built
//! on a newer host) would not start there, so [`carried`] reads its symbol versions and
//! carries the stub, naming the versions, instead.
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
        Ok(p) => match is_elf(&p).and_then(|()| runs_in_the_box(&p)) {
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

/// The box's glibc (major, minor), from the `libc6` pin of its package lock.
pub fn box_glibc() -> Option<(u32, u32)> {
    let pins = crate::xenbox::pins(include_str!("../xenbox/packages.lock")).ok()?;
    let (_, v) = pins.into_iter().find(|(p, _)| p == "libc6")?;
    glibc_version(v.split('-').next()?)
}

/// `2.36` (or `2.2.5`) as (2, 36) ((2, 2)).
fn glibc_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether the program at `p` can start in the box's dom0: every `GLIBC_x.y` symbol
/// version its dynamic section needs is at most the box's glibc; else why not.
fn runs_in_the_box(p: &Path) -> Result<(), String> {
    let data = fs::read(p).map_err(|e| e.to_string())?;
    let needed = glibc_needs(&data).map_err(|e| format!("its ELF symbol versions: {e}"))?;
    let have = box_glibc().ok_or("the box's package lock names no libc6")?;
    too_new(&needed, have).map_or(Ok(()), |v| {
        Err(format!(
            "it needs glibc {}.{} (symbol version GLIBC_{0}.{1}), the box's dom0 (Debian 12) \
             has {}.{}: build xenpv-run against glibc {2}.{3} or older for a working $PEER",
            v.0, v.1, have.0, have.1
        ))
    })
}

/// The newest of `needed` if it is newer than `have`.
fn too_new(needed: &[(u32, u32)], have: (u32, u32)) -> Option<(u32, u32)> {
    needed.iter().copied().filter(|v| *v > have).max()
}

/// The `GLIBC_x.y` versions an ELF file's dynamic symbols need (its `.gnu.version_r`).
fn glibc_needs(data: &[u8]) -> object::read::Result<Vec<(u32, u32)>> {
    use object::read::elf::ElfFile64;
    let f = ElfFile64::<object::Endianness>::parse(data)?;
    let (endian, sections) = (f.endian(), f.elf_section_table());
    let mut out = Vec::new();
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_, mut aux)) = needs.next()? {
            while let Some(a) = aux.next()? {
                let name = String::from_utf8_lossy(a.name(endian, strings)?).into_owned();
                if let Some(v) = name.strip_prefix("GLIBC_").and_then(glibc_version) {
                    out.push(v);
                }
            }
        }
    }
    Ok(out)
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
    fn a_runner_for_a_newer_glibc_than_the_boxs_is_not_carried() {
        assert_eq!(box_glibc(), Some((2, 36)), "Debian 12's libc6");
        assert_eq!(glibc_version("2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version("PRIVATE"), None);
        assert_eq!(too_new(&[(2, 2), (2, 34), (2, 36)], (2, 36)), None);
        assert_eq!(too_new(&[(2, 39), (2, 2), (2, 38)], (2, 36)), Some((2, 39)));
        // This test binary, built as the runner is: its needs are read (a glibc program
        // needs some GLIBC_ version), and it is judged against the box.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = glibc_needs(&me).unwrap();
        assert!(
            !needs.is_empty() && needs.iter().all(|v| v.0 == 2),
            "{needs:?}"
        );
        assert!(glibc_needs(b"\x7fELF not really").is_err());
        // The same program with its newest need renamed GLIBC_2.99 (as if built on a newer
        // host): not carried; the stub names the version.
        let newest = *needs.iter().max().unwrap();
        let name = format!("GLIBC_{}.{}\0", newest.0, newest.1);
        let newer = format!("GLIBC_2.{}\0", "9".repeat(name.len() - 9));
        let mut patched = me.clone();
        let mut at = 0;
        while let Some(k) = patched[at..]
            .windows(name.len())
            .position(|w| w == name.as_bytes())
        {
            patched[at + k..at + k + name.len()].copy_from_slice(newer.as_bytes());
            at += k + name.len();
        }
        let dir = std::env::temp_dir().join(format!("xenpv-run-glibc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (exe, stub) = (dir.join("xenpv-run"), dir.join("stub"));
        fs::write(&exe, &patched).unwrap();
        assert_eq!(carried(Ok(exe), &stub).unwrap(), stub);
        let text = fs::read_to_string(&stub).unwrap();
        assert!(
            text.contains(&format!("it needs glibc {}", &newer[6..newer.len() - 1]))
                && text.contains("has 2.36"),
            "{text}"
        );
        let _ = fs::remove_dir_all(&dir);
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
