//! Progress for long work (the repository's xtask shows it for big initrds and the boot
//! matrix): a bar on a terminal, nothing in CI logs (stderr not a terminal, or `CI` set),
//! where the PASS/FAIL lines say enough.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether progress bars are drawn: stderr is a terminal and `CI` is not set. Callers
/// that print a line through a hidden bar print it themselves when this is false.
pub fn shown() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar of `len` units with `what` in front, counting bytes (with an ETA) when `bytes`,
/// else items (with the elapsed time); hidden when not [`shown`].
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
