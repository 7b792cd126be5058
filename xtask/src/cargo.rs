//! Building the guest images with cargo.
use std::path::PathBuf;
use std::process::Command;

/// A guest image to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    /// The sample app, with these runtime features (own target dir when non-empty).
    App { features: Vec<String> },
    /// examples/hello, the library consumer.
    Example,
    /// examples/read-file: a consumer reading a disk's file through embedded-io.
    ReadFile,
    /// examples/http-server: picoserve over xenpv-net.
    HttpServer,
    /// The app or the example (`example`) built with the dev profile at opt-level 0,
    /// as a consumer's plain `cargo build` makes it.
    Dev { example: bool },
}

impl Image {
    pub fn app() -> Image {
        Image::App { features: vec![] }
    }
    fn package(&self) -> &'static str {
        match self {
            Image::App { .. } | Image::Dev { example: false } => "xenpv-app",
            Image::Example | Image::Dev { example: true } => "hello-unikernel",
            Image::ReadFile => "read-file-unikernel",
            Image::HttpServer => "http-server-example",
        }
    }
    /// Variant builds get their own target dir so they do not rebuild each other.
    fn target_dir(&self) -> PathBuf {
        let root = crate::root().join("target");
        match self {
            Image::App { features } if !features.is_empty() => {
                let name: String = features.join("+").replace(['/', ':'], "_");
                root.join("variants").join(name)
            }
            Image::Dev { .. } => root.join("variants").join("dev-opt0"),
            _ => root,
        }
    }
    pub fn path(&self) -> PathBuf {
        let profile = match self {
            Image::Dev { .. } => "debug",
            _ => "release",
        };
        self.target_dir().join(profile).join(self.package())
    }
    pub fn name(&self) -> String {
        match self {
            Image::App { features } if features.is_empty() => "app".into(),
            Image::App { features } => format!("app[{}]", features.join(",")),
            Image::Example => "example".into(),
            Image::ReadFile => "example[read-file]".into(),
            Image::HttpServer => "example[http-server]".into(),
            Image::Dev { example: false } => "app[dev, opt-level 0]".into(),
            Image::Dev { example: true } => "example[dev, opt-level 0]".into(),
        }
    }
}

/// `cargo build --release` of the image; returns its path.
pub fn build(image: &Image, quiet: bool) -> Result<PathBuf, String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(crate::root());
    if let Image::Dev { .. } = image {
        // What a consumer's `cargo build` gives: no optimisation at all.
        cmd.env("CARGO_PROFILE_DEV_OPT_LEVEL", "0").arg("build");
    } else {
        cmd.args(["build", "--release"]);
    }
    cmd.args(["-p", image.package(), "--target-dir"])
        .arg(image.target_dir());
    if let Image::App { features } = image {
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
    }
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {} failed ({status})", image.name()));
    }
    Ok(image.path())
}

/// `cargo test` with these arguments; returns (passed, failed) summed over the
/// `test result:` lines, or an error if cargo could not run.
pub fn test(args: &[&str]) -> Result<(u64, u64), String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate::root())
        .arg("test")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let (passed, mut failed) = count_results(&text);
    if !out.status.success() && failed == 0 {
        // A build failure or a crash of the harness: count it as one failure, and show it.
        eprintln!("{text}");
        failed = 1;
    } else if failed > 0 {
        eprintln!("{text}");
    }
    Ok((passed, failed))
}

/// Sum `test result: ok. N passed; M failed` lines.
pub fn count_results(text: &str) -> (u64, u64) {
    let re =
        regex::Regex::new(r"test result: \w+\. (\d+) passed; (\d+) failed").expect("valid regex");
    re.captures_iter(text).fold((0, 0), |(p, f), c| {
        (
            p + c[1].parse::<u64>().unwrap_or(0),
            f + c[2].parse::<u64>().unwrap_or(0),
        )
    })
}

/// Build dom0's test client (tools/xenbox-peer, release); its path.
pub fn build_peer() -> Result<PathBuf, String> {
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-q", "-p", "xenbox-peer"])
        .current_dir(crate::root())
        .status()
        .map_err(|e| format!("cargo build -p xenbox-peer: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build -p xenbox-peer: {st}"));
    }
    Ok(crate::root().join("target/release/xenbox-peer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn counts_every_result_line() {
        let t = "test result: ok. 17 passed; 0 failed; 0 ignored\n...\ntest result: FAILED. 3 passed; 2 failed; 0 ignored\n";
        assert_eq!(count_results(t), (20, 2));
    }
    #[test]
    fn variants_get_their_own_target_dir() {
        let v = Image::App {
            features: vec!["xenpv-rt/regress-2014-fixmap-copy".into()],
        };
        assert!(v
            .path()
            .to_string_lossy()
            .contains("variants/xenpv-rt_regress-2014-fixmap-copy"));
        assert!(!Image::app().path().to_string_lossy().contains("variants"));
    }
}
