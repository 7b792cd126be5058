//! Progress for long work (big initrds, the boot matrix): a bar on a terminal, nothing in
//! CI logs (stderr not a terminal, or `CI` set), where the PASS/FAIL lines say enough.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub fn shown() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar of `len` units with `what` in front; hidden when not [`shown`].
pub fn bar(len: u64, what: &str, bytes: bool) -> ProgressBar {
    let b = ProgressBar::with_draw_target(
        Some(len),
        if shown() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let tpl = if bytes {
        "{msg} [{bar:40}] {bytes}/{total_bytes} {eta}"
    } else {
        "{msg} [{bar:40}] {pos}/{len} {elapsed}"
    };
    b.set_style(
        ProgressStyle::with_template(tpl)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}
