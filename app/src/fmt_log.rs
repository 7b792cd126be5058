//! What a Rust developer reaches for first (`fmt_log` on the command line): a line made
//! with `alloc::format!` and lines through the `log` facade, all on the console.
extern crate alloc;

use xenpv_rt::log;
use xenpv_rt::println;

/// Print one `alloc::format!` report (`fmt: alloc-format pages=N hex=0x2a`), one
/// `log::info!` line and one `log::debug!` line (dropped unless `log=debug`).
pub fn run(pages: u64) {
    let line = alloc::format!("fmt: alloc-format pages={pages} hex={:#x}", 42);
    println!("{line}");
    log::info!("log facade: {pages} pages");
    log::debug!("log facade: debug shown");
}
