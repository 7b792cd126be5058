//! Decoding the runtime's defmt lines (`=defmt=` + base64 of one raw frame) with the
//! kernel's ELF and the defmt host crate. Plain lines pass through; a damaged frame becomes
//! a marker line and decoding goes on with the next.
use defmt_decoder::{Locations, Table};
use std::path::Path;

/// What starts a defmt line: the runtime's own marker.
pub use xenpv_contract::defmt_line::MARKER;

/// A decoder for one kernel's defmt lines: the format table and source locations read
/// from its ELF.
pub struct Defmt {
    table: Table,
    locs: Locations,
    /// The [`crate::source_root`] prefix (with a trailing `/`) cut from source locations.
    root: String,
}

/// The frame a defmt line carries (base64, as the runtime encodes it).
fn unbase64(s: &str) -> Option<Vec<u8>> {
    let b = s.trim_end().as_bytes();
    let mut out = vec![0u8; b.len() / 4 * 3];
    let n = xenpv_contract::defmt_line::unbase64(b, &mut out)?;
    out.truncate(n);
    Some(out)
}

impl Defmt {
    /// The decoder for an ELF, `None` if it carries no defmt data.
    pub fn from_elf(path: &Path) -> Result<Option<Defmt>, String> {
        let elf = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(table) = Table::parse(&elf).map_err(|e| format!("defmt table: {e}"))? else {
            return Ok(None);
        };
        let locs = table
            .get_locations(&elf)
            .map_err(|e| format!("defmt locations: {e}"))?;
        Ok(Some(Defmt {
            table,
            locs,
            root: format!("{}/", crate::source_root().display()),
        }))
    }

    /// The decoded text of a defmt line, `None` for any other line.
    pub fn line(&self, line: &str) -> Option<String> {
        let payload = line.strip_prefix(MARKER)?;
        if payload.starts_with("!overflow") {
            return Some("[defmt: a frame too large for the runtime's buffer was dropped]".into());
        }
        let Some(bytes) = unbase64(payload) else {
            return Some(format!("[defmt: corrupt line (not base64): {payload:.60}]"));
        };
        match self.table.decode(&bytes) {
            Ok((frame, used)) if used == bytes.len() => {
                let level = frame
                    .level()
                    .map_or("", |l| l.as_str())
                    .to_ascii_uppercase();
                let ts = frame
                    .display_timestamp()
                    .map(|t| format!("[{t}] "))
                    .unwrap_or_default();
                let at = self.locs.get(&frame.index()).map_or(String::new(), |l| {
                    let f = l.file.display().to_string();
                    format!(" ({}:{})", f.strip_prefix(&self.root).unwrap_or(&f), l.line)
                });
                Some(format!("{level:<5} {ts}{}{at}", frame.display_message()))
            }
            Ok((_, used)) => Some(format!(
                "[defmt: corrupt frame ({} bytes, {used} decoded)]",
                bytes.len()
            )),
            Err(e) => Some(format!(
                "[defmt: corrupt frame ({e}), {} bytes]",
                bytes.len()
            )),
        }
    }
}

/// A console line as shown: decoded if it is a defmt line (also after a domU prefix).
pub fn show(d: Option<&Defmt>, line: &str) -> String {
    let Some(d) = d else { return line.to_string() };
    let (prefix, rest) = match line.strip_prefix("domU| ") {
        Some(r) => ("domU| ", r),
        None => ("", line),
    };
    match d.line(rest) {
        Some(text) => format!("{prefix}{text}"),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        assert_eq!(unbase64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(unbase64("Zm8=").unwrap(), b"fo");
        assert_eq!(unbase64("Zg==").unwrap(), b"f");
        assert_eq!(unbase64("").unwrap(), b"");
        for bad in ["Zm9", "Zm9v!", "Z===", "=Zm9"] {
            assert_eq!(unbase64(bad), None, "{bad}");
        }
    }

    /// The repository's real app ELF, when it has been built (the boot tests check the
    /// rest); skipped, with a message, when it has not.
    #[test]
    fn damaged_frames_become_markers_and_plain_lines_pass() {
        let elf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/xenpv-app");
        if !elf.is_file() {
            eprintln!(
                "skipped: {} is not built (the boot tests cover this)",
                elf.display()
            );
            return;
        }
        let d = match Defmt::from_elf(&elf) {
            Ok(Some(d)) => d,
            Ok(None) => {
                eprintln!("skipped: {} carries no defmt data", elf.display());
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(d.line("plain text"), None);
        assert!(d.line("=defmt=!!!!").unwrap().contains("corrupt line"));
        assert!(d
            .line("=defmt=AAAA")
            .unwrap()
            .starts_with("[defmt: corrupt frame"));
        assert!(d.line("=defmt=!overflow").unwrap().contains("too large"));
        assert_eq!(show(Some(&d), "domU| hello"), "domU| hello");
    }
}
