//! `cargo xtask lint`: formatting, clippy and rustdoc, each with warnings as errors, over
//! the three workspaces (the guests' at the root, the runner's, xtask's own); then the
//! structure checks, each in a module of its own.
use std::path::Path;
use std::process::Command;

mod file_length;
mod fn_length;
mod host_deps;
mod links;
mod module_graph;
mod readme;
mod source;
mod tables;

pub use source::rust_files;

/// A structure check: what it is, and the problems it finds under the root.
type Check = fn(&Path) -> Result<Vec<String>, String>;

/// The structure checks, run after the cargo steps.
const CHECKS: &[(&str, Check)] = &[
    (
        "one lint policy (the three lint tables agree)",
        tables::check,
    ),
    ("no function over 120 lines", fn_length::check),
    ("no file over 800 lines outside tests", file_length::check),
    ("no cycle among crates or modules", module_graph::check),
    (
        "the host tools use the contract crate alone",
        host_deps::check,
    ),
    ("README.md and docs/*.md links resolve", links::check),
    (
        "the README is a map (at most 200 lines, its example the one built)",
        readme::check,
    ),
];

/// One check: a cargo invocation and what it is for.
struct Step {
    what: &'static str,
    args: &'static [&'static str],
    rustdocflags: bool,
}

const XTASK: &str = "xtask/Cargo.toml";
const RUNNER: &str = "runner/Cargo.toml";

const STEPS: &[Step] = &[
    Step {
        what: "rustfmt (guests and pure crates)",
        args: &["fmt", "--all", "--", "--check"],
        rustdocflags: false,
    },
    Step {
        what: "rustfmt (xtask)",
        args: &["fmt", "--manifest-path", XTASK, "--", "--check"],
        rustdocflags: false,
    },
    // xenpv-net's host tests turn on its `loopback` feature (std, embassy-time's std
    // driver), and so do those of the HTTP example's service (a dev-dependency); cargo
    // unifies features across one invocation for one target, and guests build for the
    // host triple, so checking them together would link std (and a second time driver)
    // into every guest that uses xenpv-net or embassy-time. Each apart (the appliance's
    // services too).
    Step {
        what: "clippy (guests and pure crates)",
        args: &[
            "clippy",
            "--workspace",
            "--exclude",
            "xenpv-net",
            "--exclude",
            "http-server-service",
            "--exclude",
            "xenpv-appliance-service",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "clippy (xenpv-net with its host-test harness)",
        args: &[
            "clippy",
            "-p",
            "xenpv-net",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "clippy (the HTTP example's service, its loopback tests)",
        args: &[
            "clippy",
            "-p",
            "http-server-service",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "clippy (the appliance's services, their loopback tests)",
        args: &[
            "clippy",
            "-p",
            "xenpv-appliance-service",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "clippy (paging with the 2014 regression feature)",
        args: &[
            "clippy",
            "-p",
            "xenpv-paging",
            "--all-targets",
            "--features",
            "regress-2014-fixmap-copy",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "rustfmt (runner)",
        args: &["fmt", "--manifest-path", RUNNER, "--", "--check"],
        rustdocflags: false,
    },
    Step {
        what: "clippy (runner)",
        args: &[
            "clippy",
            "--manifest-path",
            RUNNER,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "rustdoc (runner)",
        args: &["doc", "--manifest-path", RUNNER, "--no-deps"],
        rustdocflags: true,
    },
    Step {
        what: "clippy (xtask)",
        args: &[
            "clippy",
            "--manifest-path",
            XTASK,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        rustdocflags: false,
    },
    Step {
        what: "rustdoc",
        args: &["doc", "--workspace", "--no-deps"],
        rustdocflags: true,
    },
];

/// `cargo xtask lint`'s options.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LintArgs {
    /// Only the structure checks (no cargo steps): seconds instead of minutes.
    #[arg(long)]
    pub structure: bool,
    /// With --structure: check the tree at DIR (another checkout) instead of this one.
    #[arg(long, value_name = "DIR", requires = "structure")]
    pub root: Option<std::path::PathBuf>,
}

/// Run every step; the error names the ones that failed.
pub fn run(args: LintArgs) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut failed = Vec::new();
    let steps = if args.structure { &[][..] } else { STEPS };
    for step in steps {
        println!("   lint: {} (cargo {})", step.what, step.args.join(" "));
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(crate::root()).args(step.args);
        if step.rustdocflags {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            failed.push(step.what);
        }
    }
    if !args.structure {
        crate::std_leak::lint(&mut failed);
    }
    failed.extend(run_checks(&args.root.unwrap_or_else(crate::root)));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

/// Run the structure checks, printing each problem; the names of those that failed.
fn run_checks(root: &Path) -> Vec<&'static str> {
    let mut failed = Vec::new();
    for (what, check) in CHECKS {
        println!("   lint: {what}");
        match check(root) {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                for p in problems {
                    println!("      {p}");
                }
                failed.push(*what);
            }
            Err(e) => {
                println!("      cannot check: {e}");
                failed.push(*what);
            }
        }
    }
    failed
}
