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
//! (the file itself, not copied). The domU's disks ([`Disk`], `--disk`) follow as virtio
//! drives of their own, found in dom0 by their serial ([`disk_serial`]).
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const LOCK: &str = include_str!("../xenbox/packages.lock");
const INIT: &str = include_str!("../xenbox/init.sh");
/// libxl's hotplug scripts, at the paths it runs them from (`/etc/xen/scripts/`): the box
/// has none of Debian's (they need bash and more), so these small busybox ones stand in.
const HOTPLUG: &[(&str, &str)] = &[
    ("vif-bridge", include_str!("../xenbox/vif-bridge")),
    ("block", include_str!("../xenbox/block")),
];
/// Bumped when the layout of the initramfs changes.
const LAYOUT_VERSION: u32 = 2;
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
    // The domUs' network (a bridge in dom0 and netback) and disks (blkback, loop).
    "llc",
    "stp",
    "bridge",
    "xen-netback",
    "xen-blkback",
    "loop",
];
/// Most network interfaces a domU gets in the box ([`Payload::vifs`]).
pub const MAX_VIFS: u32 = 4;
/// The bridge in dom0 that every domU vif joins, and dom0's (link-local) address on it.
pub const BRIDGE: &str = "xenbr0";
/// dom0's address on [`BRIDGE`].
pub const DOM0_ADDR: &str = "169.254.100.1/24";
/// dom0's memory in the box, in MiB (QEMU gets it on top of the domU's).
pub const DOM0_MIB: u64 = 512;
/// Most block devices a domU gets in the box ([`Payload::disks`]).
pub const MAX_DISKS: usize = 4;
/// The PCI slot of the box's disk 0 in QEMU (disk `i` is at this + `i`): above the slots
/// QEMU picks for the payload and ramdisk drives (it gives `-device`s the low ones
/// first), so those stay dom0's `/dev/vda` and `/dev/vdb`.
pub const DISK_PCI_SLOT: usize = 0x10;

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
        .chain(HOTPLUG.iter().flat_map(|(n, s)| n.bytes().chain(s.bytes())))
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
    for (name, script) in HOTPLUG {
        m.insert(
            format!("etc/xen/scripts/{name}"),
            exe(script.as_bytes().to_vec()),
        );
    }
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
    /// The domU's network interfaces, 0..=[`MAX_VIFS`]: vif `i` is on [`BRIDGE`] with MAC
    /// `00:16:3e:00:00:02` + `i` (header key `vifs=N`, written only when nonzero).
    pub vifs: u32,
    /// A dom0 script (busybox sh) the box runs next to the domU (see [`DomuExtras`]);
    /// header key `script_len=N`, the script stored after the peer on the next 4 KiB
    /// boundary. Not in bench mode.
    pub dom0_script: Option<&'a Path>,
    /// The domU's disks, 0..=[`MAX_DISKS`]: header key `disks=A,A,…` (one `w` or `r` per
    /// disk, see [`disks_key`]), written only when there are disks. The files travel as
    /// QEMU drives of their own ([`crate::qemu::disk_args`]), not in the payload.
    pub disks: &'a [Disk],
}

/// What a domU in the box gets besides its kernel and command line (for
/// [`crate::qemu::boot_domu`]; the default is nothing, the ordinary boot).
///
/// The dom0 script's contract: the box starts it with `/bin/sh` once the domU has its
/// domain id, with `DOMID`, `DOMU_NAME`, `PEER=/run/peer` (the [`BoxImage::peer`]
/// program; an empty file when the run has none) and init's `PATH` (busybox, xl, xenstore-*) in its
/// environment. Its output (stdout and stderr) is shown as it comes, each line prefixed
/// `dom0| ` (the domU's are `domU| `), and its end as `xenbox: dom0-script exit N`.
/// Once it has ended, a domU still running is asked to stop (`xl shutdown`: a PV guest
/// sees `control/shutdown = poweroff`) and destroyed if it has not stopped 60 s later; a
/// domU that stops first leaves the script running. Both have one deadline, when dom0
/// has been up for the run's time limit minus 40 s: the script is killed there (with
/// what it started), said as `xenbox: dom0-script killed at its deadline …`, and counts
/// as status 124; a domU still running then is destroyed.
/// The run's status is the guest's if nonzero, else the script's if nonzero (a status
/// above 127, which the exit device cannot carry, is 125), else 0.
///
/// With disks ([`crate::qemu::boot_domu_with_disks`]) the script also has `DISK0`,
/// `DISK1`, … : dom0's block device behind the domU's disk 0 (`xvda`), 1 (`xvdb`), …
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomuExtras {
    /// The domU's network interfaces, 0..=[`MAX_VIFS`] (see [`Payload::vifs`]).
    pub vifs: u32,
    /// The dom0 script, if any.
    pub dom0_script: Option<PathBuf>,
}

/// The number of vifs of `--net N`: 1..=[`MAX_VIFS`]; the error names the limit.
pub fn parse_vifs(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_VIFS).contains(&n) => Ok(n),
        _ => Err(format!(
            "the number of network interfaces is 1..={MAX_VIFS} (the box's limit), not {s:?}"
        )),
    }
}

/// The MAC address of the domU's vif `i` in the box: `00:16:3e:00:00:02` + `i` (Xen's
/// prefix 00:16:3e).
pub fn vif_mac(i: u32) -> String {
    format!("00:16:3e:00:00:{:02x}", 2 + i)
}

/// The xl config line the box writes for `vifs` interfaces (`None` for none), as the
/// init script makes it from the header's `vifs=N`.
pub fn vif_config(vifs: u32) -> Option<String> {
    (vifs > 0).then(|| {
        let v: Vec<String> = (0..vifs)
            .map(|i| format!("'bridge={BRIDGE},mac={}'", vif_mac(i)))
            .collect();
        format!("vif = [{}]", v.join(", "))
    })
}

/// A host file the domU gets as a block device in the box (`--disk FILE[,ro]`): a raw
/// image, attached to the box's QEMU as a virtio drive (serial [`disk_serial`]) that
/// dom0 hands to the domU with xl (`phy:`, Linux's xen-blkback).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// The raw image on the host (used in place, not copied: a writable disk's writes land
    /// in it).
    pub path: PathBuf,
    /// Read-only for the domU (and for QEMU: `readonly=on`; xl access `r`).
    pub read_only: bool,
    /// QEMU block throttling for the drive (boot tests only: a disk that crawls), e.g.
    /// `throttling.bps-total=65536`, appended to its `-drive` as is; `None` from the CLI.
    pub throttle: Option<String>,
}

/// A `--disk` value: `FILE`, `FILE,ro` (read-only) or `FILE,rw` (the default, written out
/// for a file name that holds a comma). The file itself is checked by [`check_disks`].
pub fn parse_disk(s: &str) -> Result<Disk, String> {
    let (path, read_only) = match s.rsplit_once(',') {
        None => (s, false),
        Some((p, "ro")) => (p, true),
        Some((p, "rw")) => (p, false),
        Some((_, mode)) => {
            return Err(format!(
                "{s:?}: {mode:?} is not an access mode: a disk is FILE or FILE,ro (FILE,rw for a file name with a comma)"
            ))
        }
    };
    if path.is_empty() {
        return Err(format!("{s:?}: no file named: a disk is FILE or FILE,ro"));
    }
    Ok(Disk {
        path: PathBuf::from(path),
        read_only,
        throttle: None,
    })
}

/// Refuse disks the box cannot take, naming the value: more than [`MAX_DISKS`], a file
/// that does not exist, is not a regular file or is empty, and a file given twice (QEMU
/// locks an image it writes).
pub fn check_disks(disks: &[Disk]) -> Result<(), String> {
    if let Some(extra) = disks.get(MAX_DISKS) {
        return Err(format!(
            "--disk {}: {} disks for the domU, the box's limit is {MAX_DISKS}",
            extra.path.display(),
            disks.len()
        ));
    }
    let mut seen = vec![];
    for d in disks {
        let p = &d.path;
        let meta = fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("--disk {}: no such file", p.display()),
            _ => format!("--disk {}: {e}", p.display()),
        })?;
        if !meta.is_file() {
            return Err(format!(
                "--disk {}: not a regular file (a disk is a raw image)",
                p.display()
            ));
        }
        if meta.len() < 512 {
            return Err(format!(
                "--disk {}: {} bytes, a disk needs at least one 512-byte sector",
                p.display(),
                meta.len()
            ));
        }
        let canon = fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if seen.contains(&canon) {
            return Err(format!("--disk {}: given twice", p.display()));
        }
        seen.push(canon);
    }
    Ok(())
}

/// The header value of [`Payload::disks`]: one access mode per disk, `w` or `r`, joined
/// by commas (`w,r`).
pub fn disks_key(disks: &[Disk]) -> String {
    disks
        .iter()
        .map(|d| if d.read_only { "r" } else { "w" })
        .collect::<Vec<_>>()
        .join(",")
}

/// The serial number of disk `i`'s virtio drive (`xenpv-disk0`, …): dom0 finds the disk's
/// `/dev/vdX` by it (`/sys/block/vdX/serial`), whatever other drives the box has.
pub fn disk_serial(i: usize) -> String {
    format!("xenpv-disk{i}")
}

/// The domU's name for disk `i`: `xvda`, `xvdb`, …
pub fn disk_vdev(i: usize) -> String {
    format!("xvd{}", char::from(b'a' + i as u8))
}

/// The xl config line the box writes for the domU's disks (`None` for none), as the init
/// script makes it from the header's `disks=` and the dom0 device it found for each:
/// `(dom0 device, read-only)` in order, the domU's `xvda`, `xvdb`, …
pub fn disk_config(disks: &[(&str, bool)]) -> Option<String> {
    (!disks.is_empty()).then(|| {
        let d: Vec<String> = disks
            .iter()
            .enumerate()
            .map(|(i, (dev, ro))| {
                format!(
                    "'phy:{dev},{},{}'",
                    disk_vdev(i),
                    if *ro { "r" } else { "w" }
                )
            })
            .collect();
        format!("disk = [{}]", d.join(", "))
    })
}

impl Payload<'_> {
    /// The 4 KiB header's text for a payload without a dom0 script (see
    /// [`Payload::header_with_script`]). Without bench mode and vifs it is exactly what it
    /// always was: the bench and network keys are only written when asked for.
    pub fn header(&self, kernel_len: usize, peer_len: usize) -> String {
        self.header_with_script(kernel_len, peer_len, 0)
    }

    /// The 4 KiB header's text; `script_len=N` is only written when `script_len` is
    /// nonzero, `vifs=N` only when [`Payload::vifs`] is, and `disks=…` only when there
    /// are [`Payload::disks`].
    pub fn header_with_script(
        &self,
        kernel_len: usize,
        peer_len: usize,
        script_len: usize,
    ) -> String {
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
        if self.vifs > 0 {
            hdr += &format!("vifs={}\n", self.vifs);
        }
        if !self.disks.is_empty() {
            hdr += &format!("disks={}\n", disks_key(self.disks));
        }
        if script_len > 0 {
            hdr += &format!("script_len={script_len}\n");
        }
        hdr
    }

    /// Write the payload disk to `path`: a 4 KiB header, the kernel, then the peer
    /// program, then the dom0 script, each starting on a 4 KiB boundary. A name or
    /// command line holding a newline, quote or NUL is refused (it would break the header
    /// or the domU's xl config), and so are a bench mode of no runs, more than
    /// [`MAX_VIFS`] vifs, more than [`MAX_DISKS`] disks, an empty dom0 script and a dom0
    /// script in bench mode.
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
        if self.vifs > MAX_VIFS {
            return Err(format!(
                "{} network interfaces for the domU, the box's limit is {MAX_VIFS}",
                self.vifs
            ));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(format!(
                "{} disks for the domU, the box's limit is {MAX_DISKS}",
                self.disks.len()
            ));
        }
        if self.bench.is_some() && self.dom0_script.is_some() {
            return Err("a dom0 script runs with an ordinary boot, not in bench mode".into());
        }
        let kernel = self.kernel;
        let k = fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
        let p = match self.peer {
            Some(peer) => fs::read(peer).map_err(|e| format!("{}: {e}", peer.display()))?,
            None => Vec::new(),
        };
        let s = match self.dom0_script {
            Some(script) => {
                let s = fs::read(script)
                    .map_err(|e| format!("dom0 script {}: {e}", script.display()))?;
                if s.is_empty() {
                    return Err(format!("dom0 script {}: empty", script.display()));
                }
                s
            }
            None => Vec::new(),
        };
        let hdr = self.header_with_script(k.len(), p.len(), s.len());
        if hdr.len() > 4096 {
            return Err(format!(
                "payload header of {} bytes, the limit is 4096",
                hdr.len()
            ));
        }
        let mut data = hdr.into_bytes();
        data.resize(4096, 0);
        for part in [&k, &p, &s] {
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
        vifs: 0,
        dom0_script: None,
        disks: &[],
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
    linux_initramfs(bx, POWEROFF_INIT, &[], out)
}

/// Write to `out` an initramfs (uncompressed newc cpio, which Linux takes as it is) for a
/// Linux domU of the benches: `init` as `/init`, the box's own busybox, `/dev/console`,
/// and `files` (path, bytes, mode).
fn linux_initramfs(
    bx: &BoxImage,
    init: &str,
    files: &[(&str, &[u8], u32)],
    out: &Path,
) -> Result<(), String> {
    let cpio = fs::read(&bx.initramfs).map_err(|e| format!("{}: {e}", bx.initramfs.display()))?;
    let busybox = cpio_file(&cpio, "bin/busybox")?
        .ok_or(format!("{}: no bin/busybox", bx.initramfs.display()))?;
    let file = |data: &[u8], mode| Entry::File {
        data: data.to_vec(),
        mode,
    };
    let mut m = BTreeMap::new();
    m.insert("init".to_string(), file(init.as_bytes(), 0o755));
    m.insert("bin/busybox".to_string(), file(&busybox, 0o755));
    for &(path, data, mode) in files {
        m.insert(path.to_string(), file(data, mode));
    }
    // The kernel opens /dev/console for init's stdio before any devtmpfs is mounted.
    m.insert("dev/console".to_string(), Entry::CharDev(5, 1));
    let mut data = vec![];
    write_cpio(&mut data, &m)?;
    fs::write(out, data).map_err(|e| format!("{}: {e}", out.display()))
}

/// The `/init` of [`netserve_initramfs`]: a Linux domU at `169.254.100.2/24` on its first
/// vif that serves what the network appliance (`net`) serves, for side-by-side figures:
/// HTTP on TCP 80 (busybox `httpd`, `/bytes/33554432` a 32 MiB file of zeros), TCP
/// discard on 9 (busybox `nc -ll -e`, one `dd` to `/dev/null` per connection) and UDP
/// echo on 7 (`/bin/udp-echo`, the caller's program: busybox has no UDP server). It
/// prints `netserve: up` (or `netserve: FAIL …`), then waits; `xl shutdown` makes the
/// kernel run `/sbin/poweroff`, which signals init, which powers off.
pub const NETSERVE_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /www/bytes /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
trap 'echo "netserve: poweroff"; poweroff -f' USR2 TERM
fail() { echo "netserve: FAIL $*"; }
insmod /lib/modules/xen-netfront.ko || fail "insmod xen-netfront"
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip addr add 169.254.100.2/24 dev eth0 || fail "no eth0"
ip link set eth0 up
head -c 33554432 /dev/zero > /www/bytes/33554432 || fail "no /www/bytes/33554432"
/bin/udp-echo 7 &
nc -ll -p 9 -e /bin/discard &
httpd -p 80 -h /www || fail "httpd"
echo "netserve: up"
while :; do sleep 3600 & wait $!; done
"#;

/// Per connection of [`NETSERVE_INIT`]'s TCP discard service (`nc -e`): read to EOF.
const NETSERVE_DISCARD: &str = "#!/bin/sh\nexec dd of=/dev/null bs=65536 2>/dev/null\n";

/// The bytes of kernel module `name` (e.g. `xen-netfront`) from the box's kernel package
/// (its pinned `.deb`, downloaded with `apt-get download` if it is not in the box's
/// cache any more): for a Linux domU's initramfs, since the box's own carries only
/// dom0's modules. The error names a module that is missing or needs others (its
/// `depends=`).
pub fn box_kernel_module(name: &str) -> Result<Vec<u8>, String> {
    let pins = pins(LOCK)?;
    let (pkg, ver) = pins
        .iter()
        .find(|(p, _)| p.starts_with("linux-image-"))
        .ok_or("packages.lock pins no linux-image-*")?;
    let debs = crate::cache_dir().join("xenbox").join("debs");
    let deb = match find_deb(&debs, pkg, ver) {
        Some(d) => d,
        None => {
            fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
            run(
                Command::new("apt-get")
                    .args(["download", &format!("{pkg}={ver}")])
                    .current_dir(&debs),
                &format!("apt-get download {pkg}={ver}"),
            )?;
            find_deb(&debs, pkg, ver).ok_or(format!("{pkg}={ver}: no .deb after download"))?
        }
    };
    let mut tar = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("dpkg-deb --fsys-tarfile {}: {e}", deb.display()))?;
    let out = Command::new("tar")
        .args(["-xO", "--wildcards"])
        .arg(format!("./lib/modules/*/{name}.ko"))
        .stdin(tar.stdout.take().ok_or("dpkg-deb: no stdout")?)
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    let _ = tar.wait();
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!(
            "kernel module {name} not in {}: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let deps = modinfo_depends(&out.stdout);
    if !deps.is_empty() {
        return Err(format!(
            "kernel module {name} needs {} (not loaded by a domU's initramfs)",
            deps.join(",")
        ));
    }
    Ok(out.stdout)
}

/// Write to `out` an initramfs (uncompressed newc cpio) for a Linux domU that serves the
/// network appliance's services on its first vif ([`NETSERVE_INIT`]): the box's busybox,
/// `netfront_ko` as `/lib/modules/xen-netfront.ko` (from [`box_kernel_module`]) and
/// `udp_echo` as `/bin/udp-echo` (a static program run as `udp-echo PORT` that echoes
/// every UDP datagram to its sender).
pub fn netserve_initramfs(
    bx: &BoxImage,
    netfront_ko: &[u8],
    udp_echo: &[u8],
    out: &Path,
) -> Result<(), String> {
    linux_initramfs(
        bx,
        NETSERVE_INIT,
        &[
            ("bin/discard", NETSERVE_DISCARD.as_bytes(), 0o755),
            ("bin/udp-echo", udp_echo, 0o755),
            ("lib/modules/xen-netfront.ko", netfront_ko, 0o644),
        ],
        out,
    )
}

/// The `/init` of [`blkbench_initramfs`]: a Linux domU that measures its first disk
/// (`xvda`, through `xen-blkfront`) as the app's `blkbench` does its own, for
/// side-by-side figures. It loads `xen-blkfront`, waits (at most 30 s) for `/dev/xvda`,
/// runs `/bin/blkbench /dev/xvda MIB OPS` (the caller's program; MIB and OPS from the
/// kernel command line's `bench_mib=N` and `bench_ops=N`, which Linux hands init as
/// environment variables, else 128 and 2000), which prints `blkbench: NAME=VALUE` lines,
/// then powers off. Every failure is a `blkbench: FAIL …` line.
pub const BLKBENCH_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# max_indirect_segments=N on the kernel command line reaches init as a variable.
if insmod /lib/modules/xen-blkfront.ko ${max_indirect_segments:+max_indirect_segments=$max_indirect_segments}; then
    n=0
    while [ ! -b /dev/xvda ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    if [ -b /dev/xvda ]; then
        /bin/blkbench /dev/xvda "${bench_mib:-128}" "${bench_ops:-2000}" \
            || echo "blkbench: FAIL /bin/blkbench exit status $?"
    else
        echo "blkbench: FAIL no /dev/xvda 30 s after loading xen-blkfront"
    fi
else
    echo "blkbench: FAIL insmod xen-blkfront"
fi
poweroff -f
"#;

/// Write to `out` an initramfs (uncompressed newc cpio) for a Linux domU that measures
/// its first disk ([`BLKBENCH_INIT`]): the box's busybox, `blkfront_ko` as
/// `/lib/modules/xen-blkfront.ko` (from [`box_kernel_module`]) and `blkbench` as
/// `/bin/blkbench` (a static program run as `blkbench DEVICE MIB OPS`).
pub fn blkbench_initramfs(
    bx: &BoxImage,
    blkfront_ko: &[u8],
    blkbench: &[u8],
    out: &Path,
) -> Result<(), String> {
    linux_initramfs(
        bx,
        BLKBENCH_INIT,
        &[
            ("bin/blkbench", blkbench, 0o755),
            ("lib/modules/xen-blkfront.ko", blkfront_ko, 0o644),
        ],
        out,
    )
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
            let report = line.parse::<xenpv_contract::report::Report>().ok();
            let field = |key: &str| report.as_ref()?.field(key);
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
            vifs: 0,
            dom0_script: None,
            disks: &[],
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
    fn network_and_script_keys_are_in_the_header_only_when_asked_for() {
        let d =
            std::env::temp_dir().join(format!("xenbox-payload-net-test-{}", std::process::id()));
        let k = d.with_extension("k");
        let peer = d.with_extension("peer");
        let script = d.with_extension("sh");
        fs::write(&k, vec![0x7f; 5000]).unwrap();
        fs::write(&peer, b"PEER").unwrap();
        fs::write(&script, b"echo hi\n").unwrap();
        let mut p = Payload {
            name: "app",
            kernel: &k,
            peer: None,
            cmdline: "events",
            memory_mib: 128,
            timeout_s: 120,
            bench: None,
            vifs: 0,
            dom0_script: None,
            disks: &[],
        };
        let plain =
            "name=app\nkernel_len=5000\npeer_len=0\nmemory=128\nextra=events\ntimeout=120\n";
        assert_eq!(p.header(5000, 0), plain);
        assert_eq!(p.header_with_script(5000, 0, 0), plain);
        p.vifs = 2;
        assert_eq!(p.header(5000, 0), format!("{plain}vifs=2\n"));
        assert_eq!(
            p.header_with_script(5000, 0, 8),
            format!("{plain}vifs=2\nscript_len=8\n")
        );
        // Kernel (2 blocks), peer (1 block), then the script on the next boundary.
        p.peer = Some(&peer);
        p.dom0_script = Some(&script);
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        let hdr = String::from_utf8_lossy(&data[..4096]);
        assert!(
            hdr.trim_end_matches('\0')
                .ends_with("timeout=120\nvifs=2\nscript_len=8\n"),
            "{hdr}"
        );
        assert_eq!(&data[4096..4098], b"\x7f\x7f");
        assert_eq!(&data[3 * 4096..3 * 4096 + 4], b"PEER");
        assert_eq!(&data[4 * 4096..4 * 4096 + 8], b"echo hi\n");
        assert_eq!(data.len(), 5 * 4096);
        // Without a peer, the script follows the kernel.
        p.peer = None;
        p.vifs = 0;
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(!String::from_utf8_lossy(&data[..4096]).contains("vifs"));
        assert_eq!(&data[3 * 4096..3 * 4096 + 8], b"echo hi\n");
        // Refused: too many vifs, an empty script, a script in bench mode.
        p.vifs = MAX_VIFS + 1;
        assert!(p.write(&d).unwrap_err().contains("limit is 4"));
        p.vifs = MAX_VIFS;
        fs::write(&script, b"").unwrap();
        assert!(p.write(&d).unwrap_err().contains("empty"));
        fs::write(&script, b"exit 3\n").unwrap();
        p.bench = Some(BenchMode {
            runs: 1,
            run_timeout_s: 10,
        });
        assert!(p.write(&d).unwrap_err().contains("bench"));
        for f in [&d, &k, &peer, &script] {
            let _ = fs::remove_file(f);
        }
    }

    #[test]
    fn vifs_are_counted_and_configured() {
        assert_eq!(parse_vifs("1"), Ok(1));
        assert_eq!(parse_vifs("4"), Ok(4));
        for bad in ["0", "5", "-1", "two", ""] {
            let e = parse_vifs(bad).unwrap_err();
            assert!(e.contains("1..=4"), "{e}");
        }
        assert_eq!(vif_mac(0), "00:16:3e:00:00:02");
        assert_eq!(vif_mac(3), "00:16:3e:00:00:05");
        assert_eq!(vif_config(0), None);
        assert_eq!(
            vif_config(2).unwrap(),
            "vif = ['bridge=xenbr0,mac=00:16:3e:00:00:02', 'bridge=xenbr0,mac=00:16:3e:00:00:03']"
        );
    }

    #[test]
    fn disk_keys_are_in_the_header_only_when_asked_for() {
        let d =
            std::env::temp_dir().join(format!("xenbox-payload-disk-test-{}", std::process::id()));
        let k = d.with_extension("k");
        fs::write(&k, b"ELF").unwrap();
        let disk = |p: &str, read_only| Disk {
            path: PathBuf::from(p),
            read_only,
            throttle: None,
        };
        let disks = [disk("/a.img", false), disk("/b.img", true)];
        let mut p = Payload {
            name: "app",
            kernel: &k,
            peer: None,
            cmdline: "events",
            memory_mib: 128,
            timeout_s: 120,
            bench: None,
            vifs: 0,
            dom0_script: None,
            disks: &[],
        };
        let plain = "name=app\nkernel_len=3\npeer_len=0\nmemory=128\nextra=events\ntimeout=120\n";
        assert_eq!(p.header(3, 0), plain);
        p.disks = &disks;
        assert_eq!(p.header(3, 0), format!("{plain}disks=w,r\n"));
        p.vifs = 1;
        assert_eq!(
            p.header_with_script(3, 0, 9),
            format!("{plain}vifs=1\ndisks=w,r\nscript_len=9\n")
        );
        p.disks = &disks[1..];
        assert_eq!(p.header(3, 0), format!("{plain}vifs=1\ndisks=r\n"));
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(String::from_utf8_lossy(&data[..4096])
            .trim_end_matches('\0')
            .ends_with("vifs=1\ndisks=r\n"));
        // The disks are not in the payload: header and kernel only.
        assert_eq!(data.len(), 2 * 4096);
        let five = vec![disk("/a.img", false); MAX_DISKS + 1];
        p.disks = &five;
        assert!(p.write(&d).unwrap_err().contains("limit is 4"));
        assert_eq!(disks_key(&five[..2]), "w,w");
        assert_eq!(disks_key(&[]), "");
        for f in [&d, &k] {
            let _ = fs::remove_file(f);
        }
    }

    #[test]
    fn disks_are_parsed_named_and_configured() {
        let p = parse_disk("/tmp/d0.img").unwrap();
        assert_eq!((p.path.to_str(), p.read_only), (Some("/tmp/d0.img"), false));
        let p = parse_disk("d1.img,ro").unwrap();
        assert_eq!((p.path.to_str(), p.read_only), (Some("d1.img"), true));
        let p = parse_disk("a,b.img,rw").unwrap();
        assert_eq!((p.path.to_str(), p.read_only), (Some("a,b.img"), false));
        let e = parse_disk("d.img,readonly").unwrap_err();
        assert!(
            e.contains("\"d.img,readonly\"") && e.contains("\"readonly\"") && e.contains("FILE,ro"),
            "{e}"
        );
        for bad in ["", ",ro", ",rw"] {
            let e = parse_disk(bad).unwrap_err();
            assert!(e.contains("no file named"), "{e}");
        }
        assert_eq!(disk_serial(0), "xenpv-disk0");
        assert_eq!(disk_serial(3), "xenpv-disk3");
        assert_eq!(disk_vdev(0), "xvda");
        assert_eq!(disk_vdev(3), "xvdd");
        assert_eq!(disk_config(&[]), None);
        assert_eq!(
            disk_config(&[("/dev/vdc", false), ("/dev/vdd", true)]).unwrap(),
            "disk = ['phy:/dev/vdc,xvda,w', 'phy:/dev/vdd,xvdb,r']"
        );
        // The init script makes the same line (and finds each disk by its serial).
        for part in [
            "disk_cfg=\"disk = [$d]\"",
            "d=\"$d${d:+, }'phy:$dev,$vdev,$access'\"",
            "vdev=xvd$(echo abcdefgh",
            "= \"xenpv-disk$di\" ] && dev=",
            "say \"domU disk $di: $dev ($vdev, $access)\"",
            "disk_env=\"$disk_env DISK$di=$dev\"",
        ] {
            assert!(INIT.contains(part), "{part}");
        }
    }

    #[test]
    fn disks_are_checked_on_the_host() {
        let d = std::env::temp_dir().join(format!("xenbox-disk-check-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let img = |n: &str, len: u64| {
            let p = d.join(n);
            fs::File::create(&p).unwrap().set_len(len).unwrap();
            p
        };
        let disk = |path: &Path, read_only| Disk {
            path: path.to_path_buf(),
            read_only,
            throttle: None,
        };
        let (a, b) = (img("a.img", 1 << 20), img("b.img", 512));
        check_disks(&[]).unwrap();
        check_disks(&[disk(&a, false), disk(&b, true)]).unwrap();
        let missing = d.join("missing.img");
        assert_eq!(
            check_disks(&[disk(&a, false), disk(&missing, true)]).unwrap_err(),
            format!("--disk {}: no such file", missing.display())
        );
        let e = check_disks(&[disk(&d, false)]).unwrap_err();
        assert!(
            e.contains(&d.display().to_string()) && e.contains("regular file"),
            "{e}"
        );
        let empty = img("empty.img", 0);
        let e = check_disks(&[disk(&empty, false)]).unwrap_err();
        assert!(
            e.contains("empty.img") && e.contains("512-byte sector"),
            "{e}"
        );
        let again = d.join(".").join("a.img");
        let e = check_disks(&[disk(&a, false), disk(&again, true)]).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let many: Vec<Disk> = (0..=MAX_DISKS)
            .map(|i| disk(&img(&format!("{i}.img"), 4096), false))
            .collect();
        check_disks(&many[..MAX_DISKS]).unwrap();
        assert_eq!(
            check_disks(&many).unwrap_err(),
            format!(
                "--disk {}: 5 disks for the domU, the box's limit is 4",
                many[MAX_DISKS].path.display()
            )
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_box_carries_its_hotplug_scripts_and_network_modules() {
        let names: Vec<&str> = HOTPLUG.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["vif-bridge", "block"]);
        for (name, script) in HOTPLUG {
            assert!(script.starts_with("#!/bin/busybox sh\n"), "{name}");
            assert!(script.contains("hotplug-status"), "{name}");
        }
        for m in ["llc", "stp", "bridge", "xen-netback", "xen-blkback", "loop"] {
            assert!(MODULES.contains(&m), "{m}");
        }
        // The init script makes the bridge and the same vif line as vif_config.
        assert!(INIT.contains("brctl addbr xenbr0"));
        assert!(INIT.contains("bridge=xenbr0,mac=00:16:3e:00:00:"));
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

    /// A box image (beside `d`) whose initramfs holds just `bin/busybox` ("BB").
    fn box_with_busybox(d: &Path) -> BoxImage {
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
        bx
    }

    #[test]
    fn the_poweroff_initramfs_carries_busybox_and_an_init() {
        let d = std::env::temp_dir().join("xenbox-poweroff-test");
        let bx = box_with_busybox(&d);
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
    fn the_netserve_initramfs_carries_its_services() {
        let d = std::env::temp_dir().join("xenbox-netserve-test");
        let bx = box_with_busybox(&d);
        let out = d.with_extension("out.cpio");
        netserve_initramfs(&bx, b"KO", b"UE", &out).unwrap();
        let got = fs::read(&out).unwrap();
        let file = |n| cpio_file(&got, n).unwrap().unwrap();
        assert_eq!(file("bin/busybox"), b"BB");
        assert_eq!(file("lib/modules/xen-netfront.ko"), b"KO");
        assert_eq!(file("bin/udp-echo"), b"UE");
        assert_eq!(file("init"), NETSERVE_INIT.as_bytes());
        assert!(String::from_utf8_lossy(&file("bin/discard")).contains("of=/dev/null"));
        for svc in [
            "httpd -p 80 -h /www",
            "nc -ll -p 9",
            "/bin/udp-echo 7",
            "33554432",
        ] {
            assert!(NETSERVE_INIT.contains(svc), "{svc}");
        }
        // Both scripts are valid shell.
        for s in [NETSERVE_INIT, NETSERVE_DISCARD] {
            let st = Command::new("sh").args(["-n", "-c", s]).status().unwrap();
            assert!(st.success(), "{s}");
        }
        fs::write(&bx.initramfs, &got[..0]).unwrap();
        assert!(netserve_initramfs(&bx, b"KO", b"UE", &out).is_err());
    }

    #[test]
    fn the_blkbench_initramfs_carries_its_tool() {
        let d = std::env::temp_dir().join("xenbox-blkbench-test");
        let bx = box_with_busybox(&d);
        let out = d.with_extension("out.cpio");
        blkbench_initramfs(&bx, b"KO", b"BT", &out).unwrap();
        let got = fs::read(&out).unwrap();
        let file = |n| cpio_file(&got, n).unwrap().unwrap();
        assert_eq!(file("bin/busybox"), b"BB");
        assert_eq!(file("lib/modules/xen-blkfront.ko"), b"KO");
        assert_eq!(file("bin/blkbench"), b"BT");
        assert_eq!(file("init"), BLKBENCH_INIT.as_bytes());
        assert!(String::from_utf8_lossy(&got).contains("dev/console\0"));
        for step in [
            "insmod /lib/modules/xen-blkfront.ko",
            "[ ! -b /dev/xvda ] && [ $n -lt 300 ]",
            "/bin/blkbench /dev/xvda \"${bench_mib:-128}\" \"${bench_ops:-2000}\"",
            "poweroff -f",
        ] {
            assert!(BLKBENCH_INIT.contains(step), "{step}");
        }
        let st = Command::new("sh")
            .args(["-n", "-c", BLKBENCH_INIT])
            .status()
            .unwrap();
        assert!(st.success());
        fs::write(&bx.initramfs, &got[..0]).unwrap();
        assert!(blkbench_initramfs(&bx, b"KO", b"BT", &out).is_err());
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
