//! What the boot tests read of a console: helpers behind the table's checks.
use super::reports::{report, reports, Source};
use super::Check;
use crate::qemu::Outcome;
use xenpv_contract::report::Report;

/// End of Xen's boot mapping, from its "VIRTUAL MEMORY ARRANGEMENT" (`TOTAL: a->b`).
pub fn boot_mapping_end(o: &Outcome) -> Result<u64, String> {
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

pub fn fault_at(guest: &str, kind: &str, via_caller: bool) -> Result<(), String> {
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
pub fn defmt_line_matches_source(o: &Outcome) -> Result<(), String> {
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
pub fn layout_ok() -> Vec<Check> {
    let layout = |what: &'static str| report("layout").words(&[what]);
    vec![
        Check::Report(layout("l4").all(
            "Xen's slots within 256..=271, then 272=direct-map 273=p2m-window 511=kernel-map and no more",
            l4_slots_ok,
        )),
        Check::Report(
            layout("level3_kernel")
                .eq("510", "level2_kernel")
                .eq("511", "level2_fixmap"),
        ),
        // The paging crate's prose: no fields to read.
        Check::Regex(
            r"layout: initrd (none|pfn 0x[0-9a-f]+\.\.0x[0-9a-f]+ at 0xffff88[0-9a-f]+ \(direct map\), frames reserved)",
        ),
        Check::Custom(
            "level2_kernel maps the image's 2 MiB slots and nothing else",
            level2_kernel_fits_the_image,
        ),
        Check::Report(
            layout("level2_fixmap")
                .eq("0-505", "free")
                .eq("506", "fixmap")
                .eq("507-511", "free")
                .eq("fixmap_l1", "ro"),
        ),
        Check::Report(report("layout").words(&["check", "ok"])),
        // W^X: the image by section, the guard page under the boot stack, and the
        // direct-map alias of the text read-only.
        Check::Report(
            layout("image")
                .eq("text", "r-x")
                .eq("rodata", "r--")
                .eq("data", "rw-")
                .eq("stack-guard", "unmapped")
                .eq("text-alias", "r--"),
        ),
        Check::Report(
            layout("shared_info")
                .eq("fixmap", "0xffffffffff400000")
                .within("vcpu0_upcall_mask", 0.0, 9.0)
                .nums(&["vcpu0_upcall_mask"]),
        ),
        // The p2m published for the toolstack (save, migrate), walked by the guest as a
        // toolstack walks it (the list through the window, the tree) against its p2m.
        Check::Report(
            report("p2m")
                .eq("check", "ok")
                .eq("p2m_vaddr", "0xffff888000000000")
                .hex("p2m_cr3")
                .hex("fll")
                .nums(&["max_pfn", "leaves", "entries", "window_tables", "tree_frames"])
                .all("max_pfn = entries, leaves = entries/512 rounded up", p2m_sizes),
        ),
    ]
}

/// `p2m: check=ok …`: the walk covered every entry and every leaf.
fn p2m_sizes(r: &Report) -> Result<(), String> {
    let n = |k: &str| -> Result<u64, String> {
        r.field(k)
            .unwrap_or_default()
            .parse::<u64>()
            .map_err(|e| format!("{k}: {e}"))
    };
    let (max, entries, leaves) = (n("max_pfn")?, n("entries")?, n("leaves")?);
    if max == 0 || max != entries || leaves != entries.div_ceil(512) {
        return Err(format!("max_pfn={max} entries={entries} leaves={leaves}"));
    }
    Ok(())
}

/// `layout: l4 …`: Xen fills some of its slots 256..=271 (which ones is Xen's business),
/// each `N=xen` or `N-M=xen`, then `272=direct-map 273=p2m-window 511=kernel-map` (the
/// p2m list's window for the toolstack), and nothing else.
fn l4_slots_ok(r: &Report) -> Result<(), String> {
    if r.words != ["l4"] {
        return Err(format!("words {:?}", r.words));
    }
    let n = r.fields.len();
    let (xen, ours) = r.fields.split_at(n.saturating_sub(3));
    let ours_want = [
        ("272", "direct-map"),
        ("273", "p2m-window"),
        ("511", "kernel-map"),
    ];
    if xen.is_empty()
        || ours
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .ne(ours_want)
    {
        return Err(format!("slots {:?}", r.fields));
    }
    let xen_slot = |s: &str| s.parse::<u32>().is_ok_and(|n| (256..=271).contains(&n));
    for (k, v) in xen {
        let ok = v == "xen"
            && match k.split_once('-') {
                Some((a, b)) => xen_slot(a) && xen_slot(b),
                None => xen_slot(k),
            };
        if !ok {
            return Err(format!("slot {k}={v} is not Xen's (256..=271=xen)"));
        }
    }
    Ok(())
}

/// `layout: level2_kernel` names exactly the 2 MiB slots the image spans (from the
/// `layout: split=… kernel=START..END` report): a dev-profile image with smoltcp is over
/// 2 MiB, a release one under.
fn level2_kernel_fits_the_image(o: &Outcome) -> Result<(), String> {
    let split = reports(&o.text, Source::Guest, "layout")
        .find(|r| r.field("split").is_some())
        .ok_or("no layout: split= report")?;
    let range = split
        .field("kernel")
        .ok_or("no kernel= in the split report")?;
    let (a, b) = range.split_once("..").ok_or("kernel= is not START..END")?;
    let hex =
        |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|e| e.to_string());
    let slots = (hex(b)? - hex(a)?).div_ceil(2 << 20);
    let want = match slots {
        1 => vec![("0".to_string(), "kernel"), ("1-511".to_string(), "free")],
        n => vec![
            (format!("0-{}", n - 1), "kernel"),
            (format!("{n}-511"), "free"),
        ],
    };
    let l2 = reports(&o.text, Source::Guest, "layout")
        .find(|r| r.words == ["level2_kernel"])
        .ok_or("no layout: level2_kernel report")?;
    let got: Vec<(String, &str)> = l2
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str()))
        .collect();
    (got == want).then_some(()).ok_or(format!(
        "`{l2}`: the image spans {slots} slot(s), wanted {want:?}"
    ))
}

/// Guest memory for a stress run: the initrd, all of module space (so that module space,
/// not memory, runs out first) and room for the kernel, tables and the runtime.
pub fn stress_memory_mib(initrd_mib: u64, split: &str) -> u64 {
    let modules = if split == "1G" { 1008 } else { 1520 };
    initrd_mib + modules + 384
}

/// The stress passed and kept to its promises, with at least 256 PTE updates per
/// hypercall.
pub fn stress_ok() -> Vec<Check> {
    vec![
        Check::Report(
            report("stress")
                .words(&["checks"])
                .eq("image_ro", "same")
                .eq("patterns", "intact")
                .eq("frames_back", "true")
                .eq("poisoned_pages", 0),
        ),
        Check::Report(
            report("stress")
                .nums(&["seed", "cycles", "pages_mapped", "peak_pages"])
                .nums(&["exhausted_frames", "l1_made"])
                .at_least("exhausted_va", 1.0)
                .eq("non_none_ptes", 0)
                .eq("verdict", "PASS")
                .at_least("per_hypercall", 256.0),
        ),
    ]
}

/// The heap stress's verdict when every byte came back (dom0 and domU rows).
pub fn heap_pass() -> Check {
    Check::Report(
        report("heap")
            .eq("seed", 1)
            .nums(&[
                "allocations",
                "allocs_per_s",
                "alloc_free_per_s",
                "claimed_mib",
            ])
            .eq("bad", 0)
            .eq("big_vec_mib", 256)
            .eq("failures", 0)
            .eq("verdict", "PASS"),
    )
}

/// A burst of `n` numbered reports (`burst: line=I of=N hash=H`) arrived complete and
/// in order, then `burst: done n=N`.
pub fn burst_complete(o: &Outcome) -> Result<(), String> {
    let mut next = 0u64;
    let mut n = None;
    for r in reports(&o.text, Source::Guest, "burst") {
        if r.has_word("done") {
            n = Some(r.parse_field::<u64>("n").map_err(|e| e.to_string())?);
            continue;
        }
        let i: u64 = r.parse_field("line").map_err(|e| format!("`{r}`: {e}"))?;
        let want = format!("{:016x}", (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if i != next || r.field("hash") != Some(want.as_str()) {
            return Err(format!("line {next} expected, got `{r}`"));
        }
        next += 1;
    }
    match n {
        Some(n) if n == next => Ok(()),
        Some(n) => Err(format!("{next} of {n} lines arrived")),
        None => Err(format!("no done line after {next} lines")),
    }
}
