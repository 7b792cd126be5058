//! Booting a guest under Xen 4.17 inside QEMU, streaming its console and decoding its exit
//! status: as the PV dom0 (isa-debug-exit: QEMU exits with `(status << 1) | 1`), or as a
//! domU of the Linux dom0 of [`crate::xenbox`] (the status read from its console's exit
//! line, which the box passes on to the exit device).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xenpv_contract::status::parse_exit_line;

mod args;
mod console;
pub use args::disk_args;

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

/// What the guest is in the machine, which decides how QEMU is set up around it.
#[derive(Clone, Copy, Debug)]
pub enum Role<'a> {
    /// The PV dom0 of Xen ([`Boot::domu`] is `None`): Xen's modules are the kernel and
    /// the ramdisk, the status comes through QEMU's exit device.
    Dom0,
    /// A domU of the box ([`Boot::domu`]) with what it gets besides its kernel: network
    /// interfaces, a dom0 script (its contract: [`crate::cli::BootArgs::dom0_script`])
    /// and disks, each a virtio drive of the box's QEMU ([`disk_args`]), which dom0
    /// finds by its serial and gives the domU with xl (`phy:`, Linux's xen-blkback);
    /// disk `i` is the domU's [`crate::xenbox::disk_vdev`]`(i)` and a dom0 script's
    /// `DISK<i>`.
    Domu {
        /// Network interfaces and the dom0 script.
        extras: &'a crate::xenbox::DomuExtras,
        /// Block devices, checked before QEMU starts ([`crate::xenbox::check_disks`]).
        disks: &'a [crate::xenbox::Disk],
    },
    /// The box ([`Boot::domu`]) in bench mode: the domU is started `runs` times in a
    /// row, each run timed in dom0 (read them with [`crate::xenbox::bench_runs`]); the
    /// status is 0 when every run ended by itself. The domU may be any PV kernel (a
    /// Linux one too): its console is only decoded and symbolized if it is a Xen PV ELF.
    Bench(crate::xenbox::BenchMode),
}

impl Role<'_> {
    /// The plain role of `b`: a domU without devices when it names a box, else dom0.
    pub fn of(b: &Boot) -> Role<'static> {
        static NOTHING: crate::xenbox::DomuExtras = crate::xenbox::DomuExtras {
            vifs: 0,
            dom0_script: None,
            migrate: false,
            room_mib: 0,
        };
        match b.domu {
            Some(_) => Role::Domu {
                extras: &NOTHING,
                disks: &[],
            },
            None => Role::Dom0,
        }
    }

    /// The domU's disks: none but in [`Role::Domu`].
    pub fn disks(&self) -> &[crate::xenbox::Disk] {
        match self {
            Role::Domu { disks, .. } => disks,
            _ => &[],
        }
    }

    /// Refuse a role that `b` cannot have: a box role without a box, a dom0 with one,
    /// disks the box cannot take.
    fn check(&self, b: &Boot) -> Result<(), String> {
        match (self, &b.domu) {
            (Role::Dom0, None) => Ok(()),
            (Role::Dom0, Some(_)) => Err("a box was given for a dom0 boot".into()),
            (Role::Bench(_), None) => Err("bench mode runs in the box: no box given".into()),
            (Role::Bench(_), Some(_)) => Ok(()),
            (Role::Domu { .. }, None) => Err(
                "network interfaces, disks and a dom0 script need a domU in the box: no box given"
                    .into(),
            ),
            (Role::Domu { disks, .. }, Some(_)) => crate::xenbox::check_disks(disks),
        }
    }
}

/// Boot `b` under the Xen image `xen` (from [`crate::provision::ensure`]) in its plain role
/// ([`Role::of`]), stream its console as [`Boot::stream`] says (defmt lines decoded,
/// fault lines symbolized), and return how it ended; the console is also written to
/// [`Boot::log`]. A guest that Xen crashed on a fault it could not deliver gets
/// [`crate::symbolize::STATUS_XEN_CRASH`] and a report from Xen's register dump.
pub fn boot(xen: &Path, b: &Boot) -> Outcome {
    run(xen, b, Role::of(b))
}

/// Boot `b` as a domU of the box ([`Boot::domu`]) with `extras` ([`Role::Domu`]). With
/// the default extras it is [`boot`].
pub fn boot_domu(xen: &Path, b: &Boot, extras: &crate::xenbox::DomuExtras) -> Outcome {
    boot_domu_with_disks(xen, b, extras, &[])
}

/// [`boot_domu`] with block devices for the domU ([`Role::Domu`]); without a box and
/// with neither extras nor disks it is a dom0 boot, as [`boot`].
pub fn boot_domu_with_disks(
    xen: &Path,
    b: &Boot,
    extras: &crate::xenbox::DomuExtras,
    disks: &[crate::xenbox::Disk],
) -> Outcome {
    let plain = *extras == crate::xenbox::DomuExtras::default() && disks.is_empty();
    let role = match b.domu {
        None if plain => Role::Dom0,
        _ => Role::Domu { extras, disks },
    };
    run(xen, b, role)
}

/// Boot the box of [`Boot::domu`] in its bench mode ([`Role::Bench`]); [`Boot::timeout`]
/// is the whole box run's limit.
pub fn boot_box_bench(xen: &Path, b: &Boot, bench: crate::xenbox::BenchMode) -> Outcome {
    run(xen, b, Role::Bench(bench))
}

/// Boot `b` in `role` under the Xen image `xen`, as [`boot`] says.
pub fn run(xen: &Path, b: &Boot, role: Role<'_>) -> Outcome {
    let start = Instant::now();
    let outcome = |status, text| Outcome {
        status,
        text,
        secs: start.elapsed().as_secs_f64(),
        log: b.log.clone(),
    };
    let started = role
        .check(b)
        .and_then(|()| args::command(xen, b, role))
        .and_then(console::spawn);
    let (mut child, rx) = match started {
        Ok(c) => c,
        Err(why) => return outcome(Err(Failure::Start(why)), String::new()),
    };
    let mut console = console::Console::new(b, role);
    let timed_out = console::watch(&mut child, &rx, start + b.timeout, &mut console);
    let code = child.wait().ok().and_then(|s| s.code());
    let mut status = if timed_out {
        Err(Failure::Timeout(b.timeout.as_secs()))
    } else {
        let fatal = console.fatal.as_ref().map(|f| f.0.as_str());
        decode_status(code, &console.text, fatal)
    };
    console::explain_crash(&mut status, &mut console);
    let _ = std::fs::write(&b.log, &console.text);
    outcome(status, console.text)
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
    use super::args::{box_drive_args, memory_args, module_args, xen_args};
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
                toolstack: Default::default(),
            })),
            ..b
        };
        let o = boot_domu_with_disks(Path::new("/xen"), &b, &DomuExtras::default(), &missing);
        let want = format!("--disk {}: no such file", missing[0].path.display());
        assert_eq!(o.status, Err(Failure::Start(want)));
    }

    #[test]
    fn roles_need_their_box_and_say_their_qemu_arguments() {
        let dir = std::env::temp_dir().join(format!("qemu-role-test-{}", std::process::id()));
        let b = Boot {
            domu: None,
            name: "t".into(),
            image: dir.join("k"),
            cmdline: " a=1 ".into(),
            initrd: None,
            memory_mib: 128,
            timeout: Duration::from_secs(1),
            stream: Stream::Quiet,
            log: dir.join("log"),
        };
        assert!(matches!(Role::of(&b), Role::Dom0));
        let bench = crate::xenbox::BenchMode {
            runs: 1,
            run_timeout_s: 1,
        };
        let o = run(Path::new("/xen"), &b, Role::Bench(bench));
        let want = "bench mode runs in the box: no box given".to_string();
        assert_eq!(o.status, Err(Failure::Start(want)));
        let dom0 = [
            &memory_args(&b, 0, 0, 0)[..],
            &xen_args(&b, 0, 0),
            &module_args(&b),
            &box_drive_args(&b, None),
        ]
        .concat();
        assert_eq!(
            dom0,
            [
                "-m",
                "640",
                "-append",
                &xen_args(&b, 0, 0)[1],
                "-initrd",
                &format!("{} a=1 qemu-exit", dir.join("k").display()),
            ]
        );
        assert!(xen_args(&b, 0, 0)[1].contains(" dom0_mem=128M,max:128M "));
        let bx = crate::xenbox::BoxImage {
            vmlinuz: "/v".into(),
            initramfs: "/i".into(),
            peer: None,
            toolstack: Default::default(),
        };
        let b = Boot {
            domu: Some(std::sync::Arc::new(bx)),
            initrd: Some("/r".into()),
            ..b
        };
        assert!(matches!(Role::of(&b), Role::Domu { disks: [], .. }));
        let o = run(Path::new("/xen"), &b, Role::Dom0);
        assert!(matches!(o.status, Err(Failure::Start(_))), "{:?}", o.status);
        let args = [
            &memory_args(&b, 3 << 20, 0, 0)[..],
            &xen_args(&b, 3 << 20, 0),
            &module_args(&b),
            &box_drive_args(&b, Some(Path::new("/p"))),
        ]
        .concat();
        assert_eq!(args[..3], ["-m", "1027", "-append"]);
        assert!(args[3].contains(" dom0_mem=515M,max:515M "), "{}", args[3]);
        // Room for a dom0 script's own domUs is Xen's: QEMU grows (dom0_mem above is the same).
        assert_eq!(memory_args(&b, 3 << 20, 0, 2048)[1], "3075");
        assert_eq!(
            args[4..],
            [
                "-initrd",
                "/v console=hvc0 earlyprintk=xen quiet,/i",
                "-drive",
                "file=/p,format=raw,if=virtio,readonly=on",
                "-drive",
                "file=/r,format=raw,if=virtio,readonly=on",
            ]
        );
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
