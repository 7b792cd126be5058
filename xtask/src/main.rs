//! `cargo xtask`: build the unikernel, boot it under Xen, test it.
mod bench;
mod boottest;
mod cargo;
mod defmt_log;
mod initrd;
mod lint;
mod picture;
mod progress;
mod provision;
mod qemu;
mod symbolize;
mod xenbox;
mod xl;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run     build the sample app and boot it under Xen 4.17 in QEMU (or xl with --xl)
          --cmdline \"words\"   guest command line (e.g. \"split=1G panic\")
          --initrd FILE       pass FILE as the initrd
          --initrd-mib N      pass a checked N MiB image (the app verifies it) [--seed S]
          --memory MiB        guest memory (default 256, more for big initrds)
          --timeout SECS      wall-clock limit (default 120); exit 124 when it hits
          --example           boot examples/hello instead of the app
          --dev               build with the dev profile at opt-level 0 (a plain `cargo build`)
          --features F        build the app with runtime features (e.g. xenpv-rt/regress-2014-fixmap-copy)
          --xen-log           show Xen's own lines too
          --xl [--dry-run]    run on a real Xen host as a domU with xl create -c
          --domu              boot it as a domU of a Linux dom0 inside QEMU (the box);
                              --memory is then the domU's
  layout  boot the app (with two module areas mapped) and draw the address space it
          reports, in the terminal and as target/xtask/layout.svg
          --cmdline \"words\"   --initrd-mib N   --memory MiB
  box     build the Xen-in-a-box (Debian's Linux dom0 + xl) from pinned packages, cached
  test    host unit tests, builds, and boot tests under Xen; ends with \"N passed, N failed\"
          --host-only | --boot-only   --filter SUBSTR   -j N (parallel boots, default 2)
  bench   boot the vmap stress twice (batched, and one MMU op per hypercall) and print
          paging-setup and stress figures side by side; exit 1 if the stress averages
          fewer than 256 PTE updates per hypercall
          --split 512M|1G (1G)  --seed S (1)  --cycles N (400)  --initrd-mib N (0)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => qemu::run_command(&args[1..]),
        Some("test") => boottest::test_command(&args[1..]),
        Some("bench") => bench::bench_command(&args[1..]),
        Some("layout") => picture::layout_command(&args[1..]),
        Some("lint") => lint::run().map(|()| {
            println!("lint: PASS");
            0
        }),
        Some("box") => xenbox::ensure().map(|b| {
            println!("box: {} and {}", b.vmlinuz.display(), b.initramfs.display());
            0
        }),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(0)
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Options parsed from `--key value` pairs and `--flag`s.
pub struct Opts {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Opts {
    /// `flags` take no value; everything else starting with `-` takes one.
    pub fn parse(args: &[String], flags: &[&str], keys: &[&str]) -> Result<Opts, String> {
        let mut o = Opts {
            pairs: vec![],
            flags: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if flags.contains(&a.as_str()) {
                o.flags.push(a.clone());
            } else if keys.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                o.pairs.push((a.clone(), v.clone()));
            } else {
                return Err(format!("unknown option {a:?}\n\n{USAGE}"));
            }
        }
        Ok(o)
    }
    pub fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    /// A number option within `range`, naming the value and the limit when it is not.
    pub fn num(
        &self,
        k: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, String> {
        let Some(v) = self.get(k) else {
            return Ok(default);
        };
        let n: u64 = v
            .parse()
            .map_err(|_| format!("{k} {v:?} is not a number"))?;
        if !range.contains(&n) {
            return Err(format!(
                "{k} {n} is outside {}..={}",
                range.start(),
                range.end()
            ));
        }
        Ok(n)
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    #[test]
    fn options_parse_and_refuse_with_names() {
        let o = Opts::parse(
            &s(&["--memory", "512", "--xen-log"]),
            &["--xen-log"],
            &["--memory"],
        )
        .unwrap();
        assert!(o.flag("--xen-log"));
        assert_eq!(o.num("--memory", 256, 64..=65536), Ok(512));
        let o = Opts::parse(&s(&["--memory", "9"]), &[], &["--memory"]).unwrap();
        assert_eq!(
            o.num("--memory", 256, 64..=65536),
            Err("--memory 9 is outside 64..=65536".into())
        );
        assert!(Opts::parse(&s(&["--bogus"]), &[], &[]).is_err());
        assert!(Opts::parse(&s(&["--memory"]), &[], &["--memory"]).is_err());
    }
}
