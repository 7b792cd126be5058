//! `frag-flood HOST`: a stream of IPv4 fragments that never complete a datagram (each
//! has More Fragments set and no final fragment follows), many distinct ids, at a bounded
//! rate, through a raw socket (`IPPROTO_RAW`, which implies `IP_HDRINCL`; root only).
//! A receiver that reassembles must give up on them (and count it) without running out
//! of memory or time.
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{fail_io, millis, per_s, resolve, sockaddr_in, Deadline};
use crate::args::{bad, Opt, Parsed, Spec, Usage, TIMEOUT};
use crate::verdict::Verdict;

/// The subcommand.
pub static SPEC: Spec = Spec {
    name: "frag-flood",
    args: &["HOST"],
    about: "For --seconds, send IPv4 fragments of UDP datagrams to HOST (port --port) that never\n\
            complete: datagram ids count up from --first-id (wrapping, never 0); an even id gets\n\
            its first fragment (offset 0, with the UDP header, More Fragments set), an odd one\n\
            a middle fragment (offset --size, More Fragments set); no last fragment is ever\n\
            sent. Each fragment carries --size bytes of IP payload (a multiple of 8), at most\n\
            --rate fragments a second. Needs a raw socket (root). Reports sent, ids, elapsed_ms,\n\
            pps and send errors (ENOBUFS waits are counted as nobufs).\n\
            PASS iff fragments were sent for the whole --seconds without a send error.",
    opts: &[
        Opt::val("seconds", "SECS", "10", "how long to send"),
        Opt::val("rate", "PPS", "1000", "fragments a second at most"),
        Opt::val(
            "size",
            "B",
            "1480",
            "IP payload bytes per fragment (a multiple of 8, at most 1480)",
        ),
        Opt::val("port", "PORT", "7", "the UDP destination port"),
        Opt::val("first-id", "ID", "1", "the first datagram id"),
        TIMEOUT,
    ],
};

/// One fragment: a 20-byte IPv4 header (checksum, total length and, when zero, the
/// source filled in by the kernel) and `size` bytes of payload.
fn fragment(dst: Ipv4Addr, id: u16, size: usize, port: u16) -> Vec<u8> {
    let mut p = vec![0u8; 20 + size];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + size) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    // More Fragments; an odd id's fragment starts after the first one's payload.
    let offset_units = if id.is_multiple_of(2) {
        0
    } else {
        (size / 8) as u16
    };
    p[6..8].copy_from_slice(&(0x2000 | offset_units).to_be_bytes());
    p[8] = 64;
    p[9] = libc::IPPROTO_UDP as u8;
    p[16..20].copy_from_slice(&dst.octets());
    if offset_units == 0 {
        // The UDP header of a datagram three fragments long (length field only; the
        // checksum is not used: 0).
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&port.to_be_bytes());
        p[24..26].copy_from_slice(&((3 * size) as u16).to_be_bytes());
    }
    for (i, b) in p[28.min(20 + size)..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ (id as u8);
    }
    p
}

/// A raw IPv4 socket whose packets carry their own header.
fn raw_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket just made and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Send one packet to `dst`.
fn send_to(fd: &OwnedFd, pkt: &[u8], dst: Ipv4Addr) -> io::Result<()> {
    let to = sockaddr_in(SocketAddrV4::new(dst, 0));
    // SAFETY: `pkt` and `to` are valid for reads of the lengths given during the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Run it.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let host = p.pos[0].clone();
    let secs = p.secs("seconds")?;
    let rate = p.u64_in("rate", 1, 1_000_000)?;
    let size = p.u64_in("size", 8, 1480)? as usize;
    if !size.is_multiple_of(8) {
        return bad(format!("--size: {size} is not a multiple of 8"));
    }
    let port = p.u64_in("port", 1, 65535)? as u16;
    let first = p.u64_in("first-id", 0, 65535)?;
    let d = Deadline::after(p.timeout()?);
    let mut v = Verdict::new(SPEC.name);
    let dst = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a,
        Ok(IpAddr::V6(_)) => return bad("HOST: IPv4 only"),
        Err(_) => match resolve(&format!("{host}:{port}"), &d) {
            Ok(std::net::SocketAddr::V4(a)) => *a.ip(),
            Ok(_) => return bad("HOST: IPv4 only"),
            Err(e) => {
                fail_io(&mut v, "resolve", &e);
                return Ok(v);
            }
        },
    };
    let fd = match raw_socket() {
        Ok(fd) => fd,
        Err(e) => {
            fail_io(&mut v, "socket", &e);
            return Ok(v);
        }
    };
    let start = Instant::now();
    let (mut sent, mut nobufs) = (0u64, 0u64);
    let mut id = first as u16;
    let mut error = None;
    while start.elapsed() < secs && !d.expired() {
        // Paced: fragment `sent` is due at start + sent / rate.
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(nap) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(nap);
            continue;
        }
        if id == 0 {
            id = 1;
        }
        match send_to(&fd, &fragment(dst, id, size, port), dst) {
            Ok(()) => {
                sent += 1;
                id = id.wrapping_add(1);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                nobufs += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = &error {
        fail_io(&mut v, "send", e);
    } else if elapsed < secs {
        v.fail("timeout");
    }
    v.kv("sent", sent);
    v.kv("ids", sent.min(65535));
    v.kv("size", size);
    v.kv("elapsed_ms", millis(elapsed));
    v.kv("pps", per_s(sent, elapsed));
    v.kv("nobufs", nobufs);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_incomplete_and_well_formed() {
        let dst = Ipv4Addr::new(169, 254, 100, 2);
        let f = fragment(dst, 2, 1480, 7);
        assert_eq!(f.len(), 1500);
        assert_eq!(f[0], 0x45);
        assert_eq!(u16::from_be_bytes([f[4], f[5]]), 2);
        // More Fragments, offset 0, protocol UDP, to dst, UDP port 7.
        assert_eq!(u16::from_be_bytes([f[6], f[7]]), 0x2000);
        assert_eq!(f[9], 17);
        assert_eq!(&f[16..20], &[169, 254, 100, 2]);
        assert_eq!(u16::from_be_bytes([f[22], f[23]]), 7);
        assert_eq!(u16::from_be_bytes([f[24], f[25]]), 3 * 1480);
        // An odd id: a middle fragment (MF, offset 1480 bytes = 185 units).
        let g = fragment(dst, 3, 1480, 7);
        assert_eq!(u16::from_be_bytes([g[6], g[7]]), 0x2000 | 185);
    }

    #[test]
    fn refuses_a_size_that_is_not_a_multiple_of_8() {
        let c = crate::command("frag-flood").unwrap();
        let args: Vec<String> = ["127.0.0.1", "--size", "100"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(matches!(
            crate::run_command(c, &args),
            Err(Usage::Bad(m)) if m.contains("multiple of 8")
        ));
    }
}
