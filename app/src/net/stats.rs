//! What the appliance counts, and the counter lines it prints at the end.

use xenpv_contract::report::Writer;
use xenpv_rt::net::netfront::Netfront;
use xenpv_rt::println;
use xenpv_rt::xenpv_net::frag;

/// What the appliance counts (printed at the end, and on request).
#[derive(Default, Clone, Copy)]
pub(super) struct Stats {
    pub(super) udp_echoed: u64,
    pub(super) udp_dropped: u64,
    pub(super) tcp_echoed: u64,
    pub(super) discarded: u64,
    pub(super) http_requests: u64,
    pub(super) http_bytes: u64,
    pub(super) detached: u64,
    pub(super) reattached: u64,
    pub(super) file_errors: u64,
    /// The disk's breaker (`GET /files/…` refused with a 503 for a while after a disk
    /// call failed), shared by every vif; its trips are printed.
    pub(super) disk: xenpv_appliance::breaker::Breaker,
    /// TCP connections taken (past the handshake's first step), and the most sockets a
    /// port's pool held.
    pub(super) tcp_conns: u64,
    pub(super) pool_peak: usize,
    /// Times a pool wanted a listener more but was at `tcp_max=`, or the heap had no
    /// room for one's buffers.
    pub(super) pool_full: u64,
    pub(super) no_memory: u64,
    /// Connections reset for their peer's limit (`per_peer=`).
    pub(super) refused_peer: u64,
    /// Connections given up: too long in SYN-RECEIVED, no whole head in time, idle,
    /// closed but not gone.
    pub(super) timed_out_handshake: u64,
    pub(super) timed_out_head: u64,
    pub(super) timed_out_idle: u64,
    pub(super) timed_out_closing: u64,
    /// Rounds whose ingress budget ran out (frames left in the ring for the next).
    pub(super) ingress_cut: u64,
    /// Rounds in which a datagram to echo in fragments waited for the fragmenter.
    pub(super) udp_deferred: u64,
    /// Rounds in which a file checksum took a step, and `/bytes/N` over the limit.
    pub(super) checksum_steps: u64,
    pub(super) too_large: u64,
    /// Time spent waiting for an event or a timer, and how many waits.
    pub(super) idle_ns: u64,
    pub(super) waits: u64,
}

/// The appliance's counter lines (the boot tests match them), the fragment ledgers of
/// every vif (`frags`) summed.
pub(super) fn print<'a>(st: &Stats, frags: impl Iterator<Item = &'a frag::Ledger>) {
    println!(
        "{}",
        Writer::new("net")
            .word("served")
            .field("udp_echoed", &st.udp_echoed)
            .field("udp_dropped", &st.udp_dropped)
            .field("tcp_echoed_bytes", &st.tcp_echoed)
            .field("discarded_bytes", &st.discarded)
            .field("http_requests", &st.http_requests)
            .field("http_bytes", &st.http_bytes)
            .field("detached", &st.detached)
            .field("reattached", &st.reattached)
            .field("file_errors", &st.file_errors)
            .field("disk_trips", &st.disk.trips())
    );
    println!(
        "net: tcp conns={} pool_peak={} pool_full={} no_memory={} refused_peer={} timed_out_handshake={} timed_out_head={} timed_out_idle={} timed_out_closing={}",
        st.tcp_conns, st.pool_peak, st.pool_full, st.no_memory, st.refused_peer, st.timed_out_handshake, st.timed_out_head, st.timed_out_idle, st.timed_out_closing
    );
    let mut fc = frag::Counts::default();
    let mut pending = 0;
    for l in frags {
        let c = l.counts;
        fc.seen += c.seen;
        fc.reassembled += c.reassembled;
        fc.dropped += c.dropped;
        fc.no_slot += c.no_slot;
        fc.expired += c.expired;
        pending += l.pending();
    }
    println!(
        "{}",
        Writer::new("net")
            .word("frags")
            .field("seen", &fc.seen)
            .field("reassembled", &fc.reassembled)
            .field("frags_dropped", &fc.dropped)
            .field("no_slot", &fc.no_slot)
            .field("expired", &fc.expired)
            .field("pending", &pending)
    );
    println!(
        "net: work ingress_cut={} udp_deferred={} checksum_steps={} too_large={}",
        st.ingress_cut, st.udp_deferred, st.checksum_steps, st.too_large
    );
    println!(
        "net: idle_ms={} waits={} (time spent waiting for an event or a timer)",
        st.idle_ns / 1_000_000,
        st.waits
    );
}

/// A connected vif's device counters, printed before it closes.
pub(super) fn print_vif(index: u32, nic: &Netfront) {
    let (t, c) = (nic.traffic(), nic.counters());
    println!(
        "{}",
        Writer::new("net")
            .word(&super::vif_word(index))
            .field("tx_packets", &t.tx_packets)
            .field("rx_packets", &t.rx_packets)
            .field("tx_bytes", &t.tx_bytes)
            .field("rx_bytes", &t.rx_bytes)
            .field("tx_gso", &t.tx_gso)
            .field("rx_multi", &t.rx_multi)
            .field("notifies", &t.notifies)
            .field("refused", &c.refused())
            .field("failed", &c.failed)
            .field("tx_dropped", &nic.dropped())
            .field("bad_checksums", &nic.bad_checksums())
    );
}
