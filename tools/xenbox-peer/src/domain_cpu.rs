//! `domain-cpu DOMID`: the CPU time Xen has charged to a domain so far, in nanoseconds
//! (`XEN_DOMCTL_getdomaininfo`'s `cpu_time`, through `/dev/xen/privcmd`). `xl list`
//! shows the same figure rounded to a tenth of a second, too coarse for a measurement
//! that lasts a second; benchmarks read it before and after and take the difference.
//!
//! The request is built and the answer read by pure functions ([`request`],
//! [`cpu_time`]), tested on the host; only the ioctl touches the hypervisor. Xen's
//! answer is checked: a domain id other than the one asked for (4.17 answers the next
//! domain when the one asked for is gone) is an error, never a figure of another domain.
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use crate::args::{Parsed, Spec, Usage};
use crate::verdict::Verdict;

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "domain-cpu",
    args: &["DOMID"],
    about: "Print the CPU time Xen has charged to domain DOMID so far (cpu_ns, nanoseconds, from\n\
            XEN_DOMCTL_getdomaininfo through /dev/xen/privcmd; run as root in dom0). Fails if the\n\
            domain does not exist or the hypervisor's domctl interface is not the one known here.",
    opts: &[],
};

/// `__HYPERVISOR_domctl`.
const HYPERVISOR_DOMCTL: u64 = 36;
/// `XEN_DOMCTL_getdomaininfo`.
const GETDOMAININFO: u32 = 5;
/// The domctl interface this layout is for (Xen 4.17's `XEN_DOMCTL_INTERFACE_VERSION`);
/// Xen refuses any other with `EACCES`, so a different Xen fails loudly, not wrongly.
const INTERFACE_VERSION: u32 = 0x15;
/// `struct xen_domctl`: cmd, interface_version, domain, 3 u16 of padding, then a
/// 128-byte union.
const DOMCTL_LEN: usize = 16 + 128;
/// Offsets in it of `getdomaininfo.domain` and `getdomaininfo.cpu_time` (the union at 16;
/// domain, pad, flags, then seven u64: tot, max, outstanding, shr, paged pages,
/// shared_info_frame, cpu_time).
const INFO_DOMAIN: usize = 16;
const INFO_CPU_TIME: usize = 16 + 8 + 6 * 8;

/// `IOCTL_PRIVCMD_HYPERCALL` = _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall)).
const PRIVCMD_HYPERCALL: libc::c_ulong = (48 << 16) | ((b'P' as libc::c_ulong) << 8);

/// `struct privcmd_hypercall`.
#[repr(C)]
struct Hypercall {
    op: u64,
    arg: [u64; 5],
}

/// The domctl buffer, page-aligned so it sits in one page the hypervisor copies from.
#[repr(C, align(4096))]
struct Buffer([u8; DOMCTL_LEN]);

/// The `XEN_DOMCTL_getdomaininfo` request for `domid`.
pub fn request(domid: u16) -> [u8; DOMCTL_LEN] {
    let mut b = [0u8; DOMCTL_LEN];
    b[0..4].copy_from_slice(&GETDOMAININFO.to_le_bytes());
    b[4..8].copy_from_slice(&INTERFACE_VERSION.to_le_bytes());
    b[8..10].copy_from_slice(&domid.to_le_bytes());
    b
}

/// The CPU time in Xen's answer `b` to [`request`]`(domid)`, or why there is none.
pub fn cpu_time(b: &[u8; DOMCTL_LEN], domid: u16) -> Result<u64, String> {
    let got = u16::from_le_bytes([b[INFO_DOMAIN], b[INFO_DOMAIN + 1]]);
    if got != domid {
        return Err(format!(
            "domain {domid} does not exist (Xen answered for domain {got})"
        ));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[INFO_CPU_TIME..INFO_CPU_TIME + 8]);
    Ok(u64::from_le_bytes(t))
}

/// Ask Xen for domain `domid`'s info.
fn getdomaininfo(domid: u16) -> Result<[u8; DOMCTL_LEN], String> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/privcmd")
        .map_err(|e| format!("/dev/xen/privcmd: {e}"))?;
    let mut buf = Box::new(Buffer(request(domid)));
    let p = buf.0.as_mut_ptr();
    // SAFETY: locks the pages of `buf`, which lives until after the hypercall; Xen
    // copies the domctl from and back to them, so they must be present (as libxencall's
    // fallback buffers are).
    if unsafe { libc::mlock(p.cast(), DOMCTL_LEN) } != 0 {
        return Err(format!("mlock: {}", std::io::Error::last_os_error()));
    }
    let mut h = Hypercall {
        op: HYPERVISOR_DOMCTL,
        arg: [p as u64, 0, 0, 0, 0],
    };
    // SAFETY: the ioctl reads one Hypercall; the domctl it points at is `buf`, valid and
    // locked for DOMCTL_LEN bytes, which is all Xen reads or writes for this command.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), PRIVCMD_HYPERCALL, &mut h) };
    let err = std::io::Error::last_os_error();
    // SAFETY: unlocks what was locked above.
    unsafe { libc::munlock(p.cast(), DOMCTL_LEN) };
    if r < 0 {
        return Err(format!(
            "XEN_DOMCTL_getdomaininfo for domain {domid} (interface {INTERFACE_VERSION:#x}): {err}"
        ));
    }
    Ok(buf.0)
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let raw = &p.pos[0];
    let domid: u16 = match raw.trim().parse() {
        Ok(d) if d < 0x7ff0 => d,
        _ => return crate::args::bad(format!("DOMID: {raw:?} is not a domain id (0..=32751)")),
    };
    let mut v = Verdict::new(SPEC.name);
    v.kv("domid", domid);
    match getdomaininfo(domid).and_then(|b| cpu_time(&b, domid)) {
        Ok(ns) => v.kv("cpu_ns", ns),
        Err(e) => {
            v.fail("no-figure");
            v.kv("why", e);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Xen's answer for `domid` with `cpu_time`, other fields noise.
    fn answer(domid: u16, cpu: u64) -> [u8; DOMCTL_LEN] {
        let mut b = [0xa5u8; DOMCTL_LEN];
        b[..16].copy_from_slice(&request(domid)[..16]);
        b[16..18].copy_from_slice(&domid.to_le_bytes());
        b[72..80].copy_from_slice(&cpu.to_le_bytes());
        b
    }

    #[test]
    fn the_request_names_the_command_the_interface_and_the_domain() {
        let r = request(7);
        assert_eq!(&r[..12], &[5, 0, 0, 0, 0x15, 0, 0, 0, 7, 0, 0, 0]);
        assert!(r[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_cpu_time_is_read_at_its_offset() {
        assert_eq!(
            cpu_time(&answer(3, 1_234_567_890_123), 3),
            Ok(1_234_567_890_123)
        );
    }

    #[test]
    fn an_answer_for_another_domain_is_refused() {
        // The domain asked for is gone: 4.17 answers for the next one.
        let e = cpu_time(&answer(9, 5), 4).unwrap_err();
        assert_eq!(e, "domain 4 does not exist (Xen answered for domain 9)");
    }

    #[test]
    fn a_bad_domid_is_a_usage_error() {
        let args = ["32752".to_string()];
        let p = crate::args::parse(&SPEC, &args).expect("parsed");
        assert!(matches!(run(&p), Err(Usage::Bad(m)) if m.contains("32752")));
    }
}
