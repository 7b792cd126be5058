//! Checked initrd images (format: `xenpv_contract::initrd`), made once and cached.
use std::io::Write;
use std::path::PathBuf;
use xenpv_contract::initrd::{header_for, pattern_word, Header, HEADER_LEN};

/// Largest image we make (the guest's direct map and Xen's boot mapping bound it anyway).
pub const MAX_MIB: u64 = 4096;

/// Path and header of the checked image of `mib` MiB from `seed`, made if missing.
pub fn checked(mib: u64, seed: u64) -> Result<(PathBuf, Header), String> {
    if mib == 0 || mib > MAX_MIB {
        return Err(format!("initrd size {mib} MiB is outside 1..={MAX_MIB}"));
    }
    let total = mib << 20;
    let header = header_for(total, seed).map_err(|e| e.to_string())?;
    let dir = crate::root().join("target/xtask/initrd");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{mib}M-seed{seed}.img"));
    if is_current(&path, &header) {
        return Ok((path, header));
    }
    if mib >= 256 {
        eprintln!("xtask: making a {mib} MiB initrd at {}", path.display());
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?,
    );
    let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
    f.write_all(&header.to_bytes()).map_err(io)?;
    let bar = crate::progress::bar(total, &format!("initrd {mib} MiB"), true);
    let mut buf = Vec::with_capacity(1 << 20);
    for i in 0..(total - HEADER_LEN as u64) / 8 {
        buf.extend_from_slice(&pattern_word(seed, i).to_le_bytes());
        if buf.len() == 1 << 20 {
            f.write_all(&buf).map_err(io)?;
            bar.inc(buf.len() as u64);
            buf.clear();
        }
    }
    f.write_all(&buf).map_err(io)?;
    bar.finish_and_clear();
    f.flush().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, header))
}

/// The same image with one byte flipped at `offset` (to prove the guest's check can fail).
pub fn corrupted(mib: u64, seed: u64, offset: u64) -> Result<PathBuf, String> {
    let (good, _) = checked(mib, seed)?;
    let path = good.with_file_name(format!("{mib}M-seed{seed}-flip{offset:#x}.img"));
    if !path.exists() {
        let mut data = std::fs::read(&good).map_err(|e| format!("{}: {e}", good.display()))?;
        let b = data
            .get_mut(offset as usize)
            .ok_or_else(|| format!("offset {offset:#x} is past the image"))?;
        *b ^= 0x40;
        std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(path)
}

fn is_current(path: &std::path::Path, header: &Header) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut h = [0u8; HEADER_LEN];
    f.read_exact(&mut h).is_ok()
        && h == header.to_bytes()
        && f.metadata()
            .map(|m| m.len() == header.total_len)
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn images_verify_with_the_runtime_and_sizes_are_bounded() {
        let (path, header) = super::checked(1, 42).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(
            xenpv_contract::initrd::verify(&data).unwrap().header,
            header
        );
        let bad = std::fs::read(super::corrupted(1, 42, 5000).unwrap()).unwrap();
        assert!(xenpv_contract::initrd::verify(&bad).is_err());
        assert!(super::checked(0, 1)
            .unwrap_err()
            .contains("outside 1..=4096"));
    }
}
