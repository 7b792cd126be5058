//! Provoked faults and panics: the status, the vector, and the symbolized line.
use crate::boottest::reports::like;
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;

/// A provoked fault: status 103, the vector, and the symbolized line of faults.rs.
pub fn fault(kind: &'static str, line: &str, via_caller: bool) -> BootTest {
    t(
        &format!("fault-{kind}"),
        Image::app(),
        &format!("fault={kind}"),
        103,
        vec![
            Check::Report(like(&format!("xenpv-rt: fault: {line}"))),
            Check::FaultAt { kind, via_caller },
            Check::ExitLine,
        ],
    )
}

/// Unbounded recursion into the guard page: Xen cannot deliver that fault, so the host
/// reads Xen's register dump, names the overflow and symbolizes where it happened.
pub fn stack_overflow(name: &str) -> BootTest {
    t(
        name,
        Image::app(),
        "fault=recursion",
        103,
        vec![
            has("fault: #PF page fault vector=14 that Xen could not deliver"),
            has("fault: stack overflow: the boot stack ran into its guard page"),
            Check::FaultAt {
                kind: "recursion",
                via_caller: false,
            },
        ],
    )
}

/// The dom0 faults, one per kind the app provokes.
pub fn dom0() -> Vec<BootTest> {
    vec![
        fault("null-read", "#PF page fault vector=14 error=0x0", false),
        fault("null-write", "#PF page fault vector=14 error=0x2", false),
        fault("text-write", "#PF page fault vector=14 error=0x3", false),
        fault("rodata-write", "#PF page fault vector=14 error=0x3", false),
        fault("ud2", "#UD invalid opcode vector=6", false),
        fault("div0", "#DE divide error vector=0", false),
        fault("nx-jump", "#PF page fault vector=14 error=0x11", true),
        // Xen cannot deliver a fault on an overflowed stack: the host reads its dump.
        stack_overflow("fault-recursion"),
    ]
}
