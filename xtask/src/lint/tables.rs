//! One lint policy: the root's `[workspace.lints.*]` tables and the `[lints.*]` tables of
//! runner/Cargo.toml and xtask/Cargo.toml say the same, line for line (comments, blank
//! lines, spaces and the order of the tables and their lines aside); and no crate repeats
//! one of the table's lints at the table's level in a `#![warn(…)]`-style attribute (an
//! attribute that changes a level, such as an `allow` with its reason, is a crate's own).

use super::source::{blank, rust_files, shown, tokens};
use std::collections::BTreeMap;
use std::path::Path;

/// The manifest holding the policy, and the two that must repeat it.
const ROOT: &str = "Cargo.toml";
const COPIES: &[&str] = &["runner/Cargo.toml", "xtask/Cargo.toml"];

/// A manifest's lint tables: `rust`, `clippy`, … → their lines, sorted.
pub type Tables = BTreeMap<String, Vec<String>>;

/// The lint tables of a manifest: sections named `[{prefix}lints.NAME]`.
pub fn tables(manifest: &str, prefix: &str) -> Tables {
    let head = format!("[{prefix}lints.");
    let mut out = Tables::new();
    let mut current: Option<String> = None;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            current = line
                .strip_prefix(&head)
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string);
            if let Some(c) = &current {
                out.entry(c.clone()).or_default();
            }
        } else if let (Some(c), false) = (&current, line.is_empty()) {
            let normal: String = line.split_whitespace().collect();
            out.entry(c.clone()).or_default().push(normal);
        }
    }
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

/// What differs between two sets of tables, line by line.
pub fn differences(policy: &Tables, copy: &Tables) -> Vec<String> {
    let mut out = Vec::new();
    let none = Vec::new();
    for name in policy
        .keys()
        .chain(copy.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (a, b) = (
            policy.get(name).unwrap_or(&none),
            copy.get(name).unwrap_or(&none),
        );
        for l in a.iter().filter(|l| !b.contains(l)) {
            out.push(format!("[lints.{name}] lacks `{l}`"));
        }
        for l in b.iter().filter(|l| !a.contains(l)) {
            out.push(format!(
                "[lints.{name}] has `{l}`, which the policy has not"
            ));
        }
    }
    out
}

/// The table's lints with their levels: (`missing_docs`, `warn`), (`clippy::…`, `deny`).
pub fn levels(policy: &Tables) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (tool, lines) in policy {
        for line in lines {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let level = value.split('"').nth(1).unwrap_or_default().to_string();
            let path = if tool == "rust" {
                name.to_string()
            } else {
                format!("{tool}::{name}")
            };
            out.push((path, level));
        }
    }
    out
}

/// The inner lint attributes of `src` that repeat a lint of the table at its level.
pub fn repeated(src: &str, levels: &[(String, String)]) -> Vec<String> {
    let t = tokens(&blank(src));
    let text = |k: usize| t.get(k).map_or("", |x| x.text.as_str());
    let mut out = Vec::new();
    for i in 0..t.len() {
        if (text(i), text(i + 1), text(i + 2), text(i + 4)) != ("#", "!", "[", "(") {
            continue;
        }
        let level = text(i + 3);
        let mut k = i + 5;
        let mut path = String::new();
        while k < t.len() && text(k) != ")" {
            if text(k) == "," {
                path.clear();
            } else {
                path.push_str(text(k));
            }
            k += 1;
            if matches!(text(k), "," | ")") && levels.iter().any(|(p, l)| *p == path && l == level)
            {
                out.push(format!("line {}: #![{level}({path})]", t[i].line));
            }
        }
    }
    out
}

/// The problems: each way a copy differs from the root's policy.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).map_err(|e| format!("{p}: {e}"));
    let policy = tables(&read(ROOT)?, "workspace.");
    if policy.is_empty() {
        return Ok(vec![format!("{ROOT}: no [workspace.lints] tables")]);
    }
    let mut problems = Vec::new();
    let levels = levels(&policy);
    for file in rust_files(root, super::file_length::DIRS) {
        let src = std::fs::read_to_string(root.join(&file)).unwrap_or_default();
        for r in repeated(&src, &levels) {
            problems.push(format!(
                "{}: {r} repeats the lint table: drop it",
                shown(&file)
            ));
        }
    }
    for c in COPIES {
        let copy = tables(&read(c)?, "");
        for d in differences(&policy, &copy) {
            problems.push(format!(
                "{c}: {d} (the policy is {ROOT}'s [workspace.lints])"
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_TOML: &str = "[workspace]\nmembers = []\n\n[workspace.lints.rust]\n# why\nmissing_docs = \"warn\"\nunused_qualifications=\"warn\"\n\n[workspace.lints.clippy]\nundocumented_unsafe_blocks = \"deny\"\n[profile.dev]\npanic = \"abort\"\n";

    #[test]
    fn the_same_tables_in_another_order_agree() {
        let copy = "[package]\nname = \"x\"\n[lints.clippy]\nundocumented_unsafe_blocks = \"deny\"\n\n[lints.rust]\nunused_qualifications = \"warn\"\nmissing_docs = \"warn\" # docs\n";
        let p = tables(ROOT_TOML, "workspace.");
        assert_eq!(p["rust"].len(), 2);
        assert!(!p.contains_key("dev"));
        assert!(differences(&p, &tables(copy, "")).is_empty());
    }

    #[test]
    fn attributes_repeating_the_table_are_found() {
        let mut root = ROOT_TOML.to_string();
        root.push_str("[workspace.lints.rustdoc]\nbroken_intra_doc_links = \"deny\"\n");
        let l = levels(&tables(&root, "workspace."));
        assert!(l.contains(&("missing_docs".into(), "warn".into())));
        assert!(l.contains(&("clippy::undocumented_unsafe_blocks".into(), "deny".into())));
        let src = "//! x\n#![no_std]\n#![forbid(unsafe_code)]\n#![warn(missing_docs)]\n\
                   #![allow(missing_docs)]\n#![deny(rustdoc::broken_intra_doc_links, clippy::undocumented_unsafe_blocks)]\n";
        let r = repeated(src, &l);
        assert_eq!(
            r,
            [
                "line 4: #![warn(missing_docs)]",
                "line 6: #![deny(rustdoc::broken_intra_doc_links)]",
                "line 6: #![deny(clippy::undocumented_unsafe_blocks)]"
            ]
        );
    }

    #[test]
    fn a_missing_or_extra_lint_is_named() {
        let copy = "[lints.rust]\nunused_qualifications = \"warn\"\nunsafe_code = \"forbid\"\n";
        let d = differences(&tables(ROOT_TOML, "workspace."), &tables(copy, ""));
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d
            .iter()
            .any(|x| x.contains("lacks `missing_docs=\"warn\"`")));
        assert!(d.iter().any(|x| x.contains("[lints.clippy] lacks")));
        assert!(d.iter().any(|x| x.contains("has `unsafe_code=\"forbid\"`")));
    }
}
