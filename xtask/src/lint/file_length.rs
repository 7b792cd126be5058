//! No source file over [`LIMIT`] lines, tests apart: files in `tests/` folders, files
//! declared `#[cfg(test)] mod name;`, and the lines of `#[cfg(test)] mod name { … }`
//! blocks are not counted. Exceptions in [`EXEMPT`] and [`ALLOWED`], each with why.

use super::source::{blank, cfg_test, close, rust_files, shown, skip_attributes, tokens};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The longest a file may be, in lines outside its tests.
pub const LIMIT: usize = 800;

/// Where the repository's Rust lives.
pub const DIRS: &[&str] = &["runtime", "runner", "xtask", "app", "examples", "tools"];

/// Never counted: (path, or folder without `/`, why).
pub const EXEMPT: &[(&str, &str)] = &[(
    "runtime/testkit/src/mmu_model",
    "the MMU model: Xen's PV MMU rules, a test model (the issue 25 limit exempts it)",
)];

/// The files allowed to be longer for now: (path, why); an allowance that no longer
/// matches a long file is itself a problem, so the list only shrinks.
pub const ALLOWED: &[(&str, &str)] = &[];

/// What the count sees of one file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lines {
    /// Its lines outside `#[cfg(test)]` inline modules.
    pub counted: usize,
    /// The modules it declares as `#[cfg(test)] mod name;` (test-only files).
    pub test_modules: Vec<String>,
}

/// Count `src`'s lines outside its inline test modules, and name its test-only files.
pub fn count(src: &str) -> Lines {
    let t = tokens(&blank(src));
    let total = src.lines().count();
    let mut out = Lines::default();
    let mut skipped = 0;
    let mut i = 0;
    while i < t.len() {
        if let Some((after, start_line)) = cfg_test(&t, i) {
            let (mod_at, rest) = skip_attributes(&t, after);
            if t.get(mod_at).is_some_and(|x| x.text == "mod") {
                match t.get(mod_at + 2).map(|x| x.text.as_str()) {
                    Some(";") => out.test_modules.push(t[mod_at + 1].text.clone()),
                    Some("{") => {
                        let end = close(&t, mod_at + 2);
                        skipped += t[end].line - start_line + 1;
                        i = end + 1;
                        continue;
                    }
                    _ => {}
                }
            }
            i = rest.max(i + 1);
            continue;
        }
        i += 1;
    }
    out.counted = total.saturating_sub(skipped);
    out
}

/// The file a `mod name;` in `file` means: `name.rs` or `name/mod.rs` beside a crate root
/// or `mod.rs`, under `file`'s own folder otherwise.
pub fn module_file(root: &Path, file: &Path, name: &str) -> PathBuf {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let dir = file.parent().unwrap_or(Path::new(""));
    let dir = if matches!(&*stem, "lib" | "main" | "mod" | "build") || dir.ends_with("src/bin") {
        dir.to_path_buf()
    } else {
        dir.join(&*stem)
    };
    let flat = dir.join(format!("{name}.rs"));
    if root.join(&flat).is_file() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

/// The problems: each file over the limit that is not allowed, and each allowance that no
/// longer matches a long file.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let files = rust_files(root, DIRS);
    let mut counts = Vec::new();
    let mut test_only = BTreeSet::new();
    for file in &files {
        let src = std::fs::read_to_string(root.join(file))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let lines = count(&src);
        for m in &lines.test_modules {
            test_only.insert(module_file(root, file, m));
        }
        counts.push((file, lines.counted));
    }
    let mut problems = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for (file, n) in counts {
        let path = shown(file);
        let in_tests = file.components().any(|c| c.as_os_str() == "tests");
        let exempt = EXEMPT.iter().any(|(p, _)| allows(p, &path));
        if n <= LIMIT || in_tests || exempt || test_only.contains(file) {
            continue;
        }
        match ALLOWED.iter().position(|(p, _)| allows(p, &path)) {
            Some(k) => used[k] = true,
            None => problems.push(format!("{path}: {n} lines outside tests (limit {LIMIT})")),
        }
    }
    for (k, (p, _)) in ALLOWED.iter().enumerate() {
        if !used[k] {
            problems.push(format!(
                "{p}: allowed to be long but no file there is: drop it from ALLOWED"
            ));
        }
    }
    Ok(problems)
}

/// An allowance covers a file of that path, with or without `.rs`, or below that folder.
fn allows(allowed: &str, path: &str) -> bool {
    path == allowed
        || path.strip_suffix(".rs") == Some(allowed)
        || path.starts_with(&format!("{allowed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_test_modules_are_not_counted() {
        let src = "fn a() {}\n\n#[cfg(test)]\n#[allow(unused)]\nmod tests {\n    fn t() { \"}\"; }\n}\nfn b() {}\n";
        let l = count(src);
        assert_eq!(l.counted, 3, "{l:?}");
        assert!(l.test_modules.is_empty());
    }

    #[test]
    fn test_only_files_are_named() {
        let l = count("mod a;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nuse x::y;\n");
        assert_eq!(l.test_modules, ["tests"]);
        assert_eq!(l.counted, 5);
    }

    #[test]
    fn module_files_and_allowances() {
        let root = Path::new("/nonexistent");
        let f = module_file(root, Path::new("a/src/lib.rs"), "x");
        assert_eq!(f, Path::new("a/src/x/mod.rs"));
        let f = module_file(root, Path::new("a/src/net.rs"), "x");
        assert_eq!(f, Path::new("a/src/net/x/mod.rs"));
        assert!(allows("r/src/mmu_model", "r/src/mmu_model.rs"));
        assert!(allows("r/src/mmu_model", "r/src/mmu_model/builder.rs"));
        assert!(!allows("r/src/mmu_model", "r/src/mmu_model_x.rs"));
    }
}
