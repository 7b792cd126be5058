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
