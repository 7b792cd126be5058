//! Network clients for the guest appliance (UDP/TCP echo on port 7, TCP discard on 9,
//! HTTP on 80), one module per subcommand, and what they share: the overall deadline
//! every socket operation is bounded by, `HOST:PORT` handling, and I/O error naming.
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::args::{bad, Usage};
use crate::verdict::Verdict;

pub mod echo_hold;
pub mod frag_flood;
pub mod http_body;
pub mod http_get;
pub mod rtt_under_load;
pub mod tcp_echo;
pub mod tcp_hold;
pub mod tcp_send;
pub mod udp_echo;
pub mod udp_poll;
pub mod udp_rate;
pub mod wait_up;

/// The instant a whole subcommand must be over by (its `--timeout`).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    start: Instant,
    end: Instant,
}

impl Deadline {
    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            end: start + d,
        }
    }

    /// Time since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether it has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    /// The time left, at most `cap` and at least 1 ms (a socket timeout may not be zero),
    /// or a `TimedOut` error once the deadline has passed.
    pub fn left(&self, cap: Option<Duration>) -> io::Result<Duration> {
        let now = Instant::now();
        if now >= self.end {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the overall --timeout passed",
            ));
        }
        let d = (self.end - now).min(cap.unwrap_or(Duration::MAX));
        Ok(d.max(Duration::from_millis(1)))
    }
}

/// Check that `s` looks like `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
pub fn check_addr(s: &str) -> Result<(), Usage> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(())
        }
        _ => bad(format!("HOST:PORT: expected e.g. 10.0.0.2:7, got {s:?}")),
    }
}

/// Resolve `HOST:PORT` to its first address, within the deadline (a name lookup runs in
/// a thread of its own, as the resolver takes no timeout).
pub fn resolve(s: &str, d: &Deadline) -> io::Result<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = s.to_string();
    std::thread::spawn(move || {
        let r = name.to_socket_addrs().and_then(|mut a| {
            a.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{name}: no address"))
            })
        });
        let _ = tx.send(r);
    });
    rx.recv_timeout(d.left(None)?).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{s}: name lookup did not finish before the overall --timeout"),
        ))
    })
}

/// Connect to `addr` within the deadline (and at most `cap`), with Nagle off.
pub fn connect(addr: &SocketAddr, d: &Deadline, cap: Option<Duration>) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(addr, d.left(cap)?)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A `sockaddr_in` for `a`.
fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Connect to `addr` from the local address `from` (dom0 may hold several on the box's
/// bridge: a client that must not count as the same peer as others uses another one),
/// within the deadline (and at most `cap`), with Nagle off. IPv4 only; `None` is
/// [`connect`].
pub fn connect_from(
    addr: &SocketAddr,
    from: Option<IpAddr>,
    d: &Deadline,
    cap: Option<Duration>,
) -> io::Result<TcpStream> {
    let Some(from) = from else {
        return connect(addr, d, cap);
    };
    let (SocketAddr::V4(to), IpAddr::V4(src)) = (addr, from) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a source address is IPv4 only",
        ));
    };
    let wait = d.left(cap)?;
    // SAFETY: a plain system call with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket just made and owned by nothing else; dropping closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr_in(SocketAddrV4::new(src, 0));
    // SAFETY: `local` is a sockaddr_in of `len` bytes that lives across the call.
    let r = unsafe { libc::bind(fd, (&raw const local).cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sockaddr_in(*to);
    // SAFETY: as for bind.
    let r = unsafe { libc::connect(fd, (&raw const remote).cast(), len) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect: no answer for {} ms", wait.as_millis()),
                ));
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: `p` is one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&raw mut p, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n > 0 {
                break;
            }
        }
        let mut err: libc::c_int = 0;
        let mut elen = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `elen` are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &raw mut elen,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
    }
    debug_assert_eq!(owned.as_raw_fd(), fd);
    let s = TcpStream::from(owned);
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One `read` from `s`, waiting at most until the deadline (and at most `cap`).
pub fn read(
    s: &TcpStream,
    buf: &mut [u8],
    d: &Deadline,
    cap: Option<Duration>,
) -> io::Result<usize> {
    let wait = d.left(cap)?;
    s.set_read_timeout(Some(wait))?;
    loop {
        match (&mut &*s).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(timed_out(d, "nothing to read", wait)),
            r => return r,
        }
    }
}

/// The error for a socket timeout of `wait` while `what`.
fn timed_out(d: &Deadline, what: &str, wait: Duration) -> io::Error {
    let msg = if d.expired() {
        format!("{what} when the overall --timeout passed")
    } else {
        format!("{what} for {} ms", wait.as_millis())
    };
    io::Error::new(io::ErrorKind::TimedOut, msg)
}

/// Write all of `buf` to `s` before the deadline.
pub fn write_all(s: &TcpStream, mut buf: &[u8], d: &Deadline) -> io::Result<()> {
    while !buf.is_empty() {
        let wait = d.left(None)?;
        s.set_write_timeout(Some(wait))?;
        match (&mut &*s).write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timed_out(d, "could not write", wait)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After the expected bytes: shut our side down and wait (at most `cap`) for the peer to
/// close. Returns how many further bytes it sent (which no protocol here allows).
pub fn extra_bytes(s: &TcpStream, d: &Deadline, cap: Duration) -> u64 {
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = [0u8; 4096];
    let mut extra = 0;
    while let Ok(n @ 1..) = read(s, &mut buf, d, Some(cap)) {
        extra += n as u64;
    }
    extra
}

/// Whether `e` is a socket timeout (or the overall deadline passing).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A one-word failure reason for `e`.
pub fn reason(e: &io::Error) -> &'static str {
    match e.kind() {
        _ if is_timeout(e) => "timeout",
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => "reset",
        io::ErrorKind::BrokenPipe => "broken-pipe",
        io::ErrorKind::UnexpectedEof => "eof",
        _ => "io",
    }
}

/// Fail `v` for the I/O error `e` during `phase` (e.g. `connect`).
pub fn fail_io(v: &mut Verdict, phase: &str, e: &io::Error) {
    v.fail(reason(e));
    v.kv("phase", phase);
    v.kv("error", e);
}

/// Resolve `addr` and open a UDP socket connected to it (so that only its replies are
/// received, and ICMP errors surface as `ConnectionRefused`).
pub fn udp_connect(addr: &str, d: &Deadline) -> io::Result<UdpSocket> {
    let to = resolve(addr, d)?;
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(any)?;
    s.connect(to)?;
    Ok(s)
}

/// Send one datagram on a connected socket. A pending ICMP error from an earlier
/// datagram makes `send` fail without sending; try again (at most a few times).
pub fn udp_send(s: &UdpSocket, buf: &[u8], d: &Deadline) -> io::Result<()> {
    let mut tries = 0;
    loop {
        s.set_write_timeout(Some(d.left(None)?))?;
        match s.send(buf) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                std::thread::sleep(Duration::from_millis(1).min(d.left(None)?));
            }
            Err(e)
                if tries < 4
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
                    ) =>
            {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Receive one datagram, waiting until `until` at the latest (and not past the deadline).
/// `Ok(None)`: nothing came in time.
pub fn udp_recv(
    s: &UdpSocket,
    buf: &mut [u8],
    until: Instant,
    d: &Deadline,
) -> io::Result<Option<usize>> {
    let wait = d.left(Some(until.saturating_duration_since(Instant::now())))?;
    s.set_read_timeout(Some(wait))?;
    match s.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

/// `bytes` over `d` in Mbit/s, formatted with two decimals.
pub fn mbit_s(bytes: u64, d: Duration) -> String {
    format!(
        "{:.2}",
        bytes as f64 * 8.0 / d.as_secs_f64().max(1e-9) / 1e6
    )
}

/// `n` events over `d` per second, formatted with one decimal.
pub fn per_s(n: u64, d: Duration) -> String {
    format!("{:.1}", n as f64 / d.as_secs_f64().max(1e-9))
}

/// Whole milliseconds of `d`.
pub fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
pub mod testsrv;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(check_addr("10.0.0.2:7").is_ok());
        assert!(check_addr("[::1]:80").is_ok());
        assert!(check_addr("guest:80").is_ok());
        for bad in ["10.0.0.2", ":7", "h:0", "h:x", "h:70000", ""] {
            assert!(
                matches!(check_addr(bad), Err(Usage::Bad(m)) if m.starts_with("HOST:PORT")),
                "{bad}"
            );
        }
        let d = Deadline::after(Duration::from_secs(5));
        assert_eq!(resolve("127.0.0.1:7", &d).unwrap().port(), 7);
        assert_eq!(resolve("localhost:8", &d).unwrap().port(), 8);
    }

    #[test]
    fn deadline() {
        let d = Deadline::after(Duration::from_millis(50));
        assert!(d.left(Some(Duration::from_millis(5))).unwrap() <= Duration::from_millis(5));
        assert!(!d.expired());
        std::thread::sleep(Duration::from_millis(60));
        assert!(d.expired());
        assert!(is_timeout(&d.left(None).unwrap_err()));
    }

    #[test]
    fn rates() {
        assert_eq!(mbit_s(1_000_000, Duration::from_secs(8)), "1.00");
        assert_eq!(per_s(10, Duration::from_millis(500)), "20.0");
    }
}
