//! A host-side model of Xen 4.17's PV MMU rules for 64-bit PV guests, for the host tests:
//! plans of [`MmuOp`]s run against it instead of against Xen, and the tests then inspect the
//! resulting address space through [`XenPvModel::translate`] / [`XenPvModel::read_va`].
//!
//! Every rule cites the Xen function it mirrors (xen/arch/x86/mm.c unless noted; read at tag
//! RELEASE-4.17.7). The facts behind it are written up in `docs/xen-pv-facts.md`.
//!
//! Modelled, after Xen's `page_info`:
//! - frame ownership: the domain's frames, Xen pages shared with it (shared_info: owned,
//!   permanently writable-typed), MMIO frames (`dom_io`), and everything else (foreign/free);
//! - per-frame type (none, writable, L1..L4), type count, validated, pinned, general ref
//!   count, and `linear_pt_count`;
//! - `_get_page_type`: a type change only at count 0; the first page-table reference takes
//!   the type *then* validates (`promote_lN_table`), depth first in slot order, taking the
//!   entries' references recursively and rewriting entries with Xen's `adjust_guest_lNe`;
//!   a validation failure releases what was taken and leaves the frame untyped;
//! - `_put_page_type`: the last reference devalidates (`demote_lN_table`), recursively;
//! - `mmu_update`: plain write into untyped or writable frames, `mod_lN_entry` (flag masks,
//!   adjust, fast path, take-new-then-drop-old) into validated tables, Xen's L4 slots
//!   256..271 refused, `ptr & 7` decoded as Xen does;
//! - pin / unpin / new_baseptr / clear_page / update_va_mapping as in `do_mmuext_op`,
//!   `new_guest_cr3`, `__do_update_va_mapping`;
//! - linear (same-level, read-only) page-table entries, including self maps;
//! - the dom0 builder (`xen/arch/x86/pv/dom0_build.c: dom0_construct_pv`), see [`build_dom0`].
//!
//! Deliberately not modelled: 32-bit (compat) guests, superpage mappings (refused anyway
//! for 64-bit PV: PSE is in every L2..L4 disallow mask), grant mappings, foreign-domain
//! mmu_update (`foreigndom`), MMIO flag flipping (mmio_ro_ranges, cache-attribute
//! fix-ups), L1TF checks of non-present entries (`pv_l1tf_check_lNe`), preemption /
//! continuations (end states are the same), A/D bit updates by the CPU, TLBs (the model
//! behaves like a CPU that never caches translations: flushes are accepted and do
//! nothing, so a plan that forgets a flush is not caught), `MMUEXT_NEW_USER_BASEPTR`,
//! LDT/GDT (seg_desc) pages, and the M2P contents beyond `MMU_MACHPHYS_UPDATE`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use xenpv_paging::ops::{Level, MmuOp, MmuSink};

/// The PTE bits as raw words: the model works on entries as Xen does (`_PAGE_*` masks),
/// not on the planners' typed `PageTableFlags`.
mod pte {
    pub use typed::{frame, ADDR_MASK};
    use xenpv_paging::ops::pte as typed;
    pub const PRESENT: u64 = typed::PRESENT.bits();
    pub const RW: u64 = typed::RW.bits();
    pub const USER: u64 = typed::USER.bits();
    pub const PWT: u64 = typed::PWT.bits();
    pub const PCD: u64 = typed::PCD.bits();
    pub const ACCESSED: u64 = typed::ACCESSED.bits();
    pub const DIRTY: u64 = typed::DIRTY.bits();
    pub const PSE: u64 = typed::PSE.bits();
    pub const GLOBAL: u64 = typed::GLOBAL.bits();
    pub const NX: u64 = typed::NX.bits();
}
/// Raw machine frame number. The model keys Xen's frames by number, as Xen's
/// `frame_table` does; the typed `xenpv_paging::Mfn` is converted where a plan's
/// operations arrive ([`XenPvModel::apply`]) and in the dom0 builder's outputs.
pub type Mfn = u64;
/// Raw pseudo-physical frame number (see [`Mfn`]).
pub type Pfn = u64;

/// The frame an entry points at, as a raw number.
fn frame(entry: u64) -> Mfn {
    pte::frame(entry).0
}

// ---------------------------------------------------------------------------------------
// Errors

pub const EPERM: i32 = -1;
pub const ENOENT: i32 = -2;
pub const EACCES: i32 = -13;
pub const EFAULT: i32 = -14;
pub const EBUSY: i32 = -16;
pub const EINVAL: i32 = -22;
pub const ENOSYS: i32 = -38;

/// A hypercall failure: Xen's (negative) errno and which rule fired where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub errno: i32,
    pub what: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errno {}: {}", self.errno, self.what)
    }
}

fn fail<T>(errno: i32, what: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        errno,
        what: what.into(),
    })
}

fn context(mut e: Refusal, ctx: impl fmt::Display) -> Refusal {
    e.what = format!("{ctx}: {}", e.what);
    e
}

/// A guest access that would fault (the model's page fault).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub va: u64,
    pub write: bool,
    pub what: String,
}

// ---------------------------------------------------------------------------------------
// PTE bits beyond `ops::pte`, in PTE positions (Xen keeps flags as a 24-bit value made of PTE
// bits 0..11 and 52..63; these are the same bits where they sit in the entry).

pub mod bits {
    /// PAT in an L1 entry, PSE in L2/L3.
    pub const PAT: u64 = 1 << 7;
    /// `_PAGE_AVAIL` (bits 9..11).
    pub const AVAIL: u64 = 0xe00;
    /// `_PAGE_AVAIL_HIGH` (bits 52..62).
    pub const AVAIL_HIGH: u64 = 0x7ff << 52;
    /// `_PAGE_GUEST_KERNEL`: Xen marks 64-bit PV kernel L1 mappings with PTE bit 52.
    pub const GUEST_KERNEL: u64 = 1 << 52;
    /// `_PAGE_GNTTAB`: PTE bit 62, refused in guest L1 entries.
    pub const GNTTAB: u64 = 1 << 62;
    /// All flag positions (bits 0..11, 52..63).
    pub const FLAGS: u64 = 0xfff | (0xfff << 52);
}

use bits::*;

mod builder;
mod invariants;
pub mod migrate;
mod reservation;
#[cfg(test)]
mod tests;

pub use builder::*;

const P: u64 = pte::PRESENT;
const RW: u64 = pte::RW;
const USER: u64 = pte::USER;
const A: u64 = pte::ACCESSED;
const D: u64 = pte::DIRTY;
const CACHE_ATTRS: u64 = pte::PWT | pte::PCD | PAT;

/// `base_disallow_mask` (`arch_init_memory`): everything but P, RW, USER, A, D, AVAIL,
/// AVAIL_HIGH and NX. What is left of the flag positions: PWT, PCD, PSE/PAT, GLOBAL.
pub const BASE_DISALLOW: u64 = FLAGS & !(P | RW | USER | A | D | AVAIL | AVAIL_HIGH | pte::NX);
/// `L1_DISALLOW_MASK` for a domain without I/O capabilities (a plain domU).
pub const L1_DISALLOW: u64 = (BASE_DISALLOW | GNTTAB) & !pte::GLOBAL;
/// `l1_disallow_mask(d)` for a domain with I/O capabilities (dom0): cache attributes allowed.
pub const L1_DISALLOW_IO: u64 = L1_DISALLOW & !CACHE_ATTRS;
/// `L2_DISALLOW_MASK`, `l3_disallow_mask` (64-bit), `L4_DISALLOW_MASK`.
pub const PDE_DISALLOW: u64 = BASE_DISALLOW;
/// `FASTPATH_FLAG_WHITELIST`: flags an update may change without revalidation. With
/// CONFIG_PV_LINEAR_PT (the default) the same list holds for L2..L4 (RW not included).
pub const FASTPATH_WHITELIST: u64 = pte::NX | AVAIL_HIGH | AVAIL | pte::GLOBAL | D | A | USER;

/// Xen's L4 slots in a 64-bit PV guest's tables (`ROOT_PAGETABLE_FIRST/LAST_XEN_SLOT`).
pub const L4_XEN_FIRST: usize = 256;
pub const L4_XEN_LAST: usize = 271;
/// `HYPERVISOR_VIRT_END`: `__addr_ok` accepts addresses below 2^47 or from here up.
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;

pub const UVMF_NONE: u64 = 0;
pub const UVMF_TLB_FLUSH: u64 = 1;
pub const UVMF_INVLPG: u64 = 2;
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
pub const UVMF_LOCAL: u64 = 0;
pub const UVMF_ALL: u64 = 4;

/// `__PAGE_HYPERVISOR_RW` (P|RW|A|D) as Xen puts it in its own L4 slots.
const XEN_SLOT_FLAGS: u64 = P | RW | A | D;
/// The machine frames the model pretends Xen's own L4-slot tables live in (never owned).
const XEN_TABLE_MFN_BASE: Mfn = 0xff_ffff_0000;

pub const fn is_xen_l4_slot(slot: usize) -> bool {
    slot >= L4_XEN_FIRST && slot <= L4_XEN_LAST
}

/// The table index of `va` at `level`.
pub const fn index(va: u64, level: Level) -> usize {
    ((va >> (12 + 9 * (level as u32 - 1))) & 511) as usize
}

const LEVELS_DOWN: [Level; 4] = [Level::L4, Level::L3, Level::L2, Level::L1];

/// What Xen stores for a guest entry (`adjust_guest_l1e` .. `adjust_guest_l4e`, pv/mm.h).
pub const fn adjust(level: Level, e: u64) -> u64 {
    if e & P == 0 {
        return e;
    }
    match level {
        Level::L1 => {
            let mut e = e;
            if e & USER == 0 {
                e |= GUEST_KERNEL | USER;
            }
            if e & GUEST_KERNEL == 0 {
                e |= pte::GLOBAL | USER;
            }
            e
        }
        Level::L2 | Level::L3 => e | USER,
        Level::L4 => e | A | USER,
    }
}

/// `lNe_has_changed(old, new, ~FASTPATH_FLAG_WHITELIST)`: does the update need validating?
const fn needs_revalidation(old: u64, new: u64) -> bool {
    (old ^ new) & (pte::ADDR_MASK | (FLAGS & !FASTPATH_WHITELIST)) != 0
}

// ---------------------------------------------------------------------------------------
// Frames

/// A frame's type (`PGT_*`). `None` stands for "type count 0": Xen keeps stale type bits
/// then, but they carry no meaning (the next reference may change them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageType {
    None,
    Writable,
    L1,
    L2,
    L3,
    L4,
}

impl PageType {
    pub const fn table(level: Level) -> PageType {
        match level {
            Level::L1 => PageType::L1,
            Level::L2 => PageType::L2,
            Level::L3 => PageType::L3,
            Level::L4 => PageType::L4,
        }
    }
    pub const fn level(self) -> Option<Level> {
        match self {
            PageType::L1 => Some(Level::L1),
            PageType::L2 => Some(Level::L2),
            PageType::L3 => Some(Level::L3),
            PageType::L4 => Some(Level::L4),
            _ => None,
        }
    }
}

/// Who a machine frame belongs to, as far as the domain is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// One of the domain's own frames.
    Domain,
    /// A Xen heap page shared with the domain (`share_xen_page_with_guest`, e.g.
    /// shared_info): owned by the domain, permanently holding one writable type ref.
    XenShared,
    /// MMIO / not RAM (`dom_io`): mappable by L1 entries only with I/O capabilities.
    Io,
    /// Another domain's, Xen's own, or free.
    Foreign,
}

/// A snapshot of a frame's `page_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameType {
    pub ty: PageType,
    /// Type reference count (`type_info & PGT_count_mask`).
    pub count: u32,
    pub pinned: bool,
    pub validated: bool,
    /// General references beyond the allocation reference (`count_info - PGC_allocated`):
    /// one per present mapping (L1 RO or RW, L2..L4 entries except self maps), pin and cr3.
    pub refs: u32,
    /// `linear_pt_count`: > 0 linear entries this table holds, < 0 linear uses of it.
    pub linear: i32,
}

#[derive(Clone, Copy, Debug)]
enum Fill {
    Zero,
    /// Word `i` of the frame reads `initrd_word(first + i)` until written.
    Initrd {
        first: u64,
    },
}

#[derive(Clone, Debug)]
struct Frame {
    ty: PageType,
    count: u32,
    validated: bool,
    pinned: bool,
    refs: u32,
    linear: i32,
    xen_shared: bool,
    fill: Fill,
    m2p: Option<Pfn>,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            ty: PageType::None,
            count: 0,
            validated: false,
            pinned: false,
            refs: 0,
            linear: 0,
            xen_shared: false,
            fill: Fill::Zero,
            m2p: None,
        }
    }
}

/// The recognisable initrd content: word `i` of the initrd.
pub const fn initrd_word(i: u64) -> u64 {
    0x1717_0000_0000_0000 | i
}

/// What a guest virtual address maps to, walking from the current base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub mfn: Mfn,
    /// RW at every level.
    pub writable: bool,
    /// NX at any level.
    pub nx: bool,
    /// Reachable from guest user mode: USER at every level and the L1 entry is not a
    /// guest-kernel mapping (Xen sets USER on every 64-bit PV mapping, kernel ones get
    /// `_PAGE_GUEST_KERNEL` as well).
    pub user: bool,
    /// The L1 entry as stored (after Xen's adjustments).
    pub leaf: u64,
}

// ---------------------------------------------------------------------------------------
// The model

/// The machine as one 64-bit PV domain sees it through Xen.
pub struct XenPvModel {
    mem: HashMap<Mfn, Box<[u64; 512]>>,
    frames: HashMap<Mfn, Frame>,
    io: HashSet<Mfn>,
    /// The domain has I/O capabilities (dom0): L1 entries may carry cache attributes and map
    /// MMIO frames (`l1_disallow_mask`, `iomem_access_permitted`).
    io_caps: bool,
    base: Option<Mfn>,
    p2m: Vec<Mfn>,
    /// Operations applied (successful or not).
    pub ops_applied: u64,
    /// The last mfn `populate_page` handed out (0: none yet).
    last_populated: Mfn,
}

impl XenPvModel {
    /// An empty machine for a domain with (`io_caps`, like dom0) or without I/O capabilities.
    pub fn new(io_caps: bool) -> XenPvModel {
        XenPvModel {
            mem: HashMap::new(),
            frames: HashMap::new(),
            io: HashSet::new(),
            io_caps,
            base: None,
            p2m: Vec::new(),
            ops_applied: 0,
            last_populated: 0,
        }
    }

    /// Give the domain these (untyped, zeroed) frames.
    pub fn add_frames(&mut self, mfns: impl IntoIterator<Item = Mfn>) {
        for m in mfns {
            self.frames.insert(m, Frame::new());
        }
    }

    /// Share a Xen page with the domain (like shared_info).
    pub fn add_xen_shared(&mut self, mfn: Mfn) {
        let mut f = Frame::new();
        f.ty = PageType::Writable;
        f.count = 1;
        f.validated = true;
        f.xen_shared = true;
        self.frames.insert(mfn, f);
    }

    /// Declare an MMIO frame.
    pub fn add_io(&mut self, mfn: Mfn) {
        self.io.insert(mfn);
    }

    /// Set the domain's p2m (pfn -> mfn); also sets the M2P of those frames.
    pub fn set_p2m(&mut self, p2m: Vec<Mfn>) {
        for (pfn, &m) in p2m.iter().enumerate() {
            if let Some(f) = self.frames.get_mut(&m) {
                f.m2p = Some(pfn as Pfn);
            }
        }
        self.p2m = p2m;
    }

    pub fn p2m(&self) -> &[Mfn] {
        &self.p2m
    }

    /// The M2P entry of a frame (as set by the builder or `MMU_MACHPHYS_UPDATE`).
    pub fn m2p(&self, mfn: Mfn) -> Option<Pfn> {
        self.frames.get(&mfn).and_then(|f| f.m2p)
    }

    /// The current base (the kernel L4 loaded in cr3).
    pub fn base(&self) -> Option<Mfn> {
        self.base
    }

    pub fn owner(&self, mfn: Mfn) -> Owner {
        match self.frames.get(&mfn) {
            Some(f) if f.xen_shared => Owner::XenShared,
            Some(_) => Owner::Domain,
            None if self.io.contains(&mfn) => Owner::Io,
            None => Owner::Foreign,
        }
    }

    pub fn frame_type(&self, mfn: Mfn) -> FrameType {
        self.frames.get(&mfn).map_or(
            FrameType {
                ty: PageType::None,
                count: 0,
                pinned: false,
                validated: false,
                refs: 0,
                linear: 0,
            },
            |f| FrameType {
                ty: f.ty,
                count: f.count,
                pinned: f.pinned,
                validated: f.validated,
                refs: f.refs,
                linear: f.linear,
            },
        )
    }

    // ---- memory

    fn word(&self, mfn: Mfn, slot: usize) -> u64 {
        if let Some(t) = self.mem.get(&mfn) {
            return t[slot];
        }
        match self.frames.get(&mfn).map(|f| f.fill) {
            Some(Fill::Initrd { first }) => initrd_word(first + slot as u64),
            _ => 0,
        }
    }

    fn store(&mut self, mfn: Mfn, slot: usize, val: u64) {
        if !self.mem.contains_key(&mfn) {
            let mut t = Box::new([0u64; 512]);
            if let Some(Fill::Initrd { first }) = self.frames.get(&mfn).map(|f| f.fill) {
                for (i, w) in t.iter_mut().enumerate() {
                    *w = initrd_word(first + i as u64);
                }
            }
            self.mem.insert(mfn, t);
        }
        self.mem.get_mut(&mfn).expect("just inserted")[slot] = val;
    }

    fn zero_frame(&mut self, mfn: Mfn) {
        self.mem.remove(&mfn);
        if let Some(f) = self.frames.get_mut(&mfn) {
            f.fill = Fill::Zero;
        }
    }

    /// The whole frame.
    pub fn table(&self, mfn: Mfn) -> [u64; 512] {
        let mut t = [0u64; 512];
        for (i, w) in t.iter_mut().enumerate() {
            *w = self.word(mfn, i);
        }
        t
    }

    /// The u64 at a machine address (8-byte aligned; lower bits are ignored).
    pub fn read_machine(&self, maddr: u64) -> u64 {
        self.word(maddr >> 12, ((maddr & 0xfff) >> 3) as usize)
    }

    /// A write by Xen or the test harness, bypassing every rule (set-up only).
    pub fn poke_machine(&mut self, maddr: u64, val: u64) {
        self.store(maddr >> 12, ((maddr & 0xfff) >> 3) as usize, val);
    }

    // ---- type references (`_get_page_type`, `_put_page_type`)

    fn get_type(&mut self, mfn: Mfn, want: PageType) -> Result<(), Refusal> {
        let Some(f) = self.frames.get_mut(&mfn) else {
            return fail(EINVAL, format!("mfn {mfn:#x} is not the domain's"));
        };
        if f.count == 0 {
            f.ty = want;
            f.count = 1;
            let Some(level) = want.level() else {
                f.validated = true;
                return Ok(());
            };
            // Typeref 0 -> 1 of a page-table type: the "validate locked" state, then
            // validate_page() -> promote_lN_table().
            f.validated = false;
            f.linear = 0;
            match self.validate(mfn, level) {
                Ok(()) => {
                    self.frames.get_mut(&mfn).expect("owned").validated = true;
                    Ok(())
                }
                Err(e) => {
                    let f = self.frames.get_mut(&mfn).expect("owned");
                    f.ty = PageType::None;
                    f.count = 0;
                    Err(e)
                }
            }
        } else if f.ty != want {
            fail(
                EINVAL,
                format!(
                    "mfn {mfn:#x} has type {:?} (count {}), wanted {want:?}",
                    f.ty, f.count
                ),
            )
        } else if !f.validated {
            // Xen would spin waiting for a concurrent validation; with one vCPU and strictly
            // decreasing levels this cannot happen (kept as a guard).
            fail(
                EINVAL,
                format!("mfn {mfn:#x} is being validated as {want:?}"),
            )
        } else {
            f.count += 1;
            Ok(())
        }
    }

    /// Drop one type reference. `from` is the table whose entry held it (for the linear
    /// page-table bookkeeping).
    fn put_type(&mut self, mfn: Mfn, from: Option<(Mfn, Level)>) {
        let f = self
            .frames
            .get_mut(&mfn)
            .expect("put_type of a frame not the domain's");
        assert!(f.count > 0, "put_type of mfn {mfn:#x} with type count 0");
        let linear = matches!(from, Some((_, l)) if f.ty == PageType::table(l));
        if f.count == 1 {
            if let Some(level) = f.ty.level() {
                // _put_final_page_type -> devalidate_page -> demote_lN_table.
                f.validated = false;
                self.demote(mfn, level);
            }
        }
        let f = self.frames.get_mut(&mfn).expect("owned");
        f.count -= 1;
        if f.count == 0 {
            f.ty = PageType::None;
            f.validated = false;
        }
        if linear {
            f.linear += 1; // dec_linear_uses
            let (t, _) = from.expect("linear");
            self.frames.get_mut(&t).expect("owned").linear -= 1; // dec_linear_entries
        }
    }

    fn general_get(&mut self, mfn: Mfn) {
        self.frames.get_mut(&mfn).expect("owned").refs += 1;
    }

    fn general_put(&mut self, mfn: Mfn) {
        let f = self.frames.get_mut(&mfn).expect("owned");
        assert!(f.refs > 0, "general ref underflow on mfn {mfn:#x}");
        f.refs -= 1;
    }

    /// `promote_lN_table`: take every guest entry's references, in slot order, rewriting
    /// entries as Xen stores them; on failure release what was taken.
    fn validate(&mut self, mfn: Mfn, level: Level) -> Result<(), Refusal> {
        let t = self.table(mfn);
        for (slot, &e) in t.iter().enumerate() {
            if level == Level::L4 && is_xen_l4_slot(slot) {
                continue;
            }
            if e & P == 0 {
                continue;
            }
            let r = match level {
                Level::L1 => self.get_l1_ref(e),
                _ => self.get_pde_ref(mfn, level, e),
            };
            if let Err(x) = r {
                for s in 0..slot {
                    if !(level == Level::L4 && is_xen_l4_slot(s)) {
                        let old = self.word(mfn, s);
                        self.put_entry_ref(mfn, level, old);
                    }
                }
                return Err(context(
                    x,
                    format_args!(
                        "validating L{} mfn {mfn:#x}: [{slot}] = {e:#x}",
                        level as u8
                    ),
                ));
            }
            self.store(mfn, slot, adjust(level, e));
        }
        if level == Level::L4 {
            self.init_xen_l4_slots(mfn);
        }
        Ok(())
    }

    /// `demote_lN_table`: drop every guest entry's references.
    fn demote(&mut self, mfn: Mfn, level: Level) {
        let t = self.table(mfn);
        for (slot, &e) in t.iter().enumerate().rev() {
            if level == Level::L4 && is_xen_l4_slot(slot) {
                continue;
            }
            self.put_entry_ref(mfn, level, e);
        }
    }

    /// `init_xen_l4_slots(l4t, l4mfn, d, INVALID_MFN, ro_mpt = true)`: slots 256..271.
    fn init_xen_l4_slots(&mut self, mfn: Mfn) {
        for slot in L4_XEN_FIRST..=L4_XEN_LAST {
            let v = match slot {
                258 => (mfn << 12) | XEN_SLOT_FLAGS, // linear self map
                259 => 0,                            // shadow linear: none
                s => ((XEN_TABLE_MFN_BASE + s as u64) << 12) | XEN_SLOT_FLAGS,
            };
            self.store(mfn, slot, v);
        }
    }

    /// `get_page_from_l1e` for a present entry.
    fn get_l1_ref(&mut self, e: u64) -> Result<(), Refusal> {
        let disallow = if self.io_caps {
            L1_DISALLOW_IO
        } else {
            L1_DISALLOW
        };
        if e & disallow != 0 {
            return fail(EINVAL, format!("bad L1 flags {:#x}", e & disallow));
        }
        let m = frame(e);
        if !self.frames.contains_key(&m) {
            if self.io.contains(&m) {
                return if self.io_caps {
                    Ok(())
                } else {
                    fail(EPERM, format!("no I/O permission to map MMIO mfn {m:#x}"))
                };
            }
            return fail(EBUSY, format!("L1 entry maps mfn {m:#x}, not the domain's"));
        }
        self.general_get(m);
        if e & RW != 0 {
            if let Err(x) = self.get_type(m, PageType::Writable) {
                self.general_put(m);
                return Err(context(
                    Refusal {
                        errno: EBUSY,
                        what: x.what,
                    },
                    "could not get PGT_writable_page for an RW L1 entry",
                ));
            }
        }
        if e & CACHE_ATTRS != 0 && self.frames[&m].xen_shared {
            if e & RW != 0 {
                self.put_type(m, None);
            }
            self.general_put(m);
            return fail(
                EACCES,
                format!("cache attributes on Xen heap page mfn {m:#x}"),
            );
        }
        Ok(())
    }

    /// `get_page_from_l2e` / `l3e` / `l4e` for a present entry of the level-`level` table
    /// `table`, with the linear page-table fallback.
    fn get_pde_ref(&mut self, table: Mfn, level: Level, e: u64) -> Result<(), Refusal> {
        if e & PDE_DISALLOW != 0 {
            return fail(
                EINVAL,
                format!("bad L{} flags {:#x}", level as u8, e & PDE_DISALLOW),
            );
        }
        let target = frame(e);
        if !self.frames.contains_key(&target) {
            return fail(
                EINVAL,
                format!(
                    "L{} entry points at mfn {target:#x}, not the domain's",
                    level as u8
                ),
            );
        }
        let below = PageType::table(level.below().expect("level > 1"));
        self.general_get(target);
        match self.get_type(target, below) {
            Ok(()) => Ok(()),
            Err(x) => {
                self.general_put(target);
                if x.errno == EINVAL && self.get_linear(table, level, e, target) {
                    Ok(())
                } else {
                    Err(x)
                }
            }
        }
    }

    /// `get_lN_linear_pagetable`: a read-only entry to a validated table of the same level.
    fn get_linear(&mut self, table: Mfn, level: Level, e: u64, target: Mfn) -> bool {
        if e & RW != 0 {
            return false;
        }
        if target == table {
            return true; // self map: no reference
        }
        if self.frames[&table].linear < 0 || self.frames[&target].linear > 0 {
            return false;
        }
        let t = &self.frames[&target];
        if t.ty != PageType::table(level) || !t.validated || t.count == 0 {
            return false;
        }
        let t = self.frames.get_mut(&target).expect("owned");
        t.count += 1;
        t.refs += 1;
        t.linear -= 1;
        self.frames.get_mut(&table).expect("owned").linear += 1;
        true
    }

    /// `put_page_from_lNe`: release what entry `e` of table `table` holds.
    fn put_entry_ref(&mut self, table: Mfn, level: Level, e: u64) {
        if e & P == 0 {
            return;
        }
        let m = frame(e);
        if level == Level::L1 {
            if self.frames.contains_key(&m) {
                if e & RW != 0 {
                    self.put_type(m, None);
                }
                self.general_put(m);
            }
            return;
        }
        if m == table {
            return;
        }
        self.put_type(m, Some((table, level)));
        self.general_put(m);
    }

    /// `mod_lN_entry`: update slot `slot` of the validated level-`level` table `mfn`.
    fn mod_entry(&mut self, mfn: Mfn, level: Level, slot: usize, new: u64) -> Result<(), Refusal> {
        if level == Level::L4 && is_xen_l4_slot(slot) {
            return fail(
                EINVAL,
                format!("L4 update in Xen-private area, slot {slot}"),
            );
        }
        let old = self.word(mfn, slot);
        if new & P != 0 {
            let disallow = match level {
                Level::L1 if self.io_caps => L1_DISALLOW_IO,
                Level::L1 => L1_DISALLOW,
                _ => PDE_DISALLOW,
            };
            if new & disallow != 0 {
                return fail(
                    EINVAL,
                    format!("bad L{} flags {:#x}", level as u8, new & disallow),
                );
            }
            let new = adjust(level, new);
            if !needs_revalidation(old, new) {
                self.store(mfn, slot, new); // fast path: no reference changes
                return Ok(());
            }
            match level {
                Level::L1 => self.get_l1_ref(new)?,
                _ => self.get_pde_ref(mfn, level, new)?,
            }
            self.store(mfn, slot, new);
        } else {
            self.store(mfn, slot, new);
        }
        self.put_entry_ref(mfn, level, old);
        Ok(())
    }

    // ---- hypercalls

    /// Apply one operation as Xen would (`do_mmu_update` / `do_mmuext_op`).
    pub fn apply(&mut self, op: MmuOp) -> Result<(), Refusal> {
        self.ops_applied += 1;
        match op {
            MmuOp::PtUpdate { ptr, val } => self.mmu_update(ptr.0, val),
            MmuOp::ClearPage { mfn } => self
                .clear_page(mfn.0)
                .map_err(|e| context(e, format_args!("MMUEXT_CLEAR_PAGE {mfn:#x}"))),
            MmuOp::Pin { level, mfn } => self.pin(level, mfn.0).map_err(|e| {
                context(
                    e,
                    format_args!("MMUEXT_PIN_L{}_TABLE {mfn:#x}", level as u8),
                )
            }),
            MmuOp::Unpin { mfn } => self
                .unpin(mfn.0)
                .map_err(|e| context(e, format_args!("MMUEXT_UNPIN_TABLE {mfn:#x}"))),
            MmuOp::NewBaseptr { mfn } => self
                .new_baseptr(mfn.0)
                .map_err(|e| context(e, format_args!("MMUEXT_NEW_BASEPTR {mfn:#x}"))),
            MmuOp::TlbFlushLocal | MmuOp::InvlpgLocal { .. } => Ok(()),
        }
    }

    /// Apply a whole plan, stopping at the first failure (returns its index too).
    pub fn apply_all(
        &mut self,
        ops: impl IntoIterator<Item = MmuOp>,
    ) -> Result<(), (usize, MmuOp, Refusal)> {
        for (i, op) in ops.into_iter().enumerate() {
            self.apply(op).map_err(|e| (i, op, e))?;
        }
        Ok(())
    }

    fn mmu_update(&mut self, ptr: u64, val: u64) -> Result<(), Refusal> {
        let cmd = ptr & 7;
        let ptr = ptr - cmd;
        let (mfn, slot) = (ptr >> 12, ((ptr & 0xfff) >> 3) as usize);
        let ctx = |e: Refusal| {
            context(
                e,
                format_args!("mmu_update ptr {ptr:#x} (cmd {cmd}) val {val:#x}"),
            )
        };
        match cmd {
            // MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD (no A/D in the model),
            // MMU_PT_UPDATE_NO_TRANSLATE (same for a non-translated guest).
            0 | 2 | 3 => {}
            1 => {
                // MMU_MACHPHYS_UPDATE: sets the M2P entry of `ptr`'s frame. Accepted by Xen
                // for an owned frame: a PT update with a stray low bit silently does this.
                return match self.frames.get_mut(&mfn) {
                    Some(f) => {
                        f.m2p = Some(val);
                        Ok(())
                    }
                    None => fail(
                        EINVAL,
                        format!("mach->phys update of mfn {mfn:#x}, not the domain's"),
                    )
                    .map_err(ctx),
                };
            }
            _ => return fail(ENOSYS, "unknown mmu_update command (ptr & 7)").map_err(ctx),
        }
        let Some(f) = self.frames.get(&mfn) else {
            return fail(
                EINVAL,
                format!("could not get page for normal update: mfn {mfn:#x} is not the domain's"),
            )
            .map_err(ctx);
        };
        if f.count > 0 && !f.validated {
            return fail(EINVAL, format!("mfn {mfn:#x} is being validated")).map_err(ctx);
        }
        match (f.count, f.ty.level()) {
            (c, Some(level)) if c > 0 => self.mod_entry(mfn, level, slot, val).map_err(ctx),
            // Writable with count > 0 (page_lock path) or count 0 (get_page_type(writable)
            // path): a plain write.
            _ => {
                self.store(mfn, slot, val);
                Ok(())
            }
        }
    }

    fn clear_page(&mut self, mfn: Mfn) -> Result<(), Refusal> {
        if !self.frames.contains_key(&mfn) {
            return fail(EINVAL, format!("mfn {mfn:#x} is not the domain's"));
        }
        if let Err(x) = self.get_type(mfn, PageType::Writable) {
            return fail(EINVAL, x.what);
        }
        self.zero_frame(mfn);
        self.put_type(mfn, None);
        Ok(())
    }

    fn pin(&mut self, level: Level, mfn: Mfn) -> Result<(), Refusal> {
        if !self.frames.contains_key(&mfn) {
            return fail(EINVAL, format!("mfn {mfn:#x} is not the domain's"));
        }
        self.get_type(mfn, PageType::table(level))?;
        if self.frames[&mfn].pinned {
            self.put_type(mfn, None);
            return fail(EINVAL, format!("mfn {mfn:#x} already pinned"));
        }
        let f = self.frames.get_mut(&mfn).expect("owned");
        f.pinned = true;
        f.refs += 1;
        Ok(())
    }

    fn unpin(&mut self, mfn: Mfn) -> Result<(), Refusal> {
        let Some(f) = self.frames.get_mut(&mfn) else {
            return fail(EINVAL, format!("mfn {mfn:#x} bad, or bad owner"));
        };
        if !f.pinned {
            return fail(EINVAL, format!("mfn {mfn:#x} not pinned"));
        }
        f.pinned = false;
        self.put_type(mfn, None);
        self.general_put(mfn);
        Ok(())
    }

    /// `new_guest_cr3`.
    fn new_baseptr(&mut self, mfn: Mfn) -> Result<(), Refusal> {
        if self.base == Some(mfn) {
            return Ok(());
        }
        if !self.frames.contains_key(&mfn) {
            return fail(EINVAL, format!("mfn {mfn:#x} is not the domain's"));
        }
        self.get_type(mfn, PageType::L4)?;
        self.general_get(mfn);
        // fill_ro_mpt(): slot 256 is already filled by init_xen_l4_slots in the model.
        if let Some(old) = self.base.replace(mfn) {
            self.put_type(old, None);
            self.general_put(old);
        }
        Ok(())
    }

    /// `HYPERVISOR_update_va_mapping(va, val, flags)` (`__do_update_va_mapping`).
    pub fn update_va_mapping(&mut self, va: u64, val: u64, flags: u64) -> Result<(), Refusal> {
        self.ops_applied += 1;
        let ctx = |e: Refusal| {
            context(
                e,
                format_args!("update_va_mapping va {va:#x} val {val:#x} flags {flags:#x}"),
            )
        };
        if ((1 << 47)..HYPERVISOR_VIRT_END).contains(&va) {
            return fail(EINVAL, "address not __addr_ok").map_err(ctx);
        }
        let Some(mut table) = self.base else {
            return fail(EINVAL, "no base").map_err(ctx);
        };
        for level in [Level::L4, Level::L3] {
            let e = self.word(table, index(va, level));
            if e & P == 0 {
                return fail(
                    EINVAL,
                    format!("L{} entry not present (linear map faults)", level as u8),
                )
                .map_err(ctx);
            }
            table = frame(e);
        }
        let l2e = self.word(table, index(va, Level::L2));
        if l2e & (P | pte::PSE) != P {
            return fail(
                EINVAL,
                format!("L2 entry {l2e:#x} not present or a superpage"),
            )
            .map_err(ctx);
        }
        let l1 = frame(l2e);
        match self.frames.get(&l1) {
            Some(f) if f.count > 0 && f.validated && f.ty == PageType::L1 => {}
            _ => {
                return fail(
                    EINVAL,
                    format!("mfn {l1:#x} is not a validated L1 of the domain"),
                )
                .map_err(ctx)
            }
        }
        self.mod_entry(l1, Level::L1, index(va, Level::L1), val)
            .map_err(ctx)
        // Flushes (UVMF_TLB_FLUSH / UVMF_INVLPG, local / all / vcpu mask): no TLB modelled.
    }

    // ---- guest view

    /// Walk the current page tables for `va`.
    pub fn translate(&self, va: u64) -> Option<Translation> {
        let canonical = !((1 << 47)..0xffff_8000_0000_0000).contains(&va);
        if !canonical || is_xen_l4_slot(index(va, Level::L4)) {
            return None;
        }
        let mut table = self.base?;
        let (mut writable, mut nx, mut user) = (true, false, true);
        let mut e = 0;
        for level in LEVELS_DOWN {
            e = self.word(table, index(va, level));
            if e & P == 0 {
                return None;
            }
            writable &= e & RW != 0;
            nx |= e & pte::NX != 0;
            user &= e & USER != 0;
            table = frame(e);
        }
        Some(Translation {
            mfn: table,
            writable,
            nx,
            user: user && e & GUEST_KERNEL == 0,
            leaf: e,
        })
    }

    /// A guest read of the (8-byte aligned) u64 at `va`.
    pub fn read_va(&self, va: u64) -> Result<u64, Fault> {
        if va & 7 != 0 {
            return Err(Fault {
                va,
                write: false,
                what: "model reads aligned u64s only".into(),
            });
        }
        let t = self.translate(va).ok_or_else(|| Fault {
            va,
            write: false,
            what: "not mapped".into(),
        })?;
        Ok(self.word(t.mfn, ((va & 0xfff) >> 3) as usize))
    }

    /// A guest write of the (8-byte aligned) u64 at `va`; faults unless mapped writable.
    pub fn write_va(&mut self, va: u64, val: u64) -> Result<(), Fault> {
        if va & 7 != 0 {
            return Err(Fault {
                va,
                write: true,
                what: "model writes aligned u64s only".into(),
            });
        }
        let t = self.translate(va).ok_or_else(|| Fault {
            va,
            write: true,
            what: "not mapped".into(),
        })?;
        if !t.writable {
            return Err(Fault {
                va,
                write: true,
                what: format!("mapped read-only (mfn {:#x})", t.mfn),
            });
        }
        if let Some(f) = self.frames.get(&t.mfn) {
            assert!(
                f.ty == PageType::Writable && f.count > 0,
                "model bug: RW mapping of mfn {:#x} typed {:?}/{}",
                t.mfn,
                f.ty,
                f.count
            );
        }
        self.store(t.mfn, ((va & 0xfff) >> 3) as usize, val);
        Ok(())
    }
}

/// A sink that applies each operation at once.
impl MmuSink for XenPvModel {
    type Error = Refusal;
    fn submit(&mut self, op: MmuOp) -> Result<(), Refusal> {
        self.apply(op)
    }
    fn flush(&mut self) -> Result<(), Refusal> {
        Ok(())
    }
}
