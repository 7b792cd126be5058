//! QEMU and Xen: found, installed from Debian's packages when we are root, or the exact
//! command to run when we are not.
use std::path::{Path, PathBuf};
use std::process::Command;

pub const QEMU: &str = "qemu-system-x86_64";
pub const XEN_GZ: &str = "/boot/xen-4.17-amd64.gz";
/// The install line (bookworm). The machine image may carry a backported qemu-utils that
/// conflicts with bookworm's qemu-system-x86; ci/install-deps.sh handles that case.
pub const INSTALL_HINT: &str =
    "sudo bash ci/install-deps.sh   (apt-get install qemu-system-x86 xen-hypervisor-4.17-amd64)";

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

/// Make sure QEMU and Xen are here; returns the path of the unpacked Xen image.
pub fn ensure() -> Result<PathBuf, String> {
    if !have_qemu() || !Path::new(XEN_GZ).exists() {
        if !is_root() {
            return Err(format!(
                "{QEMU} or {XEN_GZ} is missing; install them with:\n  {INSTALL_HINT}"
            ));
        }
        eprintln!(
            "xtask: installing QEMU and Xen 4.17 from Debian's packages (ci/install-deps.sh)"
        );
        let st = Command::new("bash")
            .arg(crate::root().join("ci/install-deps.sh"))
            .status()
            .map_err(|e| format!("cannot run ci/install-deps.sh: {e}"))?;
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
    let dir = crate::root().join("target/xtask");
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
