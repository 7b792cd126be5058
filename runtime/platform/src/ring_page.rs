//! The live side of a shared ring page: the mapped page and its event channel, behind
//! the [`Link`] trait the ring protocol (`xenpv_protocol::ring`) is written against.

use xenpv_protocol::ring::{Idx, Link, PageLayout, Side};

/// A shared ring page mapped at `va` (direct map) and its event channel.
pub struct PageLink {
    va: u64,
    layout: PageLayout,
    port: crate::evtchn::Port,
}

impl PageLink {
    /// # Safety
    /// `va` must map the 4 KiB ring page, RW, for as long as the link is used, and
    /// nothing else in this guest may access it.
    pub unsafe fn new(va: u64, layout: PageLayout, port: crate::evtchn::Port) -> Self {
        PageLink { va, layout, port }
    }
    fn at<T>(&self, off: usize) -> *mut T {
        (self.va + off as u64) as *mut T
    }
    fn byte(&self, side: Side, i: u32) -> *mut u8 {
        let (off, size) = match side {
            Side::Tx => self.layout.tx,
            Side::Rx => self.layout.rx,
        };
        self.at(off + (i % size) as usize)
    }
}

fn slot(i: Idx) -> usize {
    i as usize
}

// SAFETY (all accesses below): `new`'s contract; offsets come from the layouts above,
// all inside the page; index words are 4-byte aligned. The peer writes the page at
// any time, so every access is volatile.
impl Link for PageLink {
    fn size(&self, side: Side) -> u32 {
        match side {
            Side::Tx => self.layout.tx.1,
            Side::Rx => self.layout.rx.1,
        }
    }
    fn index(&self, i: Idx) -> u32 {
        unsafe { self.at::<u32>(self.layout.idx[slot(i)]).read_volatile() }
    }
    fn set_index(&mut self, i: Idx, v: u32) {
        unsafe { self.at::<u32>(self.layout.idx[slot(i)]).write_volatile(v) }
    }
    fn load(&self, side: Side, i: u32) -> u8 {
        unsafe { self.byte(side, i).read_volatile() }
    }
    fn store(&mut self, side: Side, i: u32, b: u8) {
        unsafe { self.byte(side, i).write_volatile(b) }
    }
    fn notify(&mut self) {
        let _ = crate::evtchn::send(self.port);
    }
    fn wait(&mut self, deadline_ns: u64) {
        let _ = crate::evtchn::wait(&[self.port], deadline_ns);
    }
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }
}
