//! The host side of xenpv-rt: boot a Xen PV kernel and return its status.
//!
//! Used by the `xenpv-run` command (and through it as a cargo runner) and by the
//! repository's `cargo xtask`: one implementation of each piece.
//!
//! - [`cli`]: the boot options `xenpv-run` and `cargo xtask run` share, and the dom0
//!   script's contract;
//! - [`provision`]: QEMU and Xen 4.17 found, or installed from Debian's packages;
//! - [`qemu`]: a kernel booted as the PV dom0 of Xen in QEMU, or as a domU of a Linux
//!   dom0 in [`xenbox`], the console streamed and the status decoded;
//! - [`xl`]: a real Xen host, through `xl create -c`;
//! - [`defmt_log`] and [`symbolize`]: the console made readable with the kernel's ELF
//!   (defmt frames decoded, fault reports turned into `function (file:line)`);
//! - [`elf`]: is this a Xen PV kernel at all;
//! - [`starter`]: a new consumer crate (`xenpv-run new`);
//! - [`peer`]: dom0's test client, carried in the runner (a dom0 script's `$PEER`).
//!
//! Statuses: the guest's own (0..=127; 101 a panic, 102 a refused start of day, 103 a
//! fault), [`qemu::EXIT_TIMEOUT`] (124) when the time limit hits, and
//! [`qemu::EXIT_NO_STATUS`] (125) when the machine stopped without one.
#![forbid(unsafe_code)]

pub mod cli;
pub mod defmt_log;
pub mod elf;
pub mod peer;
pub mod progress;
pub mod provision;
pub mod qemu;
pub mod starter;
pub mod symbolize;
pub mod xen_shadow;
pub mod xenbox;
pub mod xl;

use std::path::PathBuf;

/// Where the runner keeps what it makes once (the unpacked Xen, the box): `$XENPV_RUN_CACHE`,
/// else `$XDG_CACHE_HOME/xenpv-run`, else `~/.cache/xenpv-run`, else `./target/xenpv-run`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XENPV_RUN_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("xenpv-run");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/xenpv-run");
    }
    PathBuf::from("target/xenpv-run")
}

/// The directory source paths are shown relative to (defmt locations, fault reports):
/// the current directory, which is the crate's when cargo runs the runner.
pub fn source_root() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}
