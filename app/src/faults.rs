//! Provoked faults (`fault=KIND` on the command line), one per CPU exception the runtime
//! reports, so that boot tests can check the report: vector, error code, addresses, and
//! the `file:line` the host symbolizes. Each faulting statement follows a
//! `// fault-line: KIND` comment line: the boot test reads its line number (the marker's
//! plus one) from this file at test time.
use core::arch::asm;
use xenpv_contract::status::AppStatus;
use xenpv_rt::{println, Boot};

/// What `fault=` accepts.
pub const KINDS: &[&str] = &[
    "null-read",
    "null-write",
    "text-write",
    "rodata-write",
    "ud2",
    "div0",
    "nx-jump",
    "recursion",
];

/// A constant in `.rodata` (the write to it must fault).
static RODATA_WORD: u64 = 0x5eed;

#[inline(never)]
fn null_read() -> u64 {
    let v: u64;
    // SAFETY: none: this faults on purpose (page 0 is never mapped).
    // fault-line: null-read
    unsafe { asm!("mov {v}, qword ptr [{p}]", v = out(reg) v, p = in(reg) 0usize) };
    v
}

#[inline(never)]
fn null_write() {
    // SAFETY: none: this faults on purpose (page 0 is never mapped).
    // fault-line: null-write
    unsafe { asm!("mov qword ptr [{p}], {v}", p = in(reg) 0usize, v = in(reg) 1u64) };
}

#[inline(never)]
fn text_write() {
    let p = text_write as fn() as usize;
    // SAFETY: none: .text is mapped read-only and execute; this faults on purpose.
    // fault-line: text-write
    unsafe { asm!("mov byte ptr [{p}], 0xcc", p = in(reg) p) };
}

#[inline(never)]
fn rodata_write() {
    let p = core::ptr::addr_of!(RODATA_WORD) as usize;
    // SAFETY: none: .rodata is mapped read-only; this faults on purpose.
    // fault-line: rodata-write
    unsafe { asm!("mov qword ptr [{p}], {v}", p = in(reg) p, v = in(reg) 7u64) };
}

#[inline(never)]
fn ud2() {
    // SAFETY: none: #UD on purpose.
    // fault-line: ud2
    unsafe { asm!("ud2") };
}

#[inline(never)]
fn div0(d: u64) -> u64 {
    let q: u64;
    // SAFETY: none: a division by zero (#DE) on purpose.
    // fault-line: div0
    unsafe { asm!("xor edx, edx", "div {d}", d = in(reg) d, inout("rax") 1u64 => q, out("rdx") _) };
    q
}

#[inline(never)]
fn nx_jump(boot: &mut Boot) -> i32 {
    // A fresh vmalloc'd page is read-write and no-execute: fill it with `ret` and call it.
    let Ok(mut area) = boot.memory().vmalloc(4096) else {
        println!("faults: vmalloc failed");
        return AppStatus::Failed.into();
    };
    area.as_mut_slice().fill(0xc3c3_c3c3_c3c3_c3c3);
    let target = area.va();
    // SAFETY: none: an instruction fetch from an NX page faults on purpose.
    // fault-line: nx-jump
    unsafe { asm!("call {t}", t = in(reg) target, clobber_abi("C")) };
    println!("faults: executed an NX page");
    AppStatus::Failed.into()
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point: it ends in the guard page
fn recursion(depth: u64) -> u64 {
    // fault-line: recursion
    let buf = [depth as u8; 512];
    core::hint::black_box(&buf);
    recursion(depth + 1).wrapping_add(buf[(depth % 512) as usize] as u64)
}

/// Provoke `kind`; returns only if the fault did not happen (an error status). With
/// `hold_console`, the fault happens while the console ring's lock is held, as in the
/// middle of a console write.
pub fn provoke(boot: &mut Boot, kind: &str, hold_console: bool) -> i32 {
    if !KINDS.contains(&kind) {
        println!("faults: unknown kind {kind:?}; one of {KINDS:?}");
        return AppStatus::Usage.into();
    }
    let held = if hold_console {
        " (holding the console ring)"
    } else {
        ""
    };
    println!("faults: provoking {kind}{held}");
    // Nothing in here prints: the console may be held.
    let mut go = || -> Result<i32, i32> {
        Ok(match kind {
            "null-read" => null_read() as i32,
            "null-write" => {
                null_write();
                0
            }
            "text-write" => {
                text_write();
                0
            }
            "rodata-write" => {
                rodata_write();
                0
            }
            "ud2" => {
                ud2();
                0
            }
            "div0" => div0(core::hint::black_box(0)) as i32,
            "nx-jump" => return Err(nx_jump(boot)),
            "recursion" => recursion(0) as i32,
            _ => return Err(AppStatus::Usage.into()),
        })
    };
    let r = if hold_console {
        xenpv_rt::console::ring::_with_ring_locked(go)
    } else {
        go()
    };
    let r = match r {
        Ok(r) => r,
        Err(status) => return status,
    };
    println!("faults: {kind} did not fault (returned {r})");
    AppStatus::Failed.into()
}
