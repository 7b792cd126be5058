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

    // ---- invariants

    /// Recompute every reference from the tables, pins and base, and compare with the
    /// counts kept; check no page-table frame is writable through any mapping and every
    /// entry of a validated table obeys Xen's rules.
    pub fn check_invariants(&self) -> Result<(), String> {
        #[derive(Default, Clone, Copy)]
        struct Want {
            ty: Option<PageType>,
            count: u32,
            refs: u32,
            linear: i32,
        }
        let mut want: HashMap<Mfn, Want> = HashMap::new();
        fn add(
            want: &mut HashMap<Mfn, Want>,
            m: Mfn,
            ty: Option<PageType>,
            why: &dyn Fn() -> String,
        ) -> Result<(), String> {
            let w = want.entry(m).or_default();
            if let Some(ty) = ty {
                match w.ty {
                    Some(t) if t != ty => {
                        return Err(format!(
                            "mfn {m:#x} referenced as {t:?} and as {ty:?} ({})",
                            why()
                        ))
                    }
                    _ => w.ty = Some(ty),
                }
                w.count += 1;
            }
            w.refs += 1;
            Ok(())
        }
        for (&mfn, f) in &self.frames {
            if f.count > 0 && !f.validated {
                return Err(format!("mfn {mfn:#x} typed {:?} but not validated", f.ty));
            }
            if f.count == 0 && (f.ty != PageType::None || f.pinned) {
                return Err(format!(
                    "mfn {mfn:#x} count 0 but type {:?} pinned {}",
                    f.ty, f.pinned
                ));
            }
            if f.xen_shared {
                want.entry(mfn).or_default().ty = Some(PageType::Writable);
                want.entry(mfn).or_default().count += 1;
            }
            if f.pinned {
                add(&mut want, mfn, Some(f.ty), &|| "pin".into())?;
            }
            let (Some(level), true) = (f.ty.level(), f.count > 0) else {
                continue;
            };
            let t = self.table(mfn);
            for (slot, &e) in t.iter().enumerate() {
                if e & P == 0 {
                    continue;
                }
                if level == Level::L4 && is_xen_l4_slot(slot) {
                    continue;
                }
                let why = || format!("L{} mfn {mfn:#x}[{slot}] = {e:#x}", level as u8);
                if e != adjust(level, e) {
                    return Err(format!("{} not as Xen stores it", why()));
                }
                let target = frame(e);
                if level == Level::L1 {
                    let disallow = if self.io_caps {
                        L1_DISALLOW_IO
                    } else {
                        L1_DISALLOW
                    };
                    if e & disallow != 0 {
                        return Err(format!("{}: disallowed flags", why()));
                    }
                    match self.owner(target) {
                        Owner::Domain | Owner::XenShared => add(
                            &mut want,
                            target,
                            (e & RW != 0).then_some(PageType::Writable),
                            &why,
                        )?,
                        Owner::Io if self.io_caps => {}
                        o => return Err(format!("{}: maps a {o:?} frame", why())),
                    }
                    continue;
                }
                if e & PDE_DISALLOW != 0 {
                    return Err(format!("{}: disallowed flags", why()));
                }
                if target == mfn {
                    if e & RW != 0 {
                        return Err(format!("{}: writable self map", why()));
                    }
                    continue;
                }
                if !matches!(self.owner(target), Owner::Domain) {
                    return Err(format!("{}: points at a frame not the domain's", why()));
                }
                let tt = self.frames[&target].ty;
                if tt == PageType::table(level) {
                    if e & RW != 0 {
                        return Err(format!("{}: writable linear entry", why()));
                    }
                    want.entry(mfn).or_default().linear += 1;
                    want.entry(target).or_default().linear -= 1;
                    add(&mut want, target, Some(tt), &why)?;
                } else {
                    add(
                        &mut want,
                        target,
                        Some(PageType::table(level.below().expect("L2+"))),
                        &why,
                    )?;
                }
            }
        }
        if let Some(b) = self.base {
            add(&mut want, b, Some(PageType::L4), &|| "cr3".into())?;
        }
        for (&mfn, f) in &self.frames {
            let w = want.get(&mfn).copied().unwrap_or_default();
            let ty = if w.count > 0 {
                w.ty.unwrap_or(PageType::None)
            } else {
                PageType::None
            };
            if f.count != w.count || f.ty != ty {
                return Err(format!(
                    "mfn {mfn:#x}: kept type {:?} count {} but references say {ty:?} count {}",
                    f.ty, f.count, w.count
                ));
            }
            if f.refs != w.refs {
                return Err(format!(
                    "mfn {mfn:#x}: kept {} general refs, references say {}",
                    f.refs, w.refs
                ));
            }
            if f.linear != w.linear {
                return Err(format!(
                    "mfn {mfn:#x}: linear count {} but tables say {}",
                    f.linear, w.linear
                ));
            }
        }
        for (&m, w) in &want {
            if !self.frames.contains_key(&m) && w.refs > 0 {
                return Err(format!("reference to mfn {m:#x}, not the domain's"));
            }
        }
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

// ---------------------------------------------------------------------------------------
// The dom0 builder (xen/arch/x86/pv/dom0_build.c: dom0_construct_pv), 64-bit, no
// XEN_ELFNOTE_INIT_P2M, not the PV shim.

/// `XEN_ELFNOTE_VIRT_BASE` of the runtime; the kernel image starts here.
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
pub const PAGE: u64 = 4096;
/// `sizeof(struct start_info)` on x86-64.
pub const START_INFO_SIZE: u64 = 1168;
pub const SIF_PRIVILEGED: u32 = 1 << 0;
pub const SIF_INITDOMAIN: u32 = 1 << 1;
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `(xen_processor_pmbits << 8) & SIF_PM_MASK` with Xen's defaults (PX, and CX while
/// cpuidle is on). Host dependent; tests should mask it off.
pub const SIF_PM_DEFAULT: u32 = 3 << 8;

/// Byte offsets in `struct start_info` (xen/include/public/xen.h, x86-64).
pub mod si {
    pub const MAGIC: u64 = 0;
    pub const NR_PAGES: u64 = 32;
    pub const SHARED_INFO: u64 = 40;
    pub const FLAGS: u64 = 48;
    pub const STORE_MFN: u64 = 56;
    pub const PT_BASE: u64 = 88;
    pub const NR_PT_FRAMES: u64 = 96;
    pub const MFN_LIST: u64 = 104;
    pub const MOD_START: u64 = 112;
    pub const MOD_LEN: u64 = 120;
    pub const CMD_LINE: u64 = 128;
    pub const FIRST_P2M_PFN: u64 = 1152;
    pub const NR_P2M_FRAMES: u64 = 1160;
}

/// Boot flags of the entries Xen writes (dom0_build.c `L1_PROT`, `L2_PROT`..`L4_PROT`).
pub const BOOT_L1_PROT: u64 = P | RW | A | USER | GUEST_KERNEL;
pub const BOOT_PDE_PROT: u64 = P | RW | A | D | USER;

#[derive(Clone, Debug)]
pub struct Dom0Config {
    /// dom0's pages (dom0_mem); the initrd's frames count towards it.
    pub nr_pages: u64,
    /// `virt_kend - virt_kstart`: the loaded image including bss.
    pub kernel_bytes: u64,
    pub initrd_bytes: Option<u64>,
    /// The kernel has `XEN_ELFNOTE_MOD_START_PFN`: the initrd is not mapped.
    pub mod_start_pfn: bool,
    /// Seed of the (non-identity) pfn -> mfn shuffle.
    pub p2m_seed: u64,
}

/// What Xen hands the kernel (start_info and registers), plus layout facts for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Boot {
    // start_info
    pub nr_pages: u64,
    /// Machine address of shared_info.
    pub shared_info: u64,
    pub flags: u32,
    pub pt_base: u64,
    pub nr_pt_frames: u64,
    pub mfn_list: u64,
    /// A VA, or a pfn with SIF_MOD_START_PFN; 0 without an initrd.
    pub mod_start: u64,
    pub mod_len: u64,
    pub first_p2m_pfn: u64,
    pub nr_p2m_frames: u64,
    // registers
    /// rsi.
    pub start_info: u64,
    /// The boot stack page; rsp = `stack + PAGE`.
    pub stack: u64,
    pub rsp: u64,
    // layout
    pub v_start: u64,
    pub kernel_end: u64,
    /// The mapped initrd's VA range (None if absent or unmapped).
    pub initrd_va: Option<(u64, u64)>,
    /// The initrd's first pfn (None without an initrd).
    pub initrd_pfn: Option<Pfn>,
    /// End of the mapped boot region (4 MiB aligned, >= 512 KiB after the stack).
    pub v_end: u64,
    /// Order of the first allocation (2^order pages back the non-initrd boot region).
    pub alloc_order: u32,
    /// The boot page-table frames in Xen's allocation order (pfn, level); pfn 0 of the
    /// list is at `pt_base`.
    pub pt_frames: Vec<(Pfn, Level)>,
    pub l4_mfn: Mfn,
}

impl Dom0Boot {
    /// The VA of a boot-region pfn (the boot region is 1:1 in pfn space).
    pub fn va_of_pfn(&self, pfn: Pfn) -> u64 {
        self.v_start + pfn * PAGE
    }
}

const fn round_pgup(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

/// `NR(_l,_h,_s)` in dom0_construct_pv (unsigned long arithmetic: wraps at the top of
/// the address space, which is what makes it right for regions near 2^64).
const fn nr(l: u64, h: u64, s: u32) -> u64 {
    let m = (1u64 << s) - 1;
    (h.wrapping_add(m) & !m).wrapping_sub(l & !m) >> s
}

/// `get_order_from_bytes`.
fn order_from_bytes(b: u64) -> u32 {
    let mut o = 0;
    while (PAGE << o) < b {
        o += 1;
    }
    o
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shuffled p2m the builder uses: mfns start at a power of two at or above both
/// 2^20 and `nr_pages`, so a pfn taken for an mfn is never one of the domain's frames.
pub fn shuffled_p2m(nr_pages: u64, seed: u64) -> Vec<Mfn> {
    let base = (nr_pages.max(1 << 20)).next_power_of_two();
    let mut perm: Vec<Mfn> = (0..nr_pages).map(|p| base + p).collect();
    let mut s = seed ^ 0x5eed;
    for i in (1..perm.len()).rev() {
        let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    perm
}

impl XenPvModel {
    /// See [`build_dom0`].
    pub fn dom0(cfg: &Dom0Config) -> (XenPvModel, Dom0Boot) {
        build_dom0(cfg)
    }
}

/// Build dom0's boot state as `dom0_construct_pv` does: same region order, same page-table
/// frame order and flags, page-table frames mapped read-only, L4 pinned and loaded,
/// the p2m list written, start_info filled, the initrd filled with [`initrd_word`]s.
/// Panics where Xen panics ("Domain 0 allocation is too small ...").
pub fn build_dom0(cfg: &Dom0Config) -> (XenPvModel, Dom0Boot) {
    let nr_pages = cfg.nr_pages;
    let initrd_len = cfg.initrd_bytes.unwrap_or(0);
    let unmapped = cfg.mod_start_pfn;
    let v_start = KERNEL_VIRT_BASE;
    let vkern_end = v_start + cfg.kernel_bytes;
    let (vinitrd_start, vinitrd_end, vphysmap_start) = if unmapped {
        (0, 0, round_pgup(vkern_end))
    } else {
        let s = round_pgup(vkern_end);
        (s, s + initrd_len, round_pgup(s + initrd_len))
    };
    let vphysmap_end = vphysmap_start + nr_pages * 8;
    let vstartinfo_start = round_pgup(vphysmap_end);
    let vstartinfo_end = vstartinfo_start + START_INFO_SIZE;
    let vpt_start = round_pgup(vstartinfo_end);
    let (mut nr_pt_pages, mut v_end, mut vstack_start);
    nr_pt_pages = 2;
    loop {
        let vpt_end = vpt_start + nr_pt_pages * PAGE;
        vstack_start = vpt_end;
        let vstack_end = vstack_start + PAGE;
        v_end = (vstack_end + (1 << 22) - 1) & !((1 << 22) - 1);
        if v_end - vstack_end < 512 << 10 {
            v_end += 1 << 22;
        }
        if 1 + nr(v_start, v_end, 39) + nr(v_start, v_end, 30) + nr(v_start, v_end, 21)
            <= nr_pt_pages
        {
            break;
        }
        nr_pt_pages += 1;
    }
    let mut count = v_end - v_start;
    if vinitrd_start != 0 {
        count -= round_pgup(initrd_len);
    }
    let order = order_from_bytes(count);
    let initrd_pages = initrd_len.div_ceil(PAGE);
    assert!(
        (1u64 << order) + initrd_pages <= nr_pages,
        "Xen would panic: Domain 0 allocation is too small for kernel image"
    );
    let initrd_pfn = (initrd_len > 0).then(|| {
        if vinitrd_start != 0 {
            (vinitrd_start - v_start) / PAGE
        } else {
            1u64 << order // domain_tot_pages(d) right after the first allocation
        }
    });

    let p2m = shuffled_p2m(nr_pages, cfg.p2m_seed);
    let mut m = XenPvModel::new(true);
    m.frames.reserve(nr_pages as usize);
    m.add_frames(p2m.iter().copied());
    m.set_p2m(p2m.clone());
    // A Xen heap page outside the domain's mfn range.
    let shared_info: Mfn = nr_pages.max(1 << 20).next_power_of_two() * 4 + 0x11;
    m.add_xen_shared(shared_info);
    let mfn = |pfn: Pfn| p2m[pfn as usize];

    // The mapping loop, allocating page-table frames from vpt_start on as Xen does.
    let boot_pages = (v_end - v_start) / PAGE;
    let pt_pfn0 = (vpt_start - v_start) / PAGE;
    let mut next_pt = pt_pfn0;
    let mut pt_frames: Vec<(Pfn, Level)> = Vec::new();
    let mut alloc = |level: Level, pt_frames: &mut Vec<(Pfn, Level)>| {
        let p = next_pt;
        next_pt += 1;
        pt_frames.push((p, level));
        mfn(p)
    };
    let l4 = alloc(Level::L4, &mut pt_frames);
    let (mut l3, mut l2, mut l1) = (None::<Mfn>, None::<Mfn>, None::<Mfn>);
    for c in 0..boot_pages {
        let va = v_start + c * PAGE;
        if c == 0 || index(va, Level::L1) == 0 {
            let new_l1 = alloc(Level::L1, &mut pt_frames);
            if c == 0 || index(va, Level::L2) == 0 {
                let new_l2 = alloc(Level::L2, &mut pt_frames);
                if c == 0 || index(va, Level::L3) == 0 {
                    let new_l3 = alloc(Level::L3, &mut pt_frames);
                    m.store(l4, index(va, Level::L4), (new_l3 << 12) | BOOT_PDE_PROT);
                    l3 = Some(new_l3);
                }
                m.store(
                    l3.expect("l3"),
                    index(va, Level::L3),
                    (new_l2 << 12) | BOOT_PDE_PROT,
                );
                l2 = Some(new_l2);
            }
            m.store(
                l2.expect("l2"),
                index(va, Level::L2),
                (new_l1 << 12) | BOOT_PDE_PROT,
            );
            l1 = Some(new_l1);
        }
        m.store(
            l1.expect("l1"),
            index(va, Level::L1),
            (mfn(c) << 12) | BOOT_L1_PROT,
        );
    }
    assert_eq!(
        pt_frames.len() as u64,
        nr_pt_pages,
        "page-table frames allocated vs. counted"
    );
    m.init_xen_l4_slots(l4);

    // Frame states (get_page_and_type(writable) in the loop; mark_pv_pt_pages_rdonly).
    let pt_level: HashMap<Pfn, Level> = pt_frames.iter().copied().collect();
    for c in 0..boot_pages {
        let mf = mfn(c);
        let f = m.frames.get_mut(&mf).expect("owned");
        f.count = 1;
        f.validated = true;
        match pt_level.get(&c) {
            Some(&level) => {
                f.ty = PageType::table(level);
                f.refs = 2; // the read-only boot mapping + the parent entry (cr3 for the L4)
                if level == Level::L4 {
                    f.count = 2;
                    f.pinned = true;
                    f.refs = 3;
                }
                let va = v_start + c * PAGE;
                let pl1 = frame(m.walk_entry(l4, va, Level::L2));
                let slot = index(va, Level::L1);
                let e = m.word(pl1, slot);
                m.store(pl1, slot, e & !RW);
            }
            None => {
                f.ty = PageType::Writable;
                f.refs = 1;
            }
        }
    }
    m.base = Some(l4);

    // Contents: the initrd, the p2m list, start_info.
    if let Some(ip) = initrd_pfn {
        for k in 0..initrd_pages {
            m.frames.get_mut(&mfn(ip + k)).expect("owned").fill = Fill::Initrd { first: k * 512 };
        }
    }
    let physmap_pfn0 = (vphysmap_start - v_start) / PAGE;
    for (pfn, &mf) in p2m.iter().enumerate() {
        let pfn = pfn as u64;
        m.store(mfn(physmap_pfn0 + pfn / 512), (pfn % 512) as usize, mf);
    }
    let mut flags = SIF_PRIVILEGED | SIF_INITDOMAIN | SIF_PM_DEFAULT;
    if vinitrd_start == 0 && initrd_len > 0 {
        flags |= SIF_MOD_START_PFN;
    }
    let first_p2m_pfn = (1u64 << order) + initrd_pages;
    let mod_start = match initrd_pfn {
        None => 0,
        Some(_) if vinitrd_start != 0 => vinitrd_start,
        Some(p) => p,
    };
    let si_mfn = mfn((vstartinfo_start - v_start) / PAGE);
    let mut put = |off: u64, v: u64| m.store(si_mfn, (off / 8) as usize, v);
    let magic = b"xen-3.0-x86_64\0\0";
    put(
        si::MAGIC,
        u64::from_le_bytes(magic[0..8].try_into().expect("8")),
    );
    put(
        si::MAGIC + 8,
        u64::from_le_bytes(magic[8..16].try_into().expect("8")),
    );
    put(si::NR_PAGES, nr_pages);
    put(si::SHARED_INFO, shared_info << 12);
    put(si::FLAGS, flags as u64);
    put(si::PT_BASE, vpt_start);
    put(si::NR_PT_FRAMES, nr_pt_pages);
    put(si::MFN_LIST, vphysmap_start);
    put(si::MOD_START, mod_start);
    put(si::MOD_LEN, initrd_len);
    put(si::FIRST_P2M_PFN, first_p2m_pfn);
    put(si::NR_P2M_FRAMES, 0);

    let boot = Dom0Boot {
        nr_pages,
        shared_info: shared_info << 12,
        flags,
        pt_base: vpt_start,
        nr_pt_frames: nr_pt_pages,
        mfn_list: vphysmap_start,
        mod_start,
        mod_len: initrd_len,
        first_p2m_pfn,
        nr_p2m_frames: 0,
        start_info: vstartinfo_start,
        stack: vstack_start,
        rsp: vstack_start + PAGE,
        v_start,
        kernel_end: vkern_end,
        initrd_va: (vinitrd_start != 0 && initrd_len > 0).then_some((vinitrd_start, vinitrd_end)),
        initrd_pfn,
        v_end,
        alloc_order: order,
        pt_frames,
        l4_mfn: l4,
    };
    (m, boot)
}

impl XenPvModel {
    /// The entry at `level` on the walk for `va` from the L4 `l4` (0 if the walk stops).
    fn walk_entry(&self, l4: Mfn, va: u64, level: Level) -> u64 {
        let mut table = l4;
        for l in LEVELS_DOWN {
            let e = self.word(table, index(va, l));
            if l == level || e & P == 0 {
                return if l == level { e } else { 0 };
            }
            table = frame(e);
        }
        unreachable!()
    }
}

#[cfg(test)]
mod tests {
    //! The model accepts what Xen accepts and refuses what Xen refuses, with Xen's errno.
    use super::*;
    use proptest::prelude::*;
    use xenpv_paging::{Maddr as TA, Mfn as TM};

    /// Entry flags as a guest writes them (Xen adds USER etc. itself).
    const T: u64 = P | RW;
    const VA: u64 = KERNEL_VIRT_BASE; // L4[511] L3[510] L2[0] L1[0]

    fn fresh(n: u64, io_caps: bool) -> (XenPvModel, Vec<Mfn>) {
        let mut m = XenPvModel::new(io_caps);
        let f: Vec<Mfn> = (0..n).map(|i| 0x4000 + i * 3).collect();
        m.add_frames(f.iter().copied());
        (m, f)
    }
    fn ptr(table: Mfn, slot: usize) -> u64 {
        (table << 12) | (slot as u64 * 8)
    }
    fn put(m: &mut XenPvModel, table: Mfn, slot: usize, val: u64) -> Result<(), Refusal> {
        m.apply(MmuOp::PtUpdate {
            ptr: TA(ptr(table, slot)),
            val,
        })
    }
    fn pin(m: &mut XenPvModel, level: Level, mfn: Mfn) -> Result<(), Refusal> {
        m.apply(MmuOp::Pin {
            level,
            mfn: TM(mfn),
        })
    }
    fn e(mfn: Mfn, flags: u64) -> u64 {
        (mfn << 12) | flags
    }
    /// L4 f[0] -> L3 f[1] -> L2 f[2] -> L1 f[3] -> data f[4] at `VA`, read-write, built
    /// with plain writes in untyped frames.
    fn tree(m: &mut XenPvModel, f: &[Mfn]) {
        put(m, f[3], index(VA, Level::L1), e(f[4], T)).unwrap();
        put(m, f[2], index(VA, Level::L2), e(f[3], T)).unwrap();
        put(m, f[1], index(VA, Level::L3), e(f[2], T)).unwrap();
        put(m, f[0], index(VA, Level::L4), e(f[1], T)).unwrap();
    }
    fn pinned_tree(io_caps: bool) -> (XenPvModel, Vec<Mfn>) {
        let (mut m, f) = fresh(12, io_caps);
        tree(&mut m, &f);
        pin(&mut m, Level::L4, f[0]).unwrap();
        (m, f)
    }
    fn ty(m: &XenPvModel, mfn: Mfn) -> (PageType, u32, bool) {
        let t = m.frame_type(mfn);
        (t.ty, t.count, t.pinned)
    }

    #[test]
    fn plain_writes_to_untyped_frames_are_stored_verbatim() {
        let (mut m, f) = fresh(4, false);
        // Anything goes in an untyped frame: even flags Xen would refuse in a table.
        put(&mut m, f[0], 7, 0xdead_beef_0000_0083).unwrap();
        assert_eq!(m.read_machine(ptr(f[0], 7)), 0xdead_beef_0000_0083);
        assert_eq!(ty(&m, f[0]), (PageType::None, 0, false));
        m.check_invariants().unwrap();
    }

    #[test]
    fn accepts_a_fresh_tree_pinned_switched_and_the_old_one_unpinned() {
        let (mut m, f) = pinned_tree(false);
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
        assert_eq!(ty(&m, f[0]), (PageType::L4, 2, true));
        assert_eq!(ty(&m, f[1]), (PageType::L3, 1, false));
        assert_eq!(ty(&m, f[3]), (PageType::L1, 1, false));
        assert_eq!(ty(&m, f[4]), (PageType::Writable, 1, false));
        let t = m.translate(VA).unwrap();
        assert_eq!(
            (t.mfn, t.writable, t.nx, t.user),
            (f[4], true, false, false)
        );
        // Validation stored the entries as Xen adjusts them.
        assert_eq!(
            m.read_machine(ptr(f[3], 0)),
            e(f[4], T | USER | GUEST_KERNEL)
        );
        assert_eq!(m.read_machine(ptr(f[2], 0)), e(f[3], T | USER));
        assert_eq!(m.read_machine(ptr(f[0], 511)), e(f[1], T | USER | A));
        // Xen filled its slots, including the linear self map in 258.
        assert_eq!(m.read_machine(ptr(f[0], 258)), e(f[0], P | RW | A | D));
        m.write_va(VA + 8, 42).unwrap();
        assert_eq!(m.read_va(VA + 8), Ok(42));
        m.check_invariants().unwrap();

        // A second tree in f[5..10], switched to; the first unpinned: released recursively.
        let g = &f[5..10];
        tree(&mut m, g);
        pin(&mut m, Level::L4, g[0]).unwrap();
        m.apply(MmuOp::NewBaseptr { mfn: TM(g[0]) }).unwrap();
        assert_eq!(
            ty(&m, f[0]),
            (PageType::L4, 1, true),
            "old base keeps its pin"
        );
        m.apply(MmuOp::Unpin { mfn: TM(f[0]) }).unwrap();
        for &x in &f[0..5] {
            assert_eq!(ty(&m, x), (PageType::None, 0, false), "mfn {x:#x}");
            assert_eq!(m.frame_type(x).refs, 0);
        }
        assert_eq!(m.translate(VA).unwrap().mfn, g[4]);
        m.check_invariants().unwrap();
    }

    #[test]
    fn new_baseptr_needs_no_pin_and_drops_the_old_base() {
        let (mut m, f) = fresh(12, false);
        tree(&mut m, &f);
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap(); // validates, not pinned
        assert_eq!(ty(&m, f[0]), (PageType::L4, 1, false));
        assert_eq!(ty(&m, f[3]), (PageType::L1, 1, false));
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap(); // same base: no change
        assert_eq!(ty(&m, f[0]), (PageType::L4, 1, false));
        put(&mut m, f[6], 0, 0).unwrap();
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[6]) }).unwrap();
        // The old base was only held by cr3: devalidated, its subtree released.
        for &x in &f[0..5] {
            assert_eq!(ty(&m, x), (PageType::None, 0, false));
        }
        assert_eq!(m.translate(VA), None);
        m.check_invariants().unwrap();
    }

    #[test]
    fn pin_fails_ebusy_when_a_table_maps_its_own_ancestor_rw() {
        let (mut m, f) = fresh(12, false);
        tree(&mut m, &f);
        // The L1 maps the L2 frame RW: the L2 has taken its type before its L1 is validated.
        put(&mut m, f[3], 1, e(f[2], T)).unwrap();
        let x = pin(&mut m, Level::L4, f[0]).unwrap_err();
        assert_eq!(x.errno, EBUSY, "{}", x.what);
        for &y in &f[0..5] {
            assert_eq!(ty(&m, y).1, 0, "a failed pin leaves nothing typed: {y:#x}");
        }
        m.check_invariants().unwrap();
    }

    #[test]
    fn pin_fails_einval_when_an_earlier_l1_maps_a_later_table_rw() {
        let (mut m, f) = fresh(12, false);
        tree(&mut m, &f);
        // L2[1] -> second L1 f[5]; the first L1 (validated first) maps f[5] RW.
        put(&mut m, f[3], 1, e(f[5], T)).unwrap();
        put(&mut m, f[2], 1, e(f[5], T)).unwrap();
        let x = pin(&mut m, Level::L4, f[0]).unwrap_err();
        assert_eq!(x.errno, EINVAL, "{}", x.what);
        assert_eq!(ty(&m, f[5]).1, 0);
        m.check_invariants().unwrap();
        // Read-only is fine.
        put(&mut m, f[3], 1, e(f[5], P)).unwrap();
        pin(&mut m, Level::L4, f[0]).unwrap();
        m.check_invariants().unwrap();
    }

    #[test]
    fn rw_mapping_of_a_pinned_table_is_refused_read_only_is_fine() {
        let (mut m, f) = pinned_tree(false);
        let x = put(&mut m, f[3], 2, e(f[1], T)).unwrap_err();
        assert_eq!(x.errno, EBUSY, "{}", x.what);
        assert_eq!(m.read_machine(ptr(f[3], 2)), 0, "nothing written");
        put(&mut m, f[3], 2, e(f[1], P)).unwrap();
        assert_eq!(m.frame_type(f[1]).count, 1, "RO mappings take no type ref");
        assert_eq!(m.frame_type(f[1]).refs, 2);
        // Upgrading that RO entry to RW is refused too.
        assert_eq!(put(&mut m, f[3], 2, e(f[1], T)).unwrap_err().errno, EBUSY);
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_frame_mapped_rw_cannot_become_a_table() {
        let (mut m, f) = pinned_tree(false);
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
        put(&mut m, f[3], 5, e(f[6], T)).unwrap();
        assert_eq!(ty(&m, f[6]), (PageType::Writable, 1, false));
        // Writes into it are plain (it is writable-typed), but it cannot be pinned.
        put(&mut m, f[6], 0, 0x1234).unwrap();
        assert_eq!(m.read_va(VA + 5 * PAGE), Ok(0x1234));
        assert_eq!(pin(&mut m, Level::L1, f[6]).unwrap_err().errno, EINVAL);
        assert_eq!(put(&mut m, f[2], 9, e(f[6], T)).unwrap_err().errno, EINVAL);
        m.check_invariants().unwrap();
    }

    #[test]
    fn flag_masks_per_level() {
        let (mut m, f) = pinned_tree(false);
        // PSE, GLOBAL, PWT, PCD refused in L2..L4.
        for bad in [pte::PSE, pte::GLOBAL, pte::PWT, pte::PCD] {
            assert_eq!(
                put(&mut m, f[2], 1, e(f[5], T | bad)).unwrap_err().errno,
                EINVAL
            );
            assert_eq!(
                put(&mut m, f[1], 1, e(f[5], T | bad)).unwrap_err().errno,
                EINVAL
            );
            assert_eq!(
                put(&mut m, f[0], 1, e(f[5], T | bad)).unwrap_err().errno,
                EINVAL
            );
        }
        // NX, USER, A, D and the AVAIL bits are fine in L2.
        put(
            &mut m,
            f[2],
            1,
            e(f[5], T | pte::NX | USER | A | D | AVAIL | (1 << 55)),
        )
        .unwrap();
        // L1: GLOBAL, NX fine; PAT/PWT/PCD refused without I/O caps; bit 62 always refused.
        put(&mut m, f[3], 1, e(f[6], T | pte::GLOBAL | pte::NX)).unwrap();
        for bad in [PAT, pte::PWT, pte::PCD, GNTTAB] {
            assert_eq!(
                put(&mut m, f[3], 2, e(f[7], T | bad)).unwrap_err().errno,
                EINVAL
            );
        }
        m.check_invariants().unwrap();
        let (mut d, g) = pinned_tree(true); // dom0: cache attributes allowed
        put(&mut d, g[3], 2, e(g[7], T | pte::PWT | pte::PCD | PAT)).unwrap();
        assert_eq!(
            put(&mut d, g[3], 3, e(g[7], T | GNTTAB)).unwrap_err().errno,
            EINVAL
        );
        d.check_invariants().unwrap();
    }

    #[test]
    fn pse_in_a_plain_written_l2_fails_at_pin() {
        let (mut m, f) = fresh(12, false);
        tree(&mut m, &f);
        put(&mut m, f[2], 3, e(f[8], T | pte::PSE)).unwrap(); // plain write: accepted
        let x = pin(&mut m, Level::L4, f[0]).unwrap_err();
        assert_eq!(x.errno, EINVAL, "{}", x.what);
        m.check_invariants().unwrap();
    }

    #[test]
    fn user_mappings_get_global_and_read_back_differs() {
        let (mut m, f) = pinned_tree(false);
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
        put(&mut m, f[3], 1, e(f[6], T | USER)).unwrap();
        assert_eq!(
            m.read_machine(ptr(f[3], 1)),
            e(f[6], T | USER | pte::GLOBAL)
        );
        assert!(m.translate(VA + PAGE).unwrap().user);
        assert!(!m.translate(VA).unwrap().user);
        m.check_invariants().unwrap();
    }

    #[test]
    fn writes_into_xen_l4_slots_are_refused_and_plain_ones_are_clobbered() {
        let (mut m, f) = pinned_tree(false);
        for slot in [256, 258, 271] {
            let x = put(&mut m, f[0], slot, e(f[6], T)).unwrap_err();
            assert_eq!(x.errno, EINVAL, "{}", x.what);
        }
        put(&mut m, f[0], 272, e(f[6], T)).unwrap(); // first guest slot above Xen's
        assert_eq!(ty(&m, f[6]), (PageType::L3, 1, false));
        // Before validation anything may be written there; Xen overwrites it.
        put(&mut m, f[7], 260, e(f[8], T)).unwrap();
        pin(&mut m, Level::L4, f[7]).unwrap();
        assert_ne!(frame(m.read_machine(ptr(f[7], 260))), f[8]);
        assert_eq!(ty(&m, f[8]).1, 0, "no reference taken for a Xen slot");
        m.check_invariants().unwrap();
    }

    #[test]
    fn unpinning_an_unpinned_frame_and_pinning_twice_fail() {
        let (mut m, f) = pinned_tree(false);
        assert_eq!(
            m.apply(MmuOp::Unpin { mfn: TM(f[1]) }).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(
            m.apply(MmuOp::Unpin { mfn: TM(f[9]) }).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(
            m.apply(MmuOp::Unpin { mfn: TM(0x99) }).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(pin(&mut m, Level::L4, f[0]).unwrap_err().errno, EINVAL);
        assert_eq!(ty(&m, f[0]), (PageType::L4, 1, true), "count unchanged");
        // Pinning a referenced table of the right type just adds a reference.
        pin(&mut m, Level::L3, f[1]).unwrap();
        assert_eq!(ty(&m, f[1]), (PageType::L3, 2, true));
        assert_eq!(pin(&mut m, Level::L2, f[1]).unwrap_err().errno, EINVAL);
        m.check_invariants().unwrap();
    }

    #[test]
    fn new_baseptr_to_a_non_l4_or_foreign_frame_fails() {
        let (mut m, f) = pinned_tree(false);
        for x in [f[1], f[3], f[4]] {
            assert_eq!(
                m.apply(MmuOp::NewBaseptr { mfn: TM(x) }).unwrap_err().errno,
                EINVAL
            );
        }
        assert_eq!(
            m.apply(MmuOp::NewBaseptr { mfn: TM(0x77) })
                .unwrap_err()
                .errno,
            EINVAL
        );
        assert_eq!(m.base(), None);
        m.check_invariants().unwrap();
    }

    #[test]
    fn clear_page_refuses_page_tables() {
        let (mut m, f) = pinned_tree(false);
        for x in [f[0], f[1], f[2], f[3]] {
            assert_eq!(
                m.apply(MmuOp::ClearPage { mfn: TM(x) }).unwrap_err().errno,
                EINVAL
            );
        }
        assert_eq!(
            m.apply(MmuOp::ClearPage { mfn: TM(0x55) })
                .unwrap_err()
                .errno,
            EINVAL
        );
        // Writable (mapped) and untyped frames are fine.
        put(&mut m, f[4], 3, 9).unwrap();
        m.apply(MmuOp::ClearPage { mfn: TM(f[4]) }).unwrap();
        assert_eq!(m.read_machine(ptr(f[4], 3)), 0);
        assert_eq!(ty(&m, f[4]), (PageType::Writable, 1, false));
        m.apply(MmuOp::ClearPage { mfn: TM(f[9]) }).unwrap();
        // A former table (type count back to 0) is fine too.
        m.apply(MmuOp::Unpin { mfn: TM(f[0]) }).unwrap();
        m.apply(MmuOp::ClearPage { mfn: TM(f[2]) }).unwrap();
        m.check_invariants().unwrap();
    }

    #[test]
    fn entries_referencing_foreign_or_mmio_frames() {
        let (mut m, f) = pinned_tree(false);
        m.add_io(0xfee00);
        assert_eq!(put(&mut m, f[3], 1, e(0x123, P)).unwrap_err().errno, EBUSY);
        assert_eq!(
            put(&mut m, f[3], 1, e(0xfee00, T)).unwrap_err().errno,
            EPERM
        );
        assert_eq!(put(&mut m, f[2], 1, e(0x123, T)).unwrap_err().errno, EINVAL);
        assert_eq!(put(&mut m, f[1], 1, e(0x123, T)).unwrap_err().errno, EINVAL);
        assert_eq!(put(&mut m, f[0], 1, e(0x123, T)).unwrap_err().errno, EINVAL);
        // mmu_update into a frame not the domain's.
        assert_eq!(put(&mut m, 0x123, 0, 0).unwrap_err().errno, EINVAL);
        let (mut d, g) = pinned_tree(true);
        d.add_io(0xfee00);
        put(&mut d, g[3], 1, e(0xfee00, T | pte::PCD)).unwrap(); // dom0 maps MMIO
        d.check_invariants().unwrap();
        m.check_invariants().unwrap();
    }

    #[test]
    fn shared_info_is_mappable_never_a_table() {
        let (mut m, f) = pinned_tree(false);
        m.add_xen_shared(0xabcde);
        put(&mut m, f[3], 1, e(0xabcde, T)).unwrap();
        assert_eq!(ty(&m, 0xabcde), (PageType::Writable, 2, false));
        assert_eq!(pin(&mut m, Level::L1, 0xabcde).unwrap_err().errno, EINVAL);
        let (mut d, g) = pinned_tree(true);
        d.add_xen_shared(0xabcde);
        assert_eq!(
            put(&mut d, g[3], 1, e(0xabcde, T | pte::PCD))
                .unwrap_err()
                .errno,
            EACCES
        );
        put(&mut m, f[3], 1, 0).unwrap();
        assert_eq!(ty(&m, 0xabcde), (PageType::Writable, 1, false));
        m.check_invariants().unwrap();
        d.check_invariants().unwrap();
    }

    #[test]
    fn ptr_low_bits_are_the_command() {
        let (mut m, f) = pinned_tree(false);
        for low in 4..8 {
            let x = m
                .apply(MmuOp::PtUpdate {
                    ptr: TA(ptr(f[4], 1) | low),
                    val: 5,
                })
                .unwrap_err();
            assert_eq!(x.errno, ENOSYS);
        }
        // ptr | 1 is MMU_MACHPHYS_UPDATE: accepted, but no entry is written.
        m.apply(MmuOp::PtUpdate {
            ptr: TA(ptr(f[4], 1) | 1),
            val: 77,
        })
        .unwrap();
        assert_eq!(m.read_machine(ptr(f[4], 1)), 0);
        assert_eq!(m.m2p(f[4]), Some(77));
        // | 2 (PRESERVE_AD) and | 3 (NO_TRANSLATE) are PT updates.
        m.apply(MmuOp::PtUpdate {
            ptr: TA(ptr(f[3], 1) | 2),
            val: e(f[6], T),
        })
        .unwrap();
        m.apply(MmuOp::PtUpdate {
            ptr: TA(ptr(f[3], 2) | 3),
            val: e(f[7], T),
        })
        .unwrap();
        assert_eq!(ty(&m, f[7]), (PageType::Writable, 1, false));
        m.check_invariants().unwrap();
    }

    #[test]
    fn an_l2_referenced_from_two_l3_slots_holds_two_type_refs() {
        let (mut m, f) = pinned_tree(false);
        put(&mut m, f[1], 0, e(f[2], T)).unwrap();
        assert_eq!(ty(&m, f[2]), (PageType::L2, 2, false));
        // Both aliases translate the same.
        assert_eq!(m.frame_type(f[2]).refs, 2);
        put(&mut m, f[1], index(VA, Level::L3), 0).unwrap();
        assert_eq!(ty(&m, f[2]), (PageType::L2, 1, false));
        put(&mut m, f[1], 0, 0).unwrap();
        assert_eq!(ty(&m, f[2]), (PageType::None, 0, false));
        assert_eq!(
            ty(&m, f[3]),
            (PageType::None, 0, false),
            "released recursively"
        );
        assert_eq!(ty(&m, f[4]), (PageType::None, 0, false));
        m.check_invariants().unwrap();
    }

    #[test]
    fn fast_path_updates_take_no_new_references() {
        let (mut m, f) = pinned_tree(false);
        let before = m.frame_type(f[4]);
        put(&mut m, f[3], 0, e(f[4], T | A | D | pte::NX)).unwrap();
        assert_eq!(m.frame_type(f[4]), before);
        // Dropping RW is a slow-path update: the writable ref goes.
        put(&mut m, f[3], 0, e(f[4], P)).unwrap();
        assert_eq!(ty(&m, f[4]), (PageType::None, 0, false));
        assert_eq!(m.frame_type(f[4]).refs, 1);
        m.check_invariants().unwrap();
    }

    #[test]
    fn linear_page_tables_must_be_read_only() {
        let (mut m, f) = pinned_tree(false);
        assert_eq!(
            put(&mut m, f[0], 300, e(f[0], T)).unwrap_err().errno,
            EINVAL
        );
        put(&mut m, f[0], 300, e(f[0], P)).unwrap(); // RO self map: no reference
        assert_eq!(ty(&m, f[0]), (PageType::L4, 1, true));
        // An L2 entry pointing at another validated L2, read-only.
        put(&mut m, f[1], 7, e(f[6], T)).unwrap(); // f[6]: new empty L2
        put(&mut m, f[2], 9, e(f[6], P)).unwrap();
        assert_eq!(ty(&m, f[6]).1, 2);
        assert_eq!(m.frame_type(f[2]).linear, 1);
        assert_eq!(m.frame_type(f[6]).linear, -1);
        // f[6] is used as linear: it may not hold linear entries itself.
        assert_eq!(put(&mut m, f[6], 0, e(f[2], P)).unwrap_err().errno, EINVAL);
        m.check_invariants().unwrap();
        put(&mut m, f[2], 9, 0).unwrap();
        assert_eq!(m.frame_type(f[6]).linear, 0);
        m.apply(MmuOp::Unpin { mfn: TM(f[0]) }).unwrap();
        m.check_invariants().unwrap();
    }

    #[test]
    fn update_va_mapping_walks_the_current_tables() {
        let (mut m, f) = pinned_tree(false);
        assert_eq!(
            m.update_va_mapping(VA, e(f[5], T), UVMF_INVLPG)
                .unwrap_err()
                .errno,
            EINVAL,
            "no base yet"
        );
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
        m.update_va_mapping(VA + PAGE, e(f[5], T), UVMF_INVLPG | UVMF_LOCAL)
            .unwrap();
        assert_eq!(m.translate(VA + PAGE).unwrap().mfn, f[5]);
        // No L2 entry for VA + 2 MiB.
        assert_eq!(
            m.update_va_mapping(VA + (2 << 20), e(f[5], T), UVMF_NONE)
                .unwrap_err()
                .errno,
            EINVAL
        );
        // Xen's range is not __addr_ok.
        assert_eq!(
            m.update_va_mapping(0xffff_8000_0000_0000, 0, UVMF_NONE)
                .unwrap_err()
                .errno,
            EINVAL
        );
        // Same rules as mmu_update.
        assert_eq!(
            m.update_va_mapping(VA + PAGE, e(f[3], T), UVMF_TLB_FLUSH)
                .unwrap_err()
                .errno,
            EBUSY
        );
        m.update_va_mapping(VA + PAGE, 0, UVMF_ALL | UVMF_INVLPG)
            .unwrap();
        assert_eq!(ty(&m, f[5]), (PageType::None, 0, false));
        m.check_invariants().unwrap();
    }

    #[test]
    fn guest_writes_fault_on_read_only_and_unmapped() {
        let (mut m, f) = pinned_tree(false);
        m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
        put(&mut m, f[3], 1, e(f[1], P)).unwrap();
        assert!(m.write_va(VA + PAGE, 1).is_err());
        assert!(m.read_va(VA + PAGE).is_ok());
        assert!(m.write_va(VA + 2 * PAGE, 1).is_err());
        assert!(m.read_va(VA + 2 * PAGE).is_err());
    }

    // ---- dom0 builder

    fn cfg(nr_pages: u64, kernel: u64, initrd: Option<u64>, pfn: bool) -> Dom0Config {
        Dom0Config {
            nr_pages,
            kernel_bytes: kernel,
            initrd_bytes: initrd,
            mod_start_pfn: pfn,
            p2m_seed: 7,
        }
    }

    /// Facts every boot satisfies.
    fn check_boot(m: &XenPvModel, b: &Dom0Boot) {
        m.check_invariants().unwrap();
        assert_eq!(m.base(), Some(b.l4_mfn));
        assert_eq!(
            m.frame_type(b.l4_mfn),
            FrameType {
                ty: PageType::L4,
                count: 2,
                pinned: true,
                validated: true,
                refs: 3,
                linear: 0
            }
        );
        assert_eq!(b.pt_frames[0], ((b.pt_base - b.v_start) / PAGE, Level::L4));
        assert_eq!(b.pt_frames.len() as u64, b.nr_pt_frames);
        assert_eq!(b.v_end % (4 << 20), 0);
        assert!(b.v_end - b.rsp >= 512 << 10);
        assert_eq!(b.rsp, b.pt_base + b.nr_pt_frames * PAGE + PAGE);
        let p2m = m.p2m();
        assert_eq!(p2m.len() as u64, b.nr_pages);
        let pts: HashMap<Pfn, Level> = b.pt_frames.iter().copied().collect();
        // 1:1, page tables read-only, everything else read-write.
        for pfn in (0..(b.v_end - b.v_start) / PAGE)
            .step_by(97)
            .chain([(b.v_end - b.v_start) / PAGE - 1])
        {
            let t = m.translate(b.va_of_pfn(pfn)).unwrap();
            assert_eq!(t.mfn, p2m[pfn as usize], "pfn {pfn:#x}");
            assert_eq!(t.writable, !pts.contains_key(&pfn), "pfn {pfn:#x}");
            assert_eq!(t.leaf & !pte::ADDR_MASK & !RW, BOOT_L1_PROT & !RW);
            assert!(!t.user && !t.nx);
        }
        for &(pfn, level) in &b.pt_frames {
            let t = m.translate(b.va_of_pfn(pfn)).unwrap();
            assert!(!t.writable);
            assert_eq!(m.frame_type(t.mfn).ty, PageType::table(level));
        }
        assert_eq!(m.translate(b.v_end), None, "nothing mapped past v_end");
        // The p2m list, start_info.
        for pfn in [0, 1, b.nr_pages / 2, b.nr_pages - 1] {
            assert_eq!(m.read_va(b.mfn_list + 8 * pfn), Ok(p2m[pfn as usize]));
        }
        let si = |off: u64| m.read_va(b.start_info + off).unwrap();
        assert_eq!(si(si::NR_PAGES), b.nr_pages);
        assert_eq!(si(si::PT_BASE), b.pt_base);
        assert_eq!(si(si::NR_PT_FRAMES), b.nr_pt_frames);
        assert_eq!(si(si::MFN_LIST), b.mfn_list);
        assert_eq!(si(si::MOD_START), b.mod_start);
        assert_eq!(si(si::MOD_LEN), b.mod_len);
        assert_eq!(si(si::FLAGS) as u32, b.flags);
        assert_eq!(si(si::FIRST_P2M_PFN), b.first_p2m_pfn);
        assert_eq!(si(si::SHARED_INFO), b.shared_info);
        // The initrd.
        if let (Some(ip), true) = (b.initrd_pfn, b.mod_len > 0) {
            let words = b.mod_len / 8;
            for i in [0, 1, 511, 512, words / 2, words - 1] {
                let w = m.read_machine((p2m[(ip + i / 512) as usize] << 12) + (i % 512) * 8);
                assert_eq!(w, initrd_word(i));
                if let Some((s, _)) = b.initrd_va {
                    assert_eq!(m.read_va(s + 8 * i), Ok(initrd_word(i)));
                }
            }
        }
    }

    #[test]
    fn dom0_worked_example_1m_kernel_64m_initrd_256m() {
        let (m, b) = build_dom0(&cfg(65536, 1 << 20, Some(64 << 20), false));
        check_boot(&m, &b);
        assert_eq!(b.kernel_end, 0xffff_ffff_8010_0000);
        assert_eq!(
            b.initrd_va,
            Some((0xffff_ffff_8010_0000, 0xffff_ffff_8410_0000))
        );
        assert_eq!(b.mod_start, 0xffff_ffff_8010_0000);
        assert_eq!(b.initrd_pfn, Some(256));
        assert_eq!(b.mfn_list, 0xffff_ffff_8410_0000);
        assert_eq!(b.start_info, 0xffff_ffff_8418_0000);
        assert_eq!(b.pt_base, 0xffff_ffff_8418_1000);
        assert_eq!(b.nr_pt_frames, 37);
        assert_eq!(b.stack, 0xffff_ffff_841a_6000);
        assert_eq!(b.rsp, 0xffff_ffff_841a_7000);
        assert_eq!(b.v_end, 0xffff_ffff_8440_0000);
        assert_eq!(b.alloc_order, 10);
        assert_eq!(b.first_p2m_pfn, 1024 + 16384);
        assert_eq!(b.nr_p2m_frames, 0);
        assert_eq!(b.flags & 0xff, SIF_PRIVILEGED | SIF_INITDOMAIN);
        let levels: Vec<Level> = b.pt_frames.iter().map(|p| p.1).collect();
        assert_eq!(
            &levels[..5],
            &[Level::L4, Level::L1, Level::L2, Level::L3, Level::L1]
        );
        assert_eq!(levels.iter().filter(|&&l| l == Level::L1).count(), 34);
        // Frames beyond the boot region are untyped.
        assert_eq!(
            m.frame_type(m.p2m()[(b.v_end - b.v_start) as usize / 4096])
                .count,
            0
        );
    }

    #[test]
    fn dom0_mod_start_pfn_leaves_the_initrd_unmapped() {
        let (m, b) = build_dom0(&cfg(65536, 1 << 20, Some(64 << 20), true));
        check_boot(&m, &b);
        assert_eq!(b.initrd_va, None);
        assert_eq!(b.mfn_list, 0xffff_ffff_8010_0000);
        assert_eq!(b.start_info, 0xffff_ffff_8018_0000);
        assert_eq!(b.pt_base, 0xffff_ffff_8018_1000);
        assert_eq!(b.nr_pt_frames, 5);
        assert_eq!(b.v_end, 0xffff_ffff_8040_0000);
        assert_eq!(b.alloc_order, 10);
        assert_eq!(
            b.mod_start, 1024,
            "a pfn: right after the first 2^order allocation"
        );
        assert_eq!(b.flags & SIF_MOD_START_PFN, SIF_MOD_START_PFN);
        let ip = b.initrd_pfn.unwrap();
        assert_eq!(
            m.frame_type(m.p2m()[ip as usize]).count,
            0,
            "initrd frames untyped"
        );
        // A 12 MiB boot region rounds the first allocation up to 16 MiB: the initrd pfn is
        // 4096, not the end of the boot region.
        let (m2, b2) = build_dom0(&cfg(65536, 10 << 20, Some(1 << 20), true));
        check_boot(&m2, &b2);
        assert_eq!(b2.v_end - b2.v_start, 12 << 20);
        assert_eq!(b2.mod_start, 4096);
    }

    #[test]
    fn dom0_600m_initrd_1024m_crosses_512m() {
        let (m, b) = build_dom0(&cfg(262144, 1 << 20, Some(600 << 20), false));
        check_boot(&m, &b);
        assert_eq!(b.v_end, 0xffff_ffff_a600_0000);
        assert_eq!(b.nr_pt_frames, 1 + 1 + 1 + 304);
    }

    #[test]
    fn dom0_1100m_initrd_2048m_runs_under_l3_511() {
        let (m, b) = build_dom0(&cfg(524288, 1 << 20, Some(1100 << 20), false));
        check_boot(&m, &b);
        assert_eq!(b.v_end, 0xffff_ffff_c540_0000);
        assert!(b.mfn_list >= 0xffff_ffff_c000_0000);
        assert_eq!(index(b.rsp - 8, Level::L3), 511);
        assert_eq!(b.nr_pt_frames, 1 + 1 + 2 + 554);
        // The second L2 comes right after the 513th L1 in allocation order.
        let pos = b.pt_frames.iter().rposition(|p| p.1 == Level::L2).unwrap();
        assert_eq!(
            b.pt_frames[..pos]
                .iter()
                .filter(|p| p.1 == Level::L1)
                .count(),
            513
        );
    }

    /// The takeover shape: a new L4 sharing the boot L3, pinned and loaded; the boot L4
    /// unpinned and released (the shared L3 survives).
    #[test]
    fn dom0_switch_to_a_new_l4_and_release_the_boot_l4() {
        let (mut m, b) = build_dom0(&cfg(65536, 1 << 20, Some(4 << 20), false));
        let free = (b.v_end - b.v_start) / PAGE; // first pfn past the boot region
        let new_l4 = m.p2m()[free as usize];
        let boot_l3 = frame(m.read_machine((b.l4_mfn << 12) + 511 * 8));
        m.apply(MmuOp::ClearPage { mfn: TM(new_l4) }).unwrap();
        put(&mut m, new_l4, 511, e(boot_l3, T)).unwrap();
        pin(&mut m, Level::L4, new_l4).unwrap();
        m.apply(MmuOp::NewBaseptr { mfn: TM(new_l4) }).unwrap();
        m.apply(MmuOp::Unpin { mfn: TM(b.l4_mfn) }).unwrap();
        assert_eq!(m.frame_type(b.l4_mfn).count, 0);
        assert_eq!(m.frame_type(boot_l3).count, 1);
        // The boot L4 is still mapped read-only by the boot region.
        assert!(!m.translate(b.pt_base).unwrap().writable);
        assert_eq!(m.read_va(b.mfn_list), Ok(m.p2m()[0]));
        m.check_invariants().unwrap();
    }

    /// 2 GiB domain and a ~527k-operation plan: a direct map of every pfn at L4[273]
    /// (page tables read-only), hooked into the running L4 in one validated update.
    #[test]
    fn a_2g_direct_map_plan_runs_quickly() {
        let start = std::time::Instant::now();
        let (mut m, b) = build_dom0(&cfg(524288, 1 << 20, Some(1100 << 20), false));
        let built = start.elapsed();
        let p2m = m.p2m().to_vec();
        let n = p2m.len() as u64;
        let mut next = (b.v_end - b.v_start) / PAGE;
        let mut take = || {
            next += 1;
            p2m[(next - 1) as usize]
        };
        let l3 = take();
        let l2: Vec<Mfn> = (0..n.div_ceil(512 * 512)).map(|_| take()).collect();
        let l1: Vec<Mfn> = (0..n.div_ceil(512)).map(|_| take()).collect();
        let mut ro: HashSet<Mfn> = b.pt_frames.iter().map(|p| p2m[p.0 as usize]).collect();
        ro.insert(l3);
        ro.extend(l2.iter().copied());
        ro.extend(l1.iter().copied());
        let mut plan = Vec::with_capacity(n as usize + 2000);
        for &t in std::iter::once(&l3).chain(&l2).chain(&l1) {
            plan.push(MmuOp::ClearPage { mfn: TM(t) });
        }
        for (pfn, &mf) in p2m.iter().enumerate() {
            let flags = if ro.contains(&mf) {
                P | pte::NX
            } else {
                T | pte::NX
            };
            plan.push(MmuOp::PtUpdate {
                ptr: TA(ptr(l1[pfn / 512], pfn % 512)),
                val: e(mf, flags),
            });
        }
        for (i, &t) in l1.iter().enumerate() {
            plan.push(MmuOp::PtUpdate {
                ptr: TA(ptr(l2[i / 512], i % 512)),
                val: e(t, T),
            });
        }
        for (i, &t) in l2.iter().enumerate() {
            plan.push(MmuOp::PtUpdate {
                ptr: TA(ptr(l3, i)),
                val: e(t, T),
            });
        }
        plan.push(MmuOp::PtUpdate {
            ptr: TA(ptr(b.l4_mfn, 273)),
            val: e(l3, T),
        });
        plan.push(MmuOp::TlbFlushLocal);
        let ops = plan.len();
        m.apply_all(plan)
            .map_err(|(i, op, x)| format!("op {i} {op:?}: {x}"))
            .unwrap();
        let dm = 0xffff_8880_0000_0000u64;
        assert_eq!(
            m.read_va(dm + b.initrd_pfn.unwrap() * PAGE),
            Ok(initrd_word(0))
        );
        assert_eq!(
            m.read_va(dm + ((b.mfn_list - b.v_start) / PAGE) * PAGE + 8),
            Ok(p2m[1])
        );
        assert!(!m.translate(dm + (b.pt_base - b.v_start)).unwrap().writable);
        m.write_va(dm + (n - 1) * PAGE, 5).unwrap();
        m.check_invariants().unwrap();
        let total = start.elapsed();
        eprintln!("2 GiB: build {built:?}, {ops} ops + checks, total {total:?}");
        assert!(ops > 520_000);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Put(usize, usize, usize, u64),
        Pin(u8, usize),
        Unpin(usize),
        Base(usize),
        Clear(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let flags = prop::sample::select(vec![
            0,
            P,
            T,
            T | USER,
            P | pte::PSE,
            T | pte::GLOBAL,
            T | pte::NX,
        ]);
        prop_oneof![
            4 => (0..6usize, 0..3usize, 0..7usize, flags).prop_map(|(a, s, b, f)| Step::Put(a, s, b, f)),
            2 => (1..5u8, 0..6usize).prop_map(|(l, a)| Step::Pin(l, a)),
            1 => (0..6usize).prop_map(Step::Unpin),
            1 => (0..6usize).prop_map(Step::Base),
            1 => (0..6usize).prop_map(Step::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Whatever the sequence, the kept counts match a recount and failed operations
        /// leave every count unchanged.
        #[test]
        fn random_sequences_keep_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
            let (mut m, f) = fresh(6, false);
            let levels = [Level::L1, Level::L2, Level::L3, Level::L4];
            for s in steps {
                let before: Vec<FrameType> = f.iter().map(|&x| m.frame_type(x)).collect();
                let op = match s {
                    // slot 0..3, with the target frame index 6 meaning "foreign"
                    Step::Put(a, slot, b, fl) => {
                        let target = if b == 6 { 0x999 } else { f[b] };
                        MmuOp::PtUpdate { ptr: TA(ptr(f[a], slot)), val: if fl == 0 { 0 } else { e(target, fl) } }
                    }
                    Step::Pin(l, a) => MmuOp::Pin { level: levels[l as usize - 1], mfn: TM(f[a]) },
                    Step::Unpin(a) => MmuOp::Unpin { mfn: TM(f[a]) },
                    Step::Base(a) => MmuOp::NewBaseptr { mfn: TM(f[a]) },
                    Step::Clear(a) => MmuOp::ClearPage { mfn: TM(f[a]) },
                };
                let r = m.apply(op);
                prop_assert!(m.check_invariants().is_ok(), "{op:?} -> {r:?}: {:?}", m.check_invariants());
                if r.is_err() {
                    let after: Vec<FrameType> = f.iter().map(|&x| m.frame_type(x)).collect();
                    prop_assert_eq!(before, after, "{:?} failed but changed counts", op);
                }
            }
        }
    }
}
