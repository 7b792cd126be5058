//! A unikernel on xenpv-rt: it prints, logs with defmt, maps memory, and returns the
//! status asked for on its command line (`cargo run -- exit=3`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use @CRATE@::checksum;
use xenpv_rt::{println, Boot};

xenpv_rt::entry!(main);

fn main(boot: &mut Boot) -> i32 {
    println!("hello from @NAME@: {} pages", boot.start_info().nr_pages);
    defmt::info!("@NAME@ runs as dom0: {=bool}", boot.is_dom0());

    // 1 MiB of fresh frames in module space: read-write, no-execute, a guard page after.
    match boot.memory().vmalloc(1 << 20) {
        Ok(mut area) => {
            let words = area.as_mut_slice();
            for (i, w) in words.iter_mut().enumerate() {
                *w = i as u64;
            }
            let sum = checksum(words.iter().flat_map(|w| w.to_le_bytes()));
            println!("vmalloc'd 1 MiB at {:#x}, checksum {sum:#010x}", area.va());
            if let Err(e) = boot.memory().vfree(area) {
                println!("vfree: {e}");
                return 1;
            }
        }
        Err(e) => {
            println!("vmalloc: {e}");
            return 1;
        }
    }

    // The heap: grows on demand from free memory.
    let squares: Vec<u64> = (0..100_000u64).map(|i| i * i).collect();
    println!("heap: {} squares, the last {}", squares.len(), squares[squares.len() - 1]);

    match boot.cmdline().u64("exit") {
        Ok(status) => status.unwrap_or(0).min(127) as i32,
        Err(e) => {
            println!("{e}");
            2
        }
    }
}
