//! Start of day in assembly: the ELF notes Xen's domain builder reads, the hypercall page
//! it fills, and `_start`, which zeroes .bss, moves onto the runtime's own stack and calls
//! `xenpv_rt_start` (in `boot.rs`) with the start_info pointer Xen passes in %rsi.
//!
//! The runtime never runs on Xen's boot stack beyond the first instructions: that stack
//! lies in the boot region the paging code later retires (and, with a big initrd, under
//! `L3[511]`).

use crate::mm::layout::KERNEL_VIRT_BASE;

/// Size of the runtime's boot stack (in .bss), on which start of day and the application's
/// `main` run. 1 MiB: an unoptimised (opt-level 0) build's start of day reaches about
/// 460 KiB (the planners pass 4 KiB page tables by value, and without optimisation every
/// copy is a stack slot); an optimised one about 215 KiB. The page below it is a guard,
/// unmapped from the first instructions on: an overflow faults, it never writes .bss.
pub const BOOT_STACK_BYTES: usize = 1024 * 1024;

/// The start-of-day assembly, with `$extra` ELF notes appended to the fixed ones.
macro_rules! notes_asm {
    ($($extra:literal),*) => {
        core::arch::global_asm!(
            // An ELF note in .note.Xen: name "Xen", then the descriptor.
            ".macro xen_note type, desc:vararg",
            ".pushsection .note.Xen, \"a\", @note",
            ".balign 4",
            ".long 2f - 1f",
            ".long 4f - 3f",
            ".long \\type",
            "1: .asciz \"Xen\"",
            "2: .balign 4",
            "3: \\desc",
            "4: .balign 4",
            ".popsection",
            ".endm",
            // XEN_ELFNOTE_* numbers from xen/include/public/elfnote.h.
            "xen_note 6, .asciz \"xenpv-rt\"",           // GUEST_OS
            "xen_note 5, .asciz \"xen-3.0\"",            // XEN_VERSION
            "xen_note 3, .quad {virt_base}",             // VIRT_BASE
            "xen_note 4, .quad {virt_base}",             // PADDR_OFFSET (p_paddr == p_vaddr)
            "xen_note 1, .quad _start",                  // ENTRY
            "xen_note 2, .quad HYPERCALL_PAGE",          // HYPERCALL_PAGE
            "xen_note 8, .asciz \"generic\"",            // LOADER
            "xen_note 10, .asciz \"!writable_page_tables\"", // FEATURES
            $($extra,)*
            "",
            ".pushsection .text.xenpv_hypercall_page, \"ax\"",
            ".balign 4096",
            ".fill 4096, 1, 0xcc", // Xen overwrites it; int3 if it did not
            ".popsection",
            "",
            ".pushsection .bss.xenpv_boot_stack, \"aw\", @nobits",
            ".balign 4096",
            // One page that the takeover unmaps: an overflow faults instead of writing
            // over .bss (the linker script puts this section first in .bss).
            ".globl xenpv_boot_stack_guard",
            "xenpv_boot_stack_guard:",
            ".skip 4096",
            ".globl xenpv_boot_stack_bottom",
            "xenpv_boot_stack_bottom:",
            ".skip {stack}",
            ".globl xenpv_boot_stack_top",
            "xenpv_boot_stack_top:",
            ".popsection",
            "",
            // A page a domU maps its console ring at before anything else (boot.rs):
            // early errors reach the console even when start of day fails.
            ".pushsection .bss.xenpv_console_window, \"aw\", @nobits",
            ".balign 4096",
            ".globl xenpv_console_window",
            "xenpv_console_window:",
            ".skip 4096",
            ".popsection",
            "",
            ".pushsection .text.xenpv_entry, \"ax\"",
            ".globl _start",
            "_start:",
            "    cld",
            // Zero .bss (Xen zeroes it too; this keeps us independent of the builder).
            // Still on Xen's boot stack here: nothing is pushed.
            "    mov %rsi, %r12",
            "    lea __xenpv_bss_start(%rip), %rdi",
            "    lea __xenpv_bss_end(%rip), %rcx",
            "    sub %rdi, %rcx",
            "    xor %eax, %eax",
            "    rep stosb",
            "    lea xenpv_boot_stack_top(%rip), %rsp",
            "    xor %ebp, %ebp",
            "    mov %r12, %rdi",
            "    call xenpv_rt_start",
            "    ud2",
            "",
            // xenpv_hypercall(nr, a1, a2, a3, a4, a5) -> rax, SysV in, Xen's x86-64 ABI
            // out (%rdi %rsi %rdx %r10 %r8). A real function rather than inline asm: the
            // trampoline pushes onto the stack, which must not be the caller's red zone.
            ".globl xenpv_hypercall",
            "xenpv_hypercall:",
            "    shl $5, %rdi",
            "    lea HYPERCALL_PAGE(%rip), %rax",
            "    add %rdi, %rax",
            "    mov %rsi, %rdi",
            "    mov %rdx, %rsi",
            "    mov %rcx, %rdx",
            "    mov %r8, %r10",
            "    mov %r9, %r8",
            "    jmp *%rax", // the trampoline's ret returns to our caller
            ".popsection",
            virt_base = const KERNEL_VIRT_BASE.as_u64(),
            stack = const BOOT_STACK_BYTES,
            options(att_syntax)
        );
    };
}

#[cfg(not(feature = "mod-start-pfn"))]
notes_asm!();
// XEN_ELFNOTE_MOD_START_PFN: Xen leaves the initrd unmapped and passes its first pfn.
#[cfg(feature = "mod-start-pfn")]
notes_asm!("xen_note 16, .long 1");

// XEN_ELFNOTE_SUSPEND_CANCEL (14) = 1: a cancelled save resumes in the same domain with
// the suspend hypercall returning 1 (the toolstack's fast path, `xc_domain_resume`),
// which the runtime's suspend sequence handles. Written out whole (not with the
// macro's `xen_note`, whose definition lives in the other asm block).
#[cfg(feature = "suspend")]
core::arch::global_asm!(
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4",  // namesz: "Xen\0"
    ".long 4",  // descsz
    ".long 14", // XEN_ELFNOTE_SUSPEND_CANCEL
    ".asciz \"Xen\"",
    ".balign 4",
    ".long 1",
    ".popsection",
);
