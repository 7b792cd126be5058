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
