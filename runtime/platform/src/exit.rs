//! Leaving: the exit-status line, then the status itself to whoever is outside.
//!
//! Under QEMU (xtask adds `qemu-exit` to the command line) dom0 writes the status to the
//! isa-debug-exit port 0xf4 and QEMU exits with `(status << 1) | 1`. Otherwise, and if that
//! fails, `SCHEDOP_shutdown`: poweroff for 0, crash for anything else, which is what `xl`
//! reports on a real Xen host. The port write is opt-in: on real hardware port 0xf4 is not
//! ours to poke.

use core::sync::atomic::{AtomicBool, Ordering};
pub use xenpv_protocol::status::{clamp_status, STATUS_FATAL, STATUS_MAX, STATUS_PANIC};

static QEMU_EXIT: AtomicBool = AtomicBool::new(false);

/// Deliver statuses through QEMU's isa-debug-exit port (dom0 under QEMU only).
pub fn enable_qemu_exit(on: bool) {
    QEMU_EXIT.store(on, Ordering::Relaxed);
}

/// Print the exit line and stop the guest with `status`.
pub fn exit(status: i32) -> ! {
    let (st, clamped) = clamp_status(status);
    if clamped {
        crate::println!(
            "xenpv-rt: exit status {status} is outside 0..={STATUS_MAX}; reporting {st}"
        );
    }
    crate::println!("xenpv-rt: exit status {st}");
    deliver(st)
}

/// Stop with `status` without printing (the panic path prints unlocked itself).
pub fn deliver(status: i32) -> ! {
    use crate::hypercall;
    if QEMU_EXIT.load(Ordering::Relaxed) && hypercall::set_iopl(3).is_ok() {
        // SAFETY: iopl 3 was granted; port 0xf4 is QEMU's isa-debug-exit (opted in).
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") status as u32,
                             options(nomem, nostack, preserves_flags));
        }
    }
    let reason = if status == 0 {
        xen_sys::SHUTDOWN_poweroff
    } else {
        xen_sys::SHUTDOWN_crash
    };
    let _ = hypercall::shutdown(reason);
    loop {
        core::hint::spin_loop();
    }
}

/// Refuse to go on: `xenpv-rt: fatal: ...` and status [`STATUS_FATAL`].
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)*) => {{
        $crate::println!("xenpv-rt: fatal: {}", format_args!($($arg)*));
        $crate::exit::exit($crate::exit::STATUS_FATAL)
    }};
}
