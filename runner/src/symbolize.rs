//! Fault reports made readable: the guest prints addresses (`xenpv-rt: fault: … rip=…`,
//! `xenpv-rt: fault: stack …`), and this turns them into `function (file:line)` with the
//! kernel's own DWARF (addr2line), on the host where the debug info is.
use addr2line::Loader;
use std::path::{Path, PathBuf};
use xenpv_contract::report::Report;

/// Where a code address is: the function and source line of the innermost frame that is
/// not in Rust's own library (so an inlined `core` helper names its caller's line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The demangled function name, without its hash.
    pub function: String,
    /// The source file, relative to the [`Symbolizer`]'s root when under it.
    pub file: String,
    /// The line in [`Place::file`].
    pub line: u32,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}:{})", self.function, self.file, self.line)
    }
}

/// A loaded kernel ELF: its DWARF, for turning code addresses into [`Place`]s.
pub struct Symbolizer {
    loader: Loader,
    /// Paths in the report are shown relative to this directory when under it.
    root: PathBuf,
}

fn in_std(file: &str) -> bool {
    file.contains("/rustc/") || file.starts_with("library/") || file.contains("/.cargo/registry/")
}

impl Symbolizer {
    /// Load `elf`'s debug info; `root` shortens the file names.
    pub fn from_elf(elf: &Path, root: &Path) -> Result<Symbolizer, String> {
        let loader = Loader::new(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        Ok(Symbolizer {
            loader,
            root: root.to_path_buf(),
        })
    }

    /// The place of code address `addr`, if the ELF's DWARF covers it.
    pub fn place(&self, addr: u64) -> Option<Place> {
        let mut frames = self.loader.find_frames(addr).ok()?;
        let mut best: Option<Place> = None;
        while let Ok(Some(frame)) = frames.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok().map(|s| s.into_owned()))
                .unwrap_or_else(|| "?".into());
            let Some(loc) = frame.location else { continue };
            let (Some(file), Some(line)) = (loc.file, loc.line) else {
                continue;
            };
            let file = Path::new(file)
                .strip_prefix(&self.root)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| file.to_string());
            let place = Place {
                function: strip_hash(&function),
                file,
                line,
            };
            let std = in_std(&place.file);
            if best.is_none() || !std {
                best = Some(place);
            }
            if !std {
                break;
            }
        }
        // No DWARF line for it: not code of the kernel (the nearest ELF symbol would name
        // whatever precedes the address, which misleads more than it helps).
        best
    }

    /// The readable form of a guest fault line, or `None` for any other line.
    pub fn annotate(&self, line: &str) -> Option<String> {
        let rest = line.strip_prefix("xenpv-rt: fault: ")?;
        if let Some(addrs) = rest.strip_prefix("stack") {
            let mut out = Vec::new();
            for a in addrs.split_whitespace().filter_map(hex) {
                // A return address: the call is the instruction before it.
                if let Some(p) = self.place(a.wrapping_sub(1)) {
                    out.push(format!("fault:   called from {p}"));
                }
            }
            return (!out.is_empty()).then(|| out.join("\n"));
        }
        let rip = field(rest, "rip")?;
        let what = describe(rest);
        Some(match self.place(rip) {
            Some(p) => format!("fault: {what} in {p}"),
            None => format!("fault: {what} at {rip:#x} (not in the kernel's code)"),
        })
    }
}

/// `xenpv_app::faults::null_write::h0123abcd` -> without the hash.
fn strip_hash(s: &str) -> String {
    match s.rsplit_once("::h") {
        Some((head, h)) if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => s.to_string(),
    }
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// The hex value of field `key` (`rip`, `cr2`) of a fault line (what follows
/// `xenpv-rt: fault: `), read as a report's items.
fn field(rest: &str, key: &str) -> Option<u64> {
    let fault: Report = format!("fault: {rest}").parse().ok()?;
    fault.field(key).and_then(hex)
}

/// `page fault writing 0x0`, `invalid opcode`, … from the guest's fault line.
fn describe(rest: &str) -> String {
    // "#PF page fault vector=14 …": the name runs from after the mnemonic to "vector=".
    let name = rest
        .split_once(' ')
        .map(|(_, r)| r)
        .and_then(|r| r.split_once(" vector="))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| "fault".into());
    if !rest.starts_with("#PF") {
        return name;
    }
    let cause = rest
        .split_once('(')
        .and_then(|(_, c)| c.split_once(')'))
        .map(|(c, _)| c)
        .unwrap_or("");
    let access = if cause.starts_with("write") {
        "writing"
    } else if cause.starts_with("instruction fetch") {
        "fetching"
    } else {
        "reading"
    };
    let mut s = match field(rest, "cr2") {
        Some(a) => format!("{name} {access} {a:#x}"),
        None => format!("{name} {access}"),
    };
    if rest.contains("stack overflow") {
        s.push_str(" (stack overflow: the boot stack's guard page)");
    }
    s
}

/// `line` followed by its readable form when it is a fault line (also after a domU
/// prefix, which the added lines carry too).
pub fn with_annotation(sym: Option<&Symbolizer>, line: String) -> String {
    let Some(sym) = sym else { return line };
    let (prefix, rest) = match line.strip_prefix("domU| ") {
        Some(r) => ("domU| ", r),
        None => ("", line.as_str()),
    };
    match sym.annotate(rest) {
        Some(extra) => {
            let extra: Vec<String> = extra.lines().map(|l| format!("{prefix}{l}")).collect();
            format!("{line}\n{}", extra.join("\n"))
        }
        None => line,
    }
}

/// The symbolizer for a kernel image, or `None` (said once) if its debug info is unusable.
pub fn for_image(image: &Path) -> Option<Symbolizer> {
    match Symbolizer::from_elf(image, &crate::source_root()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("xenpv-run: fault reports stay unsymbolized: {e}");
            None
        }
    }
}

/// The address of symbol `name` in `elf`.
pub fn elf_symbol(elf: &Path, name: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(elf).ok()?;
    let file = object::File::parse(&*data).ok()?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
}

/// A register of Xen's dump: `rsp: ffffffff80000038` or `RIP:    e033:[<ffff…>]`.
fn dump_reg(dump: &str, key: &str) -> Option<u64> {
    let at = dump.find(key)? + key.len();
    let rest = dump[at..].trim_start();
    let rest = rest
        .split_once("[<")
        .map_or(rest, |(_, r)| r.split_once(">]").map_or(r, |(v, _)| v));
    let word: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&word, 16).ok()
}

/// What Xen's register dump says when Xen crashed the guest because it could not deliver
/// a fault (a stack overflow into the guard page leaves no room for the exception frame):
/// the registers, the overflow if the stack or fault address lies in the guard page, and
/// where the guest was. `None` if `text` holds no such dump.
pub fn xen_crash(text: &str, sym: Option<&Symbolizer>, guard: Option<u64>) -> Option<String> {
    let start = text.find("crashed on cpu#")?;
    let dump = &text[start..];
    let dump = &dump[..dump.find("Guest stack trace").unwrap_or(dump.len())];
    let rip = dump_reg(dump, "RIP:")?;
    let rsp = dump_reg(dump, " rsp:");
    let cr2 = dump_reg(dump, " cr2:");
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| format!("{v:#x}"));
    let mut out = vec![format!(
        "fault: Xen crashed the guest (from Xen's register dump: the guest could not report it) rip={rip:#x} rsp={} cr2={}",
        show(rsp),
        show(cr2)
    )];
    // Xen names what it tripped over while building the exception frame.
    if text[..start].contains("domain_crash_page_fault") {
        out.push(
            "fault: #PF page fault vector=14 that Xen could not deliver (writing the exception frame faulted)"
                .to_string(),
        );
    }
    if let Some(g) = guard {
        let in_guard = |a: Option<u64>| a.is_some_and(|a| (g..g + 4096).contains(&a));
        if in_guard(rsp) || in_guard(cr2) {
            out.push(format!(
                "fault: stack overflow: the boot stack ran into its guard page at {g:#x}"
            ));
        }
    }
    match sym.and_then(|s| s.place(rip)) {
        Some(p) => out.push(format!("fault: at {p}")),
        None => out.push(format!("fault: at {rip:#x} (not in the kernel's code)")),
    }
    Some(out.join("\n"))
}

/// The status reported for a guest that Xen crashed on a fault it could not deliver: the
/// guest's own fault status (the runtime reports the faults it can with 103 too).
pub const STATUS_XEN_CRASH: i32 = xenpv_contract::status::STATUS_FAULT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lines_are_described_from_their_fields() {
        let l = "#PF page fault vector=14 error=0x2 rip=0xffffffff80004578 rsp=0x1 cr2=0x0 (write, page not present)";
        assert_eq!(describe(l), "page fault writing 0x0");
        assert_eq!(field(l, "rip"), Some(0xffffffff80004578));
        let l = "#PF page fault vector=14 error=0x11 rip=0xffffffffc0000000 rsp=0x1 cr2=0xffffffffc0000000 (instruction fetch)";
        assert_eq!(describe(l), "page fault fetching 0xffffffffc0000000");
        let l = "#UD invalid opcode vector=6 error=0x0 rip=0x1 rsp=0x2";
        assert_eq!(describe(l), "invalid opcode");
    }

    #[test]
    fn hashes_are_stripped_from_names() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(strip_hash("a::hello"), "a::hello");
    }
}
