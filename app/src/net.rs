//! The network appliance (command-line word `net`): on every vif, UDP and TCP echo on
//! port 7 (RFC 862), TCP discard on port 9 (RFC 863) and a minimal HTTP/1.1 server on
//! port 80 (`xenpv_appliance::http`), over smoltcp and netfront. Addresses from `ip=`
//! (one entry per vif: `A.B.C.D/P` or `dhcp`), vifs from `vifs=N`.
//!
//! It serves until the toolstack asks it to stop (`xl shutdown`: `control/shutdown`),
//! then prints its counters and exits 0. A backend that closes (`xl network-detach`) is
//! noticed through a xenstore watch: the vif is closed and its grants ended; when a
//! backend appears again (`xl network-attach`) the vif reconnects and serves again.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use xenpv_appliance::config::{parse_ips, Ip, MAX_VIFS};
use xenpv_appliance::http::{self, Body, Opened, Parse, Route};
use xenpv_rt::blk::ext4::ext4_view::{Ext4, File};
use xenpv_rt::blk::ext4::read_exact_at;
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::net::netfront::{
    CloseStep, ClosingNetfront, ConnectStep, Netfront, PendingNetfront, CONNECT_NS,
};
use xenpv_rt::net::phy::now;
use xenpv_rt::net::phy::poll_delay_ns;
use xenpv_rt::net::smoltcp;
use xenpv_rt::time::now_ns;
use xenpv_rt::xenbus::State;
use xenpv_rt::xenstore::{Xenstore, XsError};
use xenpv_rt::{evtchn, println, Boot, PageLink};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// TCP sockets listening per service and vif (connections served at once).
const ECHO_CONNS: usize = 10;
const DISCARD_CONNS: usize = 4;
const HTTP_CONNS: usize = 10;
/// Socket buffers for the direction a service streams in (smoltcp scales the window;
/// under emulation a round trip is milliseconds, and throughput is window / RTT: with
/// GSO dom0 acknowledges about every 128 KiB, so a sender needs several times that
/// unacknowledged), for echo's two directions, and for the other direction.
const TCP_STREAM_BUF: usize = 1024 * 1024;
const TCP_ECHO_BUF: usize = 256 * 1024;
const TCP_SMALL_BUF: usize = 4 * 1024;
/// Longest wait between polls (backend and shutdown checks ride on xenstore's port).
const MAX_WAIT_NS: u64 = 100_000_000;
/// Longest time between two reads of xenstore's watch events.
const XS_CHECK_NS: u64 = 50_000_000;
/// How often a detached vif looks for a backend again.
const REATTACH_EVERY_NS: u64 = 500_000_000;

/// What the appliance counts (printed at the end, and on request).
#[derive(Default, Clone, Copy)]
struct Stats {
    udp_echoed: u64,
    udp_dropped: u64,
    tcp_echoed: u64,
    discarded: u64,
    http_requests: u64,
    http_bytes: u64,
    detached: u64,
    reattached: u64,
    file_errors: u64,
    /// Time spent waiting for an event or a timer, and how many waits.
    idle_ns: u64,
    waits: u64,
}

enum Service {
    Echo,
    Discard,
    Http(Box<HttpConn>),
}

/// One HTTP connection's progress.
#[derive(Default)]
struct HttpConn {
    head: Vec<u8>,
    /// The response being sent: its head's unsent bytes and the body's offset.
    out: Option<(http::Head, usize, Body, u64)>,
    /// The file a `GET /files/…` body is read from.
    file: Option<File>,
}

/// One vif: its device (when connected), interface and sockets.
struct Vif {
    index: u32,
    nic: Option<Box<Netfront>>,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    tcp: Vec<(SocketHandle, u16, Service)>,
    dhcp: Option<SocketHandle>,
    /// A DHCP address to publish in xenstore (`data/xenpv-app/vif<N>-ip`) for dom0.
    announce: Option<heapless::String<24>>,
    next_probe: u64,
    /// The filesystem `GET /files/…` serves (word `files`), shared by every vif.
    files: Option<Ext4>,
}

/// A TCP socket with `rx` and `tx` bytes of buffer.
fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    s.set_nagle_enabled(false);
    s
}

impl Vif {
    fn new(nic: Box<Netfront>, ip: Ip) -> Vif {
        let mut nic = nic;
        let mac = EthernetAddress(nic.mac());
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(mac)),
            &mut *nic,
            now(),
        );
        let mut sockets = SocketSet::new(vec![]);
        let mut dhcp = None;
        match ip {
            Ip::Static { addr, prefix } => iface.update_ip_addrs(|a| {
                let [x, y, z, w] = addr;
                let _ = a.push(IpCidr::new(IpAddress::v4(x, y, z, w), prefix));
            }),
            Ip::Dhcp => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
        }
        let udp = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1024]),
        ));
        let _ = sockets.get_mut::<udp::Socket<'_>>(udp).bind(7);
        let mut tcp = Vec::new();
        for (port, n) in [(7u16, ECHO_CONNS), (9, DISCARD_CONNS), (80, HTTP_CONNS)] {
            for _ in 0..n {
                let (big, small) = (TCP_STREAM_BUF, TCP_SMALL_BUF);
                let (rx, tx) = match port {
                    7 => (TCP_ECHO_BUF, TCP_ECHO_BUF),
                    9 => (big, small),
                    _ => (small, big),
                };
                let h = sockets.add(tcp_socket(rx, tx));
                let svc = match port {
                    7 => Service::Echo,
                    9 => Service::Discard,
                    _ => Service::Http(Box::default()),
                };
                tcp.push((h, port, svc));
            }
        }
        Vif {
            index: nic.index(),
            nic: Some(nic),
            iface,
            sockets,
            udp,
            tcp,
            dhcp,
            announce: None,
            next_probe: 0,
            files: None,
        }
    }

    /// One round: the device, the stack, every service.
    fn poll(&mut self, st: &mut Stats) {
        let Some(nic) = self.nic.as_deref_mut() else {
            return;
        };
        nic.poll();
        self.iface.poll(now(), nic, &mut self.sockets);
        if let Some(h) = self.dhcp {
            if let Some(ev) = self.sockets.get_mut::<dhcpv4::Socket<'_>>(h).poll() {
                self.announce = dhcp_event(self.index, &mut self.iface, ev);
            }
        }
        serve_udp(self.sockets.get_mut::<udp::Socket<'_>>(self.udp), st);
        for entry in self.tcp.iter_mut() {
            let (h, port, svc): (&SocketHandle, &u16, &mut Service) =
                (&entry.0, &entry.1, &mut entry.2);
            let s = self.sockets.get_mut::<tcp::Socket<'_>>(*h);
            if !s.is_open() {
                if let Service::Http(c) = svc {
                    **c = HttpConn::default();
                }
                let _ = s.listen(*port);
                continue;
            }
            // Listening, or still in the handshake: nothing to serve yet (and
            // `may_recv` is false there, which the services read as "the peer closed").
            if !s.is_active() || s.state() == tcp::State::SynReceived {
                continue;
            }
            match svc {
                Service::Echo => serve_echo(s, st),
                Service::Discard => serve_discard(s, st),
                Service::Http(c) => serve_http(s, c, st, self.files.as_ref()),
            }
        }
        // Send what the services queued now rather than at the next wake-up.
        self.iface.poll(now(), nic, &mut self.sockets);
    }

    fn delay_ns(&mut self) -> u64 {
        match self.nic.as_deref_mut() {
            Some(nic) => poll_delay_ns(&mut self.iface, &self.sockets, nic, MAX_WAIT_NS),
            None => MAX_WAIT_NS,
        }
    }
}

/// Apply a DHCP event; the address to publish (empty: none any more).
fn dhcp_event(
    index: u32,
    iface: &mut Interface,
    ev: dhcpv4::Event<'_>,
) -> Option<heapless::String<24>> {
    use core::fmt::Write as _;
    match ev {
        dhcpv4::Event::Configured(c) => {
            iface.update_ip_addrs(|a| {
                a.clear();
                let _ = a.push(IpCidr::Ipv4(c.address));
            });
            if let Some(r) = c.router {
                let _ = iface.routes_mut().add_default_ipv4_route(r);
            }
            println!("net: vif{index} dhcp address={}", c.address);
            let mut a = heapless::String::new();
            let _ = write!(a, "{}", c.address.address());
            Some(a)
        }
        dhcpv4::Event::Deconfigured => {
            // Also the client's first event, before any lease: say so only if one is lost.
            let had = !iface.ip_addrs().is_empty();
            iface.update_ip_addrs(|a| a.clear());
            if had {
                println!("net: vif{index} dhcp lease lost");
                Some(heapless::String::new())
            } else {
                None
            }
        }
    }
}

fn serve_udp(s: &mut udp::Socket<'_>, st: &mut Stats) {
    let mut buf = [0u8; 2048];
    while s.can_recv() {
        let Ok((n, meta)) = s.recv_slice(&mut buf) else {
            break;
        };
        match s.send_slice(&buf[..n], meta.endpoint) {
            Ok(()) => st.udp_echoed += 1,
            // The send buffer is full: the datagram is dropped (UDP), and counted.
            Err(_) => st.udp_dropped += 1,
        }
    }
}

fn serve_echo(s: &mut tcp::Socket<'_>, st: &mut Stats) {
    let mut buf = [0u8; 4096];
    while s.can_recv() && s.can_send() {
        let room = s.send_capacity() - s.send_queue();
        let want = room.min(buf.len());
        if want == 0 {
            break;
        }
        let Ok(n) = s.recv_slice(&mut buf[..want]) else {
            break;
        };
        if n == 0 {
            break;
        }
        // Cannot be short: `room` bytes were free.
        let _ = s.send_slice(&buf[..n]);
        st.tcp_echoed += n as u64;
    }
    if !s.may_recv() && s.recv_queue() == 0 && s.send_queue() == 0 {
        s.close();
    }
}

fn serve_discard(s: &mut tcp::Socket<'_>, st: &mut Stats) {
    while s.can_recv() {
        match s.recv(|b| (b.len(), b.len())) {
            Ok(0) | Err(_) => break,
            Ok(n) => st.discarded += n as u64,
        }
    }
    if !s.may_recv() {
        s.close();
    }
}

fn serve_http(s: &mut tcp::Socket<'_>, c: &mut HttpConn, st: &mut Stats, files: Option<&Ext4>) {
    if c.out.is_none() {
        while s.can_recv() && c.head.len() < http::HEAD_MAX {
            let room = http::HEAD_MAX - c.head.len();
            let _ = s.recv(|b| {
                let n = b.len().min(room);
                c.head.extend_from_slice(&b[..n]);
                (n, ())
            });
        }
        match http::parse(&c.head) {
            Parse::Incomplete => {
                if !s.may_recv() {
                    s.close();
                }
                return;
            }
            Parse::Done {
                route: Route::File(path),
                ..
            } => {
                let (opened, file) = open_file(files, path.absolute(), st);
                let r = http::respond_file(opened);
                st.http_requests += 1;
                c.file = file;
                c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
            }
            Parse::Done { route, .. } => {
                let r = http::respond(route);
                st.http_requests += 1;
                c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
            }
        }
    }
    let Some((head, sent, body, at)) = c.out.as_mut() else {
        return;
    };
    while s.can_send() {
        if *sent < head.len() {
            match s.send_slice(&head.as_bytes()[*sent..]) {
                Ok(n) if n > 0 => *sent += n,
                _ => return,
            }
            continue;
        }
        if *at >= body.len() {
            break;
        }
        let body = *body;
        let file = &mut c.file;
        let r = s.send(|buf| {
            let n = body.fill_with(*at, buf, |off, out| match file.as_mut() {
                Some(f) => read_exact_at(f, off, out).map_err(|_| ()),
                None => Err(()),
            });
            match n {
                Ok(n) => (n, Ok(n)),
                Err(()) => (0, Err(())),
            }
        });
        match r {
            Ok(Ok(n)) if n > 0 => {
                *at += n as u64;
                st.http_bytes += n as u64;
            }
            Ok(Err(())) => {
                // The disk failed mid-body: the length is promised, so the connection
                // is cut short, and counted.
                st.file_errors += 1;
                s.abort();
                return;
            }
            _ => return,
        }
    }
    if *sent == head.len() && *at >= body.len() {
        // Connection: close. The rest of the request (if any) is not read.
        s.close();
    }
}

/// Open `path` for `GET /files/…`: a regular file's length and checksum (read once
/// now, so the head can carry it), the file to stream from, or why not.
fn open_file(files: Option<&Ext4>, path: &str, st: &mut Stats) -> (Opened, Option<File>) {
    use xenpv_rt::blk::ext4::ext4_view::Ext4Error;
    let Some(fs) = files else {
        return (Opened::NotFound, None);
    };
    let mut f = match fs.open(path) {
        Ok(f) => f,
        Err(Ext4Error::NotFound | Ext4Error::IsADirectory | Ext4Error::NotADirectory) => {
            return (Opened::NotFound, None)
        }
        Err(Ext4Error::IsASpecialFile) => return (Opened::NotFound, None),
        Err(e) => {
            println!("net: files: open {path}: {e}");
            st.file_errors += 1;
            return (Opened::Failed, None);
        }
    };
    let len = f.metadata().len();
    match http::file_checksum(len, |at, out| read_exact_at(&mut f, at, out)) {
        Ok(checksum) => (Opened::File { len, checksum }, Some(f)),
        Err(e) => {
            println!("net: files: reading {path}: {e}");
            st.file_errors += 1;
            (Opened::Failed, None)
        }
    }
}

/// The appliance. Its exit status: 0 after an orderly shutdown, 2 for a bad word, 9 if
/// a vif never came up.
pub fn run(boot: &mut Boot) -> i32 {
    let cmd = boot.cmdline();
    let vifs = match cmd.u64("vifs") {
        Ok(None) => 1,
        Ok(Some(n)) if (1..=MAX_VIFS as u64).contains(&n) => n as usize,
        Ok(Some(n)) => {
            println!("net: vifs={n}: the appliance brings up 1..={MAX_VIFS} vifs");
            return 2;
        }
        Err(e) => {
            println!("net: {e}");
            return 2;
        }
    };
    let ips = match parse_ips(cmd.value("ip").unwrap_or("dhcp")) {
        Ok(v) => v,
        Err(e) => {
            println!("net: {e}");
            return 2;
        }
    };
    if ips.len() < vifs {
        println!(
            "net: vifs={vifs} but ip= has {} entries (one per vif)",
            ips.len()
        );
        return 2;
    }
    let cmd_files = cmd.has("files");
    if boot.xenstore().is_none() {
        println!("net: no xenstore (dom0 has no backends here): run it as a domU");
        return 2;
    }
    let mut gt = match GrantTable::setup(boot.memory(), 8) {
        Ok(g) => g,
        Err(e) => {
            println!("net: grant table: {e:?}");
            return 9;
        }
    };
    let (mem, xs) = boot.memory_and_xenstore();
    let Some(xs) = xs else { return 2 };
    if let Err(e) = xs.watch("control/shutdown", "shutdown") {
        println!("net: watching control/shutdown: {e}");
        return 9;
    }
    let mut list: Vec<Vif> = Vec::new();
    // Every vif's handshake at once, stepped in turn: one slow backend does not hold
    // the others up (and a stop request meanwhile is honoured).
    let mut nics = match connect_all(mem, &mut gt, xs, vifs) {
        Ok(nics) => nics,
        Err(status) => return status,
    };
    for (i, (nic, ms)) in nics.drain(..).enumerate() {
        let m = nic.mac();
        println!(
            "net: vif{i} connected in {} ms: mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} backend={} (domain {}) ip={} gso={}",
            ms,
            m[0], m[1], m[2], m[3], m[4], m[5],
            nic.backend().path,
            nic.backend().domid,
            IpText(ips[i]),
            if nic.gso() { "on" } else { "off" },
        );
        list.push(Vif::new(nic, ips[i]));
    }
    let mut life: Vec<Life> = (0..vifs).map(|_| Life::Idle).collect();

    if cmd_files {
        match open_files(mem, &mut gt, xs) {
            Ok(fs) => list.iter_mut().for_each(|v| v.files = Some(fs.clone())),
            Err(e) => {
                println!("net: files: {e}");
                return 9;
            }
        }
    }
    let _ = xs.write("data/xenpv-app/net", b"serving");
    println!("net: serving udp/7 tcp/7 tcp/9 tcp/80 on {vifs} vif(s)");
    let mut st = Stats::default();
    let xs_port = xs.link().port();
    let (mut xs_woke, mut xs_at) = (false, 0);
    // Events lost so far (seen), and a read of control/shutdown that failed.
    let (mut lost_epoch, mut recheck_shutdown) = (xs.lost_epoch(), false);
    loop {
        for v in list.iter_mut() {
            v.poll(&mut st);
        }
        for v in list.iter_mut() {
            if let Some(ip) = v.announce.take() {
                let mut key: heapless::String<32> = heapless::String::new();
                let _ = core::fmt::Write::write_fmt(
                    &mut key,
                    format_args!("data/xenpv-app/vif{}-ip", v.index),
                );
                let _ = xs.write(&key, ip.as_bytes());
            }
        }
        // Watch events: a stop request, a backend going away or coming back. Read when
        // xenstore's port fired (reading its ring every round costs as much as a round
        // of a busy vif), and every XS_CHECK_NS regardless.
        let mut check_backends = false;
        let t = now_ns();
        let xs_due = core::mem::take(&mut xs_woke) || evtchn::is_pending(xs_port) || t >= xs_at;
        if xs_due {
            xs_at = t + XS_CHECK_NS;
            let mut check_shutdown = core::mem::take(&mut recheck_shutdown);
            loop {
                match xs.next_event(now_ns()) {
                    Ok(Some(ev)) if ev.token.as_str() == "shutdown" => check_shutdown = true,
                    Ok(Some(_)) => check_backends = true,
                    Ok(None) => break,
                    Err(XsError::EventsLost) => {
                        println!("net: xenstore: watch events lost: reading control/shutdown and the backends again");
                        check_shutdown = true;
                        check_backends = true;
                    }
                    Err(e) => {
                        println!("net: xenstore: {e}");
                        break;
                    }
                }
            }
            // Belt and braces: a loss whose report the loop above broke off before
            // (another error came first) still makes us look again.
            if xs.lost_epoch() != lost_epoch {
                lost_epoch = xs.lost_epoch();
                check_shutdown = true;
                check_backends = true;
            }
            if check_shutdown {
                match shutdown_request(xs) {
                    Ok(Some(how)) => {
                        println!("net: shutdown requested ({how})");
                        return finish(&mut list, &mut life, mem, &mut gt, xs, &st);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        println!("net: reading control/shutdown: {e} (trying again)");
                        recheck_shutdown = true;
                    }
                }
            }
        }
        for (v, l) in list.iter_mut().zip(life.iter_mut()) {
            lifecycle(v, l, check_backends, mem, &mut gt, xs, &mut st);
        }

        let wait = list
            .iter_mut()
            .map(Vif::delay_ns)
            .min()
            .unwrap_or(MAX_WAIT_NS)
            .min(MAX_WAIT_NS)
            .min(life_delay_ns(&life));
        if wait > 0 {
            let mut ports: heapless::Vec<evtchn::Port, 8> = heapless::Vec::new();
            let _ = ports.push(xs_port);
            for v in &list {
                if let Some(n) = &v.nic {
                    let _ = ports.push(n.port());
                }
            }
            let t = now_ns();
            xs_woke = evtchn::wait(&ports, t + wait) == Ok(Some(xs_port));
            st.idle_ns += now_ns().saturating_sub(t);
            st.waits += 1;
        }
    }
}

/// The first disk (`device/vbd`), brought up with blkfront and read as ext2/3/4.
/// (Errors are written into a fixed string: `alloc::format!` pulls in unwinding code.)
// The error is one line of text for the console, made once at start.
#[allow(clippy::result_large_err)]
fn open_files(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
) -> Result<Ext4, heapless::String<200>> {
    use core::fmt::Write as _;
    use xenpv_rt::blk::blkfront::Blkfront;
    use xenpv_rt::blk::ext4::Ext4Disk;
    use xenpv_rt::blk::BlockDevice;
    let mut msg = heapless::String::new();
    let ids = match Blkfront::list(xs) {
        Ok(ids) => ids,
        Err(e) => {
            let _ = write!(msg, "listing device/vbd: {e}");
            return Err(msg);
        }
    };
    let Some(&id) = ids.first() else {
        let _ = write!(msg, "no disk (device/vbd is empty)");
        return Err(msg);
    };
    let t0 = now_ns();
    let disk = match Blkfront::connect(mem, gt, xs, id) {
        Ok(d) => d,
        Err(e) => {
            let _ = write!(msg, "vbd {id}: {e}");
            return Err(msg);
        }
    };
    let g = disk.geometry();
    let fs = match Ext4Disk(disk).load() {
        Ok(fs) => fs,
        Err(e) => {
            let _ = write!(msg, "vbd {id}: not an ext2/3/4 filesystem: {e}");
            return Err(msg);
        }
    };
    println!(
        "net: files from vbd {id} ({} sectors of {} bytes, ro={}) as ext4 in {} ms: GET /files/PATH",
        g.sectors,
        g.sector_size,
        g.read_only as u8,
        (now_ns() - t0) / 1_000_000
    );
    Ok(fs)
}

/// `control/shutdown`'s request, acknowledged (cleared) as Linux does; `None` if empty.
/// `control/shutdown`'s request, acknowledged (cleared) as Linux does; `None` if empty
/// or absent. An error is for the caller to try again: a request must not be lost.
fn shutdown_request(xs: &mut Xenstore<PageLink>) -> Result<Option<heapless::String<16>>, XsError> {
    let v = match xs.read("control/shutdown") {
        Ok(v) => v,
        Err(XsError::Xenstore(e)) if e == "ENOENT" => return Ok(None),
        Err(e) => return Err(e),
    };
    let v = v.strip_suffix(b"\0").unwrap_or(&v);
    if v.is_empty() {
        return Ok(None);
    }
    let _ = xs.write("control/shutdown", b"");
    let mut s = heapless::String::new();
    for &b in v.iter().take(16) {
        let _ = s.push(if b.is_ascii_graphic() { b as char } else { '?' });
    }
    Ok(Some(s))
}

/// Why a vif is being closed.
#[derive(Clone, Copy)]
enum Why {
    /// Its backend closed or vanished (`None`), or corrupted a ring.
    Detach(Option<State>),
    /// A re-attach failed: what it set up is taken down.
    FailedConnect,
}

/// A vif's device lifecycle, beside its serving state (`Vif::nic`). A connect or close
/// in progress is stepped when a backend's watch fired or its time came (a few xenstore
/// requests, never a wait for the backend), so a backend that never answers costs the
/// other vifs nothing.
enum Life {
    /// Connected (`Vif::nic` is set), or detached and looking for its backend again at
    /// `Vif::next_probe`.
    Idle,
    /// Re-attaching: stepped at the time given (or on a backend event); when it began.
    Connecting(Box<PendingNetfront>, u64, u64),
    /// Closing: stepped at the time given (or on a backend event); when it began, why.
    Closing(Box<ClosingNetfront>, u64, u64, Why),
}

/// Time until the first connect or close in progress is due for a step.
fn life_delay_ns(life: &[Life]) -> u64 {
    let t = now_ns();
    life.iter()
        .filter_map(|l| match l {
            Life::Idle => None,
            Life::Connecting(_, at, _) | Life::Closing(_, at, ..) => Some(at.saturating_sub(t)),
        })
        .min()
        .unwrap_or(u64::MAX)
}

/// Bring up vifs `0..n` together: each, and how long it took (ms). `Err(status)` to
/// exit with: 9 if one failed, 0 if the toolstack asked to stop meanwhile.
fn connect_all(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    n: usize,
) -> Result<Vec<(Box<Netfront>, u64)>, i32> {
    let t0 = now_ns();
    let mut pending: Vec<Option<(Box<PendingNetfront>, u64)>> = Vec::new();
    for i in 0..n {
        match Netfront::begin_connect(mem, gt, xs, i as u32) {
            Ok(p) => pending.push(Some((Box::new(p), 0))),
            Err(e) => {
                println!("net: vif{i}: {e}");
                return Err(9);
            }
        }
    }
    let mut nics: Vec<Option<(Box<Netfront>, u64)>> = (0..n).map(|_| None).collect();
    let mut seen = u64::MAX; // step everything at first
    while nics.iter().any(Option::is_none) {
        let mark = xs.events_arrived();
        let woke = mark != seen;
        seen = mark;
        let mut next = u64::MAX;
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some((p, wake_at)) = slot.take() else {
                continue;
            };
            if !woke && now_ns() < wake_at {
                next = next.min(wake_at);
                *slot = Some((p, wake_at));
                continue;
            }
            match p.step(xs) {
                ConnectStep::Pending(p, w) => {
                    next = next.min(w);
                    *slot = Some((Box::new(p), w));
                }
                ConnectStep::Connected(nic) => {
                    nics[i] = Some((Box::new(nic), (now_ns() - t0) / 1_000_000));
                }
                ConnectStep::Failed(e, closing) => {
                    println!("net: vif{i}: {e}");
                    closing.finish(mem, gt, xs);
                    return Err(9);
                }
            }
        }
        // A stop request while the vifs come up (or events lost: look anyway).
        let mut stop = false;
        loop {
            match xs.next_event(now_ns()) {
                Ok(Some(ev)) => stop |= ev.token.as_str() == "shutdown",
                Ok(None) => break,
                Err(XsError::EventsLost) => stop = true,
                Err(_) => break,
            }
        }
        if stop {
            if let Ok(Some(how)) = shutdown_request(xs) {
                println!("net: shutdown requested ({how}) while the vifs came up");
                for (nic, _) in nics.iter_mut().filter_map(Option::take) {
                    nic.close(mem, gt, xs);
                }
                for (p, _) in pending.iter_mut().filter_map(Option::take) {
                    p.abort().finish(mem, gt, xs);
                }
                return Err(0);
            }
        }
        if nics.iter().any(Option::is_none) && next != u64::MAX {
            let _ = xs.wait_event(mark, next);
        }
    }
    Ok(nics.into_iter().flatten().collect())
}

/// One round of a vif's lifecycle: notice a backend that closed, vanished or broke a
/// ring, step a close or a re-attach in progress, or look for the backend again.
fn lifecycle(
    v: &mut Vif,
    life: &mut Life,
    check_backends: bool,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    st: &mut Stats,
) {
    let t = now_ns();
    *life = match core::mem::replace(life, Life::Idle) {
        Life::Idle if v.nic.is_some() => {
            let broken = v.nic.as_ref().and_then(|n| n.broken());
            if let Some(e) = broken {
                println!(
                    "net: vif{} stopped: the backend corrupted a ring ({e})",
                    v.index
                );
            }
            if check_backends || broken.is_some() {
                check_backend(v, xs)
            } else {
                Life::Idle
            }
        }
        Life::Idle if t >= v.next_probe => {
            v.next_probe = t + REATTACH_EVERY_NS;
            reattach(v, mem, gt, xs)
        }
        Life::Connecting(p, wake_at, t0) if check_backends || t >= wake_at => match p.step(xs) {
            ConnectStep::Pending(p, w) => Life::Connecting(Box::new(p), w, t0),
            ConnectStep::Connected(nic) => {
                st.reattached += 1;
                println!(
                    "net: vif{} reattached in {} ms (backend {})",
                    v.index,
                    (now_ns() - t0) / 1_000_000,
                    nic.backend().path
                );
                v.nic = Some(Box::new(nic));
                Life::Idle
            }
            ConnectStep::Failed(e, closing) => {
                println!("net: vif{} reattach failed (retrying): {e}", v.index);
                v.next_probe = now_ns() + CONNECT_NS / 10;
                Life::Closing(Box::new(closing), 0, now_ns(), Why::FailedConnect)
            }
        },
        Life::Closing(c, wake_at, t0, why) if check_backends || t >= wake_at => {
            match c.step(mem, gt, xs) {
                CloseStep::Pending(c, w) => Life::Closing(Box::new(c), w, t0, why),
                CloseStep::Closed(closed) => {
                    if let Why::Detach(state) = why {
                        st.detached += 1;
                        println!(
                            "net: vif{} detached (backend {}): closed in {} ms, pages_kept={} unacknowledged={}",
                            v.index,
                            StateText(state.unwrap_or(State::Unknown)),
                            (now_ns() - t0) / 1_000_000,
                            closed.pages_kept,
                            closed.unacknowledged
                        );
                    } else if closed.pages_kept > 0 {
                        println!(
                            "net: vif{} closed with {} pages still granted",
                            v.index, closed.pages_kept
                        );
                    }
                    v.next_probe = v.next_probe.max(now_ns() + REATTACH_EVERY_NS);
                    Life::Idle
                }
            }
        }
        other => other,
    };
}

/// A backend that closed or vanished, or a ring it corrupted: start closing the vif
/// (it reconnects later).
fn check_backend(v: &mut Vif, xs: &mut Xenstore<PageLink>) -> Life {
    let Some(nic) = v.nic.as_ref() else {
        return Life::Idle;
    };
    let state = nic.backend_state(xs);
    let broken = nic.broken().is_some();
    let gone = matches!(state, Ok(None)) || matches!(state, Ok(Some(s)) if s.closing());
    if !gone && !broken {
        return Life::Idle;
    }
    let Some(nic) = v.nic.take() else {
        return Life::Idle;
    };
    let t = now_ns();
    let state = state.ok().flatten();
    Life::Closing(Box::new(nic.begin_close()), t, t, Why::Detach(state))
}

/// A detached vif whose backend is back (InitWait): start connecting again.
fn reattach(
    v: &mut Vif,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
) -> Life {
    let dev = xenpv_rt::xenbus::Device::new("vif", v.index);
    let Ok(be) = xenpv_rt::xenbus::probe(xs, &dev) else {
        return Life::Idle;
    };
    match xenpv_rt::xenbus::backend_state(xs, &dev, &be) {
        Ok(Some(State::InitWait)) => {}
        _ => return Life::Idle,
    }
    match Netfront::begin_connect(mem, gt, xs, v.index) {
        Ok(p) => Life::Connecting(Box::new(p), 0, now_ns()),
        Err(e) => {
            println!("net: vif{} reattach failed (retrying): {e}", v.index);
            v.next_probe = now_ns() + CONNECT_NS / 10;
            Life::Idle
        }
    }
}

/// Print the counters, then close every vif together (each within `CLOSE_NS`), those
/// being re-attached or detached included.
fn finish(
    list: &mut [Vif],
    life: &mut [Life],
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    st: &Stats,
) -> i32 {
    println!(
        "net: served udp_echoed={} udp_dropped={} tcp_echoed_bytes={} discarded_bytes={} http_requests={} http_bytes={} detached={} reattached={} file_errors={}",
        st.udp_echoed, st.udp_dropped, st.tcp_echoed, st.discarded, st.http_requests, st.http_bytes, st.detached, st.reattached, st.file_errors
    );
    println!(
        "net: idle_ms={} waits={} (time spent waiting for an event or a timer)",
        st.idle_ns / 1_000_000,
        st.waits
    );
    let mut closing: Vec<(u32, Box<ClosingNetfront>, u64)> = Vec::new();
    for (v, l) in list.iter_mut().zip(life.iter_mut()) {
        if let Some(nic) = v.nic.take() {
            let (t, c) = (nic.traffic(), nic.counters());
            println!(
                "net: vif{} tx_packets={} rx_packets={} tx_bytes={} rx_bytes={} tx_gso={} rx_multi={} notifies={} refused={} failed={} tx_dropped={} bad_checksums={}",
                v.index,
                t.tx_packets,
                t.rx_packets,
                t.tx_bytes,
                t.rx_bytes,
                t.tx_gso,
                t.rx_multi,
                t.notifies,
                c.refused(),
                c.failed,
                nic.dropped(),
                nic.bad_checksums()
            );
            closing.push((v.index, Box::new(nic.begin_close()), 0));
        }
        match core::mem::replace(l, Life::Idle) {
            Life::Connecting(p, ..) => closing.push((v.index, Box::new(p.abort()), 0)),
            Life::Closing(c, ..) => closing.push((v.index, c, 0)),
            Life::Idle => {}
        }
    }
    while !closing.is_empty() {
        let mark = xs.events_arrived();
        let mut next = u64::MAX;
        let mut left = Vec::new();
        for (i, c, wake_at) in closing {
            if now_ns() < wake_at {
                next = next.min(wake_at);
                left.push((i, c, wake_at));
                continue;
            }
            match c.step(mem, gt, xs) {
                CloseStep::Pending(c, w) => {
                    next = next.min(w);
                    left.push((i, Box::new(c), w));
                }
                CloseStep::Closed(closed) => {
                    if closed.pages_kept > 0 {
                        println!(
                            "net: vif{i} closed with {} pages still granted",
                            closed.pages_kept
                        );
                    }
                }
            }
        }
        closing = left;
        if !closing.is_empty() {
            let _ = xs.wait_event(mark, next);
        }
    }
    0
}

struct IpText(Ip);

impl core::fmt::Display for IpText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ip::Static { addr, prefix } => {
                write!(
                    f,
                    "{}/{prefix}",
                    Ipv4Cidr::new(Ipv4Address::from(addr), prefix).address()
                )
            }
            Ip::Dhcp => write!(f, "dhcp"),
        }
    }
}

struct StateText(State);

impl core::fmt::Display for StateText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            State::Unknown => write!(f, "gone"),
            s => write!(f, "{s:?}"),
        }
    }
}
