//! The panic handler: message and location on the console, then status 101.

use crate::exit::{deliver, STATUS_PANIC};
use core::sync::atomic::{AtomicBool, Ordering};
use xenpv_contract::status::exit_line;

/// Set by the first panic: a panic while printing that one only says so and stops.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Print where and why, then stop with [`STATUS_PANIC`] (no unwinding: panic=abort).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // The code that panicked may hold the console ring's lock: never wait for it.
    crate::console::ring::failing();
    if PANICKING.swap(true, Ordering::SeqCst) {
        crate::console::write_bytes(b"xenpv-rt: panicked while panicking\n");
        deliver(STATUS_PANIC);
    }
    // Unlocked: the panicking code may hold the console lock.
    match info.location() {
        Some(l) => crate::console::_print_unlocked(format_args!(
            "\nxenpv-rt: panicked at {}:{}:{}: {}\n",
            l.file(),
            l.line(),
            l.column(),
            info.message()
        )),
        None => crate::console::_print_unlocked(format_args!(
            "\nxenpv-rt: panicked: {}\n",
            info.message()
        )),
    }
    crate::console::_print_unlocked(format_args!("{}\n", exit_line(STATUS_PANIC)));
    deliver(STATUS_PANIC)
}
