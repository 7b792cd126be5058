//! QEMU's command line for a [`Boot`] in its [`Role`], one concern per function (the
//! machine, its memory, Xen's command line, Xen's modules, the box's drives, the domU's
//! disks), each returning its arguments, empty where the role has none.
use super::{initrd_arg, qemu_memory, Boot, Role, BASE_ARGS};
use crate::provision;
use crate::xenbox::{self, BoxImage, Disk};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The QEMU command for `b` in `role` (the box's payload disk written first).
pub(super) fn command(xen: &Path, b: &Boot, role: Role<'_>) -> Result<Command, String> {
    let payload = match &b.domu {
        Some(bx) => Some(write_payload(bx, b, role)?),
        None => None,
    };
    let initrd_bytes = b
        .initrd
        .as_ref()
        .and_then(|p| p.metadata().ok())
        .map_or(0, |m| m.len());
    // A domU to be saved or migrated: room for its second copy, the hypervisor with
    // shadow paging.
    let migrate = matches!(role, Role::Domu { extras, .. } if extras.migrate);
    let spare = if migrate { b.memory_mib } else { 0 };
    let room = match role {
        Role::Domu { extras, .. } => extras.room_mib,
        _ => 0,
    };
    let shadow = if migrate {
        Some(crate::xen_shadow::ensure()?)
    } else {
        None
    };
    let mut cmd = Command::new(provision::QEMU);
    cmd.args(BASE_ARGS)
        .arg("-kernel")
        .arg(shadow.as_deref().unwrap_or(xen))
        .args(memory_args(b, initrd_bytes, spare, room))
        .args(xen_args(b, initrd_bytes, spare))
        .args(module_args(b))
        .args(box_drive_args(b, payload.as_deref()))
        .args(disk_args(role.disks()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// dom0's memory in MiB: the guest's as dom0; in the box, the box's dom0's, with room for
/// a copy of the ramdisk until xl has loaded it into the domU, and `spare_mib` more (a
/// domU to be saved: `xl save` writes its image to dom0's `/run`, a tmpfs).
fn dom0_mib(b: &Boot, initrd_bytes: u64, spare_mib: u64) -> u64 {
    match b.domu {
        None => b.memory_mib,
        Some(_) => xenbox::DOM0_MIB + initrd_bytes.div_ceil(1 << 20) + spare_mib,
    }
}

/// The machine's memory: the guest's and its initrd's as dom0 ([`qemu_memory`]); the
/// box's dom0's plus the domU's, and headroom, in the box; with `spare_mib` (a domU to
/// be saved or migrated) that much more for dom0 and again for Xen, where a migration's
/// receiving domain is built while the sender still runs; with `room_mib` (domUs a dom0
/// script creates itself) that much more for Xen.
pub(super) fn memory_args(
    b: &Boot,
    initrd_bytes: u64,
    spare_mib: u64,
    room_mib: u64,
) -> [String; 2] {
    let mib = match b.domu {
        None => qemu_memory(b.memory_mib, initrd_bytes),
        Some(_) => dom0_mib(b, initrd_bytes, spare_mib) + b.memory_mib + spare_mib + room_mib + 384,
    };
    ["-m".into(), mib.to_string()]
}

/// Xen's command line: its console on the serial line, everything logged, dom0's memory.
pub(super) fn xen_args(b: &Boot, initrd_bytes: u64, spare_mib: u64) -> [String; 2] {
    let mib = dom0_mib(b, initrd_bytes, spare_mib);
    [
        "-append".into(),
        format!(
            "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem={mib}M,max:{mib}M dom0_max_vcpus=1 smap=0"
        ),
    ]
}

/// Xen's modules (QEMU's `-initrd`): as dom0 the kernel, its command line with
/// ` qemu-exit` (so the runtime leaves through QEMU's exit device) and its ramdisk; in the
/// box the box's kernel and initramfs.
pub(super) fn module_args(b: &Boot) -> [String; 2] {
    let modules = match &b.domu {
        None => {
            let cmdline = format!("{} qemu-exit", b.cmdline.trim());
            initrd_arg(&b.image, &cmdline, b.initrd.as_deref())
        }
        Some(bx) => format!(
            "{} console=hvc0 earlyprintk=xen quiet,{}",
            bx.vmlinuz.display(),
            bx.initramfs.display()
        ),
    };
    ["-initrd".into(), modules]
}

/// The box's read-only drives: the payload disk (dom0's `/dev/vda`) and the domU's
/// ramdisk, if any (`/dev/vdb`, the file itself); none as dom0.
pub(super) fn box_drive_args(b: &Boot, payload: Option<&Path>) -> Vec<String> {
    let Some(payload) = payload else {
        return vec![];
    };
    let drive = |p: &Path| format!("file={},format=raw,if=virtio,readonly=on", p.display());
    let mut args = vec!["-drive".into(), drive(payload)];
    if let Some(r) = &b.initrd {
        args.extend(["-drive".into(), drive(r)]);
    }
    args
}

/// QEMU's arguments for the domU's disks in the box: per disk `i`, a drive of its own
/// (`-drive if=none,id=xenpv-diskI,file=…,format=raw[,readonly=on]`) on a virtio-blk PCI
/// device with serial [`crate::xenbox::disk_serial`]`(i)` at slot
/// [`crate::xenbox::DISK_PCI_SLOT`]` + i` (commas in the file name doubled, as QEMU wants).
pub fn disk_args(disks: &[Disk]) -> Vec<String> {
    let mut args = vec![];
    for (i, d) in disks.iter().enumerate() {
        let id = xenbox::disk_serial(i);
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
            xenbox::DISK_PCI_SLOT + i
        ));
    }
    args
}

/// Write the box's payload disk for `b` in `role` next to [`Boot::log`]; the domU's
/// status travels in its console's exit line, not an exit device.
fn write_payload(bx: &BoxImage, b: &Boot, role: Role<'_>) -> Result<PathBuf, String> {
    let path = b.log.with_extension("payload");
    let (bench, extras) = match role {
        Role::Dom0 => unreachable!("checked: dom0 has no box"),
        Role::Bench(m) => (Some(m), None),
        Role::Domu { extras, .. } => (None, Some(extras)),
    };
    xenbox::Payload {
        name: b.name.as_str(),
        kernel: &b.image,
        peer: bx.peer.as_deref(),
        cmdline: b.cmdline.trim(),
        memory_mib: b.memory_mib,
        timeout_s: b.timeout.as_secs(),
        bench,
        vifs: extras.map_or(0, |e| e.vifs),
        dom0_script: extras.and_then(|e| e.dom0_script.as_deref()),
        disks: role.disks(),
        toolstack: bx.toolstack,
        migrate: extras.is_some_and(|e| e.migrate),
    }
    .write(&path)?;
    Ok(path)
}
