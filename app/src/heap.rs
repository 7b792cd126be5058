//! The heap stress (`heap` on the command line): random allocations from 8 B to 1 MiB
//! with random frees, fragmentation, and one `Vec` grown to `heap_mib` (default 256)
//! MiB; every byte written with a pattern and checked before it is freed. Prints one
//! line ending in `verdict=PASS` or `verdict=FAIL`, and allocations per second.
extern crate alloc;

use alloc::vec::Vec;
use xenpv_contract::report;
use xenpv_rt::println;

/// xorshift64: the run is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The byte every block holds at offset `i`: a function of its id.
fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u8 ^ (i as u8).wrapping_mul(31)
}

fn filled(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(id, i)).collect()
}

fn intact(id: u64, v: &[u8]) -> bool {
    v.iter().enumerate().all(|(i, &b)| b == pattern(id, i))
}

/// Run the stress; `true` if every byte came back as written.
pub fn run(seed: u64, ops: u64, big_mib: u64) -> bool {
    let start = xenpv_rt::time::now_ns();
    let mut rng = Rng(seed.max(1));
    let mut bad = 0u64;
    let mut allocs = 0u64;
    // 1. Churn: up to 512 live blocks of random size, freed at random, checked when freed.
    let mut live: Vec<(u64, Vec<u8>)> = Vec::new();
    for id in 0..ops {
        if live.len() < 512 && (live.is_empty() || !rng.next().is_multiple_of(3)) {
            let r = rng.next();
            let len = match r % 100 {
                0 => 1 << 20,
                1..=5 => 64 << 10,
                6..=25 => 4096,
                _ => 8 + (r >> 8) as usize % 1024,
            };
            live.push((id, filled(id, len)));
            allocs += 1;
        } else {
            let i = rng.next() as usize % live.len();
            let (id, v) = live.swap_remove(i);
            bad += u64::from(!intact(id, &v));
        }
    }
    for (id, v) in live.drain(..) {
        bad += u64::from(!intact(id, &v));
    }
    // 2. Fragmentation: many small blocks, every other one freed, then large ones.
    let mut small: Vec<(u64, Vec<u8>)> = (0..20_000u64).map(|id| (id, filled(id, 64))).collect();
    allocs += 20_000;
    let mut kept = Vec::new();
    for (k, b) in small.drain(..).enumerate() {
        if k % 2 == 0 {
            kept.push(b);
        } else {
            bad += u64::from(!intact(b.0, &b.1));
        }
    }
    let large: Vec<(u64, Vec<u8>)> = (0..32u64)
        .map(|id| (id + 1_000_000, filled(id + 1_000_000, 1 << 20)))
        .collect();
    allocs += 32;
    for (id, v) in kept.iter().chain(large.iter()) {
        bad += u64::from(!intact(*id, v));
    }
    drop(kept);
    drop(large);
    let churn_ns = xenpv_rt::time::now_ns().saturating_sub(start).max(1);
    // The allocator alone: 100 000 allocate/free pairs of 64 bytes.
    let t0 = xenpv_rt::time::now_ns();
    for i in 0..100_000u64 {
        let b = core::hint::black_box(alloc::boxed::Box::new([i; 8]));
        drop(b);
    }
    let pair_ns = xenpv_rt::time::now_ns().saturating_sub(t0).max(1);
    // 3. One Vec grown by push to `big_mib` MiB (doubling as it goes), every word checked.
    let words = (big_mib << 20) / 8;
    let mut big: Vec<u64> = Vec::new();
    if big.try_reserve(1).is_err() {
        println!("heap: the first allocation failed");
        return false;
    }
    for i in 0..words {
        if big.len() == big.capacity() && big.try_reserve(big.capacity()).is_err() {
            println!(
                "heap: could not grow the Vec past {} MiB",
                (big.len() * 8) >> 20
            );
            bad += 1;
            break;
        }
        big.push(i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    let big_ok = big
        .iter()
        .enumerate()
        .all(|(i, &w)| w == (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    bad += u64::from(!big_ok);
    let big_len = (big.len() * 8) >> 20;
    drop(big);
    let s = xenpv_rt::heap::stats();
    let pass = bad == 0 && big_len as u64 == big_mib;
    println!(
        "{}",
        report!(
            "heap",
            seed,
            allocations = allocs,
            allocs_per_s = allocs as u128 * 1_000_000_000 / churn_ns as u128,
            alloc_free_per_s = 100_000u128 * 1_000_000_000 / pair_ns as u128,
            bad,
            big_vec_mib = big_len,
            claimed_mib = s.claimed_bytes >> 20,
            failures = s.failures,
            verdict = if pass { "PASS" } else { "FAIL" },
        )
    );
    pass
}

/// Exhaust the heap with one infallible allocation (`heap_oom`): the runtime says why and
/// the allocation failure panics (status 101).
pub fn oom() -> ! {
    let v: Vec<u8> = alloc::vec![7u8; 1 << 30];
    println!("heap: a 1 GiB allocation succeeded ({} bytes)", v.len());
    panic!("expected the allocation to fail");
}
