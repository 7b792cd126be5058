//! The suspend sequence (see the module above): checks, the window, the hypercall, and
//! both ways back. Synchronous from the window on: nothing else runs, nothing prints
//! (the console's waits read the clock, frozen then) until the frames are mapped again.

use super::{next_epoch, ResumeKind, Resumed};
use crate::device::Devices;
use crate::gnttab::GrantTable;
use crate::mm::layout::Fixmap;
use crate::Boot;
use xenpv_abi::Mfn;
use xenpv_protocol::start_info::{ResumeInfo, StartInfoError};

/// Why a suspend was not attempted (the guest goes on; the toolstack times out): one
/// word, or a word and the value and limit (`device-handshake under_way=1 limit=0`).
pub(crate) type Refusal = alloc::string::String;

/// Suspend now (the request is acknowledged, and the devices agreed:
/// [`Devices::begin_suspend`] returned `Ok`): `Ok` once resumed (in the same domain or a
/// new one), `Err` with the reason if it was not attempted. The devices are told on a
/// new domain once grants, events, xenstore and the console are back
/// ([`Devices::resumed_new`]), and let go in every case ([`Devices::end_suspend`]).
pub(crate) fn run(devices: &Devices) -> Result<Resumed, Refusal> {
    use alloc::string::ToString;
    let r = devices
        .with_boot_and_grants(window)
        .unwrap_or(Err("boot-state-busy"));
    let kind = match &r {
        Ok(resumed) if resumed.kind == ResumeKind::New => {
            if let Ok(Some(port)) = devices.with_boot(|b| b.xenstore().map(|xs| xs.link().port())) {
                devices.set_store_port(port);
            }
            devices.resumed_new(resumed.epoch);
            ResumeKind::New
        }
        _ => ResumeKind::Cancelled,
    };
    devices.end_suspend(kind);
    r.map_err(|e| e.to_string())
}

/// Checks, then the window, the hypercall and the resume.
fn window(boot: &mut Boot, mut grants: Option<&mut GrantTable>) -> Result<Resumed, &'static str> {
    if boot.xenstore().is_some_and(|xs| !xs.quiescent()) {
        return Err("xenstore-busy");
    }
    if crate::gnttab::map_slot_busy() {
        return Err("grant-mapping-live");
    }
    let old_si = boot.start_info().shared_info_maddr;
    let mem = boot.memory();
    let si_mfn = mem.start_info_page().mfn();
    if si_mfn.0 == !0 {
        return Err("start_info-mfn-unknown");
    }

    let mask = upcall_mask();
    let mono_before = crate::time::enter_window();
    set_upcall_mask(1);
    if let Some(g) = grants.as_deref_mut() {
        if g.suspend(mem).is_err() {
            // Nothing unmapped that matters yet: undo and refuse.
            let _ = g.resume(mem, false);
            set_upcall_mask(mask);
            crate::time::leave_window(false);
            return Err("grant-table-unmap-failed");
        }
    }
    mem.start_info_page().rings_to_pfns();
    let rc = match mem.set_fixmap(Fixmap::SharedInfo as usize, None) {
        Ok(()) => crate::hypercall::suspend(si_mfn),
        Err(_) => -1,
    };
    let kind = if rc == 0 {
        ResumeKind::New
    } else {
        ResumeKind::Cancelled
    };
    let r = resume(boot, grants, kind, old_si, mono_before, rc);
    set_upcall_mask(mask);
    r
}

/// Both ways back: shared_info mapped (the new one from start_info in a new domain),
/// the clock, the p2m, the grant table; then, in a new domain, everything Xen renewed.
fn resume(
    boot: &mut Boot,
    grants: Option<&mut GrantTable>,
    kind: ResumeKind,
    old_si: u64,
    mono_before: u64,
    rc: i64,
) -> Result<Resumed, &'static str> {
    let new = kind == ResumeKind::New;
    let mem = boot.memory();
    let info = new.then(|| mem.start_info_page().resume_info());
    let si = match &info {
        Some(Ok(i)) => i.shared_info_maddr,
        _ => old_si,
    };
    // Without shared_info nothing goes on (no clock, no events): fatal, said.
    if let Err(e) = mem.set_fixmap(Fixmap::SharedInfo as usize, Some(Mfn(si >> 12))) {
        crate::fatal!("suspend: cannot map shared_info {si:#x} again: {}", e.error);
    }
    if !new {
        mem.start_info_page().rings_to_mfns();
    }
    let epoch = if new { next_epoch() } else { super::epoch() };
    crate::time::leave_window(new);
    let p2m = crate::mm::p2m::publish_p2m(mem).map(|_| ());
    let gnt = grants.map(|g| g.resume(mem, new));
    if new {
        let _ = crate::hypercall::stop_periodic_timer();
        crate::mm::resume_new(mem);
        new_domain(boot, info);
    }
    let mono_after = crate::time::now_ns();
    if let Err(e) = p2m {
        crate::warn!("suspend: p2m not published after the resume: {e}");
    }
    if let Some(Err(e)) = gnt {
        crate::warn!("suspend: grant table not set up again: {e}");
    }
    Ok(Resumed {
        kind,
        epoch,
        rc,
        ms: mono_after.saturating_sub(mono_before) / 1_000_000,
        mono_before,
        mono_after,
    })
}

/// In a new domain: the start_info copy, event channels unmasked, the executor's port
/// registrations dropped, the console and xenstore on their new ports (xenstore's
/// watches set again).
fn new_domain(boot: &mut Boot, info: Option<Result<ResumeInfo, StartInfoError>>) {
    crate::evtchn::unmask_all();
    crate::exec::reset_ports();
    let i = match info {
        Some(Ok(i)) => i,
        Some(Err(e)) => {
            crate::warn!("suspend: the new domain's start_info refused: {e}");
            return;
        }
        None => return,
    };
    {
        let si = boot.start_info_mut();
        si.shared_info_maddr = i.shared_info_maddr;
        si.store_mfn = i.store_mfn;
        si.store_evtchn = i.store_evtchn;
        si.console = xenpv_protocol::start_info::ConsoleInfo::DomU {
            mfn: i.console_mfn,
            evtchn: i.console_evtchn,
        };
    }
    crate::console::ring::set_port(i.console_evtchn);
    if let Some(xs) = boot.xenstore() {
        let (sent, failed) = xs.resume_new(i.store_evtchn);
        if failed > 0 {
            crate::warn!(
                "suspend: {failed} of {} xenstore watches not set again",
                sent + failed
            );
        }
    }
}

/// vCPU 0's `evtchn_upcall_mask`: 1 over the suspend (as Linux), then what it was
/// (the runtime registers no event callback, so it never clears it: Xen would jump to
/// a callback that is not there).
fn upcall_mask() -> u8 {
    let si = Fixmap::SharedInfo.va().as_ptr::<xen_sys::shared_info>();
    // SAFETY: shared_info is mapped at its fixmap slot when this runs (before the window).
    unsafe { core::ptr::addr_of!((*si).vcpu_info[0].evtchn_upcall_mask).read_volatile() }
}

/// Set vCPU 0's `evtchn_upcall_mask` (see [`upcall_mask`]).
fn set_upcall_mask(v: u8) {
    let si = Fixmap::SharedInfo.va().as_mut_ptr::<xen_sys::shared_info>();
    // SAFETY: shared_info is mapped at its fixmap slot whenever this runs (before the
    // window's unmap, after the resume's map); the byte is the guest's to write.
    unsafe {
        core::ptr::addr_of_mut!((*si).vcpu_info[0].evtchn_upcall_mask).write_volatile(v);
    }
}
