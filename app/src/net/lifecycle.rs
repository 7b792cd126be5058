//! Each vif's device lifecycle: bringing the vifs up together, noticing a backend that
//! closed, vanished or broke a ring, closing and re-attaching without waiting on any
//! backend, and closing them all at the end.

extern crate alloc;

use super::vif_word;
use alloc::boxed::Box;
use alloc::vec::Vec;
use xenpv_contract::report::Writer;
use xenpv_contract::status::AppStatus;
use xenpv_rt::gnttab::GrantTable;
use xenpv_rt::net::netfront::{
    CloseStep, ClosingNetfront, ConnectStep, Netfront, PendingNetfront, CONNECT_NS,
};
use xenpv_rt::time::now_ns;
use xenpv_rt::xenbus::State;
use xenpv_rt::xenstore::{Xenstore, XsError};
use xenpv_rt::{println, PageLink};

use super::stats::{self, Stats};
use super::vif::Vif;
use super::REATTACH_EVERY_NS;

/// `control/shutdown`'s request, acknowledged (cleared) as Linux does; `None` if empty
/// or absent. An error is for the caller to try again: a request must not be lost.
pub(super) fn shutdown_request(
    xs: &mut Xenstore<PageLink>,
) -> Result<Option<heapless::String<16>>, XsError> {
    let v = match xs.read("control/shutdown") {
        Ok(v) => v,
        Err(XsError::Xenstore(e)) if e == "ENOENT" => return Ok(None),
        Err(e) => return Err(e),
    };
    let v = v.strip_suffix(b"\0").unwrap_or(&v);
    if v.is_empty() {
        return Ok(None);
    }
    let _ = xs.write("control/shutdown", b"");
    let mut s = heapless::String::new();
    for &b in v.iter().take(16) {
        let _ = s.push(if b.is_ascii_graphic() { b as char } else { '?' });
    }
    Ok(Some(s))
}

/// Why a vif is being closed.
#[derive(Clone, Copy)]
pub(super) enum CloseWhy {
    /// Its backend closed or vanished (`None`), or corrupted a ring.
    Detach(Option<State>),
    /// A re-attach failed: what it set up is taken down.
    FailedConnect,
}

/// A vif's device lifecycle, beside its serving state (`Vif::nic`). A connect or close
/// in progress is stepped when a backend's watch fired or its time came (a few xenstore
/// requests, never a wait for the backend), so a backend that never answers costs the
/// other vifs nothing.
pub(super) enum Life {
    /// Connected (`Vif::nic` is set), or detached and looking for its backend again at
    /// `Vif::next_probe`.
    Idle,
    /// Re-attaching: stepped at the time given (or on a backend event); when it began.
    Connecting(Box<PendingNetfront>, u64, u64),
    /// Closing: stepped at the time given (or on a backend event); when it began, why.
    Closing(Box<ClosingNetfront>, u64, u64, CloseWhy),
}

/// Time until the first connect or close in progress is due for a step.
pub(super) fn life_delay_ns(life: &[Life]) -> u64 {
    let t = now_ns();
    life.iter()
        .filter_map(|l| match l {
            Life::Idle => None,
            Life::Connecting(_, at, _) | Life::Closing(_, at, ..) => Some(at.saturating_sub(t)),
        })
        .min()
        .unwrap_or(u64::MAX)
}

/// Bring up vifs `0..n` together: each, and how long it took (ms). `Err(status)` to
/// exit with: 9 if one failed, 0 if the toolstack asked to stop meanwhile.
pub(super) fn connect_all(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    n: usize,
) -> Result<Vec<(Box<Netfront>, u64)>, i32> {
    let t0 = now_ns();
    let mut pending: Vec<Option<(Box<PendingNetfront>, u64)>> = Vec::new();
    for i in 0..n {
        match Netfront::begin_connect(mem, gt, xs, i as u32) {
            Ok(p) => pending.push(Some((Box::new(p), 0))),
            Err(e) => {
                println!("net: vif{i}: {e}");
                return Err(AppStatus::Device.into());
            }
        }
    }
    let mut nics: Vec<Option<(Box<Netfront>, u64)>> = (0..n).map(|_| None).collect();
    let mut seen = u64::MAX; // step everything at first
    while nics.iter().any(Option::is_none) {
        let mark = xs.events_arrived();
        let woke = mark != seen;
        seen = mark;
        let mut next = u64::MAX;
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some((p, wake_at)) = slot.take() else {
                continue;
            };
            if !woke && now_ns() < wake_at {
                next = next.min(wake_at);
                *slot = Some((p, wake_at));
                continue;
            }
            match p.step(xs) {
                ConnectStep::Pending(p, w) => {
                    next = next.min(w);
                    *slot = Some((Box::new(p), w));
                }
                ConnectStep::Connected(nic) => {
                    nics[i] = Some((Box::new(nic), (now_ns() - t0) / 1_000_000));
                }
                ConnectStep::Failed(e, closing) => {
                    println!("net: vif{i}: {e}");
                    closing.finish(mem, gt, xs);
                    return Err(AppStatus::Device.into());
                }
            }
        }
        // A stop request while the vifs come up (or events lost: look anyway).
        let mut stop = false;
        loop {
            match xs.next_event(now_ns()) {
                Ok(Some(ev)) => stop |= ev.token.as_str() == "shutdown",
                Ok(None) => break,
                Err(XsError::EventsLost) => stop = true,
                Err(_) => break,
            }
        }
        if stop {
            if let Ok(Some(how)) = shutdown_request(xs) {
                println!(
                    "{}",
                    Writer::new("net")
                        .word("shutdown")
                        .word("requested")
                        .field("how", how.as_str())
                        .field("while", "connecting")
                );
                for (nic, _) in nics.iter_mut().filter_map(Option::take) {
                    nic.close(mem, gt, xs);
                }
                for (p, _) in pending.iter_mut().filter_map(Option::take) {
                    p.abort().finish(mem, gt, xs);
                }
                return Err(0);
            }
        }
        if nics.iter().any(Option::is_none) && next != u64::MAX {
            let _ = xs.wait_event(mark, next);
        }
    }
    Ok(nics.into_iter().flatten().collect())
}

/// One round of a vif's lifecycle: notice a backend that closed, vanished or broke a
/// ring, step a close or a re-attach in progress, or look for the backend again.
pub(super) fn lifecycle(
    v: &mut Vif,
    life: &mut Life,
    check_backends: bool,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    st: &mut Stats,
) {
    let t = now_ns();
    *life = match core::mem::replace(life, Life::Idle) {
        Life::Idle if v.nic.is_some() => {
            let broken = v.nic.as_ref().and_then(|n| n.broken());
            if let Some(e) = broken {
                println!(
                    "net: vif{} stopped: the backend corrupted a ring ({e})",
                    v.index
                );
            }
            if check_backends || broken.is_some() {
                check_backend(v, xs)
            } else {
                Life::Idle
            }
        }
        Life::Idle if t >= v.next_probe => {
            v.next_probe = t + REATTACH_EVERY_NS;
            reattach(v, mem, gt, xs)
        }
        Life::Connecting(p, wake_at, t0) if check_backends || t >= wake_at => match p.step(xs) {
            ConnectStep::Pending(p, w) => Life::Connecting(Box::new(p), w, t0),
            ConnectStep::Connected(nic) => {
                st.reattached += 1;
                println!(
                    "{}",
                    Writer::new("net")
                        .word(&vif_word(v.index))
                        .word("reattached")
                        .field("ms", &((now_ns() - t0) / 1_000_000))
                        .field("backend", &xenpv_rt::escape::Escaped(&nic.backend().path))
                );
                v.nic = Some(Box::new(nic));
                Life::Idle
            }
            ConnectStep::Failed(e, closing) => {
                println!("net: vif{} reattach failed (retrying): {e}", v.index);
                v.next_probe = now_ns() + CONNECT_NS / 10;
                Life::Closing(Box::new(closing), 0, now_ns(), CloseWhy::FailedConnect)
            }
        },
        Life::Closing(c, wake_at, t0, why) if check_backends || t >= wake_at => {
            match c.step(mem, gt, xs) {
                CloseStep::Pending(c, w) => Life::Closing(Box::new(c), w, t0, why),
                CloseStep::Closed(closed) => {
                    if let CloseWhy::Detach(state) = why {
                        st.detached += 1;
                        println!(
                            "{}",
                            Writer::new("net")
                                .word(&vif_word(v.index))
                                .word("detached")
                                .field("backend_state", &StateText(state.unwrap_or(State::Unknown)))
                                .field("closed_ms", &((now_ns() - t0) / 1_000_000))
                                .field("pages_kept", &closed.pages_kept)
                                .field("unacknowledged", &closed.unacknowledged)
                                .field("grants_deferred", &gt.deferred())
                        );
                    } else if closed.pages_kept > 0 {
                        println!(
                            "net: vif{} closed with {} pages still granted",
                            v.index, closed.pages_kept
                        );
                    }
                    v.next_probe = v.next_probe.max(now_ns() + REATTACH_EVERY_NS);
                    Life::Idle
                }
            }
        }
        other => other,
    };
}

/// A backend that closed or vanished, or a ring it corrupted: start closing the vif
/// (it reconnects later).
fn check_backend(v: &mut Vif, xs: &mut Xenstore<PageLink>) -> Life {
    let Some(nic) = v.nic.as_ref() else {
        return Life::Idle;
    };
    let state = nic.backend_state(xs);
    let broken = nic.broken().is_some();
    let gone = matches!(state, Ok(None)) || matches!(state, Ok(Some(s)) if s.closing());
    if !gone && !broken {
        return Life::Idle;
    }
    let Some(nic) = v.nic.take() else {
        return Life::Idle;
    };
    let t = now_ns();
    let state = state.ok().flatten();
    Life::Closing(Box::new(nic.begin_close()), t, t, CloseWhy::Detach(state))
}

/// Pages a backend kept at close (the grant table's deferred list): end the grants it
/// has let go of since, and say how many remain while any do.
pub(super) fn retry_kept_grants(mem: &mut xenpv_rt::mm::Memory, gt: &mut GrantTable) {
    if gt.deferred() == 0 {
        return;
    }
    let back = gt.retry_deferred(mem);
    if back > 0 {
        println!(
            "net: {back} kept grants ended, their pages freed; grants_deferred={}",
            gt.deferred()
        );
    }
}

/// A detached vif whose backend is back (InitWait): start connecting again.
fn reattach(
    v: &mut Vif,
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
) -> Life {
    let dev = xenpv_rt::xenbus::Device::new("vif", v.index);
    let Ok(be) = xenpv_rt::xenbus::probe(xs, &dev) else {
        return Life::Idle;
    };
    match xenpv_rt::xenbus::backend_state(xs, &dev, &be) {
        Ok(Some(State::InitWait)) => {}
        _ => return Life::Idle,
    }
    match Netfront::begin_connect(mem, gt, xs, v.index) {
        Ok(p) => Life::Connecting(Box::new(p), 0, now_ns()),
        Err(e) => {
            println!("net: vif{} reattach failed (retrying): {e}", v.index);
            v.next_probe = now_ns() + CONNECT_NS / 10;
            Life::Idle
        }
    }
}

/// Print the counters, then close every vif together (each within `CLOSE_NS`), those
/// being re-attached or detached included.
pub(super) fn finish(
    list: &mut [Vif],
    life: &mut [Life],
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    xs: &mut Xenstore<PageLink>,
    st: &Stats,
) -> i32 {
    stats::print(st, list.iter().map(|v| &v.frags));
    let mut closing: Vec<(u32, Box<ClosingNetfront>, u64)> = Vec::new();
    for (v, l) in list.iter_mut().zip(life.iter_mut()) {
        if let Some(nic) = v.nic.take() {
            stats::print_vif(v.index, &nic);
            closing.push((v.index, Box::new(nic.begin_close()), 0));
        }
        match core::mem::replace(l, Life::Idle) {
            Life::Connecting(p, ..) => closing.push((v.index, Box::new(p.abort()), 0)),
            Life::Closing(c, ..) => closing.push((v.index, c, 0)),
            Life::Idle => {}
        }
    }
    while !closing.is_empty() {
        let mark = xs.events_arrived();
        let mut next = u64::MAX;
        let mut left = Vec::new();
        for (i, c, wake_at) in closing {
            if now_ns() < wake_at {
                next = next.min(wake_at);
                left.push((i, c, wake_at));
                continue;
            }
            match c.step(mem, gt, xs) {
                CloseStep::Pending(c, w) => {
                    next = next.min(w);
                    left.push((i, Box::new(c), w));
                }
                CloseStep::Closed(closed) => {
                    if closed.pages_kept > 0 {
                        println!(
                            "net: vif{i} closed with {} pages still granted",
                            closed.pages_kept
                        );
                    }
                }
            }
        }
        closing = left;
        if !closing.is_empty() {
            let _ = xs.wait_event(mark, next);
        }
    }
    0
}

struct StateText(State);

impl core::fmt::Display for StateText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            State::Unknown => write!(f, "gone"),
            s => write!(f, "{s:?}"),
        }
    }
}
