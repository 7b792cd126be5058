//! A set of wakers to wake together (every task waiting on one condition).

use alloc::vec::Vec;
use core::task::Waker;

/// Wakers of the tasks waiting for one condition; each is woken once, then forgotten.
#[derive(Default)]
pub(crate) struct WakerSet {
    wakers: Vec<Waker>,
}

impl WakerSet {
    /// Remember `waker` (once: a task that polls twice is not stored twice).
    pub(crate) fn register(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|w| w.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }

    /// Wake every waiting task.
    pub(crate) fn wake_all(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
}

/// One waker slot: the latest registration wins.
#[derive(Default)]
pub(crate) struct WakerSlot {
    waker: Option<Waker>,
}

impl WakerSlot {
    /// Remember `waker` in place of the previous one.
    pub(crate) fn register(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    /// Wake the registered task, if any.
    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}
