//! The domain's reservation as Xen keeps it (`xen/common/memory.c`): frames leave the
//! domain (`XENMEM_decrease_reservation`, `guest_remove_page`) and join it
//! (`XENMEM_populate_physmap`, which for a PV guest also sets the M2P).
//!
//! One deliberate strictness: Xen accepts to remove a frame that is still mapped, but
//! then frees it only when the last mapping goes (the domain keeps paying for it, and
//! `tot_pages` does not drop). The model refuses such a removal, so that a balloon that
//! forgets to clear a mapping first is caught.

use super::{fail, Frame, Mfn, Pfn, Refusal, XenPvModel, EINVAL};

impl XenPvModel {
    /// `guest_remove_page` for one frame of the domain: refused if it is not the
    /// domain's plain frame, has a page-table type or any reference (a mapping).
    pub fn remove_page(&mut self, mfn: Mfn) -> Result<(), Refusal> {
        let Some(f) = self.frames.get(&mfn) else {
            return fail(EINVAL, format!("mfn {mfn:#x} is not the domain's"));
        };
        if f.xen_shared {
            return fail(EINVAL, format!("mfn {mfn:#x} is a Xen page"));
        }
        if f.count > 0 || f.refs > 0 {
            return fail(
                EINVAL,
                format!(
                    "mfn {mfn:#x} still referenced (type count {}, refs {}): Xen would keep it",
                    f.count, f.refs
                ),
            );
        }
        self.frames.remove(&mfn);
        self.mem.remove(&mfn);
        Ok(())
    }

    /// `populate_physmap` of one frame for `pfn`: a fresh machine frame (zeroed), its M2P
    /// entry naming `pfn`. Returns its mfn.
    pub fn populate_page(&mut self, pfn: Pfn) -> Mfn {
        if self.last_populated == 0 {
            self.last_populated = self.frames.keys().copied().max().unwrap_or(0x1000);
        }
        self.last_populated += 1;
        let mfn = self.last_populated;
        let mut f = Frame::new();
        f.m2p = Some(pfn);
        self.frames.insert(mfn, f);
        mfn
    }

    /// Frames the domain holds (`tot_pages`; Xen pages shared with it not counted).
    pub fn tot_pages(&self) -> u64 {
        self.frames.values().filter(|f| !f.xen_shared).count() as u64
    }
}
