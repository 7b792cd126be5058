//! A Xen host in a box: Debian's Linux as PV dom0 with Xen's toolstack (xl, xenstored,
//! xenconsoled) in an initramfs, inside QEMU, so a kernel also boots as a real domU.
//!
//! Built from the pinned packages of `runner/xenbox/packages.lock` (apt-get download +
//! dpkg -x, nothing installed) and the init script `runner/xenbox/init.sh`, both compiled
//! into the runner; cached under `xenbox/<key>/` in [`crate::cache_dir`], where the key
//! hashes the lock, the init script and this builder's layout: with nothing changed,
//! [`ensure`] is a no-op. Per run, the payload travels on two read-only virtio disks:
//! `/dev/vda` = a text header (name, memory, command line, time limit; in bench mode also
//! `bench=1`, `runs=`, `run_timeout=`: see [`BenchMode`]), the kernel and the
//! [`BoxImage::peer`] program if any (see [`Payload`]), `/dev/vdb` = the ramdisk, if any
//! (the file itself, not copied).
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const LOCK: &str = include_str!("../xenbox/packages.lock");
const INIT: &str = include_str!("../xenbox/init.sh");
/// Bumped when the layout of the initramfs changes.
const LAYOUT_VERSION: u32 = 1;
/// Kernel modules the init script loads (their dependencies come first, read from
/// each module's `.modinfo`).
const MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-privcmd",
    "xenfs",
    "virtio_blk",
    "virtio_pci",
];
/// dom0's memory in the box, in MiB (QEMU gets it on top of the domU's).
pub const DOM0_MIB: u64 = 512;

/// The box: dom0's kernel and initramfs.
pub struct BoxImage {
    /// Debian's Linux kernel, booted as the PV dom0.
    pub vmlinuz: PathBuf,
    /// The initramfs: Xen's toolstack, busybox and the init script.
    pub initramfs: PathBuf,
    /// A dom0-side program the init script runs when the domU publishes a grant (the
    /// xenpv-rt repository's grant test), carried on the payload disk; `None` for none.
    pub peer: Option<PathBuf>,
}

/// `(package, version)` pairs of the lock file.
pub fn pins(lock: &str) -> Result<Vec<(String, String)>, String> {
    lock.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_once('=')
                .map(|(p, v)| (p.to_string(), v.to_string()))
                .ok_or(format!("packages.lock: {l:?} is not package=version"))
        })
        .collect()
}

/// FNV-1a of everything the box is built from.
fn key() -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in LOCK
        .bytes()
        .chain(INIT.bytes())
        .chain(MODULES.concat().bytes())
        .chain(LAYOUT_VERSION.to_le_bytes())
    {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The box, built if needed (downloading the pinned packages with `apt-get download`);
/// its [`BoxImage::peer`] is `None`, for the caller to set.
pub fn ensure() -> Result<BoxImage, String> {
    let base = crate::cache_dir().join("xenbox");
    let dir = base.join(key());
    let img = BoxImage {
        vmlinuz: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio"),
        peer: None,
    };
    if img.vmlinuz.is_file() && img.initramfs.is_file() {
        return Ok(img);
    }
    let pins = pins(LOCK)?;
    let debs = base.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let x = dir.join("x");
    let _ = fs::remove_dir_all(&x);
    fs::create_dir_all(&x).map_err(|e| format!("{}: {e}", x.display()))?;
    for (pkg, ver) in &pins {
        let deb = find_deb(&debs, pkg, ver);
        let deb = match deb {
            Some(d) => d,
            None => {
                eprintln!("xenpv-run: box: downloading {pkg}={ver}");
                run(
                    Command::new("apt-get")
                        .args(["download", &format!("{pkg}={ver}")])
                        .current_dir(&debs),
                    &format!("apt-get download {pkg}={ver}"),
                )
                .map_err(|e| {
                    // A pinned version can leave the mirror when Debian supersedes it.
                    let now = Command::new("apt-cache")
                        .args(["policy", pkg])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    let cand = now
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("Candidate: "))
                        .unwrap_or("none (run apt-get update?)");
                    format!(
                        "{e}\nthe mirror's candidate for {pkg} is {cand}; update runner/xenbox/packages.lock to move the pin"
                    )
                })?;
                find_deb(&debs, pkg, ver).ok_or(format!("{pkg}={ver}: no .deb after download"))?
            }
        };
        run(
            Command::new("dpkg").arg("-x").arg(&deb).arg(&x),
            &format!("dpkg -x {}", deb.display()),
        )?;
    }
    let entries = layout(&x)?;
    let tmp = dir.join("initramfs.cpio.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    write_cpio(&mut f, &entries)?;
    drop(f);
    let vmlinuz = fs::read_dir(x.join("boot"))
        .map_err(|e| format!("kernel package: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package has no vmlinuz")?;
    fs::copy(&vmlinuz, &img.vmlinuz).map_err(|e| format!("vmlinuz: {e}"))?;
    fs::rename(&tmp, &img.initramfs).map_err(|e| format!("initramfs: {e}"))?;
    let _ = fs::remove_dir_all(&x);
    eprintln!("xenpv-run: box built in {}", dir.display());
    Ok(img)
}

fn find_deb(debs: &Path, pkg: &str, ver: &str) -> Option<PathBuf> {
    let want = format!("{pkg}_{}_", ver.replace(':', "%3a"));
    fs::read_dir(debs)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&want))
        })
}

/// One member of the initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory (mode 0755).
    Dir,
    /// A regular file.
    File {
        /// Its bytes.
        data: Vec<u8>,
        /// Its permission bits (`0o755`, `0o644`).
        mode: u32,
    },
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device (major, minor), mode 0600.
    CharDev(u32, u32),
}

/// What goes into the initramfs, by path.
fn layout(x: &Path) -> Result<BTreeMap<String, Entry>, String> {
    let mut m = BTreeMap::new();
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let exe = |data| Entry::File { data, mode: 0o755 };
    m.insert("init".into(), exe(INIT.as_bytes().to_vec()));
    m.insert("dev/console".into(), Entry::CharDev(5, 1));
    m.insert("bin/busybox".into(), exe(read(&x.join("bin/busybox"))?));
    for b in ["xl", "xenstored", "xenconsoled", "xen-init-dom0"] {
        m.insert(
            format!("usr/lib/xen-4.17/bin/{b}"),
            exe(read(&x.join("usr/lib/xen-4.17/bin").join(b))?),
        );
    }
    m.insert(
        "usr/bin/xenstore".into(),
        exe(read(&x.join("usr/bin/xenstore"))?),
    );
    for l in ["read", "write", "ls", "list", "exists", "rm"] {
        m.insert(
            format!("usr/bin/xenstore-{l}"),
            Entry::Symlink("xenstore".into()),
        );
    }
    // Shared libraries (not gconv & co.: nothing here needs them).
    for d in ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"] {
        for e in fs::read_dir(x.join(d)).map_err(|e| format!("{d}: {e}"))? {
            let p = e.map_err(|e| e.to_string())?.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if !name.contains(".so") {
                continue;
            }
            let meta = fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
            let entry = if meta.file_type().is_symlink() {
                Entry::Symlink(
                    fs::read_link(&p)
                        .map_err(|e| e.to_string())?
                        .to_string_lossy()
                        .into(),
                )
            } else {
                exe(read(&p)?)
            };
            m.insert(format!("{d}/{name}"), entry);
        }
    }
    m.insert(
        "lib64/ld-linux-x86-64.so.2".into(),
        Entry::Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into()),
    );
    m.insert(
        "etc/xen/xl.conf".into(),
        Entry::File {
            data: b"autoballoon=\"off\"\n".to_vec(),
            mode: 0o644,
        },
    );
    let order = module_order(x)?;
    let mut list = String::new();
    for (name, path) in &order {
        m.insert(
            format!("lib/modules/{name}.ko"),
            Entry::File {
                data: read(path)?,
                mode: 0o644,
            },
        );
        list += &format!("{name}.ko\n");
    }
    m.insert(
        "etc/xenbox/modules".into(),
        Entry::File {
            data: list.into_bytes(),
            mode: 0o644,
        },
    );
    Ok(m)
}

/// `depends=` of a module's `.modinfo`.
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// MODULES and their dependencies, dependencies first.
fn module_order(x: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut all = BTreeMap::new();
    let kdir = fs::read_dir(x.join("lib/modules"))
        .map_err(|e| format!("kernel modules: {e}"))?
        .filter_map(Result::ok)
        .next()
        .ok_or("no /lib/modules/<version>")?
        .path();
    let mut stack = vec![kdir.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                // Module names use '_' and '-' interchangeably.
                all.insert(n.replace('-', "_"), (n.to_string(), p.clone()));
            }
        }
    }
    let mut out: Vec<(String, PathBuf)> = vec![];
    fn visit(
        name: &str,
        all: &BTreeMap<String, (String, PathBuf)>,
        out: &mut Vec<(String, PathBuf)>,
        depth: u32,
    ) -> Result<(), String> {
        let (file, path) = all
            .get(&name.replace('-', "_"))
            .ok_or(format!("kernel module {name} not in the kernel package"))?;
        if out.iter().any(|(n, _)| n == file) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("module dependencies of {name} loop"));
        }
        let data = fs::read(path).map_err(|e| e.to_string())?;
        for d in modinfo_depends(&data) {
            visit(&d, all, out, depth + 1)?;
        }
        out.push((file.clone(), path.clone()));
        Ok(())
    }
    for m in MODULES {
        visit(m, &all, &mut out, 0)?;
    }
    Ok(out)
}

/// An uncompressed newc cpio archive (what the kernel unpacks as initramfs); parent
/// directories are added, mtimes are 0 so the same inputs give the same bytes.
pub fn write_cpio(w: &mut impl Write, entries: &BTreeMap<String, Entry>) -> Result<(), String> {
    let mut all = entries.clone();
    for path in entries.keys() {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            all.entry(d.to_string_lossy().into()).or_insert(Entry::Dir);
            p = d.parent();
        }
    }
    let mut ino = 1u32;
    let mut put = |w: &mut dyn Write,
                   name: &str,
                   mode: u32,
                   data: &[u8],
                   rdev: (u32, u32)|
     -> std::io::Result<()> {
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 1, 0, data.len(), 0, 0, rdev.0, rdev.1, 0
        );
        ino += 1;
        w.write_all(hdr.as_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&[0])?;
        let pad = (4 - (110 + namesize) % 4) % 4;
        w.write_all(&[0; 3][..pad])?;
        w.write_all(data)?;
        w.write_all(&[0; 3][..(4 - data.len() % 4) % 4])
    };
    let io = |e: std::io::Error| format!("writing the initramfs: {e}");
    for (name, e) in &all {
        match e {
            Entry::Dir => put(w, name, 0o040755, &[], (0, 0)),
            Entry::File { data, mode } => put(w, name, 0o100000 | mode, data, (0, 0)),
            Entry::Symlink(t) => put(w, name, 0o120777, t.as_bytes(), (0, 0)),
            Entry::CharDev(maj, min) => put(w, name, 0o020600, &[], (*maj, *min)),
        }
        .map_err(io)?;
    }
    put(w, "TRAILER!!!", 0, &[], (0, 0)).map_err(io)
}

/// Bench mode of the box (payload header `bench=1`): the domU is started [`BenchMode::runs`]
/// times in a row with `xl create -F`, each run timed in dom0 from just before `xl create`
/// to the domain's end and reported as a `xenbox: bench run N ...` line followed by that
/// run's console (read them with [`bench_runs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchMode {
    /// How many times the domU is started.
    pub runs: u32,
    /// Each run's wall-clock limit in seconds: a domU still there then is destroyed and
    /// the run reported as failed.
    pub run_timeout_s: u64,
}

/// The per-run payload disk: what the box boots as its domU, and how.
pub struct Payload<'a> {
    /// The domain's name (in bench mode, runs are named `NAME-1`, `NAME-2`, ...).
    pub name: &'a str,
    /// The domU's kernel.
    pub kernel: &'a Path,
    /// The dom0-side program of [`BoxImage::peer`], if any.
    pub peer: Option<&'a Path>,
    /// The domU's command line (xl's `extra`).
    pub cmdline: &'a str,
    /// The domU's memory in MiB.
    pub memory_mib: u64,
    /// The whole box run's wall-clock limit in seconds (the box keeps 30 s of it for
    /// itself).
    pub timeout_s: u64,
    /// Start the domU several times and time each start (`None`: boot it once, the
    /// ordinary way).
    pub bench: Option<BenchMode>,
}

impl Payload<'_> {
    /// The 4 KiB header's text. Without bench mode it is exactly what it always was:
    /// the bench keys are only written when asked for.
    pub fn header(&self, kernel_len: usize, peer_len: usize) -> String {
        let (name, cmdline, memory_mib, timeout_s) =
            (self.name, self.cmdline, self.memory_mib, self.timeout_s);
        let mut hdr = format!(
            "name={name}\nkernel_len={kernel_len}\npeer_len={peer_len}\nmemory={memory_mib}\nextra={cmdline}\ntimeout={timeout_s}\n"
        );
        if let Some(b) = self.bench {
            hdr += &format!(
                "bench=1\nruns={}\nrun_timeout={}\n",
                b.runs, b.run_timeout_s
            );
        }
        hdr
    }

    /// Write the payload disk to `path`: a 4 KiB header, the kernel, then the peer
    /// program, each starting on a 4 KiB boundary. A name or command line holding a
    /// newline, quote or NUL is refused (it would break the header or the domU's xl
    /// config), and so is a bench mode of no runs.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        for (what, v) in [("name", self.name), ("command line", self.cmdline)] {
            if v.contains(['\n', '"', '\0']) {
                return Err(format!("domU {what} {v:?} holds a newline, quote or NUL"));
            }
        }
        if self
            .bench
            .is_some_and(|b| b.runs == 0 || b.run_timeout_s == 0)
        {
            return Err("bench mode needs at least one run and a time limit".into());
        }
        let kernel = self.kernel;
        let k = fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
        let p = match self.peer {
            Some(peer) => fs::read(peer).map_err(|e| format!("{}: {e}", peer.display()))?,
            None => Vec::new(),
        };
        let hdr = self.header(k.len(), p.len());
        if hdr.len() > 4096 {
            return Err(format!(
                "payload header of {} bytes, the limit is 4096",
                hdr.len()
            ));
        }
        let mut data = hdr.into_bytes();
        data.resize(4096, 0);
        for part in [&k, &p] {
            data.extend_from_slice(part);
            data.resize(data.len().div_ceil(4096) * 4096, 0);
        }
        fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Write the per-run payload disk to `path` for one ordinary boot (see [`Payload::write`]).
pub fn payload(
    path: &Path,
    name: &str,
    kernel: &Path,
    peer: Option<&Path>,
    cmdline: &str,
    memory_mib: u64,
    timeout_s: u64,
) -> Result<(), String> {
    Payload {
        name,
        kernel,
        peer,
        cmdline,
        memory_mib,
        timeout_s,
        bench: None,
    }
    .write(path)
}

/// The bytes of file `name` in a newc cpio archive (as [`write_cpio`] makes them), `None`
/// if the archive has no such member.
pub fn cpio_file(data: &[u8], name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut at = 0usize;
    let hex = |b: &[u8]| -> Result<usize, String> {
        let s = std::str::from_utf8(b).map_err(|_| "cpio: a header field is not text")?;
        usize::from_str_radix(s, 16).map_err(|e| format!("cpio: header field {s:?}: {e}"))
    };
    loop {
        let hdr = data
            .get(at..at + 110)
            .ok_or("cpio: the archive ends inside a header")?;
        if &hdr[..6] != b"070701" {
            return Err(format!("cpio: no newc header at offset {at}"));
        }
        let filesize = hex(&hdr[54..62])?;
        let namesize = hex(&hdr[94..102])?;
        let name_at = at + 110;
        let member = data
            .get(name_at..name_at + namesize)
            .ok_or("cpio: the archive ends inside a name")?;
        let member = &member[..namesize.saturating_sub(1)];
        let data_at = (name_at + namesize).next_multiple_of(4);
        if member == b"TRAILER!!!" {
            return Ok(None);
        }
        let body = data
            .get(data_at..data_at + filesize)
            .ok_or("cpio: the archive ends inside a file")?;
        if member == name.as_bytes() {
            return Ok(Some(body.to_vec()));
        }
        at = (data_at + filesize).next_multiple_of(4);
    }
}

/// The `/init` of [`poweroff_initramfs`]: a Linux domU that stops as soon as it reaches
/// user space, so a boot measures the kernel's own start.
pub const POWEROFF_INIT: &str = "#!/bin/busybox sh\n/bin/busybox poweroff -f\n";

/// Write to `out` an initramfs (uncompressed newc cpio, which Linux takes as it is) for a
/// Linux domU whose `/init` powers off at once: the box's own busybox, `/dev/console`
/// and [`POWEROFF_INIT`].
pub fn poweroff_initramfs(bx: &BoxImage, out: &Path) -> Result<(), String> {
    let cpio = fs::read(&bx.initramfs).map_err(|e| format!("{}: {e}", bx.initramfs.display()))?;
    let busybox = cpio_file(&cpio, "bin/busybox")?
        .ok_or(format!("{}: no bin/busybox", bx.initramfs.display()))?;
    let mut m = BTreeMap::new();
    m.insert(
        "init".to_string(),
        Entry::File {
            data: POWEROFF_INIT.as_bytes().to_vec(),
            mode: 0o755,
        },
    );
    m.insert(
        "bin/busybox".to_string(),
        Entry::File {
            data: busybox,
            mode: 0o755,
        },
    );
    // The kernel opens /dev/console for init's stdio before any devtmpfs is mounted.
    m.insert("dev/console".to_string(), Entry::CharDev(5, 1));
    let mut data = vec![];
    write_cpio(&mut data, &m)?;
    fs::write(out, data).map_err(|e| format!("{}: {e}", out.display()))
}

/// One run of the box's bench mode, read from the box's console by [`bench_runs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchRun {
    /// The run's number, from 1.
    pub index: u32,
    /// Milliseconds from just before `xl create` to the domain's end, or why the run has
    /// none.
    pub create_to_shutdown_ms: Result<u64, String>,
    /// The shutdown reason xl reported (0 poweroff, 1 reboot, 2 suspend, 3 crash), if it
    /// said one.
    pub reason: Option<u32>,
    /// The run's domU console lines (without the `domU| ` prefix).
    pub console: Vec<String>,
}

/// The runs of a box booted in bench mode, from its console text: each
/// `xenbox: bench run N create_to_shutdown_ms=MS reason=R` (or `xenbox: bench run N FAIL
/// why`) line and the `domU| ` lines after it, up to the next run line.
pub fn bench_runs(text: &str) -> Vec<BenchRun> {
    let mut runs: Vec<BenchRun> = vec![];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("xenbox: bench run ") {
            let (n, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let Ok(index) = n.parse() else { continue };
            let field = |key: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            };
            let create_to_shutdown_ms = match rest.strip_prefix("FAIL") {
                Some(why) => Err(why.trim().to_string()),
                None => field("create_to_shutdown_ms")
                    .and_then(|v| v.parse().ok())
                    .ok_or(format!("no create_to_shutdown_ms in {line:?}")),
            };
            runs.push(BenchRun {
                index,
                create_to_shutdown_ms,
                reason: field("reason").and_then(|v| v.parse().ok()),
                console: vec![],
            });
        } else if let (Some(r), Some(g)) = (runs.last_mut(), line.strip_prefix("domU| ")) {
            r.console.push(g.to_string());
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_pins_every_package() {
        let p = pins(LOCK).unwrap();
        assert!(p.iter().any(|(n, _)| n.starts_with("linux-image-")));
        assert!(p.iter().any(|(n, _)| n == "xen-utils-4.17"));
        assert!(p.iter().all(|(_, v)| !v.is_empty()));
        assert!(pins("no-version\n").is_err());
    }

    #[test]
    fn cpio_is_newc_with_parents_and_a_trailer() {
        let mut e = BTreeMap::new();
        e.insert(
            "a/b/c".to_string(),
            Entry::File {
                data: b"hello".to_vec(),
                mode: 0o644,
            },
        );
        e.insert("dev/console".to_string(), Entry::CharDev(5, 1));
        let mut out = vec![];
        write_cpio(&mut out, &e).unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(s.starts_with("070701"));
        for name in ["a\0", "a/b\0", "a/b/c\0", "dev\0", "TRAILER!!!\0"] {
            assert!(s.contains(name), "{name:?}");
        }
        assert_eq!(out.len() % 4, 0);
        // Same input, same bytes.
        let mut again = vec![];
        write_cpio(&mut again, &e).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn module_dependencies_are_read_from_modinfo() {
        let ko = b"\x7fELF....license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(modinfo_depends(ko), ["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"depends=\0").is_empty());
    }

    #[test]
    fn payload_headers_refuse_what_would_break_the_config() {
        let d = std::env::temp_dir().join("xenbox-payload-test");
        let k = d.with_extension("k");
        fs::write(&k, b"ELF").unwrap();
        assert!(payload(&d, "app", &k, Some(&k), "a\"b", 64, 10)
            .unwrap_err()
            .contains("quote"));
        payload(&d, "app", &k, Some(&k), "split=1G stress", 64, 10).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(data.starts_with(
            b"name=app\nkernel_len=3\npeer_len=3\nmemory=64\nextra=split=1G stress\n"
        ));
        assert_eq!(&data[4096..4099], b"ELF");
        assert_eq!(
            &data[8192..8195],
            b"ELF",
            "the peer on the next 4 KiB boundary"
        );
    }

    #[test]
    fn bench_keys_are_in_the_header_only_when_asked_for() {
        let d = std::env::temp_dir().join("xenbox-payload-bench-test");
        let k = d.with_extension("k");
        fs::write(&k, b"ELF").unwrap();
        let mut p = Payload {
            name: "linux",
            kernel: &k,
            peer: None,
            cmdline: "console=hvc0 loglevel=7",
            memory_mib: 256,
            timeout_s: 900,
            bench: None,
        };
        assert_eq!(
            p.header(3, 0),
            "name=linux\nkernel_len=3\npeer_len=0\nmemory=256\nextra=console=hvc0 loglevel=7\ntimeout=900\n"
        );
        p.bench = Some(BenchMode {
            runs: 5,
            run_timeout_s: 300,
        });
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        let hdr = String::from_utf8_lossy(&data[..4096]);
        let hdr = hdr.trim_end_matches('\0');
        assert!(
            hdr.ends_with("timeout=900\nbench=1\nruns=5\nrun_timeout=300\n"),
            "{hdr}"
        );
        assert_eq!(&data[4096..4099], b"ELF");
        p.bench = Some(BenchMode {
            runs: 0,
            run_timeout_s: 300,
        });
        assert!(p.write(&d).unwrap_err().contains("at least one run"));
        // The ordinary payload has no bench keys at all.
        payload(&d, "app", &k, None, "x", 64, 10).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(!String::from_utf8_lossy(&data[..4096]).contains("bench"));
    }

    #[test]
    fn cpio_members_are_read_back() {
        let mut e = BTreeMap::new();
        e.insert(
            "bin/busybox".to_string(),
            Entry::File {
                data: b"BUSYBOX!x".to_vec(),
                mode: 0o755,
            },
        );
        e.insert(
            "init".to_string(),
            Entry::File {
                data: b"#!".to_vec(),
                mode: 0o755,
            },
        );
        e.insert("dev/console".to_string(), Entry::CharDev(5, 1));
        let mut out = vec![];
        write_cpio(&mut out, &e).unwrap();
        assert_eq!(
            cpio_file(&out, "bin/busybox").unwrap().as_deref(),
            Some(&b"BUSYBOX!x"[..])
        );
        assert_eq!(
            cpio_file(&out, "init").unwrap().as_deref(),
            Some(&b"#!"[..])
        );
        assert_eq!(cpio_file(&out, "bin/sh").unwrap(), None);
        assert!(cpio_file(b"not a cpio archive at all", "init").is_err());
        assert!(cpio_file(&out[..200], "init").is_err(), "cut short");
    }

    #[test]
    fn the_poweroff_initramfs_carries_busybox_and_an_init() {
        let d = std::env::temp_dir().join("xenbox-poweroff-test");
        let mut e = BTreeMap::new();
        e.insert(
            "bin/busybox".to_string(),
            Entry::File {
                data: b"BB".to_vec(),
                mode: 0o755,
            },
        );
        let mut box_cpio = vec![];
        write_cpio(&mut box_cpio, &e).unwrap();
        let bx = BoxImage {
            vmlinuz: d.with_extension("vmlinuz"),
            initramfs: d.with_extension("box.cpio"),
            peer: None,
        };
        fs::write(&bx.initramfs, &box_cpio).unwrap();
        let out = d.with_extension("out.cpio");
        poweroff_initramfs(&bx, &out).unwrap();
        let got = fs::read(&out).unwrap();
        assert_eq!(cpio_file(&got, "bin/busybox").unwrap().unwrap(), b"BB");
        assert_eq!(
            cpio_file(&got, "init").unwrap().unwrap(),
            POWEROFF_INIT.as_bytes()
        );
        assert!(String::from_utf8_lossy(&got).contains("dev/console\0"));
        // A box without busybox is an error, not an empty initramfs.
        fs::write(&bx.initramfs, &got[..0]).unwrap();
        assert!(poweroff_initramfs(&bx, &out).is_err());
    }

    #[test]
    fn bench_runs_are_split_with_their_console() {
        let text = "\
xenbox: dom0 ready
(XEN) something
xenbox: bench run 1 create_to_shutdown_ms=1432 reason=0
domU| timing: entry_to_main_us=5
domU| xenpv-rt: exit status 0
xenbox: bench run 2 FAIL domU still running after 300 s (destroyed)
domU| [    5.525123] Run /init as init process
xenbox: bench run 3 create_to_shutdown_ms=999\r
xenbox: bench done runs=3 failed=1
";
        let r = bench_runs(text);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].index, 1);
        assert_eq!(r[0].create_to_shutdown_ms, Ok(1432));
        assert_eq!(r[0].reason, Some(0));
        assert_eq!(
            r[0].console,
            ["timing: entry_to_main_us=5", "xenpv-rt: exit status 0"]
        );
        assert_eq!(
            r[1].create_to_shutdown_ms,
            Err("domU still running after 300 s (destroyed)".into())
        );
        assert_eq!(r[1].console.len(), 1);
        assert_eq!(r[2].create_to_shutdown_ms, Ok(999));
        assert_eq!(r[2].reason, None);
        assert!(r[2].console.is_empty());
        assert!(bench_runs("xenbox: bench run x y\n").is_empty());
        assert!(bench_runs("xenbox: bench run 4 reason=0\n")[0]
            .create_to_shutdown_ms
            .is_err());
    }
}
