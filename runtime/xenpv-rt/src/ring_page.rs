//! The live side of a shared ring page: the mapped page and its event channel, behind
//! the [`Link`] trait the ring protocol (`xenpv_protocol::ring`) is written against.

use x86_64::VirtAddr;
use xenpv_protocol::ring::{Idx, Link, PageLayout, Side};

/// A shared ring page mapped at `va` (direct map) and its event channel: the live
/// [`Link`] under the domU console ([`console::ring`](crate::console::ring)) and the
/// xenstore client ([`Boot::xenstore`](crate::Boot::xenstore)).
///
/// Every access to the page is volatile, because the peer (xenconsoled, xenstored) writes
/// it at any time; the ring arithmetic that decides what to access, and refuses indices
/// the peer corrupted, is [`ring::Duplex`](crate::ring::Duplex).
pub struct PageLink {
    va: VirtAddr,
    layout: PageLayout,
    port: crate::evtchn::Port,
}

impl PageLink {
    /// A link over the ring page mapped at `va`, laid out as `layout` (e.g.
    /// [`ring::CONSOLE_PAGE`](crate::ring::CONSOLE_PAGE) or
    /// [`ring::XENSTORE_PAGE`](crate::ring::XENSTORE_PAGE)), signalled through `port`.
    ///
    /// # Safety
    /// `va` must map the 4 KiB ring page, RW, for as long as the link is used, nothing
    /// else in this guest may access it, and `layout`'s offsets must lie inside the page
    /// with its index words 4-byte aligned.
    pub unsafe fn new(va: VirtAddr, layout: PageLayout, port: crate::evtchn::Port) -> Self {
        PageLink { va, layout, port }
    }
    /// The event channel (masked: wait on it with [`evtchn::wait`](crate::evtchn::wait)).
    pub fn port(&self) -> crate::evtchn::Port {
        self.port
    }
    /// Signal and wait through `port` from now on (after a resume in a new domain, where
    /// every event channel is new).
    pub fn set_port(&mut self, port: crate::evtchn::Port) {
        self.port = port;
    }
    /// The page at byte offset `off`.
    fn at<T>(&self, off: usize) -> *mut T {
        (self.va + off as u64).as_mut_ptr::<T>()
    }
    /// Byte `i` (free-running, taken modulo the ring's size) of the ring on `side`.
    fn byte(&self, side: Side, i: u32) -> *mut u8 {
        let (off, size) = match side {
            Side::Tx => self.layout.tx,
            Side::Rx => self.layout.rx,
        };
        self.at(off + (i % size) as usize)
    }
}

/// Which of `PageLayout::idx` holds index word `i`.
fn slot(i: Idx) -> usize {
    i as usize
}

// The peer writes the page at any time, so every access below is volatile.
impl Link for PageLink {
    fn size(&self, side: Side) -> u32 {
        match side {
            Side::Tx => self.layout.tx.1,
            Side::Rx => self.layout.rx.1,
        }
    }
    fn index(&self, i: Idx) -> u32 {
        // SAFETY: by `new`'s contract the page is mapped and the index word's offset is
        // inside it and 4-byte aligned; a volatile read of a u32 the peer may change.
        unsafe { self.at::<u32>(self.layout.idx[slot(i)]).read_volatile() }
    }
    fn set_index(&mut self, i: Idx, v: u32) {
        // SAFETY: by `new`'s contract the page is mapped RW and the index word's offset is
        // inside it and 4-byte aligned; nothing else in this guest touches the page.
        unsafe { self.at::<u32>(self.layout.idx[slot(i)]).write_volatile(v) }
    }
    fn load(&self, side: Side, i: u32) -> u8 {
        // SAFETY: `byte` reduces `i` modulo the ring's size, so the address lies in that
        // ring's bytes inside the page `new`'s contract keeps mapped.
        unsafe { self.byte(side, i).read_volatile() }
    }
    fn store(&mut self, side: Side, i: u32, b: u8) {
        // SAFETY: `byte` reduces `i` modulo the ring's size, so the address lies in that
        // ring's bytes inside the page `new`'s contract keeps mapped RW and ours alone.
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
    fn set_port(&mut self, port: u32) {
        self.port = port;
    }
    fn message_taken(&mut self) {
        // Tasks may await this port (a device handshake waits for the backend's watch
        // event): the blocking read that took the event also cleared the port's pending
        // bit, so the executor's idle loop would never wake them (they would wait for
        // their backstop timer instead).
        #[cfg(feature = "async")]
        crate::exec::fire(self.port);
    }
}
