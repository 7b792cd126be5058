//! Event channels under Xen: one-shot timers (count and spacing) firing while the app
//! formats and checks numbers, and a loopback channel (alloc_unbound to ourselves,
//! bind_interdomain, send both ways, mask/unmask, close).

use core::fmt::Write;
use xenpv_contract::report;
use xenpv_contract::report::Writer;
use xenpv_rt::evtchn::{self, Timer};
use xenpv_rt::hypercall::DOMID_SELF;
use xenpv_rt::println;
use xenpv_rt::time::now_ns;

/// Xen may fire a timer up to its `timer_slop` (50 µs by default) early.
const SLOP_NS: u64 = 100_000;

/// Format `i` and a float derived from it, parse them back: work that uses the red zone.
fn fmt_check(i: u64) -> bool {
    let mut s: heapless::String<64> = heapless::String::new();
    let x = i as f64 * core::f64::consts::PI;
    if write!(s, "{i} {x:.3}").is_err() {
        return false;
    }
    let mut parts = s.split(' ');
    let back: Option<u64> = parts.next().and_then(|p| p.parse().ok());
    let xb: Option<f64> = parts.next().and_then(|p| p.parse().ok());
    back == Some(i) && xb.is_some_and(|v| (v - x).abs() < 0.001)
}

fn timer(n: u64, period_ns: u64) -> Result<bool, evtchn::EvtchnError> {
    let t = Timer::new()?;
    let (mut fired, mut during, mut fmt_ok, mut fmt_bad) = (0u64, 0u64, 0u64, 0u64);
    let (mut min_gap, mut max_late, mut early) = (u64::MAX, 0u64, 0u64);
    let mut last = now_ns();
    for i in 0..n {
        let deadline = now_ns() + period_ns;
        t.set(deadline)?;
        // Every other round keeps computing until Xen has raised the event: it arrives
        // in the middle of the work (or the round gives up after a second).
        loop {
            if fmt_check(i) {
                fmt_ok += 1;
            } else {
                fmt_bad += 1;
            }
            if i % 2 == 0 || evtchn::is_pending(t.port) || now_ns() > deadline + 1_000_000_000 {
                break;
            }
        }
        if evtchn::is_pending(t.port) {
            during += 1;
        }
        if !t.wait(deadline + 1_000_000_000)? {
            println!("events: timer {i} did not fire within 1 s of its deadline");
            break;
        }
        let now = now_ns();
        fired += 1;
        if now + SLOP_NS < deadline {
            early += 1;
        }
        max_late = max_late.max(now.saturating_sub(deadline));
        if i > 0 {
            min_gap = min_gap.min(now - last);
        }
        last = now;
    }
    let spacing_ok = min_gap + SLOP_NS >= period_ns;
    println!(
        "{}",
        Writer::new("events")
            .word("timer")
            .field("fired", &format_args!("{fired}/{n}"))
            .field("period_us", &(period_ns / 1000))
            .field("min_spacing_us", &(min_gap / 1000))
            .field("max_late_us", &(max_late / 1000))
            .field("early", &early)
            .field("during_compute", &during)
            .field("fmt_checks", &fmt_ok)
            .field("fmt_bad", &fmt_bad)
    );
    Ok(fired == n && spacing_ok && early == 0 && fmt_bad == 0 && during >= n / 2)
}

fn loopback() -> Result<bool, evtchn::EvtchnError> {
    let self_dom = DOMID_SELF as u16;
    let a = evtchn::alloc_unbound(self_dom)?;
    let b = evtchn::bind_interdomain(self_dom, a)?;
    // Xen marks the newly bound port pending (a notification sent to the unbound port
    // may have been lost): take that one first.
    let bound_pending = evtchn::clear(b);
    let soon = || now_ns() + 1_000_000_000;
    evtchn::send(b)?;
    let b_to_a = evtchn::wait(&[a], soon())? == Some(a) && !evtchn::is_pending(b);
    evtchn::send(a)?;
    let a_to_b = evtchn::wait(&[b], soon())? == Some(b) && !evtchn::is_pending(a);
    // Masked: pending but not reported; unmasking reports it.
    evtchn::mask(a)?;
    evtchn::send(b)?;
    let mut list = [0u32; 16];
    let n = evtchn::pending(&mut list);
    let masked = evtchn::is_pending(a) && !list[..n.min(16)].contains(&a);
    evtchn::unmask(a)?;
    let n = evtchn::pending(&mut list);
    let unmasked = list[..n.min(16)].contains(&a) && evtchn::clear(a);
    evtchn::close(b)?;
    evtchn::close(a)?;
    // A closed port cannot be signalled.
    let closed = evtchn::send(b).is_err();
    println!(
        "{}",
        Writer::new("events")
            .word("loopback")
            .field("a", &a)
            .field("b", &b)
            .field("bind_marks_pending", ok(bound_pending))
            .field("b_to_a", ok(b_to_a))
            .field("a_to_b", ok(a_to_b))
            .field("masked", ok(masked))
            .field("unmasked", ok(unmasked))
            .field("closed", ok(closed))
    );
    Ok(b_to_a && a_to_b && masked && unmasked && closed)
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAIL"
    }
}

/// Run both; prints a verdict line and returns whether everything held.
pub fn run(n: u64, period_us: u64) -> bool {
    let t = timer(n, period_us * 1000).unwrap_or_else(|e| {
        println!("events: timer: {e}");
        false
    });
    let l = loopback().unwrap_or_else(|e| {
        println!("events: loopback: {e}");
        false
    });
    println!(
        "{}",
        report!("events", verdict = if t && l { "PASS" } else { "FAIL" })
    );
    t && l
}
