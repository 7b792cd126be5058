//! The services a vif's sockets run, a round's bounded step each: UDP echo, TCP echo
//! and discard, and HTTP (with the checksum of a `GET /files/…` body taken a step a
//! round before its head goes out).

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use xenpv_appliance::http::{self, Body, FileSum, Opened, Parse, Route};
use xenpv_rt::blk::ext4::ext4_view::{Ext4, File};
use xenpv_rt::blk::ext4::read_exact_at;
use xenpv_rt::net::smoltcp;
use xenpv_rt::println;
use xenpv_rt::time::now_ns;

use smoltcp::socket::{tcp, udp};

use super::files::{disk_failed, open_file};
use super::stats::Stats;

/// UDP: the largest datagram (65,535 - 20 - 8), the largest sent without fragments
/// (MTU 1500 - 20 - 8), and the socket's buffers (eight of the largest each way).
pub(super) const UDP_MAX: usize = 65_507;
const UDP_UNFRAGMENTED: usize = 1472;
pub(super) const UDP_BUF: usize = 8 * 65_536;
pub(super) const UDP_PACKETS: usize = 256;

pub(super) enum Service {
    Echo,
    Discard,
    Http(Box<HttpConn>),
}

/// One HTTP connection's progress.
#[derive(Default)]
pub(super) struct HttpConn {
    pub(super) head: Vec<u8>,
    /// A file's checksum being taken, a step a round, before its head can go out.
    pub(super) sum: Option<FileSum>,
    /// The response being sent: its head's unsent bytes and the body's offset.
    pub(super) out: Option<(http::Head, usize, Body, u64)>,
    /// The file a `GET /files/…` body is read from.
    pub(super) file: Option<File>,
}

/// Echo datagrams, up to `work` bytes. One that goes out in fragments waits while
/// smoltcp's fragmenter may still hold the last one (`frag_idle`), and goes alone in its
/// round; it stays in the socket meanwhile (order kept).
pub(super) fn serve_udp(
    s: &mut udp::Socket<'_>,
    buf: &mut [u8],
    frag_idle: bool,
    work: &mut u64,
    st: &mut Stats,
) {
    let mut big_sent = false;
    while s.can_recv() && *work > 0 {
        let Ok((d, _)) = s.peek() else {
            break;
        };
        if d.len() > UDP_UNFRAGMENTED && (!frag_idle || big_sent) {
            st.udp_deferred += 1;
            break;
        }
        let Ok((n, meta)) = s.recv_slice(buf) else {
            break;
        };
        *work = work.saturating_sub(n as u64);
        big_sent |= n > UDP_UNFRAGMENTED;
        match s.send_slice(&buf[..n], meta.endpoint) {
            Ok(()) => st.udp_echoed += 1,
            // The send buffer is full: the datagram is dropped (UDP), and counted.
            Err(_) => st.udp_dropped += 1,
        }
    }
}

/// Echo what arrived, up to `work` bytes; did any move?
pub(super) fn serve_echo(s: &mut tcp::Socket<'_>, work: &mut u64, st: &mut Stats) -> bool {
    let mut buf = [0u8; 4096];
    let mut moved = false;
    while s.can_recv() && s.can_send() && *work > 0 {
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
        *work = work.saturating_sub(n as u64);
        moved = true;
    }
    if !s.may_recv() && s.recv_queue() == 0 && s.send_queue() == 0 {
        s.close();
    }
    moved
}

/// Discard what arrived, up to `work` bytes; did any?
pub(super) fn serve_discard(s: &mut tcp::Socket<'_>, work: &mut u64, st: &mut Stats) -> bool {
    let mut moved = false;
    while s.can_recv() && *work > 0 {
        let max = usize::try_from(*work).unwrap_or(usize::MAX);
        match s.recv(|b| {
            let n = b.len().min(max);
            (n, n)
        }) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                st.discarded += n as u64;
                *work = work.saturating_sub(n as u64);
                moved = true;
            }
        }
    }
    if !s.may_recv() {
        s.close();
    }
    moved
}

/// Serve one HTTP connection a round's step: read its head, take a file's checksum a
/// step (`disk` bytes left this round), send (`work` bytes left). Did anything move?
pub(super) fn serve_http(
    s: &mut tcp::Socket<'_>,
    c: &mut HttpConn,
    work: &mut u64,
    disk: &mut u64,
    st: &mut Stats,
    files: Option<&Ext4>,
) -> bool {
    let mut moved = false;
    if c.out.is_none() && c.sum.is_none() && !read_request(s, c, st, files, &mut moved) {
        return moved;
    }
    if let (Some(sum), Some(f)) = (c.sum.as_mut(), c.file.as_mut()) {
        if *disk == 0 {
            return moved;
        }
        let opened = if let Err(left_ns) = st.disk.allow(now_ns()) {
            // Another connection's call failed meanwhile: the disk is not called.
            c.file = None;
            Opened::Unavailable { left_ns }
        } else {
            // A step of the file's checksum; the head waits for the last.
            let before = sum.hashed();
            let r = sum.step(*disk, |off, out| read_exact_at(f, off, out));
            st.checksum_steps += 1;
            *disk = disk.saturating_sub(sum.hashed() - before);
            match r {
                Ok(None) => {
                    st.disk.succeeded();
                    return true;
                }
                Ok(Some(checksum)) => {
                    st.disk.succeeded();
                    Opened::File {
                        len: f.metadata().len(),
                        checksum,
                    }
                }
                Err(e) => {
                    println!("net: files: reading for the checksum: {e}");
                    st.file_errors += 1;
                    c.file = None;
                    disk_failed(&e, st)
                        .map_or(Opened::Failed, |left_ns| Opened::Unavailable { left_ns })
                }
            }
        };
        c.sum = None;
        let r = http::respond_file(opened);
        c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
        moved = true;
    }
    send_response(s, c, work, disk, st, moved)
}

/// Read an HTTP connection's head and, once it is whole, begin the response (or the
/// file's checksum). `false` while the head is incomplete (closed if the client will
/// send no more).
fn read_request(
    s: &mut tcp::Socket<'_>,
    c: &mut HttpConn,
    st: &mut Stats,
    files: Option<&Ext4>,
    moved: &mut bool,
) -> bool {
    while s.can_recv() && c.head.len() < http::HEAD_MAX {
        let room = http::HEAD_MAX - c.head.len();
        let _ = s.recv(|b| {
            let n = b.len().min(room);
            c.head.extend_from_slice(&b[..n]);
            *moved |= n > 0;
            (n, ())
        });
    }
    match http::parse(&c.head) {
        Parse::Incomplete => {
            if !s.may_recv() {
                s.close();
            }
            return false;
        }
        Parse::Done {
            route: Route::File(path),
            ..
        } => {
            st.http_requests += 1;
            // The disk's breaker is open (a call failed lately): not called, a 503.
            if files.is_some() {
                if let Err(left_ns) = st.disk.allow(now_ns()) {
                    let r = http::respond_file(Opened::Unavailable { left_ns });
                    c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
                    return true;
                }
            }
            match open_file(files, path.absolute(), st) {
                Ok((f, len)) => {
                    c.file = Some(f);
                    c.sum = Some(FileSum::new(len));
                }
                Err(opened) => {
                    let r = http::respond_file(opened);
                    c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
                }
            }
        }
        Parse::Done { route, .. } => {
            let r = http::respond(route);
            st.http_requests += 1;
            st.too_large += u64::from(route == Route::TooLarge);
            c.out = Some((http::head(&r, r.body.checksum()), 0, r.body, 0));
        }
    }
    true
}

/// Send what is left of a connection's response, up to `work` bytes (and `disk` bytes
/// of a file's body), closing it when all is sent. Did anything move (`moved`: before)?
fn send_response(
    s: &mut tcp::Socket<'_>,
    c: &mut HttpConn,
    work: &mut u64,
    disk: &mut u64,
    st: &mut Stats,
    mut moved: bool,
) -> bool {
    let Some((head, sent, body, at)) = c.out.as_mut() else {
        return moved;
    };
    while s.can_send() && *work > 0 {
        if *sent < head.len() {
            match s.send_slice(&head.as_bytes()[*sent..]) {
                Ok(n) if n > 0 => {
                    *sent += n;
                    moved = true;
                }
                _ => return moved,
            }
            continue;
        }
        if *at >= body.len() {
            break;
        }
        let body = *body;
        let file = &mut c.file;
        let is_file = matches!(body, Body::File { .. });
        if is_file && *disk == 0 {
            return moved;
        }
        if is_file && st.disk.allow(now_ns()).is_err() {
            // The disk's breaker opened mid-body: the length is promised, so the
            // connection is cut short (not left waiting for the back-off), and counted.
            st.file_errors += 1;
            s.abort();
            return moved;
        }
        let max = usize::try_from((*work).min(if is_file { *disk } else { u64::MAX }))
            .unwrap_or(usize::MAX);
        let r = s.send(|buf| {
            let buf_len = buf.len().min(max);
            let n = body.fill_with(*at, &mut buf[..buf_len], |off, out| match file.as_mut() {
                Some(f) => read_exact_at(f, off, out).map_err(Some),
                None => Err(None),
            });
            match n {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }
        });
        match r {
            Ok(Ok(n)) if n > 0 => {
                if is_file {
                    st.disk.succeeded();
                }
                *at += n as u64;
                st.http_bytes += n as u64;
                *work = work.saturating_sub(n as u64);
                if is_file {
                    *disk = disk.saturating_sub(n as u64);
                }
                moved = true;
            }
            Ok(Err(e)) => {
                // The disk failed mid-body: the length is promised, so the connection
                // is cut short, and counted.
                if let Some(e) = e {
                    disk_failed(&e, st);
                }
                st.file_errors += 1;
                s.abort();
                return moved;
            }
            _ => return moved,
        }
    }
    if *sent == head.len() && *at >= body.len() {
        // Connection: close. The rest of the request (if any) is not read.
        s.close();
    }
    moved
}
