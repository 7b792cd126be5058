//! Hypercalls through the hypercall page, with Xen's x86-64 argument registers.
//!
//! A 64-bit PV guest calls Xen through the hypercall page (ELF note `HYPERCALL_PAGE`),
//! which Xen fills with one 32-byte trampoline per hypercall number: hypercall `nr` is a
//! `call` to `HYPERCALL_PAGE + nr * 32` with the arguments in %rdi, %rsi, %rdx, %r10 and
//! %r8 and the result in %rax (negative: a Xen errno, see [`XenError`]).
//!
//! We use `xen-sys` for ABI types and constants but not for its call stubs: they mark a
//! `call` as `nostack` (the trampoline pushes into the caller's red zone), pass the fifth
//! argument in %r9 where Xen expects %r8, and its `sched_op` passes the shutdown reason by
//! value where `__HYPERVISOR_sched_op` takes a pointer. `xenpv_hypercall` (in the
//! runtime's start-of-day assembly) is a real function, so the compiler never keeps data
//! below %rsp across it.
//!
//! `raw` (crate-private) is the one unsafe entry; the other functions here are wrappers for the calls
//! the runtime makes, named after the hypercall (numbers and structures from Xen's
//! `xen/include/public/xen.h`, `sched.h`, `event_channel.h`, `grant_table.h`,
//! `physdev.h`, `vcpu.h`, `version.h`). They are safe functions, but several of them
//! change this guest's page tables or let Xen write through a pointer: their docs say
//! what a caller must not do with them.

use xen_sys as xen;
use xenpv_abi::XenError;

extern "C" {
    fn xenpv_hypercall(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
}

/// Issue hypercall `nr` (a `__HYPERVISOR_*` number from `xen.h`) with up to five
/// arguments, unused ones 0. Returns Xen's result as is: negative values are Xen errnos.
///
/// # Safety
/// The arguments must be what hypercall `nr` expects: pointers must point to live,
/// correctly typed memory for the duration of the call, and whatever the hypercall does
/// to this guest (page-table updates, writes through those pointers) must not break
/// anything Rust code relies on.
pub(crate) unsafe fn raw(nr: u32, a: [u64; 5]) -> i64 {
    // SAFETY: the arguments are the caller's contract; xenpv_hypercall is a SysV function
    // (callee-saved registers kept, only %rax returned).
    unsafe { xenpv_hypercall(nr as u64, a[0], a[1], a[2], a[3], a[4]) }
}

/// A hypercall's return value: negative is an error, anything else is the result.
fn check(rc: i64) -> Result<i64, XenError> {
    if rc < 0 {
        Err(XenError(rc))
    } else {
        Ok(rc)
    }
}

/// `console_io(cmd, len, buf)` (`__HYPERVISOR_console_io`, 18).
///
/// # Safety
/// `buf` must be valid for `len` bytes of what `cmd` does with it (read for write, written
/// for read).
unsafe fn console_io(cmd: u32, len: usize, buf: u64) -> Result<i64, XenError> {
    // SAFETY: console_io takes (cmd, count, buffer) and touches only `len` bytes at `buf`,
    // which the caller's contract makes valid for what `cmd` does.
    check(unsafe {
        raw(
            xen::__HYPERVISOR_console_io,
            [cmd as u64, len as u64, buf, 0, 0],
        )
    })
}

/// `console_io(CONSOLEIO_write)`: write `bytes` to Xen's own console (the serial line for
/// dom0).
///
/// Xen accepts this from dom0; release builds of Xen refuse it for a domU (whose output
/// goes to its ring console instead, see [`console::ring`](crate::console::ring)).
pub fn console_write(bytes: &[u8]) -> Result<(), XenError> {
    // SAFETY: Xen reads `len` bytes from a live slice.
    unsafe { console_io(xen::CONSOLEIO_write, bytes.len(), bytes.as_ptr() as u64) }.map(|_| ())
}

/// `console_io(CONSOLEIO_read)`: input typed on Xen's console, without blocking; returns
/// the number of bytes put into `buf` (0 if nothing was typed). Only dom0 may read.
pub fn console_read(buf: &mut [u8]) -> Result<usize, XenError> {
    // SAFETY: Xen writes at most `len` bytes into a live, exclusively borrowed slice.
    unsafe { console_io(xen::CONSOLEIO_read, buf.len(), buf.as_mut_ptr() as u64) }
        .map(|n| (n as usize).min(buf.len()))
}

/// `sched_op(SCHEDOP_shutdown, &sched_shutdown)`: stop this domain for `reason` (a
/// `SHUTDOWN_*` code from `sched.h`: 0 poweroff, 1 reboot, 2 suspend, 3 crash).
///
/// Returns only if Xen refused, with the error (`-1` if Xen returned a non-negative
/// value without shutting the domain down).
pub fn shutdown(reason: u32) -> XenError {
    let arg = xenpv_abi::args::SchedShutdown { reason };
    // SAFETY: sched_op(SCHEDOP_shutdown, &sched_shutdown) reads one u32 from `arg`, which
    // lives on this stack frame for the whole call.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_sched_op,
            [
                xen::SCHEDOP_shutdown as u64,
                &arg as *const _ as u64,
                0,
                0,
                0,
            ],
        )
    };
    XenError(if rc < 0 { rc } else { -1 })
}

/// `sched_op(SCHEDOP_shutdown, &{SHUTDOWN_suspend})` with rdx = `start_info`, the
/// machine frame of the start_info page (`sched.h`): suspend this domain for a save.
/// Returns in the domain that goes on: 0 in a new domain (restored or migrated; Xen
/// rewrote start_info there), 1 if the save was cancelled or was a checkpoint (the same
/// domain, nothing changed: the toolstack's fast resume, which needs
/// `XEN_ELFNOTE_SUSPEND_CANCEL`), negative if Xen refused (nothing happened).
///
/// Only the runtime's suspend sequence may call it: shared_info and the grant frames
/// must be unmapped, the store and console frames turned into PFNs, and the p2m
/// published, or the save fails (or the restore silently drops a page table).
#[cfg(feature = "suspend")]
pub(crate) fn suspend(start_info: xenpv_abi::Mfn) -> i64 {
    const SHUTDOWN_SUSPEND: u32 = 2;
    let arg = xenpv_abi::args::SchedShutdown {
        reason: SHUTDOWN_SUSPEND,
    };
    // SAFETY: sched_op(SCHEDOP_shutdown, &sched_shutdown, mfn) reads one u32 from `arg`,
    // live on this frame for the call; the third argument is a frame number, not
    // dereferenced by us. What the suspend does to the guest is the caller's (see doc).
    unsafe {
        raw(
            xen::__HYPERVISOR_sched_op,
            [
                xen::SCHEDOP_shutdown as u64,
                &arg as *const _ as u64,
                start_info.0,
                0,
                0,
            ],
        )
    }
}

/// `physdev_op(PHYSDEVOP_set_iopl, &physdev_set_iopl)` (`physdev.h`): set this vCPU's
/// virtual I/O privilege level. A 64-bit PV kernel runs in ring 3, so `iopl` 3 is what
/// lets it execute `in`/`out`: Xen then emulates each one on ports the domain may access
/// (dom0 has nearly all of them).
pub fn set_iopl(iopl: u32) -> Result<(), XenError> {
    use xenpv_abi::args::{PhysdevSetIopl, PHYSDEVOP_SET_IOPL};
    let arg = PhysdevSetIopl { iopl };
    // SAFETY: physdev_op(PHYSDEVOP_set_iopl, &physdev_set_iopl) reads one u32 from `arg`,
    // live on this stack frame; changing the IOPL touches no memory.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_physdev_op,
            [PHYSDEVOP_SET_IOPL, &arg as *const _ as u64, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `mmu_update(reqs, count, &done, DOMID_SELF)` (`__HYPERVISOR_mmu_update`, 1): write
/// page-table entries by machine address (`struct mmu_update`: `ptr` is the entry's
/// machine address with the command in its low bits, `val` the new entry). Xen validates
/// each entry against the frame's type and refcounts before writing it.
///
/// On failure, also says how many of the requests were done before the failing one.
///
/// This is a safe function, but remapping memory that Rust code still references
/// (through the kernel map, the direct map or a [`VmArea`](crate::mm::VmArea)) breaks
/// memory safety: the runtime only passes the planners' operations in `xenpv_paging`.
pub(crate) fn mmu_update(reqs: &[xen::mmu_update]) -> Result<(), (XenError, usize)> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `reqs.len()` mmu_update structs from the live slice and writes the
    // u32 `done` on this frame; what the updates map is the caller's (see the doc).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_mmu_update,
            [
                reqs.as_ptr() as u64,
                reqs.len() as u64,
                &mut done as *mut u32 as u64,
                DOMID_SELF,
                0,
            ],
        )
    };
    check(rc).map(|_| ()).map_err(|e| (e, done as usize))
}

/// `mmuext_op(ops, count, &done, DOMID_SELF)` (`__HYPERVISOR_mmuext_op`, 26): the
/// extended MMU operations of `struct mmuext_op` — pin or unpin a page-table frame, load a
/// new base table (`MMUEXT_NEW_BASEPTR`, the PV `mov cr3`), flush the TLB or one address.
///
/// On failure, also says how many of the operations were done before the failing one.
///
/// Safe to call, but like [`mmu_update`] it can change what addresses map: the runtime
/// only passes the planners' operations.
pub(crate) fn mmuext_op(ops: &[xen::mmuext_op]) -> Result<(), (XenError, usize)> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `ops.len()` mmuext_op structs from the live slice and writes the
    // u32 `done` on this frame; what the operations change is the caller's (see the doc).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_mmuext_op,
            [
                ops.as_ptr() as u64,
                ops.len() as u64,
                &mut done as *mut u32 as u64,
                DOMID_SELF,
                0,
            ],
        )
    };
    check(rc).map(|_| ()).map_err(|e| (e, done as usize))
}

/// `multicall(calls, 2)` (`__HYPERVISOR_multicall`, 13, with two `struct
/// multicall_entry`) of an `mmu_update` batch followed by an `mmuext_op` batch: one
/// guest/Xen round trip for both (Linux's `xen_mc_batch` does the same). Xen runs every
/// entry whatever an earlier one returned, so callers only put operations after the
/// updates that are harmless if those failed (TLB flushes). On failure, says which
/// operation of the two batches (counted together, updates first) failed.
///
/// Safe to call, with the same caveat as [`mmu_update`] and [`mmuext_op`].
pub(crate) fn mmu_update_then_ext(
    reqs: &[xen::mmu_update],
    ops: &[xen::mmuext_op],
) -> Result<(), (XenError, usize)> {
    let (mut done_u, mut done_e): (u32, u32) = (0, 0);
    // An entry taking (requests, count, &done, DOMID_SELF), as both of these do.
    let entry = |op: u32, reqs: u64, len: usize, done: &mut u32| xen::multicall_entry {
        op: op as u64,
        result: 0,
        args: [reqs, len as u64, done as *mut u32 as u64, DOMID_SELF, 0, 0],
    };
    let mut calls = [
        entry(
            xen::__HYPERVISOR_mmu_update,
            reqs.as_ptr() as u64,
            reqs.len(),
            &mut done_u,
        ),
        entry(
            xen::__HYPERVISOR_mmuext_op,
            ops.as_ptr() as u64,
            ops.len(),
            &mut done_e,
        ),
    ];
    // SAFETY: Xen reads the two entries and, through them, the request arrays (live for
    // the call), and writes each entry's result and the two u32 done counts on this
    // frame; what the operations map is the caller's (see the doc).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_multicall,
            [calls.as_mut_ptr() as u64, 2, 0, 0, 0],
        )
    };
    check(rc).map_err(|e| (e, 0))?;
    check(calls[0].result as i64).map_err(|e| (e, done_u as usize))?;
    check(calls[1].result as i64).map_err(|e| (e, reqs.len() + done_e as usize))?;
    Ok(())
}

/// `update_va_mapping(va, val, flags)` (`__HYPERVISOR_update_va_mapping`, 14): set the
/// L1 entry that maps `va` in the current page tables to `val`, then flush as `flags`
/// says (`UVMF_*`, e.g. [`UVMF_INVLPG_LOCAL`]).
///
/// Safe to call, but remapping or unmapping a page that Rust code still references breaks
/// memory safety.
pub(crate) fn update_va_mapping(
    va: x86_64::VirtAddr,
    val: u64,
    flags: u64,
) -> Result<(), XenError> {
    // SAFETY: no pointers are passed; Xen validates the new entry, and what it maps at
    // `va` is the caller's (see the doc).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_update_va_mapping,
            [va.as_u64(), val, flags, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `DOMID_SELF` (0x7ff0, `xen.h`): "the calling domain" wherever a hypercall takes a
/// domain id.
pub const DOMID_SELF: u64 = 0x7ff0;
/// `UVMF_INVLPG | UVMF_LOCAL` (2 | 0, `xen.h`): after `update_va_mapping`, flush that
/// one address from this vCPU's TLB.
pub const UVMF_INVLPG_LOCAL: u64 = 2;

/// `xen_version(XENVER_version, NULL)` (`__HYPERVISOR_xen_version`, 17, `version.h`):
/// Xen's `(major, minor)` version (Xen returns `major << 16 | minor`).
pub fn xen_version() -> (u32, u32) {
    // SAFETY: XENVER_version (0) takes no argument (NULL) and changes nothing.
    let v = unsafe { raw(xen::__HYPERVISOR_xen_version, [0, 0, 0, 0, 0]) };
    ((v >> 16) as u32 & 0xffff, v as u32 & 0xffff)
}

/// `event_channel_op(cmd, arg)` (`__HYPERVISOR_event_channel_op`, 32): `cmd` is an
/// `EVTCHNOP_*` number from `event_channel.h` and `arg` its struct (`evtchn_send` for
/// `EVTCHNOP_send`, ...), read and written by Xen.
///
/// Xen takes the struct's size from `cmd`, not from `T`: `T` must be exactly the struct
/// `cmd` takes, or Xen reads and writes past `arg`. This function is safe and cannot check
/// that; use the typed wrappers in [`evtchn`](crate::evtchn), which pair them.
pub(crate) fn event_channel_op<T>(cmd: u32, arg: &mut T) -> Result<(), XenError> {
    // SAFETY: `arg` is live and exclusively borrowed for the call; that `T` is the struct
    // `cmd` takes is up to the caller (see the doc; the wrappers in `evtchn` pair them).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_event_channel_op,
            [cmd as u64, arg as *mut T as u64, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `set_timer_op(deadline)` (`__HYPERVISOR_set_timer_op`, 15): a one-shot `VIRQ_TIMER`
/// on this vCPU at Xen system time `deadline_ns` (0 cancels; a deadline already past
/// fires right away). Replaces any earlier one-shot deadline. Xen's time, not the
/// guest's: after a resume in a new domain they differ; [`evtchn::Timer`](crate::evtchn::Timer)
/// converts.
pub fn set_timer_op(deadline_ns: u64) -> Result<(), XenError> {
    // SAFETY: no pointers; arming the timer touches no guest memory.
    let rc = unsafe { raw(xen::__HYPERVISOR_set_timer_op, [deadline_ns, 0, 0, 0, 0]) };
    check(rc).map(|_| ())
}

/// `memory_op(XENMEM_maximum_ram_page)` (`__HYPERVISOR_memory_op`, 12, `memory.h`): the
/// highest machine frame of the host, which bounds the M2P table Xen maps for PV guests.
pub fn maximum_ram_page() -> Result<xenpv_abi::Mfn, XenError> {
    const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
    // SAFETY: XENMEM_maximum_ram_page takes no argument (a NULL pointer) and writes no
    // guest memory; it returns the frame number.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_memory_op,
            [XENMEM_MAXIMUM_RAM_PAGE, 0, 0, 0, 0],
        )
    };
    check(rc).map(|m| xenpv_abi::Mfn(m as u64))
}

/// `memory_op(cmd, &xen_memory_reservation)` over `frames`: the call Xen's
/// `XENMEM_decrease_reservation` (`frames` are mfns to give back) and
/// `XENMEM_populate_physmap` (`frames` are pfns; Xen writes each populated extent's mfn
/// over its pfn) share. Returns the extents Xen did (a prefix of `frames`), as Xen says it:
/// a caller treats the count as hostile (it may be more than asked).
///
/// Safe to call, but giving back a frame that is still mapped or in use, or using a
/// populated one before the p2m and page tables name it, breaks memory safety: the
/// balloon (`crate::balloon`) is the one caller.
#[cfg(feature = "async")]
pub(crate) fn memory_reservation(cmd: u64, frames: &mut [u64]) -> Result<u64, XenError> {
    use xenpv_abi::args::{MemoryReservation, DOMID_SELF};
    let mut arg = MemoryReservation {
        extent_start: frames.as_mut_ptr() as u64,
        nr_extents: frames.len() as u64,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
        pad: [0; 3],
    };
    // SAFETY: memory_op reads the reservation (live on this frame) and reads/writes at
    // most `nr_extents` xen_pfn_t at `extent_start`, an exclusively borrowed slice of that
    // length; what it does to the guest's memory is the caller's (see the doc).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_memory_op,
            [cmd, &mut arg as *mut MemoryReservation as u64, 0, 0, 0],
        )
    };
    check(rc).map(|n| n as u64)
}

/// `memory_op(XENMEM_current_reservation or XENMEM_maximum_reservation, &domid)` for this
/// domain: its pages now (`tot_pages`) or the most it may have (`max_pages`).
pub fn reservation(cmd: u64) -> Result<u64, XenError> {
    use xenpv_abi::args::{XENMEM_CURRENT_RESERVATION, XENMEM_MAXIMUM_RESERVATION};
    if cmd != XENMEM_CURRENT_RESERVATION && cmd != XENMEM_MAXIMUM_RESERVATION {
        return Err(XenError(-22));
    }
    let domid: u16 = xenpv_abi::args::DOMID_SELF;
    // SAFETY: both commands read one domid_t from a live local and write nothing.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_memory_op,
            [cmd, &domid as *const u16 as u64, 0, 0, 0],
        )
    };
    check(rc).map(|n| n as u64)
}

/// `sched_op(SCHEDOP_yield)`: give the CPU away once (Xen runs something else if it can).
pub fn yield_now() {
    // SAFETY: SCHEDOP_yield takes no argument and touches no guest memory.
    let _ = unsafe {
        raw(
            xen::__HYPERVISOR_sched_op,
            [xen::SCHEDOP_yield as u64, 0, 0, 0, 0],
        )
    };
}

/// `vcpu_op(VCPUOP_stop_periodic_timer, 0, NULL)` (`__HYPERVISOR_vcpu_op`, 24,
/// `vcpu.h`) for vCPU 0: Xen's default 100 Hz `VIRQ_TIMER` off, so that only the one-shot
/// timers the runtime sets ([`set_timer_op`]) fire.
pub fn stop_periodic_timer() -> Result<(), XenError> {
    const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
    // SAFETY: the op takes no argument (NULL) and touches no guest memory.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_vcpu_op,
            [VCPUOP_STOP_PERIODIC_TIMER, 0, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `sched_op(SCHEDOP_poll, &sched_poll)` (`sched.h`): block until one of `ports` is
/// pending or Xen system time reaches `deadline_ns` (0: no deadline; Xen's time, not the
/// guest's: [`evtchn::wait`](crate::evtchn::wait) converts). Event delivery
/// stays masked: this is how the runtime waits (see [`evtchn`](crate::evtchn)). It may
/// also return early: callers re-check the pending bits and the time.
pub fn poll(ports: &mut [u32], deadline_ns: u64) -> Result<(), XenError> {
    let mut p = xen::sched_poll {
        ports: ports.as_mut_ptr(),
        nr_ports: ports.len() as u32,
        // A deadline past i64::MAX would be negative to Xen: a poll that never waits.
        timeout: xenpv_protocol::evtchn::poll_timeout(deadline_ns),
    };
    // SAFETY: Xen reads the sched_poll struct on this frame and `nr_ports` ports from the
    // live slice it points to; it writes neither.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_sched_op,
            [xen::SCHEDOP_poll as u64, &mut p as *mut _ as u64, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `grant_table_op(cmd, ops, count)` (`__HYPERVISOR_grant_table_op`, 20): `cmd` is a
/// `GNTTABOP_*` number from `grant_table.h` and `ops` are `count` structs of the type it
/// takes, read and written by Xen.
///
/// Xen takes the struct type from `cmd`, not from `T`, and follows the pointers and
/// machine addresses inside the structs (a setup_table frame list, a PTE to map into, a
/// frame to copy into). This function is safe and checks none of it: a wrong `T` or a
/// wrong address lets Xen write into memory Rust code owns. Use the typed wrappers in
/// [`gnttab`](crate::gnttab).
pub(crate) fn grant_table_op<T>(cmd: u32, ops: &mut [T]) -> Result<(), XenError> {
    // SAFETY: `ops` is live and exclusively borrowed for the call; that `T` is the struct
    // `cmd` takes, and that the addresses inside are valid, is up to the caller (see the
    // doc; the wrappers in `gnttab` keep both).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_grant_table_op,
            [cmd as u64, ops.as_mut_ptr() as u64, ops.len() as u64, 0, 0],
        )
    };
    check(rc).map(|_| ())
}
