//! The few C symbols the precompiled libcore and liballoc call (no libc in a PV kernel).
//!
//! `memcpy` and `memset` move 64 bytes per loop with SSE (part of the x86-64 baseline
//! the whole guest is compiled for), then 8, then single bytes. Not `rep movsb`: on
//! hardware with ERMS it is as fast for the sizes a guest copies (up to 64 KiB), but an
//! emulator's binary translation (QEMU TCG, where the box runs) executes a string
//! instruction one element per translated block, which made every packet copy cost ~16
//! times what this loop does. The loops are assembly so that the compiler cannot turn them
//! back into calls to the functions they are.

use core::arch::asm;

/// Copy `n` bytes from `src` to `dst`; returns `dst`.
///
/// # Safety
/// C's memcpy contract: `n` bytes valid at both, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; every load is below src + n and every store below
    // dst + n (each loop runs while at least its width remains in rcx), forward (DF=0).
    unsafe {
        asm!(
            "cmp rcx, 64",
            "jb 3f",
            "2:",
            "movdqu xmm0, [rsi]",
            "movdqu xmm1, [rsi + 16]",
            "movdqu xmm2, [rsi + 32]",
            "movdqu xmm3, [rsi + 48]",
            "movdqu [rdi], xmm0",
            "movdqu [rdi + 16], xmm1",
            "movdqu [rdi + 32], xmm2",
            "movdqu [rdi + 48], xmm3",
            "add rsi, 64",
            "add rdi, 64",
            "sub rcx, 64",
            "cmp rcx, 64",
            "jae 2b",
            "3:",
            "cmp rcx, 8",
            "jb 5f",
            "4:",
            "mov rax, [rsi]",
            "mov [rdi], rax",
            "add rsi, 8",
            "add rdi, 8",
            "sub rcx, 8",
            "cmp rcx, 8",
            "jae 4b",
            "5:",
            "rep movsb",
            inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
            out("rax") _, out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            options(nostack),
        );
    }
    dst
}

/// Copy `n` bytes from `src` to `dst`, which may overlap; returns `dst`.
///
/// # Safety
/// C's memmove contract: `n` bytes valid at both; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: no harmful overlap for a forward copy.
        return unsafe { memcpy(dst, src, n) };
    }
    // dst lies inside [src, src+n): copy backwards.
    // SAFETY: the caller's contract; std/cld bracket a backward rep movsb over the range.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
             inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
    }
    dst
}

/// Fill `n` bytes at `dst` with the byte `c`; returns `dst`.
///
/// # Safety
/// C's memset contract: `n` bytes valid at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let word = (c as u8 as u64).wrapping_mul(0x0101_0101_0101_0101);
    // SAFETY: the caller's contract; every store is below dst + n (each loop runs while
    // at least its width remains in rcx), forward (DF=0).
    unsafe {
        asm!(
            "movq xmm0, rax",
            "punpcklqdq xmm0, xmm0",
            "cmp rcx, 64",
            "jb 3f",
            "2:",
            "movdqu [rdi], xmm0",
            "movdqu [rdi + 16], xmm0",
            "movdqu [rdi + 32], xmm0",
            "movdqu [rdi + 48], xmm0",
            "add rdi, 64",
            "sub rcx, 64",
            "cmp rcx, 64",
            "jae 2b",
            "3:",
            "cmp rcx, 8",
            "jb 5f",
            "4:",
            "mov [rdi], rax",
            "add rdi, 8",
            "sub rcx, 8",
            "cmp rcx, 8",
            "jae 4b",
            "5:",
            "rep stosb",
            inout("rcx") n => _, inout("rdi") dst => _, in("rax") word, out("xmm0") _,
            options(nostack),
        );
    }
    dst
}

/// Compare `n` bytes: negative, 0 or positive as the first differing byte of `a` is
/// below, equal to or above `b`'s.
///
/// # Safety
/// C's memcmp contract: `n` bytes valid at both.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, within both buffers by the caller's contract.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// Whether `n` bytes are equal (0) or not (non-zero).
///
/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the precompiled libcore's unwinding glue; never called with panic=abort.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Resume unwinding after a landing pad: never reached here, a fatal stop if it is.
///
/// Stable Rust ships `liballoc` precompiled with `panic=unwind`, so its non-generic
/// functions that own a value across a call that could panic (`alloc::fmt::format`'s
/// `format_inner`, which `alloc::format!` calls, `CString::new`, `Cow += &str`...) carry
/// a landing pad that drops the value and then calls `_Unwind_Resume`. Guests are built
/// with `panic=abort` and no unwinder: the panic handler stops the guest, no exception is
/// ever raised, so no landing pad runs and this is never called; it exists so that those
/// functions link. (Code compiled in the guest's own crates has no landing pads at all.)
/// Should it be reached anyway, it stops the guest as a start-of-day refusal does,
/// without waiting for the console lock, which the code being unwound may hold.
#[no_mangle]
pub extern "C" fn _Unwind_Resume(_exception: *mut u8) -> ! {
    crate::console::ring::failing();
    crate::console::_print_unlocked(format_args!(
        "xenpv-rt: fatal: _Unwind_Resume called (unwinding under panic=abort: a foreign \
         exception?)\n{}\n",
        xenpv_contract::status::exit_line(crate::exit::STATUS_FATAL)
    ));
    crate::exit::deliver(crate::exit::STATUS_FATAL)
}
