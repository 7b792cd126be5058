//! The `/bytes/N` body: a deterministic pattern ([`pattern_byte`]), filled quickly, and
//! its FNV-1a 64 ([`checksum`]) from checkpoints tabulated at build time.
//!
//! ```
//! use xenpv_appliance::pattern::{checksum, fill_pattern, pattern_byte, Fnv};
//! let mut body = vec![0u8; 1000];
//! fill_pattern(0, &mut body);
//! assert_eq!(body[1], pattern_byte(1));
//! let mut h = Fnv::new();
//! h.update(&body);
//! assert_eq!(checksum(1000), h.finish());
//! ```

include!("pattern_def.rs");
include!(concat!(env!("OUT_DIR"), "/checkpoints.rs"));

/// The pattern from byte `offset` into `out`.
pub fn fill_pattern(offset: u64, out: &mut [u8]) {
    // Byte i+1's product is byte i's plus PHI64: adds, not multiplies, and eight bytes
    // to a store.
    let mut x = offset.wrapping_mul(PHI64);
    let mut words = out.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&pattern_word(x).to_le_bytes());
        x = x.wrapping_add(PHI64.wrapping_mul(8));
    }
    for b in words.into_remainder() {
        *b = (x >> 56) as u8;
        x = x.wrapping_add(PHI64);
    }
}

/// Eight pattern bytes (little-endian) from the product `x` of the first.
///
/// Not inlined: so the compiler keeps it scalar. Vectorized, the loop above ran ~8x
/// slower in the box (its QEMU emulates SSE arithmetic through helper calls).
#[inline(never)]
fn pattern_word(x: u64) -> u64 {
    let b = |k: u64| (x.wrapping_add(PHI64.wrapping_mul(k)) >> 56) << (8 * k);
    b(0) | b(1) | b(2) | b(3) | b(4) | b(5) | b(6) | b(7)
}

/// FNV-1a 64 of the pattern's first `len` bytes: from the nearest tabulated checkpoint
/// below `len`, hashing at most [`CHECKPOINT_STEP`] bytes (past the table's 256 MiB,
/// everything after its last checkpoint).
pub fn checksum(len: u64) -> u64 {
    let k = nearest_checkpoint(len);
    let mut h = Fnv(CHECKPOINT_FNV[k]);
    let mut at = k as u64 * CHECKPOINT_STEP;
    let mut buf = [0u8; 4096];
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        fill_pattern(at, &mut buf[..n]);
        h.update(&buf[..n]);
        at += n as u64;
    }
    h.finish()
}

/// The checkpoint [`checksum`] starts from for `len` bytes.
fn nearest_checkpoint(len: u64) -> usize {
    ((len / CHECKPOINT_STEP) as usize).min(CHECKPOINTS - 1)
}

/// Bytes of the pattern [`checksum`] hashes for `len` bytes (from its nearest checkpoint
/// on): what a `/bytes/N` head costs before it can go out.
pub fn checksum_work(len: u64) -> u64 {
    len - nearest_checkpoint(len) as u64 * CHECKPOINT_STEP
}

/// FNV-1a, 64-bit.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    /// The offset basis.
    pub const fn new() -> Self {
        Fnv(FNV_OFFSET)
    }
    /// Hash `bytes` in.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
    /// The hash.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_filled_word_at_a_time_is_pattern_byte_at_every_offset_and_length() {
        for offset in [0u64, 1, 7, 8, 9, 4095, u64::MAX - 40] {
            for len in 0..40usize {
                let mut out = vec![0u8; len];
                fill_pattern(offset, &mut out);
                let want: Vec<u8> = (0..len as u64)
                    .map(|i| pattern_byte(offset.wrapping_add(i)))
                    .collect();
                assert_eq!(out, want, "offset {offset} len {len}");
            }
        }
        // The documented pattern: top byte of i * 0x9E3779B97F4A7C15.
        let mut first = [0u8; 4];
        fill_pattern(0, &mut first);
        assert_eq!(first, [0x00, 0x9e, 0x3c, 0xda]);
    }

    #[test]
    fn every_checkpoint_is_the_hash_of_the_pattern_up_to_it() {
        let mut h = Fnv::new();
        let mut buf = vec![0u8; CHECKPOINT_STEP as usize];
        for (k, want) in CHECKPOINT_FNV.iter().enumerate() {
            assert_eq!(h.finish(), *want, "checkpoint {k}");
            fill_pattern(k as u64 * CHECKPOINT_STEP, &mut buf);
            h.update(&buf);
        }
    }

    #[test]
    fn the_checksum_is_the_hash_of_the_body_at_any_length() {
        let step = CHECKPOINT_STEP;
        for len in [0, 1, 4095, step - 1, step, step + 1, 3 * step + 17] {
            let mut body = vec![0u8; len as usize];
            fill_pattern(0, &mut body);
            let mut h = Fnv::new();
            h.update(&body);
            assert_eq!(checksum(len), h.finish(), "len {len}");
        }
        assert_eq!(checksum(0), FNV_OFFSET);
    }

    #[test]
    fn past_the_table_the_checksum_hashes_on_from_its_last_checkpoint() {
        let last = (CHECKPOINTS as u64 - 1) * CHECKPOINT_STEP;
        let len = last + 2 * CHECKPOINT_STEP + 5;
        let mut h = Fnv(CHECKPOINT_FNV[CHECKPOINTS - 1]);
        let mut buf = vec![0u8; (len - last) as usize];
        fill_pattern(last, &mut buf);
        h.update(&buf);
        assert_eq!(checksum(len), h.finish());
    }
}
