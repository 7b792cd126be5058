//! Event channels: the live operations (hypercalls, the bitmaps in shared_info).

use crate::hypercall;
use crate::mm::layout::Fixmap;
use core::sync::atomic::{AtomicU64, Ordering};
use xen_sys as xen;
pub use xenpv_protocol::evtchn::*;

const DOMID_SELF: u16 = hypercall::DOMID_SELF as u16;

fn op<T>(name: &'static str, cmd: u32, arg: &mut T) -> Result<(), EvtchnError> {
    hypercall::event_channel_op(cmd, arg).map_err(|e| EvtchnError::Xen(name, e))
}

fn shared() -> *mut xen::shared_info {
    Fixmap::SharedInfo.va() as *mut xen::shared_info
}

/// The pending (or mask) word of `port`, as an atomic.
fn word(mask: bool, port: Port) -> &'static AtomicU64 {
    let s = shared();
    // SAFETY: shared_info is mapped at its fixmap slot for the guest's lifetime; the
    // bitmaps are 8-byte aligned words that Xen updates with atomic operations, so
    // we access them only atomically too. port < NR_PORTS (callers check) keeps the
    // index in range.
    unsafe {
        let base = if mask {
            core::ptr::addr_of_mut!((*s).evtchn_mask) as *mut u64
        } else {
            core::ptr::addr_of_mut!((*s).evtchn_pending) as *mut u64
        };
        AtomicU64::from_ptr(base.add((port / 64) as usize))
    }
}

/// Bind a VIRQ on vCPU 0.
pub fn bind_virq(virq: u32) -> Result<Port, EvtchnError> {
    let mut a = xen::evtchn_bind_virq {
        virq,
        vcpu: 0,
        port: 0,
    };
    op("bind_virq", xen::EVTCHNOP_bind_virq, &mut a)?;
    checked(a.port)
}

/// A port `remote_dom` may bind to (`hypercall::DOMID_SELF` for a loopback).
pub fn alloc_unbound(remote_dom: u16) -> Result<Port, EvtchnError> {
    let mut a = xen::evtchn_alloc_unbound {
        dom: DOMID_SELF,
        remote_dom,
        port: 0,
    };
    op("alloc_unbound", xen::EVTCHNOP_alloc_unbound, &mut a)?;
    checked(a.port)
}

/// Connect to `remote_port` of `remote_dom`.
pub fn bind_interdomain(remote_dom: u16, remote_port: Port) -> Result<Port, EvtchnError> {
    let mut a = xen::evtchn_bind_interdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    op("bind_interdomain", xen::EVTCHNOP_bind_interdomain, &mut a)?;
    checked(a.local_port)
}

/// Notify the other end of `port`.
pub fn send(port: Port) -> Result<(), EvtchnError> {
    let mut a = xen::evtchn_send { port };
    op("send", xen::EVTCHNOP_send, &mut a)
}

pub fn close(port: Port) -> Result<(), EvtchnError> {
    let mut a = xen::evtchn_close { port };
    op("close", xen::EVTCHNOP_close, &mut a)
}

/// Mask `port` (its events stay pending but are not reported by [`pending`]).
pub fn mask(port: Port) -> Result<(), EvtchnError> {
    checked(port)?;
    word(true, port).fetch_or(1 << (port % 64), Ordering::SeqCst);
    Ok(())
}

/// Unmask `port` through Xen, which re-marks the vCPU if the port is pending.
pub fn unmask(port: Port) -> Result<(), EvtchnError> {
    let mut a = xen::evtchn_unmask {
        port: checked(port)?,
    };
    op("unmask", xen::EVTCHNOP_unmask, &mut a)
}

pub fn is_pending(port: Port) -> bool {
    port < NR_PORTS && word(false, port).load(Ordering::SeqCst) & (1 << (port % 64)) != 0
}

/// Clear `port`'s pending bit; says whether it was set.
pub fn clear(port: Port) -> bool {
    port < NR_PORTS
        && word(false, port).fetch_and(!(1 << (port % 64)), Ordering::SeqCst) & (1 << (port % 64))
            != 0
}

/// Pending, unmasked ports into `out`; how many there were (`out` may hold fewer).
pub fn pending(out: &mut [Port]) -> usize {
    let (mut p, mut m) = ([0u64; 64], [0u64; 64]);
    for i in 0..64 {
        p[i] = word(false, i as u32 * 64).load(Ordering::SeqCst);
        m[i] = word(true, i as u32 * 64).load(Ordering::SeqCst);
    }
    let mut n = 0;
    for port in scan(&p, &m) {
        if let Some(slot) = out.get_mut(n) {
            *slot = port;
        }
        n += 1;
    }
    n
}

/// Block until one of `ports` is pending (its bit is cleared and it is returned) or Xen
/// system time passes `deadline_ns` (`Ok(None)`). Delivery stays masked throughout.
pub fn wait(ports: &[Port], deadline_ns: u64) -> Result<Option<Port>, EvtchnError> {
    let mut buf = [0u32; 8];
    let n = ports.len().min(buf.len());
    buf[..n].copy_from_slice(&ports[..n]);
    loop {
        if let Some(&p) = buf[..n].iter().find(|&&p| clear(p)) {
            return Ok(Some(p));
        }
        if crate::time::now_ns() >= deadline_ns {
            return Ok(None);
        }
        // Returns when a port is pending or at the deadline (or spuriously): re-check.
        hypercall::poll(&mut buf[..n], deadline_ns)
            .map_err(|e| EvtchnError::Xen("SCHEDOP_poll", e))?;
    }
}

/// The one-shot timer: VIRQ_TIMER bound, Xen's periodic tick stopped.
pub struct Timer {
    pub port: Port,
}

impl Timer {
    pub fn new() -> Result<Timer, EvtchnError> {
        hypercall::stop_periodic_timer()
            .map_err(|e| EvtchnError::Xen("VCPUOP_stop_periodic_timer", e))?;
        Ok(Timer {
            port: bind_virq(xen::VIRQ_TIMER)?,
        })
    }
    /// Fire once at Xen system time `deadline_ns`.
    pub fn set(&self, deadline_ns: u64) -> Result<(), EvtchnError> {
        hypercall::set_timer_op(deadline_ns).map_err(|e| EvtchnError::Xen("set_timer_op", e))
    }
    /// Wait for the timer to fire, giving up at `give_up_ns`.
    pub fn wait(&self, give_up_ns: u64) -> Result<bool, EvtchnError> {
        wait(&[self.port], give_up_ns).map(|p| p.is_some())
    }
}
