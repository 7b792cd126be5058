//! `cargo xtask layout`: the address space the app reported (its `layout:` lines), drawn
//! in the terminal and as an SVG: L4 slots in use, L4[511] -> level3_kernel -> L3[510]
//! (level2_kernel) and L3[511] (level2_fixmap), slot by slot.
use std::fmt::Write;
use xenpv_contract::report::Report;

/// A run of equal L2 (or L4) slots: `first..=last` and what they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub first: usize,
    pub last: usize,
    pub what: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub split: String,
    pub l4: Vec<Run>,
    pub level3_kernel: Vec<Run>,
    pub level2_kernel: Vec<Run>,
    pub level2_fixmap: Vec<Run>,
    pub initrd: String,
    /// The image's permissions (`text=r-x rodata=r-- …`), as the guest read them back.
    pub image: String,
    pub ok: bool,
}

/// `layout: l4 0-505=free 506=fixmap` -> runs: the report's fields, a slot range each.
fn runs(line: &str) -> Result<Vec<Run>, String> {
    let r: Report = line.parse().map_err(|e| format!("{line:?}: {e}"))?;
    r.fields
        .iter()
        .filter(|(k, _)| k != "fixmap_l1")
        .map(|(range, what)| {
            let w = format!("{range}={what}");
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let n = |v: &str| {
                v.parse::<usize>()
                    .map_err(|e| format!("slot {v:?} in {w:?}: {e}"))
            };
            let (first, last) = (n(a)?, n(b)?);
            if first > last || last > 511 {
                return Err(format!("slots {first}-{last} in {w:?}"));
            }
            Ok(Run {
                first,
                last,
                what: what.to_string(),
            })
        })
        .collect()
}

/// The last complete report in a console text.
pub fn parse(text: &str) -> Result<Layout, String> {
    let mut l = Layout::default();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("layout: ") else {
            continue;
        };
        if rest.starts_with("l4 ") {
            l.l4 = runs(line.trim())?;
        } else if rest.starts_with("level3_kernel ") {
            l.level3_kernel = runs(line.trim())?;
        } else if rest.starts_with("level2_kernel ") {
            l.level2_kernel = runs(line.trim())?;
        } else if rest.starts_with("level2_fixmap ") {
            l.level2_fixmap = runs(line.trim())?;
        } else if rest.starts_with("split=") {
            let r: Report = line.trim().parse().map_err(|e| format!("{line:?}: {e}"))?;
            l.split = r.field("split").unwrap_or_default().to_string();
        } else if let Some(r) = rest.strip_prefix("initrd ") {
            l.initrd = r.to_string();
        } else if let Some(r) = rest.strip_prefix("image ") {
            l.image = r.to_string();
        } else if rest.starts_with("check ok") {
            l.ok = true;
        } else if rest.starts_with("check FAILED") {
            l.ok = false;
        }
    }
    if l.l4.is_empty() || l.level2_kernel.is_empty() || l.level2_fixmap.is_empty() {
        return Err("the console holds no complete layout report".into());
    }
    Ok(l)
}

/// Virtual address of L2 slot `slot` under L3[`l3`] of the kernel map.
fn va(l3: usize, slot: usize) -> u64 {
    0xffff_ffff_8000_0000 + (l3 as u64 - 510) * (1 << 30) + slot as u64 * (2 << 20)
}

pub fn text(l: &Layout) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "L4 (root)");
    for r in &l.l4 {
        let _ = writeln!(s, "  [{}] {}", span(r), r.what);
    }
    let _ = writeln!(s, "  [511] -> level3_kernel");
    for (l3, table, name) in [
        (510, &l.level2_kernel, "level2_kernel"),
        (511, &l.level2_fixmap, "level2_fixmap"),
    ] {
        let _ = writeln!(s, "           [{l3}] -> {name} ({:#x})", va(l3, 0));
        for r in table {
            let _ = writeln!(
                s,
                "                  [{:>7}] {:<12} {:#x}..={:#x}",
                span(r),
                r.what,
                va(l3, r.first),
                va(l3, r.last) + ((2 << 20) - 1)
            );
        }
    }
    let _ = writeln!(
        s,
        "split {}; initrd {}; image {}; check {}",
        l.split,
        l.initrd,
        l.image,
        if l.ok { "ok" } else { "FAILED" }
    );
    s
}

fn span(r: &Run) -> String {
    if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    }
}

fn colour(what: &str) -> &'static str {
    match what {
        "kernel" => "#4e79a7",
        "fixmap" => "#f28e2b",
        "module" => "#59a14f",
        "free" => "#e8e8e8",
        w if w.starts_with("STALE") => "#e15759",
        _ => "#b07aa1",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The picture: L4 on the left, level3_kernel, then the two L2 tables as 512-slot bars.
pub fn svg(l: &Layout) -> String {
    let (w, h) = (980, 620);
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"monospace\" font-size=\"12\">\n<title>xenpv-rt address space (split {})</title>\n",
        esc(&l.split)
    );
    let _ = writeln!(s, "<text x=\"20\" y=\"24\" font-size=\"16\">xenpv-rt address space, split {}, check {}</text>", esc(&l.split), if l.ok { "ok" } else { "FAILED" });
    // L4: one box per run of used slots.
    let _ = writeln!(s, "<text x=\"20\" y=\"56\">L4 (root)</text>");
    let mut y = 66;
    for r in &l.l4 {
        let _ = writeln!(s, "<rect x=\"20\" y=\"{y}\" width=\"170\" height=\"24\" fill=\"#ddd\" stroke=\"#333\"/><text x=\"26\" y=\"{}\">L4[{}] {}</text>", y + 16, span(r), esc(&r.what));
        y += 30;
    }
    let l4k = y - 30;
    // level3_kernel with its two slots.
    let _ = writeln!(s, "<text x=\"250\" y=\"56\">level3_kernel</text>");
    for (i, r) in l.level3_kernel.iter().enumerate() {
        let yy = 66 + i as i32 * 270;
        let _ = writeln!(s, "<rect x=\"250\" y=\"{yy}\" width=\"170\" height=\"24\" fill=\"#ddd\" stroke=\"#333\"/><text x=\"256\" y=\"{}\">L3[{}] {}</text>", yy + 16, span(r), esc(&r.what));
    }
    let _ = writeln!(
        s,
        "<line x1=\"190\" y1=\"{}\" x2=\"250\" y2=\"78\" stroke=\"#333\" marker-end=\"url(#a)\"/>",
        l4k + 12
    );
    let _ = writeln!(s, "<defs><marker id=\"a\" markerWidth=\"8\" markerHeight=\"8\" refX=\"8\" refY=\"4\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#333\"/></marker></defs>");
    // The two L2 tables: 512 slots each, as a bar 512 px wide; runs labelled.
    for (k, (l3, table, name)) in [
        (510, &l.level2_kernel, "level2_kernel"),
        (511, &l.level2_fixmap, "level2_fixmap"),
    ]
    .into_iter()
    .enumerate()
    {
        let top = 66 + k as i32 * 270;
        let x0 = 450;
        let _ = writeln!(s, "<line x1=\"420\" y1=\"{}\" x2=\"{x0}\" y2=\"{}\" stroke=\"#333\" marker-end=\"url(#a)\"/>", top + 12, top + 30);
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"{}\">L3[{l3}] -&gt; {name} at {:#x}</text>",
            top + 10,
            va(l3, 0)
        );
        for r in table {
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"40\" fill=\"{}\" stroke=\"#333\" stroke-width=\"0.5\"><title>L3[{l3}] L2[{}] {} {:#x}</title></rect>",
                x0 + r.first,
                top + 20,
                r.last - r.first + 1,
                colour(&r.what),
                span(r),
                esc(&r.what),
                va(l3, r.first)
            );
        }
        // Labels below the bar, one per run, staggered.
        for (i, r) in table.iter().enumerate() {
            let ly = top + 80 + (i as i32 % 8) * 16;
            let _ = writeln!(
                s,
                "<text x=\"{x0}\" y=\"{ly}\" fill=\"{}\">L2[{}] {}</text>",
                if r.what == "free" { "#777" } else { "#000" },
                span(r),
                esc(&r.what)
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"{}\">image: {}</text>",
        h - 40,
        esc(&l.image)
    );
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"{}\">initrd: {}</text>",
        h - 20,
        esc(&l.initrd)
    );
    s.push_str("</svg>\n");
    s
}

/// Parse, draw, and check the SVG is well-formed XML holding the labels a reader needs.
pub fn check_svg(svg: &str, l: &Layout) -> Result<(), String> {
    let doc = roxmltree::Document::parse(svg).map_err(|e| format!("SVG is not XML: {e}"))?;
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    let all = texts.join("\n");
    let mut want = vec![
        "L4[511] kernel-map",
        "L3[510] level2_kernel",
        "L3[511] level2_fixmap",
        "L2[506] fixmap",
    ];
    // The kernel's run from slot 0 (`L2[0]`, or `L2[0-1]` once the image passes 2 MiB).
    let kernel = l
        .level2_kernel
        .iter()
        .find(|r| r.first == 0 && r.what == "kernel")
        .map(|r| format!("L2[{}] kernel", span(r)))
        .ok_or("level2_kernel has no kernel run from slot 0")?;
    want.push(&kernel);
    let image = format!("image: {}", l.image);
    if !l.image.is_empty() {
        want.push(&image);
    }
    if l.level2_fixmap
        .iter()
        .chain(&l.level2_kernel)
        .any(|r| r.what == "module")
    {
        want.push("module");
    }
    for w in want {
        if !all.contains(w) {
            return Err(format!("SVG has no label {w:?}"));
        }
    }
    Ok(())
}

/// `cargo xtask layout`.
/// `cargo xtask layout` options.
#[derive(clap::Args, Debug)]
pub struct LayoutArgs {
    /// More words for the guest's command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    #[command(flatten)]
    initrd: crate::InitrdArgs,
    /// Guest memory in MiB (default: 256 + twice the initrd; from 1, as xl takes it: a
    /// kernel larger than the memory is refused before the boot).
    #[arg(long, value_name = "MiB", value_parser = clap::value_parser!(u64).range(1..=65536))]
    memory: Option<u64>,
}

/// `cargo xtask layout`.
pub fn layout_command(a: LayoutArgs) -> Result<u8, String> {
    let initrd_mib = a.initrd.initrd_mib.unwrap_or(0);
    let initrd = if initrd_mib > 0 {
        Some(crate::initrd::checked(initrd_mib, 1)?.0)
    } else {
        None
    };
    let memory_mib = a.memory.unwrap_or(256 + initrd_mib * 2);
    let image = crate::cargo::Image::app();
    let path = crate::cargo::build(&image, false)?;
    xenpv_run::elf::check_memory(&path, memory_mib)?;
    let xen = crate::provision::ensure()?;
    let out = crate::qemu::boot(
        &xen,
        &crate::qemu::Boot {
            domu: None,
            name: "xenpv-app".into(),
            image: path,
            cmdline: format!("vmap_demo {}", a.cmdline),
            initrd,
            memory_mib,
            timeout: std::time::Duration::from_secs(300),
            stream: crate::qemu::Stream::Quiet,
            log: crate::root().join("target/xtask/layout-run.log"),
        },
    );
    let guest: String = out.guest_lines().collect::<Vec<_>>().join("\n");
    let layout = parse(&guest).map_err(|e| format!("{e} (log: {})", out.log.display()))?;
    print!("{}", text(&layout));
    let svg = svg(&layout);
    check_svg(&svg, &layout)?;
    let file = crate::root().join("target/xtask/layout.svg");
    std::fs::write(&file, svg).map_err(|e| format!("{}: {e}", file.display()))?;
    println!("picture: {}", file.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
layout: l4 256=xen 258=xen 260-262=xen 272=direct-map 511=kernel-map
layout: level3_kernel 510=level2_kernel 511=level2_fixmap
layout: image text=r-x rodata=r-- data=rw- stack-guard=unmapped text-alias=r--
layout: initrd none
layout: split=512M kernel=0xffffffff80000000..0xffffffff80074000 modules=0xffffffffa0000000..0xffffffffff000000 fixmap=0xffffffffff400000
layout: level2_kernel 0=kernel 1-255=free 256-259=module 260-511=free
layout: level2_fixmap 0-505=free 506=fixmap 507-511=free fixmap_l1=ro
layout: check ok
";

    #[test]
    fn a_report_parses_and_draws() {
        let l = parse(REPORT).unwrap();
        assert_eq!(l.split, "512M");
        assert_eq!(
            l.level2_kernel[2],
            Run {
                first: 256,
                last: 259,
                what: "module".into()
            }
        );
        assert!(l.ok);
        let t = text(&l);
        assert!(
            t.contains("[506] fixmap") || t.contains("[    506] fixmap"),
            "{t}"
        );
        assert!(t.contains("0xffffffffa0000000"), "{t}");
        let s = svg(&l);
        check_svg(&s, &l).unwrap();
        assert!(check_svg("<svg", &l).is_err(), "broken XML is caught");
    }

    #[test]
    fn bad_reports_are_refused_with_the_reason() {
        assert!(parse("nothing here").is_err());
        assert!(parse(&REPORT.replace("1-255=free", "255-1=free"))
            .unwrap_err()
            .contains("255-1"));
        assert!(parse(&REPORT.replace("507-511=free", "507-600=free")).is_err());
    }
}
