//! `xenbox-peer DOMID REF FNV`: run in the box's dom0, map grant REF of domain DOMID
//! read-only through Linux's gntdev (as a backend driver would), and check its 4096
//! bytes against the FNV-1a hash the domU published. Prints one `peer:` line; exit 0
//! only if the bytes match.
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

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

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    std::process::exit(match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            println!("peer: {e}");
            2
        }
    })
}

fn run() -> Result<bool, String> {
    let a: Vec<String> = std::env::args().collect();
    let [_, domid, gref, want] = &a[..] else {
        return Err("usage: xenbox-peer DOMID REF FNV".into());
    };
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
    let got = fnv(&bytes);
    println!(
        "peer: mapped grant {gref} of domain {domid}: 4096 bytes fnv={got:016x} expected={want:016x} match={}",
        if got == want { "yes" } else { "NO" }
    );
    Ok(got == want)
}
