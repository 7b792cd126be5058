//! The network appliance (command-line word `net`): on every vif, UDP and TCP echo on
//! port 7 (RFC 862), TCP discard on port 9 (RFC 863) and a minimal HTTP/1.1 server on
//! port 80 (`xenpv_appliance::http`), over smoltcp and netfront. Addresses from `ip=`
//! (one entry per vif: `A.B.C.D/P` or `dhcp`), vifs from `vifs=N`.
//!
//! It serves until the toolstack asks it to stop (`xl shutdown`: `control/shutdown`),
//! then prints its counters and exits 0. A backend that closes (`xl network-detach`) is
//! noticed through a xenstore watch: the vif is closed and its grants ended; when a
//! backend appears again (`xl network-attach`) the vif reconnects and serves again.
//!
//! No client holds the loop or takes a service down: each round's work per vif is
//! bounded (`xenpv_appliance::round`, `ROUND_WORK`, `ROUND_BYTES`), every TCP connection
//! has deadlines and each port a growing pool of listeners with a per-peer limit
//! (`xenpv_appliance::admission`, words `tcp_idle=` `head_timeout=` `syn_timeout=`
//! `per_peer=` `tcp_listen=` `tcp_max=`), and IPv4 fragments are reassembled in bounded
//! memory (`xenpv_net::frag`). Nor does a disk (`files`): each call has a deadline
//! (`disk_timeout=`, ms) and a failed one opens the disk's breaker
//! (`xenpv_appliance::breaker`: `GET /files/…` is a 503 for a back-off). The counters
//! printed at the end say what each did.

extern crate alloc;

mod files;
mod lifecycle;
mod pool;
mod serve;
mod stats;
mod vif;

use alloc::vec::Vec;
use xenpv_appliance::admission::Limits;
use xenpv_appliance::breaker::DISK_TIMEOUT_MS;
use xenpv_appliance::config::{parse_ips, Ip, MAX_VIFS};
use xenpv_contract::report::Writer;
use xenpv_contract::status::AppStatus;
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::net::smoltcp;
use xenpv_rt::time::now_ns;
use xenpv_rt::xenpv_net::frag::REASSEMBLY_TIMEOUT_MS;
use xenpv_rt::xenstore::{Xenstore, XsError};
use xenpv_rt::{evtchn, println, Boot, PageLink};

use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use files::open_files;
use lifecycle::{
    connect_all, finish, life_delay_ns, lifecycle, retry_kept_grants, shutdown_request, Life,
};
use stats::Stats;
use vif::Vif;

/// Longest wait between polls (backend and shutdown checks ride on xenstore's port).
const MAX_WAIT_NS: u64 = 100_000_000;
/// Longest time between two reads of xenstore's watch events.
const XS_CHECK_NS: u64 = 50_000_000;
/// How often a detached vif looks for a backend again.
const REATTACH_EVERY_NS: u64 = 500_000_000;

/// Milliseconds of Xen system time (the connections' clock).
fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// The admission limits from the command line (`tcp_idle=` …, see
/// `xenpv_appliance::admission`), or the word that is wrong, printed.
fn limits(cmd: &xenpv_rt::Cmdline<'_>) -> Option<Limits> {
    let mut l = Limits::DEFAULT;
    for w in Limits::WORDS {
        match cmd.u64(w) {
            Ok(None) => {}
            Ok(Some(v)) => {
                if let Err(e) = l.set(w, v) {
                    println!("net: {e}");
                    return None;
                }
            }
            Err(e) => {
                println!("net: {e}");
                return None;
            }
        }
    }
    Some(l)
}

/// The appliance. Its exit status: 0 after an orderly shutdown, 2 for a bad word, 9 if
/// a vif never came up.
pub fn run(boot: &mut Boot) -> i32 {
    let cmd = boot.cmdline();
    let (vifs, ips, limits) = match words(&cmd) {
        Ok(w) => w,
        Err(status) => return status,
    };
    let cmd_files = cmd.has("files");
    let disk_timeout_ms = match cmd.u64("disk_timeout") {
        Ok(None) => DISK_TIMEOUT_MS,
        Ok(Some(ms)) if (1..=30_000).contains(&ms) => ms,
        Ok(Some(ms)) => {
            println!("net: disk_timeout={ms}: milliseconds, 1..=30000");
            return AppStatus::Usage.into();
        }
        Err(e) => {
            println!("net: {e}");
            return AppStatus::Usage.into();
        }
    };
    if boot.xenstore().is_none() {
        println!("net: no xenstore (dom0 has no backends here): run it as a domU");
        return AppStatus::Usage.into();
    }
    let mut gt = match GrantTable::setup(boot.memory(), 8) {
        Ok(g) => g,
        Err(e) => {
            println!("net: grant table: {e:?}");
            return AppStatus::Device.into();
        }
    };
    let (mem, xs) = boot.memory_and_xenstore();
    let Some(xs) = xs else {
        return AppStatus::Usage.into();
    };
    if let Err(e) = xs.watch("control/shutdown", "shutdown") {
        println!("net: watching control/shutdown: {e}");
        return AppStatus::Device.into();
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
            "{}",
            Writer::new("net")
                .word(&vif_word(i))
                .word("connected")
                .field("ms", &ms)
                .field(
                    "mac",
                    &format_args!(
                        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        m[0], m[1], m[2], m[3], m[4], m[5]
                    )
                )
                .field("backend", &xenpv_rt::escape::Escaped(&nic.backend().path))
                .field("backend_domain", &nic.backend().domid)
                .field("ip", &IpText(ips[i]))
                .field("gso", if nic.gso() { "on" } else { "off" })
        );
        list.push(Vif::new(nic, ips[i], limits));
    }
    let mut life: Vec<Life> = (0..vifs).map(|_| Life::Idle).collect();
    let mut st = Stats::default();
    if cmd_files {
        match open_files(mem, &mut gt, xs, disk_timeout_ms) {
            Ok(fs) => list.iter_mut().for_each(|v| v.files = Some(fs.clone())),
            // A disk that cannot be read costs GET /files/… only (404): serve the rest.
            Err(e) => {
                println!("net: files: {e} (serving without files)");
                st.file_errors += 1;
            }
        }
    }
    let _ = xs.write("data/xenpv-app/net", b"serving");
    println!("net: serving udp/7 tcp/7 tcp/9 tcp/80 on {vifs} vif(s)");
    println!(
        "net: limits tcp_idle={}s head_timeout={}s syn_timeout={}s per_peer={} tcp_listen={} tcp_max={} reassembly_timeout={}ms",
        limits.idle_ms / 1000,
        limits.head_ms / 1000,
        limits.syn_ms / 1000,
        limits.per_peer,
        limits.listen,
        limits.max,
        REASSEMBLY_TIMEOUT_MS
    );
    serve(&mut list, &mut life, &mut st, mem, &mut gt, xs)
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

/// The command line's words: how many vifs, their addresses, the admission limits.
/// `Err` with [`AppStatus::Usage`] for a bad word (printed).
fn words(cmd: &xenpv_rt::Cmdline<'_>) -> Result<(usize, heapless::Vec<Ip, MAX_VIFS>, Limits), i32> {
    let vifs = match cmd.u64("vifs") {
        Ok(None) => 1,
        Ok(Some(n)) if (1..=MAX_VIFS as u64).contains(&n) => n as usize,
        Ok(Some(n)) => {
            println!("net: vifs={n}: the appliance brings up 1..={MAX_VIFS} vifs");
            return Err(AppStatus::Usage.into());
        }
        Err(e) => {
            println!("net: {e}");
            return Err(AppStatus::Usage.into());
        }
    };
    let ips = match parse_ips(cmd.value("ip").unwrap_or("dhcp")) {
        Ok(v) => v,
        Err(e) => {
            println!("net: {e}");
            return Err(AppStatus::Usage.into());
        }
    };
    if ips.len() < vifs {
        println!(
            "net: vifs={vifs} but ip= has {} entries (one per vif)",
            ips.len()
        );
        return Err(AppStatus::Usage.into());
    }
    let Some(limits) = limits(cmd) else {
        return Err(AppStatus::Usage.into());
    };
    Ok((vifs, ips, limits))
}

/// Serve until the toolstack asks to stop: every vif's round, xenstore's watch events,
/// each vif's lifecycle, then a wait for an event or the next deadline. The exit status.
fn serve(
    list: &mut [Vif],
    life: &mut [Life],
    st: &mut Stats,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
) -> i32 {
    let xs_port = xs.link().port();
    let (mut xs_woke, mut xs_at) = (false, 0);
    // Events lost so far (seen), and a read of control/shutdown that failed.
    let (mut lost_epoch, mut recheck_shutdown) = (xs.lost_epoch(), false);
    loop {
        for v in list.iter_mut() {
            v.poll(st);
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
            retry_kept_grants(mem, gt);
            let (check_shutdown, backends) =
                watch_events(xs, &mut lost_epoch, &mut recheck_shutdown);
            check_backends = backends;
            if check_shutdown {
                match shutdown_request(xs) {
                    Ok(Some(how)) => {
                        println!(
                            "{}",
                            Writer::new("net")
                                .word("shutdown")
                                .word("requested")
                                .field("how", how.as_str())
                        );
                        return finish(list, life, mem, gt, xs, st);
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
            lifecycle(v, l, check_backends, mem, gt, xs, st);
        }

        let wait = list
            .iter_mut()
            .map(Vif::delay_ns)
            .min()
            .unwrap_or(MAX_WAIT_NS)
            .min(MAX_WAIT_NS)
            .min(life_delay_ns(life));
        if wait > 0 {
            xs_woke = wait_events(list, xs_port, wait, st);
        }
    }
}

/// Read xenstore's watch events: is a stop requested (or to be read again:
/// `recheck_shutdown`), has a backend changed? Lost events (`lost_epoch`) mean both.
fn watch_events(
    xs: &mut Xenstore<PageLink>,
    lost_epoch: &mut u64,
    recheck_shutdown: &mut bool,
) -> (bool, bool) {
    let mut check_shutdown = core::mem::take(recheck_shutdown);
    let mut check_backends = false;
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
    if xs.lost_epoch() != *lost_epoch {
        *lost_epoch = xs.lost_epoch();
        check_shutdown = true;
        check_backends = true;
    }
    (check_shutdown, check_backends)
}

/// Wait up to `wait` ns for an event on xenstore's port or a connected vif's (counted
/// in `st`); did xenstore's port fire?
fn wait_events(list: &[Vif], xs_port: evtchn::Port, wait: u64, st: &mut Stats) -> bool {
    let mut ports: heapless::Vec<evtchn::Port, 8> = heapless::Vec::new();
    let _ = ports.push(xs_port);
    for v in list {
        if let Some(n) = &v.nic {
            let _ = ports.push(n.port());
        }
    }
    let t = now_ns();
    let woke = evtchn::wait(&ports, t + wait) == Ok(Some(xs_port));
    st.idle_ns += now_ns().saturating_sub(t);
    st.waits += 1;
    woke
}

/// `vifN`: how a report names vif N (a word).
pub(super) fn vif_word(i: impl core::fmt::Display) -> heapless::String<16> {
    let mut w = heapless::String::new();
    let _ = core::fmt::write(&mut w, format_args!("vif{i}"));
    w
}
