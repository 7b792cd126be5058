//! QEMU's output as it arrives: read on two threads, decoded (defmt, fault lines),
//! shown as [`Boot::stream`] says, kept, and watched for Xen's fatal lines and the time
//! limit.
use super::{Boot, Failure, Role, Stream};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Xen lines after which the machine will not deliver a status by itself.
const XEN_FATAL: [&str; 4] = [
    "Hardware Dom0 crashed",
    "Hardware Dom0 halted",
    "Panic on CPU",
    "Hardware Dom0 shutdown",
];

/// Start `cmd` with its stdout and stderr lines (stderr's prefixed `qemu: `) on one
/// channel.
pub(super) fn spawn(mut cmd: Command) -> Result<(Child, mpsc::Receiver<String>), String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e}", crate::provision::QEMU))?;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
            let _ = tx2.send(format!("qemu: {}", String::from_utf8_lossy(&line)));
        }
    });
    Ok((child, rx))
}

/// The console as it arrives: decoded, shown as [`Boot::stream`] says, kept, and
/// watched for Xen's fatal lines.
pub(super) struct Console<'b> {
    boot: &'b Boot,
    defmt: Option<crate::defmt_log::Defmt>,
    sym: Option<crate::symbolize::Symbolizer>,
    pub(super) text: String,
    /// The Xen line after which the machine will not deliver a status, and when to stop
    /// waiting for it to do so.
    pub(super) fatal: Option<(String, Instant)>,
    /// Firmware (SeaBIOS, iPXE) paints the screen before Xen starts: log it, don't show it.
    xen_started: bool,
}

impl<'b> Console<'b> {
    /// defmt lines are decoded with the image's own ELF as they arrive. A bench of a
    /// foreign kernel (Linux) has neither defmt nor symbols: no notes saying so.
    pub(super) fn new(b: &'b Boot, role: Role<'_>) -> Self {
        let decode =
            !matches!(role, Role::Bench(_)) || crate::elf::is_xen_kernel(&b.image) == Ok(true);
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
        Console {
            boot: b,
            defmt,
            sym,
            text: String::new(),
            fatal: None,
            xen_started: false,
        }
    }

    /// Take one line of QEMU's output.
    fn line(&mut self, raw: &str) {
        let line = crate::defmt_log::show(self.defmt.as_ref(), raw);
        let line = crate::symbolize::with_annotation(self.sym.as_ref(), line);
        let xen_line = line.starts_with("(XEN)");
        self.xen_started |= line.contains("(XEN)");
        let guest = match (&self.boot.domu, line.strip_prefix("domU| ")) {
            (None, _) => (!xen_line).then_some(line.as_str()),
            (Some(_), Some(g)) => Some(g),
            (Some(_), None) => (line.starts_with("xenbox: ") || line.starts_with("dom0| "))
                .then_some(line.as_str()),
        };
        match (self.xen_started, self.boot.stream, guest) {
            (true, Stream::All, _) => println!("{line}"),
            (true, Stream::Guest, Some(g)) => println!("{g}"),
            _ => {}
        }
        if xen_line && self.fatal.is_none() {
            if let Some(f) = XEN_FATAL.iter().find(|f| line.contains(*f)) {
                let grace = Instant::now() + Duration::from_secs(3);
                self.fatal = Some((f.to_string(), grace));
            }
        }
        self.text.push_str(&line);
        self.text.push('\n');
    }
}

/// Feed QEMU's lines to `console` until QEMU ends, the time limit hits or a fatal Xen
/// line's grace is over (QEMU killed then); true when the time limit hit.
pub(super) fn watch(
    child: &mut Child,
    rx: &mpsc::Receiver<String>,
    deadline: Instant,
    console: &mut Console<'_>,
) -> bool {
    loop {
        let now = Instant::now();
        let fatal_at = console.fatal.as_ref().map(|f| f.1);
        let until = fatal_at.map_or(deadline, |f| f.min(deadline));
        if now >= until {
            let _ = child.kill();
            return fatal_at.is_none_or(|f| f > deadline);
        }
        match rx.recv_timeout(until - now) {
            Ok(line) => console.line(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// A guest Xen crashed (a fault it could not deliver): say why, from Xen's dump, and
/// make the status [`crate::symbolize::STATUS_XEN_CRASH`]. A domU's dump is on the box's
/// serial line too; the box says 125 for a crashed domU.
pub(super) fn explain_crash(status: &mut Result<i32, Failure>, console: &mut Console<'_>) {
    let b = console.boot;
    if !matches!((&*status, &b.domu), (Err(_), None) | (Ok(125), Some(_))) {
        return;
    }
    let guard = crate::symbolize::elf_symbol(&b.image, "xenpv_boot_stack_guard");
    if let Some(report) = crate::symbolize::xen_crash(&console.text, console.sym.as_ref(), guard) {
        if b.stream != Stream::Quiet {
            println!("{report}");
        }
        console.text.push_str(&report);
        console.text.push('\n');
        *status = Ok(crate::symbolize::STATUS_XEN_CRASH);
    }
}
