//! A real Xen host: the guest as a domU through `xl create -c`.
use crate::cargo::{self, Image};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The xl configuration for the image.
pub fn config(
    name: &str,
    kernel: &Path,
    cmdline: &str,
    ramdisk: Option<&Path>,
    memory_mib: u64,
) -> String {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut c = format!(
        "name = \"{}\"\ntype = \"pv\"\nkernel = \"{}\"\nmemory = {memory_mib}\nvcpus = 1\nextra = \"{}\"\n",
        q(name),
        q(&kernel.to_string_lossy()),
        q(cmdline.trim())
    );
    if let Some(r) = ramdisk {
        c.push_str(&format!("ramdisk = \"{}\"\n", q(&r.to_string_lossy())));
    }
    c.push_str("on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n");
    c
}

fn is_xen_host() -> bool {
    Path::new("/proc/xen/capabilities").exists()
}

pub fn run(
    image: &Image,
    cmdline: &str,
    ramdisk: Option<&Path>,
    memory_mib: u64,
    dry_run: bool,
    timeout: u64,
) -> Result<u8, String> {
    let kernel = if dry_run {
        image.path()
    } else {
        cargo::build(image, false)?
    };
    let name = format!("xenpv-{}", image.name().replace(['[', ']', ',', '/'], "-"));
    let cfg_path = crate::root()
        .join("target/xtask/xl")
        .join(format!("{name}.cfg"));
    let cfg = config(&name, &kernel, cmdline, ramdisk, memory_mib);
    let cmd = format!("timeout {timeout} xl create -c {}", cfg_path.display());
    if dry_run {
        println!("# {}\n{cfg}# then:\n{cmd}", cfg_path.display());
        return Ok(0);
    }
    if !is_xen_host() {
        return Err(
            "--xl needs a Xen host (no /proc/xen/capabilities here); drop --xl to boot under QEMU"
                .into(),
        );
    }
    std::fs::create_dir_all(cfg_path.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    std::fs::write(&cfg_path, &cfg).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let mut child = Command::new("timeout")
        .arg(timeout.to_string())
        .args(["xl", "create", "-c"])
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("xl: {e}"))?;
    let mut status = None;
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        println!("{line}");
        if let Some(n) = line.trim().strip_prefix("xenpv-rt: exit status ") {
            status = n.trim().parse::<u8>().ok();
        }
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    match status {
        Some(s) => Ok(s),
        None if st.code() == Some(124) => Err(format!("timed out after {timeout} s")),
        None => Err(format!(
            "the domU's console showed no exit status (xl: {st})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn dry_run_config_names_everything() {
        let c = config(
            "xenpv-app",
            Path::new("/k/app"),
            " split=1G \"x\" ",
            Some(Path::new("/r/img")),
            512,
        );
        assert_eq!(
            c,
            "name = \"xenpv-app\"\ntype = \"pv\"\nkernel = \"/k/app\"\nmemory = 512\nvcpus = 1\n\
             extra = \"split=1G \\\"x\\\"\"\nramdisk = \"/r/img\"\non_poweroff = \"destroy\"\n\
             on_reboot = \"destroy\"\non_crash = \"destroy\"\n"
        );
        assert!(!config("n", Path::new("/k"), "", None, 64).contains("ramdisk"));
    }
}
