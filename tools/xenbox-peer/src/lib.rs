//! `xenbox-peer`: the dom0 side of the guest tests in the Xen-in-a-box. Run in the box's
//! Linux dom0, it maps a grant the domU published and checks its bytes (module `grant`), and
//! drives the guest appliance's network services as a client for tests and benchmarks
//! (module `net`): each network subcommand ends with one verdict line (module `verdict`) and exits
//! 0 on PASS, 1 on FAIL, 2 on a wrong argument.
//!
//! A library with one entry, [`main_with`], so that `xenpv-run` carries the same program
//! in itself (a multi-call binary: run as `peer`, it is this); the `xenbox-peer` binary
//! is a thin wrapper around it.
use args::{Parsed, Spec, Usage};
use verdict::Verdict;

mod args;
mod data;
mod disk;
mod domain_cpu;
mod grant;
mod net;
mod verdict;

/// A network subcommand: its arguments and what runs it.
struct Command {
    spec: &'static Spec,
    run: fn(&Parsed) -> Result<Verdict, Usage>,
}

/// The subcommands (network clients, disk checks, and dom0's view of a domain).
static COMMANDS: [Command; 16] = [
    Command {
        spec: &domain_cpu::SPEC,
        run: domain_cpu::run,
    },
    Command {
        spec: &disk::FILL,
        run: disk::run_fill,
    },
    Command {
        spec: &disk::VERIFY,
        run: disk::run_verify,
    },
    Command {
        spec: &disk::records::RECORDS,
        run: disk::records::run,
    },
    Command {
        spec: &net::echo_hold::SPEC,
        run: net::echo_hold::run,
    },
    Command {
        spec: &net::http_body::SPEC,
        run: net::http_body::run,
    },
    Command {
        spec: &net::wait_up::SPEC,
        run: net::wait_up::run,
    },
    Command {
        spec: &net::udp_echo::SPEC,
        run: net::udp_echo::run,
    },
    Command {
        spec: &net::tcp_echo::SPEC,
        run: net::tcp_echo::run,
    },
    Command {
        spec: &net::tcp_send::SPEC,
        run: net::tcp_send::run,
    },
    Command {
        spec: &net::http_get::SPEC,
        run: net::http_get::run,
    },
    Command {
        spec: &net::udp_rate::SPEC,
        run: net::udp_rate::run,
    },
    Command {
        spec: &net::tcp_hold::SPEC,
        run: net::tcp_hold::run,
    },
    Command {
        spec: &net::rtt_under_load::SPEC,
        run: net::rtt_under_load::run,
    },
    Command {
        spec: &net::frag_flood::SPEC,
        run: net::frag_flood::run,
    },
    Command {
        spec: &net::udp_poll::SPEC,
        run: net::udp_poll::run,
    },
];

fn usage() -> String {
    let mut s = String::from("usage:\n");
    s += &format!("  {}\n", grant::SYNOPSIS);
    for c in &COMMANDS {
        s += &format!("  {}\n", c.spec.synopsis());
    }
    s += "\nEach network subcommand prints one verdict line,\n  \
          peer: <subcommand> PASS key=value ...   or\n  \
          peer: <subcommand> FAIL <reason> key=value ...\n\
          (progress lines before it start with `peer: <subcommand>: `) and exits 0 on PASS,\n\
          1 on FAIL, 2 on a wrong argument. `xenbox-peer <subcommand> --help` tells more.\n";
    s
}

/// Find the network subcommand `name`.
fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.spec.name == name)
}

/// Parse `args` for `c` and run it.
fn run_command(c: &Command, args: &[String]) -> Result<Verdict, Usage> {
    (c.run)(&args::parse(c.spec, args)?)
}

/// Run the program on its arguments (without the program's own name); returns the exit
/// status: 0 on PASS, 1 on FAIL, 2 on a wrong argument.
///
/// The `xenbox-peer` binary is this function over its arguments; `xenpv-run` calls it
/// too, when run as `peer` (the box's `/run/peer`), so the runner carries dom0's test
/// client in itself.
///
/// ```
/// assert_eq!(xenbox_peer::main_with(&["--help".to_string()]), 0);
/// assert_eq!(xenbox_peer::main_with(&["no-such-subcommand".to_string()]), 2);
/// ```
pub fn main_with(argv: &[String]) -> i32 {
    let Some(first) = argv.first() else {
        eprint!("{}", usage());
        return 2;
    };
    match first.as_str() {
        "-h" | "--help" | "help" => {
            print!("{}", usage());
            0
        }
        "grant" => grant::main(&argv[1..]),
        name => match command(name) {
            Some(c) => match run_command(c, &argv[1..]) {
                Ok(v) => {
                    println!("{v}");
                    if v.passed() {
                        0
                    } else {
                        1
                    }
                }
                Err(Usage::Help) => {
                    print!("{}", c.spec.help());
                    0
                }
                Err(Usage::Bad(m)) => {
                    eprintln!("xenbox-peer {name}: {m}");
                    eprintln!("try 'xenbox-peer {name} --help'");
                    2
                }
            },
            // The original form, `xenbox-peer DOMID REF FNV`.
            None if argv.len() == 3 => grant::legacy(argv),
            None => {
                eprintln!("xenbox-peer: unknown subcommand {name:?}");
                eprint!("{}", usage());
                2
            }
        },
    }
}
