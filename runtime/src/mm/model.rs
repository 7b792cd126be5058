//! A model of Xen's PV MMU rules (xen/arch/x86/mm.c, 64-bit PV), for the host tests: the
//! planners' operations run against it instead of against Xen.
//!
//! What it models, after Xen's `page_info`:
//! - each frame of the domain has a type (none, writable, L1..L4) with a type count; a
//!   frame holds one type at a time, so a page table can never also be mapped writable
//!   (an RW L1 entry takes a writable type reference on the frame it maps);
//! - the first reference of a page-table type validates the whole table, taking the
//!   references its entries need, recursively (`alloc_lN_table`); the last one releases
//!   them (`free_lN_table`);
//! - `mmu_update` on an untyped or writable frame is a plain write; on a typed table the
//!   new entry is validated and references move from the old entry to the new one;
//! - superpages are refused at L2..L4, Xen's L4 slots 256..271 are not the guest's, and
//!   frames the domain does not own cannot be mapped (shared_info is owned by Xen but
//!   shared with the domain: mappable, never a page table);
//! - pin / unpin / new_baseptr hold and drop type references like Xen's.
//!
//! Not modelled: linear (self-referencing) page tables, superpage L2/L3 entries (refused),
//! grant mappings, A/D bit updates, TLBs, and the per-entry flag masks beyond PSE.

use super::layout::{direct_map_va, index, KERNEL_VIRT_BASE, L4_XEN_FIRST, L4_XEN_LAST, PAGE_SIZE};
use super::ops::{pte, Level, Mfn, MmuOp, MmuSink, Pfn};
use std::collections::HashMap;

pub const EINVAL: i64 = -22;
pub const EPERM: i64 = -1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenError {
    pub errno: i64,
    pub what: String,
}

fn err<T>(errno: i64, what: String) -> Result<T, XenError> {
    Err(XenError { errno, what })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    None,
    Writable,
    Table(u8),
}

#[derive(Clone, Copy, Debug)]
struct Info {
    ty: Ty,
    count: u32,
    pinned: bool,
    /// Shared by Xen with the domain (shared_info): mappable, never a table.
    shared: bool,
}

#[derive(Default)]
pub struct Model {
    mem: HashMap<Mfn, Box<[u64; 512]>>,
    info: HashMap<Mfn, Info>,
    pub base: Option<Mfn>,
    pub ops: u64,
}

impl Model {
    pub fn add_frame(&mut self, mfn: Mfn) {
        self.info.insert(
            mfn,
            Info {
                ty: Ty::None,
                count: 0,
                pinned: false,
                shared: false,
            },
        );
    }
    pub fn add_shared(&mut self, mfn: Mfn) {
        self.info.insert(
            mfn,
            Info {
                ty: Ty::Writable,
                count: 0,
                pinned: false,
                shared: true,
            },
        );
    }
    pub fn ty(&self, mfn: Mfn) -> (Ty, u32, bool) {
        self.info
            .get(&mfn)
            .map_or((Ty::None, 0, false), |i| (i.ty, i.count, i.pinned))
    }
    /// Memory content written by Xen itself (the p2m list, say), not a guest operation.
    pub fn poke(&mut self, mfn: Mfn, slot: usize, val: u64) {
        self.store(mfn, slot, val);
    }
    pub fn table(&self, mfn: Mfn) -> [u64; 512] {
        self.mem.get(&mfn).map_or([0; 512], |t| **t)
    }
    fn entry(&self, mfn: Mfn, slot: usize) -> u64 {
        self.mem.get(&mfn).map_or(0, |t| t[slot])
    }
    fn store(&mut self, mfn: Mfn, slot: usize, val: u64) {
        self.mem.entry(mfn).or_insert_with(|| Box::new([0; 512]))[slot] = val;
    }

    fn get_type(&mut self, mfn: Mfn, want: Ty) -> Result<(), XenError> {
        let Some(i) = self.info.get(&mfn).copied() else {
            return err(EINVAL, format!("mfn {mfn:#x} is not the domain's"));
        };
        if i.shared && want != Ty::Writable {
            return err(
                EINVAL,
                format!("mfn {mfn:#x} is shared by Xen, it cannot be {want:?}"),
            );
        }
        if i.count > 0 && i.ty != want {
            return err(
                EINVAL,
                format!(
                    "mfn {mfn:#x} is {:?} (count {}), wanted {want:?}",
                    i.ty, i.count
                ),
            );
        }
        // Like Xen, take the type first and validate after: the table's own subtree cannot
        // then map it writable while it is being validated.
        let first = i.count == 0;
        {
            let i = self.info.get_mut(&mfn).expect("checked");
            i.ty = want;
            i.count += 1;
        }
        if let (true, Ty::Table(level)) = (first, want) {
            // Validate: every present entry takes its reference (alloc_lN_table).
            let t = self.table(mfn);
            for (slot, &e) in t.iter().enumerate() {
                if level == 4 && (L4_XEN_FIRST..=L4_XEN_LAST).contains(&slot) {
                    continue; // Xen's slots: filled by Xen, not validated
                }
                if let Err(e) = self.get_ref(mfn, level, slot, e) {
                    for (s, &old) in t.iter().enumerate().take(slot) {
                        if !(level == 4 && (L4_XEN_FIRST..=L4_XEN_LAST).contains(&s)) {
                            self.put_ref(level, old);
                        }
                    }
                    let i = self.info.get_mut(&mfn).expect("checked");
                    i.ty = Ty::None;
                    i.count = 0;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn put_type(&mut self, mfn: Mfn) {
        let Some(i) = self.info.get_mut(&mfn) else {
            return;
        };
        assert!(i.count > 0, "put_type of mfn {mfn:#x} with count 0");
        i.count -= 1;
        if i.count == 0 {
            let ty = i.ty;
            if !i.shared {
                i.ty = Ty::None;
            }
            if let Ty::Table(level) = ty {
                for (slot, e) in self.table(mfn).iter().enumerate() {
                    if !(level == 4 && (L4_XEN_FIRST..=L4_XEN_LAST).contains(&slot)) {
                        self.put_ref(level, *e);
                    }
                }
            }
        }
    }

    /// The reference entry `e` in slot `slot` of a level-`level` table `table` needs.
    fn get_ref(&mut self, table: Mfn, level: u8, slot: usize, e: u64) -> Result<(), XenError> {
        if !pte::present(e) {
            return Ok(());
        }
        let target = pte::frame(e);
        if level > 1 && e & pte::PSE != 0 {
            return err(
                EINVAL,
                format!("L{level} entry {slot} of mfn {table:#x} is a superpage"),
            );
        }
        if level > 1 && target == table {
            return err(
                EINVAL,
                format!("mfn {table:#x} maps itself (linear tables are not modelled)"),
            );
        }
        let want = match level {
            1 if e & pte::RW != 0 => Ty::Writable,
            1 => {
                return if self.info.contains_key(&target) {
                    Ok(())
                } else {
                    err(
                        EINVAL,
                        format!("L1 entry {slot} of mfn {table:#x} maps foreign mfn {target:#x}"),
                    )
                };
            }
            n => Ty::Table(n - 1),
        };
        self.get_type(target, want).map_err(|mut x| {
            x.what = format!("L{level} entry {slot} of mfn {table:#x}: {}", x.what);
            x
        })
    }

    fn put_ref(&mut self, level: u8, e: u64) {
        if pte::present(e) && (level > 1 || e & pte::RW != 0) {
            self.put_type(pte::frame(e));
        }
    }

    pub fn apply(&mut self, op: MmuOp) -> Result<(), XenError> {
        self.ops += 1;
        match op {
            MmuOp::PtUpdate { ptr, val } => {
                if ptr & 7 != 0 {
                    return err(
                        EINVAL,
                        format!("mmu_update ptr {ptr:#x} is not a normal update"),
                    );
                }
                let (mfn, slot) = (ptr >> 12, ((ptr & 0xfff) / 8) as usize);
                let Some(i) = self.info.get(&mfn).copied() else {
                    return err(EINVAL, format!("mmu_update into foreign mfn {mfn:#x}"));
                };
                match (i.ty, i.count) {
                    (Ty::Table(level), c) if c > 0 => {
                        if level == 4 && (L4_XEN_FIRST..=L4_XEN_LAST).contains(&slot) {
                            return err(EINVAL, format!("L4 slot {slot} belongs to Xen"));
                        }
                        self.get_ref(mfn, level, slot, val)?;
                        let old = self.entry(mfn, slot);
                        self.put_ref(level, old);
                        self.store(mfn, slot, val);
                    }
                    _ => self.store(mfn, slot, val), // plain checked write
                }
                Ok(())
            }
            MmuOp::ClearPage { mfn } => {
                self.get_type(mfn, Ty::Writable)?;
                self.mem.remove(&mfn);
                self.put_type(mfn);
                Ok(())
            }
            MmuOp::Pin { level, mfn } => {
                if self.ty(mfn).2 {
                    return err(EINVAL, format!("mfn {mfn:#x} is already pinned"));
                }
                self.get_type(mfn, Ty::Table(level as u8))?;
                self.info.get_mut(&mfn).expect("typed").pinned = true;
                Ok(())
            }
            MmuOp::Unpin { mfn } => {
                if !self.ty(mfn).2 {
                    return err(EINVAL, format!("mfn {mfn:#x} is not pinned"));
                }
                self.info.get_mut(&mfn).expect("pinned").pinned = false;
                self.put_type(mfn);
                Ok(())
            }
            MmuOp::NewBaseptr { mfn } => {
                self.get_type(mfn, Ty::Table(4))?;
                if let Some(old) = self.base.replace(mfn) {
                    self.put_type(old);
                }
                Ok(())
            }
            MmuOp::TlbFlushLocal | MmuOp::InvlpgLocal { .. } => Ok(()),
        }
    }

    /// Walk from the current base: the mfn `va` maps and whether it is writable.
    pub fn translate(&self, va: u64) -> Option<(Mfn, bool)> {
        let mut table = self.base?;
        let mut rw = true;
        for level in (1..=4).rev() {
            let e = self.entry(table, index(va, level));
            if !pte::present(e) {
                return None;
            }
            rw &= e & pte::RW != 0;
            table = pte::frame(e);
        }
        Some((table, rw))
    }

    /// A guest read of the u64 at `va`.
    pub fn read_va(&self, va: u64) -> Option<u64> {
        let (mfn, _) = self.translate(va)?;
        Some(self.entry(mfn, ((va & 0xfff) / 8) as usize))
    }

    /// A guest write through its mappings (fails like a page fault if not writable).
    pub fn write_va(&mut self, va: u64, val: u64) -> Result<(), String> {
        match self.translate(va) {
            Some((mfn, true)) => {
                self.store(mfn, ((va & 0xfff) / 8) as usize, val);
                Ok(())
            }
            Some((_, false)) => Err(format!("write to read-only {va:#x}")),
            None => Err(format!("write to unmapped {va:#x}")),
        }
    }

    /// Recount every type reference from the tables and compare with the counts kept.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut want: HashMap<Mfn, (Ty, u32)> = HashMap::new();
        let mut add = |m: Mfn, t: Ty| {
            let e = want.entry(m).or_insert((t, 0));
            if e.0 != t {
                return Err(format!("mfn {m:#x} referenced as {:?} and as {t:?}", e.0));
            }
            e.1 += 1;
            Ok(())
        };
        for (&mfn, i) in &self.info {
            if i.pinned {
                add(mfn, i.ty)?;
            }
            if let (Ty::Table(level), c) = (i.ty, i.count) {
                if c == 0 {
                    continue;
                }
                for (slot, &e) in self.table(mfn).iter().enumerate() {
                    if !pte::present(e)
                        || (level == 4 && (L4_XEN_FIRST..=L4_XEN_LAST).contains(&slot))
                    {
                        continue;
                    }
                    match level {
                        1 if e & pte::RW != 0 => add(pte::frame(e), Ty::Writable)?,
                        1 => {}
                        n => add(pte::frame(e), Ty::Table(n - 1))?,
                    }
                }
            }
        }
        if let Some(b) = self.base {
            add(b, Ty::Table(4))?;
        }
        for (&mfn, i) in &self.info {
            let (t, c) = want.get(&mfn).copied().unwrap_or((Ty::None, 0));
            if i.count != c || (c > 0 && i.ty != t) {
                return Err(format!(
                    "mfn {mfn:#x}: kept {:?}/{} but tables say {t:?}/{c}",
                    i.ty, i.count
                ));
            }
        }
        Ok(())
    }
}

/// A sink that applies each operation at once.
impl MmuSink for Model {
    type Error = XenError;
    fn submit(&mut self, op: MmuOp) -> Result<(), XenError> {
        self.apply(op)
    }
    fn flush(&mut self) -> Result<(), XenError> {
        Ok(())
    }
}

/// What the dom0 builder model set up (the start_info facts).
#[derive(Clone, Debug)]
pub struct Dom0 {
    pub nr_pages: u64,
    pub p2m: Vec<Mfn>,
    pub kernel_end: u64,
    pub module: Option<(Pfn, Pfn)>,
    pub mod_start_pfn: bool,
    pub p2m_pfns: (Pfn, Pfn),
    pub mfn_list: u64,
    pub xen_pt: (Pfn, Pfn),
    pub boot_end: u64,
    pub shared_info: Mfn,
}

/// pfn -> mfn: scrambled and offset so that pfn/mfn confusion shows.
pub fn scrambled_mfn(pfn: Pfn, seed: u64) -> Mfn {
    0x10_0000 + ((pfn ^ (seed & 0x3ff)) * 3)
}

/// Build a domain as Xen 4.17's PV dom0 builder lays it out (observed under Xen, see
/// `shared/xen-notes.md`): kernel, initrd (unless MOD_START_PFN), p2m list, start_info,
/// boot page tables (L4, L3, L2 for L3[510], L2 for L3[511] when the region passes 1 GiB,
/// one L1 per 2 MiB), boot stack; the mapping ends at least 512 KiB later, rounded to
/// 4 MiB; page-table frames mapped read-only; L4 pinned and current.
pub fn dom0(
    model: &mut Model,
    nr_pages: u64,
    kernel_pages: u64,
    initrd_bytes: u64,
    mod_start_pfn: bool,
    seed: u64,
) -> Dom0 {
    let p2m: Vec<Mfn> = (0..nr_pages).map(|p| scrambled_mfn(p, seed)).collect();
    for &m in &p2m {
        model.add_frame(m);
    }
    let shared_info = 0xfff_0000;
    model.add_shared(shared_info);
    let initrd_pages = initrd_bytes.div_ceil(PAGE_SIZE);
    let mut next = kernel_pages;
    let mapped_module = (initrd_pages > 0 && !mod_start_pfn).then(|| {
        let r = (next, next + initrd_pages);
        next += initrd_pages;
        r
    });
    let p2m_pfns = (next, next + (nr_pages * 8).div_ceil(PAGE_SIZE));
    next = p2m_pfns.1 + 1; // start_info
                           // Page tables: enough L1s for the region including themselves, the stack and padding.
    let mut n_l1 = 1;
    let (pt, end) = loop {
        let n_l2 = if (next + 3 + n_l1 + 1 + 128) * PAGE_SIZE > 1 << 30 {
            2
        } else {
            1
        };
        let pt = (next, next + 2 + n_l2 + n_l1);
        let end = (pt.1 + 1 + 128).div_ceil(1024) * 1024; // stack + 512 KiB, to 4 MiB
        if end.div_ceil(512) <= n_l1 {
            break (pt, end);
        }
        n_l1 = end.div_ceil(512);
    };
    let (l4, l3, l2k) = (pt.0, pt.0 + 1, pt.0 + 2);
    let two_l2 = pt.1 - pt.0 - 2 - n_l1 == 2;
    let l2f = l2k + 1;
    let l1_0 = if two_l2 { l2k + 2 } else { l2k + 1 };
    let mfn = |p: Pfn| p2m[p as usize];
    for pfn in 0..end {
        let flags = if (pt.0..pt.1).contains(&pfn) {
            pte::PRESENT
        } else {
            pte::PRESENT | pte::RW
        };
        model
            .apply(MmuOp::PtUpdate {
                ptr: (mfn(l1_0 + pfn / 512) << 12) | ((pfn % 512) * 8),
                val: (mfn(pfn) << 12) | flags,
            })
            .unwrap();
    }
    for i in 0..n_l1 {
        let (l2, slot) = if i < 512 { (l2k, i) } else { (l2f, i - 512) };
        model
            .apply(MmuOp::PtUpdate {
                ptr: (mfn(l2) << 12) | (slot * 8),
                val: (mfn(l1_0 + i) << 12) | 0x7,
            })
            .unwrap();
    }
    model
        .apply(MmuOp::PtUpdate {
            ptr: (mfn(l3) << 12) | (510 * 8),
            val: (mfn(l2k) << 12) | 0x7,
        })
        .unwrap();
    if two_l2 {
        model
            .apply(MmuOp::PtUpdate {
                ptr: (mfn(l3) << 12) | (511 * 8),
                val: (mfn(l2f) << 12) | 0x7,
            })
            .unwrap();
    }
    model
        .apply(MmuOp::PtUpdate {
            ptr: (mfn(l4) << 12) | (511 * 8),
            val: (mfn(l3) << 12) | 0x7,
        })
        .unwrap();
    model
        .apply(MmuOp::Pin {
            level: Level::L4,
            mfn: mfn(l4),
        })
        .unwrap();
    model.apply(MmuOp::NewBaseptr { mfn: mfn(l4) }).unwrap();
    for (pfn, &m) in p2m.iter().enumerate() {
        model.poke(mfn(p2m_pfns.0 + pfn as u64 / 512), pfn % 512, m);
    }
    let module = match (mapped_module, initrd_pages) {
        (Some(m), _) => Some(m),
        (None, 0) => None,
        (None, n) => Some((end, end + n)), // MOD_START_PFN: right after the boot region
    };
    Dom0 {
        nr_pages,
        p2m,
        kernel_end: KERNEL_VIRT_BASE + kernel_pages * PAGE_SIZE,
        module,
        mod_start_pfn,
        p2m_pfns,
        mfn_list: KERNEL_VIRT_BASE + p2m_pfns.0 * PAGE_SIZE,
        xen_pt: pt,
        boot_end: KERNEL_VIRT_BASE + end * PAGE_SIZE,
        shared_info,
    }
}

/// The direct-map address a test reads a pfn's first word through.
pub fn direct_word(pfn: Pfn) -> u64 {
    direct_map_va(pfn)
}

#[cfg(test)]
mod tests {
    //! The model rejects what Xen rejects, with Xen's error, and accepts what Xen accepts.
    use super::*;

    fn fresh(n: u64) -> (Model, Vec<Mfn>) {
        let mut m = Model::default();
        let frames: Vec<Mfn> = (0..n).map(|i| 0x1000 + i * 7).collect();
        for &f in &frames {
            m.add_frame(f);
        }
        (m, frames)
    }
    fn put(m: &mut Model, table: Mfn, slot: u64, val: u64) -> Result<(), XenError> {
        m.apply(MmuOp::PtUpdate {
            ptr: (table << 12) | (slot * 8),
            val,
        })
    }
    const T: u64 = pte::PRESENT | pte::RW;

    /// L4 -> L3 -> L2 -> L1 -> data in f[0..5], mapping data at va 0 read-write.
    fn tree(m: &mut Model, f: &[Mfn]) {
        put(m, f[3], 0, (f[4] << 12) | T).unwrap();
        put(m, f[2], 0, (f[3] << 12) | T).unwrap();
        put(m, f[1], 0, (f[2] << 12) | T).unwrap();
        put(m, f[0], 0, (f[1] << 12) | T).unwrap();
    }

    /// `tree` in fresh frames, its L4 pinned.
    fn pinned_tree() -> (Model, Vec<Mfn>) {
        let (mut m, f) = fresh(8);
        tree(&mut m, &f);
        m.apply(MmuOp::Pin {
            level: Level::L4,
            mfn: f[0],
        })
        .unwrap();
        (m, f)
    }

    #[test]
    fn accepts_a_tree_built_in_untyped_frames_then_pinned_and_switched() {
        let (mut m, f) = pinned_tree();
        m.apply(MmuOp::NewBaseptr { mfn: f[0] }).unwrap();
        assert_eq!(m.ty(f[3]), (Ty::Table(1), 1, false));
        assert_eq!(m.ty(f[4]), (Ty::Writable, 1, false));
        assert_eq!(m.translate(0), Some((f[4], true)));
        m.check_invariants().unwrap();
        // Unpinning and switching away releases everything, recursively.
        let (_, g) = (0, f[5]);
        m.apply(MmuOp::Unpin { mfn: f[0] }).unwrap();
        put(&mut m, g, 0, 0).unwrap();
        m.apply(MmuOp::NewBaseptr { mfn: g }).unwrap();
        assert_eq!(m.ty(f[0]).1, 0);
        assert_eq!(m.ty(f[3]), (Ty::None, 0, false));
        m.check_invariants().unwrap();
    }

    #[test]
    fn refuses_a_page_table_that_is_mapped_writable() {
        let (mut m, f) = fresh(8);
        tree(&mut m, &f);
        put(&mut m, f[3], 1, (f[3 - 1] << 12) | T).unwrap(); // L1 maps the L2 frame RW
        let e = m
            .apply(MmuOp::Pin {
                level: Level::L4,
                mfn: f[0],
            })
            .unwrap_err();
        assert_eq!(e.errno, EINVAL, "{}", e.what);
        assert_eq!(m.ty(f[0]).1, 0, "a failed pin leaves nothing typed");
        assert_eq!(m.ty(f[2]).1, 0);
        m.check_invariants().unwrap();
    }

    #[test]
    fn refuses_a_writable_mapping_of_a_pinned_table() {
        let (mut m, f) = pinned_tree();
        assert_eq!(
            put(&mut m, f[3], 2, (f[1] << 12) | T).unwrap_err().errno,
            EINVAL
        );
        put(&mut m, f[3], 2, (f[1] << 12) | pte::PRESENT).unwrap(); // read-only is fine
        m.check_invariants().unwrap();
    }

    #[test]
    fn refuses_superpages_xen_slots_foreign_frames_and_bad_ptrs() {
        let (mut m, f) = pinned_tree();
        assert_eq!(
            put(&mut m, f[2], 1, (f[5] << 12) | T | pte::PSE)
                .unwrap_err()
                .errno,
            EINVAL
        );
        assert_eq!(
            put(&mut m, f[0], 256, (f[6] << 12) | T).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(
            put(&mut m, f[3], 3, (0xdead << 12) | pte::PRESENT)
                .unwrap_err()
                .errno,
            EINVAL
        );
        assert_eq!(
            m.apply(MmuOp::PtUpdate {
                ptr: 0xdead << 12,
                val: 0
            })
            .unwrap_err()
            .errno,
            EINVAL
        );
        assert_eq!(
            m.apply(MmuOp::PtUpdate {
                ptr: (f[3] << 12) | 1,
                val: 0
            })
            .unwrap_err()
            .errno,
            EINVAL
        );
        m.check_invariants().unwrap();
    }

    #[test]
    fn refuses_bad_pins_baseptrs_and_clears() {
        let (mut m, f) = pinned_tree();
        assert_eq!(
            m.apply(MmuOp::Pin {
                level: Level::L4,
                mfn: f[0]
            })
            .unwrap_err()
            .errno,
            EINVAL
        );
        assert_eq!(
            m.apply(MmuOp::Unpin { mfn: f[6] }).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(
            m.apply(MmuOp::NewBaseptr { mfn: f[3] }).unwrap_err().errno,
            EINVAL,
            "an L1 is no L4"
        );
        assert_eq!(
            m.apply(MmuOp::ClearPage { mfn: f[2] }).unwrap_err().errno,
            EINVAL
        );
        m.apply(MmuOp::ClearPage { mfn: f[6] }).unwrap();
        m.add_shared(0xfff);
        assert_eq!(
            m.apply(MmuOp::Pin {
                level: Level::L1,
                mfn: 0xfff
            })
            .unwrap_err()
            .errno,
            EINVAL
        );
        m.check_invariants().unwrap();
    }

    #[test]
    fn the_dom0_builder_matches_what_xen_printed() {
        // Observed under Xen 4.17, 600 MiB initrd, dom0_mem=1024M: TOTAL ends at 0xffffffffa6000000;
        // 1100 MiB, 2048M: 0xffffffffc5400000 (under L3[511]); no initrd, 256M: 0xffffffff80400000.
        for (nr, initrd, end) in [
            (65536, 0, 0xffff_ffff_8040_0000u64),
            (262144, 600u64 << 20, 0xffff_ffff_a600_0000),
            (524288, 1100 << 20, 0xffff_ffff_c540_0000),
        ] {
            let mut m = Model::default();
            let d = dom0(&mut m, nr, 0x59, initrd, false, 1);
            assert_eq!(d.boot_end, end, "nr {nr} initrd {initrd}");
            m.check_invariants().unwrap();
            // Page tables read-only, everything else read-write, 1:1 with pfns.
            let pt_va = KERNEL_VIRT_BASE + d.xen_pt.0 * PAGE_SIZE;
            assert_eq!(
                m.translate(pt_va),
                Some((d.p2m[d.xen_pt.0 as usize], false))
            );
            assert_eq!(m.translate(KERNEL_VIRT_BASE), Some((d.p2m[0], true)));
            assert_eq!(m.read_va(d.mfn_list + 8 * 5), Some(d.p2m[5]));
        }
    }
}
