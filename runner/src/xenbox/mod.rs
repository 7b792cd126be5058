//! A Xen host in a box: Debian's Linux as PV dom0 with Xen's toolstack (xl, xenstored,
//! xenconsoled) in an initramfs, inside QEMU, so a kernel also boots as a real domU.
//!
//! Built from the pinned packages of `runner/xenbox/packages.lock` (apt-get download +
//! dpkg -x, nothing installed) and the init script `runner/xenbox/init.sh`, both compiled
//! into the runner; cached under `xenbox/<key>/` in [`crate::cache_dir`], where the key
//! hashes the lock, the init script and this builder's layout: with nothing changed,
//! [`ensure`] is a no-op. Per run, the payload travels on two read-only virtio disks:
//! `/dev/vda` = a text header (name, memory, command line, time limit; in bench mode also
//! `bench=1`, `runs=`, `run_timeout=`: see [`BenchMode`]), the kernel and the
//! [`BoxImage::peer`] program if any (see [`Payload`]), `/dev/vdb` = the ramdisk, if any
//! (the file itself, not copied). The domU's disks ([`Disk`], `--disk`) follow as virtio
//! drives of their own, found in dom0 by their serial ([`disk_serial`]).
//!
//! The modules, in the order a run uses them:
//! - `image`: the box itself, packages fetched and unpacked, the initramfs laid out
//!   ([`ensure`], [`ensure_for`]);
//! - `libvirt`: the box's libvirt variant, libvirtd and virsh on board ([`Toolstack`]);
//! - `cpio`: the archives it and the Linux guests are made of ([`write_cpio`]);
//! - `devices`: what a domU gets besides its kernel, vifs and disks ([`DomuExtras`],
//!   [`Disk`]);
//! - `payload`: the per-run disk the box's init reads ([`Payload`]);
//! - `linux_guest`: Linux domUs for the benches ([`netserve_initramfs`], …);
//! - `bench`: the box's bench mode read back from its console ([`bench_runs`]).
mod bench;
mod cpio;
mod devices;
mod image;
mod libvirt;
mod linux_guest;
mod payload;

pub use bench::{bench_runs, BenchRun};
pub use cpio::{cpio_file, write_cpio, Entry};
pub use devices::{
    check_disks, disk_config, disk_serial, disk_vdev, disks_key, parse_disk, parse_vifs,
    vif_config, vif_mac, Disk, DomuExtras, BRIDGE, DISK_PCI_SLOT, DOM0_ADDR, MAX_DISKS, MAX_VIFS,
};
pub use image::{box_kernel_module, ensure, ensure_for, modinfo_depends, pins, section_pins};
pub use libvirt::{dt_needed, Toolstack};
pub use linux_guest::{
    blkbench_initramfs, linux_initramfs, netserve_initramfs, poweroff_initramfs, BLKBENCH_INIT,
    INIT_MOUNTS, NETSERVE_INIT, POWEROFF_INIT,
};
pub use payload::{payload, BenchMode, Payload};

use std::path::PathBuf;

/// dom0's memory in the box, in MiB (QEMU gets it on top of the domU's).
pub const DOM0_MIB: u64 = 512;

/// The box: dom0's kernel and initramfs.
pub struct BoxImage {
    /// Debian's Linux kernel, booted as the PV dom0.
    pub vmlinuz: PathBuf,
    /// The initramfs: Xen's toolstack, busybox and the init script.
    pub initramfs: PathBuf,
    /// A dom0-side program the init script runs when the domU publishes a grant (the
    /// xenpv-rt repository's grant test), carried on the payload disk; `None` for none.
    pub peer: Option<PathBuf>,
    /// Which toolstack creates the domU: the plain box's `xl`, or the libvirt variant's
    /// `virsh` (its payloads say `toolstack=libvirt`).
    pub toolstack: Toolstack,
}
