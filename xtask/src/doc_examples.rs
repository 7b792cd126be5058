//! The platform's doc examples, built: `xenpv-rt` is `doctest = false` (it brings `_start`
//! and a panic handler, so rustdoc's std test harness cannot link on top of it), so each
//! Rust block in its docs is built here instead, as a guest binary against the crate, the
//! way an application is built.
//!
//! As rustdoc does: `# ` hides a line but keeps it; an example with its own `fn main` is a
//! whole program (it names its entry with `entry!`), any other is wrapped in a function
//! of a program whose entry is empty. The one example that is a build script (it reads
//! `DEP_XENPV_RT_LINK_ARGS`) becomes the programs' `build.rs`, so it is built and run
//! too. A block not meant to compile says so: ```` ```text ````; `ignore` is refused.

use std::path::Path;
use std::process::Command;

/// One example: where it is, and its code (hidden lines shown).
#[derive(Debug, PartialEq, Eq)]
pub struct Example {
    /// The file, relative to the root.
    pub file: String,
    /// The line of its opening fence.
    pub line: usize,
    /// Its code, `# ` prefixes dropped.
    pub code: String,
    /// Marked `ignore`: refused (mark it `text` instead, or make it build).
    pub ignored: bool,
}

/// Where the platform's sources are.
const PLATFORM: &str = "runtime/xenpv-rt";

/// The info strings of Rust blocks (rustdoc's default language is Rust).
fn is_rust(info: &str) -> bool {
    info.split(',').map(str::trim).all(|t| {
        matches!(
            t,
            "" | "rust" | "no_run" | "ignore" | "should_panic" | "edition2021"
        )
    })
}

/// The Rust blocks in the doc comments (`//!`, `///`) of one source file.
pub fn extract(file: &str, src: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut open: Option<(usize, bool, bool, Vec<String>)> = None;
    for (n, line) in src.lines().enumerate() {
        let t = line.trim_start();
        let doc = t
            .strip_prefix("//!")
            .or_else(|| t.strip_prefix("///").filter(|r| !r.starts_with('/')));
        let Some(doc) = doc else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if let Some(info) = doc.trim_start().strip_prefix("```") {
            match open.take() {
                None => {
                    let ignored = info.split(',').any(|t| t.trim() == "ignore");
                    open = Some((n + 1, is_rust(info), ignored, Vec::new()));
                }
                Some((at, true, ignored, lines)) => out.push(Example {
                    file: file.to_string(),
                    line: at,
                    code: lines.join("\n"),
                    ignored,
                }),
                Some(_) => {}
            }
        } else if let Some((_, _, _, lines)) = open.as_mut() {
            lines.push(unhide(doc).to_string());
        }
    }
    out
}

/// A doc line as compiled: `# x` is `x`, `#` alone is empty, `##` is `#`.
fn unhide(line: &str) -> &str {
    let t = line.trim_start();
    if t == "#" {
        ""
    } else if let Some(rest) = t.strip_prefix("# ") {
        rest
    } else if t.starts_with("##") {
        &t[1..]
    } else {
        line
    }
}

/// Whether the example is the build script.
fn is_build_script(e: &Example) -> bool {
    e.code.contains("DEP_XENPV_RT_LINK_ARGS")
}

/// The guest program an example is built as.
pub fn program(e: &Example) -> String {
    // A whole program: its own entry (`entry!`'s `fn main`, or the async `main!`).
    if e.code.contains("fn main") || e.code.contains("main!(") {
        return e.code.clone();
    }
    let body: String = e.code.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "#![no_std]
#![no_main]
#![allow(unused, unreachable_code, clippy::all)]
#[macro_use]
extern crate alloc;

xenpv_rt::entry!(main);

fn main(_boot: &mut xenpv_rt::Boot) -> i32 {{
    0
}}

// {}:{}
fn example() {{
{body}}}
",
        e.file, e.line
    )
}

const EMPTY_PROGRAM: &str = "#![no_std]
#![no_main]
xenpv_rt::entry!(main);
fn main(_boot: &mut xenpv_rt::Boot) -> i32 {
    0
}
";

/// Every example of the platform's docs, in file order.
pub fn examples(root: &Path) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    let files: Vec<_> = crate::lint::rust_files(root, &[PLATFORM]);
    for f in files {
        let src =
            std::fs::read_to_string(root.join(&f)).map_err(|e| format!("{}: {e}", f.display()))?;
        out.extend(extract(&f.to_string_lossy(), &src));
    }
    Ok(out)
}

/// Build every example; (passed, failed).
pub fn run() -> Result<(u64, u64), String> {
    let root = crate::root();
    let all = examples(&root)?;
    let scripts: Vec<&Example> = all.iter().filter(|e| is_build_script(e)).collect();
    let [script] = scripts[..] else {
        return Err(format!(
            "{PLATFORM}: want one doc example that is the build script, found {}",
            scripts.len()
        ));
    };
    let dir = root.join("target/xtask/doc-examples");
    std::fs::create_dir_all(dir.join("src")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let manifest = format!(
        "[package]
name = \"doc-example\"
version = \"0.0.0\"
edition = \"2021\"
publish = false

[dependencies]
xenpv-rt = {{ path = {rt:?}, features = [\"alloc\", \"net\", \"fs\", \"log\", \"async\"] }}
xenpv-paging = {{ path = {paging:?} }}
smoltcp = {{ version = \"0.14\", default-features = false }}

[profile.dev]
panic = \"abort\"

# Not a member of the repository's workspace.
[workspace]
",
        rt = root.join(PLATFORM).display().to_string(),
        paging = root.join("runtime/paging").display().to_string(),
    );
    write(&dir.join("Cargo.toml"), &manifest)?;
    write(
        &dir.join("build.rs"),
        &format!("fn main() {{\n{}\n}}\n", script.code),
    )?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    for e in &all {
        let at = format!("{}:{}", e.file, e.line);
        if e.ignored {
            println!("   FAIL {at}: marked ignore (mark it text, or make it build)");
            failed += 1;
            continue;
        }
        let main = if is_build_script(e) {
            EMPTY_PROGRAM.to_string()
        } else {
            program(e)
        };
        write(&dir.join("src/main.rs"), &main)?;
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&dir)
            .args(["build", "--offline", "--quiet"])
            .env(
                "CARGO_TARGET_DIR",
                root.join("target/xtask/doc-examples-target"),
            )
            .output()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if out.status.success() {
            println!("   PASS builds: {at}");
            passed += 1;
        } else {
            println!(
                "   FAIL {at} does not build:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            failed += 1;
        }
    }
    Ok((passed, failed))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "//! Top.\n//!\n//! ```no_run\n//! # fn f() {\n//! let x = 1;\n//! #\n//! # }\n//! ```\n//! ```text\n//! not rust {\n//! ```\nfn g() {}\n/// ```\n/// DEP_XENPV_RT_LINK_ARGS;\n/// ```\n//// ```\n/// ```rust,ignore\n/// x\n/// ```\n";

    #[test]
    fn rust_blocks_are_found_hidden_lines_shown() {
        let e = extract("a.rs", SRC);
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(
            (e[0].line, e[0].code.as_str()),
            (3, "fn f() {\nlet x = 1;\n\n}")
        );
        assert!(is_build_script(&e[1]) && !e[1].ignored);
        assert!(e[2].ignored);
    }

    #[test]
    fn fragments_are_wrapped_and_programs_kept() {
        let e = &extract("a.rs", SRC)[0];
        let p = program(e);
        assert!(p.contains("xenpv_rt::entry!(main);") && p.contains("\n    let x = 1;\n"));
        let whole = Example {
            code: "#![no_std]\nxenpv_rt::entry!(main);\nfn main(b: &mut Boot) -> i32 { 0 }".into(),
            ..extract("a.rs", SRC).remove(0)
        };
        assert_eq!(program(&whole), whole.code);
    }
}
