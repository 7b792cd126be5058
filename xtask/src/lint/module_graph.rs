//! No cycle in the structure drawing: among the crates of the three workspaces (their
//! normal and build dependencies on each other, from `cargo metadata`; dev-dependencies
//! such as a crate's test models are not part of the drawing), and among the modules of
//! each crate (module `a` depends on `b` when a `use` or a path in `a`'s files names
//! `crate::b…`, `super::…` or `self::…` landing in `b`; inline modules count as their
//! file's, `#[cfg(test)]` modules are left out). A cycle is reported by naming its members; known ones are in [`ALLOWED`].

use super::source::{blank, cfg_test, close, shown, skip_attributes, tokens, Token};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module cycles allowed for now: (crate, its modules in order, why).
pub const ALLOWED: &[(&str, &[&str], &str)] = &[];

/// A directed graph on names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The cycles of `g`: its strongly connected components of more than one node, each
/// sorted (Tarjan's algorithm).
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// What one file says: its `mod name;` declarations and inline modules (each under the
/// inline modules around it), and the module paths it names (from where it names them).
#[derive(Debug, Default)]
pub struct FileScan {
    /// `mod name;`: (the inline modules around it, name).
    pub decls: Vec<(Vec<String>, String)>,
    /// `mod name { … }`: the inline path, name included.
    pub inline: Vec<Vec<String>>,
    /// (the inline modules around it, a path starting with `crate`, `super` or `self`).
    pub refs: Vec<(Vec<String>, Vec<String>)>,
}

/// Read one file's modules and paths.
pub fn scan(src: &str) -> FileScan {
    let t = tokens(&blank(src));
    let text = |k: usize| t.get(k).map_or("", |x: &Token| x.text.as_str());
    let mut out = FileScan::default();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < t.len() {
        let here: Vec<String> = open.iter().map(|(n, _)| n.clone()).collect();
        // Test modules are not part of the drawing: neither followed nor read.
        if let Some((after, _)) = cfg_test(&t, i) {
            let (m, _) = skip_attributes(&t, after);
            match (text(m), text(m + 2)) {
                ("mod", ";") => i = m + 3,
                ("mod", "{") => i = close(&t, m + 2) + 1,
                _ => i = after,
            }
            continue;
        }
        match text(i) {
            "mod" if text(i + 2) == ";" => out.decls.push((here, text(i + 1).into())),
            "mod" if text(i + 2) == "{" => {
                let mut p = here;
                p.push(text(i + 1).into());
                out.inline.push(p);
                open.push((text(i + 1).into(), depth + 1));
            }
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                while open.last().is_some_and(|(_, d)| *d > depth) {
                    open.pop();
                }
            }
            "use" => {
                let mut paths = Vec::new();
                i = use_tree(&t, i + 1, Vec::new(), &mut paths);
                for p in paths.into_iter().filter(|p| is_relative(p)) {
                    out.refs.push((here.clone(), p));
                }
                continue;
            }
            "crate" | "super" | "self"
                if text(i + 1) == "::" && !matches!(text(i.wrapping_sub(1)), "::" | "$") =>
            {
                let mut p = vec![text(i).to_string()];
                let mut k = i + 1;
                while text(k) == "::"
                    && text(k + 1).starts_with(|c: char| c.is_alphabetic() || c == '_')
                {
                    p.push(text(k + 1).into());
                    k += 2;
                }
                out.refs.push((here, p));
                i = k;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn is_relative(p: &[String]) -> bool {
    matches!(
        p.first().map(String::as_str),
        Some("crate" | "super" | "self")
    )
}

/// Parse a use tree at `i` (after `use`, or inside a group), pushing each full path;
/// returns the index after it.
fn use_tree(
    t: &[Token],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let text = |k: usize| t.get(k).map_or("", |x: &Token| x.text.as_str());
    loop {
        match text(i) {
            "::" => i += 1,
            "{" => {
                i += 1;
                while i < t.len() && text(i) != "}" {
                    i = use_tree(t, i, prefix.clone(), out);
                    if text(i) == "," {
                        i += 1;
                    }
                }
                return i + 1;
            }
            "*" => {
                out.push(prefix);
                return i + 1;
            }
            s if s.starts_with(|c: char| c.is_alphanumeric() || c == '_') => {
                prefix.push(s.into());
                i += 1;
                if text(i) == "::" {
                    continue;
                }
                if text(i) == "as" {
                    i += 2;
                }
                out.push(prefix);
                return i;
            }
            _ => {
                if !prefix.is_empty() {
                    out.push(prefix);
                }
                return i + 1;
            }
        }
    }
}

/// One crate's module graph, named by module path (`crate` for the root), from its root
/// file (relative to `root`).
pub fn crate_graph(root: &Path, crate_root: &Path) -> Result<Graph, String> {
    // Every file module, and what it says.
    let mut files: BTreeMap<Vec<String>, (PathBuf, FileScan)> = BTreeMap::new();
    let mut todo = vec![(Vec::new(), crate_root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let Ok(src) = std::fs::read_to_string(root.join(&file)) else {
            continue; // a module behind a cfg of another target, say: nothing to read
        };
        let s = scan(&src);
        for (inline, name) in &s.decls {
            let mut child = path.clone();
            child.extend(inline.iter().cloned());
            child.push(name.clone());
            todo.push((child, child_file(root, &file, inline, name)));
        }
        files.insert(path, (file, s));
    }
    let mut known: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    for (path, (_, s)) in &files {
        for inline in &s.inline {
            known.insert([path.clone(), inline.clone()].concat());
        }
    }
    let name = |p: &[String]| {
        if p.is_empty() {
            "crate".to_string()
        } else {
            p.join("::")
        }
    };
    let mut g = Graph::new();
    for (path, (_, s)) in &files {
        g.entry(name(path)).or_default();
        for (inline, r) in &s.refs {
            let from = [path.clone(), inline.clone()].concat();
            let Some(target) = resolve(&from, r, &known) else {
                continue;
            };
            // The file module the target lives in.
            let file_mod = (0..=target.len())
                .rev()
                .map(|k| &target[..k])
                .find(|p| files.contains_key(*p))
                .unwrap_or(&[]);
            if file_mod != path.as_slice() {
                g.entry(name(path)).or_default().insert(name(file_mod));
            }
        }
    }
    Ok(g)
}

/// The module a path lands in (the longest known prefix), seen from module `from`.
fn resolve(from: &[String], r: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String> = match r.first()?.as_str() {
        "crate" => Vec::new(),
        _ => from.to_vec(),
    };
    let mut rest = &r[1..];
    if r[0] == "super" {
        base.pop()?;
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    let full: Vec<String> = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len())
        .rev()
        .map(|k| full[..k].to_vec())
        .find(|p| known.contains(p))
}

/// The file of `mod name;` written in `file` inside the inline modules `inline`.
fn child_file(root: &Path, file: &Path, inline: &[String], name: &str) -> PathBuf {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut dir = if matches!(&*stem, "lib" | "main" | "mod") || dir.ends_with("src/bin") {
        dir.to_path_buf()
    } else {
        dir.join(&*stem)
    };
    dir.extend(inline);
    let flat = dir.join(format!("{name}.rs"));
    if root.join(&flat).is_file() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

/// A crate target whose modules are checked: the package, the target's name and its root.
pub(super) struct Target {
    package: String,
    name: String,
    src: PathBuf,
}

/// The three workspaces' manifests.
const MANIFESTS: &[&str] = &["Cargo.toml", "runner/Cargo.toml", "xtask/Cargo.toml"];

/// The crate graph (normal and build dependencies between the repository's crates) and
/// the lib and bin targets, from `cargo metadata` over the three workspaces.
pub(super) fn metadata(root: &Path) -> Result<(Graph, Vec<Target>), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (mut g, mut targets) = (Graph::new(), Vec::new());
    for m in MANIFESTS {
        let out = std::process::Command::new(&cargo)
            .current_dir(root)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .args(["--manifest-path", m])
            .output()
            .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo metadata --manifest-path {m}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("cargo metadata --manifest-path {m}: {e}"))?;
        for p in v["packages"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let deps = g.entry(name.clone()).or_default();
            for d in p["dependencies"].as_array().into_iter().flatten() {
                if d["path"].is_string() && d["kind"].as_str() != Some("dev") {
                    deps.insert(d["name"].as_str().unwrap_or_default().to_string());
                }
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let kinds: Vec<&str> = t["kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str())
                    .collect();
                if kinds.iter().any(|k| k.ends_with("lib") || *k == "bin") {
                    let src = Path::new(t["src_path"].as_str().unwrap_or_default());
                    targets.push(Target {
                        package: name.clone(),
                        name: t["name"].as_str().unwrap_or_default().to_string(),
                        src: src.strip_prefix(root).unwrap_or(src).to_path_buf(),
                    });
                }
            }
        }
    }
    targets.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    targets.dedup_by(|a, b| a.src == b.src);
    Ok((g, targets))
}

/// The problems: each crate cycle, each module cycle not allowed, and each allowance that
/// no longer matches a cycle.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let (crates, targets) = metadata(root)?;
    let mut problems: Vec<String> = cycles(&crates)
        .into_iter()
        .map(|c| format!("crates depend on each other in a cycle: {}", c.join(", ")))
        .collect();
    let mut used = vec![false; ALLOWED.len()];
    for t in &targets {
        for c in cycles(&crate_graph(root, &t.src)?) {
            let allowed = ALLOWED.iter().position(|(k, m, _)| {
                *k == t.name && m.len() == c.len() && m.iter().all(|x| c.iter().any(|y| y == x))
            });
            match allowed {
                Some(k) => used[k] = true,
                None => problems.push(format!(
                    "{} ({}): modules import each other in a cycle: {}",
                    t.name,
                    shown(&t.src),
                    c.join(", ")
                )),
            }
        }
    }
    for (k, (c, m, _)) in ALLOWED.iter().enumerate() {
        if !used[k] {
            problems.push(format!(
                "{c}: the cycle {} is allowed but gone: drop it from ALLOWED",
                m.join(", ")
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    }

    #[test]
    fn cycles_are_named_and_chains_are_not_cycles() {
        let g = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")]);
        assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
        let g = graph(&[
            ("abi", "x"),
            ("paging", "abi"),
            ("protocol", "abi"),
            ("rt", "paging"),
            ("rt", "protocol"),
        ]);
        assert!(cycles(&g).is_empty());
    }

    #[test]
    fn use_trees_and_paths_are_read() {
        let s = scan(
            "use crate::{a::X, b::{self, Y as Z}};\nuse super::*;\nuse std::fmt;\nmod m;\n\
             mod inner {\n    use super::c::W;\n    fn f() { crate::d::g(); \"crate::e\"; }\n}\n\
             macro_rules! m { () => { $crate::h::i() } }\n",
        );
        let refs: Vec<(String, String)> = s
            .refs
            .iter()
            .map(|(i, p)| (i.join("::"), p.join("::")))
            .collect();
        let want = [
            ("", "crate::a::X"),
            ("", "crate::b::self"),
            ("", "crate::b::Y"),
            ("", "super"),
            ("inner", "super::c::W"),
            ("inner", "crate::d::g"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(refs, want);
        assert_eq!(s.decls, vec![(vec![], "m".to_string())]);
        assert_eq!(s.inline, vec![vec!["inner".to_string()]]);
    }

    #[test]
    fn a_module_cycle_in_a_planted_crate_is_found() {
        let dir = std::env::temp_dir().join(format!("xtask-modgraph-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("paging")).unwrap();
        let files = [
            ("lib.rs", "mod paging;\nmod other;\n"),
            (
                "paging.rs",
                "mod direct;\nmod takeover;\n#[cfg(test)]\nmod tests { use super::*; }\n",
            ),
            ("paging/direct.rs", "use super::takeover::TABLE;\n"),
            ("paging/takeover.rs", "pub fn f() { super::direct::MAX; }\n"),
            ("other.rs", "use crate::paging;\n"),
        ];
        for (f, text) in files {
            std::fs::write(src.join(f), text).unwrap();
        }
        let g = crate_graph(&dir, Path::new("src/lib.rs")).unwrap();
        assert_eq!(cycles(&g), vec![vec!["paging::direct", "paging::takeover"]]);
        assert!(g["other"].contains("paging"));
        std::fs::write(src.join("paging/takeover.rs"), "pub fn f() {}\n").unwrap();
        let g = crate_graph(&dir, Path::new("src/lib.rs")).unwrap();
        assert!(cycles(&g).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
