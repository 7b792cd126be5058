//! The async application's runtime (feature `async`): [`main!`](crate::main) starts the
//! executor, spawns the application's task with a [`Runtime`], runs the control task,
//! and ends the guest when the application returns — or, after a shutdown request, when
//! its grace period ([`SHUTDOWN_GRACE_NS`]) is over.
//!
//! The control task answers the toolstack as Linux's `drivers/xen/manage.c` does
//! ([`xenpv_protocol::xenbus::Control`] decides): it writes `control/feature-poweroff`
//! and `control/feature-reboot` at boot, and watches `control/shutdown` and
//! `control/sysrq`. `poweroff`, `halt`, `reboot` and `crash` (and sysrq `o`, `b`, `c`)
//! are acknowledged (the key cleared), the application told ([`Runtime::shutdown`]), and
//! the domain ends with the matching `SCHEDOP_shutdown` reason once the application has
//! returned (or its grace is over) and the devices are closed
//! ([`crate::exit::request_reason`]). `suspend` is refused: left unacknowledged (libxl
//! cancels it after its timeout), said in one line, the guest goes on; with the feature
//! `suspend`, `control/feature-suspend` is written too and `suspend` is acknowledged and
//! done ([`crate::suspend`]).

use crate::device::Devices;
use crate::exec::{self, SpawnError, SpawnToken, Spawner};
use crate::xenstore::XsError;
use crate::Boot;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};
use xenpv_protocol::xenbus::{
    Action, Control, FEATURES, FEATURES_SUSPEND, SHUTDOWN_KEY, SYSRQ_KEY,
};
pub use xenpv_protocol::xenbus::{ShutdownReason, ShutdownRequest};

/// How long an application has, after a shutdown request, to return by itself before
/// the runtime closes its devices and exits with status 0.
pub const SHUTDOWN_GRACE_NS: u64 = 3_000_000_000;
/// How often the control task re-reads `control/shutdown` and `control/sysrq` besides on
/// its watches' events (a backstop for an event lost in a full queue).
pub const SHUTDOWN_POLL_NS: u64 = 1_000_000_000;
/// The xenstore watch tokens of `control/shutdown` and `control/sysrq`.
const SHUTDOWN_TOKEN: &str = "xenpv-rt-shutdown";
const SYSRQ_TOKEN: &str = "xenpv-rt-sysrq";

/// What an async application gets (see [`main!`](crate::main)): the boot state, the
/// spawner, the devices, and the shutdown signal. One exists, for the guest's lifetime.
pub struct Runtime {
    boot: &'static RefCell<&'static mut Boot>,
    /// The command line, copied once (so that it outlives every borrow of the boot).
    cmdline: &'static str,
    spawner: Spawner,
    devices: &'static Devices,
    request: Cell<Option<(ShutdownRequest, u64)>>,
    shutdown_wakers: RefCell<Vec<Waker>>,
    status: Cell<Option<i32>>,
}

impl Runtime {
    /// The guest command line.
    pub fn cmdline(&self) -> crate::Cmdline<'static> {
        crate::Cmdline(self.cmdline)
    }
    /// The start_info page Xen passed at boot (a copy).
    pub fn start_info(&self) -> crate::StartInfo {
        self.boot.borrow().start_info().clone()
    }
    /// Run `f` with the boot state (memory, xenstore, timing…). Do not call it from
    /// inside another `with_boot` or a device call (the boot is borrowed then: panic).
    pub fn with_boot<R>(&self, f: impl FnOnce(&mut Boot) -> R) -> R {
        f(&mut self.boot.borrow_mut())
    }
    /// The executor's spawner.
    pub fn spawner(&self) -> Spawner {
        self.spawner
    }
    /// The devices: network stacks on vifs (feature `net`), the grant table, xenstore.
    pub fn devices(&self) -> &'static Devices {
        self.devices
    }
    /// Resolves when the toolstack asks the guest to stop (`xl shutdown`, `xl reboot`,
    /// `xl sysrq DOMID o|b|c`…): the runtime has acknowledged the request already. Return
    /// from the application within [`SHUTDOWN_GRACE_NS`]; otherwise the runtime closes
    /// the devices and exits with status 0 itself. Either way a status of 0 ends the
    /// domain with the request's reason ([`ShutdownRequest::reason`]: a reboot restarts
    /// it under xl's `on_reboot = "restart"`).
    pub fn shutdown(&self) -> impl core::future::Future<Output = ShutdownRequest> + '_ {
        poll_fn(move |cx| match self.request() {
            Some(r) => Poll::Ready(r),
            None => {
                let mut w = self.shutdown_wakers.borrow_mut();
                if !w.iter().any(|x| x.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
    }
    /// The shutdown request received, if any.
    pub fn request(&self) -> Option<ShutdownRequest> {
        let r = self.request.take();
        self.request.set(r.clone());
        r.map(|(r, _)| r)
    }
    /// Record the application's exit status: the executor stops and the guest exits with
    /// it ([`main!`](crate::main)'s task calls it with what the application returns).
    pub fn app_returned(&self, status: i32) {
        self.status.set(Some(status));
    }
    fn grace_end(&self) -> Option<u64> {
        let r = self.request.take();
        self.request.set(r.clone());
        r.map(|(_, at)| at.saturating_add(SHUTDOWN_GRACE_NS))
    }
    fn requested(&self, r: ShutdownRequest) {
        crate::println!("xenpv-rt: shutdown requested ({})", r.as_str());
        if let Some(reason) = r.reason() {
            crate::exit::request_reason(reason);
        }
        self.request.set(Some((r, crate::time::now_ns())));
        for w in self.shutdown_wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// Start the async application and run it to its end: what [`main!`](crate::main)'s
/// entry calls with the task it defines (`app` makes the task's spawn token). Returns the
/// exit status: what the application returned, or 0 if it did not return within the
/// grace period after a shutdown request. The devices are closed either way.
pub fn main_with<S>(
    boot: &mut Boot,
    app: impl FnOnce(&'static Runtime) -> Result<SpawnToken<S>, SpawnError>,
) -> i32 {
    // SAFETY: the Boot outlives every use of this borrow: the executor below is never
    // polled again once `main_with` returns, so no task touches the Runtime afterwards,
    // and the runtime exits right after the application's entry returns.
    let boot: &'static mut Boot = unsafe { &mut *(boot as *mut Boot) };
    let cmdline: &'static str = alloc::string::String::from(boot.cmdline().0).leak();
    let boot: &'static RefCell<&'static mut Boot> = Box::leak(Box::new(RefCell::new(boot)));
    let executor = exec::start();
    let rt: &'static Runtime = Box::leak(Box::new(Runtime {
        boot,
        cmdline,
        spawner: executor.spawner(),
        devices: Box::leak(Box::new(Devices::new(boot, executor.spawner()))),
        request: Cell::new(None),
        shutdown_wakers: RefCell::new(Vec::new()),
        status: Cell::new(None),
    }));
    match app(rt) {
        Ok(t) => rt.spawner.spawn(t),
        Err(e) => crate::fatal!("xenpv-rt: cannot spawn the application: {e:?}"),
    }
    if rt.boot.borrow().is_dom0() {
        crate::info!("xenpv-rt: dom0 has no control/shutdown to watch");
    } else {
        match control_task(rt) {
            Ok(t) => rt.spawner.spawn(t),
            Err(e) => crate::warn!("xenpv-rt: no control task: {e:?}"),
        }
        crate::metrics::spawn(rt.spawner, rt.devices);
    }
    crate::balloon::spawn(rt.spawner, boot);
    let status = exec::run(
        executor,
        || {
            if let Some(s) = rt.status.get() {
                return Some(s);
            }
            let end = rt.grace_end()?;
            (crate::time::now_ns() >= end).then(|| {
                crate::println!("xenpv-rt: the application did not return after shutdown: exit 0");
                0
            })
        },
        || rt.grace_end(),
    );
    close_devices(executor, rt.devices);
    status
}

/// How long the runtime lets its device tasks close their devices when the guest ends.
pub const CLOSE_GRACE_NS: u64 = 3_000_000_000;

/// Close the devices: their tasks run (with everything else) until all are closed, at
/// most [`CLOSE_GRACE_NS`].
fn close_devices(executor: &'static embassy_executor::raw::Executor, devices: &'static Devices) {
    devices.begin_close();
    let end = crate::time::now_ns().saturating_add(CLOSE_GRACE_NS);
    exec::run(
        executor,
        || (devices.all_closed() || crate::time::now_ns() >= end).then_some(()),
        || Some(end),
    );
    if !devices.all_closed() {
        crate::warn!(
            "xenpv-rt: devices still closing after {} ms: exiting anyway",
            CLOSE_GRACE_NS / 1_000_000
        );
    }
}

/// Answer the toolstack's `control/` keys (see the module): the feature keys once, then
/// each request read from `control/shutdown` and `control/sysrq`, on their watches'
/// events or every [`SHUTDOWN_POLL_NS`].
#[embassy_executor::task]
async fn control_task(rt: &'static Runtime) {
    let Some(()) = rt.with_boot(|b| {
        let xs = b.xenstore()?;
        for (key, token) in [(SHUTDOWN_KEY, SHUTDOWN_TOKEN), (SYSRQ_KEY, SYSRQ_TOKEN)] {
            if let Err(e) = xs.watch(key, token) {
                crate::warn!("xenpv-rt: watching {key}: {e}");
            }
        }
        let features: &[&str] = if cfg!(feature = "suspend") {
            &FEATURES_SUSPEND
        } else {
            &FEATURES
        };
        for &key in features {
            if let Err(e) = xs.write(key, b"1") {
                crate::println!("xenpv-rt: cannot write {key}=1: {e}");
            }
        }
        Some(())
    }) else {
        return;
    };
    let mut control = if cfg!(feature = "suspend") {
        Control::with_suspend()
    } else {
        Control::new()
    };
    loop {
        let got = rt.with_boot(|b| match b.xenstore() {
            Some(xs) => read_control(xs, &mut control),
            None => [Ok(None), Ok(None)],
        });
        for r in got {
            match r {
                Ok(Some((_, Action::Suspend))) => suspend(rt).await,
                Ok(Some((from, a))) => act(rt, from, a),
                Ok(None) => {}
                Err((key, e)) => crate::warn!("xenpv-rt: reading {key}: {e}"),
            }
        }
        // The next watch event (the xenstore port: read each time, a resume in a new
        // domain changes it) or the backstop poll.
        let port = rt.with_boot(|b| b.xenstore().map_or(0, |xs| xs.link().port()));
        let tick = embassy_time::Timer::after(embassy_time::Duration::from_nanos(SHUTDOWN_POLL_NS));
        embassy_futures::select::select(exec::event(port), tick).await;
    }
}

/// Where an action came from: `control/shutdown`, or the sysrq letter.
type Origin = Option<char>;
/// One key's outcome: an action (and where from), nothing, or the key and its error.
type Read = Result<Option<(Origin, Action)>, (&'static str, XsError)>;

/// Drain pending watch events (their tokens do not matter: both keys are read anyway),
/// then read `control/shutdown` and `control/sysrq`, decide, and acknowledge (clear the
/// key) what is to be acknowledged.
fn read_control(
    xs: &mut crate::xenstore::Xenstore<crate::PageLink>,
    control: &mut Control,
) -> [Read; 2] {
    while let Ok(Some(_)) = xs.next_event(0) {}
    let shutdown = read_key(xs, SHUTDOWN_KEY).and_then(|v| {
        let (ack, a) = control.shutdown(&v);
        // The acknowledgement Linux gives (manage.c writes ""): the toolstack then knows
        // the guest heard it.
        if ack {
            xs.write(SHUTDOWN_KEY, b"")?;
        }
        Ok((a != Action::Nothing).then_some((None, a)))
    });
    let sysrq = read_key(xs, SYSRQ_KEY).and_then(|v| match control.sysrq(&v) {
        Some((key, a)) => {
            xs.write(SYSRQ_KEY, b"")?;
            Ok(Some((Some(key), a)))
        }
        None => Ok(None),
    });
    [
        shutdown.map_err(|e| (SHUTDOWN_KEY, e)),
        sysrq.map_err(|e| (SYSRQ_KEY, e)),
    ]
}

/// A key's value; empty if it does not exist.
fn read_key(
    xs: &mut crate::xenstore::Xenstore<crate::PageLink>,
    key: &str,
) -> Result<Vec<u8>, XsError> {
    match xs.read(key) {
        Ok(v) => Ok(v.to_vec()),
        Err(XsError::Xenstore(e)) if e == "ENOENT" => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Act on what the control keys asked, each outcome in one line.
fn act(rt: &Runtime, from: Origin, a: Action) {
    if let (Some(key), Action::Stop(r)) = (from, &a) {
        crate::println!("xenpv-rt: sysrq {key}: {}", r.as_str());
    }
    match a {
        Action::Nothing => {}
        Action::Stop(r) => rt.requested(r),
        Action::AlreadyStopping { request, first } => crate::println!(
            "xenpv-rt: shutdown request {} ignored: already stopping ({})",
            request.as_str(),
            first.as_str()
        ),
        Action::RefuseSuspend => {
            crate::println!("xenpv-rt: suspend refused: built without the feature `suspend` (no save, restore or migration)")
        }
        // Run by the control task itself (it waits for the devices): see `suspend`.
        Action::Suspend => {}
        Action::Unknown(r) => crate::println!(
            "xenpv-rt: shutdown request {:?} not understood: left unacknowledged",
            r.as_str()
        ),
        Action::SysrqUnsupported(key) => {
            crate::println!("xenpv-rt: sysrq {key}: not supported (b reboot, o poweroff, c crash)")
        }
    }
}

/// How long a suspend waits for the devices to be between two steps (a handshake half
/// done) before it is refused: well inside libxl's 60 s for the suspend to happen.
#[cfg(feature = "suspend")]
pub const SUSPEND_QUIESCE_NS: u64 = 5_000_000_000;

/// Suspend (acknowledged already), each outcome in one line. The devices are asked
/// every 100 ms, up to [`SUSPEND_QUIESCE_NS`] ([`Devices::begin_suspend`]), then the
/// sequence runs (synchronously: nothing else runs until the guest is back).
#[cfg(feature = "suspend")]
async fn suspend(rt: &Runtime) {
    use xenpv_contract::report::Writer;
    crate::println!("{}", Writer::new("suspend").word("acked"));
    let give_up = crate::time::now_ns().saturating_add(SUSPEND_QUIESCE_NS);
    loop {
        match rt.devices.begin_suspend() {
            Ok(()) => break,
            Err(_) if crate::time::now_ns() < give_up => {
                embassy_time::Timer::after(embassy_time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                let reason = alloc::format!("{e}");
                crate::println!(
                    "{}",
                    Writer::new("suspend")
                        .word("refused")
                        .field("reason", reason.as_str())
                );
                return;
            }
        }
    }
    match crate::suspend::run(rt.devices) {
        Ok(r) => {
            let domid = rt.with_boot(|b| {
                let v = b.xenstore()?.read("domid").ok()?;
                core::str::from_utf8(&v).ok()?.trim().parse::<i64>().ok()
            });
            let domid = domid.unwrap_or(-1);
            crate::println!(
                "{}",
                Writer::new("suspend")
                    .word("resumed")
                    .field("kind", r.kind.as_str())
                    .field("rc", &r.rc)
                    .field("epoch", &r.epoch)
                    .field("domid", &domid)
                    .field("mono_before", &r.mono_before)
                    .field("mono_after", &r.mono_after)
                    .field("ms", &r.ms)
            );
        }
        Err(reason) => crate::println!(
            "{}",
            Writer::new("suspend")
                .word("refused")
                .field("reason", reason.as_str())
        ),
    }
}

/// Without the feature the control task never suspends (it refuses).
#[cfg(not(feature = "suspend"))]
async fn suspend(_rt: &Runtime) {}
