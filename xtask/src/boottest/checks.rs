//! What the boot tests read of a console: helpers behind the table's checks.
use super::{has, Check};
use crate::qemu::Outcome;

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
pub fn field(text: &str, prefix: &str, key: &str) -> Result<u64, String> {
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
pub fn stress_ok() -> Vec<Check> {
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
pub const HEAP_PASS: &str = r"heap: seed=1 allocations=\d+ allocs_per_s=\d+ alloc_free_per_s=\d+ bad=0 big_vec_mib=256 claimed_mib=\d+ failures=0 verdict=PASS";

/// A burst of `n` numbered lines arrived complete and in order.
pub fn burst_complete(o: &Outcome) -> Result<(), String> {
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
