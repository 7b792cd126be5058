//! Frames and errors print with their kind, so a log line never leaves the reader guessing.
use xenpv_abi::{Maddr, Mfn, Pfn, XenError};

#[test]
fn frames_print_with_their_kind() {
    assert_eq!(format!("{:?}", Pfn(16)), "pfn(0x10)");
    assert_eq!(format!("{}", Mfn(16)), "mfn 0x10");
    assert_eq!(format!("{:#x}", Mfn(16)), "0x10");
    assert_eq!(format!("{:?}", Maddr(0x1008)), "maddr(0x1008)");
}

#[test]
fn errors_print_their_name_and_number() {
    assert_eq!(XenError(-22).to_string(), "EINVAL (-22)");
    assert_eq!(XenError(-99).to_string(), "E? (-99)");
}

#[test]
fn every_known_errno_has_its_name_and_others_are_unknown() {
    let known = [
        (1, "EPERM"),
        (2, "ENOENT"),
        (3, "ESRCH"),
        (11, "EAGAIN"),
        (12, "ENOMEM"),
        (13, "EACCES"),
        (14, "EFAULT"),
        (16, "EBUSY"),
        (17, "EEXIST"),
        (22, "EINVAL"),
        (28, "ENOSPC"),
        (38, "ENOSYS"),
    ];
    for (errno, name) in known {
        assert_eq!(XenError(-errno).name(), name);
        assert_eq!(
            XenError(errno).name(),
            "E?",
            "a positive value is not an errno"
        );
    }
    // Whatever lands in rax, naming it never panics.
    for v in [0, i64::MIN, i64::MAX, -4096] {
        assert_eq!(XenError(v).name(), "E?", "{v}");
    }
}
