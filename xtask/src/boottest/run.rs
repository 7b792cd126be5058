//! Running the boot tests: their preparation, a pool of boots, and each console judged
//! against its row's checks.
use super::checks::fault_at;
use super::reports::report;
use super::{BootTest, Check, InitrdSpec};
use crate::cargo::Image;
use crate::initrd;
use crate::qemu::{self, Boot, Outcome, Stream};
use crate::xenbox::Toolstack;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xenpv_contract::status::parse_exit_line;

/// A row made ready to boot: its initrd on disk, and the initrd line the guest must print.
struct Prepared {
    t: BootTest,
    initrd: Option<PathBuf>,
    expect: Option<Check>,
}

/// What every boot shares.
struct Ctx {
    xen: PathBuf,
    dir: PathBuf,
    domu_box: Option<Arc<crate::xenbox::BoxImage>>,
    /// The box as `xenpv-run` boots it (for rows [`BootTest::as_xenpv_run`]).
    runner_box: Option<Arc<crate::xenbox::BoxImage>>,
    /// The box's libvirt variant (for rows whose [`BootTest::toolstack`] is libvirt).
    libvirt_box: Option<Arc<crate::xenbox::BoxImage>>,
    built: Vec<Image>,
}

/// Runs `tests` on `jobs` workers; returns (passed, failed).
pub fn run_boot_tests(
    xen: &std::path::Path,
    domu_box: Option<Arc<crate::xenbox::BoxImage>>,
    tests: Vec<BootTest>,
    built: &[Image],
    jobs: usize,
) -> Result<(u64, u64), String> {
    let dir = crate::root().join("target/xtask/tests");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let runner_box = match &domu_box {
        Some(b) if tests.iter().any(|t| t.as_xenpv_run) => Some(Arc::new(runner_box(b, &dir)?)),
        _ => None,
    };
    let libvirt_box = match &domu_box {
        Some(b) if tests.iter().any(|t| t.toolstack == Toolstack::Libvirt) => {
            let mut v = crate::xenbox::ensure_for(Toolstack::Libvirt)?;
            v.peer = b.peer.clone();
            Some(Arc::new(v))
        }
        _ => None,
    };
    let prepared = prepare_all(tests)?;
    let bar = Arc::new(crate::progress::bar(
        prepared.len() as u64,
        "boot tests",
        false,
    ));
    let queue = Arc::new(Mutex::new(prepared));
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let ctx = Arc::new(Ctx {
        xen: xen.to_path_buf(),
        dir,
        domu_box,
        runner_box,
        libvirt_box,
        built: built.to_vec(),
    });
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (bar, queue, counts, ctx) =
                (bar.clone(), queue.clone(), counts.clone(), ctx.clone());
            std::thread::spawn(move || loop {
                let Some(p) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                let name = p.t.name.clone();
                let result = run_one(&ctx, p);
                let mut c = counts.lock().expect("counts");
                bar.inc(1);
                let line = match result {
                    Ok(secs) => {
                        c.0 += 1;
                        format!("PASS {name} ({secs:.1} s)")
                    }
                    Err(e) => {
                        c.1 += 1;
                        format!("FAIL {name}: {e}")
                    }
                };
                bar.println(&line);
                if !crate::progress::shown() {
                    println!("{line}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "a boot-test worker panicked".to_string())?;
    }
    bar.finish_and_clear();
    let c = *counts.lock().expect("counts");
    Ok(c)
}

/// Runs each row's preparation and makes the initrds up front (sequentially: they are
/// big and share files).
fn prepare_all(tests: Vec<BootTest>) -> Result<VecDeque<Prepared>, String> {
    let mut prepared = VecDeque::new();
    for mut t in tests {
        if let Some(prepare) = t.prepare {
            prepare(&mut t).map_err(|e| format!("{}: preparing: {e}", t.name))?;
        }
        let (initrd, expect): (Option<PathBuf>, Option<Check>) = match t.initrd {
            InitrdSpec::None => (None, None),
            InitrdSpec::Checked { mib, seed } => {
                let (p, h) = initrd::checked(mib, seed)?;
                (
                    Some(p),
                    Some(Check::Report(
                        report("initrd")
                            .words(&["ok"])
                            .eq("len", h.total_len)
                            .eq("seed", h.seed)
                            .eq("checksum", format!("{:#018x}", h.checksum)),
                    )),
                )
            }
            InitrdSpec::Corrupt { mib, seed, offset } => {
                (Some(initrd::corrupted(mib, seed, offset)?), None)
            }
        };
        prepared.push_back(Prepared { t, initrd, expect });
    }
    Ok(prepared)
}

/// Boots one row and judges its console: the seconds it took, or why it failed (with the
/// console's last lines).
fn run_one(ctx: &Ctx, p: Prepared) -> Result<f64, String> {
    let Prepared { t, initrd, expect } = p;
    if !ctx.built.contains(&t.image) {
        return Err(format!("image {} did not build", t.image.name()));
    }
    let _load = t.under_load.then(Load::start);
    let script = t.dom0_script.and_then(|text| {
        let p = ctx.dir.join(format!("{}.sh", t.name));
        std::fs::write(&p, text)
            .map_err(|e| eprintln!("{}: {e}", p.display()))
            .ok()
            .map(|()| p)
    });
    let extras = crate::xenbox::DomuExtras {
        vifs: t.vifs,
        dom0_script: script,
        migrate: t.migrate,
        room_mib: 0,
    };
    let o = qemu::boot_domu_with_disks(
        &ctx.xen,
        &Boot {
            domu: if t.domu { domu_box(ctx, &t) } else { None },
            name: "xenpv-app".into(),
            image: t.image.path(),
            cmdline: t.cmdline.clone(),
            initrd,
            memory_mib: t.memory_mib,
            timeout: Duration::from_secs(t.timeout_s),
            stream: Stream::Quiet,
            log: ctx.dir.join(format!("{}.log", t.name)),
        },
        &extras,
        &t.disks,
    );
    evaluate(&t, &o, expect).map(|_| o.secs).map_err(|e| {
        let tail: Vec<&str> = o.text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{e}\n--- last lines (full log: {}):\n{}",
            o.log.display(),
            tail.join("\n")
        )
    })
}

/// The box a domU row boots in: the shared one (dom0's test client built by xtask), for
/// a row [`BootTest::as_xenpv_run`] the box as `xenpv-run` boots it, for a libvirt row
/// the libvirt variant (with the same client).
fn domu_box(ctx: &Ctx, t: &BootTest) -> Option<Arc<crate::xenbox::BoxImage>> {
    if t.toolstack == Toolstack::Libvirt {
        ctx.libvirt_box.clone()
    } else if t.as_xenpv_run {
        ctx.runner_box.clone()
    } else {
        ctx.domu_box.clone()
    }
}

/// The box `b` with what `xenpv-run --domu` carries as the peer: the `xenpv-run` binary
/// (built here from runner/, as a user's `cargo install --path runner` builds it), passed
/// through the runner's own choice (`xenpv_run::peer::carried`, its stub in `dir` if the
/// binary were unreadable).
fn runner_box(
    b: &crate::xenbox::BoxImage,
    dir: &std::path::Path,
) -> Result<crate::xenbox::BoxImage, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = crate::root().join("runner/Cargo.toml");
    let st = std::process::Command::new(cargo)
        .args(["build", "-q", "--bin", "xenpv-run", "--manifest-path"])
        .arg(&manifest)
        .current_dir(crate::root())
        .status()
        .map_err(|e| format!("cargo build --bin xenpv-run: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build --bin xenpv-run: {st}"));
    }
    let exe = crate::root().join("target/debug/xenpv-run");
    let stub = dir.join("xenpv-run.peer-stub");
    Ok(crate::xenbox::BoxImage {
        vmlinuz: b.vmlinuz.clone(),
        initramfs: b.initramfs.clone(),
        peer: Some(xenpv_run::peer::carried(Ok(exe), &stub)?),
        toolstack: b.toolstack,
    })
}

/// Judges a console: the row's status, then each check in order (the first that fails
/// says why).
pub(super) fn evaluate(
    test: &BootTest,
    o: &Outcome,
    expect_initrd: Option<Check>,
) -> Result<(), String> {
    match &o.status {
        Ok(st) if *st == test.status => {}
        Ok(st) => return Err(format!("guest status {st}, expected {}", test.status)),
        Err(f) => return Err(f.to_string()),
    }
    let guest: String = o.guest_lines().collect::<Vec<_>>().join("\n");
    for c in test.checks.iter().chain(expect_initrd.iter()) {
        match c {
            Check::Report(e) => drop(e.find_in(&o.text)?),
            Check::NoReport(e) => e.absent_from(&o.text)?,
            Check::ExitLine => {
                let last = o.guest_lines().filter_map(parse_exit_line).last();
                if last != Some(test.status) {
                    return Err(format!(
                        "the console's last exit line names {last:?}, not status {}",
                        test.status
                    ));
                }
            }
            Check::Contains(s) if !guest.contains(s.as_str()) => {
                return Err(format!("console lacks {s:?}"))
            }
            Check::NotContains(s) if guest.contains(s.as_str()) => {
                return Err(format!("console shows {s:?}"))
            }
            Check::Regex(r) => {
                let re = regex::Regex::new(r).map_err(|e| format!("bad regex {r:?}: {e}"))?;
                if !re.is_match(&guest) {
                    return Err(format!("console matches no /{r}/"));
                }
            }
            Check::Custom(what, f) => f(o).map_err(|e| format!("{what}: {e}"))?,
            Check::FaultAt { kind, via_caller } => fault_at(&guest, kind, *via_caller)?,
            _ => {}
        }
    }
    Ok(())
}

/// Busy threads, one per host core, until dropped.
struct Load(
    Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl Load {
    fn start() -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for _ in 0..100_000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                        }
                    }
                })
            })
            .collect();
        Load(stop, threads)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}
