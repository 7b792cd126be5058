//! `cargo xtask test`: host unit tests, builds, then boot tests under Xen in QEMU, each a
//! row of a table that says what to boot and what the console must show.
use crate::cargo::{self, Image};
use crate::qemu::{self, Boot, Outcome, Stream};
use crate::{initrd, provision};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    ("runner", &["--manifest-path", "runner/Cargo.toml"]),
    ("xtask", &["--manifest-path", "xtask/Cargo.toml"]),
];

const REGRESS: &str = "xenpv-rt/regress-2014-fixmap-copy";
const MOD_START_PFN: &str = "xenpv-rt/mod-start-pfn";

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
    /// Made once before the runs start (disk images, and what the checks expect of
    /// them): it may set `disks`, `dom0_script` and `checks`.
    pub prepare: Option<Prepare>,
}

fn t(name: &str, image: Image, cmdline: &str, status: i32, checks: Vec<Check>) -> BootTest {
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
        prepare: None,
    }
}

fn has(s: &str) -> Check {
    Check::Contains(s.into())
}

/// End of Xen's boot mapping, from its "VIRTUAL MEMORY ARRANGEMENT" (`TOTAL: a->b`).
fn boot_mapping_end(o: &Outcome) -> Result<u64, String> {
    let line = o
        .text
        .lines()
        .find(|l| l.contains("TOTAL:"))
        .ok_or("Xen printed no TOTAL: line")?;
    let end = line
        .rsplit("->")
        .next()
        .ok_or("TOTAL: line without ->")?
        .trim();
    u64::from_str_radix(end, 16).map_err(|e| format!("TOTAL end {end:?}: {e}"))
}

/// The line of the app's faults.rs that faults for KIND: the one after its
/// `// fault-line: KIND` marker (1-based, so the marker's index plus two).
fn fault_line(kind: &str) -> Result<usize, String> {
    let src = std::fs::read_to_string(crate::root().join("app/src/faults.rs"))
        .map_err(|e| e.to_string())?;
    let marker = format!("// fault-line: {kind}");
    src.lines()
        .position(|l| l.trim() == marker)
        .map(|i| i + 2)
        .ok_or_else(|| format!("no {marker:?} line in app/src/faults.rs"))
}

fn fault_at(guest: &str, kind: &str, via_caller: bool) -> Result<(), String> {
    let line = fault_line(kind)?;
    let want = format!("(app/src/faults.rs:{line})");
    // A frame of `recursion` first touches the guard page either in its prologue's
    // pushes (the `fn` line, two above the marker's next) or in the buffer's write (the
    // marker's next line): which depends on where the page boundary falls in the frame,
    // and that moves with the callers' frames. Either names the recursing function.
    let also = (kind == "recursion").then(|| format!("(app/src/faults.rs:{})", line - 2));
    let prefix = if via_caller {
        "fault:   called from "
    } else {
        "fault: "
    };
    let lines: Vec<&str> = guest
        .lines()
        .map(|l| l.strip_prefix("domU| ").unwrap_or(l))
        .filter(|l| l.starts_with(prefix) && (via_caller || !l.starts_with("fault:   ")))
        .collect();
    let hit = |l: &&str| l.ends_with(&want) || also.as_ref().is_some_and(|a| l.ends_with(a));
    if lines.iter().any(hit) {
        Ok(())
    } else {
        Err(format!("no symbolized line ends with {want:?}: {lines:?}"))
    }
}

/// The decoded defmt line points at the `defmt::info!` in the app's source.
fn defmt_line_matches_source(o: &Outcome) -> Result<(), String> {
    let src = std::fs::read_to_string(crate::root().join("app/src/main.rs"))
        .map_err(|e| e.to_string())?;
    // The macro's line: the one holding `defmt::info!(` at or before the format string.
    let lines: Vec<&str> = src.lines().collect();
    let fmt_at = lines
        .iter()
        .position(|l| l.contains("\"defmt: {=str} has"))
        .ok_or("no defmt message in app/src/main.rs")?;
    let want = (0..=fmt_at)
        .rev()
        .find(|&i| lines[i].contains("defmt::info!("))
        .ok_or("no defmt::info! before the message")?
        + 1;
    let got = o
        .guest_lines()
        .find_map(|l| {
            l.strip_prefix("INFO  ")
                .and_then(|r| r.rsplit_once("(app/src/main.rs:"))
        })
        .and_then(|(_, n)| n.trim_end_matches(')').parse::<usize>().ok())
        .ok_or("no decoded defmt line")?;
    (got == want).then_some(()).ok_or(format!(
        "decoded line says :{got}, the source has it at :{want}"
    ))
}

/// The paging layout every good boot must report.
fn layout_ok() -> Vec<Check> {
    vec![
        // Xen fills some of its slots 256..=271 (which ones is Xen's business).
        Check::Regex(
            r"(?m)^layout: l4 (2(5[6-9]|6[0-9]|7[01])(-2(5[6-9]|6[0-9]|7[01]))?=xen )+272=direct-map 511=kernel-map$",
        ),
        has("layout: level3_kernel 510=level2_kernel 511=level2_fixmap"),
        Check::Regex(
            r"layout: initrd (none|pfn 0x[0-9a-f]+\.\.0x[0-9a-f]+ at 0xffff88[0-9a-f]+ \(direct map\), frames reserved)",
        ),
        Check::Custom(
            "level2_kernel maps the image's 2 MiB slots and nothing else",
            level2_kernel_fits_the_image,
        ),
        has("layout: level2_fixmap 0-505=free 506=fixmap 507-511=free fixmap_l1=ro"),
        has("layout: check ok"),
        // W^X: the image by section, the guard page under the boot stack, and the
        // direct-map alias of the text read-only.
        has("layout: image text=r-x rodata=r-- data=rw- stack-guard=unmapped text-alias=r--"),
        Check::Regex(r"layout: shared_info at fixmap 0xffffffffff400000: vcpu0 upcall_mask=\d"),
    ]
}

/// `layout: level2_kernel` names exactly the 2 MiB slots the image spans (from the
/// `layout: split=… kernel=START..END` line): a dev-profile image with smoltcp is over
/// 2 MiB, a release one under.
fn level2_kernel_fits_the_image(o: &Outcome) -> Result<(), String> {
    let split = o
        .guest_lines()
        .find(|l| l.starts_with("layout: split="))
        .ok_or("no layout: split= line")?;
    let range = split
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kernel="))
        .ok_or("no kernel= in the split line")?;
    let (a, b) = range.split_once("..").ok_or("kernel= is not START..END")?;
    let hex =
        |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|e| e.to_string());
    let slots = (hex(b)? - hex(a)?).div_ceil(2 << 20);
    let want = match slots {
        1 => "layout: level2_kernel 0=kernel 1-511=free".to_string(),
        n => format!("layout: level2_kernel 0-{}=kernel {n}-511=free", n - 1),
    };
    o.guest_lines()
        .any(|l| l == want)
        .then_some(())
        .ok_or(format!("console lacks {want:?}"))
}

/// Guest memory for a stress run: the initrd, all of module space (so that module space,
/// not memory, runs out first) and room for the kernel, tables and the runtime.
pub fn stress_memory_mib(initrd_mib: u64, split: &str) -> u64 {
    let modules = if split == "1G" { 1008 } else { 1520 };
    initrd_mib + modules + 384
}

/// `key=value` of the last line starting with `prefix` (the guest's summary lines).
pub fn line_field<'a>(text: &'a str, prefix: &str, key: &str) -> Option<&'a str> {
    let line = text.lines().rev().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// A numeric [`line_field`], with an error saying what is missing.
fn field(text: &str, prefix: &str, key: &str) -> Result<u64, String> {
    line_field(text, prefix, key)
        .ok_or(format!("no {key}= on a line starting {prefix:?}"))?
        .parse()
        .map_err(|e| format!("{key}: {e}"))
}

/// A field of the stress summary line.
pub fn stress_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    line_field(text, "stress: seed=", key)
}

/// The stress passed and kept to its promises.
fn stress_ok() -> Vec<Check> {
    vec![
        has("stress: checks image_ro=same"),
        Check::Regex(r"stress: checks .* patterns=intact frames_back=true poisoned_pages=0"),
        Check::Regex(
            r"stress: seed=\d+ cycles=\d+ pages_mapped=\d+ peak_pages=\d+ exhausted_va=[1-9]\d* exhausted_frames=\d+ l1_made=\d+ non_none_ptes=0 .* verdict=PASS",
        ),
        Check::Custom(
            "at least 256 PTE updates per hypercall in the stress",
            |o| {
                let v: f64 = stress_field(&o.text, "per_hypercall")
                    .ok_or("no per_hypercall figure")?
                    .parse()
                    .map_err(|e| format!("per_hypercall: {e}"))?;
                (v >= 256.0)
                    .then_some(())
                    .ok_or(format!("{v} PTE updates per hypercall"))
            },
        ),
    ]
}

/// The heap stress's verdict line when every byte came back (dom0 and domU rows).
const HEAP_PASS: &str = r"heap: seed=1 allocations=\d+ allocs_per_s=\d+ alloc_free_per_s=\d+ bad=0 big_vec_mib=256 claimed_mib=\d+ failures=0 verdict=PASS";

/// A provoked fault: status 103, the vector, and the symbolized line of faults.rs.
fn fault(kind: &'static str, line: &str, via_caller: bool) -> BootTest {
    t(
        &format!("fault-{kind}"),
        Image::app(),
        &format!("fault={kind}"),
        103,
        vec![
            has(&format!("xenpv-rt: fault: {line}")),
            Check::FaultAt { kind, via_caller },
            has("xenpv-rt: exit status 103"),
        ],
    )
}

/// Unbounded recursion into the guard page: Xen cannot deliver that fault, so the host
/// reads Xen's register dump, names the overflow and symbolizes where it happened.
fn stack_overflow(name: &str) -> BootTest {
    t(
        name,
        Image::app(),
        "fault=recursion",
        103,
        vec![
            has("fault: #PF page fault vector=14 that Xen could not deliver"),
            has("fault: stack overflow: the boot stack ran into its guard page"),
            Check::FaultAt {
                kind: "recursion",
                via_caller: false,
            },
        ],
    )
}

/// The table of boot tests.
pub fn table() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = vec![
        t("boot-hello", app(), "defmt_damage", 0, {
            let mut c = vec![
                Check::Regex(
                    r"(?m)^INFO  \[\d+\.\d{6}\] defmt: dom0 has 65536 pages, split 512M \(app/src/main\.rs:\d+\)$",
                ),
                Check::Custom(
                    "the defmt line names the right file:line",
                    defmt_line_matches_source,
                ),
                has("[defmt: corrupt line (not base64): AQCj8R4A!!]"),
                Check::Regex(r"\[defmt: corrupt frame \(.*\), 3 bytes\]"),
                has("[defmt: a frame too large for the runtime's buffer was dropped]"),
                has("xenpv-app: hello from xenpv-rt 0.1.0 (dom0)"),
                Check::Regex(
                    r#"start_info: magic="xen-3\.0-x86_64" nr_pages=65536 flags=0x[0-9a-f]+ \[privileged,initdomain\].* cmdline="defmt_damage qemu-exit""#,
                ),
                has("initrd: none"),
                has("xenpv-rt: exit status 0"),
            ];
            c.extend(layout_ok());
            c
        }),
        fault("null-read", "#PF page fault vector=14 error=0x0", false),
        fault("null-write", "#PF page fault vector=14 error=0x2", false),
        fault("text-write", "#PF page fault vector=14 error=0x3", false),
        fault("rodata-write", "#PF page fault vector=14 error=0x3", false),
        fault("ud2", "#UD invalid opcode vector=6", false),
        fault("div0", "#DE divide error vector=0", false),
        fault("nx-jump", "#PF page fault vector=14 error=0x11", true),
        // Xen cannot deliver a fault on an overflowed stack: the host reads its dump.
        stack_overflow("fault-recursion"),
        // A plain `cargo build` (dev profile, opt-level 0) must boot too.
        t("dev-profile-app", Image::Dev { example: false }, "", 0, {
            let mut c = vec![has("xenpv-rt: exit status 0")];
            c.extend(layout_ok());
            c
        }),
        t(
            "dev-profile-example",
            Image::Dev { example: true },
            "",
            0,
            vec![has("xenpv-rt: exit status 0")],
        ),
        t(
            "panic",
            app(),
            "panic",
            101,
            vec![
                Check::Regex(r"xenpv-rt: panicked at app/src/main\.rs:\d+:\d+: provoked panic"),
                has("xenpv-rt: exit status 101"),
            ],
        ),
        t(
            "exit-status",
            app(),
            "exit=7",
            7,
            vec![has("xenpv-rt: exit status 7")],
        ),
        t(
            "example-hello",
            Image::Example,
            "",
            0,
            vec![
                has("hello from a library consumer: 65536 pages"),
                Check::Regex(r"vmalloc'd 3 MiB at 0xffffffffa0000000 and gave it back"),
            ],
        ),
        t(
            "layout-refused",
            app(),
            "split=1G modspace=2000",
            102,
            vec![has(
                "xenpv-rt: fatal: layout refused: module space of the 1G split is 1008 MiB \
             (0xffffffffc0000000..0xffffffffff000000), smaller than the 2000 MiB asked for",
            )],
        ),
        t(
            "bad-split",
            app(),
            "split=3G",
            102,
            vec![has(
                "xenpv-rt: fatal: split=\"3G\": the kernel/module split is 512M or 1G",
            )],
        ),
    ];
    // The address-space picture, drawn from a real boot with module areas in use.
    v.push(t(
        "layout-picture",
        app(),
        "vmap_demo",
        0,
        vec![
            Check::Regex(r"layout: level2_kernel 0=kernel 1-255=free 256-\d+=module \d+-511=free"),
            Check::Custom("the SVG picture is valid XML with the slot labels", |o| {
                let guest: String = o.guest_lines().collect::<Vec<_>>().join("\n");
                let l = crate::picture::parse(&guest)?;
                let svg = crate::picture::svg(&l);
                crate::picture::check_svg(&svg, &l)?;
                let f = crate::root().join("target/xtask/tests/layout.svg");
                std::fs::write(&f, svg).map_err(|e| format!("{}: {e}", f.display()))
            }),
        ],
    ));
    // Event channels: one-shot timers (count, spacing, arriving mid-computation) and a
    // loopback channel.
    v.push(t(
        "events-timer-and-loopback",
        app(),
        "events",
        0,
        vec![
            Check::Regex(r"events: timer fired=2000/2000 period_us=1000 min_spacing_us=\d+ max_late_us=\d+ early=0 during_compute=\d+ fmt_checks=\d+ fmt_bad=0"),
            Check::Custom("timer events at least 1 ms apart (less Xen's 50 us slop)", |o| {
                let gap: u64 = field(&o.text, "events: timer", "min_spacing_us")?;
                (gap >= 950).then_some(()).ok_or(format!("min spacing {gap} us"))
            }),
            Check::Custom("half the timer events arrived during computation", |o| {
                let n: u64 = field(&o.text, "events: timer", "during_compute")?;
                (n >= 1000).then_some(()).ok_or(format!("{n} during computation"))
            }),
            has("bind_marks_pending=ok b->a=ok a->b=ok masked=ok unmasked=ok closed=ok"),
            has("events: verdict=PASS"),
        ],
    ));
    // Grant tables with Xen doing the peer's part.
    v.push(t(
        "grant-copy-map-exhaust",
        app(),
        "grant",
        0,
        vec![
            Check::Regex(r"grant: copy via ref \d+: 4096 bytes, 0 differ"),
            Check::Regex(r"grant: write through read-only ref \d+ refused: GNTTABOP_copy: status -\d+"),
            Check::Regex(r"grant: end while mapped: grant reference \d+ still in use by the peer \(flags 0x[0-9a-f]+\): access not ended"),
            has("contents same, end refused while mapped: yes, ended after unmap: yes"),
            has("grant: second map while mapped: the grant-mapping slot is in use: unmap that mapping first"),
            has("grant: after 504 grants: all 504 grant references in use; all back: yes"),
            // One table per guest; a grant its peer keeps is deferred, then comes back.
            has("grant: second setup refused: the grant table is already set up"),
            Check::Regex(r"grant: kept by its peer via ref \d+: deferred=1, back while mapped=0, back after unmap=1, deferred now=0, refs all back: yes"),
            has("grant: verdict=PASS"),
        ],
    ));
    // The heap: a stress whose every byte is checked, a limit that is an error the app
    // handles, and an infallible allocation past it that panics with the reason said.
    let mut h = t(
        "heap-stress",
        app(),
        "heap",
        0,
        vec![Check::Regex(HEAP_PASS), has("xenpv-rt: exit status 0")],
    );
    h.memory_mib = 1024;
    v.push(h);
    v.push(t(
        "heap-limit",
        app(),
        "heap heap=64 heap_mib=128",
        8,
        vec![
            Check::Regex(r"xenpv-rt\[WARN \] heap: cannot allocate \d+ bytes \(align 8\): the heap limit is reached \(heap= on the command line, or heap::set_limit\); \d+ MiB claimed, limit 64 MiB"),
            Check::Regex(r"heap: could not grow the Vec past \d+ MiB"),
            Check::Regex(r"verdict=FAIL"),
        ],
    ));
    v.push(t(
        "heap-oom-panics-with-the-reason",
        app(),
        "heap_oom heap=32",
        101,
        vec![
            has("heap: cannot allocate 1073741824 bytes (align 1): the heap limit is reached"),
            has("memory allocation of 1073741824 bytes failed"),
            has("xenpv-rt: exit status 101"),
        ],
    ));
    // The direct map: on demand by default (start of day maps a few chunks, the heap's
    // and vmap's allocations map the rest as they need it), eager on request, and its
    // L1s written entry by entry for comparison.
    let mut od = t(
        "direct-map-on-demand-grows-2G",
        app(),
        "heap",
        0,
        vec![
            Check::Regex(HEAP_PASS),
            Check::Regex(r"timing: .* direct_map=on-demand mapped_mib=\d+ pt_write=stores"),
            Check::Custom("start of day maps at most 32 MiB of 2 GiB", |o| {
                let mib: u64 = line_field(&o.text, "timing: entry_to_main", "mapped_mib")
                    .and_then(|v| v.parse().ok())
                    .ok_or("no mapped_mib in the timing line")?;
                (mib <= 32)
                    .then_some(())
                    .ok_or(format!("{mib} MiB mapped at start of day"))
            }),
            Check::Regex(
                r"direct_map: mode=on-demand start_mib=\d+ mapped_mib=\d+ of 2048 MiB, chunks_grown=[1-9]\d* pte_updates=\d+ holes=0",
            ),
        ],
    );
    od.checks.extend(layout_ok());
    od.memory_mib = 2048;
    v.push(od);
    let mut eager = t(
        "direct-map-eager-2G",
        app(),
        "direct_map=eager",
        0,
        vec![
            has("direct_map=eager mapped_mib=2048 pt_write=stores"),
            Check::Regex(r"direct_map: mode=eager start_mib=\d+ mapped_mib=2048 of 2048 MiB"),
        ],
    );
    eager.checks.extend(layout_ok());
    eager.memory_mib = 2048;
    v.push(eager);
    let mut mmu = t(
        "direct-map-eager-mmu-stress",
        app(),
        "direct_map=eager pt_write=mmu split=1G stress seed=21",
        0,
        vec![has("pt_write=mmu")],
    );
    mmu.checks.extend(layout_ok());
    mmu.checks.extend(stress_ok());
    mmu.memory_mib = stress_memory_mib(0, "1G");
    mmu.timeout_s = 300;
    v.push(mmu);
    v.push(t(
        "direct-map-bad-word",
        app(),
        "direct_map=lazy",
        102,
        vec![has(
            "xenpv-rt: fatal: direct_map=\"lazy\": the direct map is on-demand or eager",
        )],
    ));
    // The paging matrix: initrd size x split, each booting with the vmap stress.
    for (mib, seed) in [(0, 0), (64, 1), (600, 2), (1100, 3)] {
        for split in ["512M", "1G"] {
            let mut b = t(
                &format!("paging-{split}-initrd-{mib}M"),
                app(),
                &format!("split={split} stress seed={}", 11 + seed),
                0,
                layout_ok(),
            );
            b.checks.extend(stress_ok());
            b.memory_mib = stress_memory_mib(mib, split);
            b.timeout_s = 300;
            if mib > 0 {
                b.initrd = InitrdSpec::Checked { mib, seed };
            }
            if mib == 600 {
                b.checks
                    .push(Check::Custom("Xen's boot mapping crosses 512 MiB", |o| {
                        let end = boot_mapping_end(o)?;
                        (end > 0xffff_ffff_a000_0000)
                            .then_some(())
                            .ok_or(format!("boot mapping ends at {end:#x}"))
                    }));
            }
            if mib == 1100 {
                b.checks.push(Check::Custom(
                    "Xen's boot mapping reaches into L3[511]",
                    |o| {
                        let end = boot_mapping_end(o)?;
                        (end > 0xffff_ffff_c000_0000)
                            .then_some(())
                            .ok_or(format!("boot mapping ends at {end:#x}"))
                    },
                ));
            }
            v.push(b);
        }
    }
    let mut pfn = t(
        "paging-mod-start-pfn-1G-initrd-1100M",
        Image::App {
            features: vec![MOD_START_PFN.into()],
        },
        "split=1G",
        0,
        layout_ok(),
    );
    pfn.initrd = InitrdSpec::Checked { mib: 1100, seed: 3 };
    pfn.memory_mib = 2048;
    pfn.timeout_s = 240;
    pfn.checks.push(Check::Regex(
        r"flags=0x[0-9a-f]+ \[[a-z_,]*mod_start_pfn[a-z_,]*\].* module=pfn0x",
    ));
    v.push(pfn);

    let mut bad = t(
        "initrd-corrupt-detected",
        app(),
        "",
        1,
        vec![Check::Regex(
            r"initrd: BAD first bad word at offset 0x2000: 0x[0-9a-f]{16}, pattern says 0x[0-9a-f]{16}",
        )],
    );
    bad.initrd = InitrdSpec::Corrupt {
        mib: 64,
        seed: 1,
        offset: 0x2003,
    };
    v.push(bad);

    // The 2014 bug, reproduced: the layout check must catch it, and the stress must meet
    // the stale PTEs (and refuse to overwrite them).
    let mut regress = t(
        "regress-2014-caught-1G-initrd-600M",
        Image::App {
            features: vec![REGRESS.into()],
        },
        "split=1G stress seed=5",
        3,
        vec![
            Check::Regex(
                r"stress: vmap of \d+ pages refused: L1 entry for 0xffffffffc0000000 is 0x[0-9a-f]{16}, not none \(\d+ such entries in the request\); range poisoned",
            ),
            Check::Regex(r"stress: seed=5 .* non_none_ptes=[1-9]\d* .* verdict=FAIL"),
            Check::Regex(r"stress: FAIL: non-none PTEs met"),
            Check::Regex(r"layout: level2_fixmap 0=STALE:kernel 1-\d+=STALE:initrd"),
            Check::Regex(
                r"layout: check FAILED: \d+ stale slot\(s\) in the kernel map; first L3\[511\] L2\[0\] at 0xffffffffc0000000 maps kernel",
            ),
            Check::NotContains("layout: check ok".into()),
        ],
    );
    regress.initrd = InitrdSpec::Checked { mib: 600, seed: 2 };
    regress.memory_mib = stress_memory_mib(600, "1G");
    regress.timeout_s = 300;
    v.push(regress);
    v.extend(domu_tests());
    v
}

/// A burst of `n` numbered lines arrived complete and in order.
fn burst_complete(o: &Outcome) -> Result<(), String> {
    let mut next = 0u64;
    let mut n = None;
    for l in o.guest_lines() {
        if let Some(rest) = l.strip_prefix("burst: line ") {
            let mut w = rest.split_whitespace();
            let i: u64 = w
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("bad line {l:?}"))?;
            let want = format!("{:016x}", (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            if i != next || w.nth(2) != Some(want.as_str()) {
                return Err(format!("line {next} expected, got {l:?}"));
            }
            next += 1;
        } else if let Some(rest) = l.strip_prefix("burst: done n=") {
            n = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok());
        }
    }
    match n {
        Some(n) if n == next => Ok(()),
        Some(n) => Err(format!("{next} of {n} lines arrived")),
        None => Err(format!("no done line after {next} lines")),
    }
}

/// Boot tests as a domU of a Linux dom0 in the box (xl, xenstored, xenconsoled).
fn domu_tests() -> Vec<BootTest> {
    let app = Image::app;
    let mut hello = t(
        "domu-hello-console-xenstore",
        app(),
        "xenstore grant burst=3000",
        0,
        vec![
            Check::Regex(
                r"grant: offered ref \d+ to dom0 read-only, fnv=[0-9a-f]{16}, published=yes",
            ),
            Check::Regex(
                r"xenbox: peer: mapped grant \d+ of domain [1-9]\d*: 4096 bytes fnv=([0-9a-f]{16}) expected=[0-9a-f]{16} match=yes",
            ),
            Check::Custom("dom0 saw the page the domU granted", |o| {
                let said = |p: &str| {
                    o.text.lines().find(|l| l.contains(p)).and_then(|l| {
                        l.split_whitespace()
                            .find_map(|w| w.strip_prefix("fnv="))
                            .map(|f| f.trim_end_matches(','))
                    })
                };
                match (said("grant: offered ref"), said("peer: mapped grant")) {
                    (Some(a), Some(b)) if a == b => Ok(()),
                    other => Err(format!("domU and dom0 hashes: {other:?}")),
                }
            }),
            has("xenpv-app: hello from xenpv-rt 0.1.0 (domU)"),
            Check::Regex(
                r#"start_info: magic="xen-3\.0-x86_64" nr_pages=\d+ flags=0x0 \[\].* console=mfn0x[0-9a-f]+/evtchn\d+ cmdline="xenstore grant burst=3000""#,
            ),
            Check::Regex(r"xenstore: domid=[1-9]\d* name=xenpv-app status_write=ok"),
            Check::Regex(
                r"xenbox: xenstore-read /local/domain/[1-9]\d*/data/xenpv-app/status = ok",
            ),
            has("burst: done n=3000 lost=0"),
            Check::Custom(
                "the 3000-line burst arrived complete and in order",
                burst_complete,
            ),
            has("xenbox: domU state=---s-- reason=0"),
        ],
    );
    hello.checks.extend(layout_ok());
    hello.memory_mib = 128;
    // The same run while every host core is busy: the stream must still carry all of it.
    let mut loaded = t(
        &format!("{}-under-load", hello.name),
        hello.image.clone(),
        &hello.cmdline,
        0,
        Vec::new(),
    );
    loaded.checks = vec![
        has("burst: done n=3000 lost=0"),
        Check::Custom(
            "the 3000-line burst arrived complete and in order",
            burst_complete,
        ),
        has("xenbox: domU state=---s-- reason=0"),
    ];
    loaded.memory_mib = 128;
    loaded.under_load = true;
    let mut v = vec![hello, loaded];
    // 1024 MiB is the largest ramdisk xl can load (libxenguest's XC_DOM_DECOMPRESS_MAX),
    // and still spills the domU's boot mapping into L3[511].
    for (mib, seed) in [(600, 2), (1024, 4)] {
        let mut b = t(
            &format!("domu-paging-1G-initrd-{mib}M"),
            app(),
            "split=1G",
            0,
            layout_ok(),
        );
        b.checks.push(has("xenbox: domU state=---s-- reason=0"));
        if mib == 1024 {
            // libxenguest puts the p2m list after the ramdisk: past 1 GiB it is under L3[511].
            b.checks.push(Check::Custom(
                "the domU's boot mapping reaches into L3[511]",
                |o| {
                    let line = o
                        .guest_lines()
                        .find(|l| l.starts_with("start_info:"))
                        .ok_or("no start_info line")?;
                    let v = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("mfn_list=0x"))
                        .ok_or("no mfn_list")?;
                    let va = u64::from_str_radix(v, 16).map_err(|e| e.to_string())?;
                    (va >= 0xffff_ffff_c000_0000)
                        .then_some(())
                        .ok_or(format!("mfn_list at {va:#x}"))
                },
            ));
        }
        b.initrd = InitrdSpec::Checked { mib, seed };
        b.memory_mib = mib + 256;
        b.timeout_s = 400;
        v.push(b);
    }
    for b in &mut v {
        // The guest's last line must come through the stream too.
        b.checks.push(has("xenpv-rt: exit status 0"));
    }
    // Early errors: a refused layout is said on the ring console (attached before any
    // step that can fail), and a fault is reported and symbolized through it.
    v.push(t(
        "domu-refused-layout",
        app(),
        "split=2G",
        102,
        vec![
            has("xenpv-rt: fatal: split=\"2G\": the kernel/module split is 512M or 1G"),
            has("xenpv-rt: exit status 102"),
        ],
    ));
    let mut null_write = fault("null-write", "#PF page fault vector=14 error=0x2", false);
    null_write.name = "domu-fault-null-write".into();
    null_write.memory_mib = 128;
    v.push(null_write);
    let mut heap = t(
        "domu-heap-stress",
        app(),
        "heap",
        0,
        vec![Check::Regex(HEAP_PASS)],
    );
    heap.memory_mib = 1024;
    v.push(heap);
    v.push(stack_overflow("domu-fault-recursion"));
    // A panic and a fault while the console ring's lock is held (in the middle of a
    // console write): the report still comes out, with the status.
    let mut panic_held = t(
        "domu-panic-holding-console",
        app(),
        "panic hold-console",
        101,
        vec![
            Check::Regex(r"xenpv-rt: panicked at app/src/main\.rs:\d+:\d+: provoked panic"),
            has("xenpv-rt: exit status 101"),
        ],
    );
    panic_held.memory_mib = 128;
    v.push(panic_held);
    let mut fault_held = fault("null-write", "#PF page fault vector=14 error=0x2", false);
    fault_held.name = "domu-fault-holding-console".into();
    fault_held.cmdline = "fault=null-write hold-console".into();
    fault_held.memory_mib = 128;
    v.push(fault_held);
    v.push(net_appliance());
    v.push(net_dhcp());
    v.push(blk());
    v.push(blk_files());
    // Issue 24: nothing a client or a disk sends can stall, starve or crash the appliance.
    v.push(net_hostile_clients());
    v.push(net_shutdown_during("detach"));
    v.push(net_shutdown_during("attach"));
    v.push(net_fragments());
    v.push(blk_hostile_ext4());
    v.push(blk_stalled_disk());
    for b in &mut v {
        b.domu = true;
        b.timeout_s = b.timeout_s.max(240);
    }
    v
}

/// The appliance with its address from DHCP (busybox udhcpd in dom0).
fn net_dhcp() -> BootTest {
    let mut b = t(
        "domu-net-dhcp",
        Image::app(),
        "net ip=dhcp",
        0,
        vec![
            Check::Regex(r"net: vif0 dhcp address=169\.254\.100\.(5\d|60)/24"),
            Check::NotContains("dhcp lease lost".into()),
            Check::Regex(r"dom0\| leased address: 169\.254\.100\.(5\d|60)"),
            has("dom0| 5 packets transmitted, 5 packets received, 0% packet loss"),
            Check::Regex(r"dom0\| peer: http-get PASS status=200 bytes=\d+ conns=1 ok=1"),
            has("xenbox: dom0-script exit 0"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.vifs = 1;
    b.dom0_script = Some(include_str!("net_dhcp_test.sh"));
    b.timeout_s = 600;
    b
}

/// dom0's side of the network appliance's test: every client a verdict line, the
/// failures counted into the script's exit status.
const NET_SCRIPT: &str = include_str!("net_test.sh");

/// The network appliance on two vifs against Linux's netback: ping, UDP and TCP echo,
/// HTTP, concurrent connections, and a backend detached and attached again mid-run.
fn net_appliance() -> BootTest {
    let pass = |what: &'static str| {
        Check::Regex(match what {
            "udp" => r"dom0\| peer: udp-echo PASS sent=10000 returned=10000 lost=0 mismatched=0",
            "tcp" => r"dom0\| peer: tcp-echo PASS bytes=33554432 conns=1 ok=1",
            "http" => {
                r"dom0\| peer: http-get PASS status=200 fnv=[0-9a-f]{16} bytes=67108864 conns=1 ok=1"
            }
            "tcp8" => r"dom0\| peer: tcp-echo PASS bytes=8388608 conns=8 ok=8",
            "http8" => {
                r"dom0\| peer: http-get PASS status=200 fnv=[0-9a-f]{16} bytes=8388608 conns=8 ok=8"
            }
            "404" => r"dom0\| peer: http-get PASS status=404",
            _ => unreachable!(),
        })
    };
    let mut b = t(
        "domu-net-appliance",
        Image::app(),
        "net vifs=2 ip=169.254.100.2/24,169.254.100.3/24",
        0,
        vec![
            Check::Regex(
                r"net: vif0 connected in \d+ ms: mac=00:16:3e:00:00:02 backend=/local/domain/0/backend/vif/\d+/0 \(domain 0\) ip=169\.254\.100\.2/24 gso=on",
            ),
            Check::Regex(r"net: vif1 connected in \d+ ms: mac=00:16:3e:00:00:03"),
            has("dom0| 100 packets transmitted, 100 packets received, 0% packet loss"),
            pass("udp"),
            pass("tcp"),
            pass("http"),
            pass("tcp8"),
            pass("http8"),
            pass("404"),
            Check::Regex(
                r"net: vif1 detached \(backend (Closing|Closed|gone)\): closed in \d+ ms, pages_kept=0",
            ),
            Check::Regex(r"net: vif1 reattached in \d+ ms"),
            has("dom0| after re-attach: ok"),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            Check::Regex(r"net: served udp_echoed=\d+ udp_dropped=0 "),
            Check::Regex(
                // Both directions carried TCP packets of several segments (GSO), and
                // no frame had a wrong checksum.
                r"net: vif0 tx_packets=\d+ rx_packets=\d+ tx_bytes=\d+ rx_bytes=\d+ tx_gso=[1-9]\d* rx_multi=[1-9]\d* notifies=\d+ refused=0 failed=0 tx_dropped=\d+ bad_checksums=0",
            ),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.memory_mib = 256;
    b.vifs = 2;
    b.dom0_script = Some(NET_SCRIPT);
    b.timeout_s = 900;
    b
}

/// dom0's side of the storage test (`EXPECT0=…` is put before it).
const BLK_SCRIPT: &str = include_str!("blk_test.sh");

/// blkfront against Linux's blkback: a 256 MiB disk written with the pattern (first and
/// last sector, requests on both sides of the 11-segment limit) and checked in dom0 with
/// sha256sum, dom0's pattern checked by the guest, a flush, the refusals (past the end,
/// not whole sectors, a read-only disk) with the devices usable after, and a read-only
/// disk whose contents the host made.
fn blk() -> BootTest {
    let disk = |d: &str| format!("blk: {d}: ");
    let mut b = t(
        "domu-blk",
        Image::app(),
        "blk blk_ro_seed=3",
        0,
        vec![
            Check::Regex(
                r"blk: xvda \(vbd 51712\) connected in \d+ ms: sectors=524288 sector_size=512 bytes=268435456 ro=0 removable=0 flush=flush-cache max_indirect=\d+ request_kib=\d+ backend=/local/domain/0/backend/vbd/\d+/51712 \(domain 0\)",
            ),
            Check::Regex(r"blk: xvdb \(vbd 51728\) connected in \d+ ms: sectors=32768 sector_size=512 bytes=16777216 ro=1"),
            has(&(disk("xvda") + "read past the end: refused: sectors 524288..524289 are past the end of the device (524288 sectors)")),
            has(&(disk("xvda") + "write across the end: refused: sectors 524287..524289 are past the end")),
            has(&(disk("xvda") + "a 100-byte buffer: refused: a buffer of 100 bytes is not a whole number of 512-byte sectors")),
            Check::Regex(r"blk: xvda: wrote pattern seed=1 bytes=268435456 calls=\d+ in \d+ ms"),
            has(&(disk("xvda") + "flush: ok")),
            Check::Regex(r"blk: xvda: verify seed=1 bytes=268435456 mismatched=0 first_mismatch=-1 in"),
            has(&(disk("xvdb") + "write to a read-only disk: refused: the device is read-only")),
            has(&(disk("xvdb") + "read after it: ok")),
            has(&(disk("xvdb") + "pattern seed=3 bytes=16777216 mismatched=0 first_mismatch=-1")),
            Check::Regex(r"dom0\| sha256sum /dev/vd[a-z]: [0-9a-f]{64} ok"),
            has("dom0| peer: disk-verify PASS bytes=268435456 mismatched=0"),
            has("dom0| peer: disk-fill PASS bytes=268435456"),
            has(&(disk("xvda") + "dom0's pattern seed=2 bytes=268435456 mismatched=0 first_mismatch=-1")),
            Check::Regex(
                r"blk: xvda: requests=\d+ indirect=[1-9]\d* read_bytes=\d+ written_bytes=268435456 flushes=1 notifies=\d+ bad_id=0 not_in_flight=0 bad_operation=0 failed=0 late=0 retired=0 timed_out=0",
            ),
            has("blk: xvda: closed pages_kept=0 unacknowledged=0"),
            has("blk: PASS"),
            has("xenbox: dom0-script exit 0"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.memory_mib = 128;
    b.timeout_s = 900;
    b.prepare = Some(|b| {
        let d0 = crate::disks::blank("domu-blk-xvda.img", 256)?;
        let d1 = crate::disks::blank("domu-blk-xvdb.img", 16)?;
        crate::disks::fill(&d1, 3)?;
        b.disks = vec![
            crate::xenbox::Disk {
                path: d0,
                read_only: false,
                throttle: None,
            },
            crate::xenbox::Disk {
                path: d1,
                read_only: true,
                throttle: None,
            },
        ];
        let script = format!(
            "EXPECT0={}\n{BLK_SCRIPT}",
            crate::disks::pattern_sha256(1, 256 << 20)
        );
        b.dom0_script = Some(Box::leak(script.into_boxed_str()));
        Ok(())
    });
    b
}

/// dom0's side of the file server's test (the `check` lines are put after it).
const FILES_SCRIPT: &str = include_str!("files_test.sh");

/// Files served over HTTP from an ext4 image (made by mkfs.ext4 -d on the host, read by
/// ext4-view over blkfront): a dozen files from 0 bytes to 64 MiB, each checked in dom0
/// (length, checksum header and body against the file it was built from); a missing
/// path is a 404, a path with `..` a 400.
fn blk_files() -> BootTest {
    let mut b = t(
        "domu-blk-files",
        Image::app(),
        "net files ip=169.254.100.2/24",
        0,
        vec![
            Check::Regex(
                r"net: files from vbd 51712 \(\d+ sectors of 512 bytes, ro=1\) as ext4 in \d+ ms",
            ),
            has("dom0| peer: http-get PASS status=404"),
            has("dom0| peer: http-get PASS status=400"),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            Check::Regex(r"net: served .* file_errors=0"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 900;
    b.prepare = Some(|b| {
        let (img, files) = crate::disks::ext4_files("domu-blk-files.img")?;
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: None,
        }];
        let mut script = String::from(FILES_SCRIPT);
        for f in &files {
            script += &format!("check {} {} {}\n", f.path, f.len, f.fnv);
            b.checks.push(Check::Contains(format!(
                "dom0| peer: http-get PASS status=200 fnv={} bytes={} conns=1 ok=1",
                f.fnv, f.len
            )));
        }
        script += "exit \"$fails\"\n";
        b.dom0_script = Some(Box::leak(script.into_boxed_str()));
        Ok(())
    });
    b
}

/// The appliance's deadline for a request head, in seconds: a connection that has not
/// sent a whole head by then is closed (what `tcp-hold` expects of the held ones, with 5 s
/// of slack). The appliance's documented default (`head_timeout=`, README; the row sets
/// no word, so the default is what it tests).
const HEAD_TIMEOUT_S: u64 = 10;
/// How soon after `xl shutdown` during a large transfer the domU must have stopped.
const SHUTDOWN_DURING_TRANSFER_S: u64 = 30;
/// How soon after `xl shutdown` during a vif detach or re-attach the domU must have
/// stopped.
const SHUTDOWN_DURING_DETACH_S: u64 = 60;
/// How long the `-attach` variant's hotplug script sleeps before the box's own runs:
/// netback stays in InitWait that long, and the appliance inside its handshake.
const HOTPLUG_DELAY_S: u64 = 20;
/// How soon after the flood of incomplete fragments large datagrams must be echoed
/// again: the flood may hold the reassembly buffers until the appliance's reassembly
/// timeout drops them.
const FRAG_RECOVER_S: u64 = 30;
/// The appliance's count of IPv4 fragments it gave up on (incomplete datagrams timed out
/// or refused for want of reassembly memory), among the counters it prints when it
/// stops: at least one after the flood of incomplete fragments.
const FRAGS_DROPPED: &str = r"net: .*frag\w*=[1-9]\d*";
/// The appliance's refusal of a filesystem whose superblock claims more blocks than the
/// disk holds: a `net: files:` line naming the field.
const HOSTILE_EXT4_REFUSED: &str = r"net: files: vbd 51712: superblock refused: s_blocks_count is 4294967295, outside 1\.\.=\d+ \(the blocks the device holds\) \(serving without files\)";

/// What the hostile rows' dom0 scripts share: `step`, the check that fails without the
/// client program (`$PEER`), `now_ms`, `alive` and `up`.
const DOM0_PRELUDE: &str = include_str!("dom0_prelude.sh");

/// A dom0 script: `vars` (NAME=VALUE lines), then [`DOM0_PRELUDE`], then `script`.
fn script_with(vars: &[(&str, String)], script: &str) -> &'static str {
    let mut s = String::new();
    for (k, v) in vars {
        s += &format!("{k}={v}\n");
    }
    s += DOM0_PRELUDE;
    s += script;
    Box::leak(s.into_boxed_str())
}

/// Hostile clients against the appliance on one vif (issue 24): 64 clients at once on
/// the echo port, all served and none refused; 40 silent connections and 20 with half
/// a request head held on port 80 while a normal client (another dom0 address) is
/// served within 5 s, and the held ones closed by the appliance within
/// [`HEAD_TIMEOUT_S`]; UDP echo round trips during `GET /bytes/4294967296` (or the
/// largest size allowed, after a 4xx) under 10x their idle median, and `xl shutdown`
/// during that transfer honoured within [`SHUTDOWN_DURING_TRANSFER_S`].
fn net_hostile_clients() -> BootTest {
    let mut b = t(
        "domu-net-hostile-clients",
        Image::app(),
        "net ip=169.254.100.2/24",
        0,
        vec![
            has("dom0| peer: tcp-echo PASS bytes=4194304 conns=64 ok=64"),
            Check::Regex(r"dom0\| peer: tcp-hold PASS held=[1-9]\d* "),
            Check::Regex(r"dom0\| peer: http-get PASS status=200 "),
            Check::Regex(r"dom0\| peer: rtt-under-load PASS "),
            has("dom0| the large transfer: in-progress"),
            Check::Regex(
                r"dom0\| xl shutdown during the transfer: the domU stopped after \d+ ms .*: ok",
            ),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 1200;
    b.dom0_script = Some(script_with(
        &[
            ("HEAD_TIMEOUT", HEAD_TIMEOUT_S.to_string()),
            ("SHUTDOWN_WITHIN", SHUTDOWN_DURING_TRANSFER_S.to_string()),
        ],
        include_str!("net_hostile_test.sh"),
    ));
    b
}

/// `xl shutdown` issued while the appliance's only vif is being detached (`detach`:
/// as soon as the appliance is closing it) or re-attached (`attach`: while the
/// appliance is inside its handshake, the backend held in InitWait by a hotplug script
/// slowed by [`HOTPLUG_DELAY_S`]) is honoured: the domU stops within
/// [`SHUTDOWN_DURING_DETACH_S`], exit status 0.
fn net_shutdown_during(variant: &'static str) -> BootTest {
    let mut b = t(
        &format!("domu-net-shutdown-{variant}"),
        Image::app(),
        "net ip=169.254.100.2/24",
        0,
        vec![
            Check::Regex(r"dom0\| peer: http-get PASS status=200 "),
            Check::Regex(match variant {
                "detach" => {
                    r"dom0\| xl shutdown during detach: the domU stopped after \d+ ms .*: ok"
                }
                _ => r"dom0\| xl shutdown during attach: the domU stopped after \d+ ms .*: ok",
            }),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    if variant == "detach" {
        b.checks.push(Check::Regex(
            r"dom0\| detach: frontend state (5|6|gone) after \d+ ms",
        ));
    }
    if variant == "attach" {
        b.checks.push(Check::Regex(
            r"dom0\| re-attach: frontend state 4, backend state [0-3] after \d+ ms \(inside the handshake: yes\)",
        ));
    }
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 600;
    b.dom0_script = Some(script_with(
        &[
            ("VARIANT", variant.to_string()),
            ("SHUTDOWN_WITHIN", SHUTDOWN_DURING_DETACH_S.to_string()),
            ("HOTPLUG_DELAY", HOTPLUG_DELAY_S.to_string()),
        ],
        include_str!("net_shutdown_detach_test.sh"),
    ));
    b
}

/// UDP datagrams larger than the MTU (issue 24): echoes of every size class from 1473
/// to 65507 bytes come back byte-identical; 10 s of incomplete fragments later, small
/// echoes and HTTP answer at once and large ones within [`FRAG_RECOVER_S`], and the
/// appliance reports the fragments it dropped ([`FRAGS_DROPPED`]).
fn net_fragments() -> BootTest {
    let mut b = t(
        "domu-net-fragments",
        Image::app(),
        "net ip=169.254.100.2/24",
        0,
        vec![
            has("dom0| peer: udp-echo PASS sent=14 returned=14 lost=0 mismatched=0"),
            Check::Regex(r"dom0\| peer: frag-flood PASS sent=[1-9]\d* "),
            has("dom0| peer: udp-echo PASS sent=200 returned=200 lost=0 mismatched=0"),
            has("dom0| peer: udp-echo PASS sent=3 returned=3 lost=0 mismatched=0"),
            Check::Regex(
                r"dom0\| large datagrams after the flood: echoed \d+ ms after it ended: ok",
            ),
            Check::Regex(r"dom0\| peer: http-get PASS status=200 fnv=[0-9a-f]{16} bytes=1048576 "),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            Check::Regex(FRAGS_DROPPED),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 900;
    b.dom0_script = Some(script_with(
        &[("RECOVER_WITHIN", FRAG_RECOVER_S.to_string())],
        include_str!("net_frag_test.sh"),
    ));
    b
}

/// A hostile disk (issue 24, the review's M4): an ext4 image whose superblock claims
/// 0xffffffff blocks in groups of one ([`crate::disks::ext4_hostile`]), booted with
/// `net files`: the appliance refuses the filesystem with an error naming the field
/// ([`HOSTILE_EXT4_REFUSED`]), does not panic, and keeps serving `/bytes`.
fn blk_hostile_ext4() -> BootTest {
    let mut b = t(
        "domu-blk-hostile-ext4",
        Image::app(),
        "net files ip=169.254.100.2/24",
        0,
        vec![
            Check::Regex(HOSTILE_EXT4_REFUSED),
            Check::NotContains("panicked".into()),
            Check::Regex(r"net: served .* file_errors=1"),
            Check::Regex(r"dom0\| peer: http-get PASS status=200 fnv=[0-9a-f]{16} bytes=1048576 "),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 600;
    b.dom0_script = Some(script_with(&[], include_str!("blk_hostile_ext4_test.sh")));
    b.prepare = Some(|b| {
        let img = crate::disks::ext4_hostile("domu-blk-hostile-ext4.img")?;
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: None,
        }];
        Ok(())
    });
    b
}

/// QEMU throttling of the stalled-disk row's drive: a 4 MiB burst (dom0's probe of the
/// drive, the filesystem's load and the first rounds of the file's checksum), then 256
/// bytes a second: a 4 KiB read takes 16 s, past the appliance's disk deadline (5 s by
/// default), under blkfront's own 30 s.
const STALLED_DISK_THROTTLE: &str =
    "throttling.bps-total=256,throttling.bps-total-max=4194304,throttling.bps-total-max-length=1";

/// A disk that crawls (issue 24, M2): `GET /files/data/64m` while the drive is throttled
/// to [`STALLED_DISK_THROTTLE`]. The serving loop is not held by it: UDP echo round trips
/// meanwhile stay under 10x their idle median, the file is refused with a 503 (the
/// appliance's breaker, `disk_trips`), `/bytes` is still served, and `xl shutdown` is
/// honoured within [`SHUTDOWN_DURING_TRANSFER_S`].
fn blk_stalled_disk() -> BootTest {
    let mut b = t(
        "domu-blk-stalled-disk",
        Image::app(),
        "net files ip=169.254.100.2/24",
        0,
        vec![
            Check::Regex(r"dom0\| echo during the stalled read: ratio [\d.]+ \(limit 10\): ok"),
            has("dom0| peer: http-get PASS status=503"),
            Check::Regex(r"dom0\| peer: http-get PASS status=200 fnv=[0-9a-f]{16} bytes=65536 "),
            Check::Regex(
                r"dom0\| xl shutdown with the disk stalled: the domU stopped after \d+ ms .*: ok",
            ),
            Check::Regex(r"net: .*disk_trips=[1-9]\d*"),
            Check::NotContains("panicked".into()),
            has("xenbox: dom0-script exit 0"),
            has("net: shutdown requested (poweroff)"),
            has("xenpv-rt: exit status 0"),
        ],
    );
    b.vifs = 1;
    b.memory_mib = 256;
    b.timeout_s = 1200;
    b.dom0_script = Some(script_with(
        &[("SHUTDOWN_WITHIN", SHUTDOWN_DURING_TRANSFER_S.to_string())],
        include_str!("blk_stalled_test.sh"),
    ));
    b.prepare = Some(|b| {
        let (img, _) = crate::disks::ext4_files("domu-blk-stalled-disk.img")?;
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: Some(STALLED_DISK_THROTTLE.into()),
        }];
        Ok(())
    });
    b
}

fn evaluate(test: &BootTest, o: &Outcome, expect_initrd: Option<String>) -> Result<(), String> {
    match &o.status {
        Ok(st) if *st == test.status => {}
        Ok(st) => return Err(format!("guest status {st}, expected {}", test.status)),
        Err(f) => return Err(f.to_string()),
    }
    let guest: String = o.guest_lines().collect::<Vec<_>>().join("\n");
    for c in test
        .checks
        .iter()
        .chain(expect_initrd.map(Check::Contains).iter())
    {
        match c {
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

/// The box, with dom0's side of the grant test (tools/xenbox-peer, a std binary for the
/// box's glibc) on board.
pub fn box_with_peer() -> Result<crate::xenbox::BoxImage, String> {
    let mut b = crate::xenbox::ensure()?;
    let st = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-q", "-p", "xenbox-peer"])
        .current_dir(crate::root())
        .status()
        .map_err(|e| format!("cargo build -p xenbox-peer: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build -p xenbox-peer: {st}"));
    }
    b.peer = Some(crate::root().join("target/release/xenbox-peer"));
    Ok(b)
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
    /// Only the boot tests whose name contains SUBSTR.
    #[arg(long, value_name = "SUBSTR", default_value = "")]
    filter: String,
    /// Boots in parallel.
    #[arg(short = 'j', default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    jobs: u64,
}

/// `cargo xtask test`.
pub fn test_command(o: TestArgs) -> Result<u8, String> {
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
            Some(Arc::new(box_with_peer()?))
        } else {
            None
        };
        let (p, f) = run_boot_tests(&xen, domu_box, tests, &built, jobs)?;
        passed += p;
        failed += f;
        // A consumer's crate outside the repository, through the installed runner (only
        // in a full run: it takes minutes).
        if filter.is_empty() || "consumer".contains(filter) {
            println!("== a consumer's unikernel outside the workspace (xenpv-run new, cargo run, cargo test)");
            for (what, r) in crate::consumer::run() {
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

fn run_boot_tests(
    xen: &std::path::Path,
    domu_box: Option<Arc<crate::xenbox::BoxImage>>,
    tests: Vec<BootTest>,
    built: &[Image],
    jobs: usize,
) -> Result<(u64, u64), String> {
    let dir = crate::root().join("target/xtask/tests");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Make the initrds up front (sequentially: they are big and share files).
    let mut prepared = VecDeque::new();
    for mut t in tests {
        if let Some(prepare) = t.prepare {
            prepare(&mut t).map_err(|e| format!("{}: preparing: {e}", t.name))?;
        }
        let (initrd, expect): (Option<PathBuf>, Option<String>) = match t.initrd {
            InitrdSpec::None => (None, None),
            InitrdSpec::Checked { mib, seed } => {
                let (p, h) = initrd::checked(mib, seed)?;
                (
                    Some(p),
                    Some(format!(
                        "initrd: ok len={} seed={} checksum={:#018x}",
                        h.total_len, h.seed, h.checksum
                    )),
                )
            }
            InitrdSpec::Corrupt { mib, seed, offset } => {
                (Some(initrd::corrupted(mib, seed, offset)?), None)
            }
        };
        prepared.push_back((t, initrd, expect));
    }
    let bar = Arc::new(crate::progress::bar(
        prepared.len() as u64,
        "boot tests",
        false,
    ));
    let queue = Arc::new(Mutex::new(prepared));
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let built = Arc::new(built.to_vec());
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let bar = bar.clone();
            let (queue, counts, built, xen, dir, domu_box) = (
                queue.clone(),
                counts.clone(),
                built.clone(),
                xen.to_path_buf(),
                dir.clone(),
                domu_box.clone(),
            );
            std::thread::spawn(move || loop {
                let Some((t, initrd, expect)) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                let result = if !built.contains(&t.image) {
                    Err(format!("image {} did not build", t.image.name()))
                } else {
                    let _load = t.under_load.then(Load::start);
                    let extras = match t.dom0_script {
                        Some(text) => {
                            let p = dir.join(format!("{}.sh", t.name));
                            match std::fs::write(&p, text) {
                                Ok(()) => Some(p),
                                Err(e) => {
                                    eprintln!("{}: {e}", p.display());
                                    None
                                }
                            }
                        }
                        None => None,
                    };
                    let extras = crate::xenbox::DomuExtras {
                        vifs: t.vifs,
                        dom0_script: extras,
                    };
                    let o = qemu::boot_domu_with_disks(
                        &xen,
                        &Boot {
                            domu: if t.domu { domu_box.clone() } else { None },
                            name: "xenpv-app".into(),
                            image: t.image.path(),
                            cmdline: t.cmdline.clone(),
                            initrd,
                            memory_mib: t.memory_mib,
                            timeout: Duration::from_secs(t.timeout_s),
                            stream: Stream::Quiet,
                            log: dir.join(format!("{}.log", t.name)),
                        },
                        &extras,
                        &t.disks,
                    );
                    evaluate(&t, &o, expect)
                        .map(|_| o.secs)
                        .map_err(|e| (e, o))
                        .map_err(|(e, o)| {
                            let tail: Vec<&str> = o.text.lines().rev().take(30).collect();
                            let tail: Vec<&str> = tail.into_iter().rev().collect();
                            format!(
                                "{e}\n--- last lines (full log: {}):\n{}",
                                o.log.display(),
                                tail.join("\n")
                            )
                        })
                };
                let mut c = counts.lock().expect("counts");
                bar.inc(1);
                match result {
                    Ok(secs) => {
                        bar.println(format!("PASS {} ({secs:.1} s)", t.name));
                        if !crate::progress::shown() {
                            println!("PASS {} ({secs:.1} s)", t.name);
                        }
                        c.0 += 1;
                    }
                    Err(e) => {
                        bar.println(format!("FAIL {}: {e}", t.name));
                        if !crate::progress::shown() {
                            println!("FAIL {}: {e}", t.name);
                        }
                        c.1 += 1;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_table_covers_the_paging_matrix_and_the_regression() {
        let names: Vec<String> = table().into_iter().map(|t| t.name).collect();
        for mib in [0, 64, 600, 1100] {
            for split in ["512M", "1G"] {
                assert!(
                    names.contains(&format!("paging-{split}-initrd-{mib}M")),
                    "{mib} {split}"
                );
            }
        }
        assert!(names.iter().any(|n| n.starts_with("regress-2014")));
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "test names are unique");
    }

    /// The rows of issue 24 cannot pass without the client program: each needs a peer's
    /// PASS line and the script's exit 0, and each script refuses an empty `$PEER`.
    #[test]
    fn the_hostile_rows_fail_without_the_peer() {
        let rows: Vec<BootTest> = table()
            .into_iter()
            .filter(|t| {
                [
                    "domu-net-hostile-clients",
                    "domu-net-shutdown-detach",
                    "domu-net-shutdown-attach",
                    "domu-net-fragments",
                    "domu-blk-hostile-ext4",
                ]
                .contains(&t.name.as_str())
            })
            .collect();
        assert_eq!(rows.len(), 5);
        for r in &rows {
            assert!(r.domu && r.vifs == 1, "{}", r.name);
            let text = |c: &Check| match c {
                Check::Contains(s) => s.clone(),
                Check::Regex(r) => r.to_string(),
                _ => String::new(),
            };
            assert!(
                r.checks.iter().any(|c| text(c).contains("peer: ")),
                "{}: no peer verdict checked",
                r.name
            );
            assert!(
                r.checks
                    .iter()
                    .any(|c| text(c) == "xenbox: dom0-script exit 0"),
                "{}",
                r.name
            );
            let script = r.dom0_script.expect("a dom0 script");
            assert!(
                script.contains(r#"if [ ! -s "$PEER" ] || [ ! -x "$PEER" ]; then"#),
                "{}",
                r.name
            );
            // The script as dom0 runs it, with no client program or an empty file:
            // it must stop at once, failing, before any step.
            let empty =
                std::env::temp_dir().join(format!("xtask-empty-peer-{}", std::process::id()));
            std::fs::write(&empty, b"").expect("an empty file");
            for peer in [String::new(), empty.display().to_string()] {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(script)
                    .env("PEER", &peer)
                    .env("DOMID", "0")
                    .output()
                    .expect("sh runs");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{} with PEER={peer:?}: {stdout}",
                    r.name
                );
                assert_eq!(
                    stdout.trim_end(),
                    format!("no xenbox-peer in dom0 ({peer}): FAIL"),
                    "{}",
                    r.name
                );
            }
            let _ = std::fs::remove_file(&empty);
        }
    }
}
