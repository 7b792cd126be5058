//! The disk images of the storage boot tests, made on the host before a run: a blank
//! disk for the domU to write its pattern on, and an ext4 image (Debian's `mkfs.ext4 -d`)
//! holding files of known content, with the sha256 of each for dom0 to check against.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use xenpv_contract::initrd::pattern_word;

/// Where the images live.
fn dir() -> Result<PathBuf, String> {
    let d = crate::root().join("target/xtask/disks");
    fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

/// A zeroed (sparse) image of `mib` MiB named `name`, made anew.
pub fn blank(name: &str, mib: u64) -> Result<PathBuf, String> {
    let p = dir()?.join(name);
    let _ = fs::remove_file(&p);
    let f = fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    f.set_len(mib << 20)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// Fill the whole of the image at `path` with the pattern of `seed`.
pub fn fill(path: &Path, seed: u64) -> Result<(), String> {
    let len = fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let mut bytes = vec![0u8; len as usize];
    pattern(seed, 0, &mut bytes);
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The disk pattern of `seed` from byte `at` on (what the app's `blk` mode and
/// `xenbox-peer disk-fill` write).
pub fn pattern(seed: u64, at: u64, out: &mut [u8]) {
    for (i, w) in out.chunks_mut(8).enumerate() {
        let v = pattern_word(seed, at / 8 + i as u64).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

/// The sha256 (hex) of the first `bytes` bytes of the pattern of `seed`.
pub fn pattern_sha256(seed: u64, bytes: u64) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(1 << 20) as usize;
        pattern(seed, at, &mut buf[..n]);
        h.update(&buf[..n]);
        at += n as u64;
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The files of the ext4 test image: path (under the image's root) and length. Their
/// bytes are the disk pattern with a seed per file (see [`ext4_files`]).
pub const FILES: [(&str, u64); 12] = [
    ("empty", 0),
    ("one", 1),
    ("sector-511", 511),
    ("sector", 512),
    ("page-minus-1", 4095),
    ("page", 4096),
    ("docs/page-plus-1", 4097),
    ("docs/64k", 65536),
    ("docs/deep/nested/1m-plus-3", (1 << 20) + 3),
    ("data/5m", 5 << 20),
    ("data/16m-plus-1", (16 << 20) + 1),
    ("data/64m", 64 << 20),
];

/// A file of the ext4 test image, as dom0 checks it.
pub struct ImageFile {
    /// Its path under the image's root.
    pub path: &'static str,
    /// Its length.
    pub len: u64,
    /// FNV-1a 64 of its bytes, 16 hex digits (what the appliance's checksum header says).
    pub fnv: String,
}

/// FNV-1a 64.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An ext4 image holding [`FILES`] (file `i` filled with the pattern of seed `100 + i`),
/// made by `mkfs.ext4 -d`; each file's length and checksum, in [`FILES`]' order.
pub fn ext4_files(name: &str) -> Result<(PathBuf, Vec<ImageFile>), String> {
    let d = dir()?;
    let src = d.join(format!("{name}.d"));
    let _ = fs::remove_dir_all(&src);
    let mut sums = vec![];
    let mut total = 0;
    for (i, (path, len)) in FILES.iter().enumerate() {
        let p = src.join(path);
        fs::create_dir_all(p.parent().unwrap_or(&src)).map_err(|e| format!("{e}"))?;
        let mut bytes = vec![0u8; *len as usize];
        pattern(100 + i as u64, 0, &mut bytes);
        sums.push(ImageFile {
            path,
            len: *len,
            fnv: format!("{:016x}", fnv1a64(&bytes)),
        });
        fs::write(&p, &bytes).map_err(|e| format!("{}: {e}", p.display()))?;
        total += len;
    }
    let img = d.join(name);
    let _ = fs::remove_file(&img);
    let mib = total / (1 << 20) + 32;
    mkfs_ext4(&src, &img, mib)?;
    fs::remove_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    Ok((img, sums))
}

/// The fields of the hostile superblock [`ext4_hostile`] writes (byte offsets in the
/// superblock, which starts 1024 bytes into the image).
const SB: usize = 1024;
const S_BLOCKS_COUNT_LO: usize = 0x04;
const S_BLOCKS_PER_GROUP: usize = 0x20;
const S_FEATURE_RO_COMPAT: usize = 0x64;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const S_CHECKSUM: usize = 0x3fc;
/// `RO_COMPAT_METADATA_CSUM`: the superblock carries a CRC32C of its first 1020 bytes.
const METADATA_CSUM: u32 = 0x400;

/// The superblock checksum as ext4 stores it: CRC32C (Castagnoli, reflected) from
/// 0xffffffff, without the final inversion.
fn ext4_crc32c(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    c
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A hostile disk (the security review's M4): a real ext4 image (`mkfs.ext4 -d`, a few
/// small files) whose superblock then claims 0xffffffff blocks in groups of one block
/// (`s_blocks_count_lo = 0xffffffff`, `s_blocks_count_hi = 0`, `s_blocks_per_group = 1`):
/// about 2^32 block groups, whose descriptor table a trusting reader allocates up front
/// (64 GiB). The superblock checksum is made right again, so that only a check of the
/// geometry against the device refuses it. Returns the image's path.
pub fn ext4_hostile(name: &str) -> Result<PathBuf, String> {
    let d = dir()?;
    let src = d.join(format!("{name}.d"));
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(src.join("docs")).map_err(|e| format!("{}: {e}", src.display()))?;
    for (path, len, seed) in [("page", 4096u64, 1u64), ("docs/64k", 65536, 2)] {
        let mut bytes = vec![0u8; len as usize];
        pattern(seed, 0, &mut bytes);
        let p = src.join(path);
        fs::write(&p, &bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let img = d.join(name);
    let _ = fs::remove_file(&img);
    mkfs_ext4(&src, &img, 16)?;
    fs::remove_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut b = fs::read(&img).map_err(|e| format!("{}: {e}", img.display()))?;
    let sb = b
        .get_mut(SB..SB + 1024)
        .ok_or(format!("{}: shorter than a superblock", img.display()))?;
    if sb[0x38..0x3a] != [0x53, 0xef] {
        return Err(format!("{}: no ext4 superblock magic", img.display()));
    }
    let csum = le32(sb, S_FEATURE_RO_COMPAT) & METADATA_CSUM != 0;
    if csum && le32(sb, S_CHECKSUM) != ext4_crc32c(&sb[..S_CHECKSUM]) {
        return Err(format!(
            "{}: mkfs's superblock checksum is not the CRC32C computed here",
            img.display()
        ));
    }
    sb[S_BLOCKS_COUNT_LO..S_BLOCKS_COUNT_LO + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    sb[S_BLOCKS_COUNT_HI..S_BLOCKS_COUNT_HI + 4].copy_from_slice(&0u32.to_le_bytes());
    sb[S_BLOCKS_PER_GROUP..S_BLOCKS_PER_GROUP + 4].copy_from_slice(&1u32.to_le_bytes());
    if csum {
        let c = ext4_crc32c(&sb[..S_CHECKSUM]);
        sb[S_CHECKSUM..S_CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
    }
    fs::write(&img, &b).map_err(|e| format!("{}: {e}", img.display()))?;
    Ok(img)
}

/// `mkfs.ext4 -q -F -d SRC IMG MIBm` (e2fsprogs; `/sbin` is not on every PATH).
fn mkfs_ext4(src: &Path, img: &Path, mib: u64) -> Result<(), String> {
    let exe = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mkfs.ext4");
    let out = Command::new(exe)
        .args(["-q", "-F", "-d"])
        .arg(src)
        .arg(img)
        .arg(format!("{mib}M"))
        .output()
        .map_err(|e| format!("{exe}: {e} (install e2fsprogs: ci/install-deps.sh does)"))?;
    if !out.status.success() {
        return Err(format!(
            "{exe} -d {} {}: {}",
            src.display(),
            img.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli_without_the_final_inversion() {
        // The standard CRC-32C check value of "123456789" is 0xe3069283.
        assert_eq!(!ext4_crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn the_hostile_image_claims_2_to_the_32_blocks_with_a_valid_checksum() {
        let Ok(img) = ext4_hostile("test-hostile.img") else {
            // No mkfs.ext4 on this host: the boot test's preparation will say so.
            return;
        };
        let b = fs::read(&img).unwrap();
        let sb = &b[SB..SB + 1024];
        assert_eq!(le32(sb, S_BLOCKS_COUNT_LO), u32::MAX);
        assert_eq!(le32(sb, S_BLOCKS_PER_GROUP), 1);
        if le32(sb, S_FEATURE_RO_COMPAT) & METADATA_CSUM != 0 {
            assert_eq!(le32(sb, S_CHECKSUM), ext4_crc32c(&sb[..S_CHECKSUM]));
        }
        assert!(b.len() < 32 << 20);
        let _ = fs::remove_file(img);
    }

    #[test]
    fn the_pattern_hash_is_the_hash_of_the_pattern_bytes() {
        let mut b = vec![0u8; 3 << 20];
        pattern(5, 0, &mut b);
        assert_eq!(pattern_sha256(5, 3 << 20), hex(&Sha256::digest(&b)));
        assert_ne!(pattern_sha256(6, 3 << 20), pattern_sha256(5, 3 << 20));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Byte 8 is the first of word 1.
        assert_eq!(b[8..16], pattern_word(5, 1).to_le_bytes());
    }
}
