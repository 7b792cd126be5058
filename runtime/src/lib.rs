//! xenpv-rt: start of day for 64-bit paravirtualized Xen unikernels.
//!
//! An application is a `#![no_std] #![no_main]` binary that names its entry with
//! [`entry!`] and passes the runtime's link arguments on from its build script (see the
//! README). The runtime owns everything before `main`: ELF notes, `_start`, hypercalls,
//! start_info, the console and paging.
#![cfg_attr(not(test), no_std)]

pub mod cmdline;
pub mod console;
pub mod defmt_log;
pub mod errno;
pub mod evtchn;
pub mod exit;
pub mod gnttab;
pub mod initrd;
pub mod mm;
pub mod ring;
pub mod start_info;
pub mod time;
pub mod xenstore;

#[cfg(all(feature = "rt", not(test)))]
mod boot;
#[cfg(all(feature = "rt", not(test)))]
mod entry;
#[cfg(all(feature = "rt", not(test)))]
pub mod hypercall;
#[cfg(all(feature = "rt", not(test)))]
mod libc;
#[cfg(all(feature = "rt", not(test)))]
mod panic;

pub use cmdline::Cmdline;
/// The application's defmt macros, for apps that do not depend on defmt themselves.
#[cfg(feature = "defmt")]
pub use defmt;
pub use start_info::StartInfo;

/// This runtime's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the runtime hands the application's `main`.
#[cfg(all(feature = "rt", not(test)))]
pub struct Boot {
    start_info: StartInfo,
    memory: mm::setup::Memory,
    timing: Timing,
    xenstore: Option<xenstore::Xenstore<ring::PageLink>>,
}

/// When start of day happened (TSC values; [`Timing::ns`] converts with Xen's clock).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// First thing `xenpv_rt_start` does (on the runtime's stack, .bss zeroed).
    pub entry_tsc: u64,
    /// Paging takeover started / finished (frame allocator up).
    pub takeover_tsc: u64,
    pub takeover_end_tsc: u64,
    /// Just before the application's `main`.
    pub main_tsc: u64,
}

#[cfg(all(feature = "rt", not(test)))]
impl Timing {
    /// Nanoseconds of Xen system time between two TSC values.
    pub fn ns(from: u64, to: u64) -> u64 {
        let c = time::clock();
        c.at(to).saturating_sub(c.at(from))
    }
    pub fn entry_to_main_ns(&self) -> u64 {
        Self::ns(self.entry_tsc, self.main_tsc)
    }
    pub fn takeover_ns(&self) -> u64 {
        Self::ns(self.takeover_tsc, self.takeover_end_tsc)
    }
}

#[cfg(all(feature = "rt", not(test)))]
impl Boot {
    /// The validated start_info.
    pub fn start_info(&self) -> &StartInfo {
        &self.start_info
    }
    /// The guest command line.
    pub fn cmdline(&self) -> Cmdline<'_> {
        Cmdline(self.start_info.cmdline())
    }
    pub fn is_dom0(&self) -> bool {
        self.start_info.is_dom0()
    }
    /// The xenstore client of a domU (`None` for dom0: xenstored is not running when a
    /// dom0 kernel starts, and there is no store page).
    pub fn xenstore(&mut self) -> Option<&mut xenstore::Xenstore<ring::PageLink>> {
        self.xenstore.as_mut()
    }
    /// Start-of-day timestamps.
    pub fn timing(&self) -> Timing {
        self.timing
    }
    /// Paging: frame allocator, tables, the layout report, vmap.
    pub fn memory(&mut self) -> &mut mm::setup::Memory {
        &mut self.memory
    }
    /// The top of the layout report: L4 and level3_kernel slots, and where the initrd is.
    pub fn layout_top(&self) -> mm::setup::TopLevel<'_> {
        let initrd = self.start_info.module.map(|m| match m {
            start_info::Module::Mapped { va, len } => {
                let s = (va - mm::layout::KERNEL_VIRT_BASE) / mm::layout::PAGE_SIZE;
                (s, s + len.div_ceil(mm::layout::PAGE_SIZE))
            }
            start_info::Module::Pfn { pfn, len } => {
                (pfn, pfn + len.div_ceil(mm::layout::PAGE_SIZE))
            }
        });
        mm::setup::TopLevel(&self.memory, initrd)
    }
    /// The initrd's bytes, through the direct map (whichever way Xen handed it over).
    pub fn initrd(&self) -> Option<&[u8]> {
        let m = self.start_info.module?;
        let va = match m {
            start_info::Module::Mapped { va, .. } => {
                mm::layout::DIRECT_MAP_BASE + (va - mm::layout::KERNEL_VIRT_BASE)
            }
            start_info::Module::Pfn { pfn, .. } => mm::layout::direct_map_va(pfn),
        };
        // SAFETY: start_info was validated (the module lies below nr_pages); the takeover
        // direct-maps every pfn and reserves the initrd's frames, so nothing reuses them.
        Some(unsafe { core::slice::from_raw_parts(va as *const u8, m.len() as usize) })
    }
}

/// The image's text and read-only data (`__xenpv_kernel_start..__xenpv_rodata_end`):
/// constant after Xen wrote the hypercall page, so an app can checksum it to prove
/// nothing scribbled over the kernel.
#[cfg(all(feature = "rt", not(test)))]
pub fn image_read_only() -> &'static [u8] {
    extern "C" {
        static __xenpv_kernel_start: u8;
        static __xenpv_rodata_end: u8;
    }
    // SAFETY: linker-script symbols bounding mapped, initialised image sections that the
    // runtime never writes; only their addresses are taken.
    unsafe {
        let s = core::ptr::addr_of!(__xenpv_kernel_start);
        let e = core::ptr::addr_of!(__xenpv_rodata_end);
        core::slice::from_raw_parts(s, e as usize - s as usize)
    }
}

/// Name the application's entry point: `xenpv_rt::entry!(main);` with
/// `fn main(boot: &mut xenpv_rt::Boot) -> i32`. The return value is the exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[export_name = "__xenpv_rt_main"]
        fn __xenpv_rt_main(boot: &mut $crate::Boot) -> i32 {
            let main: fn(&mut $crate::Boot) -> i32 = $main;
            main(boot)
        }
    };
}
