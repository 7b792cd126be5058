//! The network appliance on the async runtime (command-line word `net`): on every vif,
//! UDP and TCP echo on port 7 (RFC 862), TCP discard on port 9 (RFC 863) and a minimal
//! HTTP/1.1 server on port 80 (`xenpv_appliance::http`), over xenpv-net's sockets
//! (`xenpv_appliance_service`, host-tested). It takes the polled appliance's words
//! (`vifs=`, `ip=`, `tcp_idle=` `head_timeout=` `syn_timeout=` `per_peer=` `tcp_listen=`
//! `tcp_max=`, `files`, `disk_timeout=`; `heap-probe` answers `GET /heap/N`) and prints
//! its report lines (`net: …`). Its socket buffers, connection pool and backlog are sized
//! to the domain's memory (`xenpv_appliance_service::sizing`; `sock_kib=`, `tcp_max=` and
//! `tcp_listen=` override), and a domain they cannot fit in is refused at startup in one
//! line (`net: does not fit: …`, status 10). It keeps a tick counter and (word `records`) a disk
//! writer, shown by `GET /state` and checked by `GET /records` (module `state`): what
//! a save, restore or migration must not lose.
//!
//! The runtime keeps each vif running (its task notices a backend that goes away and
//! re-attaches when one returns); the stack's listeners keep a backlog and bound every
//! connection (handshake, idle and close timeouts, `tcp_max=` per port). It serves
//! until the toolstack asks it to stop (`rt.shutdown()`), then prints its counters and
//! returns 0.

extern crate alloc;

mod files;
mod report;
mod state;
mod words;

use alloc::vec::Vec;
use embassy_time::Duration;
use futures_util::future::join_all;
use xenpv_appliance::admission::Limits;
use xenpv_appliance::config::Ip;
use xenpv_appliance_service::config::sized_port_config;
use xenpv_appliance_service::sizing::{self, Costs, Memory, Sizes};
use xenpv_appliance_service::{self as service, Counters};
use xenpv_contract::status::AppStatus;
use xenpv_rt::device::Net;
use xenpv_rt::exec::embassy_futures::select::{select, Either};
use xenpv_rt::println;
use xenpv_rt::xenpv_net::{TcpListener, UdpBuffers, UdpSocket};

use files::DiskFiles;
use state::{Keeper, Site};
use words::Words;

/// UDP echo's queues each way at full size: 256 datagrams (a window of small ones in
/// flight from several clients is not dropped), in the sizing's bytes (eight of the
/// largest at full size); halved with the buffers on a small domain.
const UDP_PACKETS: usize = 256;

/// What a vif takes besides its sockets: its ring and buffer pages (granted to the
/// backend) and its frame scratch (one largest frame each way).
const VIF_BYTES: u64 = (xenpv_rt::net::netfront::PAGES as u64) * 4096
    + (xenpv_rt::net::netfront::RX_FRAME_MAX + xenpv_rt::net::netfront::GSO_FRAME_MAX) as u64;

/// What a disk takes (`files`, `records`) besides its data pool: its ring and indirect
/// pages.
const DISK_BYTES: u64 = xenpv_rt::blk::blkfront::OVERHEAD_PAGES as u64 * 4096;

/// A vif's stack and the sockets the appliance serves on it.
struct Vif {
    net: Net,
    ip: Ip,
    udp: UdpSocket,
    echo: TcpListener,
    discard: TcpListener,
    http: TcpListener,
}

/// The `net` word's application. Its exit status: 0 after an orderly shutdown, 2 for a
/// bad word, 9 if a vif never came up.
pub async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    let mut w = match words::words(&rt.cmdline()) {
        Ok(w) => w,
        Err(status) => return status,
    };
    if rt.with_boot(|b| b.xenstore().is_none()) {
        println!("net: no xenstore (dom0 has no backends here): run it as a domU");
        return AppStatus::Usage.into();
    }
    let (mem, sizes) = match sized(rt, &mut w) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let nets = match select(connect_all(rt, &w, &sizes), rt.shutdown()).await {
        Either::First(Ok(nets)) => nets,
        Either::First(Err(status)) => return status,
        Either::Second(how) => {
            println!(
                "net: shutdown requested how={} while=connecting",
                how.as_str()
            );
            return 0;
        }
    };
    let mut vifs = Vec::new();
    for (net, ip) in nets.into_iter().zip(w.ips.iter().copied()) {
        match bind(net, ip, &w.limits, &sizes) {
            Ok(v) => vifs.push(v),
            Err(status) => return status,
        }
    }
    let files = if w.files {
        DiskFiles::open(rt, w.disk_timeout_ms).await
    } else {
        DiskFiles::default()
    };
    let keeper = match records_disk(rt, &w).await {
        Ok(disk) => Keeper::new(disk),
        Err(status) => return status,
    };
    let site = Site {
        files: &files,
        keeper: &keeper,
    };
    let (c, t) = (Counters::default(), report::Tally::default());
    report::publish(rt, "data/xenpv-app/net", "serving");
    println!(
        "net: serving udp/7 tcp/7 tcp/9 tcp/80 on {} vif(s)",
        vifs.len()
    );
    report::limits(&w.limits, &sizes, mem);
    let serve = join_all(vifs.iter().map(|v| serve_vif(rt, v, &w, &c, &site, &t)));
    let keep = xenpv_rt::exec::embassy_futures::join::join(keeper.tick(), keeper.write());
    let serve = select(serve, keep);
    let how = match select(serve, rt.shutdown()).await {
        Either::First(_) => {
            println!("net: every service ended");
            return AppStatus::Failed.into();
        }
        Either::Second(how) => how,
    };
    println!("net: shutdown requested how={}", how.as_str());
    keeper.final_report();
    report::served(&c, &vifs, &files, &t);
    0
}

/// The writer's disk (word `records`: the first disk, raw, its connected line
/// printed), or none. `Err(status)`: asked for and not there (printed).
async fn records_disk(
    rt: &'static xenpv_rt::Runtime,
    w: &Words,
) -> Result<Option<xenpv_rt::device::Disk>, i32> {
    if !w.records {
        return Ok(None);
    }
    match rt.devices().disk(0).await {
        Ok(d) if !d.read_only() && d.sector_size() as usize == xenpv_contract::records::SECTOR => {
            println!(
                "{}",
                xenpv_contract::report::Writer::new("net")
                    .word("records")
                    .field("vbd", &d.id())
                    .field("sectors", &d.sectors())
                    .field("every_ms", &1000)
            );
            Ok(Some(d))
        }
        Ok(d) => {
            println!(
                "net: records: vbd {} is read-only or its sectors are not 512 bytes",
                d.id()
            );
            Err(AppStatus::Device.into())
        }
        Err(e) => {
            println!("net: records: disk 0: {e}");
            Err(AppStatus::Device.into())
        }
    }
}

/// Size the sockets and the disks' data pools to the domain's memory ([`sizing::size`])
/// before any vif or disk takes its share; set the pool and backlog it chose in
/// `w.limits`, and the disks' pool in blkfront.
/// `Err(status)`: what was asked (or the least the appliance needs) does not fit: said
/// in one line, `net: does not fit: …`, naming the need and what there is.
fn sized(rt: &'static xenpv_rt::Runtime, w: &mut Words) -> Result<(Memory, Sizes), i32> {
    let balloon = xenpv_rt::balloon::stats().target_pages;
    let mem = rt.with_boot(|b| {
        let nr_pages = b.start_info().nr_pages;
        let frames = b.memory().frames();
        Memory {
            total: nr_pages.saturating_sub(frames.ballooned_frames()) * 4096,
            free: frames.available_frames() * 4096,
            // Zero until the balloon's task read one (and on dom0).
            target: (balloon > 0).then_some(balloon * 4096),
        }
    });
    let costs = Costs {
        disks: usize::from(w.files || w.records),
        per_disk: DISK_BYTES,
        disk_pool: xenpv_rt::blk::blkfront::MAX_POOL,
        ..Costs::for_vifs(w.vifs, VIF_BYTES)
    };
    match sizing::size(mem, &costs, &w.ask) {
        Ok(s) => {
            w.limits.max = s.max;
            w.limits.listen = s.listen;
            xenpv_rt::blk::blkfront::set_pool_pages(s.disk_pool);
            Ok((mem, s))
        }
        Err(e) => {
            println!("net: {e}");
            Err(AppStatus::Memory.into())
        }
    }
}

/// Bring every vif up together (one slow backend does not hold the others up), with the
/// stack's TCP settings from the limits (echo's buffers for its own streams); print
/// each's `connected` line. `Err(status)`: one failed (printed).
async fn connect_all(
    rt: &'static xenpv_rt::Runtime,
    w: &Words,
    s: &Sizes,
) -> Result<Vec<Net>, i32> {
    let tcp = xenpv_rt::xenpv_net::TcpConfig {
        rx_buffer: s.echo,
        tx_buffer: s.echo,
        ..service::config::tcp_config(&w.limits)
    };
    let one = |i: usize| rt.devices().net_with(i as u32, tcp);
    let mut nets = Vec::new();
    for (i, r) in join_all((0..w.vifs).map(one)).await.into_iter().enumerate() {
        match r {
            Ok(net) => {
                net.set_tx_in_place(!w.tx_copy);
                report::connected(&net, w.ips[i]);
                nets.push(net);
            }
            Err(e) => {
                println!("net: vif{i}: {e}");
                return Err(AppStatus::Device.into());
            }
        }
    }
    Ok(nets)
}

/// The appliance's sockets on a vif, each listener's buffers sized for its service (and
/// the domain's memory: `s`).
fn bind(net: Net, ip: Ip, l: &Limits, s: &Sizes) -> Result<Vif, i32> {
    let i = net.index();
    let fail = |what: &str, e: &dyn core::fmt::Debug| {
        println!("net: vif{i}: bind {what}: {e:?}");
        i32::from(AppStatus::Device)
    };
    let udp = UdpBuffers {
        packets: (UDP_PACKETS >> s.shift).max(16),
        bytes: s.udp,
    };
    let udp = UdpSocket::bind_with(&net, 7, udp).map_err(|e| fail("udp/7", &e))?;
    let tcp = |port| TcpListener::bind_with(&net, port, sized_port_config(l, port, s));
    let echo = tcp(7).map_err(|e| fail("tcp/7", &e))?;
    let discard = tcp(9).map_err(|e| fail("tcp/9", &e))?;
    let http = tcp(80).map_err(|e| fail("tcp/80", &e))?;
    Ok(Vif {
        net,
        ip,
        udp,
        echo,
        discard,
        http,
    })
}

/// Serve a vif's ports (each connection a future of its own, up to `tcp_max=` per
/// port at once; `GET /files/…` from `files`), announce a DHCP lease, and report the
/// vif's detaches and re-attaches (counted in `t`).
async fn serve_vif(
    rt: &'static xenpv_rt::Runtime,
    v: &Vif,
    w: &Words,
    c: &Counters,
    site: &Site<'_>,
    t: &report::Tally,
) {
    let limit = w.limits.max;
    let head = Duration::from_millis(w.limits.head_ms);
    let tcp = async {
        xenpv_rt::exec::embassy_futures::join::join3(
            service::serve_each(&v.echo, limit, c, |s| service::echo(s, c)),
            service::serve_each(&v.discard, limit, c, |s| service::discard(s, c)),
            service::serve_each(&v.http, limit, c, |s| {
                service::http(s, head, w.heap_probe, site, c)
            }),
        )
        .await
    };
    xenpv_rt::exec::embassy_futures::join::join4(
        service::udp_echo(&v.udp, c),
        tcp,
        report::dhcp(rt, &v.net, v.ip),
        report::events(&v.net, t),
    )
    .await;
}
