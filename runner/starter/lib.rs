//! What the kernel computes, kept in a library: plain Rust that `cargo test` tests on the
//! host (the kernel binary itself cannot run a test harness).
#![cfg_attr(not(test), no_std)]

/// FNV-1a over `bytes`.
pub fn checksum(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a() {
        assert_eq!(checksum(*b""), 0x811c_9dc5);
        assert_eq!(checksum(*b"a"), 0xe40c_292c);
    }
}
