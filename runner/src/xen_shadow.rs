//! Xen's hypervisor with shadow paging, for the box's runs that save, restore or migrate
//! their domU ([`crate::xenbox::DomuExtras::migrate`]).
//!
//! A PV guest's live migration needs log-dirty mode, which Xen implements for PV guests
//! with shadow paging; Debian builds its hypervisor without it (`CONFIG_SHADOW_PAGING`
//! is off: enabling log-dirty fails with EOPNOTSUPP). So this builds the hypervisor
//! (`make -C xen`, not the tools: the box keeps Debian's) from Debian's own source
//! package, pinned by version and sha256 in `runner/xenbox/xen-shadow.lock`, with
//! Debian's config plus `CONFIG_SHADOW_PAGING=y`, by `runner/xenbox/xen-shadow.sh`. The
//! source files come from the pool of the Debian mirror the machine's apt sources name.
//! It is built once per key (the lock, the script and the compiler's version) into
//! `xen-shadow/<key>/` under [`crate::cache_dir`] (about 2 minutes on 2 cores) and then
//! reused; the sources stay in `xen-shadow/src/`.
//!
//! Only runs that ask get it: everything else boots Debian's own hypervisor, the one a
//! Debian host runs (shadow paging has no security support upstream in 4.17).
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The pinned source package and the config line.
pub const LOCK: &str = include_str!("../xenbox/xen-shadow.lock");
/// The build script (bash): `xen-shadow.sh LOCK SRC_CACHE OUT_DIR`.
pub const SCRIPT: &str = include_str!("../xenbox/xen-shadow.sh");

/// FNV-1a of what the build depends on: the lock, the script and `gcc --version`'s
/// first line.
pub fn key(gcc: &str) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in LOCK.bytes().chain(SCRIPT.bytes()).chain(gcc.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The source package's version the lock pins.
pub fn version() -> Option<&'static str> {
    LOCK.lines().find_map(|l| l.strip_prefix("version="))
}

/// The shadow-paging hypervisor (the multiboot ELF QEMU's `-kernel` takes), built if it
/// is not in the cache yet. The error carries the build's own last lines.
pub fn ensure() -> Result<PathBuf, String> {
    let gcc = Command::new("gcc")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .map_err(|e| format!("shadow-paging Xen: gcc --version: {e}"))?;
    let base = crate::cache_dir().join("xen-shadow");
    let dir = base.join(key(&gcc));
    let xen = dir.join("xen");
    if xen.is_file() {
        return Ok(xen);
    }
    // Rows run in threads of one process (one pid, so one tmp name): one builds, the
    // others wait here and then find it built.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if xen.is_file() {
        return Ok(xen);
    }
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let tmp = base.join(format!("{}.tmp-{}", key(&gcc), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let lock = base.join(format!("{}.lock", key(&gcc)));
    std::fs::write(&lock, LOCK).map_err(|e| format!("{}: {e}", lock.display()))?;
    eprintln!(
        "xenpv-run: building Xen {} with shadow paging (once; about 2 minutes)",
        version().unwrap_or("?")
    );
    let start = Instant::now();
    let st = Command::new("bash")
        .args(["-c", SCRIPT, "xen-shadow.sh"])
        .arg(&lock)
        .arg(base.join("src"))
        .arg(&tmp)
        .status()
        .map_err(|e| format!("shadow-paging Xen: bash: {e}"))?;
    if !st.success() || !tmp.join("xen").is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "building Xen with shadow paging failed ({st}); see the lines above"
        ));
    }
    // Another run may have built it meanwhile: then its copy is kept.
    if std::fs::rename(&tmp, &dir).is_err() && !xen.is_file() {
        return Err(format!(
            "{}: could not move the build into place",
            dir.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "xenpv-run: shadow-paging Xen built in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(xen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_pins_the_source_by_sha256_and_turns_shadow_paging_on() {
        assert!(version().is_some_and(|v| v.starts_with("4.17.")));
        let files: Vec<(&str, &str)> = LOCK
            .lines()
            .filter_map(|l| l.split_once("  "))
            .filter(|(sum, _)| sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        let names: Vec<&str> = files.iter().map(|(_, f)| *f).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().any(|f| f.ends_with(".dsc")));
        assert!(names.iter().any(|f| f.ends_with(".orig.tar.xz")));
        assert!(names.iter().any(|f| f.ends_with(".debian.tar.xz")));
        assert!(LOCK.lines().any(|l| l == "config=CONFIG_SHADOW_PAGING=y"));
        // No mirror is written down: the machine's apt sources name it.
        assert!(!LOCK.contains("http") && !SCRIPT.contains("deb.debian.org"));
        assert!(SCRIPT.contains("sha256sum"));
        assert_ne!(key("gcc 12"), key("gcc 13"));
    }
}
