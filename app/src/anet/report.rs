//! The appliance's report lines (the boot rows match them, as the polled appliance
//! prints them) and what it publishes in xenstore for dom0.

use core::fmt::Write as _;
use xenpv_appliance::admission::Limits;
use xenpv_appliance::config::Ip;
use xenpv_appliance::frag::REASSEMBLY_TIMEOUT_MS;
use xenpv_appliance_service::Counters;
use xenpv_contract::report::Writer;
use xenpv_rt::device::Net;
use xenpv_rt::println;
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

/// Read `key` from xenstore, as text (empty if absent or unreadable).
fn read(rt: &'static xenpv_rt::Runtime, key: &str) -> heapless::String<128> {
    let mut s = heapless::String::new();
    if let Ok(Ok(v)) = rt.devices().with(|c| c.xenstore.read(key)) {
        let v = v.strip_suffix(b"\0").unwrap_or(&v);
        for &b in v {
            let _ = s.push(if b.is_ascii_graphic() { b as char } else { '?' });
        }
    }
    s
}

/// `net: vifN connected ms=… mac=… backend=… backend_domain=… ip=… gso=on|off`.
pub(super) fn connected(rt: &'static xenpv_rt::Runtime, net: &Net, ms: u64, ip: Ip) {
    let i = net.index();
    let mut k: heapless::String<64> = heapless::String::new();
    let _ = write!(k, "device/vif/{i}/backend");
    let backend = read(rt, &k);
    k.clear();
    let _ = write!(k, "device/vif/{i}/backend-id");
    let domid = read(rt, &k);
    // What netfront asked for when the backend offers it (scatter-gather and TCP
    // segmentation both).
    let mut gso = true;
    for f in ["feature-sg", "feature-gso-tcpv4"] {
        let mut key: heapless::String<128> = heapless::String::new();
        let _ = write!(key, "{backend}/{f}");
        gso &= read(rt, &key) == "1";
    }
    let m = net.mac();
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
            .field("backend", &xenpv_rt::escape::Escaped(backend.as_str()))
            .field("backend_domain", &domid.as_str())
            .field("ip", &IpText(ip))
            .field("gso", if gso { "on" } else { "off" })
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

/// `net: limits …`.
pub(super) fn limits(l: &Limits) {
    println!(
        "net: limits tcp_idle={}s head_timeout={}s syn_timeout={}s per_peer={} tcp_listen={} tcp_max={} reassembly_timeout={}ms",
        l.idle_ms / 1000,
        l.head_ms / 1000,
        l.syn_ms / 1000,
        l.per_peer,
        l.listen,
        l.max,
        REASSEMBLY_TIMEOUT_MS
    );
}

/// A DHCP vif: once its lease is bound, `net: vifN dhcp address=A/P`, and the address
/// published at `data/xenpv-app/vifN-ip` (dom0's script reads it). Never returns.
pub(super) async fn dhcp(rt: &'static xenpv_rt::Runtime, net: &Net, ip: Ip) {
    if ip == Ip::Dhcp {
        net.wait_config_up().await;
        if let Some(cidr) = net.ipv4() {
            println!(
                "{}",
                Writer::new("net")
                    .word(&vif_word(net.index()))
                    .word("dhcp")
                    .field("address", &cidr)
            );
            let (mut key, mut addr): (heapless::String<32>, heapless::String<24>) =
                (heapless::String::new(), heapless::String::new());
            let _ = write!(key, "data/xenpv-app/vif{}-ip", net.index());
            let _ = write!(addr, "{}", cidr.address());
            publish(rt, &key, &addr);
        }
    }
    core::future::pending::<()>().await
}

/// The counter lines printed when the appliance stops.
pub(super) fn served(c: &Counters, vifs: &[Vif], files: &DiskFiles) {
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
            .field("detached", &0u64)
            .field("reattached", &0u64)
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
        }
    }
    println!(
        "net: tcp conns={} pool_peak={} pool_full={} no_memory={} refused_peer={} timed_out_handshake={} timed_out_head={} timed_out_idle={} timed_out_closing={}",
        l.accepted,
        l.peak,
        l.at_limit,
        l.no_memory,
        0,
        l.timed_out_handshake,
        c.timed_out_head.get(),
        c.timed_out_idle.get(),
        c.timed_out_closing.get()
    );
    println!(
        "net: work checksum_steps={} too_large={}",
        c.checksum_steps.get(),
        c.too_large.get()
    );
}
