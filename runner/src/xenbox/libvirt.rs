//! The libvirt variant of the box ([`Toolstack::Libvirt`]): the plain box plus libvirtd
//! with its libxl driver and virsh, from the `[libvirt]` packages of the lock file, and
//! the init hook (`runner/xenbox/libvirt.sh`) that starts libvirtd and creates the domU
//! with `virsh create` instead of `xl create`.
//!
//! Only what runs is taken from those packages: libvirtd, virsh, the libxl connection
//! driver (libvirtd loads the drivers it finds; with only this one it has no QEMU, LXC,
//! network or storage driver to start), libvirt's CPU map (the libxl driver describes the
//! host CPU with it; plus a fallback model, `x86_xenbox.xml`), and the shared libraries they need, found by following their ELF
//! `DT_NEEDED` entries. Those are about 50 MB (31 MB of it ICU's data, which libxml2
//! links), five times the plain box: so this is a box of its own, and only the rows
//! that ask for libvirt boot it.
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use object::{Object, ObjectSection};

use super::*;

/// The init hook for `toolstack=libvirt`, at `/etc/xenbox/libvirt.sh` in the variant.
pub(super) const LIBVIRT_SH: &str = include_str!("../../xenbox/libvirt.sh");

/// Files of the variant besides the packages': path in the initramfs, contents.
pub(super) const FILES: &[(&str, &str)] = &[
    (
        "etc/libvirt/libvirtd.conf",
        include_str!("../../xenbox/libvirt/libvirtd.conf"),
    ),
    (
        "etc/libvirt/libxl.conf",
        include_str!("../../xenbox/libvirt/libxl.conf"),
    ),
    (
        "etc/libvirt/libvirt.conf",
        include_str!("../../xenbox/libvirt/libvirt.conf"),
    ),
    // libvirtd looks root up by uid (glibc's files lookup, built into libc).
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", "root:x:0:\n"),
];

/// The executables taken from the packages, the roots of the library search.
const PROGRAMS: &[&str] = &[
    "usr/sbin/libvirtd",
    "usr/bin/virsh",
    "usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_libxl.so",
];

/// The CPU map's fallback host model (see the file): the libxl driver does not start
/// without a model for the host CPU, and none of the stock ones fits the box's.
pub(super) const FALLBACK_MODEL: &str = include_str!("../../xenbox/libvirt/x86_xenbox.xml");

/// Its file name in the CPU map.
const FALLBACK_MODEL_FILE: &str = "x86_xenbox.xml";

/// The CPU map's `index.xml` with [`FALLBACK_MODEL`] included among the x86 models
/// (after `486`, the first of them).
fn with_fallback_model(index: &str) -> Result<Vec<u8>, String> {
    let first = "<include filename='x86_486.xml'/>";
    if !index.contains(first) {
        return Err(format!("libvirt's cpu_map/index.xml has no {first}"));
    }
    Ok(index
        .replacen(
            first,
            &format!("{first}\n    <include filename='{FALLBACK_MODEL_FILE}'/>"),
            1,
        )
        .into_bytes())
}

/// Where shared libraries are looked for, in the packages and in the plain box.
const LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

/// Which toolstack creates the domU in the box, and so which box boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Toolstack {
    /// `xl create` (the plain box).
    #[default]
    Xl,
    /// `virsh create` through libvirtd's libxl driver (the libvirt variant, payload
    /// header `toolstack=libvirt`).
    Libvirt,
}

impl Toolstack {
    /// Its name: the `[section]` of the lock file, the header's `toolstack=` value.
    pub fn name(self) -> &'static str {
        match self {
            Toolstack::Xl => "xl",
            Toolstack::Libvirt => "libvirt",
        }
    }
}

/// The `DT_NEEDED` names of an ELF file (a program or shared library): what the dynamic
/// linker loads for it. A file that is not ELF, or has no dynamic section, needs nothing.
pub fn dt_needed(elf: &[u8]) -> Result<Vec<String>, String> {
    let Ok(file) = object::File::parse(elf) else {
        return Ok(vec![]);
    };
    let (Some(dynamic), Some(dynstr)) = (
        file.section_by_name(".dynamic"),
        file.section_by_name(".dynstr"),
    ) else {
        return Ok(vec![]);
    };
    let d = dynamic.data().map_err(|e| format!(".dynamic: {e}"))?;
    let s = dynstr.data().map_err(|e| format!(".dynstr: {e}"))?;
    let mut out = vec![];
    // ELF64 little-endian: (d_tag, d_val) pairs of u64, up to DT_NULL.
    for e in d.chunks_exact(16) {
        let tag = u64::from_le_bytes(e[..8].try_into().unwrap());
        let val = u64::from_le_bytes(e[8..].try_into().unwrap()) as usize;
        match tag {
            0 => break,
            1 => {
                let name = s
                    .get(val..)
                    .and_then(|r| r.split(|&b| b == 0).next())
                    .ok_or(format!("DT_NEEDED at {val} outside .dynstr"))?;
                out.push(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Add the variant to the plain box's entries `m`: [`PROGRAMS`] from the unpacked
/// `[libvirt]` packages in `vx` and every library they need (the plain box's own are
/// not copied again), libvirt's CPU map, [`FILES`] and [`LIBVIRT_SH`]. A library found
/// nowhere is an error that names it and who needs it.
pub(super) fn add(m: &mut BTreeMap<String, Entry>, vx: &Path) -> Result<(), String> {
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut todo: Vec<(String, Vec<u8>)> = vec![];
    for p in PROGRAMS {
        let data = read(&vx.join(p))?;
        todo.push((p.to_string(), data.clone()));
        m.insert(p.to_string(), Entry::File { data, mode: 0o755 });
    }
    while let Some((who, data)) = todo.pop() {
        for lib in dt_needed(&data)? {
            if lib == "ld-linux-x86-64.so.2"
                || LIB_DIRS
                    .iter()
                    .any(|d| m.contains_key(&format!("{d}/{lib}")))
            {
                continue;
            }
            let dir = LIB_DIRS
                .iter()
                .find(|d| fs::symlink_metadata(vx.join(d).join(&lib)).is_ok())
                .ok_or(format!(
                    "libvirt box: {lib} (needed by {who}) is in no pinned package"
                ))?;
            let path = vx.join(dir).join(&lib);
            // The soname is usually a link to the versioned file: both go in.
            let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            let real = if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(|e| e.to_string())?;
                let target = target.to_string_lossy().to_string();
                m.insert(format!("{dir}/{lib}"), Entry::Symlink(target.clone()));
                format!(
                    "{dir}/{}",
                    Path::new(&target).file_name().unwrap().to_string_lossy()
                )
            } else {
                format!("{dir}/{lib}")
            };
            let data = read(&vx.join(&real))?;
            todo.push((lib.clone(), data.clone()));
            m.insert(real, Entry::File { data, mode: 0o755 });
        }
    }
    let cpu_map = vx.join("usr/share/libvirt/cpu_map");
    for e in fs::read_dir(&cpu_map).map_err(|e| format!("{}: {e}", cpu_map.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let data = match name.as_str() {
            "index.xml" => with_fallback_model(&String::from_utf8_lossy(&read(&p)?))?,
            n if n.starts_with("x86_") => read(&p)?,
            _ => continue,
        };
        m.insert(
            format!("usr/share/libvirt/cpu_map/{name}"),
            Entry::File { data, mode: 0o644 },
        );
    }
    m.insert(
        format!("usr/share/libvirt/cpu_map/{FALLBACK_MODEL_FILE}"),
        Entry::File {
            data: FALLBACK_MODEL.as_bytes().to_vec(),
            mode: 0o644,
        },
    );
    for (path, text) in FILES {
        m.insert(
            path.to_string(),
            Entry::File {
                data: text.as_bytes().to_vec(),
                mode: 0o644,
            },
        );
    }
    m.insert(
        "etc/xenbox/libvirt.sh".into(),
        Entry::File {
            data: LIBVIRT_SH.as_bytes().to_vec(),
            mode: 0o644,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dt_needed_reads_a_programs_libraries() {
        // The test binary itself is a dynamic ELF program that needs libc.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let needed = dt_needed(&me).unwrap();
        assert!(
            needed.iter().any(|l| l.starts_with("libc.so")),
            "{needed:?}"
        );
        assert!(dt_needed(b"#!/bin/sh\n").unwrap().is_empty());
    }

    #[test]
    fn the_libvirt_box_is_configured_for_a_dom0_without_dbus_or_tcp() {
        let conf = |p: &str| FILES.iter().find(|(n, _)| *n == p).unwrap().1;
        let d = conf("etc/libvirt/libvirtd.conf");
        for line in [
            "listen_tls = 0",
            "listen_tcp = 0",
            "auth_unix_rw = \"none\"",
            "auth_unix_ro = \"none\"",
        ] {
            assert!(d.lines().any(|l| l == line), "{line}");
        }
        assert!(conf("etc/libvirt/libxl.conf").contains("autoballoon = 0"));
        let index = "<arch name='x86'>\n    <include filename='x86_486.xml'/>\n";
        let patched = String::from_utf8(with_fallback_model(index).unwrap()).unwrap();
        assert!(patched.contains("x86_486.xml'/>\n    <include filename='x86_xenbox.xml'/>"));
        assert!(with_fallback_model("<cpus/>").is_err());
        assert!(FALLBACK_MODEL.contains("<model name='xenbox-any'>"));
        assert!(conf("etc/libvirt/libvirt.conf").contains("xen:///system"));
        assert!(LIBVIRT_SH.contains("virsh create"));
        assert_eq!(Toolstack::default(), Toolstack::Xl);
        assert_eq!(Toolstack::Libvirt.name(), "libvirt");
    }
}
