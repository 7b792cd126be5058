//! The crate's modules form a DAG: no module reaches (through `crate::` paths) a module
//! that reaches it back. The planners are read bottom-up (`ops`, `layout`, then
//! `tables`, `frames`, ... up to `takeover`); a cycle would make that order a lie.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `module -> modules it names as crate::x`, from the code lines of `src/*.rs` (comments
/// and doc comments skipped, `use crate::{a, b}` groups included).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let m = name.strip_suffix(".rs")?.to_string();
            (m != "lib").then_some(m)
        })
        .collect();
    let mut g = BTreeMap::new();
    for m in &mods {
        let text = std::fs::read_to_string(src.join(format!("{m}.rs"))).unwrap();
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                    None => vec![rest],
                };
                for n in names {
                    let n: String = n
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if n != *m && mods.contains(&n) {
                        out.insert(n);
                    }
                }
            }
        }
        g.insert(m.clone(), out);
    }
    g
}

/// A cycle through `g`, if there is one (depth-first search with colours).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        v: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == v) {
            let mut c = path[i..].to_vec();
            c.push(v.to_string());
            return Some(c);
        }
        if done.contains(v) {
            return None;
        }
        path.push(v.to_string());
        for w in &g[v] {
            if let Some(c) = visit(g, w, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(v.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|v| visit(g, v, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_form_no_cycle() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        g["takeover"].contains("direct"),
        "the scan sees imports: {g:?}"
    );
    assert_eq!(cycle(&g), None, "module graph: {g:?}");
}

#[test]
fn a_cycle_is_found() {
    let edge = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    let g = BTreeMap::from([edge("direct", "takeover"), edge("takeover", "direct")]);
    assert_eq!(
        cycle(&g),
        Some(vec!["direct".into(), "takeover".into(), "direct".into()])
    );
}
