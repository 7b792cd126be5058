//! Linux domUs for the benches: initramfs images that power off at once, serve the
//! network appliance's services, or measure a disk.
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::*;

/// The `/init` of [`poweroff_initramfs`]: a Linux domU that stops as soon as it reaches
/// user space, so a boot measures the kernel's own start.
pub const POWEROFF_INIT: &str = "#!/bin/busybox sh\n/bin/busybox poweroff -f\n";

/// Write to `out` an initramfs (uncompressed newc cpio, which Linux takes as it is) for a
/// Linux domU whose `/init` powers off at once: the box's own busybox, `/dev/console`
/// and [`POWEROFF_INIT`].
pub fn poweroff_initramfs(bx: &BoxImage, out: &Path) -> Result<(), String> {
    linux_initramfs(bx, POWEROFF_INIT, &[], out)
}

/// [`INIT_MOUNTS`] as a literal, for `concat!`.
macro_rules! init_mounts {
    () => {
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
"#
    };
}

/// The first lines of a bench's `/init` (busybox sh): the shebang, /proc, /sys and /dev
/// mounted, busybox's applets installed and on PATH; what [`BLKBENCH_INIT`] begins with
/// (and [`NETSERVE_INIT`], with two directories more), for a caller's own `/init`
/// ([`linux_initramfs`]).
pub const INIT_MOUNTS: &str = init_mounts!();

/// Write to `out` an initramfs (uncompressed newc cpio, which Linux takes as it is) for a
/// Linux domU of the benches: `init` as `/init`, the box's own busybox, `/dev/console`,
/// and `files` (path, bytes, mode).
pub fn linux_initramfs(
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
pub const BLKBENCH_INIT: &str = concat!(
    init_mounts!(),
    r#"# max_indirect_segments=N on the kernel command line reaches init as a variable.
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
"#
);

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
            toolstack: Default::default(),
        };
        fs::write(&bx.initramfs, &box_cpio).unwrap();
        bx
    }

    #[test]
    fn the_bench_inits_begin_with_the_mounts() {
        assert!(BLKBENCH_INIT.starts_with(INIT_MOUNTS));
        let netserve = NETSERVE_INIT.replacen(" /www/bytes /tmp", "", 1);
        assert!(netserve.starts_with(INIT_MOUNTS), "{netserve}");
        assert!(INIT_MOUNTS.ends_with("mount -t devtmpfs dev /dev\n"));
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
}
