//! Booting a guest under Xen 4.17 inside QEMU, streaming its console and decoding its exit
//! status: as the PV dom0 (isa-debug-exit: QEMU exits with `(status << 1) | 1`), or as a
//! domU of the Linux dom0 of [`crate::xenbox`] (the status read from its console's exit
//! line, which the box passes on to the exit device).
use crate::provision;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use xenpv_contract::status::parse_exit_line;

/// Exit code ([`failure_status`], [`report`]) when the wall-clock limit hit (as `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code ([`failure_status`], [`report`]) when the machine stopped without delivering a
/// status.
pub const EXIT_NO_STATUS: u8 = 125;

/// What to show while the guest runs (everything goes to [`Boot::log`] either way; the
/// firmware's screen before Xen starts is never shown).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Nothing: not the console, not a crash report.
    Quiet,
    /// The guest's lines: not Xen's; a domU's without the box's `domU| ` prefix, plus the
    /// box's own `xenbox: ` lines and a dom0 script's `dom0| ` lines (prefix kept).
    Guest,
    /// Everything QEMU prints once Xen starts: Xen's lines, the box's and the guest's.
    All,
}

/// One run for [`boot`]: the kernel, how to boot it and where its console goes.
pub struct Boot {
    /// Boot the image as a domU in the Xen-in-a-box (`None`: as the PV dom0).
    pub domu: Option<std::sync::Arc<crate::xenbox::BoxImage>>,
    /// The domain's name when booted as a domU (what `xl` in the box calls it); unused
    /// as the PV dom0.
    pub name: String,
    /// The kernel: a Xen PV ELF, whose defmt table and DWARF also decode its console.
    pub image: PathBuf,
    /// The guest's command line (as the PV dom0, ` qemu-exit` is added so the runtime
    /// leaves through QEMU's exit device).
    pub cmdline: String,
    /// A ramdisk for the guest: a second Xen module as the PV dom0, the box's `/dev/vdb`
    /// (handed on by `xl`) as a domU.
    pub initrd: Option<PathBuf>,
    /// The guest's memory in MiB; QEMU gets more (see [`qemu_memory`], and the box's
    /// dom0 as a domU).
    pub memory_mib: u64,
    /// The wall-clock limit: QEMU is killed when it hits ([`Failure::Timeout`]).
    pub timeout: Duration,
    /// What to print while the guest runs.
    pub stream: Stream,
    /// Where the whole console is written when the run ends; a domU's payload disk is
    /// written next to it (extension `payload`).
    pub log: PathBuf,
}

/// How a [`boot`] ended.
pub struct Outcome {
    /// The guest's status, or why there is none.
    pub status: Result<i32, Failure>,
    /// Everything QEMU printed (Xen's lines and the guest's).
    pub text: String,
    /// Wall-clock seconds the run took.
    pub secs: f64,
    /// The log file [`Outcome::text`] was written to ([`Boot::log`]).
    pub log: PathBuf,
}

/// Why a run has no guest status.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The time limit (in seconds) hit and QEMU was killed.
    Timeout(u64),
    /// The machine stopped without delivering a status (a reset, a power-off, Xen saying
    /// dom0 died, a signal): why.
    NoStatus(String),
    /// QEMU did not start (or the domU's payload disk could not be written): why.
    Start(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(s) => write!(f, "timed out after {s} s (QEMU killed)"),
            Failure::NoStatus(why) => write!(
                f,
                "the machine stopped without delivering a guest status: {why}"
            ),
            Failure::Start(why) => write!(f, "QEMU did not start: {why}"),
        }
    }
}

impl Outcome {
    /// The guest's console lines: not Xen's (those start with `(XEN)`); a domU's without
    /// the box's `domU| ` prefix.
    pub fn guest_lines(&self) -> impl Iterator<Item = &str> {
        self.text
            .lines()
            .filter(|l| !l.starts_with("(XEN)"))
            .map(|l| l.strip_prefix("domU| ").unwrap_or(l))
    }
}

/// Xen lines after which the machine will not deliver a status by itself.
const XEN_FATAL: [&str; 4] = [
    "Hardware Dom0 crashed",
    "Hardware Dom0 halted",
    "Panic on CPU",
    "Hardware Dom0 shutdown",
];

/// QEMU's `-initrd` separates modules with commas: a comma in a path or command line is `,,`.
pub fn initrd_arg(image: &Path, cmdline: &str, initrd: Option<&Path>) -> String {
    let esc = |s: &str| s.replace(',', ",,");
    let mut arg = esc(&image.to_string_lossy());
    if !cmdline.trim().is_empty() {
        arg.push(' ');
        arg.push_str(&esc(cmdline.trim()));
    }
    if let Some(i) = initrd {
        arg.push(',');
        arg.push_str(&esc(&i.to_string_lossy()));
    }
    arg
}

/// QEMU's memory: the guest's, the initrd (loaded by QEMU before Xen copies it), headroom.
pub fn qemu_memory(guest_mib: u64, initrd_bytes: u64) -> u64 {
    guest_mib + initrd_bytes.div_ceil(1 << 20) + 512
}

/// Decode QEMU's exit code and the console's own exit line into the guest's status;
/// `fatal` is the Xen line after which the machine stopped, if one was seen.
pub fn decode_status(code: Option<i32>, text: &str, fatal: Option<&str>) -> Result<i32, Failure> {
    let said = text.lines().rev().find_map(parse_exit_line);
    match code {
        Some(c) if c % 2 == 1 => {
            let st = c >> 1;
            match said {
                Some(s) if s != st => Err(Failure::NoStatus(format!(
                    "the exit device says {st} but the console says {s}"
                ))),
                _ => Ok(st),
            }
        }
        Some(c) => Err(Failure::NoStatus(match fatal {
            Some(line) => format!("QEMU exit code {c} after Xen said \"{line}\""),
            None => format!("QEMU exit code {c} (a reset or power-off, not the exit device)"),
        })),
        None => Err(Failure::NoStatus("QEMU was killed by a signal".into())),
    }
}

/// QEMU's arguments for every boot: software emulation, the serial line on stdio, no
/// reboot, the exit device, and **no network device at all** (`-nic none`): QEMU would
/// otherwise add a NIC with user-mode networking, a path from the emulated machine to the
/// host. Guest networks live on bridges inside dom0.
///
/// The CPU is QEMU's `max` without XSAVE: with XSAVE, programs in the box's dom0 crashed
/// at random (segfaults, `malloc(): corrupted top size`) and streams they copied came out
/// corrupted (a TCP echo client saw wrong bytes), as if extended register state were lost
/// across context switches under TCG; without it, none in any run.
pub const BASE_ARGS: &[&str] = &[
    "-accel",
    "tcg",
    "-cpu",
    "max,-xsave",
    "-nographic",
    "-no-reboot",
    "-monitor",
    "none",
    "-nic",
    "none",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
];

/// Boot `b` under the Xen image `xen` (from [`provision::ensure`]), stream its console as
/// [`Boot::stream`] says (defmt lines decoded, fault lines symbolized), and return how it
/// ended; the console is also written to [`Boot::log`]. A guest that Xen crashed on a
/// fault it could not deliver gets [`crate::symbolize::STATUS_XEN_CRASH`] and a report
/// from Xen's register dump.
pub fn boot(xen: &Path, b: &Boot) -> Outcome {
    boot_with(xen, b, None, &crate::xenbox::DomuExtras::default(), &[])
}

/// Boot `b` as a domU of the box ([`Boot::domu`]) with `extras`: network interfaces on
/// the box's bridge and a dom0 script run next to the domU (its contract, and the
/// run's status, are [`crate::xenbox::DomuExtras`]'s). With the default extras it is
/// [`boot`].
pub fn boot_domu(xen: &Path, b: &Boot, extras: &crate::xenbox::DomuExtras) -> Outcome {
    boot_domu_with_disks(xen, b, extras, &[])
}

/// [`boot_domu`] with block devices for the domU: each disk is a virtio drive of the
/// box's QEMU ([`disk_args`]), which dom0 finds by its serial and gives the domU with xl
/// (`disk = ['phy:/dev/vdX,xvda,w', …]`, Linux's xen-blkback); disk `i` is the domU's
/// [`crate::xenbox::disk_vdev`]`(i)` (`xvda`, `xvdb`, …) and a dom0 script's `DISK<i>`.
/// The disks are checked first ([`crate::xenbox::check_disks`]).
pub fn boot_domu_with_disks(
    xen: &Path,
    b: &Boot,
    extras: &crate::xenbox::DomuExtras,
    disks: &[crate::xenbox::Disk],
) -> Outcome {
    let refuse = |why: String| Outcome {
        status: Err(Failure::Start(why)),
        text: String::new(),
        secs: 0.0,
        log: b.log.clone(),
    };
    if b.domu.is_none() && (*extras != crate::xenbox::DomuExtras::default() || !disks.is_empty()) {
        return refuse(
            "network interfaces, disks and a dom0 script need a domU in the box: no box given"
                .into(),
        );
    }
    if let Err(e) = crate::xenbox::check_disks(disks) {
        return refuse(e);
    }
    boot_with(xen, b, None, extras, disks)
}

/// QEMU's arguments for the domU's disks in the box: per disk `i`, a drive of its own
/// (`-drive if=none,id=xenpv-diskI,file=…,format=raw[,readonly=on]`) on a virtio-blk PCI
/// device with serial [`crate::xenbox::disk_serial`]`(i)` at slot
/// [`crate::xenbox::DISK_PCI_SLOT`]` + i` (commas in the file name doubled, as QEMU wants).
pub fn disk_args(disks: &[crate::xenbox::Disk]) -> Vec<String> {
    let mut args = vec![];
    for (i, d) in disks.iter().enumerate() {
        let id = crate::xenbox::disk_serial(i);
        let file = d.path.to_string_lossy().replace(',', ",,");
        let ro = if d.read_only { ",readonly=on" } else { "" };
        let throttle = d
            .throttle
            .as_ref()
            .map(|t| format!(",{t}"))
            .unwrap_or_default();
        args.push("-drive".into());
        args.push(format!(
            "if=none,id={id},file={file},format=raw{ro}{throttle}"
        ));
        args.push("-device".into());
        args.push(format!(
            "virtio-blk-pci,drive={id},serial={id},addr={:#x}",
            crate::xenbox::DISK_PCI_SLOT + i
        ));
    }
    args
}

/// Boot the box of [`Boot::domu`] in its bench mode: the domU is started `bench.runs`
/// times in a row, each run timed in dom0 (read the runs from [`Outcome::text`] with
/// [`crate::xenbox::bench_runs`]); the status is 0 when every run ended by itself.
/// [`Boot::timeout`] is the whole box run's limit. The domU may be any PV kernel (a
/// Linux one too): its console is only decoded and symbolized if it is a Xen PV ELF.
pub fn boot_box_bench(xen: &Path, b: &Boot, bench: crate::xenbox::BenchMode) -> Outcome {
    if b.domu.is_none() {
        return Outcome {
            status: Err(Failure::Start(
                "bench mode runs in the box: no box given".into(),
            )),
            text: String::new(),
            secs: 0.0,
            log: b.log.clone(),
        };
    }
    boot_with(
        xen,
        b,
        Some(bench),
        &crate::xenbox::DomuExtras::default(),
        &[],
    )
}

fn boot_with(
    xen: &Path,
    b: &Boot,
    bench: Option<crate::xenbox::BenchMode>,
    extras: &crate::xenbox::DomuExtras,
    disks: &[crate::xenbox::Disk],
) -> Outcome {
    let start = Instant::now();
    let initrd_bytes = b
        .initrd
        .as_ref()
        .and_then(|p| p.metadata().ok())
        .map(|m| m.len())
        .unwrap_or(0);
    let fail = |why: String, text: String| Outcome {
        status: Err(Failure::Start(why)),
        text,
        secs: start.elapsed().as_secs_f64(),
        log: b.log.clone(),
    };
    let mem = b.memory_mib;
    let cmdline = format!("{} qemu-exit", b.cmdline.trim());
    let mut cmd = Command::new(provision::QEMU);
    cmd.args(BASE_ARGS).arg("-kernel").arg(xen);
    match &b.domu {
        None => {
            cmd.args(["-m", &qemu_memory(mem, initrd_bytes).to_string()])
                .arg("-append")
                .arg(format!(
                    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem={mem}M,max:{mem}M dom0_max_vcpus=1 smap=0"
                ))
                .arg("-initrd")
                .arg(initrd_arg(&b.image, &cmdline, b.initrd.as_deref()));
        }
        Some(bx) => {
            // dom0 holds a copy of the ramdisk until xl has loaded it into the domU.
            let dom0 = crate::xenbox::DOM0_MIB + initrd_bytes.div_ceil(1 << 20);
            let payload = b.log.with_extension("payload");
            let name = b.name.as_str();
            // The domU's status travels in its console's exit line, not an exit device.
            let spec = crate::xenbox::Payload {
                name,
                kernel: &b.image,
                peer: bx.peer.as_deref(),
                cmdline: b.cmdline.trim(),
                memory_mib: mem,
                timeout_s: b.timeout.as_secs(),
                bench,
                vifs: extras.vifs,
                dom0_script: extras.dom0_script.as_deref(),
                disks,
            };
            if let Err(e) = spec.write(&payload) {
                return fail(e, String::new());
            }
            cmd.args(["-m", &(dom0 + mem + 384).to_string()])
                .arg("-append")
                .arg(format!(
                    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem={dom0}M,max:{dom0}M dom0_max_vcpus=1 smap=0"
                ))
                .arg("-initrd")
                .arg(format!(
                    "{} console=hvc0 earlyprintk=xen quiet,{}",
                    bx.vmlinuz.display(),
                    bx.initramfs.display()
                ))
                .arg("-drive")
                .arg(format!("file={},format=raw,if=virtio,readonly=on", payload.display()));
            if let Some(r) = &b.initrd {
                cmd.arg("-drive").arg(format!(
                    "file={},format=raw,if=virtio,readonly=on",
                    r.display()
                ));
            }
            cmd.args(disk_args(disks));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", provision::QEMU), String::new()),
    };
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
            if tx
                .send(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string(),
                )
                .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
            let _ = tx2.send(format!("qemu: {}", String::from_utf8_lossy(&line)));
        }
    });
    let deadline = start + b.timeout;
    // defmt lines are decoded with the image's own ELF as they arrive. A bench of a
    // foreign kernel (Linux) has neither defmt nor symbols: no notes saying so.
    let decode = bench.is_none() || crate::elf::is_xen_kernel(&b.image) == Ok(true);
    let defmt = match decode.then(|| crate::defmt_log::Defmt::from_elf(&b.image)) {
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            eprintln!("xenpv-run: defmt lines stay encoded: {e}");
            None
        }
        None => None,
    };
    let sym = decode
        .then(|| crate::symbolize::for_image(&b.image))
        .flatten();
    let mut text = String::new();
    let mut fatal: Option<String> = None;
    let mut fatal_at: Option<Instant> = None;
    let mut timed_out = false;
    // Firmware (SeaBIOS, iPXE) paints the screen before Xen starts: log it, don't show it.
    let mut xen_started = false;
    loop {
        let now = Instant::now();
        let until = fatal_at.map_or(deadline, |f| f.min(deadline));
        if now >= until {
            timed_out = fatal_at.is_none_or(|f| f > deadline);
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(until - now) {
            Ok(line) => {
                let line = crate::defmt_log::show(defmt.as_ref(), &line);
                let line = crate::symbolize::with_annotation(sym.as_ref(), line);
                let xen_line = line.starts_with("(XEN)");
                xen_started |= line.contains("(XEN)");
                let guest = match (&b.domu, line.strip_prefix("domU| ")) {
                    (None, _) => (!xen_line).then_some(line.as_str()),
                    (Some(_), Some(g)) => Some(g),
                    (Some(_), None) => (line.starts_with("xenbox: ") || line.starts_with("dom0| "))
                        .then_some(line.as_str()),
                };
                if xen_started && b.stream == Stream::All {
                    println!("{line}");
                } else if let (true, Stream::Guest, Some(g)) = (xen_started, b.stream, guest) {
                    println!("{g}");
                }
                if xen_line && fatal.is_none() {
                    if let Some(f) = XEN_FATAL.iter().find(|f| line.contains(*f)) {
                        fatal = Some(f.to_string());
                        fatal_at = Some(Instant::now() + Duration::from_secs(3));
                    }
                }
                text.push_str(&line);
                text.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let code = child.wait().ok().and_then(|s| s.code());
    let mut status = if timed_out {
        Err(Failure::Timeout(b.timeout.as_secs()))
    } else {
        decode_status(code, &text, fatal.as_deref())
    };
    // A guest Xen crashed (a fault it could not deliver): say why, from Xen's dump. A
    // domU's dump is on the box's serial line too; the box says 125 for a crashed domU.
    let crashed = matches!((&status, &b.domu), (Err(_), None) | (Ok(125), Some(_)));
    if crashed {
        let guard = crate::symbolize::elf_symbol(&b.image, "xenpv_boot_stack_guard");
        if let Some(report) = crate::symbolize::xen_crash(&text, sym.as_ref(), guard) {
            if b.stream != Stream::Quiet {
                println!("{report}");
            }
            text.push_str(&report);
            text.push('\n');
            status = Ok(crate::symbolize::STATUS_XEN_CRASH);
        }
    }
    let _ = std::fs::write(&b.log, &text);
    Outcome {
        status,
        text,
        secs: start.elapsed().as_secs_f64(),
        log: b.log.clone(),
    }
}

/// The exit code for a run that ended without a guest status.
pub fn failure_status(f: &Failure) -> u8 {
    match f {
        Failure::Timeout(_) => EXIT_TIMEOUT,
        Failure::NoStatus(_) => EXIT_NO_STATUS,
        Failure::Start(_) => 2,
    }
}

/// Say how the run ended (on stderr, `who: …`) and return the exit code to pass on: the
/// guest's status, or [`failure_status`].
pub fn report(out: &Outcome, who: &str) -> u8 {
    match &out.status {
        Ok(st) => {
            eprintln!(
                "{who}: guest exited with status {st} after {:.1} s (log: {})",
                out.secs,
                out.log.display()
            );
            (*st).clamp(0, 255) as u8
        }
        Err(f) => {
            eprintln!("{who}: {f} (full log: {})", out.log.display());
            failure_status(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_no_network_device() {
        let nic = BASE_ARGS.windows(2).any(|w| w == ["-nic", "none"]);
        assert!(nic, "QEMU must run with -nic none: {BASE_ARGS:?}");
        assert!(!BASE_ARGS
            .iter()
            .any(|a| a.starts_with("user") || *a == "-netdev"));
    }

    #[test]
    fn disks_are_virtio_drives_found_by_serial_and_add_no_network() {
        use crate::xenbox::Disk;
        assert!(disk_args(&[]).is_empty());
        let disks = [
            Disk {
                path: PathBuf::from("/tmp/d0.img"),
                read_only: false,
                throttle: None,
            },
            Disk {
                path: PathBuf::from("/t/a,b.img"),
                read_only: true,
                throttle: None,
            },
        ];
        assert_eq!(
            disk_args(&disks),
            [
                "-drive",
                "if=none,id=xenpv-disk0,file=/tmp/d0.img,format=raw",
                "-device",
                "virtio-blk-pci,drive=xenpv-disk0,serial=xenpv-disk0,addr=0x10",
                "-drive",
                "if=none,id=xenpv-disk1,file=/t/a,,b.img,format=raw,readonly=on",
                "-device",
                "virtio-blk-pci,drive=xenpv-disk1,serial=xenpv-disk1,addr=0x11",
            ]
        );
        assert!(!disk_args(&disks)
            .iter()
            .any(|a| a.contains("nic") || a.contains("netdev")));
        // A test's throttled drive: the options follow the drive's own.
        let slow = [Disk {
            throttle: Some("throttling.bps-total=1024".into()),
            ..disks[0].clone()
        }];
        assert_eq!(
            disk_args(&slow)[1],
            "if=none,id=xenpv-disk0,file=/tmp/d0.img,format=raw,throttling.bps-total=1024"
        );
    }

    #[test]
    fn disks_need_the_box_and_are_checked_before_qemu_starts() {
        use crate::xenbox::{Disk, DomuExtras};
        let dir = std::env::temp_dir().join(format!("qemu-disk-test-{}", std::process::id()));
        let b = Boot {
            domu: None,
            name: "t".into(),
            image: dir.join("k"),
            cmdline: String::new(),
            initrd: None,
            memory_mib: 128,
            timeout: Duration::from_secs(1),
            stream: Stream::Quiet,
            log: dir.join("log"),
        };
        let missing = [Disk {
            path: dir.join("missing.img"),
            read_only: false,
            throttle: None,
        }];
        let o = boot_domu_with_disks(Path::new("/xen"), &b, &DomuExtras::default(), &missing);
        assert!(
            matches!(&o.status, Err(Failure::Start(w)) if w.contains("no box")),
            "{:?}",
            o.status
        );
        let b = Boot {
            domu: Some(std::sync::Arc::new(crate::xenbox::BoxImage {
                vmlinuz: dir.join("vmlinuz"),
                initramfs: dir.join("initramfs"),
                peer: None,
            })),
            ..b
        };
        let o = boot_domu_with_disks(Path::new("/xen"), &b, &DomuExtras::default(), &missing);
        let want = format!("--disk {}: no such file", missing[0].path.display());
        assert_eq!(o.status, Err(Failure::Start(want)));
    }

    #[test]
    fn status_comes_from_the_exit_device_and_agrees_with_the_console() {
        assert_eq!(
            decode_status(Some(15), "xenpv-rt: exit status 7\n", None),
            Ok(7)
        );
        assert_eq!(decode_status(Some(1), "", None), Ok(0));
        assert!(matches!(
            decode_status(Some(15), "xenpv-rt: exit status 3\n", None),
            Err(Failure::NoStatus(_))
        ));
        let e = decode_status(Some(0), "", Some("Hardware Dom0 crashed")).unwrap_err();
        assert!(e.to_string().contains("Hardware Dom0 crashed"), "{e}");
        assert!(matches!(
            decode_status(None, "", None),
            Err(Failure::NoStatus(_))
        ));
    }

    #[test]
    fn commas_are_escaped_for_qemu() {
        let a = initrd_arg(Path::new("/t/app"), " a=1,2 ", Some(Path::new("/i,mg")));
        assert_eq!(a, "/t/app a=1,,2,/i,,mg");
        assert_eq!(initrd_arg(Path::new("/t/app"), "", None), "/t/app");
    }

    #[test]
    fn qemu_gets_room_for_the_initrd() {
        assert_eq!(qemu_memory(256, 0), 768);
        assert_eq!(qemu_memory(2048, 1100 << 20), 3660);
    }
}
