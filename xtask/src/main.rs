//! `cargo xtask`: build the sample unikernel and the example, boot them under Xen, test
//! and measure them. Booting itself is the `xenpv-run` library's (runner/), shared with
//! the `xenpv-run` command that consumers use.
#![forbid(unsafe_code)]
mod bench;
mod boottest;
mod cargo;
mod compile_fail;
mod consumer;
mod disks;
mod doc_examples;
mod initrd;
mod lint;
mod picture;
mod run;
mod std_leak;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

pub use xenpv_run::{progress, provision, qemu, xenbox};

/// Build the xenpv-rt sample unikernel, boot it under Xen 4.17 in QEMU, test it.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the sample app and boot it under Xen 4.17 in QEMU (or xl with --xl).
    Run(run::RunArgs),
    /// Boot the app (with two module areas mapped) and draw the address space it reports,
    /// in the terminal and as target/xtask/layout.svg.
    Layout(picture::LayoutArgs),
    /// Build the Xen-in-a-box (Debian's Linux dom0 + xl) from pinned packages, cached.
    Box,
    /// rustfmt --check, clippy -D warnings and rustdoc -D warnings, for the guest
    /// workspace and the host tools' own; then the structure checks (one lint policy,
    /// function and file lengths, no cycle among crates or modules, the docs' links).
    Lint(lint::LintArgs),
    /// Lint, host unit tests, builds, and boot tests under Xen; ends with
    /// "N passed, N failed".
    Test(boottest::TestArgs),
    /// Check that the grant API's misuses (freeing a granted page, a CopyPtr outliving
    /// its page, copy flags apart from the sides, ending a reserved reference through the
    /// table) and entry!'s (a wrong signature, two entry points) do not compile; `test`
    /// runs this too.
    CompileFail,
    /// Build each Rust example in the platform's docs as a guest (xenpv-rt cannot run
    /// doctests: it brings its own `_start` and panic handler); `test` runs this too.
    DocExamples,
    /// Figures: `bench stress` (also plain `bench`) boots the vmap stress batched and
    /// with one MMU op per hypercall; `bench boot` measures boot times, as dom0 over
    /// memory sizes and start-of-day modes and as domUs next to Linux; `bench net` the
    /// network appliance next to a Linux PV domU in the box; `bench blk` storage (the
    /// app's blkfront next to Linux's, each on a fresh disk in the box); `bench migrate`
    /// save/restore and migration downtime; `bench density` how many appliances and
    /// how many Linux domUs fit, each at its smallest memory that serves.
    Bench(bench::BenchArgs),
}

/// Options shared by the commands that boot a checked initrd.
#[derive(Args, Clone, Debug)]
pub struct InitrdArgs {
    /// Pass a checked N MiB image the app verifies.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=initrd::MAX_MIB))]
    pub initrd_mib: Option<u64>,
}

fn main() -> ExitCode {
    // The runner keeps the unpacked Xen and the box under target/xtask for this checkout.
    if std::env::var_os("XENPV_RUN_CACHE").is_none() {
        std::env::set_var("XENPV_RUN_CACHE", root().join("target/xtask"));
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run::run_command(a),
        Cmd::Test(a) => boottest::test_command(a),
        Cmd::Bench(a) => bench::bench_command(a),
        Cmd::Layout(a) => picture::layout_command(a),
        Cmd::CompileFail => compile_fail::run().map(|(p, f)| {
            println!("compile-fail: {p} passed, {f} failed");
            u8::from(f > 0)
        }),
        Cmd::DocExamples => doc_examples::run().map(|(p, f)| {
            println!("doc examples: {p} passed, {f} failed");
            u8::from(f > 0)
        }),
        Cmd::Lint(a) => lint::run(a).map(|()| {
            println!("lint: PASS");
            0
        }),
        Cmd::Box => xenbox::ensure().map(|b| {
            println!("box: {} and {}", b.vmlinuz.display(), b.initramfs.display());
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_are_checked_and_named() {
        // Small domains are taken (from 1 MiB, as xl takes them); 0 and past 64 GiB not.
        assert!(Cli::try_parse_from(["xtask", "run", "--memory", "9"]).is_ok());
        for bad in ["0", "65537"] {
            let e = Cli::try_parse_from(["xtask", "run", "--memory", bad])
                .err()
                .expect("refused");
            assert!(e.to_string().contains("--memory"), "{e}");
        }
        let e = Cli::try_parse_from(["xtask", "run", "--bogus"])
            .err()
            .expect("refused");
        assert!(e.to_string().contains("--bogus"), "{e}");
        assert!(Cli::try_parse_from(["xtask", "run", "--memory", "512", "--xen-log"]).is_ok());
    }

    #[test]
    fn run_network_options_need_the_box_and_a_valid_count() {
        let ok = |args: &[&str]| Cli::try_parse_from(args).is_ok();
        assert!(ok(&["xtask", "run", "--domu", "--net"]));
        assert!(ok(&["xtask", "run", "--domu", "--net", "4"]));
        let both = ["xtask", "run", "--domu", "--net", "--dom0-script", "s"];
        assert!(ok(&both));
        for bad in ["0", "5"] {
            let e = Cli::try_parse_from(["xtask", "run", "--domu", "--net", bad])
                .err()
                .expect("refused");
            let msg = e.to_string();
            assert!(msg.contains("--net") && msg.contains("1..=4"), "{msg}");
        }
        for alone in [
            &["--net"][..],
            &["--dom0-script", "s.sh"][..],
            &["--disk", "d.img"][..],
        ] {
            let args = [&["xtask", "run"][..], alone].concat();
            let e = Cli::try_parse_from(args).err().expect("refused");
            assert!(e.to_string().contains("--domu"), "{e}");
        }
    }

    #[test]
    fn run_disks_repeat_and_bad_ones_are_named() {
        let ok = |args: &[&str]| Cli::try_parse_from(args).is_ok();
        let two = [
            "xtask", "run", "--domu", "--disk", "a.img", "--disk", "b.img,ro",
        ];
        assert!(ok(&two));
        assert!(ok(&[
            "xtask",
            "run",
            "--domu",
            "--net",
            "--disk",
            "a,b.img,rw"
        ]));
        let e = Cli::try_parse_from(["xtask", "run", "--domu", "--disk", "a.img,r"])
            .err()
            .expect("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("--disk") && msg.contains("a.img,r") && msg.contains("FILE,ro"),
            "{msg}"
        );
        let e = Cli::try_parse_from(["xtask", "run", "--domu", "--disk", ""])
            .err()
            .expect("refused");
        assert!(e.to_string().contains("no file named"), "{e}");
    }
}
