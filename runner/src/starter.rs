//! `xenpv-run new NAME`: a complete consumer crate, written from the templates in
//! `runner/starter/` (the same files docs/unikernel.md shows), so it cannot drift from what the
//! repository tests: `cargo xtask test` builds, boots and tests a crate made by this.
use std::fs;
use std::path::Path;

const CARGO_TOML: &str = include_str!("../starter/Cargo.toml.in");
const BUILD_RS: &str = include_str!("../starter/build.rs");
const CONFIG_TOML: &str = include_str!("../starter/config.toml");
const MAIN_RS: &str = include_str!("../starter/main.rs");
const LIB_RS: &str = include_str!("../starter/lib.rs");

/// Where the new crate gets xenpv-rt from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A checkout's `runtime/xenpv-rt` directory.
    Path(std::path::PathBuf),
    /// A git repository URL (its workspace holds the `xenpv-rt` package).
    Git(String),
}

impl Source {
    /// The checkout this runner was built from, if it is still there.
    pub fn this_checkout() -> Option<Source> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/xenpv-rt");
        p.join("Cargo.toml")
            .is_file()
            .then(|| Source::Path(p.canonicalize().unwrap_or(p)))
    }

    fn dependency(&self) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        match self {
            Source::Path(p) => format!("path = \"{}\"", q(&p.to_string_lossy())),
            Source::Git(url) => format!("git = \"{}\"", q(url)),
        }
    }
}

/// A crate name cargo accepts: ASCII letters, digits, `-` and `_`, not starting with a
/// digit.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a crate name (ASCII letters, digits, - and _, 1..=64, not starting with a digit)"
        ))
    }
}

/// The crate's files for `name`: `(path in the crate, contents)`.
pub fn render(name: &str, source: &Source) -> Vec<(&'static str, String)> {
    let krate = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("@NAME@", name)
            .replace("@CRATE@", &krate)
            .replace("@XENPV_RT@", &source.dependency())
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("build.rs", BUILD_RS.to_string()),
        (".cargo/config.toml", CONFIG_TOML.to_string()),
        ("src/main.rs", fill(MAIN_RS)),
        ("src/lib.rs", LIB_RS.to_string()),
        (".gitignore", "/target\n".to_string()),
    ]
}

/// Write the crate `name` into `dir` (which must not exist yet).
pub fn write(dir: &Path, name: &str, source: &Source) -> Result<(), String> {
    check_name(name)?;
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    for (rel, text) in render(name, source) {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-kernel_2").is_ok());
        for bad in ["", "2fast", "a b", "x/y", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_crate_is_written_with_the_dependency_filled_in() {
        let d = std::env::temp_dir().join(format!("xenpv-starter-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let src = Source::Path("/somewhere/runtime/xenpv-rt".into());
        write(&d.join("k"), "my-kernel", &src).unwrap();
        let toml = fs::read_to_string(d.join("k/Cargo.toml")).unwrap();
        assert!(toml.contains("name = \"my-kernel\""));
        assert!(toml.contains(
            "xenpv-rt = { path = \"/somewhere/runtime/xenpv-rt\", features = [\"alloc\"] }"
        ));
        let main = fs::read_to_string(d.join("k/src/main.rs")).unwrap();
        assert!(main.contains("use my_kernel::checksum;"));
        assert!(!main.contains('@'), "every placeholder filled");
        assert!(
            write(&d.join("k"), "my-kernel", &src).is_err(),
            "never overwrites"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_guide_shows_exactly_the_starter() {
        let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/unikernel.md");
        let readme = fs::read_to_string(guide).expect("the repository's docs/unikernel.md");
        let src = Source::Path("../xenpv-rt/runtime/xenpv-rt".into());
        for (path, text) in render("my-kernel", &src) {
            if path == ".gitignore" {
                continue;
            }
            assert!(
                readme.contains(&format!("# {path}\n{text}"))
                    || readme.contains(&format!("// {path}\n{text}")),
                "docs/unikernel.md does not show {path} as `xenpv-run new my-kernel` writes it"
            );
        }
    }
}
