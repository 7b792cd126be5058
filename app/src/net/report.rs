//! The appliance's report lines (the boot rows match them, as the polled appliance
//! prints them) and what it publishes in xenstore for dom0.

use core::cell::Cell;
use core::fmt::Write as _;
use xenpv_appliance::admission::Limits;
use xenpv_appliance::config::Ip;
use xenpv_appliance_service::sizing::{Memory, Sizes};
use xenpv_appliance_service::Counters;
use xenpv_contract::report::Writer;
use xenpv_rt::device::{Net, VifEvent};
use xenpv_rt::println;
use xenpv_rt::xenpv_net::frag::{FragCounts, REASSEMBLY_TIMEOUT_MS};
use xenpv_rt::xenpv_net::tcp::ListenerStats;

use super::files::DiskFiles;
use super::Vif;

/// `vifN`: how a report names vif N (a word).
fn vif_word(i: u32) -> heapless::String<16> {
    let mut w = heapless::String::new();
    let _ = write!(w, "vif{i}");
    w
}

/// Write `value` at `key` (relative to the domain's directory) for dom0; a failure is
/// printed (dom0's script will say what it missed).
pub(super) fn publish(rt: &'static xenpv_rt::Runtime, key: &str, value: &str) {
    let r = rt
        .devices()
        .with(|c| c.xenstore.write(key, value.as_bytes()));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => println!("net: writing {key}: {e}"),
        Err(e) => println!("net: writing {key}: {e}"),
    }
}

/// `net: vifN connected ms=… mac=… backend=… backend_domain=… ip=… gso=on|off`.
pub(super) fn connected(net: &Net, ip: Ip) {
    let c = net.connected();
    let m = net.mac();
    println!(
        "{}",
        Writer::new("net")
            .word(&vif_word(net.index()))
            .word("connected")
            .field("ms", &c.ms)
            .field(
                "mac",
                &format_args!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                )
            )
            .field("backend", &xenpv_rt::escape::Escaped(&c.backend_path))
            .field("backend_domain", &c.backend_domain)
            .field("ip", &IpText(ip))
            .field("gso", if c.gso { "on" } else { "off" })
    );
}

/// An `ip=` entry as the report prints it.
struct IpText(Ip);

impl core::fmt::Display for IpText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ip::Static {
                addr: [a, b, c, d],
                prefix,
            } => write!(f, "{a}.{b}.{c}.{d}/{prefix}"),
            Ip::Dhcp => f.write_str("dhcp"),
        }
    }
}

/// `net: limits …`, with the sizes chosen for the domain's memory (buffers in KiB: echo's
/// each way, the streaming and the small direction, UDP's queue each way, a disk's data
/// pool; the memory kept (the balloon's target if lower), the free memory and the
/// socket budget they were decided from).
pub(super) fn limits(l: &Limits, s: &Sizes, m: Memory) {
    println!(
        "net: limits tcp_idle={}s head_timeout={}s syn_timeout={}s per_peer={} tcp_listen={} tcp_max={} reassembly_timeout={}ms echo_kib={} stream_kib={} small_kib={} udp_kib={} disk_pool_kib={} memory_kib={} free_kib={} budget_kib={}",
        l.idle_ms / 1000,
        l.head_ms / 1000,
        l.syn_ms / 1000,
        l.per_peer,
        l.listen,
        l.max,
        REASSEMBLY_TIMEOUT_MS,
        s.echo >> 10,
        s.stream >> 10,
        s.small >> 10,
        s.udp >> 10,
        s.disk_pool * 4,
        m.kept() >> 10,
        m.free >> 10,
        s.budget >> 10,
    );
}

/// A DHCP vif: once its lease is bound, `net: vifN dhcp address=A/P`, and the address
/// published at `data/xenpv-app/vifN-ip` (dom0's script reads it); a lease lost (looked
/// at each second) is said and unpublished, a new one announced. Never returns.
pub(super) async fn dhcp(rt: &'static xenpv_rt::Runtime, net: &Net, ip: Ip) {
    if ip != Ip::Dhcp {
        return core::future::pending::<()>().await;
    }
    let mut key: heapless::String<32> = heapless::String::new();
    let _ = write!(key, "data/xenpv-app/vif{}-ip", net.index());
    loop {
        net.wait_config_up().await;
        let Some(cidr) = net.ipv4() else {
            continue;
        };
        println!(
            "{}",
            Writer::new("net")
                .word(&vif_word(net.index()))
                .word("dhcp")
                .field("address", &cidr)
        );
        let mut addr: heapless::String<24> = heapless::String::new();
        let _ = write!(addr, "{}", cidr.address());
        publish(rt, &key, &addr);
        while net.ipv4() == Some(cidr) {
            embassy_time::Timer::after_secs(1).await;
        }
        if net.ipv4().is_none() {
            println!("net: vif{} dhcp lease lost", net.index());
            publish(rt, &key, "");
        }
    }
}

/// What happened to the vifs' devices (for `net: served`).
#[derive(Default)]
pub(super) struct Tally {
    detached: Cell<u64>,
    reattached: Cell<u64>,
}

/// A vif's device events as they come: `net: vifN detached …` when the runtime has
/// closed it (its backend went away), `net: vifN reattached …` when a backend returned.
/// Never returns.
pub(super) async fn events(net: &Net, t: &Tally) {
    let mut ev = net.events();
    let vif = vif_word(net.index());
    loop {
        match ev.next().await {
            VifEvent::Detached {
                pages_kept,
                backend_state,
                closed_ms,
            } => {
                t.detached.set(t.detached.get() + 1);
                println!(
                    "{}",
                    Writer::new("net")
                        .word(&vif)
                        .word("detached")
                        .field("backend_state", backend_state)
                        .field("closed_ms", &closed_ms)
                        .field("pages_kept", &pages_kept)
                        .field("events_lost", &ev.lost())
                );
            }
            VifEvent::Reattached { ms } => {
                t.reattached.set(t.reattached.get() + 1);
                let c = net.connected();
                println!(
                    "{}",
                    Writer::new("net")
                        .word(&vif)
                        .word("reattached")
                        .field("ms", &ms)
                        .field("backend", &xenpv_rt::escape::Escaped(&c.backend_path))
                );
            }
            VifEvent::Resumed { epoch, ms } => {
                let c = net.connected();
                println!(
                    "{}",
                    Writer::new("net")
                        .word(&vif)
                        .word("resumed")
                        .field("epoch", &epoch)
                        .field("ms", &ms)
                        .field("backend", &xenpv_rt::escape::Escaped(&c.backend_path))
                );
            }
        }
    }
}

/// The counter lines printed when the appliance stops: the services', the listeners',
/// the fragments' (every vif's summed), then each vif's device counters.
pub(super) fn served(c: &Counters, vifs: &[Vif], files: &DiskFiles, t: &Tally) {
    println!(
        "{}",
        Writer::new("net")
            .word("served")
            .field("udp_echoed", &c.udp_echoed.get())
            .field("udp_dropped", &c.udp_dropped.get())
            .field("tcp_echoed_bytes", &c.tcp_echoed.get())
            .field("discarded_bytes", &c.discarded.get())
            .field("http_requests", &c.http_requests.get())
            .field("http_bytes", &c.http_bytes.get())
            .field("detached", &t.detached.get())
            .field("reattached", &t.reattached.get())
            .field("file_errors", &files.errors())
            .field("disk_trips", &files.trips())
    );
    let mut l = ListenerStats::default();
    for v in vifs {
        for s in [v.echo.stats(), v.discard.stats(), v.http.stats()] {
            l.accepted += s.accepted;
            l.timed_out_handshake += s.timed_out_handshake;
            l.at_limit += s.at_limit;
            l.no_memory += s.no_memory;
            l.peak = l.peak.max(s.peak);
            l.refused_per_peer += s.refused_per_peer;
        }
    }
    println!(
        "net: tcp conns={} pool_peak={} pool_full={} no_memory={} refused_peer={} timed_out_handshake={} timed_out_head={} timed_out_idle={} timed_out_closing={}",
        l.accepted,
        l.peak,
        l.at_limit,
        l.no_memory + c.no_memory.get(),
        l.refused_per_peer,
        l.timed_out_handshake,
        c.timed_out_head.get(),
        c.timed_out_idle.get(),
        c.timed_out_closing.get()
    );
    let mut f = FragCounts::default();
    for v in vifs {
        let x = v.net.frag_counts();
        f.seen += x.seen;
        f.reassembled += x.reassembled;
        f.dropped += x.dropped;
        f.no_slot += x.no_slot;
        f.expired += x.expired;
        f.pending += x.pending;
    }
    println!(
        "{}",
        Writer::new("net")
            .word("frags")
            .field("seen", &f.seen)
            .field("reassembled", &f.reassembled)
            .field("frags_dropped", &f.dropped)
            .field("no_slot", &f.no_slot)
            .field("expired", &f.expired)
            .field("pending", &f.pending)
    );
    println!(
        "net: work checksum_steps={} too_large={}",
        c.checksum_steps.get(),
        c.too_large.get()
    );
    for v in vifs {
        vif_counters(&v.net);
    }
}

/// A vif's device counters (summed across its re-attaches).
fn vif_counters(net: &Net) {
    let c = net.counters();
    println!(
        "{}",
        Writer::new("net")
            .word(&vif_word(net.index()))
            .field("tx_packets", &c.tx_packets)
            .field("rx_packets", &c.rx_packets)
            .field("tx_bytes", &c.tx_bytes)
            .field("rx_bytes", &c.rx_bytes)
            .field("tx_gso", &c.tx_gso)
            .field("tx_in_place", &c.tx_in_place)
            .field("tx_copied", &c.tx_copied)
            .field("rx_multi", &c.rx_multi)
            .field("notifies", &c.notifies)
            .field("refused", &c.refused)
            .field("failed", &c.failed)
            .field("tx_dropped", &c.tx_dropped)
            .field("bad_checksums", &c.bad_checksums)
    );
}
