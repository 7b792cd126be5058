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
    crate::traps::install();
    guard_boot_stack();
    // SAFETY: Xen passes the virtual address of a mapped start_info page (4 KiB, of which
    // RAW_SIZE bytes are the structure); nothing else writes it while we read.
    let raw = unsafe { core::slice::from_raw_parts(si, start_info::RAW_SIZE) };
    if let Some((mfn, evtchn)) = start_info::domu_console(raw) {
        // Release builds of Xen drop a domU's console_io: the ring is the only way out,
        // so it comes first, before any step that can fail.
        console::ring::expect_ring();
        attach_early_console(mfn, evtchn);
    }
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
    #[cfg(feature = "log")]
    crate::log_console::install(&cmd);
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
    #[cfg(feature = "alloc")]
    match cmd.u64("heap") {
        Ok(Some(mib)) => crate::heap::set_limit(mib.saturating_mul(1 << 20)),
        Ok(None) => {}
        Err(e) => crate::fatal!("{e} (the heap's limit, in MiB)"),
    }
    let batch = match cmd.u64("mmu_batch") {
        Ok(None) => xenpv_paging::exec::MMU_BATCH,
        Ok(Some(n)) if (1..=xenpv_paging::exec::MMU_BATCH as u64).contains(&n) => n as usize,
        Ok(Some(n)) => crate::fatal!(
            "mmu_batch={n}: operations per hypercall must be 1..={}",
            xenpv_paging::exec::MMU_BATCH
        ),
        Err(e) => crate::fatal!("{e} (MMU operations per hypercall)"),
    };
    let eager = match cmd.value("direct_map") {
        None | Some("on-demand") => false,
        Some("eager") => true,
        Some(v) => crate::fatal!("direct_map={v:?}: the direct map is on-demand or eager"),
    };
    let pt_write = match cmd
        .value("pt_write")
        .map(|v| (v, crate::mm::PtWrite::parse(v)))
    {
        None => crate::mm::PtWrite::Stores,
        Some((_, Some(w))) => w,
        Some((v, None)) => {
            crate::fatal!("pt_write={v:?}: direct-map L1s are written with stores or mmu")
        }
    };
    let mode = crate::mm::DirectMapMode { eager, pt_write };
    let takeover_tsc = crate::time::rdtsc();
    let memory = crate::mm::take_over(&info, si, split, module_space_min, batch, mode);
    crate::time::mark_ready();
    let takeover_end_tsc = crate::time::rdtsc();
    #[cfg(feature = "defmt")]
    crate::defmt_log::clock_up();
    let direct_map = memory.direct_map();
    crate::info!(
        "paging: own tables live, split {}, {} PTE updates, {} boot frames reclaimed, {} free frames, direct map {} ({} of {} MiB mapped, L1s by {})",
        split.name(),
        memory.mmu_counts().pt_updates,
        memory.outcome().reclaimed,
        memory.frames().free_frames(),
        if eager { "eager" } else { "on-demand" },
        direct_map.mapped_chunks * 2,
        direct_map.chunks * 2,
        pt_write.name()
    );

    let xenstore = match memory.ring_pfns()[0] {
        Some(pfn) => Some(attach_xenstore(pfn, info.store_evtchn)),
        None => None,
    };
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
    if let Some(xs) = boot.xenstore() {
        // Events lost either way: the queue was full, or they were malformed.
        let lost = xs.events_dropped() + xs.malformed_events();
        exit::note_xenstore(lost, xs.stale_replies());
    }
    exit::exit(status)
}

/// Unmap the page below the boot stack now, not only at the takeover: an overflow at
/// any point of start of day then faults there instead of writing over .bss and the
/// image (the takeover keeps the page unmapped).
fn guard_boot_stack() {
    extern "C" {
        static xenpv_boot_stack_guard: u8;
    }
    let va = x86_64::VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_boot_stack_guard));
    if let Err(e) = crate::hypercall::update_va_mapping(va, 0, crate::hypercall::UVMF_INVLPG_LOCAL)
    {
        crate::warn!("boot stack guard page at {va:#x} not unmapped: {e}");
    }
}

/// The domU console ring, mapped at the image's console window page (a page of .bss set
/// aside for it) with `update_va_mapping`: that works before the takeover (the page's PTE
/// is in one of Xen's boot L1s) and stays valid after it (the takeover keeps those L1s
/// for the image and leaves this PTE alone). If Xen refuses (an mfn that is not ours, a
/// bad port) output stays held in the early buffer.
fn attach_early_console(mfn: u64, evtchn: u32) {
    use xenpv_paging::ops::pte;
    extern "C" {
        static xenpv_console_window: u8;
    }
    let Ok(port) = crate::evtchn::checked(evtchn) else {
        return;
    };
    // A symbol of the image's start-of-day assembly: only its address is used.
    let va = x86_64::VirtAddr::from_ptr(core::ptr::addr_of!(xenpv_console_window));
    let entry = pte::entry(
        xenpv_abi::Mfn(mfn),
        pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY | pte::NX,
    );
    if crate::hypercall::update_va_mapping(va, entry, crate::hypercall::UVMF_INVLPG_LOCAL).is_err()
    {
        return;
    }
    // SAFETY: `va` now maps the console ring page RW for the guest's lifetime (nothing
    // else maps or uses the window page), and the console is its one user.
    let link = unsafe { crate::ring_page::PageLink::new(va, crate::ring::CONSOLE_PAGE, port) };
    console::ring::attach(link);
}

/// A domU's xenstore client, over the store ring's frame (found in the p2m and reserved
/// by the takeover).
fn attach_xenstore(
    pfn: xenpv_abi::Pfn,
    evtchn: u32,
) -> crate::xenstore::Xenstore<crate::ring_page::PageLink> {
    let Ok(port) = crate::evtchn::checked(evtchn) else {
        crate::fatal!("start_info: store_evtchn {evtchn} is not a port");
    };
    // SAFETY: the frame is ours (found in the p2m), direct-mapped RW and reserved as a
    // shared ring by the takeover; the one Xenstore that Boot holds is its only user.
    let link = unsafe {
        crate::ring_page::PageLink::new(
            crate::mm::layout::direct_map_va(pfn),
            crate::ring::XENSTORE_PAGE,
            port,
        )
    };
    crate::xenstore::Xenstore::new(link)
}
