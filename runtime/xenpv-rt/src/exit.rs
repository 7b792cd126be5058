//! Leaving: the exit-status line, then the status itself to whoever is outside.
//!
//! Under QEMU (xtask adds `qemu-exit` to the command line) dom0 writes the status to the
//! isa-debug-exit port 0xf4 and QEMU exits with `(status << 1) | 1`. Otherwise, and if that
//! fails, `SCHEDOP_shutdown` with a reason ([`ShutdownReason::for_exit`]): crash for a
//! non-zero status; for 0, what the toolstack asked for ([`request_reason`]: reboot after
//! `xl reboot`, …), else poweroff — which is what `xl` reports on a real Xen host and acts
//! on (`on_reboot`, …). The port write is opt-in: on real hardware port 0xf4 is not ours
//! to poke.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
pub use xenpv_contract::status::{clamp_status, STATUS_FATAL, STATUS_MAX, STATUS_PANIC};
use xenpv_contract::status::{exit_line, EXIT_LINE};
pub use xenpv_protocol::xenbus::ShutdownReason;

static QEMU_EXIT: AtomicBool = AtomicBool::new(false);

/// Deliver statuses through QEMU's isa-debug-exit port (dom0 under QEMU only).
pub fn enable_qemu_exit(on: bool) {
    QEMU_EXIT.store(on, Ordering::Relaxed);
}

/// The reason a toolstack request asked for ([`NO_REQUEST`] until one did).
static REQUESTED: AtomicU32 = AtomicU32::new(NO_REQUEST);
const NO_REQUEST: u32 = u32::MAX;

/// A toolstack request decided how the guest ends: a status-0 exit from now on ends with
/// `reason` (`SCHEDOP_shutdown`), said in the line `xenpv-rt: shutdown reason=R` before
/// the exit line. The first call wins (a guest stops for its first request).
pub fn request_reason(reason: ShutdownReason) {
    let _ = REQUESTED.compare_exchange(
        NO_REQUEST,
        reason.code(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// The reason asked for, if a request came.
fn requested() -> Option<ShutdownReason> {
    let code = REQUESTED.load(Ordering::Relaxed);
    [
        ShutdownReason::Poweroff,
        ShutdownReason::Reboot,
        ShutdownReason::Crash,
    ]
    .into_iter()
    .find(|r| r.code() == code)
}

/// xenstore losses the runtime learned of (events dropped, stale replies discarded), for
/// the report at exit.
static XENSTORE_LOSSES: [core::sync::atomic::AtomicU64; 2] = [
    core::sync::atomic::AtomicU64::new(0),
    core::sync::atomic::AtomicU64::new(0),
];

/// Note the xenstore client's counts for the loss report at exit.
pub(crate) fn note_xenstore(events_dropped: u64, stale_replies: u64) {
    XENSTORE_LOSSES[0].store(events_dropped, Ordering::Relaxed);
    XENSTORE_LOSSES[1].store(stale_replies, Ordering::Relaxed);
}

/// One line naming everything that was lost on the way, if anything was: console bytes
/// that never reached the backend, defmt frames dropped, xenstore watch events dropped
/// and stale replies discarded. Nothing is lost silently.
fn report_losses() {
    let console = crate::console::ring::lost_bytes();
    #[cfg(feature = "defmt")]
    let defmt = crate::defmt_log::dropped_frames();
    #[cfg(not(feature = "defmt"))]
    let defmt = 0;
    let events = XENSTORE_LOSSES[0].load(Ordering::Relaxed);
    let stale = XENSTORE_LOSSES[1].load(Ordering::Relaxed);
    if console > 0 || defmt > 0 || events > 0 || stale > 0 {
        crate::println!(
            "xenpv-rt: losses: console_bytes={console} defmt_frames={defmt} xenstore_events={events} xenstore_stale_replies={stale}"
        );
    }
}

/// The deepest the boot stack went: bytes from its top to the lowest word written
/// (the stack is in .bss, zeroed at entry; a word that stayed zero counts as unused).
pub fn boot_stack_used() -> usize {
    extern "C" {
        static xenpv_boot_stack_bottom: u8;
        static xenpv_boot_stack_top: u8;
    }
    let bottom = core::ptr::addr_of!(xenpv_boot_stack_bottom) as usize;
    let top = core::ptr::addr_of!(xenpv_boot_stack_top) as usize;
    let mut at = bottom;
    while at < top {
        // SAFETY: `at` lies in the boot stack (bottom..top), mapped read-write; volatile
        // so the scan reads memory rather than assumptions.
        if unsafe { (at as *const u64).read_volatile() } != 0 {
            break;
        }
        at += 8;
    }
    top - at
}

/// Print the exit line and stop the guest with `status` (the reason: see the module).
pub fn exit(status: i32) -> ! {
    leave(status, None)
}

/// Print the exit line and end with `reason` whatever was requested (status 0 with
/// [`ShutdownReason::Reboot`]: the toolstack restarts the domain under
/// `on_reboot = "restart"`).
pub fn exit_with(status: i32, reason: ShutdownReason) -> ! {
    leave(status, Some(reason))
}

fn leave(status: i32, forced: Option<ShutdownReason>) -> ! {
    crate::debug!(
        "boot stack: {} KiB used of {} KiB",
        boot_stack_used() / 1024,
        crate::entry::BOOT_STACK_BYTES / 1024
    );
    report_losses();
    let (st, clamped) = clamp_status(status);
    if clamped {
        crate::println!("{EXIT_LINE} {status} is outside 0..={STATUS_MAX}; reporting {st}");
    }
    let reason = forced.unwrap_or_else(|| ShutdownReason::for_exit(st, requested()));
    // Said when someone chose it (a toolstack request, or the caller): a plain exit's
    // reason follows from its status.
    if forced.is_some() || requested().is_some() {
        crate::println!("xenpv-rt: shutdown reason={}", reason.as_str());
    }
    crate::println!("{}", exit_line(st));
    deliver_as(st, reason)
}

/// Stop with `status` without printing (the panic path prints unlocked itself): crash
/// for a non-zero status, else the requested reason or poweroff.
pub fn deliver(status: i32) -> ! {
    deliver_as(status, ShutdownReason::for_exit(status, requested()))
}

/// Stop with `status` (QEMU's exit port, if enabled) and `reason` (`SCHEDOP_shutdown`).
fn deliver_as(status: i32, reason: ShutdownReason) -> ! {
    use crate::hypercall;
    if QEMU_EXIT.load(Ordering::Relaxed) && hypercall::set_iopl(3).is_ok() {
        // SAFETY: iopl 3 was granted; port 0xf4 is QEMU's isa-debug-exit (opted in).
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") status as u32,
                             options(nomem, nostack, preserves_flags));
        }
    }
    let _ = hypercall::shutdown(reason.code());
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
