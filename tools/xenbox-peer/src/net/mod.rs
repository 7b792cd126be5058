//! Network clients for the guest appliance (UDP/TCP echo on port 7, TCP discard on 9,
//! HTTP on 80), one module per subcommand, and what they share: the overall deadline
//! every socket operation is bounded by, `HOST:PORT` handling, and I/O error naming.
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use crate::args::{bad, Usage};
use crate::verdict::Verdict;

pub mod http_get;
pub mod tcp_echo;
pub mod tcp_send;
pub mod udp_echo;
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
