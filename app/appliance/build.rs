//! Tabulates the FNV-1a 64 of the `/bytes/N` pattern's first k * CHECKPOINT_STEP bytes
//! for every checkpoint k, so that the appliance can put a body's checksum in its head
//! after hashing at most one step (not all N bytes) first.

use std::fmt::Write as _;

include!("src/pattern_def.rs");

fn main() {
    println!("cargo:rerun-if-changed=src/pattern_def.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let mut out = String::from(
        "/// FNV-1a 64 state after the pattern's first `k * CHECKPOINT_STEP` bytes, for every k\n\
         /// (written by build.rs).\n\
         pub const CHECKPOINT_FNV: [u64; CHECKPOINTS] = [\n",
    );
    let (mut h, mut x) = (FNV_OFFSET, 0u64);
    for _ in 0..CHECKPOINTS {
        writeln!(out, "    {h:#018x},").unwrap();
        // An add per byte (byte i's product is i * PHI64): quick even unoptimized.
        for _ in 0..CHECKPOINT_STEP {
            h = (h ^ (x >> 56)).wrapping_mul(FNV_PRIME);
            x = x.wrapping_add(PHI64);
        }
    }
    out += "];\n";
    let dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(format!("{dir}/checkpoints.rs"), out).expect("write checkpoints.rs");
    // Sanity: the formula the loop uses is pattern_byte's.
    assert_eq!((3u64.wrapping_mul(PHI64) >> 56) as u8, pattern_byte(3));
}
