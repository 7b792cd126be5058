//! Density rows (issue 29): the network appliance in a small domain, its buffers and
//! connection pools sized to the memory there is, and a memory it cannot fit in refused
//! at startup with one clear line and a status.
use super::net::smoke_row;
use crate::boottest::reports::like;
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;
use xenpv_contract::status::AppStatus;

/// The smallest memory the appliance is shown to serve at, in MiB.
const SMALL_MIB: u64 = 16;
/// A memory the appliance does not fit in (its vif's pages, the heap's reserve and the
/// least socket buffers), in MiB.
const TOO_SMALL_MIB: u64 = 14;

/// The density rows, in the order they run.
pub fn rows() -> Vec<BootTest> {
    let mut v = vec![small(), small_files(), too_small(), too_large_buffers()];
    for b in &mut v {
        b.domu = true;
        b.timeout_s = b.timeout_s.max(240);
    }
    v
}

/// The appliance as a domU at [`SMALL_MIB`]: every service of `domu-net-smoke` (UDP and
/// TCP echo, discard, a 404), and a 32 MiB `GET /bytes/N` (twice its memory) checked byte
/// for byte; its buffers are smaller than the defaults and no socket went without
/// memory.
fn small() -> BootTest {
    let mut b = smoke_row("domu-net-16mib", 32 << 20);
    b.memory_mib = SMALL_MIB;
    b.checks.extend([
        Check::Report(
            like("net: limits memory_kib=16384")
                .within("stream_kib", 4.0, 512.0)
                .at_least("tcp_max", 16.0),
        ),
        Check::Report(like("net: tcp no_memory=0")),
    ]);
    b
}

/// `domu-blk-files` (a dozen files from 0 bytes to 64 MiB served from an ext4 disk,
/// each checked in dom0) at [`SMALL_MIB`]: the disk's data pool is sized down with the
/// buffers.
fn small_files() -> BootTest {
    let mut b = super::blk::files();
    b.name = "domu-blk-files-16mib".into();
    b.memory_mib = SMALL_MIB;
    b.checks.extend([
        Check::Report(like("net: limits memory_kib=16384").within("disk_pool_kib", 64.0, 2048.0)),
        Check::Report(like("net: tcp no_memory=0")),
    ]);
    b
}

/// What every refusal row checks: the one line `net: does not fit: <what> need …`, the
/// appliance's memory status and no panic.
fn refused(name: &str, cmdline: &str, mib: u64, what: &'static str) -> BootTest {
    let mut b = t(
        name,
        Image::app(),
        cmdline,
        AppStatus::Memory.into(),
        vec![
            Check::Regex(what),
            Check::NotContains("panicked".into()),
            Check::NotContains("net: serving".into()),
            Check::ExitLine,
        ],
    );
    b.vifs = 1;
    b.memory_mib = mib;
    b
}

/// The appliance at [`TOO_SMALL_MIB`]: its vif, the heap's reserve and the least
/// buffers do not fit, and it says so before taking any of it.
fn too_small() -> BootTest {
    let mut b = refused(
        "domu-net-14mib-refused",
        "net ip=169.254.100.2/24",
        TOO_SMALL_MIB,
        r"net: does not fit: (sockets|vifs, disks and heap reserve) need \d+ KiB \(\d+ MiB\), \d+ KiB free of 14 MiB after \d+ KiB of vif pages, disk pools and heap reserve",
    );
    b.checks.push(has("xenpv-rt: exit status 10"));
    b
}

/// At [`SMALL_MIB`], `sock_kib=1024` (the full-size streaming buffers) asks more than
/// there is: refused, naming the override.
fn too_large_buffers() -> BootTest {
    refused(
        "domu-net-16mib-sock-kib-refused",
        "net ip=169.254.100.2/24 sock_kib=1024",
        SMALL_MIB,
        r"net: does not fit: sockets \(sock_kib=\) need \d+ KiB \(\d+ MiB\), \d+ KiB free of 16 MiB after",
    )
}
