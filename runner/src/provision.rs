//! QEMU and Xen: found, installed from Debian's packages when we are root, or the exact
//! command to run when we are not.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The QEMU binary, looked up on `PATH`.
pub const QEMU: &str = "qemu-system-x86_64";
/// Xen 4.17's hypervisor image as Debian's `xen-hypervisor-4.17-amd64` installs it
/// (gzipped; [`ensure`] unpacks it under [`crate::cache_dir`] for QEMU's `-kernel`).
pub const XEN_GZ: &str = "/boot/xen-4.17-amd64.gz";
/// What installs them on Debian bookworm (`runner/install-deps.sh`, compiled into the
/// runner): apt-get, with care for a backported qemu-utils that conflicts with bookworm's
/// qemu-system-x86.
const INSTALL_SCRIPT: &str = include_str!("../install-deps.sh");
/// The install line to show when we may not run apt-get ourselves.
pub const INSTALL_HINT: &str =
    "sudo apt-get install qemu-system-x86 xen-hypervisor-4.17-amd64   (Debian bookworm)";

fn have_qemu() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Make sure QEMU and Xen are here (installing them when we are root, else an error with
/// [`INSTALL_HINT`]); returns the path of the unpacked Xen image under [`crate::cache_dir`].
pub fn ensure() -> Result<PathBuf, String> {
    if !have_qemu() || !Path::new(XEN_GZ).exists() {
        if !is_root() {
            return Err(format!(
                "{QEMU} or {XEN_GZ} is missing; install them with:\n  {INSTALL_HINT}"
            ));
        }
        eprintln!("xenpv-run: installing QEMU and Xen 4.17 from Debian's packages (apt-get)");
        let st = Command::new("bash")
            .args(["-c", INSTALL_SCRIPT])
            .status()
            .map_err(|e| format!("cannot run the install script: {e}"))?;
        if !st.success() || !have_qemu() || !Path::new(XEN_GZ).exists() {
            return Err(format!(
                "installing QEMU/Xen failed ({st}); try:\n  {INSTALL_HINT}"
            ));
        }
    }
    unpack_xen()
}

/// QEMU's -kernel wants the plain multiboot ELF: gunzip once, again when the package changes.
fn unpack_xen() -> Result<PathBuf, String> {
    let dir = crate::cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join("xen-4.17");
    let newer = |a: &Path, b: &Path| -> bool {
        match (
            a.metadata().and_then(|m| m.modified()),
            b.metadata().and_then(|m| m.modified()),
        ) {
            (Ok(x), Ok(y)) => x > y,
            _ => true,
        }
    };
    if !out.exists() || newer(Path::new(XEN_GZ), &out) {
        let data = Command::new("gzip")
            .args(["-dc", XEN_GZ])
            .output()
            .map_err(|e| format!("gzip -dc {XEN_GZ}: {e}"))?;
        if !data.status.success() {
            return Err(format!(
                "gzip -dc {XEN_GZ} failed: {}",
                String::from_utf8_lossy(&data.stderr)
            ));
        }
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, &data.stdout).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(out)
}
