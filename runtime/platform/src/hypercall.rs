//! Hypercalls through the hypercall page, with Xen's x86-64 argument registers.
//!
//! We use `xen-sys` for ABI types and constants but not for its call stubs: they mark a
//! `call` as `nostack` (the trampoline pushes into the caller's red zone), pass the fifth
//! argument in %r9 where Xen expects %r8, and its `sched_op` passes the shutdown reason by
//! value where `__HYPERVISOR_sched_op` takes a pointer. `xenpv_hypercall` (entry.rs) is a
//! real function, so the compiler never keeps data below %rsp across it.

use xen_sys as xen;
use xenpv_abi::XenError;

extern "C" {
    fn xenpv_hypercall(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
}

/// Issue hypercall `nr`.
///
/// # Safety
/// The arguments must be what hypercall `nr` expects: pointers must point to live,
/// correctly typed memory for the duration of the call.
pub unsafe fn raw(nr: u32, a: [u64; 5]) -> i64 {
    // SAFETY: forwarded to the caller's contract; xenpv_hypercall preserves the SysV ABI.
    unsafe { xenpv_hypercall(nr as u64, a[0], a[1], a[2], a[3], a[4]) }
}

fn check(rc: i64) -> Result<i64, XenError> {
    if rc < 0 {
        Err(XenError(rc))
    } else {
        Ok(rc)
    }
}

/// `console_io(cmd, len, buf)`.
///
/// # Safety
/// `buf` must be valid for `len` bytes of what `cmd` does with it (read for write, written
/// for read).
unsafe fn console_io(cmd: u32, len: usize, buf: u64) -> Result<i64, XenError> {
    // SAFETY: forwarded to the caller's contract.
    check(unsafe {
        raw(
            xen::__HYPERVISOR_console_io,
            [cmd as u64, len as u64, buf, 0, 0],
        )
    })
}

/// `console_io(CONSOLEIO_write)`: Xen's own console (the serial line for dom0).
pub fn console_write(bytes: &[u8]) -> Result<(), XenError> {
    // SAFETY: Xen reads `len` bytes from a live slice.
    unsafe { console_io(xen::CONSOLEIO_write, bytes.len(), bytes.as_ptr() as u64) }.map(|_| ())
}

/// `console_io(CONSOLEIO_read)`: input typed on Xen's console (dom0 only); bytes read.
pub fn console_read(buf: &mut [u8]) -> Result<usize, XenError> {
    // SAFETY: Xen writes at most `len` bytes into a live, exclusively borrowed slice.
    unsafe { console_io(xen::CONSOLEIO_read, buf.len(), buf.as_mut_ptr() as u64) }
        .map(|n| (n as usize).min(buf.len()))
}

#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

/// `SCHEDOP_shutdown`. Returns only if Xen refused.
pub fn shutdown(reason: u32) -> XenError {
    let arg = SchedShutdown { reason };
    // SAFETY: sched_op(SCHEDOP_shutdown, &sched_shutdown) reads one u32.
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

/// `PHYSDEVOP_set_iopl`: lets the (ring-3) PV kernel execute `in`/`out`.
pub fn set_iopl(iopl: u32) -> Result<(), XenError> {
    const PHYSDEVOP_SET_IOPL: u64 = 6;
    #[repr(C)]
    struct SetIopl {
        iopl: u32,
    }
    let arg = SetIopl { iopl };
    // SAFETY: physdev_op(PHYSDEVOP_set_iopl, &physdev_set_iopl) reads one u32.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_physdev_op,
            [PHYSDEVOP_SET_IOPL, &arg as *const _ as u64, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `mmu_update(reqs, count, &done, DOMID_SELF)`. On failure, also says how many of the
/// requests were done before the failing one.
pub fn mmu_update(reqs: &[xen::mmu_update]) -> Result<(), (XenError, usize)> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `len` mmu_update structs and writes the done count.
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

/// `mmuext_op(ops, count, &done, DOMID_SELF)`.
pub fn mmuext_op(ops: &[xen::mmuext_op]) -> Result<(), (XenError, usize)> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `len` mmuext_op structs and writes the done count.
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

/// `multicall` of an `mmu_update` batch followed by an `mmuext_op` batch: one guest/Xen
/// round trip for both (Linux's `xen_mc_batch` does the same). Xen runs every entry
/// whatever an earlier one returned, so callers only put operations after the updates
/// that are harmless if those failed (TLB flushes). On failure, says which operation of
/// the two batches (counted together, updates first) failed.
pub fn mmu_update_then_ext(
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
    // the call), and writes each entry's result and done count.
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

/// `update_va_mapping(va, val, flags)`.
pub fn update_va_mapping(va: u64, val: u64, flags: u64) -> Result<(), XenError> {
    // SAFETY: no pointers; Xen validates the new entry.
    let rc = unsafe { raw(xen::__HYPERVISOR_update_va_mapping, [va, val, flags, 0, 0]) };
    check(rc).map(|_| ())
}

/// `DOMID_SELF` (0x7ff0).
pub const DOMID_SELF: u64 = 0x7ff0;
/// `UVMF_INVLPG | UVMF_LOCAL`: flush this VA on this vCPU.
pub const UVMF_INVLPG_LOCAL: u64 = 2;

/// `xen_version(XENVER_version)`: (major, minor).
pub fn xen_version() -> (u32, u32) {
    // SAFETY: XENVER_version (0) takes no argument.
    let v = unsafe { raw(xen::__HYPERVISOR_xen_version, [0, 0, 0, 0, 0]) };
    ((v >> 16) as u32 & 0xffff, v as u32 & 0xffff)
}

/// `event_channel_op(cmd, arg)`: `arg` is the command's struct, read and written by Xen.
pub fn event_channel_op<T>(cmd: u32, arg: &mut T) -> Result<(), XenError> {
    // SAFETY: `arg` is a live, exclusively borrowed struct of the type `cmd` takes (the
    // typed wrappers in `evtchn` pair them).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_event_channel_op,
            [cmd as u64, arg as *mut T as u64, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `set_timer_op(deadline)`: a one-shot VIRQ_TIMER at Xen system time `deadline_ns`
/// (0 cancels).
pub fn set_timer_op(deadline_ns: u64) -> Result<(), XenError> {
    // SAFETY: no pointers.
    let rc = unsafe { raw(xen::__HYPERVISOR_set_timer_op, [deadline_ns, 0, 0, 0, 0]) };
    check(rc).map(|_| ())
}

/// `VCPUOP_stop_periodic_timer` for vCPU 0: Xen's default 100 Hz VIRQ_TIMER off, so that
/// only the one-shot timers the runtime sets fire.
pub fn stop_periodic_timer() -> Result<(), XenError> {
    const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
    // SAFETY: the op takes no argument (NULL).
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_vcpu_op,
            [VCPUOP_STOP_PERIODIC_TIMER, 0, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `SCHEDOP_poll`: block until one of `ports` is pending or Xen system time reaches
/// `deadline_ns` (0: no deadline). Event delivery stays masked: this is how the runtime
/// waits (see `evtchn`).
pub fn poll(ports: &mut [u32], deadline_ns: u64) -> Result<(), XenError> {
    let mut p = xen::sched_poll {
        ports: ports.as_mut_ptr(),
        nr_ports: ports.len() as u32,
        timeout: deadline_ns,
    };
    // SAFETY: Xen reads the sched_poll struct and `nr_ports` ports from the live slice.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_sched_op,
            [xen::SCHEDOP_poll as u64, &mut p as *mut _ as u64, 0, 0, 0],
        )
    };
    check(rc).map(|_| ())
}

/// `grant_table_op(cmd, ops, count)`: `ops` are `count` structs of the command's type.
pub fn grant_table_op<T>(cmd: u32, ops: &mut [T]) -> Result<(), XenError> {
    // SAFETY: `ops` are live, exclusively borrowed structs of the type `cmd` takes (the
    // typed wrappers in `gnttab` pair them); pointers inside them are the callers' to keep
    // valid, which those wrappers do.
    let rc = unsafe {
        raw(
            xen::__HYPERVISOR_grant_table_op,
            [cmd as u64, ops.as_mut_ptr() as u64, ops.len() as u64, 0, 0],
        )
    };
    check(rc).map(|_| ())
}
