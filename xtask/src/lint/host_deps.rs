//! The host tools read the guest through the shared contract alone: of this repository's
//! crates, `xenpv-run`, `xtask` and `xenbox-peer` depend (normal and build dependencies)
//! only on `xenpv-contract` and the runner library, and `xenpv-contract` on none; so they
//! never compile the platform, paging, Xen's bindings or smoltcp. Exceptions in
//! [`ALLOWED`], each with why.

use super::module_graph::{metadata, Graph};
use std::path::Path;

/// The host tools.
const HOST_TOOLS: &[&str] = &["xenpv-run", "xtask", "xenbox-peer"];

/// What they may depend on of this repository's crates.
const HOST_MAY_USE: &[&str] = &["xenpv-contract", "xenpv-run"];

/// The shared crate, which depends on no other crate of the repository.
const CONTRACT: &str = "xenpv-contract";

/// Host-tool dependencies allowed for now: (tool, crate, why). An allowance that no
/// longer matches a dependency is itself a problem, so the list only shrinks.
pub const ALLOWED: &[(&str, &str, &str)] = &[];

/// The problems in a crate graph (local crates only).
pub fn problems(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for tool in HOST_TOOLS {
        for dep in g.get(*tool).into_iter().flatten() {
            if HOST_MAY_USE.contains(&dep.as_str()) {
                continue;
            }
            match ALLOWED.iter().position(|(t, d, _)| t == tool && d == dep) {
                Some(k) => used[k] = true,
                None => out.push(format!(
                    "{tool} depends on {dep}: a host tool uses {CONTRACT} (and the runner) only"
                )),
            }
        }
    }
    for dep in g.get(CONTRACT).into_iter().flatten() {
        out.push(format!("{CONTRACT} depends on {dep}: it must stand alone"));
    }
    for (k, (t, d, _)) in ALLOWED.iter().enumerate() {
        if !used[k] {
            out.push(format!(
                "{t} → {d} is allowed but gone: drop it from ALLOWED"
            ));
        }
    }
    out
}

/// The problems in the repository.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    Ok(problems(&metadata(root)?.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    }

    #[test]
    fn host_tools_use_the_contract_only() {
        let mut ok: Vec<(&str, &str)> = vec![
            ("xtask", "xenpv-run"),
            ("xtask", "xenpv-contract"),
            ("xenpv-run", "xenpv-contract"),
        ];
        ok.extend(ALLOWED.iter().map(|(t, d, _)| (*t, *d)));
        assert!(
            problems(&graph(&ok)).is_empty(),
            "{:?}",
            problems(&graph(&ok))
        );
        let mut bad = ok.clone();
        bad.push(("xenbox-peer", "xenpv-rt"));
        bad.push(("xenpv-contract", "xenpv-abi"));
        let p = problems(&graph(&bad));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("xenbox-peer depends on xenpv-rt"));
        assert!(p[1].contains("xenpv-contract depends on xenpv-abi"));
        let p = problems(&graph(&ok[..3]));
        assert_eq!(p.len(), ALLOWED.len(), "stale allowances are named: {p:?}");
    }
}
