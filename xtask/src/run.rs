//! `cargo xtask run`: build the sample app (or the example) and boot it with the runner
//! library, as dom0, as a domU in the box, or with xl on a real Xen host.
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot};
use crate::{initrd, provision};
use std::io::Write;
use std::time::Duration;
use xenpv_run::cli::BootArgs;

/// `cargo xtask run` options: what to build and its command line, then the boot options
/// `xenpv-run` has too ([`BootArgs`]; here the time limit's default is 120 s).
#[derive(clap::Args, Debug)]
#[command(mut_arg("timeout", |a| a.default_value("120")))]
pub struct RunArgs {
    /// The guest command line (e.g. "split=1G panic").
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Pass a checked N MiB image as the initrd (the app verifies it).
    #[arg(long, value_name = "N", conflicts_with = "initrd", value_parser = clap::value_parser!(u64).range(1..=initrd::MAX_MIB))]
    initrd_mib: Option<u64>,
    /// The checked image's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Boot examples/hello instead of the app.
    #[arg(long)]
    example: bool,
    /// Build with the dev profile at opt-level 0 (what a plain `cargo build` makes).
    #[arg(long, conflicts_with = "features")]
    dev: bool,
    /// Build the app with runtime features (e.g. xenpv-rt/regress-2014-fixmap-copy).
    #[arg(long, value_name = "F,…")]
    features: Option<String>,
    #[command(flatten)]
    boot: BootArgs,
}

impl RunArgs {
    /// The image to build: the app (with its features), the example, or either at the
    /// dev profile.
    fn image(&self) -> Image {
        if self.dev {
            Image::Dev {
                example: self.example,
            }
        } else if self.example {
            Image::Example
        } else {
            Image::App {
                features: self
                    .features
                    .as_deref()
                    .map(|f| f.split(',').map(String::from).collect())
                    .unwrap_or_default(),
            }
        }
    }
}

/// The guest's memory unless `--memory` says: 128 MiB plus the initrd as a domU; as
/// dom0 256 MiB, 1 GiB with an initrd of 256 MiB or more, 2 GiB from 1 GiB on.
fn default_memory(domu: bool, initrd_mib: u64) -> u64 {
    if domu {
        initrd_mib + 128
    } else if initrd_mib >= 1024 {
        2048
    } else if initrd_mib >= 256 {
        1024
    } else {
        256
    }
}

/// `cargo xtask run`.
pub fn run_command(mut o: RunArgs) -> Result<u8, String> {
    let image = o.image();
    if let Some(p) = &o.boot.initrd {
        if !p.is_file() {
            return Err(format!("--initrd {}: no such file", p.display()));
        }
    } else if let Some(mib) = o.initrd_mib {
        o.boot.initrd = Some(initrd::checked(mib, o.seed)?.0);
    }
    let b = &o.boot;
    let memory_mib = b.memory.unwrap_or(default_memory(b.domu, b.initrd_mib()));
    if b.xl {
        let kernel = if b.dry_run {
            image.path()
        } else {
            cargo::build(&image, false)?
        };
        let name = format!(
            "xenpv-{}",
            image.name().replace(['[', ']', ',', '/', ' '], "-")
        );
        return xenpv_run::xl::run(
            &name,
            &kernel,
            &o.cmdline,
            b.initrd.as_deref(),
            memory_mib,
            b.dry_run,
            b.timeout,
        );
    }
    b.check()?;
    let path = cargo::build(&image, false)?;
    xenpv_run::elf::check_memory(&path, memory_mib)?;
    let xen = provision::ensure()?;
    let domu = if b.domu {
        Some(std::sync::Arc::new(crate::boottest::box_with_peer_for(
            b.toolstack(),
        )?))
    } else {
        None
    };
    let extras = b.extras();
    let role = match domu {
        Some(_) => qemu::Role::Domu {
            extras: &extras,
            disks: &b.disk,
        },
        None => qemu::Role::Dom0,
    };
    let _ = std::io::stdout().flush();
    let out = qemu::run(
        &xen,
        &Boot {
            domu,
            name: "xenpv-app".into(),
            image: path,
            cmdline: o.cmdline.clone(),
            initrd: b.initrd.clone(),
            memory_mib,
            timeout: Duration::from_secs(b.timeout),
            stream: b.stream(),
            log: crate::root().join("target/xtask/last-run.log"),
        },
        role,
    );
    Ok(qemu::report(&out, "xtask"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn the_boot_options_are_the_runners_with_a_shorter_time_limit() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["run", "--domu", "--net", "--disk", "d.img,ro"]).unwrap();
        assert!(c.run.boot.domu);
        assert_eq!(c.run.boot.net, Some(1));
        assert_eq!(c.run.boot.timeout, 120);
        assert!(c.run.boot.disk[0].read_only);
        let c = Cli::try_parse_from(["run", "--timeout", "7", "--initrd-mib", "4"]).unwrap();
        assert_eq!((c.run.boot.timeout, c.run.initrd_mib), (7, Some(4)));
        for bad in [
            &["run", "--initrd", "f", "--initrd-mib", "4"][..],
            &["run", "--net"],
            &["run", "--xl", "--domu"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_memory_grows_with_the_initrd() {
        assert_eq!(default_memory(true, 0), 128);
        assert_eq!(default_memory(true, 300), 428);
        assert_eq!(default_memory(false, 0), 256);
        assert_eq!(default_memory(false, 256), 1024);
        assert_eq!(default_memory(false, 1100), 2048);
    }
}
