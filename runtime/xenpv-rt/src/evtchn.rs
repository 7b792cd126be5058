//! Event channels: the live operations (hypercalls, the bitmaps in shared_info).
//!
//! An event channel is Xen's doorbell between two ends (another domain's port, a virtual
//! IRQ such as `VIRQ_TIMER`, or a loopback). Its state is two bits per port in the 2-level
//! ABI: `evtchn_pending` and `evtchn_mask` in the `shared_info` page (`xen.h`), which the
//! runtime maps at fixmap slot 0. The operations are `event_channel_op` commands from
//! `event_channel.h` (the crate-private `hypercall::event_channel_op`).
//!
//! The runtime never takes event upcalls: no callback is registered, and it waits with
//! `SCHEDOP_poll` ([`wait`]), then reads and clears pending bits itself. The port
//! arithmetic and bitmap scan are `xenpv_protocol::evtchn`, re-exported here ([`Port`],
//! [`NR_PORTS`], [`checked`], [`scan`], [`EvtchnError`]).

use crate::hypercall;
use crate::mm::layout::Fixmap;
use core::sync::atomic::{AtomicU64, Ordering};
use xen_sys as xen;
pub use xenpv_protocol::evtchn::*;

const DOMID_SELF: u16 = hypercall::DOMID_SELF as u16;

/// `event_channel_op(cmd, arg)`, the error named `name`. Only called with the struct
/// `cmd` takes.
fn op<T>(name: &'static str, cmd: u32, arg: &mut T) -> Result<(), EvtchnError> {
    hypercall::event_channel_op(cmd, arg).map_err(|e| EvtchnError::Xen(name, e))
}

/// shared_info, at its fixmap slot.
fn shared() -> *mut xen::shared_info {
    Fixmap::SharedInfo.va().as_mut_ptr::<xen::shared_info>()
}

/// The pending (or mask) word of `port`, as an atomic. `port` must be below [`NR_PORTS`].
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

/// `EVTCHNOP_bind_virq`: bind virtual IRQ `virq` (a `VIRQ_*` number from `xen.h`, e.g.
/// `VIRQ_TIMER`, 0) on vCPU 0 to a fresh port. Xen refuses a VIRQ that is already bound.
pub fn bind_virq(virq: u32) -> Result<Port, EvtchnError> {
    let mut a = xen::evtchn_bind_virq {
        virq,
        vcpu: 0,
        port: 0,
    };
    op("bind_virq", xen::EVTCHNOP_bind_virq, &mut a)?;
    checked(a.port)
}

/// `EVTCHNOP_alloc_unbound`: a fresh port that `remote_dom` may bind to with
/// [`bind_interdomain`] ([`hypercall::DOMID_SELF`] for a loopback); the port number is
/// passed to the peer out of band (usually through xenstore).
pub fn alloc_unbound(remote_dom: u16) -> Result<Port, EvtchnError> {
    let mut a = xen::evtchn_alloc_unbound {
        dom: DOMID_SELF,
        remote_dom,
        port: 0,
    };
    op("alloc_unbound", xen::EVTCHNOP_alloc_unbound, &mut a)?;
    checked(a.port)
}

/// `EVTCHNOP_bind_interdomain`: connect a fresh local port to `remote_port` of
/// `remote_dom`, which that domain allocated for us with `alloc_unbound`.
pub fn bind_interdomain(remote_dom: u16, remote_port: Port) -> Result<Port, EvtchnError> {
    let mut a = xen::evtchn_bind_interdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    op("bind_interdomain", xen::EVTCHNOP_bind_interdomain, &mut a)?;
    checked(a.local_port)
}

/// `EVTCHNOP_send`: notify the other end of `port` (sets its pending bit there).
pub fn send(port: Port) -> Result<(), EvtchnError> {
    let mut a = xen::evtchn_send { port };
    op("send", xen::EVTCHNOP_send, &mut a)
}

/// `EVTCHNOP_close`: close `port`. A VIRQ bound to it is unbound, an interdomain peer's
/// end goes back to unbound, and the port number may be handed out again.
pub fn close(port: Port) -> Result<(), EvtchnError> {
    let mut a = xen::evtchn_close { port };
    op("close", xen::EVTCHNOP_close, &mut a)
}

/// Mask `port` in shared_info (its events stay pending but are not reported by
/// [`pending`]); masking is the guest's own bit, no hypercall needed.
pub fn mask(port: Port) -> Result<(), EvtchnError> {
    checked(port)?;
    word(true, port).fetch_or(1 << (port % 64), Ordering::SeqCst);
    Ok(())
}

/// `EVTCHNOP_unmask`: unmask `port` through Xen, which re-marks the vCPU if the port is
/// pending.
pub fn unmask(port: Port) -> Result<(), EvtchnError> {
    let mut a = xen::evtchn_unmask {
        port: checked(port)?,
    };
    op("unmask", xen::EVTCHNOP_unmask, &mut a)
}

/// Unmask every port (after a resume in a new domain, where Xen starts with every port
/// masked, and ports allocated later keep their mask bit): the mask words cleared, then
/// each pending port unmasked through Xen so that its event is delivered. Returns the
/// ports found pending.
pub fn unmask_all() -> usize {
    let mut pending = 0;
    for i in 0..NR_PORTS / 64 {
        word(true, i * 64).store(0, Ordering::SeqCst);
        let mut bits = word(false, i * 64).load(Ordering::SeqCst);
        while bits != 0 {
            let port = i * 64 + bits.trailing_zeros();
            bits &= bits - 1;
            pending += 1;
            let _ = unmask(port);
        }
    }
    pending
}

/// Whether `port`'s pending bit is set (masked or not); `false` for a port out of range.
pub fn is_pending(port: Port) -> bool {
    port < NR_PORTS && word(false, port).load(Ordering::SeqCst) & (1 << (port % 64)) != 0
}

/// Clear `port`'s pending bit; says whether it was set (`false` for a port out of range).
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
/// system time passes `deadline_ns` (`Ok(None)`). Delivery stays masked throughout: the
/// wait is `SCHEDOP_poll`, re-checked after every return.
///
/// At most 8 ports (what `SCHEDOP_poll` is given here); more is
/// [`EvtchnError::TooManyPorts`]. Before the takeover has mapped shared_info it yields
/// once and returns `Ok(None)`: the caller re-checks what it waits for.
pub fn wait(ports: &[Port], deadline_ns: u64) -> Result<Option<Port>, EvtchnError> {
    let (mut buf, n) = wait_set(ports)?;
    if !crate::time::ready() {
        // shared_info is not mapped yet: its pending bits cannot be read. Give the CPU
        // away once and let the caller re-check what it waits for (a ring's indices).
        hypercall::yield_now();
        return Ok(None);
    }
    loop {
        if let Some(&p) = buf[..n].iter().find(|&&p| clear(p)) {
            return Ok(Some(p));
        }
        if crate::time::now_ns() >= deadline_ns {
            return Ok(None);
        }
        // Returns when a port is pending or at the deadline (or spuriously): re-check.
        hypercall::poll(&mut buf[..n], crate::time::to_xen(deadline_ns))
            .map_err(|e| EvtchnError::Xen("SCHEDOP_poll", e))?;
    }
}

/// The one-shot timer: `VIRQ_TIMER` bound, Xen's periodic tick stopped.
///
/// There is one timer per vCPU in Xen: a second [`Timer::new`] fails (the VIRQ is already
/// bound), and [`Timer::set`] replaces the previous deadline.
pub struct Timer {
    /// The port `VIRQ_TIMER` is bound to.
    pub port: Port,
}

impl Timer {
    /// Stop Xen's periodic 100 Hz tick (`VCPUOP_stop_periodic_timer`) and bind
    /// `VIRQ_TIMER`, so that the port fires only at deadlines set here.
    pub fn new() -> Result<Timer, EvtchnError> {
        hypercall::stop_periodic_timer()
            .map_err(|e| EvtchnError::Xen("VCPUOP_stop_periodic_timer", e))?;
        Ok(Timer {
            port: bind_virq(xen::VIRQ_TIMER)?,
        })
    }
    /// Fire once at Xen system time `deadline_ns` ([`now_ns`](crate::time::now_ns) is
    /// the time now) with `set_timer_op`; 0 cancels. A deadline farther than Xen keeps
    /// (2^50 ns, about 13 days) fires at that limit instead of at once
    /// ([`timer_deadline`]).
    pub fn set(&self, deadline_ns: u64) -> Result<(), EvtchnError> {
        let at = match deadline_ns {
            0 => 0,
            d => timer_deadline(d, crate::time::now_ns()),
        };
        hypercall::set_timer_op(crate::time::to_xen(at))
            .map_err(|e| EvtchnError::Xen("set_timer_op", e))
    }
    /// Bind `VIRQ_TIMER` again and stop Xen's periodic tick: after a resume in a new
    /// domain, where the old port is gone (and the tick back on).
    pub fn rebind(&mut self) -> Result<(), EvtchnError> {
        *self = Timer::new()?;
        Ok(())
    }
    /// Wait for the timer to fire, giving up at Xen system time `give_up_ns`: `true` if
    /// it fired (its pending bit is cleared), `false` if `give_up_ns` came first.
    pub fn wait(&self, give_up_ns: u64) -> Result<bool, EvtchnError> {
        wait(&[self.port], give_up_ns).map(|p| p.is_some())
    }
}
