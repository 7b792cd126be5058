//! `xenpv-run new NAME [--template T]`: a complete consumer crate, written from the
//! templates in `runner/starter/` (the same files docs/unikernel.md shows), so it cannot
//! drift from what the repository tests: `cargo xtask test` builds, boots and tests a crate
//! made from each template.
use std::fs;
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../starter/Cargo.toml.in");
const BUILD_RS: &str = include_str!("../starter/build.rs");
const CONFIG_TOML: &str = include_str!("../starter/config.toml");
const MAIN_RS: &str = include_str!("../starter/main.rs");
const LIB_RS: &str = include_str!("../starter/lib.rs");
const NET_CARGO_TOML: &str = include_str!("../starter/net/Cargo.toml.in");
const NET_MAIN_RS: &str = include_str!("../starter/net/main.rs");
const NET_LIB_RS: &str = include_str!("../starter/net/lib.rs");
const NET_DOM0_CHECK: &str = include_str!("../starter/net/dom0-check.sh");

/// What the new crate does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// A kernel that prints, logs with defmt, maps memory, uses the heap and exits with
    /// the status its command line asks for (`exit=N`); boots as dom0 or as a domU.
    #[default]
    Default,
    /// A network appliance (boot it with `--domu --net`): TCP echo on port 7 and
    /// `GET /hello` on port 80 (other paths 404), its services in a library that
    /// `cargo test` runs over a loopback device, and `dom0-check.sh`, a dom0 script that
    /// checks it from the box's dom0 (`--dom0-script dom0-check.sh`).
    Net,
}

/// Where the new crate gets xenpv-rt from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A checkout's `runtime/xenpv-rt` directory.
    Path(PathBuf),
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
        self.dependency_at(|p| p.to_path_buf())
    }

    /// xenpv-net: `runtime/net` next to `runtime/xenpv-rt`, or the same repository.
    fn net_dependency(&self) -> String {
        self.dependency_at(|p| match p.parent() {
            Some(runtime) => runtime.join("net"),
            None => PathBuf::from("../net"),
        })
    }

    /// The dependency's `path = …` (from xenpv-rt's path through `at`) or `git = …`.
    fn dependency_at(&self, at: impl Fn(&Path) -> PathBuf) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        match self {
            Source::Path(p) => format!("path = \"{}\"", q(&at(p).to_string_lossy())),
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

/// The crate's files for `name` from `template`: `(path in the crate, contents)`.
pub fn render(name: &str, source: &Source, template: Template) -> Vec<(&'static str, String)> {
    let krate = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("@NAME@", name)
            .replace("@CRATE@", &krate)
            .replace("@XENPV_RT@", &source.dependency())
            .replace("@XENPV_NET@", &source.net_dependency())
    };
    let (cargo_toml, main_rs, lib_rs) = match template {
        Template::Default => (CARGO_TOML, MAIN_RS, LIB_RS),
        Template::Net => (NET_CARGO_TOML, NET_MAIN_RS, NET_LIB_RS),
    };
    let mut files = vec![
        ("Cargo.toml", fill(cargo_toml)),
        ("build.rs", BUILD_RS.to_string()),
        (".cargo/config.toml", CONFIG_TOML.to_string()),
        ("src/main.rs", fill(main_rs)),
        ("src/lib.rs", fill(lib_rs)),
    ];
    if template == Template::Net {
        files.push(("dom0-check.sh", NET_DOM0_CHECK.to_string()));
    }
    files.push((".gitignore", "/target\n".to_string()));
    files
}

/// Write the crate `name` from `template` into `dir` (which must not exist yet).
pub fn write(dir: &Path, name: &str, source: &Source, template: Template) -> Result<(), String> {
    check_name(name)?;
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    for (rel, text) in render(name, source, template) {
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
        write(&d.join("k"), "my-kernel", &src, Template::Default).unwrap();
        let toml = fs::read_to_string(d.join("k/Cargo.toml")).unwrap();
        assert!(toml.contains("name = \"my-kernel\""));
        assert!(toml.contains(
            "xenpv-rt = { path = \"/somewhere/runtime/xenpv-rt\", features = [\"alloc\"] }"
        ));
        let main = fs::read_to_string(d.join("k/src/main.rs")).unwrap();
        assert!(main.contains("use my_kernel::checksum;"));
        assert!(!main.contains('@'), "every placeholder filled");
        assert!(
            !d.join("k/dom0-check.sh").exists(),
            "the default has no dom0 script"
        );
        assert!(
            write(&d.join("k"), "my-kernel", &src, Template::Net).is_err(),
            "never overwrites"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_net_template_is_the_appliance_with_its_dom0_script() {
        let d = std::env::temp_dir().join(format!("xenpv-starter-net-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let src = Source::Path("/somewhere/runtime/xenpv-rt".into());
        write(&d.join("k"), "my-app", &src, Template::Net).unwrap();
        let toml = fs::read_to_string(d.join("k/Cargo.toml")).unwrap();
        assert!(toml.contains(
            "xenpv-rt = { path = \"/somewhere/runtime/xenpv-rt\", features = [\"alloc\", \"async\", \"net\"] }"
        ));
        assert!(toml.contains("xenpv-net = { path = \"/somewhere/runtime/net\" }"));
        assert!(toml.contains(
            "xenpv-net = { path = \"/somewhere/runtime/net\", features = [\"loopback\"] }"
        ));
        assert!(toml.contains(
            "xenpv-rt = { path = \"/somewhere/runtime/xenpv-rt\", features = [\"host\"] }"
        ));
        let main = fs::read_to_string(d.join("k/src/main.rs")).unwrap();
        assert!(main.contains("my_app::serve(&net, WORKERS)"), "{main}");
        let script = fs::read_to_string(d.join("k/dom0-check.sh")).unwrap();
        assert!(script.contains("$PEER") && script.contains("xl shutdown"));
        for file in ["src/main.rs", "src/lib.rs", "Cargo.toml", "dom0-check.sh"] {
            let text = fs::read_to_string(d.join("k").join(file)).unwrap();
            let placeholder =
                text.split('@').skip(1).step_by(2).any(|w| {
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                });
            assert!(!placeholder, "{file}: every placeholder filled");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_dom0_script_parses_as_sh() {
        let d = std::env::temp_dir().join(format!("xenpv-starter-sh-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let script = d.join("dom0-check.sh");
        fs::write(&script, NET_DOM0_CHECK).unwrap();
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .expect("sh");
        let _ = fs::remove_dir_all(&d);
        assert!(st.success(), "sh -n dom0-check.sh: {st}");
    }

    #[test]
    fn a_git_source_names_the_repository_for_both_crates() {
        let src = Source::Git("https://example.org/xenpv-rt.git".into());
        let files = render("n", &src, Template::Net);
        let toml = &files.iter().find(|(p, _)| *p == "Cargo.toml").unwrap().1;
        let git = "git = \"https://example.org/xenpv-rt.git\"";
        assert_eq!(toml.matches(git).count(), 4, "{toml}");
    }

    #[test]
    fn the_guide_shows_exactly_each_starter() {
        let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/unikernel.md");
        let readme = fs::read_to_string(guide).expect("the repository's docs/unikernel.md");
        let src = Source::Path("../xenpv-rt/runtime/xenpv-rt".into());
        for (template, name) in [(Template::Default, "my-kernel"), (Template::Net, "my-app")] {
            for (path, text) in render(name, &src, template) {
                if path == ".gitignore" {
                    continue;
                }
                assert!(
                    readme.contains(&format!("# {path}\n{text}"))
                        || readme.contains(&format!("// {path}\n{text}")),
                    "docs/unikernel.md does not show {path} as `xenpv-run new {name}` \
                     ({template:?}) writes it"
                );
            }
        }
    }
}
