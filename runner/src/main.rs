//! `xenpv-run`: boot a Xen PV kernel and exit with its status.
//!
//! ```text
//! xenpv-run KERNEL [GUEST WORDS…] [--domu | --xl] [--memory MiB] [--initrd FILE] …
//! xenpv-run new NAME [--template default|net]
//! ```
//!
//! Run as `peer` (its file name) or `xenpv-run dom0-peer …`, it is dom0's test client
//! instead (see [`xenpv_run::peer`]): a `--domu` run carries itself into the box as a
//! dom0 script's `$PEER`.
//!
//! As a cargo runner (`runner = "xenpv-run"` in `.cargo/config.toml`), `cargo run`
//! boots the crate's kernel and `cargo run -- exit=3 --domu` passes words to the guest
//! and options to the runner. A binary without Xen's ELF notes (a `cargo test` binary)
//! is run natively with its arguments as they are.
#![forbid(unsafe_code)]
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xenpv_run::cli::BootArgs;
use xenpv_run::{provision, qemu, starter, xenbox, xl};

/// Boot a Xen PV kernel (a xenpv-rt unikernel, or any PV kernel) under Xen 4.17 in QEMU
/// and exit with its status: the guest's own (101 a panic, 102 a refused start of day,
/// 103 a fault), 124 when --timeout hits, 125 when the machine stops without a status,
/// 2 for a usage or setup error. With --dom0-script: the guest's status if nonzero, else
/// the script's.
#[derive(Parser, Debug)]
#[command(
    name = "xenpv-run",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a new unikernel crate in ./NAME: Cargo.toml, build.rs, .cargo/config.toml
    /// (this runner, DEFMT_LOG), src/main.rs and a host-tested src/lib.rs; with
    /// --template net, a network appliance and its dom0 check script.
    New(NewArgs),
}

#[derive(Args, Debug)]
struct NewArgs {
    /// The crate's name (and directory).
    name: String,
    /// Depend on the xenpv-rt crate at PATH (its runtime/xenpv-rt directory); default:
    /// the checkout this runner was built from.
    #[arg(long, value_name = "PATH", conflicts_with = "git")]
    path: Option<PathBuf>,
    /// Depend on xenpv-rt from a git repository instead.
    #[arg(long, value_name = "URL")]
    git: Option<String>,
    /// What the crate is: `default`, a kernel that prints, maps memory and exits with
    /// the status asked for (`cargo run -- exit=3`); `net`, a network appliance (TCP
    /// echo on port 7, `GET /hello` on port 80) whose services `cargo test` runs over a
    /// loopback device, with dom0-check.sh, which checks it from dom0
    /// (`cargo run -- --domu --net --dom0-script dom0-check.sh ip=169.254.100.2/24`, with
    /// --peer).
    #[arg(long, value_enum, default_value_t = starter::Template::Default)]
    template: starter::Template,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The kernel ELF.
    #[arg(required = true)]
    kernel: Option<PathBuf>,
    /// Words for the guest's command line (after the kernel; after `--` for words that
    /// start with a dash).
    guest: Vec<String>,
    /// The domU's name (default: the kernel file's name).
    #[arg(long, requires = "domu")]
    name: Option<String>,
    #[command(flatten)]
    boot: BootArgs,
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Run as the box's `/run/peer` (or `xenpv-run dom0-peer …`): dom0's test client.
    if let Some(args) = xenpv_run::peer::called_as_peer(&argv) {
        std::process::exit(xenpv_run::peer::run(&args));
    }
    // cargo hands its runner every binary it runs: a test binary is not a PV kernel.
    if let Some(first) = argv.get(1) {
        let p = PathBuf::from(first);
        if p.is_file() && matches!(xenpv_run::elf::is_xen_kernel(&p), Ok(false)) {
            return native(&p, &argv[2..]);
        }
    }
    let cli = Cli::parse_from(argv);
    let r = match cli.cmd {
        Some(Cmd::New(n)) => new(n),
        None => run(cli.run),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xenpv-run: {e}");
            ExitCode::from(2)
        }
    }
}

/// Run a program that is not a PV kernel as it is, with its status.
fn native(p: &std::path::Path, args: &[std::ffi::OsString]) -> ExitCode {
    match std::process::Command::new(p).args(args).status() {
        Ok(st) => ExitCode::from(st.code().map_or(125, |c| c.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("xenpv-run: {}: {e}", p.display());
            ExitCode::from(2)
        }
    }
}

fn new(n: NewArgs) -> Result<u8, String> {
    let source = match (n.path, n.git) {
        (Some(p), _) => starter::Source::Path(p),
        (None, Some(url)) => starter::Source::Git(url),
        (None, None) => starter::Source::this_checkout().ok_or(
            "this runner was not built from a checkout of xenpv-rt: name one with --path or --git",
        )?,
    };
    let dir = PathBuf::from(&n.name);
    starter::write(&dir, &n.name, &source, n.template)?;
    match n.template {
        starter::Template::Default => println!(
            "xenpv-run: wrote {0}/ — `cd {0} && cargo run` boots it, `cargo test` tests its library",
            n.name
        ),
        starter::Template::Net => println!(
            "xenpv-run: wrote {0}/ — `cd {0} && cargo run -- --domu --net --dom0-script \
             dom0-check.sh ip=169.254.100.2/24` boots and checks it, `cargo test` tests its services",
            n.name
        ),
    }
    Ok(0)
}

fn run(a: RunArgs) -> Result<u8, String> {
    let kernel = a.kernel.expect("clap requires it");
    if !kernel.is_file() {
        return Err(format!("{}: no such file", kernel.display()));
    }
    let o = a.boot;
    o.check()?;
    let cmdline = a.guest.join(" ");
    let base = if o.domu { 128 } else { 256 };
    let memory = o.memory.unwrap_or(base + o.initrd_mib());
    xenpv_run::elf::check_memory(&kernel, memory)?;
    let name = a.name.unwrap_or_else(|| {
        kernel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "xenpv-guest".into())
    });
    if o.xl {
        return xl::run(
            &name,
            &kernel,
            &cmdline,
            o.initrd.as_deref(),
            memory,
            o.dry_run,
            o.timeout,
        );
    }
    let xen = provision::ensure()?;
    let domu = if o.domu {
        let mut b = xenbox::ensure_for(o.toolstack())?;
        // The dom0 script's $PEER: --peer FILE, else this very program (see
        // xenpv_run::peer).
        let stub = kernel.with_extension("xenpv-run.peer-stub");
        b.peer = Some(match o.peer.clone() {
            Some(file) => file,
            None => xenpv_run::peer::carried(std::env::current_exe(), &stub)?,
        });
        Some(std::sync::Arc::new(b))
    } else {
        None
    };
    let extras = o.extras();
    let role = match domu {
        Some(_) => qemu::Role::Domu {
            extras: &extras,
            disks: &o.disk,
        },
        None => qemu::Role::Dom0,
    };
    let log = kernel.with_extension("xenpv-run.log");
    let _ = std::io::stdout().flush();
    let out = qemu::run(
        &xen,
        &qemu::Boot {
            domu,
            name,
            image: kernel,
            cmdline,
            initrd: o.initrd.clone(),
            memory_mib: memory,
            timeout: Duration::from_secs(o.timeout),
            stream: o.stream(),
            log,
        },
        role,
    );
    Ok(qemu::report(&out, "xenpv-run"))
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
    fn guest_words_and_runner_options_mix_as_cargo_passes_them() {
        let c =
            Cli::try_parse_from(["xenpv-run", "k.elf", "exit=3", "--domu", "split=1G"]).unwrap();
        assert!(c.run.boot.domu);
        assert_eq!(c.run.guest, ["exit=3", "split=1G"]);
        let c = Cli::try_parse_from(["xenpv-run", "k.elf", "--", "--odd"]).unwrap();
        assert_eq!(c.run.guest, ["--odd"]);
        let e = Cli::try_parse_from(["xenpv-run", "k.elf", "--bogus"]).unwrap_err();
        assert!(e.to_string().contains("--bogus"));
        assert_eq!(e.exit_code(), 2);
        let c = Cli::try_parse_from(["xenpv-run", "new", "hello"]).unwrap();
        assert!(matches!(c.cmd, Some(Cmd::New(NewArgs { ref name, .. })) if name == "hello"));
        let Some(Cmd::New(n)) = c.cmd else { panic!() };
        assert_eq!(n.template, starter::Template::Default);
        let c = Cli::try_parse_from(["xenpv-run", "new", "app", "--template", "net"]).unwrap();
        let Some(Cmd::New(n)) = c.cmd else { panic!() };
        assert_eq!(n.template, starter::Template::Net);
        let e = Cli::try_parse_from(["xenpv-run", "new", "app", "--template", "web"]).unwrap_err();
        assert!(
            e.to_string().contains("default") && e.to_string().contains("net"),
            "{e}"
        );
    }

    #[test]
    fn net_and_the_dom0_script_need_the_box() {
        let c = Cli::try_parse_from(["xenpv-run", "k.elf", "exit=3", "--domu", "--net"]).unwrap();
        assert_eq!(c.run.boot.net, Some(1));
        assert_eq!(c.run.guest, ["exit=3"]);
        let c = Cli::try_parse_from(["xenpv-run", "k.elf", "--domu", "--net", "3"]).unwrap();
        assert_eq!(c.run.boot.net, Some(3));
        let c = Cli::try_parse_from(["xenpv-run", "k.elf", "--domu", "--net=2", "events"]).unwrap();
        assert_eq!(
            (c.run.boot.net, c.run.guest.as_slice()),
            (Some(2), &["events".to_string()][..])
        );
        let c = Cli::try_parse_from(["xenpv-run", "k.elf", "--domu"]).unwrap();
        assert_eq!((c.run.boot.net, c.run.boot.dom0_script), (None, None));
        for bad in ["0", "5", "many"] {
            let e =
                Cli::try_parse_from(["xenpv-run", "k.elf", "--domu", "--net", bad]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("--net") && msg.contains("1..=4"), "{msg}");
            assert_eq!(e.exit_code(), 2);
        }
        let e = Cli::try_parse_from(["xenpv-run", "k.elf", "--net"]).unwrap_err();
        assert!(e.to_string().contains("--domu"), "{e}");
        let e = Cli::try_parse_from(["xenpv-run", "k.elf", "--dom0-script", "s.sh"]).unwrap_err();
        assert!(e.to_string().contains("--domu"), "{e}");
        let c = Cli::try_parse_from([
            "xenpv-run",
            "k.elf",
            "--domu",
            "--dom0-script",
            "s.sh",
            "--net",
        ])
        .unwrap();
        assert_eq!(c.run.boot.dom0_script, Some(PathBuf::from("s.sh")));
        assert_eq!(c.run.boot.net, Some(1));
    }

    #[test]
    fn the_peer_is_a_file_carried_as_peer() {
        let c = Cli::try_parse_from([
            "xenpv-run",
            "k.elf",
            "--domu",
            "--dom0-script",
            "s.sh",
            "--peer",
            "/no/such/peer",
        ])
        .unwrap();
        assert_eq!(
            c.run.boot.peer.as_deref(),
            Some(std::path::Path::new("/no/such/peer"))
        );
        let mut b = c.run.boot;
        b.dom0_script = None;
        let e = b.check().unwrap_err();
        assert!(e.starts_with("--peer /no/such/peer: no such file"), "{e}");
    }

    #[test]
    fn disks_repeat_need_the_box_and_are_checked() {
        let c = Cli::try_parse_from([
            "xenpv-run",
            "k.elf",
            "blk",
            "--domu",
            "--disk",
            "/tmp/d0.img",
            "--disk=/tmp/d1.img,ro",
        ])
        .unwrap();
        assert_eq!(c.run.guest, ["blk"]);
        let got: Vec<(&str, bool)> = c
            .run
            .boot
            .disk
            .iter()
            .map(|d| (d.path.to_str().unwrap(), d.read_only))
            .collect();
        assert_eq!(got, [("/tmp/d0.img", false), ("/tmp/d1.img", true)]);
        let c = Cli::try_parse_from(["xenpv-run", "k.elf", "--domu"]).unwrap();
        assert!(c.run.boot.disk.is_empty());
        let e = Cli::try_parse_from(["xenpv-run", "k.elf", "--domu", "--disk", "d.img,rx"])
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("--disk") && msg.contains("d.img,rx") && msg.contains("FILE,ro"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["xenpv-run", "k.elf", "--disk", "d.img"]).unwrap_err();
        assert!(e.to_string().contains("--domu"), "{e}");
        // Five parse (clap does not count them); the run refuses the fifth by name.
        let five: Vec<String> = (0..5)
            .map(|i| format!("--disk=/nonexistent/{i}.img"))
            .collect();
        let c = Cli::try_parse_from(
            ["xenpv-run", "k.elf", "--domu"]
                .into_iter()
                .map(String::from)
                .chain(five),
        )
        .unwrap();
        let e = xenbox::check_disks(&c.run.boot.disk).unwrap_err();
        assert!(
            e.contains("/nonexistent/4.img") && e.contains("limit is 4"),
            "{e}"
        );
        let e = xenbox::check_disks(&c.run.boot.disk[..1]).unwrap_err();
        assert_eq!(e, "--disk /nonexistent/0.img: no such file");
    }
}
