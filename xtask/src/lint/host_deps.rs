//! The host tools read the guest through the shared contract alone: of this repository's
//! crates, `xenpv-run`, `xtask` and `xenbox-peer` compile (through normal and build
//! dependencies, directly or through one another) only `xenpv-contract` and each other,
//! and `xenpv-contract` depends on none; so they never compile the platform, paging, Xen's
//! bindings or smoltcp. A host tool may use another (xtask the runner library, the runner
//! the peer it carries) because that one is held to the same rule: the check follows
//! every path, and names it. Exceptions in [`ALLOWED`], each with why.

use super::module_graph::{metadata, Graph};
use std::collections::BTreeMap;
use std::path::Path;

/// The host tools: each may depend on the others (which are checked the same way).
const HOST_TOOLS: &[&str] = &["xenpv-run", "xtask", "xenbox-peer"];

/// The shared crate, which depends on no other crate of the repository.
const CONTRACT: &str = "xenpv-contract";

/// Host-tool dependencies allowed for now: (tool, crate, why). An allowance that no
/// longer matches a dependency is itself a problem, so the list only shrinks.
pub const ALLOWED: &[(&str, &str, &str)] = &[];

/// The repository's crates `tool` compiles, each with the path it is reached by (`tool →
/// a → b`), shortest first.
fn reached(g: &Graph, tool: &str) -> BTreeMap<String, String> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([(tool.to_string(), tool.to_string())]);
    while let Some((krate, path)) = queue.pop_front() {
        for dep in g.get(&krate).into_iter().flatten() {
            if dep != tool && !seen.contains_key(dep) {
                let p = format!("{path} → {dep}");
                seen.insert(dep.clone(), p.clone());
                queue.push_back((dep.clone(), p));
            }
        }
    }
    seen
}

/// The problems in a crate graph (local crates only).
pub fn problems(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for tool in HOST_TOOLS {
        for (dep, path) in reached(g, tool) {
            if dep == CONTRACT || HOST_TOOLS.contains(&dep.as_str()) {
                continue;
            }
            match ALLOWED.iter().position(|(t, d, _)| t == tool && *d == dep) {
                Some(k) => used[k] = true,
                None => out.push(format!(
                    "{tool} compiles {dep} ({path}): a host tool uses {CONTRACT} (and the other host tools) only"
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
            ("xenpv-run", "xenbox-peer"),
            ("xenbox-peer", "xenpv-contract"),
        ];
        ok.extend(ALLOWED.iter().map(|(t, d, _)| (*t, *d)));
        assert!(
            problems(&graph(&ok)).is_empty(),
            "{:?}",
            problems(&graph(&ok))
        );
        let mut bad = ok.clone();
        bad.push(("xenpv-contract", "xenpv-abi"));
        let p = problems(&graph(&bad));
        // Each tool compiles it through the contract, and the contract is not alone.
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0]
            .starts_with("xenpv-run compiles xenpv-abi (xenpv-run → xenpv-contract → xenpv-abi)"));
        assert!(p[3].contains("xenpv-contract depends on xenpv-abi"));
        let p = problems(&graph(&ok[..3]));
        assert_eq!(p.len(), ALLOWED.len(), "stale allowances are named: {p:?}");
    }

    #[test]
    fn a_host_tool_through_another_is_held_to_the_same_rule() {
        // The peer the runner carries takes the platform in: every tool that reaches it
        // is named, with the path.
        let bad = graph(&[
            ("xtask", "xenpv-run"),
            ("xenpv-run", "xenbox-peer"),
            ("xenbox-peer", "xenpv-rt"),
            ("xenpv-rt", "xenpv-paging"),
        ]);
        let p = problems(&bad);
        let want = [
            "xenpv-run compiles xenpv-paging (xenpv-run → xenbox-peer → xenpv-rt → xenpv-paging)",
            "xenpv-run compiles xenpv-rt (xenpv-run → xenbox-peer → xenpv-rt)",
            "xtask compiles xenpv-paging (xtask → xenpv-run → xenbox-peer → xenpv-rt → xenpv-paging)",
            "xtask compiles xenpv-rt (xtask → xenpv-run → xenbox-peer → xenpv-rt)",
            "xenbox-peer compiles xenpv-paging (xenbox-peer → xenpv-rt → xenpv-paging)",
            "xenbox-peer compiles xenpv-rt (xenbox-peer → xenpv-rt)",
        ];
        assert_eq!(p.len(), want.len(), "{p:#?}");
        for (got, want) in p.iter().zip(want) {
            assert!(got.starts_with(want), "{got} vs {want}");
        }
        // A cycle through the tools ends (cargo refuses one, but the lint must not hang).
        assert!(problems(&graph(&[("xtask", "xenpv-run"), ("xenpv-run", "xtask")])).is_empty());
    }
}
