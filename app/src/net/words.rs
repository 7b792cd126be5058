//! The appliance's command-line words (the same as the polled appliance's `net`).

use xenpv_appliance::admission::Limits;
use xenpv_appliance::breaker::DISK_TIMEOUT_MS;
use xenpv_appliance::config::{parse_ips, Ip, MAX_VIFS};
use xenpv_appliance_service::sizing::{Ask, SOCK_KIB};
use xenpv_contract::status::AppStatus;
use xenpv_rt::cmdline::IpWord;
use xenpv_rt::println;
use xenpv_rt::Cmdline;

/// What the command line asks of the appliance.
pub(super) struct Words {
    pub(super) vifs: usize,
    pub(super) ips: heapless::Vec<Ip, MAX_VIFS>,
    pub(super) limits: Limits,
    /// The sizing's overrides: `sock_kib=`, and `tcp_max=` / `tcp_listen=` as given.
    pub(super) ask: Ask,
    pub(super) files: bool,
    pub(super) disk_timeout_ms: u64,
    /// `heap-probe`: answer `GET /heap/N` (404 otherwise).
    pub(super) heap_probe: bool,
    /// `records`: the disk writer on the first disk (raw), `GET /records` checks it.
    pub(super) records: bool,
    /// `tx_copy`: long frames built aside and copied over the TX pages, not written in
    /// place (`cargo xtask bench net`'s `xenpv-copy` side measures what that costs).
    pub(super) tx_copy: bool,
}

/// The command line's words; `Err` with [`AppStatus::Usage`] for a bad one (printed).
pub(super) fn words(cmd: &Cmdline<'_>) -> Result<Words, i32> {
    let usage = |m: &dyn core::fmt::Display| {
        println!("net: {m}");
        i32::from(AppStatus::Usage)
    };
    let vifs = match cmd.u64("vifs") {
        Ok(None) => 1,
        Ok(Some(n)) if (1..=MAX_VIFS as u64).contains(&n) => n as usize,
        Ok(Some(n)) => {
            return Err(usage(&format_args!(
                "vifs={n}: the appliance brings up 1..={MAX_VIFS} vifs"
            )))
        }
        Err(e) => return Err(usage(&e)),
    };
    let ips = parse_ips(cmd.value("ip").unwrap_or("dhcp")).map_err(|e| usage(&e))?;
    if ips.len() < vifs {
        return Err(usage(&format_args!(
            "vifs={vifs} but ip= has {} entries (one per vif)",
            ips.len()
        )));
    }
    // The runtime reads ip= itself for each vif's stack: it must read what we do.
    for (i, ip) in ips.iter().enumerate().take(vifs) {
        let theirs = cmd.ip(i).map_err(|e| usage(&e))?;
        if !agree(*ip, theirs) {
            return Err(usage(&format_args!(
                "ip= entry {i}: the runtime reads {theirs:?}, the appliance {ip:?}"
            )));
        }
    }
    let mut limits = Limits::DEFAULT;
    for w in Limits::WORDS {
        match cmd.u64(w) {
            Ok(None) => {}
            Ok(Some(v)) => limits.set(w, v).map_err(|e| usage(&e))?,
            Err(e) => return Err(usage(&e)),
        }
    }
    let given = |w| cmd.value(w).is_some();
    let mut ask = Ask {
        max: given("tcp_max").then_some(limits.max),
        listen: given("tcp_listen").then_some(limits.listen),
        sock_kib: None,
    };
    let (lo, hi) = SOCK_KIB;
    match cmd.u64("sock_kib") {
        Ok(None) => {}
        Ok(Some(k)) if (lo..=hi).contains(&k) => ask.sock_kib = Some(k),
        Ok(Some(k)) => {
            return Err(usage(&format_args!(
                "sock_kib={k}: the streaming socket buffer in KiB, {lo}..={hi}"
            )))
        }
        Err(e) => return Err(usage(&e)),
    }
    let disk_timeout_ms = match cmd.u64("disk_timeout") {
        Ok(None) => DISK_TIMEOUT_MS,
        Ok(Some(ms)) if (1..=30_000).contains(&ms) => ms,
        Ok(Some(ms)) => {
            return Err(usage(&format_args!(
                "disk_timeout={ms}: milliseconds, 1..=30000"
            )))
        }
        Err(e) => return Err(usage(&e)),
    };
    if cmd.has("records") && cmd.has("files") {
        return Err(usage(
            &"records and files both want the first disk: one of them",
        ));
    }
    Ok(Words {
        vifs,
        ips,
        limits,
        ask,
        files: cmd.has("files"),
        disk_timeout_ms,
        heap_probe: cmd.has("heap-probe"),
        records: cmd.has("records"),
        tx_copy: cmd.has("tx_copy"),
    })
}

/// Does the appliance's reading of an `ip=` entry agree with the runtime's (none: DHCP)?
fn agree(ours: Ip, theirs: Option<IpWord>) -> bool {
    match (ours, theirs) {
        (Ip::Dhcp, None | Some(IpWord::Dhcp)) => true,
        (Ip::Static { addr, prefix }, Some(IpWord::Static { addr: a, prefix: p })) => {
            addr == a && prefix == p
        }
        _ => false,
    }
}
