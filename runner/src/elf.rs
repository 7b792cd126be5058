//! Is a binary a Xen PV kernel? One with Xen's ELF notes is booted; anything else (a
//! consumer's host test binary, which cargo also hands its runner) is run natively.
use object::Object;
use std::path::Path;

/// Does `path` carry a `.note.Xen` section (the notes Xen's domain builder reads)?
pub fn is_xen_kernel(path: &Path) -> Result<bool, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = match object::File::parse(&*data) {
        Ok(f) => f,
        // Not an ELF (a script, say): certainly not a PV kernel.
        Err(_) => return Ok(false),
    };
    Ok(file.section_by_name(".note.Xen").is_some())
}

/// The bytes a kernel's loadable segments span (lowest address to the end of the
/// highest, `.bss` included): what Xen's domain builder places in the domain's memory
/// before anything else (`None`: no loadable segment, or not an ELF).
pub fn loaded_span(data: &[u8]) -> Option<u64> {
    use object::ObjectSegment;
    let file = object::File::parse(data).ok()?;
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for s in file.segments() {
        if s.size() == 0 {
            continue;
        }
        lo = lo.min(s.address());
        hi = hi.max(s.address().saturating_add(s.size()));
    }
    (hi > lo).then(|| hi - lo)
}

/// Why `memory_mib` cannot hold a kernel whose segments span `span` bytes, or `None`.
/// xl accepts any memory from 1 MiB on (its domain builder then refuses a kernel that
/// does not fit: `xc_dom_chk_alloc_pages: segment kernel too large`), and Xen panics
/// building a dom0 that small (`Domain 0 allocation is too small for kernel image`): the
/// runner says it first, naming both figures.
pub fn too_small_for(memory_mib: u64, span: u64) -> Option<String> {
    let have = memory_mib.saturating_mul(1 << 20);
    (have <= span).then(|| {
        format!(
            "--memory {memory_mib}: the kernel alone spans {} KiB ({} MiB) of the domain's memory; \
             give it at least {} MiB (and room for its page tables, heap and devices)",
            span.div_ceil(1024),
            span.div_ceil(1 << 20),
            span.div_ceil(1 << 20) + 1
        )
    })
}

/// [`too_small_for`] on the kernel at `path` (a file that is not an ELF passes: the
/// builder says what is wrong with it).
pub fn check_memory(path: &Path, memory_mib: u64) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match loaded_span(&data).and_then(|span| too_small_for(memory_mib, span)) {
        Some(e) => Err(format!("{}: {e}", path.display())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_below_the_kernel_span_is_refused_naming_both() {
        let span = 0x843 * 4096; // the sample app's 8.26 MiB
        let e = too_small_for(8, span).unwrap();
        assert!(
            e.starts_with("--memory 8: the kernel alone spans 8460 KiB (9 MiB)"),
            "{e}"
        );
        assert!(e.contains("at least 10 MiB"), "{e}");
        assert!(too_small_for(1, span).is_some());
        assert_eq!(too_small_for(9, span), None);
        assert_eq!(too_small_for(16, span), None);
    }

    #[test]
    fn the_span_of_this_test_binary_is_its_segments() {
        let me = std::env::current_exe().unwrap();
        let data = std::fs::read(me).unwrap();
        let span = loaded_span(&data).unwrap();
        assert!(span > 4096, "{span}");
        assert_eq!(loaded_span(b"#!/bin/sh\n"), None);
    }
}
