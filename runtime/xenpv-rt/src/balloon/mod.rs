//! The balloon driver (feature `async`): the guest follows `memory/target`, the target
//! the toolstack writes (`xl mem-set`, `virsh setmem`, XAPI's squeezed; in kB), giving
//! free frames back to Xen or taking frames again — as Linux's `xen-balloon.c` and
//! `balloon.c` do.
//!
//! A task of the runtime's (spawned by [`main_with`](crate::runtime::main_with))
//! watches `memory/target`, waking on the xenstore port or every [`POLL_NS`], and reads
//! the key itself each time (another task drains the watch events). A change runs in
//! batches of [`BATCH`] frames, yielding between them so that the network keeps being
//! served: the planner is `xenpv_paging::balloon`, run over the live p2m, M2P,
//! allocator and direct map by `mm::balloon`. Before giving frames back the heap returns
//! what it holds free ([`heap::give_back`](crate::heap::give_back)).
//!
//! The guest never goes above the pages it booted with (the p2m list is sized for them):
//! a higher `memory/static-max` is said once and capped. It never gives a frame in use,
//! and keeps [`RESERVE_PAGES`] free: below that floor it stops, says so, and writes the
//! shortfall to `data/balloon/shortfall_kb` (0 when the target is met). After each change
//! it reports (`balloon: target_kb=… current_kb=… released=… populated=… shortfall_kb=…
//! ms=…`) and checks itself (`balloon: self-check ok …`).

mod xen;

use crate::exec::{self, Spawner};
use crate::xenstore::XsError;
use crate::Boot;
use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use xenpv_abi::args::XENMEM_CURRENT_RESERVATION;
use xenpv_contract::report::Writer;
use xenpv_paging::balloon::{Balloon, BalloonFail, Step};
pub use xenpv_paging::balloon::{BATCH, RESERVE_PAGES};

/// How often the task re-reads `memory/target` besides on xenstore events.
pub const POLL_NS: u64 = 1_000_000_000;
/// The longest one change may run (a Xen that gives a few frames a call stops here).
pub const CHANGE_NS: u64 = 60_000_000_000;
/// The key the shortfall (kB) is written to.
pub const SHORTFALL_KEY: &str = "data/balloon/shortfall_kb";
const TOKEN: &str = "xenpv-rt-balloon";

/// What the balloon has done, for reports and the guest metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalloonStats {
    /// The target (pages), capped at the boot's nr_pages; nr_pages until one is read.
    pub target_pages: u64,
    /// Pages the guest has: the boot's nr_pages less the ballooned ones.
    pub current_pages: u64,
    /// Pages given back to Xen now.
    pub ballooned_pages: u64,
    /// How far the target is below the floor (pages; 0 when met).
    pub floor_shortfall_pages: u64,
    /// Changes completed (incremented after each).
    pub changes: u64,
    /// Frames given back since boot.
    pub released: u64,
    /// Frames taken back since boot.
    pub populated: u64,
    /// Hostile or failed answers from Xen since boot: extents refused or not given,
    /// errors, overcounts, bad mfns.
    pub xen_anomalies: u64,
    /// Self-checks that failed.
    pub check_failures: u64,
}

static STATS: spin::Mutex<BalloonStats> = spin::Mutex::new(BalloonStats {
    target_pages: 0,
    current_pages: 0,
    ballooned_pages: 0,
    floor_shortfall_pages: 0,
    changes: 0,
    released: 0,
    populated: 0,
    xen_anomalies: 0,
    check_failures: 0,
});

/// Set while a suspend is under way: the task takes no new batch (a batch is synchronous,
/// so the window always finds it between two).
static SUSPENDING: AtomicBool = AtomicBool::new(false);
/// The epoch of a new domain the task has not checked itself after yet (0: none).
static NEW_DOMAIN: AtomicU32 = AtomicU32::new(0);

/// A suspend begins (`true`) or ended (`false`): hold the balloon between batches
/// meanwhile.
pub(crate) fn gate(on: bool) {
    SUSPENDING.store(on, Ordering::Release);
}

/// The guest runs in a new domain of epoch `epoch`: the task checks itself (the p2m
/// and the ballooned frames against Xen's count) at its next round.
pub(crate) fn resumed_new(epoch: u32) {
    NEW_DOMAIN.store(epoch, Ordering::Release);
}

/// Wait while a suspend is under way.
async fn wait_gate() {
    while SUSPENDING.load(Ordering::Acquire) {
        embassy_time::Timer::after(embassy_time::Duration::from_millis(1)).await;
    }
}

/// The balloon's figures (all zero before its task started, and on dom0).
pub fn stats() -> BalloonStats {
    *STATS.lock()
}

/// The boot state, borrowed for one synchronous step at a time (never across an
/// `.await`).
#[derive(Clone, Copy)]
struct Rt(&'static RefCell<&'static mut Boot>);

impl Rt {
    fn with_boot<R>(&self, f: impl FnOnce(&mut Boot) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// Start the balloon's task (a domU's; dom0 has no `memory/target`).
pub(crate) fn spawn(spawner: Spawner, boot: &'static RefCell<&'static mut Boot>) {
    let rt = Rt(boot);
    if rt.with_boot(|b| b.is_dom0()) {
        return;
    }
    match task(rt) {
        Ok(t) => spawner.spawn(t),
        Err(e) => crate::warn!("balloon: no task: {e:?}"),
    }
}

/// Read a decimal key; `None` if absent or not a number.
fn read_u64(rt: Rt, path: &str) -> Result<Option<u64>, XsError> {
    rt.with_boot(|b| {
        let Some(xs) = b.xenstore() else {
            return Ok(None);
        };
        let v = match xs.read(path) {
            Err(XsError::EventsLost) => xs.read(path),
            r => r,
        };
        match v {
            Ok(v) => Ok(core::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse().ok())),
            Err(XsError::Xenstore(e)) if e == "ENOENT" => Ok(None),
            Err(e) => Err(e),
        }
    })
}

fn write_key(rt: Rt, path: &str, value: &str) -> Result<(), XsError> {
    rt.with_boot(|b| match b.xenstore() {
        Some(xs) => xs.write(path, value.as_bytes()),
        None => Ok(()),
    })
}

/// What the task keeps between changes.
struct State {
    balloon: Balloon,
    nr_pages: u64,
    /// Xen's pages less nr_pages at start (pages Xen counts that are not in the p2m).
    offset: i64,
    /// The last change met no refusal or error from Xen (a change is only taken up again
    /// then: a Xen that keeps refusing is not asked every second).
    clean: bool,
}

/// Watch, say what holds at start, and the state; `None` if there is nothing to do.
fn start(rt: Rt) -> Option<(State, u32)> {
    let port = rt.with_boot(|b| {
        let xs = b.xenstore()?;
        if let Err(e) = xs.watch("memory/target", TOKEN) {
            crate::warn!("balloon: watching memory/target: {e}");
        }
        Some(xs.link().port())
    })?;
    let Some(balloon) = crate::mm::balloon::start() else {
        crate::println!("balloon: off why=\"no frames for the record\"");
        return None;
    };
    let (nr_pages, ..) = crate::mm::balloon::counts();
    let static_max = read_u64(rt, "memory/static-max").ok().flatten();
    if let Some(kb) = static_max.filter(|&kb| kb > nr_pages * 4) {
        crate::println!(
            "balloon: static-max above the boot's memory: static_max_kb={kb} limit_kb={} (capped: the p2m list is sized at boot)",
            nr_pages * 4
        );
    }
    if let Err(e) = write_key(rt, "control/feature-balloon", "1") {
        // xl makes control/feature-balloon read-only for the guest (XAPI lets it write).
        crate::println!("balloon: control/feature-balloon not written: {e}");
    }
    let _ = write_key(rt, SHORTFALL_KEY, "0");
    let xen_pages = crate::hypercall::reservation(XENMEM_CURRENT_RESERVATION);
    let offset = xen_pages.map_or(0, |p| p as i64 - nr_pages as i64);
    crate::println!(
        "balloon: ready nr_pages={nr_pages} xen_pages={} offset={offset} reserve_kb={}",
        xen_pages.unwrap_or(0),
        RESERVE_PAGES * 4
    );
    *STATS.lock() = BalloonStats {
        target_pages: nr_pages,
        current_pages: nr_pages,
        ..BalloonStats::default()
    };
    Some((
        State {
            balloon,
            nr_pages,
            offset,
            clean: true,
        },
        port,
    ))
}

#[embassy_executor::task]
async fn task(rt: Rt) {
    let Some((mut st, port)) = start(rt) else {
        return;
    };
    let mut applied: Option<u64> = None;
    let mut port = port;
    loop {
        wait_gate().await;
        let epoch = NEW_DOMAIN.swap(0, Ordering::AcqRel);
        if epoch != 0 {
            // A new domain binds the xenstore client to another port.
            port = rt.with_boot(|b| b.xenstore().map(|xs| xs.link().port()).unwrap_or(port));
            crate::println!(
                "{}",
                Writer::new("balloon")
                    .word("resumed")
                    .field("epoch", &epoch)
                    .field("current_kb", &(crate::mm::balloon::goal(0).current * 4))
            );
            // The data path first: the check walks every pfn with the CPU held, and a
            // migration's downtime lasts until the vifs are back.
            embassy_time::Timer::after(embassy_time::Duration::from_nanos(SELF_CHECK_WAIT_NS))
                .await;
            self_check(&st);
        }
        match read_u64(rt, "memory/target") {
            Ok(Some(kb)) if applied != Some(kb) || (st.clean && worth_another_go(kb)) => {
                change(rt, &mut st, kb).await;
                applied = Some(kb);
            }
            Ok(_) => {}
            Err(e) => crate::warn!("balloon: reading memory/target: {e}"),
        }
        let tick = embassy_time::Timer::after(embassy_time::Duration::from_nanos(POLL_NS));
        embassy_futures::select::select(exec::event(port), tick).await;
    }
}

/// Stopped short of `target_kb` at the floor, can the guest now give a batch more (its
/// frames in use went down)? Then the change is taken up again.
fn worth_another_go(target_kb: u64) -> bool {
    matches!(
        crate::mm::balloon::goal(target_kb / 4).step(),
        Step::Release(n) if n >= BATCH as u64
    )
}

/// Go towards `target_kb`, a batch at a time, then report and check.
async fn change(rt: Rt, st: &mut State, target_kb: u64) {
    let t0 = crate::time::now_ns();
    let target = target_kb / 4;
    st.balloon.begin();
    let before = st.balloon.counters;
    let mut heap_kb = 0;
    if target < crate::mm::balloon::goal(target).current {
        heap_kb = crate::heap::give_back() / 1024;
    }
    let mut xen = xen::Hypercalls;
    loop {
        let step = crate::mm::balloon::goal(target).step();
        if step == Step::Done || crate::time::now_ns().saturating_sub(t0) > CHANGE_NS {
            break;
        }
        wait_gate().await;
        match crate::mm::balloon::batch(&mut st.balloon, step, &mut xen) {
            Ok(b) if b.done > 0 => {}
            Ok(_) | Err(BalloonFail::Nothing) => break,
            Err(BalloonFail::Sink(e)) => {
                crate::warn!("balloon: unmapping frames: {e}");
                break;
            }
        }
        publish(st, target);
        // Let the network (and everything else) run between batches.
        embassy_futures::yield_now().await;
    }
    let goal = crate::mm::balloon::goal(target);
    let c = st.balloon.counters;
    st.clean = (c.refused, c.short, c.errors) == (before.refused, before.short, before.errors);
    let shortfall_kb = goal.shortfall * 4;
    let mut buf = heapless::String::<24>::new();
    let _ = core::fmt::write(&mut buf, format_args!("{shortfall_kb}"));
    if let Err(e) = write_key(rt, SHORTFALL_KEY, &buf) {
        crate::warn!("balloon: writing {SHORTFALL_KEY}: {e}");
    }
    crate::println!(
        "{}",
        xenpv_contract::report!(
            "balloon",
            target_kb = target * 4,
            current_kb = goal.current * 4,
            released = c.released - before.released,
            populated = c.populated - before.populated,
            shortfall_kb = shortfall_kb,
            floor_kb = goal.floor * 4,
            heap_returned_kb = heap_kb,
            refused = c.refused,
            short = c.short,
            errors = c.errors,
            overcounts = c.overcounts,
            leaked = c.leaked,
            pte_failures = c.pte_failures,
            ms = (crate::time::now_ns() - t0) / 1_000_000,
        )
    );
    if goal.shortfall > 0 {
        crate::println!(
            "{}",
            Writer::new("balloon")
                .word("floor")
                .word("reached")
                .field("target_kb", &(target * 4))
                .field("floor_kb", &(goal.floor * 4))
                .field("shortfall_kb", &shortfall_kb)
        );
    }
    self_check(st);
    publish(st, target);
    STATS.lock().changes += 1;
    crate::metrics::refresh_soon();
}

/// In a new domain, how long the balloon waits before its self-check.
const SELF_CHECK_WAIT_NS: u64 = 1_000_000_000;

/// The self-check after a change, reported.
fn self_check(st: &State) {
    let xen_pages = crate::hypercall::reservation(XENMEM_CURRENT_RESERVATION).ok();
    match crate::mm::balloon::check(&st.balloon, xen_pages.map(|p| (p, st.offset))) {
        Ok(r) => crate::println!(
            "{}",
            Writer::new("balloon")
                .word("self-check")
                .word("ok")
                .field("pfns", &r.pfns)
                .field("ballooned", &r.ballooned)
                .field("ptes", &r.ptes)
                .field("xen_pages", &xen_pages.unwrap_or(0))
        ),
        Err(e) => {
            STATS.lock().check_failures += 1;
            crate::println!(
                "{}",
                Writer::new("balloon")
                    .word("self-check")
                    .word("failed")
                    .field("why", &e)
            );
        }
    }
}

/// Put the figures where [`stats`] reads them.
fn publish(st: &State, target: u64) {
    let goal = crate::mm::balloon::goal(target);
    let c = st.balloon.counters;
    let mut s = STATS.lock();
    s.target_pages = goal.target;
    s.current_pages = goal.current;
    s.ballooned_pages = st.nr_pages - goal.current;
    s.floor_shortfall_pages = goal.shortfall;
    s.released = c.released;
    s.populated = c.populated;
    s.xen_anomalies = c.refused + c.short + c.errors + c.overcounts + c.leaked + c.pte_failures;
}
