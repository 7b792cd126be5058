// The `/bytes/N` pattern and FNV-1a 64's constants: included by the crate (`pattern`)
// and by its build script, which tabulates the checksum's checkpoints from them.

/// 2^64 / phi, the pattern's multiplier.
pub const PHI64: u64 = 0x9E37_79B9_7F4A_7C15;
/// FNV-1a 64's offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64's prime.
pub const FNV_PRIME: u64 = 0x0100_0000_01b3;
/// Bytes between two checkpoints of the pattern's checksum.
pub const CHECKPOINT_STEP: u64 = 256 * 1024;
/// Checkpoints tabulated (the first at 0): they cover the first 256 MiB.
pub const CHECKPOINTS: usize = 1024;

/// Byte `i` of the `/bytes/N` pattern: the top byte of `i` times 2^64 / phi.
pub const fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(PHI64) >> 56) as u8
}
