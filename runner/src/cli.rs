//! The boot options `xenpv-run` and `cargo xtask run` share ([`BootArgs`], pulled into
//! each with `#[command(flatten)]`), and with them the dom0 script's contract
//! ([`BootArgs::dom0_script`]), written once here.
use crate::qemu::Stream;
use crate::xenbox::{self, Disk, DomuExtras};
use std::path::PathBuf;

/// How to boot a kernel: as the PV dom0 of Xen in QEMU (the default), as a domU of the
/// box (`--domu`, with network interfaces, disks and a dom0 script) or with xl on a real
/// Xen host (`--xl`), and the machine's memory, ramdisk, time limit and console.
#[derive(clap::Args, Clone, Debug)]
pub struct BootArgs {
    /// Boot it as a domU of a Linux dom0 inside QEMU (Debian's kernel and xl: the box).
    #[arg(long)]
    pub domu: bool,
    /// Boot it with `xl create -c` on this machine, a real Xen host.
    #[arg(long, conflicts_with = "domu")]
    pub xl: bool,
    /// With --xl: print the config and the command, run nothing.
    #[arg(long, requires = "xl")]
    pub dry_run: bool,
    /// Guest memory in MiB (default: 256 as dom0, 128 as a domU, more with an initrd),
    /// from 1 (as xl takes it): a kernel that spans more than the memory is refused before
    /// the boot, naming both; what else does not fit, the guest says.
    #[arg(long, value_name = "MiB", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub memory: Option<u64>,
    /// Hand FILE to the guest as its initrd (a Xen module as dom0, handed on by xl as a
    /// domU).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Wall-clock limit in seconds; status 124 when it hits.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,
    /// Show Xen's own console lines too.
    #[arg(long)]
    pub xen_log: bool,
    /// With --domu: give the domU N network interfaces (default 1, at most 4), vifs on the
    /// bridge xenbr0 in the box's dom0 (which is 169.254.100.1/24 there; QEMU itself has
    /// no network device), MACs 00:16:3e:00:00:02, :03, … A bare --net takes the next
    /// word as N if it is not an option: write --net 1 before other words.
    #[arg(
        long,
        value_name = "N",
        num_args = 0..=1,
        default_missing_value = "1",
        requires = "domu",
        value_parser = xenbox::parse_vifs
    )]
    pub net: Option<u32>,
    /// With --domu: run FILE (busybox sh) in the box's dom0 next to the domU; its status
    /// counts (see --help).
    ///
    /// The box starts FILE with `/bin/sh` once the domU has its domain id. Its environment:
    /// DOMID and DOMU_NAME (the domU's; the domU restarts on reboot, so after an
    /// `xl reboot` it is a new domain: `xl domid "$DOMU_NAME"`); PEER=/run/peer, dom0's test client
    /// (tools/xenbox-peer: `$PEER wait-up HOST:PORT`, `tcp-echo`, `udp-echo`, `http-get`,
    /// …; `$PEER --help`), which xenpv-run carries in itself (it is a multi-call binary:
    /// run as `peer` or `xenpv-run dom0-peer`, it is that client) and `cargo xtask run`
    /// builds; each step prints one verdict line and exits 0 only on PASS. It runs in the
    /// box's Debian 12 (glibc 2.36); where the runner cannot carry itself (its executable
    /// unreadable, or built against a newer glibc), $PEER is a stub that says why on
    /// stderr and exits 127; DISK0, DISK1, … (dom0's block device behind the
    /// domU's --disk 0 = xvda, 1 = xvdb, …); init's PATH (busybox, xl, xenstore-*).
    ///
    /// Its output (stdout and stderr) is shown as it comes, each line prefixed `dom0| `
    /// (the domU's are `domU| `), and its end as `xenbox: dom0-script exit N`.
    ///
    /// Timing: once it has ended, a domU still running is asked to stop (`xl shutdown`: a
    /// PV guest sees control/shutdown = poweroff) and destroyed if it has not stopped 60 s
    /// later; a domU that stops first leaves the script running. Both have one deadline,
    /// when dom0 has been up for --timeout minus 40 s: the script is killed there (with
    /// what it started), said as `xenbox: dom0-script killed at its deadline …`, and
    /// counts as status 124; a domU still running then is destroyed.
    ///
    /// Status: the guest's if nonzero, else the script's if nonzero (a status above 127,
    /// which the exit device cannot carry, is 125), else 0.
    ///
    /// Example: `--domu --net --dom0-script check.sh`, check.sh holding
    /// `xl network-list $DOMID && ls /sys/class/net/xenbr0/brif`; with the guest at
    /// `ip=169.254.100.2/24`, `$PEER wait-up 169.254.100.2:80 --timeout 60`.
    #[arg(long, value_name = "FILE", requires = "domu")]
    pub dom0_script: Option<PathBuf>,
    /// With --domu: carry FILE into the box's dom0 as the dom0 script's $PEER in place of
    /// xenpv-run's own test client (a client of your own, or another build of
    /// tools/xenbox-peer). Also taken from the environment (XENPV_RUN_PEER), so `cargo
    /// run` can pass it.
    #[arg(long, value_name = "FILE", env = "XENPV_RUN_PEER")]
    pub peer: Option<PathBuf>,
    /// With --domu: give the domU the raw image FILE as a block device (xen-blkback in the
    /// box's dom0), read-only with `,ro`; repeat for more, at most 4: xvda, xvdb, … in
    /// order. FILE is used in place (a writable disk's writes land in it). A dom0 script
    /// sees dom0's device for disk N as DISKN (e.g. DISK0=/dev/vdc).
    #[arg(
        long,
        value_name = "FILE[,ro]",
        requires = "domu",
        value_parser = xenbox::parse_disk
    )]
    pub disk: Vec<Disk>,
    /// With --domu: create the domU with libvirt (`virsh create` of a domain XML,
    /// libvirtd's libxl driver) instead of `xl create`: the box's libvirt variant, built
    /// on first use (about 50 MB more than the plain box). The dom0 script gets `virsh`
    /// (`virsh dominfo $DOMU_NAME`, `setmem`, `reboot`, `shutdown`) and the XML at
    /// /run/domu.xml. Not with --disk.
    #[arg(long, requires = "domu", conflicts_with = "disk")]
    pub libvirt: bool,
    /// With --domu: the dom0 script saves, restores or migrates the domU (`xl save`,
    /// `xl restore`, `xl migrate -s '' $DOMU_NAME 'xl migrate-receive'` to the same
    /// box): the box gets room for a second copy of the domU and boots Xen built with
    /// shadow paging (which a PV guest's live migration needs; Debian's hypervisor has
    /// none), built once from Debian's source package and cached (about 2 minutes).
    /// The box follows the domU to each new domain: `xenbox: domU NAME resumed: now
    /// domain N`.
    #[arg(long, requires = "domu")]
    pub migrate: bool,
}

impl BootArgs {
    /// Refuse files that are not there (the initrd, the dom0 script) and disks the box
    /// cannot take ([`xenbox::check_disks`]), naming the option.
    pub fn check(&self) -> Result<(), String> {
        for (opt, file) in [
            ("--initrd", &self.initrd),
            ("--dom0-script", &self.dom0_script),
            ("--peer", &self.peer),
        ] {
            if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                return Err(format!("{opt} {}: no such file", f.display()));
            }
        }
        xenbox::check_disks(&self.disk)
    }

    /// The toolstack that creates the domU in the box (`--libvirt` or xl).
    pub fn toolstack(&self) -> xenbox::Toolstack {
        if self.libvirt {
            xenbox::Toolstack::Libvirt
        } else {
            xenbox::Toolstack::Xl
        }
    }

    /// What the domU gets besides its kernel: `--net`'s interfaces and the dom0 script
    /// (the disks are [`BootArgs::disk`]).
    pub fn extras(&self) -> DomuExtras {
        DomuExtras {
            vifs: self.net.unwrap_or(0),
            dom0_script: self.dom0_script.clone(),
            migrate: self.migrate,
            room_mib: 0,
        }
    }

    /// What to show while the guest runs: with `--xen-log` Xen's lines too.
    pub fn stream(&self) -> Stream {
        if self.xen_log {
            Stream::All
        } else {
            Stream::Guest
        }
    }

    /// The initrd's size in whole MiB (0 without one), for the default memory.
    pub fn initrd_mib(&self) -> u64 {
        self.initrd
            .as_ref()
            .and_then(|p| p.metadata().ok())
            .map_or(0, |m| m.len() >> 20)
    }
}
