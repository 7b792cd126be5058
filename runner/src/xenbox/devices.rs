//! What a domU gets in the box besides its kernel: network interfaces on the box's
//! bridge, disks, and a script run next to it in dom0.
use std::fs;
use std::path::PathBuf;

/// Most network interfaces a domU gets in the box ([`Payload::vifs`](super::Payload::vifs)).
pub const MAX_VIFS: u32 = 4;

/// The bridge in dom0 that every domU vif joins, and dom0's (link-local) address on it.
pub const BRIDGE: &str = "xenbr0";

/// dom0's address on [`BRIDGE`].
pub const DOM0_ADDR: &str = "169.254.100.1/24";

/// Most block devices a domU gets in the box ([`Payload::disks`](super::Payload::disks)).
pub const MAX_DISKS: usize = 4;

/// The PCI slot of the box's disk 0 in QEMU (disk `i` is at this + `i`): above the slots
/// QEMU picks for the payload and ramdisk drives (it gives `-device`s the low ones
/// first), so those stay dom0's `/dev/vda` and `/dev/vdb`.
pub const DISK_PCI_SLOT: usize = 0x10;

/// What a domU in the box gets besides its kernel and command line (for
/// [`crate::qemu::Role::Domu`]; the default is nothing, the ordinary boot): network
/// interfaces and a dom0 script, whose contract (environment, output, timing, status) is
/// [`crate::cli::BootArgs::dom0_script`]'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomuExtras {
    /// The domU's network interfaces, 0..=[`MAX_VIFS`] (see [`Payload::vifs`](super::Payload::vifs)).
    pub vifs: u32,
    /// The dom0 script, if any.
    pub dom0_script: Option<PathBuf>,
    /// The domU will be saved, restored or migrated (`--migrate`): the box gets room for
    /// a second copy of the domU (QEMU's memory and dom0's, which holds `xl save`'s image
    /// in `/run`, each grow by the domU's memory) and boots the hypervisor built with
    /// shadow paging ([`crate::xen_shadow::ensure`]), which a PV guest's live migration
    /// needs; header `migrate=1`.
    pub migrate: bool,
    /// Memory in MiB for domUs that the dom0 script creates itself (`xl create` of its
    /// own configs, as `cargo xtask bench density` does): the box's QEMU gets this much
    /// more, all of it left to Xen (dom0's stays as it is); the header is unchanged.
    pub room_mib: u64,
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

/// The header value of [`Payload::disks`](super::Payload::disks): one access mode per disk, `w` or `r`, joined
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

#[cfg(test)]
mod tests {
    use super::super::image::INIT;
    use super::*;
    use std::path::Path;

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
}
