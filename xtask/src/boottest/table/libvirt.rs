//! The appliance under libvirt: the box's libvirt variant runs libvirtd with its libxl
//! driver, creates the domU with `virsh create`, and the dom0 script drives it with
//! `virsh dominfo`, `setmem`, `reboot` and `shutdown`.
use super::{appliance_row, script_with};
use crate::boottest::reports::dom0_like;
use crate::boottest::{has, BootTest, Check};
use crate::xenbox::Toolstack;

/// How soon after `virsh shutdown` the domain must be gone.
const SHUTDOWN_WITHIN_S: u64 = 10;

/// `virsh setmem`'s target, KiB (96 MiB of the row's 256).
const SETMEM_KIB: u64 = 96 * 1024;

/// How long a guest with a balloon gets to reach the target before the row reports
/// where it stands.
const BALLOON_WITHIN_S: u64 = 20;

/// The appliance as a libvirt domain (`domu-libvirt`).
pub fn row() -> BootTest {
    let checks = vec![
        has("xenbox: virsh create: Domain 'xenpv-app' created from /run/domu.xml"),
        Check::Report(
            dom0_like("peer: http-get PASS status=200 bytes=1048576 conns=1 ok=1")
                .hex_digits("fnv", 16),
        ),
        Check::Report(
            dom0_like("libvirt: dominfo state=running max_kib=262144 used_kib=262144")
                .nums(&["id"]),
        ),
        // libvirt set the target, and the guest's balloon reached it.
        Check::Report(dom0_like("libvirt: setmem status=0 target_kib=98304")),
        Check::Report(dom0_like("libvirt: setmem balloon=yes reached=yes")),
        Check::Report(dom0_like("libvirt: reboot status=0 delivered=yes")),
        has("xenpv-rt: shutdown requested (reboot)"),
        // The guest ends a reboot request with SHUTDOWN_reboot: libvirt's
        // on_reboot=restart brings it back with a new id, serving again.
        Check::Report(dom0_like("libvirt: reboot came_back=yes").nums(&["new_domid"])),
        Check::Report(
            dom0_like("libvirt: shutdown status=0 within=yes exit_status=0").nums(&["ms"]),
        ),
    ];
    let mut b = appliance_row("domu-libvirt", "net ip=169.254.100.2/24", 900, checks);
    b.domu = true;
    b.toolstack = Toolstack::Libvirt;
    b.dom0_script = Some(script_with(
        &[
            ("SHUTDOWN_WITHIN", SHUTDOWN_WITHIN_S.to_string()),
            ("SETMEM_KIB", SETMEM_KIB.to_string()),
            ("FULL_KIB", (b.memory_mib * 1024).to_string()),
            ("BALLOON_WITHIN", BALLOON_WITHIN_S.to_string()),
        ],
        include_str!("../scripts/libvirt_test.sh"),
    ));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Outcome;

    /// The lines of a passing run (`cargo xtask test --filter domu-libvirt`) the row's
    /// checks read, as the box printed them.
    const PASSING: &str = "\
xenbox: virsh create: Domain 'xenpv-app' created from /run/domu.xml
domU| net: serving udp/7 tcp/7 tcp/9 tcp/80 on 1 vif(s)
dom0| peer: http-get PASS status=200 fnv=d84ee1ab8006ba81 bytes=1048576 conns=1 ok=1 elapsed_ms=181 mbit_s=46.18
dom0| libvirt: dominfo state=running id=1 max_kib=262144 used_kib=262144
dom0| libvirt: setmem status=0 target_kib=98304 balloon=yes reached=yes xl_list_mib=96 used_kib=98304 after_ms=1750
domU| xenpv-rt: shutdown requested (reboot)
domU| net: shutdown requested how=reboot
domU| xenpv-rt: exit status 0
domU| xenpv-rt: shutdown reason=reboot
dom0| libvirt: reboot status=0 delivered=yes came_back=yes old_domid=1 new_domid=2 ms=5220
domU| net: serving udp/7 tcp/7 tcp/9 tcp/80 on 1 vif(s)
dom0| peer: http-get PASS status=200 fnv=d84ee1ab8006ba81 bytes=1048576 conns=1 ok=1 elapsed_ms=190 mbit_s=44.10
domU| xenpv-rt: shutdown requested (poweroff)
domU| net: shutdown requested how=poweroff
domU| xenpv-rt: exit status 0
dom0| libvirt: shutdown status=0 within=yes ms=3020 limit_s=10 exit_status=0
xenbox: dom0-script exit 0
";

    fn judge(text: &str) -> Result<(), String> {
        let o = Outcome {
            status: Ok(0),
            text: text.into(),
            secs: 1.0,
            log: "/dev/null".into(),
        };
        crate::boottest::run::evaluate(&row(), &o, None)
    }

    /// Every check of the row passes on a passing run's lines, and each fails when the
    /// step it judges went wrong.
    #[test]
    fn each_step_of_the_libvirt_row_can_fail() {
        judge(PASSING).unwrap();
        for (from, to) in [
            ("Domain 'xenpv-app' created", "error: failed to create"),
            ("http-get PASS status=200", "http-get FAIL status=0"),
            ("state=running", "state=paused"),
            ("max_kib=262144", "max_kib=131072"),
            ("setmem status=0", "setmem status=1"),
            ("target_kib=98304", "target_kib=262144"),
            (
                "reboot status=0 delivered=yes",
                "reboot status=0 delivered=no",
            ),
            ("xenpv-rt: shutdown requested (reboot)", "xenpv-rt: booted"),
            ("came_back=yes", "came_back=no"),
            ("reached=yes", "reached=no"),
            ("balloon=yes", "balloon=no"),
            ("within=yes", "within=no"),
            ("exit_status=0", "exit_status=none"),
        ] {
            // Every occurrence: the appliance serves before and after the reboot.
            let broken = PASSING.replace(from, to);
            assert_ne!(broken, PASSING, "{from}");
            let e = judge(&broken).expect_err(from);
            println!("{from:?} -> {to:?}: {e}");
        }
    }
}
