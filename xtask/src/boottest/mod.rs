//! `cargo xtask test`: host unit tests, builds, then boot tests under Xen in QEMU, each a
//! row of a table (`table/`, by area) that says what to boot and what the console must
//! show (`checks.rs`), run by `run.rs`.
use crate::cargo::{self, Image};
use crate::provision;
use crate::qemu::Outcome;

mod checks;
mod reports;
mod run;
mod table;

pub use checks::stress_memory_mib;
pub use table::table;

/// Host test runs: (label, cargo test arguments).
/// The platform crate (`xenpv-rt`) has no host tests of its own: its logic lives in the
/// pure crates, and what is left is proven by the boot tests.
const HOST_TESTS: &[(&str, &[&str])] = &[
    ("abi", &["-p", "xenpv-abi"]),
    ("paging planners", &["-p", "xenpv-paging"]),
    (
        "paging planners with the 2014 regression",
        &[
            "-p",
            "xenpv-paging",
            "--features",
            "regress-2014-fixmap-copy",
        ],
    ),
    ("guest-host contract", &["-p", "xenpv-contract"]),
    ("protocols", &["-p", "xenpv-protocol"]),
    ("test models (self-tests)", &["-p", "xenpv-testkit"]),
    ("the appliance's decisions", &["-p", "xenpv-appliance"]),
    ("dom0's network client", &["-p", "xenbox-peer"]),
    (
        "the HTTP example's service over the loopback",
        &["-p", "http-server-service"],
    ),
    (
        "the appliance's services over the loopback",
        &["-p", "xenpv-appliance-service"],
    ),
    ("runner", &["--manifest-path", "runner/Cargo.toml"]),
    ("xtask", &["--manifest-path", "xtask/Cargo.toml"]),
];

#[derive(Clone, Copy, Debug)]
pub enum InitrdSpec {
    None,
    Checked {
        mib: u64,
        seed: u64,
    },
    /// A checked image with one byte flipped: the guest must say BAD.
    Corrupt {
        mib: u64,
        seed: u64,
        offset: u64,
    },
}

pub enum Check {
    /// Some report meets the expectation ([`reports`]).
    Report(reports::Expect),
    /// No report meets it.
    NoReport(reports::Expect),
    /// The guest's exit line (`xenpv_contract::status::parse_exit_line`) names the row's
    /// status: the last line came through the console too.
    ExitLine,
    Contains(String),
    NotContains(String),
    Regex(&'static str),
    Custom(&'static str, fn(&Outcome) -> Result<(), String>),
    /// A symbolized fault report naming the line of `app/src/faults.rs` that carries the
    /// `fault-line: KIND` marker (read at test time): in the fault line itself, or with
    /// `via_caller`, in the first `called from` line (a jump whose target is not code).
    FaultAt {
        kind: &'static str,
        via_caller: bool,
    },
}

/// A boot test's preparation (see [`BootTest::prepare`]).
pub type Prepare = fn(&mut BootTest) -> Result<(), String>;

pub struct BootTest {
    pub name: String,
    /// Boot as a domU in the Xen-in-a-box instead of as dom0.
    pub domu: bool,
    pub image: Image,
    pub cmdline: String,
    pub initrd: InitrdSpec,
    pub memory_mib: u64,
    pub timeout_s: u64,
    pub status: i32,
    pub checks: Vec<Check>,
    /// Keep both host cores busy while it boots (the box's console stream must not lose
    /// a run on a loaded machine).
    pub under_load: bool,
    /// As a domU: network interfaces on the box's bridge (`--net N`).
    pub vifs: u32,
    /// As a domU: a script run in dom0 next to it (`--dom0-script`); its exit status is
    /// part of the run's.
    pub dom0_script: Option<&'static str>,
    /// As a domU: block devices (`--disk`), raw images on the host made before the run;
    /// xvda, xvdb, … in the domU, `DISK0`, `DISK1`, … in the dom0 script.
    pub disks: Vec<crate::xenbox::Disk>,
    /// As a domU: boot the box as `xenpv-run` boots it, its own executable (the
    /// `xenpv-run` binary, built from runner/) carried as the dom0 script's `$PEER`
    /// (`xenpv_run::peer::carried`) instead of the xtask-built tools/xenbox-peer.
    pub as_xenpv_run: bool,
    /// Made once before the runs start (disk images, and what the checks expect of
    /// them): it may set `disks`, `dom0_script` and `checks`.
    pub prepare: Option<Prepare>,
    /// As a domU: the toolstack that creates it in the box, `xl` or libvirt's `virsh`
    /// (the box's libvirt variant, booted only for such rows).
    pub toolstack: crate::xenbox::Toolstack,
    /// As a domU that its dom0 script saves, restores or migrates: the box has room for
    /// a second copy of the domU and boots the shadow-paging hypervisor
    /// ([`crate::xenbox::DomuExtras::migrate`], `xenpv-run --migrate`).
    pub migrate: bool,
}

pub fn t(name: &str, image: Image, cmdline: &str, status: i32, checks: Vec<Check>) -> BootTest {
    BootTest {
        name: name.into(),
        domu: false,
        image,
        cmdline: cmdline.into(),
        initrd: InitrdSpec::None,
        memory_mib: 256,
        timeout_s: 120,
        status,
        checks,
        under_load: false,
        vifs: 0,
        dom0_script: None,
        disks: vec![],
        as_xenpv_run: false,
        prepare: None,
        toolstack: crate::xenbox::Toolstack::Xl,
        migrate: false,
    }
}

pub fn has(s: &str) -> Check {
    Check::Contains(s.into())
}

/// The box, with dom0's side of the grant test (tools/xenbox-peer, a std binary for the
/// box's glibc) on board.
pub fn box_with_peer() -> Result<crate::xenbox::BoxImage, String> {
    box_with_peer_for(crate::xenbox::Toolstack::Xl)
}

/// The box for `toolstack` (the plain one, or its libvirt variant) with dom0's side of
/// the grant test on board.
pub fn box_with_peer_for(
    toolstack: crate::xenbox::Toolstack,
) -> Result<crate::xenbox::BoxImage, String> {
    let mut b = crate::xenbox::ensure_for(toolstack)?;
    b.peer = Some(cargo::build_peer()?);
    Ok(b)
}

/// `cargo xtask test` options.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Lint and host unit tests only.
    #[arg(long, conflicts_with = "boot_only")]
    host_only: bool,
    /// Builds and boot tests only.
    #[arg(long)]
    boot_only: bool,
    /// Skip the lint step.
    #[arg(long)]
    no_lint: bool,
    /// Only the boot tests whose name contains SUBSTR; the consumer crates outside the
    /// workspace run when SUBSTR begins `consumer-default` (the default starter) or
    /// `consumer-net` (the net starter), so `consumer` runs both.
    #[arg(long, value_name = "SUBSTR", default_value = "")]
    filter: String,
    /// Print the boot tests' names (after --filter) and exit.
    #[arg(long)]
    list: bool,
    /// Boots in parallel.
    #[arg(short = 'j', default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    jobs: u64,
}

/// `cargo xtask test`.
pub fn test_command(o: TestArgs) -> Result<u8, String> {
    if o.list {
        for t in table()
            .iter()
            .filter(|t| t.name.contains(o.filter.as_str()))
        {
            println!("{}", t.name);
        }
        return Ok(0);
    }
    let jobs = o.jobs as usize;
    let (mut passed, mut failed) = (0u64, 0u64);

    if !o.boot_only && !o.no_lint {
        println!("== lint (cargo xtask lint)");
        match crate::lint::run(Default::default()) {
            Ok(()) => {
                println!("   lint: PASS");
                passed += 1;
            }
            Err(e) => {
                println!("   lint: FAIL: {e}");
                failed += 1;
            }
        }
    }
    if !o.boot_only {
        for (label, args) in HOST_TESTS {
            println!("== host tests: {label} (cargo test {})", args.join(" "));
            let (p, f) = cargo::test(args)?;
            println!("   {p} passed, {f} failed");
            passed += p;
            failed += f;
        }
        println!("== host tests: the grant API's and entry!'s misuses do not compile (cargo xtask compile-fail)");
        let (p, f) = crate::compile_fail::run()?;
        println!("   {p} passed, {f} failed");
        passed += p;
        failed += f;
        println!("== host tests: the platform's doc examples build (cargo xtask doc-examples)");
        let (p, f) = crate::doc_examples::run()?;
        println!("   {p} passed, {f} failed");
        passed += p;
        failed += f;
    }
    if !o.host_only {
        let filter = o.filter.as_str();
        let tests: Vec<BootTest> = table()
            .into_iter()
            .filter(|t| t.name.contains(filter))
            .collect();
        // Builds: every image the boot tests need, plus the library-consumer example always.
        let mut images: Vec<Image> = vec![Image::app(), Image::Example];
        for t in &tests {
            if !images.contains(&t.image) {
                images.push(t.image.clone());
            }
        }
        let mut built = Vec::new();
        for img in &images {
            match cargo::build(img, true) {
                Ok(_) => {
                    println!("PASS build {}", img.name());
                    passed += 1;
                    built.push(img.clone());
                }
                Err(e) => {
                    println!("FAIL build {}: {e}", img.name());
                    failed += 1;
                }
            }
        }
        let xen = provision::ensure()?;
        let domu_box = if tests.iter().any(|t| t.domu) {
            Some(std::sync::Arc::new(box_with_peer()?))
        } else {
            None
        };
        let (p, f) = run::run_boot_tests(&xen, domu_box, tests, &built, jobs)?;
        passed += p;
        failed += f;
        // A consumer's crate outside the repository, through the installed runner (only
        // in a full run: it takes minutes).
        if "consumer-default".starts_with(filter) || "consumer-net".starts_with(filter) {
            println!("== a consumer's unikernel outside the workspace (xenpv-run new, cargo run, cargo test)");
            for (what, r) in crate::consumer::run(filter) {
                match r {
                    Ok(()) => {
                        println!("PASS {what}");
                        passed += 1;
                    }
                    Err(e) => {
                        println!("FAIL {what}: {e}");
                        failed += 1;
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests;
