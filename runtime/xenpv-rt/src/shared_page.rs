//! A page shared with a backend: ours (a [`Page`] from the allocator, kept for as long
//! as this lives), written and read with volatile accesses because the backend may
//! change it at any time. The live [`PageMem`] under the front-ends' rings and RX
//! buffers.

use crate::mm::{Memory, Page};
use xenpv_paging::layout::{direct_map_va, VirtAddr};
use xenpv_protocol::shared_ring::PageMem;

/// An owned page that a peer may write: every access volatile, every offset checked.
#[derive(Debug)]
pub struct SharedPage {
    page: Page,
    va: VirtAddr,
}

impl SharedPage {
    /// A fresh page, zeroed; `None` when memory is exhausted.
    pub fn alloc(mem: &mut Memory) -> Option<SharedPage> {
        let page = mem.alloc_page()?;
        Some(Self::from_page(mem, page))
    }
    /// A page the caller allocated (e.g. from a [`crate::mm::PageRun`]), zeroed.
    pub fn from_page(mem: &mut Memory, mut page: Page) -> SharedPage {
        mem.page_mut(&mut page).fill(0);
        let va = direct_map_va(page.pfn());
        SharedPage { page, va }
    }
    /// Where it is mapped (in the direct map).
    pub(crate) fn va(&self) -> VirtAddr {
        self.va
    }
    /// The page (to grant it).
    pub fn page(&self) -> &Page {
        &self.page
    }
    /// Give the page back. No peer can reach it: a granted page is held by its guard
    /// (`gnttab::GrantedPage`, `ReservedRef`), which returns it only once the grant ended.
    pub fn free(self, mem: &mut Memory) {
        mem.free_page(self.page);
    }
    fn ptr(&self, at: usize, len: usize) -> *mut u8 {
        assert!(at + len <= 4096, "{len} bytes at {at} pass the page end");
        (self.va + at as u64).as_mut_ptr::<u8>()
    }
    /// Copy bytes out with volatile reads (8 at a time where aligned).
    pub fn read_bytes(&self, at: usize, out: &mut [u8]) {
        let p = self.ptr(at, out.len());
        let mut i = 0;
        let head = (p as usize).wrapping_neg() % 8;
        while i < out.len() && i < head {
            // SAFETY: inside the page (checked by `ptr`), which this SharedPage owns and
            // keeps mapped; a peer may write it, so the read is volatile.
            out[i] = unsafe { p.add(i).read_volatile() };
            i += 1;
        }
        while i + 8 <= out.len() {
            // SAFETY: as above; p + i is 8-byte aligned here (the head was read bytewise).
            let w = unsafe { (p.add(i) as *const u64).read_volatile() };
            out[i..i + 8].copy_from_slice(&w.to_ne_bytes());
            i += 8;
        }
        while i < out.len() {
            // SAFETY: as above.
            out[i] = unsafe { p.add(i).read_volatile() };
            i += 1;
        }
    }
    /// Copy bytes in with volatile writes.
    pub fn write_bytes(&mut self, at: usize, data: &[u8]) {
        let p = self.ptr(at, data.len());
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: inside the page (checked by `ptr`), ours and mapped RW.
            unsafe { p.add(i).write_volatile(b) }
        }
    }
    /// The page as bytes we alone write (for pages the peer may only read: a TX buffer
    /// granted read-only).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; 4096] {
        // SAFETY: the page is ours, mapped RW in the direct map for as long as self
        // lives; the &mut self borrow makes the reference unique in this guest. Callers
        // use it only for pages the peer cannot write.
        unsafe { &mut *self.va.as_mut_ptr::<[u8; 4096]>() }
    }
}

impl PageMem for SharedPage {
    fn load_u32(&self, at: usize) -> u32 {
        let p = self.ptr(at, 4) as *const u32;
        assert!(p.is_aligned());
        // SAFETY: inside the page and aligned (checked); volatile: the peer writes it.
        unsafe { p.read_volatile() }
    }
    fn store_u32(&mut self, at: usize, v: u32) {
        let p = self.ptr(at, 4) as *mut u32;
        assert!(p.is_aligned());
        // SAFETY: inside the page and aligned (checked); ours and mapped RW.
        unsafe { p.write_volatile(v) }
    }
    fn read(&self, at: usize, out: &mut [u8]) {
        self.read_bytes(at, out)
    }
    fn write(&mut self, at: usize, data: &[u8]) {
        self.write_bytes(at, data)
    }
}
