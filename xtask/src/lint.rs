//! `cargo xtask lint`: formatting, clippy and rustdoc, each with warnings as errors, over
//! both workspaces (the guests' at the root, xtask's own).
use std::process::Command;

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
    Step {
        what: "clippy (guests and pure crates)",
        args: &[
            "clippy",
            "--workspace",
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

/// Run every step; the error names the ones that failed.
pub fn run() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut failed = Vec::new();
    for step in STEPS {
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
    crate::std_leak::lint(&mut failed);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}
