//! `xenbox-peer [grant] DOMID REF FNV`: map grant REF of domain DOMID read-only through
//! Linux's gntdev (as a backend driver would) and check its 4096 bytes against the FNV-1a
//! hash the domU published. Prints one `peer: mapped grant ...` line; exit 0 only if the
//! bytes match, 1 if they differ, 2 on a bad argument or a failed mapping (`peer: <why>`).
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use crate::data::{fnv1a64, FNV_OFFSET};

/// The synopsis, for the program's help.
pub const SYNOPSIS: &str = "xenbox-peer [grant] DOMID REF FNV";

const HELP: &str = "usage: xenbox-peer [grant] DOMID REF FNV

Map grant reference REF of domain DOMID read-only through /dev/xen/gntdev and check its
4096 bytes against FNV (FNV-1a 64, hex). Prints one line,
  peer: mapped grant REF of domain DOMID: 4096 bytes fnv=<got> expected=<FNV> match=yes|NO
and exits 0 if the bytes match, 1 if not, 2 on a bad argument or a failed mapping.
";

/// `IOCTL_GNTDEV_MAP_GRANT_REF` = _IOC(_IOC_NONE, 'G', 0, 24) (linux/gntdev.h).
const MAP: libc::c_ulong = (24 << 16) | ((b'G' as libc::c_ulong) << 8);
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF` = _IOC(_IOC_NONE, 'G', 1, 16).
const UNMAP: libc::c_ulong = (16 << 16) | ((b'G' as libc::c_ulong) << 8) | 1;

#[repr(C)]
struct MapGrantRef {
    count: u32,
    pad: u32,
    index: u64,
    domid: u32,
    gref: u32,
}

#[repr(C)]
struct UnmapGrantRef {
    index: u64,
    count: u32,
    pad: u32,
}

/// `xenbox-peer grant ARGS...`: the subcommand form (also takes `--help`).
pub fn main(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return 0;
    }
    exit_code(match args {
        [domid, gref, want] => run(domid, gref, want),
        _ => Err("usage: xenbox-peer grant DOMID REF FNV".into()),
    })
}

/// `xenbox-peer DOMID REF FNV`: the original form, as the box's init script calls it.
pub fn legacy(args: &[String]) -> i32 {
    exit_code(match args {
        [domid, gref, want] => run(domid, gref, want),
        _ => Err("usage: xenbox-peer DOMID REF FNV".into()),
    })
}

fn exit_code(r: Result<bool, String>) -> i32 {
    match r {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            println!("peer: {e}");
            2
        }
    }
}

fn run(domid: &str, gref: &str, want: &str) -> Result<bool, String> {
    let num = |s: &str, what| {
        s.trim()
            .parse::<u32>()
            .map_err(|e| format!("{what} {s:?}: {e}"))
    };
    let (domid, gref) = (num(domid, "domid")?, num(gref, "grant ref")?);
    let want = u64::from_str_radix(want.trim(), 16).map_err(|e| format!("fnv {want:?}: {e}"))?;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/gntdev")
        .map_err(|e| format!("/dev/xen/gntdev: {e}"))?;
    let mut m = MapGrantRef {
        count: 1,
        pad: 0,
        index: 0,
        domid,
        gref,
    };
    // SAFETY: the ioctl reads and writes one MapGrantRef, which lives across the call.
    if unsafe { libc::ioctl(dev.as_raw_fd(), MAP, &mut m) } != 0 {
        return Err(format!(
            "gntdev map of ref {gref} of domain {domid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: gntdev hands out the grant at offset `index` of the device; one page,
    // read-only (the grant is read-only); unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            dev.as_raw_fd(),
            m.index as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of the grant: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `p` maps 4096 readable bytes until munmap.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, 4096) }.to_vec();
    // SAFETY: unmapping what mmap returned; the ioctl reads one UnmapGrantRef.
    unsafe {
        libc::munmap(p, 4096);
        let mut u = UnmapGrantRef {
            index: m.index,
            count: 1,
            pad: 0,
        };
        libc::ioctl(dev.as_raw_fd(), UNMAP, &mut u);
    }
    let got = fnv1a64(FNV_OFFSET, &bytes);
    println!(
        "peer: mapped grant {gref} of domain {domid}: 4096 bytes fnv={got:016x} expected={want:016x} match={}",
        if got == want { "yes" } else { "NO" }
    );
    Ok(got == want)
}
