//! The grant API's misuse cases and `entry!`'s promises must not compile: each is a tiny
//! `no_std` library on top of `xenpv-rt`, checked with `cargo check`, and must fail with
//! the error code and message given (a borrow or move error, a signature that no longer
//! exists, a wrong entry point, a second one), not with any other.
//!
//! Why a checker and not `trybuild` or `compile_fail` doctests: the platform is built
//! with `doctest = false` and links a `#[panic_handler]`, so a std test crate on top of it
//! fails with E0152 whatever it contains. A library crate that is only checked has no
//! such clash, so its error is the misuse's own.

use std::path::Path;
use std::process::Command;

/// One misuse: its name, the error it must fail with, and its code: for the grant cases
/// the body of `fn f(mem: &mut Memory, gt: &mut GrantTable) -> Result<(), GntError>`,
/// for the entry cases the items of the crate.
pub struct Case {
    /// What it misuses.
    pub name: &'static str,
    /// The error code the compiler must report ("" for an error without one).
    pub code: &'static str,
    /// Words the error's message must contain.
    pub message: &'static str,
    /// The code.
    pub body: &'static str,
}

/// The misuses the old API allowed (each compiled at cc8ec5b in its old spelling: see
/// the notes of issue 24's grant slice).
pub const CASES: &[Case] = &[
    Case {
        name: "a page is freed while granted",
        message: "moved value",
        code: "E0382",
        body: "let p = SharedPage::alloc(mem).unwrap();
               let g = gt.grant(0, p, false).map_err(|(_, e)| e)?;
               p.free(mem);
               let _ = gt.end(g);",
    },
    Case {
        name: "a bare Page is granted (then freed)",
        message: "mismatched types",
        code: "E0308",
        body: "let page = mem.alloc_page().unwrap();
               let g = gt.grant(0, &page, true)?;
               mem.free_page(page);
               let _ = gt.end(g);",
    },
    Case {
        name: "a page granted through a reserved reference is freed",
        message: "moved value",
        code: "E0382",
        body: "let p = SharedPage::alloc(mem).unwrap();
               let mut r = gt.reserve(p).map_err(|(_, e)| e)?;
               r.grant(0, false)?;
               p.free(mem);",
    },
    Case {
        name: "a CopyPtr is used after its page is freed",
        message: "cannot move out of `page` because it is borrowed",
        code: "E0505",
        body: "let page = mem.alloc_page().unwrap();
               let dst = by_frame(&page);
               mem.free_page(page);
               GrantTable::copy(by_ref(9, 0), dst, 16)?;",
    },
    Case {
        name: "copy flags named apart from the sides (a gref as our own frame)",
        message: "takes 3 arguments but 4 arguments were supplied",
        code: "E0061",
        body: "let page = mem.alloc_page().unwrap();
               GrantTable::copy(by_frame(&page), by_ref(9, DOMID_SELF as u16), 4096, 0)?;
               mem.free_page(page);",
    },
    Case {
        name: "a reserved reference is ended through the table",
        message: "mismatched types",
        code: "E0308",
        body: "let p = SharedPage::alloc(mem).unwrap();
               let r = gt.reserve(p).map_err(|(_, e)| e)?;
               gt.end(r.gref()).map_err(|(_, e)| e)?;",
    },
];

/// `entry!`'s promises: `main` has the signature `fn(&mut Boot) -> i32`, and an image
/// names one entry point.
pub const ENTRY_CASES: &[Case] = &[
    Case {
        name: "entry! names a main that does not return the exit status",
        code: "E0308",
        message: "expected fn pointer `for<'a> fn(&'a mut Boot) -> i32`",
        body: "fn main(boot: &mut xenpv_rt::Boot) {}
               xenpv_rt::entry!(main);",
    },
    Case {
        name: "entry! names a main that takes the Boot shared (&Boot)",
        code: "E0308",
        message: "types differ in mutability",
        body: "fn main(boot: &xenpv_rt::Boot) -> i32 { 0 }
               xenpv_rt::entry!(main);",
    },
    Case {
        name: "entry! used twice in one crate",
        code: "E0428",
        message: "the name `__xenpv_rt_main` is defined multiple times",
        body: "fn main(boot: &mut xenpv_rt::Boot) -> i32 { 0 }
               fn other(boot: &mut xenpv_rt::Boot) -> i32 { 1 }
               xenpv_rt::entry!(main);
               xenpv_rt::entry!(other);",
    },
    Case {
        name: "entry! used twice in one crate, in two modules (found when code is generated)",
        code: "",
        message: "symbol `__xenpv_rt_main` is already defined",
        body: "mod a {
                   fn main(boot: &mut xenpv_rt::Boot) -> i32 { 0 }
                   xenpv_rt::entry!(main);
               }
               mod b {
                   fn main(boot: &mut xenpv_rt::Boot) -> i32 { 1 }
                   xenpv_rt::entry!(main);
               }",
    },
];

/// `entry!` used as documented: must compile.
pub const ENTRY_CONTROL: &str = "fn main(boot: &mut xenpv_rt::Boot) -> i32 { 0 }
    xenpv_rt::entry!(main);";

/// The right way to do what the cases do: must compile (so the cases fail for their
/// misuse, not for the preamble).
pub const CONTROL: &str = "let p = SharedPage::alloc(mem).unwrap();
    let g = gt.grant(0, p, false).map_err(|(_, e)| e)?;
    let page = mem.alloc_page().unwrap();
    GrantTable::copy(by_ref(g.gref(), DOMID_SELF as u16), by_frame(&page), 16)?;
    mem.free_page(page);
    match gt.end(g) {
        Ok(p) => p.free(mem),
        Err((g, _)) => gt.defer(g),
    }
    let q = SharedPage::alloc(mem).unwrap();
    let mut r = gt.reserve(q).map_err(|(_, e)| e)?;
    r.grant(0, true)?;
    r.end()?;
    if let Ok(q) = gt.release(r) {
        q.free(mem);
    }
    gt.retry_deferred(mem);";

/// A crate of the given items (the entry cases).
fn items_source(items: &str) -> String {
    format!(
        "#![no_std]
#![allow(unused_imports, unused_variables, dead_code)]
{items}
"
    )
}

fn source(body: &str) -> String {
    format!(
        "#![no_std]
#![allow(unused_imports, unused_variables, unused_mut, unreachable_code)]
use xenpv_rt::gnttab::*;
use xenpv_rt::hypercall::DOMID_SELF;
use xenpv_rt::mm::Memory;
use xenpv_rt::shared_page::SharedPage;
pub fn f(mem: &mut Memory, gt: &mut GrantTable) -> Result<(), GntError> {{
    {body}
    Ok(())
}}
"
    )
}

/// The error codes in `cargo check`'s output (`error[E0505]: …`).
pub fn codes(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"error\[(E\d{4})\]").expect("valid regex");
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

/// Check every case; (passed, failed). A case passes when `cargo check` fails with its
/// code; one that compiles, or fails otherwise, is a failure (and shown).
pub fn run() -> Result<(u64, u64), String> {
    let root = crate::root();
    let dir = root.join("target/xtask/compile-fail");
    std::fs::create_dir_all(dir.join("src")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let platform = root.join("runtime/xenpv-rt");
    let manifest = format!(
        "[package]
name = \"grant-misuse\"
version = \"0.0.0\"
edition = \"2021\"
publish = false

[dependencies]
xenpv-rt = {{ path = {:?}, default-features = false }}

# Not a member of the repository's workspace.
[workspace]
",
        platform.display().to_string()
    );
    write(&dir.join("Cargo.toml"), &manifest)?;
    // The repository's lock file: the same dependency versions, no registry lookups.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock: {e}"))?;
    // The entry cases are built, not only checked: a symbol defined twice is found when
    // code is generated, and only within one codegen unit (so one, not incremental).
    let check_with = |verb: &str, src: &str| -> Result<(bool, String), String> {
        write(&dir.join("src/lib.rs"), src)?;
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&dir)
            .args([verb, "--offline", "--quiet"])
            .env("CARGO_INCREMENTAL", "0")
            .env("CARGO_PROFILE_DEV_CODEGEN_UNITS", "1")
            .env(
                "CARGO_TARGET_DIR",
                root.join("target/xtask/compile-fail-target"),
            )
            .output()
            .map_err(|e| format!("cannot run cargo check: {e}"))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ))
    };
    let check = |src: &str| check_with("check", src);
    let build = |src: &str| check_with("build", src);
    let mut tally = Tally::default();
    tally.control(
        "the right use of grants (control)",
        check(&source(CONTROL))?,
    );
    for c in CASES {
        tally.case(c, check(&source(c.body))?);
    }
    tally.control(
        "entry! as documented (control)",
        build(&items_source(ENTRY_CONTROL))?,
    );
    for c in ENTRY_CASES {
        tally.case(c, build(&items_source(c.body))?);
    }
    Ok((tally.passed, tally.failed))
}

/// Passes and failures, each shown as it comes.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// A control must compile.
    fn control(&mut self, name: &str, (ok, text): (bool, String)) {
        if ok {
            println!("   PASS compiles: {name}");
            self.passed += 1;
        } else {
            println!("   FAIL {name} does not compile:\n{text}");
            self.failed += 1;
        }
    }

    /// A case must fail with its code and message.
    fn case(&mut self, c: &Case, (ok, text): (bool, String)) {
        let got = codes(&text);
        let code_ok = if c.code.is_empty() {
            got.is_empty()
        } else {
            got.iter().any(|g| g == c.code)
        };
        if !ok && code_ok && text.contains(c.message) {
            let code = if c.code.is_empty() { "no code" } else { c.code };
            println!("   PASS does not compile ({code}): {}", c.name);
            self.passed += 1;
        } else {
            let why = if ok {
                "it COMPILES".to_string()
            } else {
                format!(
                    "wanted {} saying {:?}, got {got:?}\n{text}",
                    c.code, c.message
                )
            };
            println!("   FAIL {}: {why}", c.name);
            self.failed += 1;
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reads_error_codes() {
        let t = "src/lib.rs:9:12: error[E0505]: cannot move out of `page` because it is borrowed\nerror: aborting\n";
        assert_eq!(codes(t), vec!["E0505"]);
        assert!(source("let x = 1;").contains("let x = 1;"));
        assert!(items_source("fn g() {}").contains("\nfn g() {}"));
    }
}
