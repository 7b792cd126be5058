//! Guest metrics in xenstore (feature `async`, domU only): what a Linux guest's agent
//! publishes for the toolstack — the PV "addons" version, the OS name and version, memory
//! total and free, each vif's IPv4 addresses, `data/updated` — so that XAPI, Xen
//! Orchestra and `xenstore-read` in dom0 see a xenpv-rt guest as they see a Linux guest
//! with the xen-guest-agent. The keys and the diffing are
//! [`xenpv_protocol::metrics`]'s; this is the task that gathers a snapshot and applies
//! the batch.
//!
//! The task publishes at boot, every [`METRICS_PERIOD_NS`], every [`ADDRESS_POLL_NS`]
//! while a vif has no address yet (a DHCP lease is published within about a second of
//! arriving), and soon after [`refresh_soon`] (the balloon calls it after each change; a
//! vif calls it when it connects, is detached, and is attached again). Only what changed
//! is written, in one transaction; every [`FULL_EVERY`]th period rewrites every key. A
//! xenstore error never stops it: counted, said in one line, and the batch done again
//! next time.

use crate::device::Devices;
use crate::exec::Spawner;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Poll, Waker};
use embassy_futures::select::{select, select3, Either3};
use embassy_time::{Duration, Timer};
use xenpv_protocol::metrics::{self, Plan, Publisher, Refused, Snapshot, VifAddrs};

/// How often the metrics are published (only what changed is written). Ten seconds:
/// XAPI's memory figures and the console stay quiet, and a change made by the guest
/// itself (a balloon step, a new vif) is published at once through [`refresh_soon`].
pub const METRICS_PERIOD_NS: u64 = 10_000_000_000;
/// How often the vifs' addresses are looked at while some vif has none (a DHCP lease
/// still to come).
pub const ADDRESS_POLL_NS: u64 = 1_000_000_000;
/// Every this many periods, every key is written again, changed or not (something else
/// may have removed or changed one).
pub const FULL_EVERY: u64 = 6;
/// How soon after [`refresh_soon`] the batch goes out: calls in a burst make one batch.
pub const SOON_NS: u64 = 50_000_000;

/// In a new domain, how long the metrics wait for a vif to be back before publishing.
const REPUBLISH_WAIT_NS: u64 = 2_000_000_000;

/// A refresh was asked for and not done yet.
static SOON: AtomicBool = AtomicBool::new(false);
/// The metrics task, waiting (woken by [`refresh_soon`]).
static WAKER: spin::Mutex<Option<Waker>> = spin::Mutex::new(None);

/// Publish the metrics again soon (within [`SOON_NS`] and the time a batch takes):
/// after something they show changed (the balloon after each change). Cheap, callable
/// from any task, and before the metrics task runs (its first batch covers it).
pub fn refresh_soon() {
    SOON.store(true, Ordering::Release);
    if let Some(w) = WAKER.lock().take() {
        w.wake();
    }
}

/// Resolves once [`refresh_soon`] has been called (clearing the request).
fn soon() -> impl core::future::Future<Output = ()> {
    core::future::poll_fn(|cx| {
        if SOON.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        *WAKER.lock() = Some(cx.waker().clone());
        // A call between the swap and the store would find no waker: look again.
        if SOON.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    })
}

/// Start the metrics task (`main_with` does, for a domU), or say why it cannot run.
pub(crate) fn spawn(spawner: Spawner, devices: &'static Devices) {
    match metrics_task(devices) {
        Ok(t) => spawner.spawn(t),
        Err(e) => crate::warn!("xenpv-rt: no metrics task: {e:?}"),
    }
}

/// What the task remembers between batches.
struct Publishing {
    publisher: Publisher,
    errors: u64,
    refused: Refused,
    periods: u64,
}

#[embassy_executor::task]
async fn metrics_task(devices: &'static Devices) {
    let mut s = Publishing {
        publisher: Publisher::new(),
        errors: 0,
        refused: Refused::default(),
        periods: 0,
    };
    let mut next_period = crate::time::now_ns();
    let mut seen = devices.epoch();
    loop {
        // No xenstore request inside a suspend's window.
        devices.settled().await;
        let now = crate::time::now_ns();
        let full = now >= next_period && s.periods % FULL_EVERY == FULL_EVERY - 1;
        if now >= next_period {
            s.periods += 1;
            next_period = now.saturating_add(METRICS_PERIOD_NS);
        }
        let addressless = publish(devices, &mut s, full);
        if devices.is_closing() {
            return;
        }
        let until = if addressless {
            next_period.min(crate::time::now_ns().saturating_add(ADDRESS_POLL_NS))
        } else {
            next_period
        };
        let timer = Timer::after(Duration::from_nanos(
            until.saturating_sub(crate::time::now_ns()),
        ));
        match select3(timer, soon(), devices.new_domain(seen)).await {
            Either3::First(()) => {}
            Either3::Second(()) => Timer::after(Duration::from_nanos(SOON_NS)).await,
            Either3::Third(epoch) => {
                // The new domain's directory is empty: forget what was published, so
                // that the next batch writes every key again.
                seen = epoch;
                s.publisher = Publisher::new();
                crate::println!(
                    "{}",
                    xenpv_contract::report::Writer::new("metrics")
                        .word("republish")
                        .field("epoch", &epoch)
                );
                // The data path first: a batch is a dozen xenstore round trips that
                // hold the CPU, and a migration's downtime lasts until the vifs are back.
                // A vif asks for a refresh once it is (with its new backend); without
                // one, the batch goes after REPUBLISH_WAIT_NS.
                SOON.store(false, Ordering::Release);
                let wait = Timer::after(Duration::from_nanos(REPUBLISH_WAIT_NS));
                select(soon(), wait).await;
            }
        }
    }
}

/// Gather a snapshot, apply its batch, say what was done: whether some vif has no
/// address yet.
fn publish(devices: &'static Devices, s: &mut Publishing, full: bool) -> bool {
    let vifs = devices.vif_addresses();
    let addressless = vifs.iter().any(|v| v.ipv4.is_empty());
    let r = devices.with_boot(|b| {
        let total_pages = total_pages(b);
        let free_frames = b.memory().frames().available_frames();
        let snap = Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            mem_total_kb: total_pages * 4,
            mem_free_kb: free_frames * 4,
            vifs: &vifs,
            unix_time_s: crate::time::wallclock_s(),
        };
        let plan = s.publisher.plan(&snap, full);
        // What changed (a full refresh writes the rest again): what the line is about.
        let loud = if full {
            changes_more_than_free(&s.publisher.plan(&snap, false).ops)
        } else {
            changes_more_than_free(&plan.ops)
        };
        let xs = b.xenstore()?;
        let result = metrics::apply(xs, &plan.ops);
        Some((result, plan, loud, snap.mem_total_kb, snap.mem_free_kb))
    });
    let Ok(Some((result, plan, loud, total_kb, free_kb))) = r else {
        // The boot is borrowed right now (or dom0): the next round does it.
        return addressless;
    };
    if plan.refused != s.refused {
        s.refused = plan.refused;
        crate::warn!(
            "metrics: refused vifs={} addrs={} (the limits are {} vifs, {} addresses a vif)",
            plan.refused.vifs,
            plan.refused.addrs,
            metrics::MAX_VIFS,
            metrics::MAX_IPV4
        );
    }
    if plan.ops.is_empty() {
        return addressless;
    }
    match result {
        Ok(()) => {
            report(&plan, loud, &vifs, total_kb, free_kb);
            s.publisher.commit(plan);
        }
        Err(e) => {
            s.errors += 1;
            crate::warn!(
                "metrics: publishing {} keys failed: {e} (errors={}; again next time)",
                plan.keys(),
                s.errors
            );
        }
    }
    addressless
}

/// The domain's memory now, in pages: the boot's nr_pages less the frames the balloon
/// gave back to Xen (its `stats().current_pages`, read from the frame allocator's record
/// rather than from the balloon, which calls into this module: no cycle).
fn total_pages(b: &mut crate::Boot) -> u64 {
    let nr_pages = b.start_info().nr_pages;
    nr_pages.saturating_sub(b.memory().frames().ballooned_frames())
}

/// Do `ops` change more than the free memory (which moves with the heap)?
fn changes_more_than_free(ops: &[metrics::Op]) -> bool {
    ops.iter().any(|op| match op {
        metrics::Op::Write(k, _) => {
            !matches!(k, metrics::Key::Fixed("data/meminfo_free" | "data/updated"))
        }
        metrics::Op::Remove(_) => true,
    })
}

/// One line per batch: a report (`metrics: published …`) when it is `loud` (more than
/// the free memory changed), a debug line otherwise.
fn report(plan: &Plan, loud: bool, vifs: &[VifAddrs], total_kb: u64, free_kb: u64) {
    let addrs: usize = vifs.iter().map(|v| v.ipv4.len()).sum();
    let (keys, nvifs) = (plan.keys(), vifs.len());
    let line = xenpv_contract::report::Writer::new("metrics")
        .word("published")
        .field("keys", &keys)
        .field("vifs", &nvifs)
        .field("addrs", &addrs)
        .field("meminfo_total_kb", &total_kb)
        .field("meminfo_free_kb", &free_kb);
    if loud {
        crate::println!("{line}");
    } else {
        crate::debug!("{line}");
    }
}
