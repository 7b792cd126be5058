//! Rows that boot the app (or the example) as dom0: the hello, the runtime's services,
//! the direct map, and the paging matrix with the 2014 regression.
use crate::boottest::checks::{
    boot_mapping_end, defmt_line_matches_source, heap_pass, layout_ok, stress_memory_mib, stress_ok,
};
use crate::boottest::reports::{like, report};
use crate::boottest::{has, t, BootTest, Check, InitrdSpec};
use crate::cargo::Image;
use xenpv_contract::report::Report;

const REGRESS: &str = "xenpv-rt/regress-2014-fixmap-copy";
const MOD_START_PFN: &str = "xenpv-rt/mod-start-pfn";

/// The first row: the hello, defmt (and its damaged frames), start_info and the layout.
pub fn hello() -> BootTest {
    let app = Image::app;
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
            Check::Report(
                report("start_info")
                    .eq("magic", "xen-3.0-x86_64")
                    .eq("nr_pages", 65536)
                    .hex("flags")
                    .words(&["[privileged,initdomain]"])
                    .eq("cmdline", "defmt_damage qemu-exit"),
            ),
            Check::Report(report("initrd").words(&["none"])),
            Check::ExitLine,
        ];
        c.extend(layout_ok());
        c
    })
}

/// Dev-profile images, the exit paths (panic, status, fatal refusals) and the example.
pub fn basics() -> Vec<BootTest> {
    let app = Image::app;
    vec![
        // A plain `cargo build` (dev profile, opt-level 0) must boot too.
        t("dev-profile-app", Image::Dev { example: false }, "", 0, {
            let mut c = vec![Check::ExitLine];
            c.extend(layout_ok());
            c
        }),
        t(
            "dev-profile-example",
            Image::Dev { example: true },
            "",
            0,
            vec![Check::ExitLine],
        ),
        t(
            "panic",
            app(),
            "panic",
            101,
            vec![
                Check::Regex(r"xenpv-rt: panicked at app/src/main\.rs:\d+:\d+: provoked panic"),
                Check::ExitLine,
            ],
        ),
        t("exit-status", app(), "exit=7", 7, vec![Check::ExitLine]),
        t(
            "example-hello",
            Image::Example,
            "",
            0,
            vec![
                has("hello from a library consumer: 65536 pages"),
                Check::Regex(r"vmalloc'd 1 MiB at 0xffffffffa0000000 and gave it back"),
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
    ]
}

/// The runtime's services: the layout picture, event channels, grants and the heap.
pub fn services() -> Vec<BootTest> {
    let mut v = picture_events_grants();
    v.extend(heap());
    v.extend(fmt_log());
    v
}

/// What a Rust developer expects to work: `alloc::format!` links (the runtime's
/// `_Unwind_Resume`) and the `log` facade prints on the console, up to `log=`'s level.
fn fmt_log() -> Vec<BootTest> {
    let app = Image::app;
    let format = || Check::Report(like("fmt: alloc-format pages=65536 hex=0x2a"));
    vec![
        t(
            "fmt-log",
            app(),
            "fmt_log",
            0,
            vec![
                format(),
                has("INFO  xenpv_app::fmt_log: log facade: 65536 pages"),
                Check::NotContains("log facade: debug shown".into()),
                Check::ExitLine,
            ],
        ),
        t(
            "fmt-log-debug",
            app(),
            "fmt_log log=debug",
            0,
            vec![
                format(),
                has("DEBUG xenpv_app::fmt_log: log facade: debug shown"),
                Check::ExitLine,
            ],
        ),
    ]
}

/// The layout picture, event channels and grants.
fn picture_events_grants() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
    // The address-space picture, drawn from a real boot with module areas in use.
    v.push(t(
        "layout-picture",
        app(),
        "vmap_demo",
        0,
        vec![
            Check::Report(
                report("layout")
                    .words(&["level2_kernel"])
                    .all("0-K=kernel (a few slots), K+1-255=free", kernel_then_free)
                    .all("256-N=module, then N+1-511=free", modules_then_free),
            ),
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
            // Timer events at least 1 ms apart (less Xen's 50 us slop), half of them
            // arriving during computation.
            Check::Report(
                report("events")
                    .words(&["timer"])
                    .eq("fired", "2000/2000")
                    .eq("period_us", 1000)
                    .at_least("min_spacing_us", 950.0)
                    .nums(&["max_late_us", "fmt_checks"])
                    .eq("early", 0)
                    .at_least("during_compute", 1000.0)
                    .eq("fmt_bad", 0),
            ),
            Check::Report(
                report("events")
                    .words(&["loopback"])
                    .eq("bind_marks_pending", "ok")
                    .eq("b_to_a", "ok")
                    .eq("a_to_b", "ok")
                    .eq("masked", "ok")
                    .eq("unmasked", "ok")
                    .eq("closed", "ok"),
            ),
            Check::Report(report("events").eq("verdict", "PASS")),
        ],
    ));
    // Grant tables with Xen doing the peer's part.
    v.push(t(
        "grant-copy-map-exhaust",
        app(),
        "grant",
        0,
        vec![
            Check::Report(
                report("grant")
                    .words(&["copy"])
                    .nums(&["ref"])
                    .eq("bytes", 4096)
                    .eq("differ", 0),
            ),
            Check::Regex(r"grant: write through read-only ref \d+ refused: GNTTABOP_copy: status -\d+"),
            Check::Regex(r"grant: end while mapped: grant reference \d+ still in use by the peer \(flags 0x[0-9a-f]+\): access not ended"),
            Check::Report(
                report("grant")
                    .words(&["mapped-back"])
                    .eq("contents", "same")
                    .eq("end_refused_while_mapped", "yes")
                    .eq("ended_after_unmap", "yes"),
            ),
            has("grant: second map while mapped: the grant-mapping slot is in use: unmap that mapping first"),
            has("grant: after 504 grants: all 504 grant references in use; all back: yes"),
            // One table per guest; a grant its peer keeps is deferred, then comes back.
            has("grant: second setup refused: the grant table is already set up"),
            Check::Report(
                report("grant")
                    .words(&["kept-by-peer"])
                    .nums(&["ref"])
                    .eq("deferred", 1)
                    .eq("back_while_mapped", 0)
                    .eq("back_after_unmap", 1)
                    .eq("deferred_now", 0)
                    .eq("refs_all_back", "yes"),
            ),
            Check::Report(report("grant").eq("verdict", "PASS")),
        ],
    ));
    v
}

/// The heap: a stress whose every byte is checked, a limit that is an error the app
/// handles, and an infallible allocation past it that panics with the reason said.
fn heap() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
    let mut h = t(
        "heap-stress",
        app(),
        "heap",
        0,
        vec![heap_pass(), Check::ExitLine],
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
            Check::Report(report("heap").eq("verdict", "FAIL")),
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
            Check::ExitLine,
        ],
    ));
    v
}

/// The direct map: on demand, eager, written through mmu_update, and a bad word.
pub fn direct_map() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
    // The direct map: on demand by default (start of day maps a few chunks, the heap's
    // and vmap's allocations map the rest as they need it), eager on request, and its
    // L1s written entry by entry for comparison.
    let mut od = t(
        "direct-map-on-demand-grows-2G",
        app(),
        "heap",
        0,
        vec![
            heap_pass(),
            // Start of day maps at most 32 MiB of 2 GiB.
            Check::Report(
                report("timing")
                    .nums(&["entry_to_main_us"])
                    .eq("direct_map", "on-demand")
                    .at_most("mapped_mib", 32.0)
                    .nums(&["mapped_mib"])
                    .eq("pt_write", "stores"),
            ),
            Check::Report(
                report("direct_map")
                    .eq("mode", "on-demand")
                    .nums(&["start_mib", "mapped_mib", "pte_updates"])
                    .eq("of_mib", 2048)
                    .at_least("chunks_grown", 1.0)
                    .eq("holes", 0),
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
            Check::Report(
                report("timing")
                    .eq("direct_map", "eager")
                    .eq("mapped_mib", 2048)
                    .eq("pt_write", "stores"),
            ),
            Check::Report(
                report("direct_map")
                    .eq("mode", "eager")
                    .nums(&["start_mib"])
                    .eq("mapped_mib", 2048)
                    .eq("of_mib", 2048),
            ),
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
        vec![Check::Report(
            report("timing")
                .nums(&["entry_to_main_us"])
                .eq("pt_write", "mmu"),
        )],
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
    v
}

/// The paging matrix (initrd size x split, each with the vmap stress), the initrd's
/// checks, and the 2014 bug reproduced.
pub fn paging() -> Vec<BootTest> {
    let mut v = matrix();
    v.extend(initrd_and_regression());
    v
}

/// The paging matrix: initrd size x split, each booting with the vmap stress.
fn matrix() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
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
    v
}

/// The initrd given by frame number, a corrupt initrd detected, and the 2014 bug.
fn initrd_and_regression() -> Vec<BootTest> {
    let app = Image::app;
    let mut v = Vec::new();
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
    pfn.checks
        .push(Check::Report(report("start_info").hex("flags").all(
            "flags name mod_start_pfn, the module is given by pfn",
            mod_start_pfn,
        )));
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
            Check::Report(
                report("stress")
                    .eq("seed", 5)
                    .at_least("non_none_ptes", 1.0)
                    .nums(&["non_none_ptes"])
                    .eq("verdict", "FAIL"),
            ),
            Check::Regex(r"stress: FAIL: non-none PTEs met"),
            Check::Report(report("layout").words(&["level2_fixmap"]).all(
                "slots 0-K are the kernel's, K+1-N the initrd's, stale",
                |r| {
                    let next = kernel_run(r, "STALE:kernel")?;
                    let (k, v) = r.fields.get(1).ok_or("no slot after the kernel's")?;
                    let from = k.split('-').next().and_then(|n| n.parse::<u32>().ok());
                    (v == "STALE:initrd" && from == Some(next) && k.contains('-'))
                        .then_some(())
                        .ok_or(format!("fields {:?}", r.fields))
                },
            )),
            Check::Regex(
                r"layout: check FAILED: \d+ stale slot\(s\) in the kernel map; first L3\[511\] L2\[0\] at 0xffffffffc0000000 maps kernel",
            ),
            Check::NoReport(report("layout").words(&["check", "ok"])),
        ],
    );
    regress.initrd = InitrdSpec::Checked { mib: 600, seed: 2 };
    regress.memory_mib = stress_memory_mib(600, "1G");
    regress.timeout_s = 300;
    v.push(regress);
    v
}

/// `layout: level2_kernel … 256-N=module M-511=free` (M = N + 1) after the kernel's and
/// the free slots: module space in use, and nothing past it.
/// The first run of slots, `0` or `0-K` with K below 8 (the kernel image: a few 2 MiB
/// slots, more as it grows), is `label`; the slot after it.
fn kernel_run(r: &Report, label: &str) -> Result<u32, String> {
    let (k, v) = r.fields.first().ok_or("no slots")?;
    let last = match k.strip_prefix("0-") {
        Some(e) => e.parse::<u32>().ok(),
        None => (k == "0").then_some(0),
    };
    match last {
        Some(last) if last < 8 && v == label => Ok(last + 1),
        _ => Err(format!("{k}={v}, wanted 0-K={label} with K < 8")),
    }
}

/// `0-K=kernel K+1-255=free`: the kernel image, then nothing up to the module space.
fn kernel_then_free(r: &Report) -> Result<(), String> {
    let next = kernel_run(r, "kernel")?;
    match r.fields.get(1) {
        Some((k, v)) if *k == format!("{next}-255") && v == "free" => Ok(()),
        other => Err(format!(
            "after the kernel: {other:?}, wanted {next}-255=free"
        )),
    }
}

fn modules_then_free(r: &Report) -> Result<(), String> {
    let [_, _, (m, module), (f, free)] = r.fields.as_slice() else {
        return Err(format!("{} slots, wanted 4", r.fields.len()));
    };
    let end = m.strip_prefix("256-").and_then(|e| e.parse::<u32>().ok());
    let start = f.strip_suffix("-511").and_then(|s| s.parse::<u32>().ok());
    match (end, start) {
        (Some(e), Some(s)) if module == "module" && free == "free" && s == e + 1 => Ok(()),
        _ => Err(format!("{m}={module} {f}={free}")),
    }
}

/// `start_info: flags=0x… [names]`: the names include `mod_start_pfn`, and the module
/// is given as a frame number (`module=pfn0x…`).
fn mod_start_pfn(r: &Report) -> Result<(), String> {
    let named = r.words.iter().any(|w| {
        w.strip_prefix('[')
            .and_then(|w| w.strip_suffix(']'))
            .is_some_and(|names| names.split(',').any(|n| n == "mod_start_pfn"))
    });
    let by_pfn = r.field("module").is_some_and(|m| m.starts_with("pfn0x"));
    (named && by_pfn).then_some(()).ok_or(format!(
        "flags words {:?}, module={:?}",
        r.words,
        r.field("module")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(line: &str) -> Report {
        line.parse().unwrap()
    }

    #[test]
    fn the_kernel_may_take_a_few_slots_then_free() {
        let ok = "layout: level2_kernel 0=kernel 1-255=free 256-259=module 260-511=free";
        assert_eq!(kernel_then_free(&r(ok)), Ok(()));
        let two = "layout: level2_kernel 0-1=kernel 2-255=free 256-260=module 261-511=free";
        assert_eq!(kernel_then_free(&r(two)), Ok(()));
        let gap = "layout: level2_kernel 0-1=kernel 3-255=free 256-260=module 261-511=free";
        assert!(kernel_then_free(&r(gap)).is_err());
        let huge = "layout: level2_kernel 0-9=kernel 10-255=free 256-260=module 261-511=free";
        assert!(kernel_then_free(&r(huge)).is_err());
        let not_kernel = "layout: level2_kernel 0=free 1-255=free";
        assert!(kernel_then_free(&r(not_kernel)).is_err());
        assert_eq!(
            kernel_run(
                &r("layout: level2_fixmap 0-1=STALE:kernel 2-301=STALE:initrd"),
                "STALE:kernel"
            ),
            Ok(2)
        );
    }
}
