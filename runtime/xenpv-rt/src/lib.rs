//! xenpv-rt: a runtime for unikernels that run as 64-bit paravirtualized (PV) guests on
//! Xen.
//!
//! An application is a `#![no_std] #![no_main]` binary for the host triple (stable Rust,
//! no build-std) that names its entry with [`entry!`] and passes the runtime's link
//! arguments on from its build script. The runtime owns everything before `main`: the ELF
//! notes Xen's domain builder reads, `_start`, hypercalls, a validated start_info, the
//! console, and paging — it takes over Xen's boot page tables and builds a Linux-style
//! layout of its own (drawn in [`mm::layout`]).
//!
//! # Boot and print
//!
//! ```no_run
//! #![no_std]
//! #![no_main]
//!
//! xenpv_rt::entry!(main);
//!
//! fn main(boot: &mut xenpv_rt::Boot) -> i32 {
//!     xenpv_rt::println!("hello: {} pages, dom0: {}", boot.start_info().nr_pages, boot.is_dom0());
//!     if boot.cmdline().has("fail") {
//!         return 3; // the guest's exit status
//!     }
//!     0
//! }
//! ```
//!
//! with a build script (`build.rs`) whose `main` hands the link arguments on (the linker
//! script, static and non-PIE, no C start files; this crate sets `links = "xenpv-rt"`, so
//! cargo passes them to the application's build script as `DEP_XENPV_RT_LINK_ARGS`):
//!
//! ```no_run
//! let args = std::env::var("DEP_XENPV_RT_LINK_ARGS").unwrap();
//! for arg in args.split_whitespace() {
//!     println!("cargo:rustc-link-arg-bins={arg}");
//! }
//! ```
//!
//! # vmalloc
//!
//! Fresh frames mapped in module space, read-write, NX, with an unmapped guard page after;
//! errors are values ([`mm::VmapError`]), never an overwrite.
//!
//! ```no_run
//! # fn f(boot: &mut xenpv_rt::Boot) -> Result<(), xenpv_rt::mm::VmapError<xenpv_paging::exec::ExecError>> {
//! let mut area = boot.memory().vmalloc(3 << 20)?;
//! area.as_mut_slice().fill(0x5a5a);
//! boot.memory().vfree(area)?;
//! # Ok(()) }
//! ```
//!
//! # A timer
//!
//! Events are never delivered asynchronously: the runtime waits in `SCHEDOP_poll` and
//! reads pending bits at those points (see [`evtchn`]).
//!
//! ```no_run
//! # fn f() -> Result<(), xenpv_rt::evtchn::EvtchnError> {
//! use xenpv_rt::{evtchn::Timer, time::now_ns};
//! let timer = Timer::new()?;
//! timer.set(now_ns() + 1_000_000)?; // 1 ms from now
//! let fired = timer.wait(now_ns() + 1_000_000_000)?; // give up after 1 s
//! # let _ = fired; Ok(()) }
//! ```
//!
//! # A grant
//!
//! ```no_run
//! # fn f(boot: &mut xenpv_rt::Boot) -> Result<(), xenpv_rt::gnttab::GntError> {
//! use xenpv_rt::{gnttab::GrantTable, shared_page::SharedPage};
//! let mut gt = GrantTable::setup(boot.memory(), 1)?;
//! let page = SharedPage::alloc(boot.memory()).expect("a free frame");
//! let granted = gt.grant(0, page, true).map_err(|(_, e)| e)?; // dom0 may read it
//! let gref = granted.gref(); // what dom0 is told
//! match gt.end(granted) {
//!     Ok(page) => page.free(boot.memory()), // the page is ours again
//!     // dom0 still has it mapped: the page waits in the deferred list
//!     // (`gt.retry_deferred` frees it once dom0 lets go).
//!     Err((granted, _)) => gt.defer(granted),
//! }
//! # Ok(()) }
//! ```
//!
//! # xenstore (a domU)
//!
//! ```no_run
//! # fn f(boot: &mut xenpv_rt::Boot) -> Result<(), xenpv_rt::xenstore::XsError> {
//! if let Some(xs) = boot.xenstore() {
//!     let name = xs.read("name")?;
//!     xs.write("data/status", b"running")?;
//!     xenpv_rt::println!("I am {}", core::str::from_utf8(&name).unwrap_or("?"));
//! }
//! # Ok(()) }
//! ```
//!
//! # Output
//!
//! [`println!`] and the levelled [`error!`], [`warn!`], [`info!`] and [`debug!`] go to
//! the guest's console: Xen's `console_io` for dom0 (its serial line), the ring console
//! that xenconsoled serves for a domU ([`console::ring`]). With the `defmt` feature
//! (default) the runtime is also defmt's global logger, one frame per console line.
//!
//! With the `log` feature it is also the backend of the `log` facade (0.4, re-exported
//! as `xenpv_rt::log`), installed before `main`: crates that log through `log` (smoltcp's
//! `log` feature, say) print `LEVEL target: message` lines, up to the level `log=` names
//! on the command line (`off`, `error`, `warn`, `info`, `debug`, `trace`; default
//! `info`).
//!
//! [`console::Console`] is the console as an [`embedded_io::Write`] (re-exported as
//! `xenpv_rt::embedded_io`): unbuffered, each write in order, errors reported. Files on
//! a disk are [`embedded_io::Read`] + [`embedded_io::Seek`] too (feature `fs`:
//! `blk::ext4::Ext4File`).
//!
//! # `alloc::format!` and the rest of liballoc
//!
//! With the `alloc` feature, `alloc::format!`, `to_string()` and `write!` into a `String`
//! all work. Stable Rust's liballoc comes precompiled with `panic=unwind`, so some of its
//! functions (`format!`'s among them) carry landing pads that call `_Unwind_Resume`;
//! guests are `panic=abort` and never unwind, so the runtime defines that symbol as a
//! fatal stop no landing pad can reach, and those functions link.
//!
//! ```no_run
//! #![no_std]
//! #![no_main]
//! extern crate alloc;
//! use xenpv_rt::log; // or the `log` crate itself (0.4)
//!
//! xenpv_rt::entry!(main);
//!
//! fn main(boot: &mut xenpv_rt::Boot) -> i32 {
//!     let pages = alloc::format!("{} pages", boot.start_info().nr_pages);
//!     xenpv_rt::println!("{pages}");
//!     log::info!("booted with {pages}"); // INFO  my_app: booted with 65536 pages
//!     log::debug!(target: "net", "shown with log=debug on the command line");
//!     0
//! }
//! ```
//!
//! # Exit status
//!
//! `main`'s return value is the guest's exit status ([`exit`]); a panic exits with
//! [`exit::STATUS_PANIC`] and a start-of-day refusal ([`fatal!`]) with
//! [`exit::STATUS_FATAL`].
//!
//! # Crates
//!
//! The decisions live in pure, host-tested crates that this one re-exports where an
//! application needs them: `xenpv-paging` (the paging planners, re-exported under
//! [`mm`]), `xenpv-protocol` (rings, xenstore, grants, start_info...: [`ring`],
//! [`xenstore`], [`start_info`], [`cmdline`], [`initrd`]), `xenpv-abi` (typed frames,
//! Xen's errors: [`Mfn`], [`Pfn`], [`Maddr`], [`XenError`]).
#![no_std]

#[cfg(feature = "async")]
pub mod balloon;
pub mod blk;
mod boot;
pub mod console;
#[cfg(feature = "defmt")]
mod defmt_log;
#[cfg(feature = "async")]
pub mod device;
mod entry;
pub mod evtchn;
#[cfg(feature = "async")]
pub mod exec;
pub mod exit;
pub mod frontend;
pub mod gnttab;
#[cfg(feature = "alloc")]
pub mod heap;
// Only the `net` modules name `alloc::` today: with `alloc` alone (`fs`, say) the crate
// is unused, which must not warn in a consumer's build.
#[cfg(feature = "alloc")]
#[allow(unused_extern_crates)]
extern crate alloc;
pub mod hypercall;
mod libc;
#[cfg(feature = "log")]
mod log_console;
#[cfg(feature = "async")]
pub mod metrics;
pub mod mm;
pub mod net;
// `cargo clippy --all-targets` also checks the library as a test crate (cargo passes
// `--test` for it even with `test = false`), which links std and std's panic handler; so
// does a consumer's host test with a std crate in the graph (feature `host`).
#[cfg(not(any(test, feature = "host")))]
mod panic;
mod ring_page;
#[cfg(feature = "async")]
pub mod runtime;
pub mod shared_page;
pub mod suspend;
pub mod time;
#[cfg(any(feature = "async", feature = "net"))]
pub mod time_driver;
mod traps;

pub use ring_page::PageLink;
pub use xenpv_abi::{Maddr, Mfn, Pfn, XenError};
pub use xenpv_contract::initrd;
pub use xenpv_protocol::{cmdline, escape, ring, start_info, xenbus, xenstore};

pub use cmdline::Cmdline;
#[cfg(feature = "async")]
pub use runtime::{Runtime, ShutdownRequest, SHUTDOWN_GRACE_NS};
pub use suspend::{epoch, ResumeKind, Resumed};

/// The application's defmt macros, for apps that do not depend on defmt themselves.
#[cfg(feature = "defmt")]
pub use defmt;
/// The blocking I/O traits (0.7) the console and disk files implement, for apps that do
/// not depend on embedded-io themselves.
pub use embedded_io;
/// The `log` facade the runtime is the backend of (feature `log`), for apps that do not
/// depend on `log` themselves.
#[cfg(feature = "log")]
pub use log;
pub use start_info::StartInfo;
/// Async sockets over smoltcp (feature `net`): what [`device::Devices::net`] hands out
/// is a `xenpv_net::Stack`.
#[cfg(feature = "net")]
pub use xenpv_net;

/// This runtime's version (the crate version, e.g. `"0.1.0"`), printed at start of day.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the runtime hands the application's `main` (see [`entry!`]): the validated
/// start_info, paging, the start-of-day timestamps, and a domU's xenstore client.
///
/// Only the runtime builds one, once, after the paging takeover; it lives until `main`
/// returns.
pub struct Boot {
    start_info: StartInfo,
    memory: mm::Memory,
    timing: Timing,
    xenstore: Option<xenstore::Xenstore<PageLink>>,
}

/// When start of day happened (TSC values; [`Timing::ns`] converts them to nanoseconds with
/// Xen's clock).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// First thing `xenpv_rt_start` does (on the runtime's stack, .bss zeroed).
    pub entry_tsc: u64,
    /// Paging takeover started.
    pub takeover_tsc: u64,
    /// Paging takeover finished (the runtime's own tables live, frame allocator up).
    pub takeover_end_tsc: u64,
    /// Just before the application's `main`.
    pub main_tsc: u64,
}

impl Timing {
    /// Nanoseconds of Xen system time between two TSC values (0 if `to` is before
    /// `from`), with vCPU 0's current TSC scale ([`time::clock`]).
    pub fn ns(from: u64, to: u64) -> u64 {
        // The delta scaled, not two points in time: `Clock::at` reads every TSC before
        // Xen's latest stamp as the stamp itself, so once Xen has refreshed the clock
        // (it does, about once a second) two earlier stamps would both read as that
        // instant and the interval as 0.
        time::clock().scale(to.saturating_sub(from))
    }
    /// From `_start`'s first Rust code to just before the application's `main`.
    pub fn entry_to_main_ns(&self) -> u64 {
        Self::ns(self.entry_tsc, self.main_tsc)
    }
    /// How long the paging takeover took.
    pub fn takeover_ns(&self) -> u64 {
        Self::ns(self.takeover_tsc, self.takeover_end_tsc)
    }
}

impl Boot {
    /// The start_info page Xen passed at boot, validated ([`StartInfo::parse`]).
    pub fn start_info(&self) -> &StartInfo {
        &self.start_info
    }
    /// The guest command line (start_info's `cmd_line`: `cmdline=` or `extra=` in an
    /// xl config).
    pub fn cmdline(&self) -> Cmdline<'_> {
        Cmdline(self.start_info.cmdline())
    }
    /// Whether this guest is the initial domain (start_info's `SIF_INITDOMAIN` flag):
    /// dom0 has Xen's console and no xenstore; a domU has ring pages for both.
    pub fn is_dom0(&self) -> bool {
        self.start_info.is_dom0()
    }
    /// The xenstore client of a domU (`None` for dom0: xenstored is not running when a
    /// dom0 kernel starts, and there is no store page).
    pub fn xenstore(&mut self) -> Option<&mut xenstore::Xenstore<PageLink>> {
        self.xenstore.as_mut()
    }
    /// The start_info copy, to update after a resume in a new domain.
    #[cfg(feature = "suspend")]
    pub(crate) fn start_info_mut(&mut self) -> &mut StartInfo {
        &mut self.start_info
    }
    /// Start-of-day timestamps.
    pub fn timing(&self) -> Timing {
        self.timing
    }
    /// Paging as the takeover left it: frame allocator, tables, the layout report,
    /// vmap/vmalloc, the fixmap.
    pub fn memory(&mut self) -> &mut mm::Memory {
        &mut self.memory
    }
    /// Memory and the xenstore client at once (a front-end's setup needs both).
    pub fn memory_and_xenstore(
        &mut self,
    ) -> (&mut mm::Memory, Option<&mut xenstore::Xenstore<PageLink>>) {
        (&mut self.memory, self.xenstore.as_mut())
    }
    /// The top of the layout report: L4 and level3_kernel slots, and where the initrd is
    /// (its `Display` prints the `layout:` lines).
    pub fn layout_top(&self) -> mm::TopLevel<'_> {
        let initrd = self.start_info.module.map(|m| match m {
            start_info::Module::Mapped { va, len } => {
                let s = Pfn((va - mm::layout::KERNEL_VIRT_BASE) / mm::layout::PAGE_SIZE);
                (s, s + len.div_ceil(mm::layout::PAGE_SIZE))
            }
            start_info::Module::Pfn { pfn, len } => {
                (Pfn(pfn), Pfn(pfn + len.div_ceil(mm::layout::PAGE_SIZE)))
            }
        });
        mm::TopLevel(&self.memory, initrd)
    }
    /// The initrd's bytes, through the direct map (whichever way Xen handed it over:
    /// mapped in the boot region, or as a first pfn with the `mod-start-pfn` feature);
    /// `None` if the guest was started without one.
    pub fn initrd(&self) -> Option<&[u8]> {
        let m = self.start_info.module?;
        let va = match m {
            start_info::Module::Mapped { va, .. } => {
                mm::layout::DIRECT_MAP_BASE + (va - mm::layout::KERNEL_VIRT_BASE)
            }
            start_info::Module::Pfn { pfn, .. } => mm::layout::direct_map_va(Pfn(pfn)),
        };
        // SAFETY: start_info was validated (the module lies below nr_pages); the takeover
        // direct-maps every pfn and reserves the initrd's frames, so nothing reuses them.
        Some(unsafe { core::slice::from_raw_parts(va.as_ptr::<u8>(), m.len() as usize) })
    }
}

/// The image's text and read-only data (`__xenpv_kernel_start..__xenpv_rodata_end`):
/// constant after Xen wrote the hypercall page, so an app can checksum it to prove
/// nothing scribbled over the kernel.
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
///
/// It defines the `__xenpv_rt_main` symbol the runtime calls once start of day is done;
/// the function pointer coercion checks `main`'s signature at compile time. Use it once
/// per image (a second use is a duplicate symbol).
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

/// Name the async application's entry (feature `async`): `xenpv_rt::main!(app);` with
/// `async fn app(rt: &'static xenpv_rt::Runtime) -> i32`. The return value is the exit
/// status, as with [`entry!`]; after a shutdown request (`xl shutdown`) the application
/// has [`SHUTDOWN_GRACE_NS`] to return before the runtime closes the devices and exits
/// with status 0 itself.
///
/// ```no_run
/// #![no_std]
/// #![no_main]
/// use xenpv_rt::exec::embassy_time::{Duration, Timer};
///
/// xenpv_rt::main!(app);
///
/// async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
///     xenpv_rt::println!("command line: {}", rt.cmdline().0);
///     Timer::after(Duration::from_millis(5)).await;
///     let why = rt.shutdown().await; // xl shutdown
///     xenpv_rt::println!("stopping: {}", why.as_str());
///     0
/// }
/// ```
///
/// The application's task is an embassy-executor task defined here through the
/// runtime's re-export, so the application needs no dependency on embassy-executor;
/// more tasks can be spawned with [`Runtime::spawner`].
///
/// An image that picks between a synchronous and an async application at run time
/// (the sample app does, by command-line word) defines only the task with
/// `main!(task NAME = app);` and starts it from its [`entry!`] function with
/// [`runtime::main_with`]`(boot, NAME)`.
#[cfg(feature = "async")]
#[macro_export]
macro_rules! main {
    (task $name:ident = $app:path) => {
        #[$crate::exec::task(embassy_executor = $crate::exec::embassy_executor)]
        async fn $name(rt: &'static $crate::Runtime) {
            let status: i32 = $app(rt).await;
            rt.app_returned(status);
        }
    };
    ($app:path) => {
        $crate::main!(task __xenpv_rt_app = $app);
        fn __xenpv_rt_async_main(boot: &mut $crate::Boot) -> i32 {
            $crate::runtime::main_with(boot, __xenpv_rt_app)
        }
        $crate::entry!(__xenpv_rt_async_main);
    };
}
