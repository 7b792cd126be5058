//! The memory floor: the smallest domain start of day serves. Xen rounds its boot
//! region up to 4 MiB, so at 4 MiB that region is all of memory and the runtime's own
//! page tables must fit in its free tail.
use crate::boottest::reports::{like, runner_like};
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;

/// examples/hello as a domU of 4 MiB: the takeover, the vmalloc and a clean exit.
pub fn rows() -> Vec<BootTest> {
    let mut hello = t(
        "floor-domu-hello-4mib",
        Image::Example,
        "",
        0,
        vec![
            has("hello from a library consumer: 1024 pages"),
            Check::Regex(r"vmalloc'd 1 MiB at 0xffffffffa0000000 and gave it back"),
            Check::Report(runner_like("xenbox: domU state=---s-- reason=0")),
            Check::ExitLine,
        ],
    );
    hello.domu = true;
    hello.memory_mib = 4;
    hello.timeout_s = 240;
    vec![hello, app()]
}

/// The sample app (an 8 MiB image: its task pools are static) as a domU of 12 MiB, the
/// smallest its boot region leaves room in: start of day's figures at the floor.
fn app() -> BootTest {
    let mut b = t(
        "floor-domu-app-12mib",
        Image::app(),
        "",
        0,
        vec![
            Check::Report(like("timing: direct_map=on-demand pt_write=stores").nums(&[
                "entry_to_main_us",
                "paging_setup_us",
                "paging_pte_updates",
            ])),
            Check::Regex(r"p2m: check=ok max_pfn=3072 "),
            Check::Report(runner_like("xenbox: domU state=---s-- reason=0")),
            Check::ExitLine,
        ],
    );
    b.domu = true;
    b.memory_mib = 12;
    b.timeout_s = 240;
    b
}
