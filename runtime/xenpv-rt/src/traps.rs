//! CPU exceptions: a trap table registered with Xen, and one report per fault.
//!
//! A 64-bit PV guest cannot load an IDT; it hands Xen a trap table
//! (`HYPERVISOR_set_trap_table`) and Xen *bounces* each exception to the handler named
//! there: it builds a frame on the guest's stack — `rcx`, `r11`, then the error code (for
//! the vectors that have one), `rip`, `cs`, `rflags`, `rsp`, `ss` — right below the
//! faulting `rsp`, and jumps to the handler (Mini-OS's `arch/x86/x86_64.S` and Linux's
//! `xen_*` entry points pop the same two extra words).
//!
//! # Handlers never return
//! Xen writes that frame without skipping the 128-byte red zone the precompiled libcore
//! uses, so whatever the faulting function kept below its `rsp` is gone: resuming it would
//! run on corrupted state. Every handler here prints one report and stops the guest with
//! [`STATUS_FAULT`]; a fault while reporting stops it at once with the same status.
//!
//! # What Xen cannot deliver
//! A stack overflow into the unmapped guard page below the boot stack leaves Xen no room
//! for the frame: Xen crashes the domain and prints its register dump. The host tools read
//! that dump (dom0: the serial log; a domU: `xl dmesg`) and name the overflow.
//!
//! The report, one line the host tools parse and symbolize from the kernel's ELF:
//!
//! ```text
//! xenpv-rt: fault: #PF page fault vector=14 error=0x2 rip=0xffffffff80004a1b rsp=0xffffffff8006ff08 cr2=0x0 (write, page not present)
//! xenpv-rt: fault: stack 0xffffffff80004b80 0xffffffff8000312c
//! ```

use crate::exit::deliver;
use core::sync::atomic::{AtomicBool, Ordering};
use xenpv_contract::status::exit_line;
pub use xenpv_contract::status::STATUS_FAULT;

/// What Xen pushed (after the handler stub dropped `rcx` and `r11` and, for vectors
/// without one, pushed a zero error code).
#[repr(C)]
struct Frame {
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Vectors reported, their mnemonic and name, and whether the CPU pushes an error code.
const VECTORS: [(u8, &str, &str, bool); 11] = [
    (0, "#DE", "divide error", false),
    (1, "#DB", "debug", false),
    (3, "#BP", "breakpoint", false),
    (6, "#UD", "invalid opcode", false),
    (11, "#NP", "segment not present", true),
    (12, "#SS", "stack-segment fault", true),
    (13, "#GP", "general protection fault", true),
    (14, "#PF", "page fault", true),
    (16, "#MF", "x87 floating-point error", false),
    (17, "#AC", "alignment check", true),
    (19, "#XM", "SIMD floating-point error", false),
];

macro_rules! stubs {
    ($($vector:literal $errcode:ident),*) => {
        core::arch::global_asm!(
            ".pushsection .text.xenpv_traps, \"ax\"",
            $(
                concat!(".globl xenpv_trap_", stringify!($vector)),
                concat!("xenpv_trap_", stringify!($vector), ":"),
                // Xen's two extra words.
                "    pop rcx",
                "    pop r11",
                stubs!(@err $errcode),
                concat!("    mov edi, ", stringify!($vector)),
                "    jmp xenpv_trap_common",
            )*
            "xenpv_trap_common:",
            "    mov rsi, rsp",
            "    and rsp, -16",
            "    call xenpv_rt_fault",
            "    ud2",
            ".globl xenpv_failsafe",
            "xenpv_failsafe:",
            "    and rsp, -16",
            "    call xenpv_rt_failsafe",
            "    ud2",
            ".popsection",
        );
    };
    (@err noerr) => { "    push 0" };
    (@err err) => { "" };
}

stubs!(0 noerr, 1 noerr, 3 noerr, 6 noerr, 11 err, 12 err, 13 err, 14 err, 16 noerr, 17 err, 19 noerr);

extern "C" {
    fn xenpv_trap_0();
    fn xenpv_trap_1();
    fn xenpv_trap_3();
    fn xenpv_trap_6();
    fn xenpv_trap_11();
    fn xenpv_trap_12();
    fn xenpv_trap_13();
    fn xenpv_trap_14();
    fn xenpv_trap_16();
    fn xenpv_trap_17();
    fn xenpv_trap_19();
    fn xenpv_failsafe();
    static __xenpv_kernel_start: u8;
    static __xenpv_text_end: u8;
    static xenpv_boot_stack_guard: u8;
    static xenpv_boot_stack_top: u8;
}

static REPORTING: AtomicBool = AtomicBool::new(false);

/// Register the trap table and the failsafe callback. The first thing start of day does,
/// so that every later fault is reported.
pub(crate) fn install() {
    let handlers: [unsafe extern "C" fn(); 11] = [
        xenpv_trap_0,
        xenpv_trap_1,
        xenpv_trap_3,
        xenpv_trap_6,
        xenpv_trap_11,
        xenpv_trap_12,
        xenpv_trap_13,
        xenpv_trap_14,
        xenpv_trap_16,
        xenpv_trap_17,
        xenpv_trap_19,
    ];
    let mut table = [xen_sys::trap_info {
        vector: 0,
        flags: 0,
        cs: 0,
        address: 0,
    }; 12];
    for (t, (&(vector, ..), h)) in table.iter_mut().zip(VECTORS.iter().zip(handlers)) {
        *t = xen_sys::trap_info {
            vector,
            // DPL 3 for #BP so `int3` works from the kernel (ring 3 in 64-bit PV).
            flags: if vector == 3 { 3 } else { 0 },
            cs: xen_sys::FLAT_KERNEL_CS as u16,
            address: h as usize as u64,
        };
    }
    // The last entry stays zero: Xen stops at an entry whose address is 0.
    // SAFETY: the table is a valid, zero-terminated array of trap_info that Xen copies
    // during the call; every address is a handler stub in this image's text.
    let rc = unsafe {
        crate::hypercall::raw(
            xen_sys::__HYPERVISOR_set_trap_table,
            [table.as_ptr() as u64, 0, 0, 0, 0],
        )
    };
    if rc != 0 {
        crate::warn!("set_trap_table failed ({rc}): faults will not be reported by the guest");
    }
    #[repr(C)]
    struct CallbackRegister {
        ty: u16,
        flags: u16,
        _pad: u32,
        address: u64,
    }
    const CALLBACKOP_REGISTER: u64 = 0;
    const CALLBACKTYPE_FAILSAFE: u16 = 1;
    let cb = CallbackRegister {
        ty: CALLBACKTYPE_FAILSAFE,
        flags: 0,
        _pad: 0,
        address: xenpv_failsafe as unsafe extern "C" fn() as usize as u64,
    };
    // SAFETY: `cb` is a valid callback_register that Xen reads during the call; the
    // address is a stub in this image's text.
    let rc = unsafe {
        crate::hypercall::raw(
            xen_sys::__HYPERVISOR_callback_op,
            [CALLBACKOP_REGISTER, &cb as *const _ as u64, 0, 0, 0],
        )
    };
    if rc != 0 {
        crate::warn!("registering the failsafe callback failed ({rc})");
    }
}

fn addr<T>(s: &T) -> u64 {
    s as *const T as u64
}

/// The fault address of the last page fault, from vCPU 0's `arch.cr2` (a PV guest cannot
/// read CR2 itself; Xen copies it there before bouncing #PF).
fn cr2() -> Option<u64> {
    if !crate::time::ready() {
        return None;
    }
    let si = crate::mm::layout::Fixmap::SharedInfo.va() as *const xen_sys::shared_info;
    // SAFETY: shared_info is mapped at its fixmap slot once `shared_info_mapped` ran; a
    // volatile read because Xen writes the field.
    Some(unsafe { core::ptr::addr_of!((*si).vcpu_info[0].arch.cr2).read_volatile() })
}

fn page_fault_cause(error: u64) -> &'static str {
    match (error & 1 != 0, error & 2 != 0, error & 16 != 0) {
        (_, _, true) => "instruction fetch",
        (false, true, _) => "write, page not present",
        (true, true, _) => "write, protection",
        (false, false, _) => "read, page not present",
        (true, false, _) => "read, protection",
    }
}

#[no_mangle]
extern "C" fn xenpv_rt_fault(vector: u64, frame: *const Frame) -> ! {
    // The code that faulted may hold the console ring's lock: never wait for it.
    crate::console::ring::failing();
    if REPORTING.swap(true, Ordering::SeqCst) {
        crate::console::write_bytes(b"\nxenpv-rt: fault while reporting a fault\n");
        deliver(STATUS_FAULT);
    }
    // SAFETY: the stub passes the address of the frame Xen just wrote on this stack.
    let f = unsafe { &*frame };
    let (mnemonic, name) = VECTORS
        .iter()
        .find(|v| u64::from(v.0) == vector)
        .map_or(("#??", "exception"), |v| (v.1, v.2));
    let p = crate::console::_print_unlocked;
    p(format_args!(
        "\nxenpv-rt: fault: {mnemonic} {name} vector={vector} error={:#x} rip={:#x} rsp={:#x}",
        f.error, f.rip, f.rsp
    ));
    if vector == 14 {
        let fault_addr = cr2();
        match fault_addr {
            Some(a) => p(format_args!(" cr2={a:#x}")),
            None => p(format_args!(" cr2=?")),
        }
        p(format_args!(" ({})", page_fault_cause(f.error)));
        // SAFETY: linker-script symbols; only their addresses are used.
        let guard = unsafe { addr(&xenpv_boot_stack_guard) };
        if fault_addr.is_some_and(|a| (guard..guard + 4096).contains(&a)) {
            p(format_args!(" stack overflow: the boot stack's guard page"));
        }
    }
    p(format_args!("\n"));
    stack_scan(f.rsp);
    p(format_args!("{}\n", exit_line(STATUS_FAULT)));
    deliver(STATUS_FAULT)
}

/// Return addresses found on the stack above `rsp`: words that point into the image's
/// text, up to eight, from the boot stack only (the one stack this runtime runs on).
fn stack_scan(rsp: u64) {
    // SAFETY: linker-script symbols; only their addresses are used.
    let (text, text_end, bottom, top) = unsafe {
        (
            addr(&__xenpv_kernel_start),
            addr(&__xenpv_text_end),
            addr(&xenpv_boot_stack_guard) + 4096,
            addr(&xenpv_boot_stack_top),
        )
    };
    if !(bottom..top).contains(&rsp) {
        return;
    }
    crate::console::_print_unlocked(format_args!("xenpv-rt: fault: stack"));
    let mut found = 0;
    let mut at = rsp & !7;
    while at < top && found < 8 {
        // SAFETY: `at` lies in the boot stack (bottom..top), mapped read-write.
        let w = unsafe { (at as *const u64).read_volatile() };
        if (text..text_end).contains(&w) {
            crate::console::_print_unlocked(format_args!(" {w:#x}"));
            found += 1;
        }
        at += 8;
    }
    crate::console::_print_unlocked(format_args!("\n"));
}

#[no_mangle]
extern "C" fn xenpv_rt_failsafe() -> ! {
    if !REPORTING.swap(true, Ordering::SeqCst) {
        crate::console::_print_unlocked(format_args!(
            "\nxenpv-rt: fault: failsafe callback (Xen could not load the guest's segments)\n{}\n",
            exit_line(STATUS_FAULT)
        ));
    }
    deliver(STATUS_FAULT)
}
