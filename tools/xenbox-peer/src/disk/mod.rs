//! The dom0 side of the storage tests: write the disk pattern onto a block device the
//! domU will read (`disk-fill`), and check a device the domU wrote (`disk-verify`, and
//! `disk-records` for the appliance's disk writer: module `records`).
//!
//! The pattern is the one the guest appliance writes and checks (`blk` mode): byte `o`
//! of a disk with seed `s` is byte `o % 8` (little-endian) of
//! `xenpv_contract::initrd::pattern_word(s, o / 8)`. Both sides go around dom0's page
//! cache (`O_DIRECT`), so they see what the backend sees.
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

pub mod records;

use crate::args::{Opt, Parsed, Spec, Usage};
use crate::verdict::Verdict;
use xenpv_contract::initrd::pattern_word;

const OPTS: &[Opt] = &[
    Opt::req("seed", "S", "the pattern's seed"),
    Opt::req(
        "bytes",
        "N",
        "how many bytes from the start (a multiple of 4096)",
    ),
];

/// `disk-fill`.
pub static FILL: Spec = Spec {
    name: "disk-fill",
    args: &["DEVICE"],
    about: "Write N bytes of the disk pattern of seed S to DEVICE from its start, with\n\
            O_DIRECT, then fsync. Reports bytes and elapsed_ms.",
    opts: OPTS,
};

/// `disk-verify`.
pub static VERIFY: Spec = Spec {
    name: "disk-verify",
    args: &["DEVICE"],
    about: "Read N bytes of DEVICE from its start with O_DIRECT and compare them with the\n\
            disk pattern of seed S. Reports bytes, mismatched bytes and the first one.",
    opts: OPTS,
};

/// Fill `out` with the pattern from byte `at` on (`at` a multiple of 8).
pub fn fill(seed: u64, at: u64, out: &mut [u8]) {
    for (i, w) in out.chunks_mut(8).enumerate() {
        let v = pattern_word(seed, at / 8 + i as u64).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

/// A 1 MiB buffer aligned for O_DIRECT.
struct Aligned(Vec<u8>, usize);
impl Aligned {
    fn new() -> Self {
        let v = vec![0u8; (1 << 20) + 4096];
        let skip = v.as_ptr().align_offset(4096);
        Aligned(v, skip)
    }
    fn buf(&mut self, n: usize) -> &mut [u8] {
        &mut self.0[self.1..self.1 + n]
    }
}

fn args(p: &Parsed) -> Result<(u64, u64), Usage> {
    let bytes = p.u64("bytes")?;
    if bytes % 4096 != 0 {
        return crate::args::bad(format!("--bytes {bytes} is not a multiple of 4096"));
    }
    Ok((p.u64("seed")?, bytes))
}

/// Open `path` with O_DIRECT for writing or reading; a failure goes into the verdict.
fn open(path: &str, write: bool, v: &mut Verdict) -> Option<std::fs::File> {
    match OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            v.fail("open");
            v.kv("error", e);
            None
        }
    }
}

/// Run `disk-fill`.
pub fn run_fill(p: &Parsed) -> Result<Verdict, Usage> {
    let (seed, bytes) = args(p)?;
    let mut v = Verdict::new(FILL.name);
    let t = std::time::Instant::now();
    let Some(mut f) = open(&p.pos[0], true, &mut v) else {
        return Ok(v);
    };
    let mut buf = Aligned::new();
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(1 << 20) as usize;
        let b = buf.buf(n);
        fill(seed, at, b);
        if let Err(e) = f.write_all(b) {
            v.fail("write");
            v.kv("at", at);
            v.kv("error", e);
            return Ok(v);
        }
        at += n as u64;
    }
    if let Err(e) = f.sync_all() {
        v.fail("fsync");
        v.kv("error", e);
    }
    v.kv("bytes", bytes);
    v.kv("elapsed_ms", t.elapsed().as_millis());
    Ok(v)
}

/// Run `disk-verify`.
pub fn run_verify(p: &Parsed) -> Result<Verdict, Usage> {
    let (seed, bytes) = args(p)?;
    let mut v = Verdict::new(VERIFY.name);
    let t = std::time::Instant::now();
    let Some(mut f) = open(&p.pos[0], false, &mut v) else {
        return Ok(v);
    };
    let mut buf = Aligned::new();
    let mut want = vec![0u8; 1 << 20];
    let (mut at, mut bad, mut first) = (0u64, 0u64, None);
    while at < bytes {
        let n = (bytes - at).min(1 << 20) as usize;
        let b = buf.buf(n);
        if let Err(e) = f.read_exact(b) {
            v.fail("read");
            v.kv("at", at);
            v.kv("error", e);
            return Ok(v);
        }
        fill(seed, at, &mut want[..n]);
        for (i, (x, y)) in b.iter().zip(&want[..n]).enumerate() {
            if x != y {
                bad += 1;
                first.get_or_insert(at + i as u64);
            }
        }
        at += n as u64;
    }
    if bad > 0 {
        v.fail("mismatch");
    }
    v.kv("bytes", bytes);
    v.kv("mismatched", bad);
    if let Some(o) = first {
        v.kv("first_mismatch", o);
    }
    v.kv("elapsed_ms", t.elapsed().as_millis());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testsrv::cmd;

    #[test]
    fn fill_then_verify_a_file_and_catch_one_flipped_byte() {
        let d = std::env::temp_dir().join(format!("peer-disk-{}", std::process::id()));
        std::fs::write(&d, vec![0u8; 3 << 20]).unwrap();
        let path = d.to_str().unwrap();
        let v = cmd(&["disk-fill", path, "--seed", "7", "--bytes", "3145728"]);
        assert!(v.passed(), "{v}");
        let v = cmd(&["disk-verify", path, "--seed", "7", "--bytes", "3145728"]);
        assert!(v.passed(), "{v}");
        assert_eq!(v.get("mismatched"), Some("0"));
        let mut bytes = std::fs::read(&d).unwrap();
        bytes[1_500_001] ^= 1;
        std::fs::write(&d, &bytes).unwrap();
        let v = cmd(&["disk-verify", path, "--seed", "7", "--bytes", "3145728"]);
        assert!(!v.passed(), "{v}");
        assert_eq!(v.get("first_mismatch"), Some("1500001"));
        let v = cmd(&["disk-verify", path, "--seed", "8", "--bytes", "4096"]);
        assert!(!v.passed(), "another seed is another pattern: {v}");
        std::fs::remove_file(&d).unwrap();
    }

    #[test]
    fn the_pattern_is_the_initrd_word_stream() {
        let mut b = [0u8; 16];
        fill(3, 8, &mut b);
        assert_eq!(b[..8], pattern_word(3, 1).to_le_bytes());
        assert_eq!(b[8..], pattern_word(3, 2).to_le_bytes());
    }
}
