//! The guests stay `no_std`: no crate in a guest's normal dependency graph may have its
//! `std` feature on. Cargo unifies features per workspace and target, and the guests
//! build for the host triple, so one host-side crate that asks for `bitflags/std` (say)
//! would link std into every guest; the root workspace leaves the host tools out for that
//! reason (see the root Cargo.toml), and this check keeps it so.
//!
//! It reads `cargo tree -e normal,features --prefix depth` for the guests and fails on
//! any `feature "std"` (or `"use_std"`) node, naming the crate and the path to it from
//! the guest. Proc-macro crates run in the compiler, on the host: their subtrees may use
//! std and are skipped.
use std::process::Command;

/// The guest packages of the root workspace (the appliance and the examples).
const GUESTS: &[&str] = &[
    "xenpv-app",
    "hello-unikernel",
    "read-file-unikernel",
    "http-server-example",
];

/// Features that mean "link std".
const STD_FEATURES: &[&str] = &["feature \"std\"", "feature \"use_std\""];

/// The lint step: run [`check`]; on failure say why and add the step to `failed`.
pub fn lint(failed: &mut Vec<&'static str>) {
    if let Err(e) = check() {
        eprintln!("   lint: {e}");
        failed.push("no std in the guests");
    }
}

/// Run the check over the root workspace's guests.
pub fn check() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let triple = host_triple()?;
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(crate::root()).arg("tree");
    for g in GUESTS {
        cmd.args(["-p", g]);
    }
    cmd.args([
        "-e",
        "normal,features",
        "--prefix",
        "depth",
        "--target",
        &triple,
    ]);
    println!(
        "   lint: no std feature in the guests (cargo tree -e normal,features -p {})",
        GUESTS.join(" -p ")
    );
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let leaks = leaks(&String::from_utf8_lossy(&out.stdout));
    if leaks.is_empty() {
        return Ok(());
    }
    for l in &leaks {
        eprintln!("std leaks into a guest: {l}");
    }
    Err(format!("{} std feature(s) in the guests", leaks.len()))
}

/// The host's target triple (`rustc -vV`), which the guests build for.
fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV names no host".into())
}

/// One line of `--prefix depth` output: its depth and the node.
fn parse(line: &str) -> Option<(usize, &str)> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    Some((line[..digits].parse().ok()?, &line[digits..]))
}

/// Every std feature node outside proc-macro subtrees, as `crate feature "std"` and the
/// path from the guest down to it (`a -> b -> ...`).
fn leaks(tree: &str) -> Vec<String> {
    let lines: Vec<(usize, &str)> = tree.lines().filter_map(parse).collect();
    let mut path: Vec<&str> = Vec::new();
    let mut skip_below: Option<usize> = None;
    let mut found = Vec::new();
    for (i, &(depth, node)) in lines.iter().enumerate() {
        if skip_below.is_some_and(|d| depth > d) {
            continue;
        }
        skip_below = None;
        path.truncate(depth);
        path.push(node);
        if node.contains("(proc-macro)") {
            skip_below = Some(depth);
            continue;
        }
        let feeds_proc_macro = lines
            .get(i + 1)
            .is_some_and(|&(d, n)| d == depth + 1 && n.contains("(proc-macro)"));
        if STD_FEATURES.iter().any(|f| node.contains(f)) && !feeds_proc_macro {
            let names: Vec<&str> = path.iter().map(|n| n.trim_end_matches(" (*)")).collect();
            found.push(format!("{node}, via {}", names.join(" -> ")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::leaks;

    #[test]
    fn a_std_feature_is_named_with_its_path() {
        let tree = "0app v0.1.0\n1x86_64 feature \"instructions\"\n2x86_64 v0.15.2\n\
                    3bitflags feature \"std\"\n4bitflags v2.13.2\n";
        let l = leaks(tree);
        assert_eq!(l.len(), 1);
        assert!(l[0].starts_with("bitflags feature \"std\""), "{l:?}");
        assert!(l[0].contains("app v0.1.0 -> x86_64 feature"), "{l:?}");
    }

    #[test]
    fn proc_macro_subtrees_may_use_std() {
        let tree = "0app v0.1.0\n1defmt-macros v1.2.0 (proc-macro)\n\
                    2thiserror feature \"std\"\n3thiserror v2.0.21\n\
                    1serde_derive feature \"std\"\n2serde_derive v1.0.0 (proc-macro)\n\
                    1heapless v0.9.1\n";
        assert_eq!(leaks(tree), Vec::<String>::new());
    }

    #[test]
    fn a_std_feature_after_a_proc_macro_sibling_still_counts() {
        let tree = "0app v0.1.0\n1m v1.0.0 (proc-macro)\n2x feature \"std\"\n\
                    1byteorder feature \"std\"\n2byteorder v1.5.0\n";
        assert_eq!(leaks(tree).len(), 1);
    }
}
