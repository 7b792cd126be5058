//! The smallest unikernel on xenpv-rt, exactly as the README shows it.
#![no_std]
#![no_main]

xenpv_rt::entry!(main);

fn main(boot: &mut xenpv_rt::Boot) -> i32 {
    xenpv_rt::println!(
        "hello from a library consumer: {} pages",
        boot.start_info().nr_pages
    );
    0
}
