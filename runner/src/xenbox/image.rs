//! The box's image: the pinned Debian packages fetched and unpacked, the initramfs laid
//! out (init script, hotplug scripts, kernel modules in load order) and cached.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const LOCK: &str = include_str!("../../xenbox/packages.lock");

pub(super) const INIT: &str = include_str!("../../xenbox/init.sh");

/// libxl's hotplug scripts, at the paths it runs them from (`/etc/xen/scripts/`): the box
/// has none of Debian's (they need bash and more), so these small busybox ones stand in.
const HOTPLUG: &[(&str, &str)] = &[
    ("vif-bridge", include_str!("../../xenbox/vif-bridge")),
    ("block", include_str!("../../xenbox/block")),
];

/// Bumped when the layout of the initramfs changes.
const LAYOUT_VERSION: u32 = 3;

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

/// `(package, version)` pairs of the lock file: the plain box's (the lines before the
/// first `[section]`).
pub fn pins(lock: &str) -> Result<Vec<(String, String)>, String> {
    section_pins(lock, None)
}

/// `(package, version)` pairs of the lock file's `[section]` (`None`: the plain box's,
/// before the first section).
pub fn section_pins(lock: &str, section: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut current: Option<&str> = None;
    lock.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(
            |l| match l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some(name) => {
                    current = Some(name);
                    false
                }
                None => current == section,
            },
        )
        .map(|l| {
            l.split_once('=')
                .map(|(p, v)| (p.to_string(), v.to_string()))
                .ok_or(format!("packages.lock: {l:?} is not package=version"))
        })
        .collect()
}

/// FNV-1a of everything the box is built from (for the libvirt variant, its files too);
/// the variant's directory is named `KEY-libvirt`.
fn key(toolstack: Toolstack) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let variant: Vec<u8> = match toolstack {
        Toolstack::Xl => vec![],
        Toolstack::Libvirt => libvirt::LIBVIRT_SH
            .bytes()
            .chain(
                libvirt::FILES
                    .iter()
                    .flat_map(|(n, s)| n.bytes().chain(s.bytes())),
            )
            .chain(libvirt::FALLBACK_MODEL.bytes())
            .collect(),
    };
    for b in LOCK
        .bytes()
        .chain(INIT.bytes())
        .chain(HOTPLUG.iter().flat_map(|(n, s)| n.bytes().chain(s.bytes())))
        .chain(MODULES.concat().bytes())
        .chain(LAYOUT_VERSION.to_le_bytes())
        .chain(variant)
    {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    match toolstack {
        Toolstack::Xl => format!("{h:016x}"),
        t => format!("{h:016x}-{}", t.name()),
    }
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
    ensure_for(Toolstack::Xl)
}

/// The box for `toolstack`: the plain one for [`Toolstack::Xl`], the libvirt variant
/// (the plain box plus libvirt, see `libvirt.rs`) for [`Toolstack::Libvirt`]; each
/// built if needed and cached under its own key.
pub fn ensure_for(toolstack: Toolstack) -> Result<BoxImage, String> {
    let base = crate::cache_dir().join("xenbox");
    let dir = base.join(key(toolstack));
    let img = BoxImage {
        vmlinuz: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio"),
        peer: None,
        toolstack,
    };
    if img.vmlinuz.is_file() && img.initramfs.is_file() {
        return Ok(img);
    }
    let debs = base.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let x = dir.join("x");
    let _ = fs::remove_dir_all(&x);
    fs::create_dir_all(&x).map_err(|e| format!("{}: {e}", x.display()))?;
    unpack(&pins(LOCK)?, &debs, &x)?;
    let mut entries = layout(&x)?;
    if toolstack == Toolstack::Libvirt {
        let vx = dir.join("vx");
        let _ = fs::remove_dir_all(&vx);
        fs::create_dir_all(&vx).map_err(|e| format!("{}: {e}", vx.display()))?;
        unpack(&section_pins(LOCK, Some("libvirt"))?, &debs, &vx)?;
        libvirt::add(&mut entries, &vx)?;
        let _ = fs::remove_dir_all(&vx);
    }
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

/// Unpack the pinned packages `pins` into `x` (`dpkg -x`), each downloaded into `debs`
/// first if it is not there yet.
fn unpack(pins: &[(String, String)], debs: &Path, x: &Path) -> Result<(), String> {
    for (pkg, ver) in pins {
        let deb = find_deb(debs, pkg, ver);
        let deb = match deb {
            Some(d) => d,
            None => {
                eprintln!("xenpv-run: box: downloading {pkg}={ver}");
                run(
                    Command::new("apt-get")
                        .args(["download", &format!("{pkg}={ver}")])
                        .current_dir(debs),
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
                find_deb(debs, pkg, ver).ok_or(format!("{pkg}={ver}: no .deb after download"))?
            }
        };
        run(
            Command::new("dpkg").arg("-x").arg(&deb).arg(x),
            &format!("dpkg -x {}", deb.display()),
        )?;
    }
    Ok(())
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
    // libxl-save-helper: xl save/restore/migrate run it for the domain's memory stream
    // (its libraries, libxenguest and libxenctrl, come with xl's).
    for b in [
        "xl",
        "xenstored",
        "xenconsoled",
        "xen-init-dom0",
        "libxl-save-helper",
    ] {
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
        // The libvirt variant's section: its own pins, none of the plain box's.
        let v = section_pins(LOCK, Some("libvirt")).unwrap();
        assert!(v.iter().any(|(n, _)| n == "libvirt-daemon-driver-xen"));
        assert!(!v.iter().any(|(n, _)| n == "xen-utils-4.17"));
        assert!(!p.iter().any(|(n, _)| n.starts_with("libvirt")));
        assert!(section_pins(LOCK, Some("nothing")).unwrap().is_empty());
    }

    #[test]
    fn module_dependencies_are_read_from_modinfo() {
        let ko = b"\x7fELF....license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(modinfo_depends(ko), ["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"depends=\0").is_empty());
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

    /// Runs init's peer section (`plen=$(get peer_len)` to `chmod +x /run/peer`) with sh:
    /// the header's peer_len `plen`, kernel_len 0 (the peer at block 1 of `payload`),
    /// `/run/peer` at `peer`; returns what init's `has_peer` is.
    fn init_peer_section(plen: usize, payload: &Path, peer: &Path) -> String {
        let start = INIT
            .find("plen=$(get peer_len)")
            .expect("init reads peer_len");
        let end = INIT[start..]
            .find("chmod +x /run/peer\n")
            .expect("init chmods the peer");
        let section = INIT[start..start + end + "chmod +x /run/peer".len()]
            .replace("/run/peer", &peer.display().to_string());
        let script = format!(
            "get() {{ [ \"$1\" = peer_len ] && echo {plen}; }}\nklen=0\npayload_dev={}\n{section}\necho \"has_peer=$has_peer\"\n",
            payload.display()
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs init's `follow_reboot` with sh against a stand-in `xl` whose answers come
    /// from `xl_list_v` (the tracked domain's shutdown reason, column 8), `states` (what
    /// `xl list ID` says, one per poll, the last repeated) and `domids` (what `xl domid
    /// NAME` says, one per poll, the last repeated); returns what it said and its status.
    fn follow(reason: &str, states: &[&str], domids: &[&str]) -> String {
        let start = INIT
            .find("follow_reboot() {")
            .expect("init has follow_reboot");
        let end = INIT[start..].find("\n}\n").expect("follow_reboot ends") + start + 3;
        let dir = std::env::temp_dir().join(format!(
            "xenbox-follow-{}-{}",
            std::process::id(),
            domids.join("_")
        ));
        fs::create_dir_all(&dir).unwrap();
        let script = format!(
            r#"d={dir}
printf '%s\n' {states} > $d/states
printf '%s\n' {domids} > $d/domids
pop() {{ l=$(head -1 $d/$1); [ "$(wc -l < $d/$1)" -gt 1 ] && sed -i 1d $d/$1; echo "$l"; }}
xl() {{
    case "$1 $2" in
        "list -v") printf 'Name ID\nx 5 1 1 --ps-- 0 0 {reason}\n' ;;
        "domid "*) v=$(pop domids); [ "$v" = - ] || echo "$v" ;;
        "list "*) v=$(pop states); [ "$v" = - ] || printf 'Name ID\nx 5 1 1 %s 0\n' "$v" ;;
    esac
}}
say() {{ echo "xenbox: $*"; }}
show_new() {{ :; }}
usleep() {{ :; }}
id=5; name=d; slen=""; follow_s=1
{func}
follow_reboot "--ps--"; echo "status=$? id=$id"
"#,
            dir = dir.display(),
            states = states.join(" "),
            domids = domids.join(" "),
            func = &INIT[start..end],
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        fs::remove_dir_all(&dir).unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_box_follows_a_suspended_domain_to_its_next_id_or_in_place() {
        // xl save + xl restore (or a migration): suspended, gone, then a new id.
        let out = follow("2", &["---ss-", "-"], &["5", "-", "-", "7"]);
        assert!(
            out.contains("xenbox: domU d resumed: now domain 7\n"),
            "{out}"
        );
        assert!(out.ends_with("status=0 id=7\n"), "{out}");
        // xl save -c: the same domain runs again.
        let out = follow("2", &["---ss-", "-b----"], &["5"]);
        assert!(out.contains("resumed in place: domain 5"), "{out}");
        assert!(out.ends_with("status=0 id=5\n"), "{out}");
        // A reboot is said as before.
        let out = follow("1", &["-"], &["5", "6"]);
        assert!(out.contains("rebooted: now domain 6"), "{out}");
        // Gone before its reason was read: said as a reboot (xl re-creates a rebooting
        // domain within one poll; a suspended one stays for seconds), waited for as long.
        let out = follow("", &["-"], &["5", "-", "8"]);
        assert!(out.contains("rebooted: now domain 8"), "{out}");
        assert!(out.ends_with("status=0 id=8\n"), "{out}");
        // A crash is not followed; a suspended domain that never comes back ends the run.
        assert_eq!(follow("3", &["-"], &["6"]), "status=1 id=5\n");
        let out = follow("2", &["-"], &["-"]);
        assert!(
            out.contains("no new domain of that name came within 1 s"),
            "{out}"
        );
        assert!(out.ends_with("status=1 id=5\n"), "{out}");
    }

    #[test]
    fn without_a_peer_the_scripts_peer_fails_loudly() {
        let dir = std::env::temp_dir().join(format!("xenbox-peer-stub-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (payload, peer) = (dir.join("payload"), dir.join("peer"));
        // A real peer: copied from the payload, and init's grant check runs it.
        let program = b"#!/bin/sh\nexit 0\n";
        fs::write(&payload, [&[0u8; 4096][..], program].concat()).unwrap();
        assert_eq!(
            init_peer_section(program.len(), &payload, &peer),
            "has_peer=1"
        );
        assert_eq!(fs::read(&peer).unwrap(), program);
        // None (peer_len=0: a runner-library caller that set no peer; xenpv-run carries
        // itself): a stub that a `$PEER …` step sees fail, with
        // why on stderr; init's grant check does not run it.
        assert_eq!(init_peer_section(0, &payload, &peer), "has_peer=");
        let out = Command::new(&peer)
            .args(["wait-up", "169.254.100.99:80", "--timeout", "5"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("$PEER: no peer program in this run: ") && err.contains("xenpv-run"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            !INIT.contains("-s /run/peer"),
            "the stub is not empty: -s says nothing"
        );
        assert!(INIT.contains("if [ -n \"$gref\" ] && [ -n \"$has_peer\" ]; then"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
