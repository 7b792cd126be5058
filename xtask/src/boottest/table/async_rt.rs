//! The async runtime's rows (xenpv-rt feature `async`): the executor, its timers on
//! Xen's clock and event-channel wakers.
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;

/// Timers and tasks (`async`): `Timer::after` waits as long as Xen's clock says (never
/// less, at most 500 ms more), spawned tasks end in their timers' order, a
/// `with_timeout` fires, and a loopback event wakes the task registered for its port.
pub fn timers() -> BootTest {
    let waited = |what: &str, us: u64| {
        Check::Regex(Box::leak(
            format!(r"async: {what} waited \d+ us \(want {us} us\) ok").into_boxed_str(),
        ))
    };
    t(
        "async-timers",
        Image::app(),
        "async",
        0,
        vec![
            waited(r"Timer::after\(50ms\)", 50_000),
            has("async: tasks finished in order [3, 2, 1] ok"),
            waited(r"with_timeout\(20ms\)", 20_000),
            has("async: with_timeout fired: true"),
            has("async: wake_on heard the loopback event: true ok"),
            has("async: timers and tasks ok"),
            Check::ExitLine,
        ],
    )
}
