//! A guest without devices that lives until the toolstack stops it (command-line word
//! `ticker`): one tick a second on the guest's monotonic clock, a line every
//! `tick_every=` ticks (default 5) with the count, the clock and the runtime's epoch,
//! and any step back of the clock counted. What save/restore is first proven on: built
//! with the runtime's `suspend` feature, it goes through `xl save -c` (the same domain)
//! and `xl save` + `xl restore` (a new domain, epoch + 1) and keeps ticking.
use xenpv_contract::report::Writer;
use xenpv_rt::exec::embassy_futures::select::{select, Either};
use xenpv_rt::exec::embassy_time::{Duration, Timer};
use xenpv_rt::{println, time::now_ns};

/// Tick until the toolstack asks to stop; 0 if the clock never went back, else 1.
pub async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    let every = rt
        .cmdline()
        .u64("tick_every")
        .ok()
        .flatten()
        .unwrap_or(5)
        .max(1);
    let (mut n, mut back, mut last) = (0u64, 0u64, now_ns());
    println!(
        "{}",
        Writer::new("ticker")
            .word("started")
            .field("mono_ns", &last)
    );
    loop {
        match select(Timer::after(Duration::from_secs(1)), rt.shutdown()).await {
            Either::First(()) => {
                n += 1;
                let now = now_ns();
                if now < last {
                    back += 1;
                }
                last = now;
                if n % every == 0 {
                    println!(
                        "{}",
                        Writer::new("ticker")
                            .field("n", &n)
                            .field("mono_ns", &now)
                            .field("back", &back)
                            .field("epoch", &xenpv_rt::epoch())
                    );
                }
            }
            Either::Second(how) => {
                println!(
                    "{}",
                    Writer::new("ticker")
                        .word("stopped")
                        .field("how", how.as_str())
                        .field("n", &n)
                        .field("back", &back)
                        .field("epoch", &xenpv_rt::epoch())
                );
                return i32::from(back != 0);
            }
        }
    }
}
