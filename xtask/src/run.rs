//! `cargo xtask run`: build the sample app (or the example) and boot it with the runner
//! library, as dom0, as a domU in the box, or with xl on a real Xen host.
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Stream};
use crate::{initrd, provision};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// `cargo xtask run` options.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The guest command line (e.g. "split=1G panic").
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Pass FILE as the initrd.
    #[arg(long, value_name = "FILE", conflicts_with = "initrd_mib")]
    initrd: Option<PathBuf>,
    /// Pass a checked N MiB image (the app verifies it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=initrd::MAX_MIB))]
    initrd_mib: Option<u64>,
    /// The checked image's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Guest memory in MiB (default 256, more for big initrds; the domU's with --domu).
    #[arg(long, value_name = "MiB", value_parser = clap::value_parser!(u64).range(64..=65536))]
    memory: Option<u64>,
    /// Wall-clock limit in seconds; status 124 when it hits.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    timeout: u64,
    /// Boot examples/hello instead of the app.
    #[arg(long)]
    example: bool,
    /// Build with the dev profile at opt-level 0 (what a plain `cargo build` makes).
    #[arg(long, conflicts_with = "features")]
    dev: bool,
    /// Build the app with runtime features (e.g. xenpv-rt/regress-2014-fixmap-copy).
    #[arg(long, value_name = "F,…")]
    features: Option<String>,
    /// Show Xen's own lines too.
    #[arg(long)]
    xen_log: bool,
    /// Run on a real Xen host as a domU with `xl create -c`.
    #[arg(long, conflicts_with = "domu")]
    xl: bool,
    /// With --xl: print the config and the command, run nothing.
    #[arg(long, requires = "xl")]
    dry_run: bool,
    /// Boot it as a domU of a Linux dom0 inside QEMU (the box).
    #[arg(long)]
    domu: bool,
    /// With --domu: give the domU N network interfaces (default 1, at most 4) on the
    /// box's bridge xenbr0, where dom0 is 169.254.100.1/24 (MACs 00:16:3e:00:00:02, …).
    #[arg(
        long,
        value_name = "N",
        num_args = 0..=1,
        default_missing_value = "1",
        requires = "domu",
        value_parser = xenpv_run::xenbox::parse_vifs
    )]
    net: Option<u32>,
    /// With --domu: run FILE (busybox sh) in the box's dom0 next to the domU, with DOMID,
    /// DOMU_NAME, PEER and PATH set; its lines show as `dom0| …`. The status is the
    /// guest's if nonzero, else the script's. Example:
    /// `cargo xtask run --domu --net --dom0-script check.sh --cmdline "events"`.
    #[arg(long, value_name = "FILE", requires = "domu")]
    dom0_script: Option<PathBuf>,
    /// With --domu: give the domU the raw image FILE as a block device (xen-blkback in the
    /// box's dom0), read-only with `,ro`; repeat for more, at most 4 (xvda, xvdb, … in
    /// order). FILE is used in place. A dom0 script sees disk N as DISKN. Example:
    /// `cargo xtask run --domu --disk d0.img --disk d1.img,ro --dom0-script s.sh`.
    #[arg(
        long,
        value_name = "FILE[,ro]",
        requires = "domu",
        value_parser = xenpv_run::xenbox::parse_disk
    )]
    disk: Vec<xenpv_run::xenbox::Disk>,
}

/// `cargo xtask run`.
pub fn run_command(o: RunArgs) -> Result<u8, String> {
    let image = if o.dev {
        Image::Dev { example: o.example }
    } else if o.example {
        Image::Example
    } else {
        Image::App {
            features: o
                .features
                .as_deref()
                .map(|f| f.split(',').map(String::from).collect())
                .unwrap_or_default(),
        }
    };
    let initrd = match (&o.initrd, o.initrd_mib) {
        (Some(p), _) => {
            if !p.is_file() {
                return Err(format!("--initrd {}: no such file", p.display()));
            }
            Some(p.clone())
        }
        (None, Some(mib)) => Some(initrd::checked(mib, o.seed)?.0),
        (None, None) => None,
    };
    let initrd_mib = initrd
        .as_ref()
        .and_then(|p| p.metadata().ok())
        .map_or(0, |m| m.len() >> 20);
    let default_mem = if o.domu {
        initrd_mib + 128
    } else if initrd_mib >= 1024 {
        2048
    } else if initrd_mib >= 256 {
        1024
    } else {
        256
    };
    let memory_mib = o.memory.unwrap_or(default_mem);
    if o.xl {
        let kernel = if o.dry_run {
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
            initrd.as_deref(),
            memory_mib,
            o.dry_run,
            o.timeout,
        );
    }
    if let Some(s) = &o.dom0_script {
        if !s.is_file() {
            return Err(format!("--dom0-script {}: no such file", s.display()));
        }
    }
    xenpv_run::xenbox::check_disks(&o.disk)?;
    let extras = xenpv_run::xenbox::DomuExtras {
        vifs: o.net.unwrap_or(0),
        dom0_script: o.dom0_script.clone(),
    };
    let path = cargo::build(&image, false)?;
    let xen = provision::ensure()?;
    let domu = if o.domu {
        Some(std::sync::Arc::new(crate::boottest::box_with_peer()?))
    } else {
        None
    };
    let stream = if o.xen_log {
        Stream::All
    } else {
        Stream::Guest
    };
    let _ = std::io::stdout().flush();
    let out = qemu::boot_domu_with_disks(
        &xen,
        &Boot {
            domu,
            name: "xenpv-app".into(),
            image: path,
            cmdline: o.cmdline,
            initrd,
            memory_mib,
            timeout: Duration::from_secs(o.timeout),
            stream,
            log: crate::root().join("target/xtask/last-run.log"),
        },
        &extras,
        &o.disk,
    );
    Ok(qemu::report(&out, "xtask"))
}
