//! The async runtime's executor and timers (`async` on the command line): spawned tasks
//! finish in the order of their timers, `Timer::after` waits as long as Xen's clock
//! says, a `with_timeout` fires, and an event on a loopback channel wakes the task that
//! registered for its port.
extern crate alloc;

use core::cell::RefCell;
use core::future::poll_fn;
use core::task::Poll;
use xenpv_rt::evtchn::{self, Port};
use xenpv_rt::exec::embassy_time::{with_timeout, Duration, Timer};
use xenpv_rt::exec::{self, Spawner};
use xenpv_rt::println;
use xenpv_rt::time::now_ns;

/// Slack a timer may overrun by (QEMU TCG under load is slow to schedule the vCPU).
const SLACK_NS: u64 = 500_000_000;

type Done = RefCell<alloc::vec::Vec<u32>>;

#[exec::task(embassy_executor = xenpv_rt::exec::embassy_executor, pool_size = 3)]
async fn sleeper(id: u32, ms: u64, done: &'static Done) {
    Timer::after(Duration::from_millis(ms)).await;
    done.borrow_mut().push(id);
}

/// A task that only yields, until `stop` (or 2 s: then the timers were starved).
#[exec::task(embassy_executor = xenpv_rt::exec::embassy_executor)]
async fn busy(stop: &'static core::cell::Cell<bool>) {
    let t0 = now_ns();
    while !stop.get() {
        if now_ns() - t0 > 2_000_000_000 {
            println!("async: a task yielding in a loop held the executor for 2 s BAD");
            return;
        }
        exec::embassy_futures::yield_now().await;
    }
}

#[exec::task(embassy_executor = xenpv_rt::exec::embassy_executor)]
async fn listener(port: Port, heard: &'static RefCell<Option<u64>>) {
    let mut armed = false;
    poll_fn(|cx| {
        if armed {
            return Poll::Ready(());
        }
        armed = true;
        exec::wake_on(port, cx.waker());
        Poll::Pending
    })
    .await;
    *heard.borrow_mut() = Some(now_ns());
}

/// Time `f`'s wait in Xen nanoseconds and check it against `want_ns`.
fn within(what: &str, took: u64, want_ns: u64) -> bool {
    let ok = took >= want_ns && took < want_ns + SLACK_NS;
    println!(
        "async: {what} waited {} us (want {} us) {}",
        took / 1000,
        want_ns / 1000,
        if ok { "ok" } else { "BAD" }
    );
    ok
}

/// Run the checks; true if all held.
pub async fn run(spawner: Spawner) -> bool {
    let mut ok = true;
    let t0 = now_ns();
    Timer::after(Duration::from_millis(50)).await;
    ok &= within("Timer::after(50ms)", now_ns() - t0, 50_000_000);

    let done: &'static Done = alloc::boxed::Box::leak(alloc::boxed::Box::default());
    // 100 ms apart: timers due in the same idle step may run in any order (embassy's
    // run queue is a stack), and a vCPU under QEMU can wake tens of ms late.
    for (id, ms) in [(1, 300), (2, 200), (3, 100)] {
        spawner.spawn(sleeper(id, ms, done).expect("sleeper pool"));
    }
    Timer::after(Duration::from_millis(400)).await;
    let order = done.borrow().clone();
    let in_order = order == [3, 2, 1];
    println!(
        "async: tasks finished in order {order:?} {}",
        if in_order { "ok" } else { "BAD" }
    );
    ok &= in_order;

    let t0 = now_ns();
    let r = with_timeout(Duration::from_millis(20), core::future::pending::<()>()).await;
    ok &= within("with_timeout(20ms)", now_ns() - t0, 20_000_000) && r.is_err();
    println!("async: with_timeout fired: {}", r.is_err());

    ok &= loopback_event(spawner).await;
    ok &= beside_a_busy_task(spawner).await;
    println!(
        "async: timers and tasks {}",
        if ok { "ok" } else { "FAILED" }
    );
    ok
}

/// A loopback event channel: a task registered with `wake_on` hears a send made 10 ms
/// later (and not before).
async fn loopback_event(spawner: Spawner) -> bool {
    let ports = evtchn::alloc_unbound(xenpv_rt::hypercall::DOMID_SELF as u16).and_then(|a| {
        Ok((
            a,
            evtchn::bind_interdomain(xenpv_rt::hypercall::DOMID_SELF as u16, a)?,
        ))
    });
    let Ok((a, b)) = ports else {
        println!("async: loopback channel: {ports:?} BAD");
        return false;
    };
    let heard: &'static RefCell<Option<u64>> =
        alloc::boxed::Box::leak(alloc::boxed::Box::default());
    spawner.spawn(listener(a, heard).expect("listener pool"));
    Timer::after(Duration::from_millis(10)).await;
    let early = heard.borrow().is_some();
    let sent = now_ns();
    let _ = evtchn::send(b);
    Timer::after(Duration::from_millis(10)).await;
    let got = *heard.borrow();
    let ok = !early && got.is_some_and(|t| t >= sent);
    println!(
        "async: wake_on heard the loopback event: {} {}",
        got.is_some(),
        if ok { "ok" } else { "BAD" }
    );
    let _ = (evtchn::close(a), evtchn::close(b));
    ok
}

/// A timer still fires on time while another task yields in a loop (it is always
/// ready: the executor never idles, and must still let due timers and events in).
async fn beside_a_busy_task(spawner: Spawner) -> bool {
    let stop: &'static core::cell::Cell<bool> =
        alloc::boxed::Box::leak(alloc::boxed::Box::default());
    spawner.spawn(busy(stop).expect("busy pool"));
    let t0 = now_ns();
    Timer::after(Duration::from_millis(50)).await;
    stop.set(true);
    within(
        "Timer::after(50ms) beside a task yielding in a loop",
        now_ns() - t0,
        50_000_000,
    )
}

/// The `async` word's application: the checks, then status 0 (or the failed check's).
pub async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    if run(rt.spawner()).await {
        0
    } else {
        xenpv_contract::status::AppStatus::Failed.into()
    }
}
