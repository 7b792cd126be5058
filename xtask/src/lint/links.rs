//! Every relative link in README.md and docs/*.md leads somewhere: the file exists, and
//! a `#anchor` into a Markdown file names one of its headings (GitHub's slugs). Links
//! inside code (fenced blocks, `inline code`) are not links.

use std::path::{Path, PathBuf};

/// The Markdown files checked, relative to the root.
pub fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("README.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| PathBuf::from("docs").join(e.file_name()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        docs.sort();
        out.extend(docs);
    }
    out
}

/// The link targets in Markdown text, with their lines: `[text](target)` and
/// `[label]: target`; code spans and fenced blocks skipped.
pub fn links(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in md.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let prose = without_code_spans(line);
        if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some((_, target)) = rest.split_once("]: ") {
                out.push((n + 1, target.split_whitespace().next().unwrap_or("").into()));
                continue;
            }
        }
        let mut s = prose.as_str();
        while let Some(k) = s.find("](") {
            let rest = &s[k + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            out.push((n + 1, target.trim_matches(['<', '>']).to_string()));
            s = &rest[end..];
        }
    }
    out
}

fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(k, _)| k % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ")
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`),
/// spaces as `-`.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (a repeated heading gets `-1`, `-2`, …).
pub fn anchors(md: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#').replace('`', "").as_str());
        let n = seen.entry(base.clone()).or_default();
        out.push(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// The problems: each relative link whose file or heading is not there.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    for doc in documents(root) {
        let text = std::fs::read_to_string(root.join(&doc))
            .map_err(|e| format!("{}: {e}", doc.display()))?;
        for (line, target) in links(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dir = doc.parent().unwrap_or(Path::new(""));
            let path = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            let at = format!("{}:{line}: {target}", doc.display());
            if !root.join(&path).exists() {
                problems.push(format!("{at}: no such file"));
                continue;
            }
            let is_md = path.extension().is_some_and(|x| x == "md");
            if anchor.is_empty() || !is_md {
                continue;
            }
            let md = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            if !anchors(&md).iter().any(|a| a == anchor) {
                problems.push(format!("{at}: no such heading in {}", path.display()));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_outside_code_are_found() {
        let md = "See [a](docs/a.md#x) and `[b](no.md)`.\n```\n[c](no.md)\n```\n[d]: ../e.rs\n[w](https://x.y)\n";
        let got: Vec<_> = links(md).into_iter().map(|(_, t)| t).collect();
        assert_eq!(got, ["docs/a.md#x", "../e.rs", "https://x.y"]);
    }

    #[test]
    fn headings_become_github_anchors() {
        assert_eq!(
            slug("Layout of this repository"),
            "layout-of-this-repository"
        );
        assert_eq!(
            slug("The box: dom0 scripts (`xl`)"),
            "the-box-dom0-scripts-xl"
        );
        let a = anchors("# Top\n## Notes\n```\n# not a heading\n```\n## Notes\n");
        assert_eq!(a, ["top", "notes", "notes-1"]);
    }

    #[test]
    fn a_broken_link_is_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-links-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(
            dir.join("docs/a.md"),
            "# A\n## Part two\n[back](../README.md)\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("README.md"),
            "[ok](docs/a.md#part-two) [gone](docs/b.md) [bad](docs/a.md#part-three) [self](#readme)\n# Readme\n",
        )
        .unwrap();
        let p = check(&dir).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("docs/b.md: no such file"), "{p:?}");
        assert!(p[1].contains("#part-three: no such heading"), "{p:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
