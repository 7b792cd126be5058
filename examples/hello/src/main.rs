//! The smallest unikernel on xenpv-rt, exactly as the README shows it (below this line;
//! `cargo xtask lint` checks).
#![no_std]
#![no_main]

xenpv_rt::entry!(main);

fn main(boot: &mut xenpv_rt::Boot) -> i32 {
    xenpv_rt::println!(
        "hello from a library consumer: {} pages",
        boot.start_info().nr_pages
    );
    // 1 MiB of fresh frames in module space: RW, NX, a guard page after.
    match boot.memory().vmalloc(1 << 20) {
        Ok(mut area) => {
            area.as_mut_slice().fill(0x5a5a); // &mut [u64] over the mapping
            let va = area.va();
            // PTEs cleared, TLB flushed, frames back to the allocator.
            match boot.memory().vfree(area) {
                Ok(()) => xenpv_rt::println!("vmalloc'd 1 MiB at {va:#x} and gave it back"),
                Err(e) => xenpv_rt::println!("vfree: {e}"),
            }
            0
        }
        Err(e) => {
            xenpv_rt::println!("vmalloc: {e}");
            1
        }
    }
}
