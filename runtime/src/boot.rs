//! From `_start` to the application's `main`.

use crate::start_info::{self, StartInfo};
use crate::{cmdline::Cmdline, console, exit, Boot};

extern "Rust" {
    /// Defined by the application through [`crate::entry!`].
    fn __xenpv_rt_main(boot: &mut Boot) -> i32;
}

/// Called by `_start` on the runtime's stack with Xen's start_info pointer.
#[no_mangle]
extern "C" fn xenpv_rt_start(si: *const u8) -> ! {
    // SAFETY: Xen passes the virtual address of a mapped start_info page (4 KiB, of which
    // RAW_SIZE bytes are the structure); nothing else writes it while we read.
    let raw = unsafe { core::slice::from_raw_parts(si, start_info::RAW_SIZE) };
    let info = match StartInfo::parse(raw) {
        Ok(info) => info,
        Err(e) => crate::fatal!("start_info refused: {e}"),
    };
    let cmd = Cmdline(info.cmdline());
    exit::enable_qemu_exit(info.is_dom0() && cmd.has("qemu-exit"));
    if let Some(l) = cmd.value("loglevel") {
        match console::Level::parse(l) {
            Some(level) => console::set_max_level(level),
            None => crate::warn!("loglevel={l:?} is not error|warn|info|debug; keeping info"),
        }
    }
    let (major, minor) = crate::hypercall::xen_version();
    crate::info!("xenpv-rt {} on Xen {major}.{minor}", crate::VERSION);
    if info.unknown_flags() != 0 {
        crate::warn!(
            "start_info flags {:#x} carry bits this runtime does not know",
            info.unknown_flags()
        );
    }

    let mut boot = Boot { start_info: info };
    // SAFETY: the application defines this symbol with the right signature via entry!.
    let status = unsafe { __xenpv_rt_main(&mut boot) };
    exit::exit(status)
}
