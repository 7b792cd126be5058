//! The start_info page kept for suspend: its mfn names it to Xen in the suspend call,
//! the ring fields become pfns before it (a restore turns them into the new domain's
//! mfns), and after a new domain the page holds what the restore rewrote.

use super::live;
use super::memory::Memory;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_protocol::start_info::{self, ResumeInfo, StartInfoError};

/// The start_info page, borrowed from [`Memory`] (see [`Memory::start_info_page`]).
pub(crate) struct StartInfoPage<'m> {
    mem: &'m mut Memory,
}

#[allow(dead_code)] // the suspend path's (a cargo feature of its own)
impl StartInfoPage<'_> {
    /// Its pfn (fixed for the guest's life).
    pub(crate) fn pfn(&self) -> Pfn {
        self.mem.p2m.start_info
    }

    /// Its machine frame now (for the suspend call's `rdx`).
    pub(crate) fn mfn(&self) -> Mfn {
        self.mem.mfn(self.pfn()).unwrap_or(Mfn(!0))
    }

    fn bytes(&mut self) -> &mut [u8; 4096] {
        // SAFETY: the takeover reserved this page (`Use::StartInfo`), and `self` borrows
        // `Memory` mutably: no other reference to the page lives meanwhile.
        unsafe { live::start_info_bytes(self.pfn()) }
    }

    /// Before the suspend call: `store_mfn` and `console.domU.mfn` become the rings'
    /// pfns (a restore checks them against `max_pfn` and rewrites them as mfns). dom0
    /// has no rings: nothing changes.
    pub(crate) fn rings_to_pfns(&mut self) {
        if let [Some(store), Some(console)] = self.mem.rings {
            start_info::set_ring_fields(self.bytes(), store.0, console.0);
        }
    }

    /// After a cancelled suspend (same domain): the fields are the rings' mfns again.
    pub(crate) fn rings_to_mfns(&mut self) {
        if let [Some(store), Some(console)] = self.mem.rings {
            let m = |p: Pfn| self.mem.mfn(p).map_or(!0, |m| m.0);
            let (s, c) = (m(store), m(console));
            start_info::set_ring_fields(self.bytes(), s, c);
        }
    }

    /// After a new domain: what the restore wrote into the page, checked.
    pub(crate) fn resume_info(&mut self) -> Result<ResumeInfo, StartInfoError> {
        let nr = self.mem.direct.nr_pages;
        ResumeInfo::parse(self.bytes(), nr)
    }
}

#[allow(dead_code)] // the suspend path's (a cargo feature of its own)
impl Memory {
    /// The start_info page the takeover kept.
    pub(crate) fn start_info_page(&mut self) -> StartInfoPage<'_> {
        StartInfoPage { mem: self }
    }
}
