//! A real Xen host: the guest as a domU through `xl create -c`.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The xl configuration for the image: `on_reboot = "restart"` (xl creates the domain
/// again after `xl reboot`), `on_poweroff` and `on_crash` destroy.
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
    // A guest that asks to reboot (`xl reboot`, or its own SHUTDOWN_reboot) is created
    // again, a new domain under the same name; poweroff and crash end it.
    c.push_str("on_poweroff = \"destroy\"\non_reboot = \"restart\"\non_crash = \"destroy\"\n");
    c
}

fn is_xen_host() -> bool {
    Path::new("/proc/xen/capabilities").exists()
}

/// The config file (next to the image), its text and the command that boots it.
pub fn plan(
    name: &str,
    kernel: &Path,
    cmdline: &str,
    ramdisk: Option<&Path>,
    memory_mib: u64,
    timeout: u64,
) -> (std::path::PathBuf, String, String) {
    let cfg_path = kernel.with_extension("xl.cfg");
    let cfg = config(name, kernel, cmdline, ramdisk, memory_mib);
    let cmd = format!("timeout {timeout} xl create -c {}", cfg_path.display());
    (cfg_path, cfg, cmd)
}

/// What `--dry-run` prints: the config and the command, nothing else.
pub fn dry_run_text(cfg_path: &Path, cfg: &str, cmd: &str) -> String {
    format!("# {}\n{cfg}# then:\n{cmd}\n", cfg_path.display())
}

/// Boot `kernel` as domain `name` with `xl create -c` on this Xen host (or, with
/// `dry_run`, print the config and the command); the guest's status is the result. The
/// console is the first domain's: after an `xl reboot` the new domain (the config's
/// `on_reboot = "restart"`) runs on under xl's monitor.
pub fn run(
    name: &str,
    kernel: &Path,
    cmdline: &str,
    ramdisk: Option<&Path>,
    memory_mib: u64,
    dry_run: bool,
    timeout: u64,
) -> Result<u8, String> {
    let kernel = kernel.to_path_buf();
    let (cfg_path, cfg, cmd) = plan(name, &kernel, cmdline, ramdisk, memory_mib, timeout);
    if dry_run {
        print!("{}", dry_run_text(&cfg_path, &cfg, &cmd));
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
    let defmt = crate::defmt_log::Defmt::from_elf(&kernel).ok().flatten();
    let sym = crate::symbolize::for_image(&kernel);
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        let line = crate::defmt_log::show(defmt.as_ref(), line.trim_end_matches('\r'));
        let line = crate::symbolize::with_annotation(sym.as_ref(), line);
        println!("{line}");
        if let Some(n) = xenpv_contract::status::parse_exit_line(&line) {
            status = u8::try_from(n).ok();
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
             on_reboot = \"restart\"\non_crash = \"destroy\"\n"
        );
        assert!(!config("n", Path::new("/k"), "", None, 64).contains("ramdisk"));
    }

    #[test]
    fn dry_run_prints_the_config_next_to_the_image_and_the_command() {
        let (p, cfg, cmd) = plan(
            "xenpv-app",
            Path::new("/t/release/xenpv-app"),
            "split=1G",
            Some(Path::new("/r/600M.img")),
            768,
            60,
        );
        assert_eq!(p, Path::new("/t/release/xenpv-app.xl.cfg"));
        let out = dry_run_text(&p, &cfg, &cmd);
        assert_eq!(
            out,
            "# /t/release/xenpv-app.xl.cfg\nname = \"xenpv-app\"\ntype = \"pv\"\n\
             kernel = \"/t/release/xenpv-app\"\nmemory = 768\nvcpus = 1\nextra = \"split=1G\"\n\
             ramdisk = \"/r/600M.img\"\non_poweroff = \"destroy\"\non_reboot = \"restart\"\n\
             on_crash = \"destroy\"\n# then:\ntimeout 60 xl create -c /t/release/xenpv-app.xl.cfg\n"
        );
    }
}
