//! The per-run payload disk: the header the box's init reads, the kernel and the peer.
use std::fs;
use std::path::Path;

use super::*;

/// Bench mode of the box (payload header `bench=1`): the domU is started [`BenchMode::runs`]
/// times in a row with `xl create -F`, each run timed in dom0 from just before `xl create`
/// to the domain's end and reported as a `xenbox: bench run N ...` line followed by that
/// run's console (read them with [`bench_runs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchMode {
    /// How many times the domU is started.
    pub runs: u32,
    /// Each run's wall-clock limit in seconds: a domU still there then is destroyed and
    /// the run reported as failed.
    pub run_timeout_s: u64,
}

/// The per-run payload disk: what the box boots as its domU, and how.
pub struct Payload<'a> {
    /// The domain's name (in bench mode, runs are named `NAME-1`, `NAME-2`, ...).
    pub name: &'a str,
    /// The domU's kernel.
    pub kernel: &'a Path,
    /// The dom0-side program of [`BoxImage::peer`], if any.
    pub peer: Option<&'a Path>,
    /// The domU's command line (xl's `extra`).
    pub cmdline: &'a str,
    /// The domU's memory in MiB.
    pub memory_mib: u64,
    /// The whole box run's wall-clock limit in seconds (the box keeps 30 s of it for
    /// itself).
    pub timeout_s: u64,
    /// Start the domU several times and time each start (`None`: boot it once, the
    /// ordinary way).
    pub bench: Option<BenchMode>,
    /// The domU's network interfaces, 0..=[`MAX_VIFS`]: vif `i` is on [`BRIDGE`] with MAC
    /// `00:16:3e:00:00:02` + `i` (header key `vifs=N`, written only when nonzero).
    pub vifs: u32,
    /// A dom0 script (busybox sh) the box runs next to the domU (see [`DomuExtras`]);
    /// header key `script_len=N`, the script stored after the peer on the next 4 KiB
    /// boundary. Not in bench mode.
    pub dom0_script: Option<&'a Path>,
    /// The domU's disks, 0..=[`MAX_DISKS`]: header key `disks=A,A,…` (one `w` or `r` per
    /// disk, see [`disks_key`]), written only when there are disks. The files travel as
    /// QEMU drives of their own ([`crate::qemu::disk_args`]), not in the payload.
    pub disks: &'a [Disk],
    /// Which toolstack creates the domU: header key `toolstack=libvirt`, written only for
    /// [`Toolstack::Libvirt`] (the box must be its variant, [`BoxImage::toolstack`]).
    pub toolstack: Toolstack,
    /// The domU will be saved, restored or migrated (header key `migrate=1`, written only
    /// when set): the box says so with the hypervisor's version and capabilities, which
    /// shows that the run has the shadow-paging hypervisor ([`crate::xen_shadow`]).
    pub migrate: bool,
}

impl Payload<'_> {
    /// The 4 KiB header's text for a payload without a dom0 script (see
    /// [`Payload::header_with_script`]). Without bench mode and vifs it is exactly what it
    /// always was: the bench and network keys are only written when asked for.
    pub fn header(&self, kernel_len: usize, peer_len: usize) -> String {
        self.header_with_script(kernel_len, peer_len, 0)
    }

    /// The 4 KiB header's text; `script_len=N` is only written when `script_len` is
    /// nonzero, `vifs=N` only when [`Payload::vifs`] is, and `disks=…` only when there
    /// are [`Payload::disks`].
    pub fn header_with_script(
        &self,
        kernel_len: usize,
        peer_len: usize,
        script_len: usize,
    ) -> String {
        let (name, cmdline, memory_mib, timeout_s) =
            (self.name, self.cmdline, self.memory_mib, self.timeout_s);
        let mut hdr = format!(
            "name={name}\nkernel_len={kernel_len}\npeer_len={peer_len}\nmemory={memory_mib}\nextra={cmdline}\ntimeout={timeout_s}\n"
        );
        if let Some(b) = self.bench {
            hdr += &format!(
                "bench=1\nruns={}\nrun_timeout={}\n",
                b.runs, b.run_timeout_s
            );
        }
        if self.vifs > 0 {
            hdr += &format!("vifs={}\n", self.vifs);
        }
        if !self.disks.is_empty() {
            hdr += &format!("disks={}\n", disks_key(self.disks));
        }
        if self.toolstack != Toolstack::Xl {
            hdr += &format!("toolstack={}\n", self.toolstack.name());
        }
        if self.migrate {
            hdr += "migrate=1\n";
        }
        if script_len > 0 {
            hdr += &format!("script_len={script_len}\n");
        }
        hdr
    }

    /// Write the payload disk to `path`: a 4 KiB header, the kernel, then the peer
    /// program, then the dom0 script, each starting on a 4 KiB boundary. A name or
    /// command line holding a newline, quote or NUL is refused (it would break the header
    /// or the domU's xl config), and so are a bench mode of no runs, more than
    /// [`MAX_VIFS`] vifs, more than [`MAX_DISKS`] disks, an empty dom0 script and a dom0
    /// script in bench mode.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        for (what, v) in [("name", self.name), ("command line", self.cmdline)] {
            if v.contains(['\n', '"', '\0']) {
                return Err(format!("domU {what} {v:?} holds a newline, quote or NUL"));
            }
        }
        if self
            .bench
            .is_some_and(|b| b.runs == 0 || b.run_timeout_s == 0)
        {
            return Err("bench mode needs at least one run and a time limit".into());
        }
        if self.vifs > MAX_VIFS {
            return Err(format!(
                "{} network interfaces for the domU, the box's limit is {MAX_VIFS}",
                self.vifs
            ));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(format!(
                "{} disks for the domU, the box's limit is {MAX_DISKS}",
                self.disks.len()
            ));
        }
        if self.bench.is_some() && self.dom0_script.is_some() {
            return Err("a dom0 script runs with an ordinary boot, not in bench mode".into());
        }
        let kernel = self.kernel;
        let k = fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
        let p = match self.peer {
            Some(peer) => fs::read(peer).map_err(|e| format!("{}: {e}", peer.display()))?,
            None => Vec::new(),
        };
        let s = match self.dom0_script {
            Some(script) => {
                let s = fs::read(script)
                    .map_err(|e| format!("dom0 script {}: {e}", script.display()))?;
                if s.is_empty() {
                    return Err(format!("dom0 script {}: empty", script.display()));
                }
                s
            }
            None => Vec::new(),
        };
        let hdr = self.header_with_script(k.len(), p.len(), s.len());
        if hdr.len() > 4096 {
            return Err(format!(
                "payload header of {} bytes, the limit is 4096",
                hdr.len()
            ));
        }
        let mut data = hdr.into_bytes();
        data.resize(4096, 0);
        for part in [&k, &p, &s] {
            data.extend_from_slice(part);
            data.resize(data.len().div_ceil(4096) * 4096, 0);
        }
        fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Write the per-run payload disk to `path` for one ordinary boot (see [`Payload::write`]).
pub fn payload(
    path: &Path,
    name: &str,
    kernel: &Path,
    peer: Option<&Path>,
    cmdline: &str,
    memory_mib: u64,
    timeout_s: u64,
) -> Result<(), String> {
    Payload {
        name,
        kernel,
        peer,
        cmdline,
        memory_mib,
        timeout_s,
        bench: None,
        vifs: 0,
        dom0_script: None,
        disks: &[],
        toolstack: Toolstack::Xl,
        migrate: false,
    }
    .write(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_headers_refuse_what_would_break_the_config() {
        let d = std::env::temp_dir().join("xenbox-payload-test");
        let k = d.with_extension("k");
        fs::write(&k, b"ELF").unwrap();
        assert!(payload(&d, "app", &k, Some(&k), "a\"b", 64, 10)
            .unwrap_err()
            .contains("quote"));
        payload(&d, "app", &k, Some(&k), "split=1G stress", 64, 10).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(data.starts_with(
            b"name=app\nkernel_len=3\npeer_len=3\nmemory=64\nextra=split=1G stress\n"
        ));
        assert_eq!(&data[4096..4099], b"ELF");
        assert_eq!(
            &data[8192..8195],
            b"ELF",
            "the peer on the next 4 KiB boundary"
        );
    }

    #[test]
    fn bench_keys_are_in_the_header_only_when_asked_for() {
        let d = std::env::temp_dir().join("xenbox-payload-bench-test");
        let k = d.with_extension("k");
        fs::write(&k, b"ELF").unwrap();
        let mut p = Payload {
            name: "linux",
            kernel: &k,
            peer: None,
            cmdline: "console=hvc0 loglevel=7",
            memory_mib: 256,
            timeout_s: 900,
            bench: None,
            vifs: 0,
            dom0_script: None,
            disks: &[],
            toolstack: Toolstack::Xl,
            migrate: false,
        };
        assert_eq!(
            p.header(3, 0),
            "name=linux\nkernel_len=3\npeer_len=0\nmemory=256\nextra=console=hvc0 loglevel=7\ntimeout=900\n"
        );
        p.bench = Some(BenchMode {
            runs: 5,
            run_timeout_s: 300,
        });
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        let hdr = String::from_utf8_lossy(&data[..4096]);
        let hdr = hdr.trim_end_matches('\0');
        assert!(
            hdr.ends_with("timeout=900\nbench=1\nruns=5\nrun_timeout=300\n"),
            "{hdr}"
        );
        assert_eq!(&data[4096..4099], b"ELF");
        p.bench = Some(BenchMode {
            runs: 0,
            run_timeout_s: 300,
        });
        assert!(p.write(&d).unwrap_err().contains("at least one run"));
        // The ordinary payload has no bench keys at all.
        payload(&d, "app", &k, None, "x", 64, 10).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(!String::from_utf8_lossy(&data[..4096]).contains("bench"));
    }

    #[test]
    fn network_and_script_keys_are_in_the_header_only_when_asked_for() {
        let d =
            std::env::temp_dir().join(format!("xenbox-payload-net-test-{}", std::process::id()));
        let k = d.with_extension("k");
        let peer = d.with_extension("peer");
        let script = d.with_extension("sh");
        fs::write(&k, vec![0x7f; 5000]).unwrap();
        fs::write(&peer, b"PEER").unwrap();
        fs::write(&script, b"echo hi\n").unwrap();
        let mut p = Payload {
            name: "app",
            kernel: &k,
            peer: None,
            cmdline: "events",
            memory_mib: 128,
            timeout_s: 120,
            bench: None,
            vifs: 0,
            dom0_script: None,
            disks: &[],
            toolstack: Toolstack::Xl,
            migrate: false,
        };
        let plain =
            "name=app\nkernel_len=5000\npeer_len=0\nmemory=128\nextra=events\ntimeout=120\n";
        assert_eq!(p.header(5000, 0), plain);
        assert_eq!(p.header_with_script(5000, 0, 0), plain);
        p.vifs = 2;
        assert_eq!(p.header(5000, 0), format!("{plain}vifs=2\n"));
        assert_eq!(
            p.header_with_script(5000, 0, 8),
            format!("{plain}vifs=2\nscript_len=8\n")
        );
        // Kernel (2 blocks), peer (1 block), then the script on the next boundary.
        p.peer = Some(&peer);
        p.dom0_script = Some(&script);
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        let hdr = String::from_utf8_lossy(&data[..4096]);
        assert!(
            hdr.trim_end_matches('\0')
                .ends_with("timeout=120\nvifs=2\nscript_len=8\n"),
            "{hdr}"
        );
        assert_eq!(&data[4096..4098], b"\x7f\x7f");
        assert_eq!(&data[3 * 4096..3 * 4096 + 4], b"PEER");
        assert_eq!(&data[4 * 4096..4 * 4096 + 8], b"echo hi\n");
        assert_eq!(data.len(), 5 * 4096);
        // Without a peer, the script follows the kernel.
        p.peer = None;
        p.vifs = 0;
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(!String::from_utf8_lossy(&data[..4096]).contains("vifs"));
        assert_eq!(&data[3 * 4096..3 * 4096 + 8], b"echo hi\n");
        // Refused: too many vifs, an empty script, a script in bench mode.
        p.vifs = MAX_VIFS + 1;
        assert!(p.write(&d).unwrap_err().contains("limit is 4"));
        p.vifs = MAX_VIFS;
        fs::write(&script, b"").unwrap();
        assert!(p.write(&d).unwrap_err().contains("empty"));
        fs::write(&script, b"exit 3\n").unwrap();
        p.bench = Some(BenchMode {
            runs: 1,
            run_timeout_s: 10,
        });
        assert!(p.write(&d).unwrap_err().contains("bench"));
        for f in [&d, &k, &peer, &script] {
            let _ = fs::remove_file(f);
        }
    }

    #[test]
    fn disk_keys_are_in_the_header_only_when_asked_for() {
        let d =
            std::env::temp_dir().join(format!("xenbox-payload-disk-test-{}", std::process::id()));
        let k = d.with_extension("k");
        fs::write(&k, b"ELF").unwrap();
        let disk = |p: &str, read_only| Disk {
            path: PathBuf::from(p),
            read_only,
            throttle: None,
        };
        let disks = [disk("/a.img", false), disk("/b.img", true)];
        let mut p = Payload {
            name: "app",
            kernel: &k,
            peer: None,
            cmdline: "events",
            memory_mib: 128,
            timeout_s: 120,
            bench: None,
            vifs: 0,
            dom0_script: None,
            disks: &[],
            toolstack: Toolstack::Xl,
            migrate: false,
        };
        let plain = "name=app\nkernel_len=3\npeer_len=0\nmemory=128\nextra=events\ntimeout=120\n";
        assert_eq!(p.header(3, 0), plain);
        p.disks = &disks;
        assert_eq!(p.header(3, 0), format!("{plain}disks=w,r\n"));
        p.vifs = 1;
        assert_eq!(
            p.header_with_script(3, 0, 9),
            format!("{plain}vifs=1\ndisks=w,r\nscript_len=9\n")
        );
        p.disks = &disks[1..];
        assert_eq!(p.header(3, 0), format!("{plain}vifs=1\ndisks=r\n"));
        p.write(&d).unwrap();
        let data = fs::read(&d).unwrap();
        assert!(String::from_utf8_lossy(&data[..4096])
            .trim_end_matches('\0')
            .ends_with("vifs=1\ndisks=r\n"));
        // The disks are not in the payload: header and kernel only.
        assert_eq!(data.len(), 2 * 4096);
        let five = vec![disk("/a.img", false); MAX_DISKS + 1];
        p.disks = &five;
        assert!(p.write(&d).unwrap_err().contains("limit is 4"));
        assert_eq!(disks_key(&five[..2]), "w,w");
        assert_eq!(disks_key(&[]), "");
        for f in [&d, &k] {
            let _ = fs::remove_file(f);
        }
    }
}
