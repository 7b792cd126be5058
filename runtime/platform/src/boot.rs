//! From `_start` to the application's `main`.

use crate::mm::layout::Split;
use crate::start_info::{self, StartInfo};
use crate::{cmdline::Cmdline, console, exit, Boot};

extern "Rust" {
    /// Defined by the application through [`crate::entry!`].
    fn __xenpv_rt_main(boot: &mut Boot) -> i32;
}

/// Called by `_start` on the runtime's stack with Xen's start_info pointer.
#[no_mangle]
extern "C" fn xenpv_rt_start(si: *const u8) -> ! {
    let entry_tsc = crate::time::rdtsc();
    // SAFETY: Xen passes the virtual address of a mapped start_info page (4 KiB, of which
    // RAW_SIZE bytes are the structure); nothing else writes it while we read.
    let raw = unsafe { core::slice::from_raw_parts(si, start_info::RAW_SIZE) };
    let info = match StartInfo::parse(raw) {
        Ok(info) => info,
        Err(e) => crate::fatal!("start_info refused: {e}"),
    };
    if !info.is_dom0() {
        // Release builds of Xen drop a domU's console_io: hold output for the ring.
        console::ring::expect_ring();
    }
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

    let split = match cmd.value("split").map(|v| (v, Split::parse(v))) {
        None => Split::default(),
        Some((_, Some(split))) => split,
        Some((v, None)) => crate::fatal!("split={v:?}: the kernel/module split is 512M or 1G"),
    };
    let module_space_min = match cmd.u64("modspace") {
        Ok(mib) => mib.unwrap_or(0).saturating_mul(1 << 20),
        Err(e) => crate::fatal!("{e} (module space needed, in MiB)"),
    };
    let batch = match cmd.u64("mmu_batch") {
        Ok(None) => xenpv_paging::exec::MMU_BATCH,
        Ok(Some(n)) if (1..=xenpv_paging::exec::MMU_BATCH as u64).contains(&n) => n as usize,
        Ok(Some(n)) => crate::fatal!(
            "mmu_batch={n}: operations per hypercall must be 1..={}",
            xenpv_paging::exec::MMU_BATCH
        ),
        Err(e) => crate::fatal!("{e} (MMU operations per hypercall)"),
    };
    let takeover_tsc = crate::time::rdtsc();
    let memory = crate::mm::take_over(&info, split, module_space_min, batch);
    let takeover_end_tsc = crate::time::rdtsc();
    #[cfg(feature = "defmt")]
    crate::defmt_log::clock_up();
    if let start_info::ConsoleInfo::DomU { mfn, evtchn } = info.console {
        attach_ring_console(&memory, mfn, evtchn);
    }
    crate::info!(
        "paging: own tables live, split {}, {} PTE updates, {} boot frames reclaimed, {} free frames",
        split.name(),
        memory.outcome.pt_updates,
        memory.outcome.reclaimed,
        memory.frames.free_frames()
    );

    let xenstore =
        (!info.is_dom0()).then(|| attach_xenstore(&memory, info.store_mfn, info.store_evtchn));
    let mut boot = Boot {
        start_info: info,
        xenstore,
        memory,
        timing: crate::Timing {
            entry_tsc,
            takeover_tsc,
            takeover_end_tsc,
            main_tsc: crate::time::rdtsc(),
        },
    };
    // SAFETY: the application defines this symbol with the right signature via entry!.
    let status = unsafe { __xenpv_rt_main(&mut boot) };
    exit::exit(status)
}

/// A shared ring page Xen set up for a domU (`what`: for the refusal), through the
/// direct map: the takeover reserved its frame.
fn shared_page(
    memory: &crate::mm::Memory,
    what: &str,
    mfn: u64,
    evtchn: u32,
    layout: crate::ring::PageLayout,
) -> crate::ring_page::PageLink {
    let (Some(pfn), Ok(port)) = (memory.pfn(xenpv_abi::Mfn(mfn)), crate::evtchn::checked(evtchn)) else {
        crate::fatal!("start_info: {what} ring mfn {mfn:#x} / event channel {evtchn} unusable");
    };
    // SAFETY: the frame is ours (p2m/M2P agree), direct-mapped RW, reserved as a shared
    // ring by the takeover; each ring has one user (the console, or the one Xenstore that
    // Boot holds).
    unsafe { crate::ring_page::PageLink::new(crate::mm::layout::direct_map_va(pfn), layout, port) }
}

/// The domU console ring.
fn attach_ring_console(memory: &crate::mm::Memory, mfn: u64, evtchn: u32) {
    let link = shared_page(memory, "console", mfn, evtchn, crate::ring::CONSOLE_PAGE);
    console::ring::attach(crate::ring::Duplex::new(link));
}

/// A domU's xenstore client.
fn attach_xenstore(
    memory: &crate::mm::Memory,
    mfn: u64,
    evtchn: u32,
) -> crate::xenstore::Xenstore<crate::ring_page::PageLink> {
    let link = shared_page(memory, "xenstore", mfn, evtchn, crate::ring::XENSTORE_PAGE);
    crate::xenstore::Xenstore::new(link)
}
