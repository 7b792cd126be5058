//! Save and restore of a 64-bit PV domain as Xen 4.17's toolstack does them
//! (`tools/libs/guest/xg_sr_save_x86_pv.c`, `xg_sr_save.c`, `xg_sr_restore_x86_pv.c`,
//! `xg_sr_common_x86_pv.c`, read at RELEASE-4.17.5), over [`XenPvModel`]: what the guest
//! must publish and leave mapped for a save to succeed, and what it finds after a restore
//! (every MFN new, the tree's root zeroed, `p2m_cr3` stale).
//!
//! Modelled:
//! - `map_p2m`: `max_pfn = arch.max_pfn - 1`; `p2m_cr3 != 0` selects `map_p2m_list`
//!   (range checks, the L4→L1 walk with its level-2 trim quirk: a relative index compared
//!   with an absolute one, so a window that does not start at L2 index 0 and spans n ≥ 2
//!   L2 slots is cut to `(n-1)·2^18` entries), else `map_p2m_tree` (fll/fl checks and its
//!   own trim); then `map_p2m_leaves` (`mfn_in_pseudophysmap` per leaf);
//! - page types as `XEN_DOMCTL_getpageframeinfo3` gives them (the type field, pinned);
//! - `normalise_pagetable`: Xen's L4 slots zeroed, PSE above L1 refused, every present
//!   entry's frame in the pseudo-physical map — else, paused: `Bad mfn for L%u[%u]`;
//!   not paused (the guest suspended itself): the page is deferred and, in a non-live
//!   save, never sent (it comes back zeroed);
//! - vCPU0: `rdx` (start_info) and `cr3` in the pseudo-physical map;
//! - restore: new frames (shuffled, every MFN different), PTEs localised, the guest's p2m
//!   leaves rewritten, pins re-applied (Xen validates), the base loaded, start_info
//!   rewritten (`process_start_info`: store/console pfn range checks), shared_info's arch
//!   copied with `pfn_to_mfn_frame_list_list = 0`.
//!
//! Not modelled: the live loop (dirty tracking, `p2m_generation` changes), 32-bit guests,
//! the stream format, grant and event-channel state.

use super::{Mfn, PageType, XenPvModel};
use std::collections::HashMap;
use xenpv_paging::ops::{Level, MmuOp};

/// An invalid p2m entry (`INVALID_MFN`).
pub const INVALID: u64 = !0;
/// Xen's own L4 slots in a 64-bit PV guest (zeroed by the save).
const XEN_L4: core::ops::RangeInclusive<usize> = 256..=271;
/// `HYPERVISOR_VIRT_START/END_X86_64`.
const XEN_VIRT: (u64, u64) = (0xffff_8000_0000_0000, 0xffff_87ff_ffff_ffff);
const FPP: u64 = 512;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const PSE: u64 = 1 << 7;

/// The p2m fields of `shared_info.arch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShinfoArch {
    pub max_pfn: u64,
    pub fll: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// What the suspended guest leaves in its vCPU0 context.
#[derive(Clone, Copy, Debug)]
pub struct Vcpu {
    /// `rdx` of the suspend call: the start_info page's mfn.
    pub rdx: Mfn,
    /// `cr3`.
    pub cr3: Mfn,
}

/// Why the save stopped (the toolstack's message, as data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// "max_pfn %#lx too large for p2m tree".
    MaxPfnTooLarge(u64),
    /// "Bad mfn %#lx for p2m frame list list".
    BadFll(u64),
    /// "Bad mfn %#lx at index %u (of %u) in p2m frame list list / frame list".
    BadTreeEntry {
        level: &'static str,
        index: u64,
        mfn: u64,
    },
    /// "Bad p2m_cr3 value".
    BadP2mCr3(u64),
    /// "Bad virtual p2m address range".
    BadVaddr(u64, u64),
    /// "Bad mfn %#lx during page table walk for vaddr … at level %d of p2m list".
    BadMfnDuringWalk { mfn: u64, level: u32 },
    /// "Failed to map … page table pages for p2m list" (a frame not the domain's).
    MapFailed { mfn: u64 },
    /// "Bad mfn in p2m_frame_list[%u]".
    BadLeaf { index: u64, mfn: u64 },
    /// "Cannot migrate superpage".
    Superpage { pfn: u64, index: usize },
    /// "Bad mfn for L%lu[%u]" (the domain paused).
    BadMfnForTable {
        level: u32,
        pfn: u64,
        index: usize,
        mfn: u64,
    },
    /// "Bad mfn for suspend record".
    BadSuspendRecord(u64),
    /// "Bad mfn for vcpu0's cr3".
    BadCr3(u64),
}

/// Why the restore stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// "Bad pfn for L%u …" while localising a table.
    BadPfn { pfn: u64, index: usize, target: u64 },
    /// "Start Info pfn %#lx out of range" / "XenStore pfn %#lx out of range" /
    /// "Console pfn %#lx out of range".
    OutOfRange { what: &'static str, pfn: u64 },
    /// Xen refused a pin or the base (the restored tables do not validate).
    Refused(String),
}

/// The page types the save sends (`XEN_DOMCTL_PFINFO_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfnType {
    /// Not sent (ballooned, invalid p2m entry, or deferred and never resent).
    Xtab,
    /// Data, copied as it is.
    Notab,
    /// A page table of this level (pinned or not), normalised.
    Table { level: u32, pinned: bool },
}

/// The saved stream, as data.
#[derive(Clone, Debug)]
pub struct Image {
    /// Highest pfn sent (after the trims).
    pub max_pfn: u64,
    /// Per pfn `0..=max_pfn`.
    pub types: Vec<PfnType>,
    /// Page contents by pfn (tables with pfns in their entries); missing = zero.
    pub pages: HashMap<u64, Box<[u64; 512]>>,
    /// The pfns of the guest's p2m leaves (`X86_PV_P2M_FRAMES`).
    pub p2m_pfns: Vec<u64>,
    /// Pages dropped because a table named a frame not in the pseudo-physical map while
    /// the domain ran (deferred, never resent): they come back zeroed.
    pub dropped: Vec<u64>,
    /// vCPU0: start_info pfn and cr3 pfn.
    pub rdx_pfn: u64,
    pub cr3_pfn: u64,
    /// shared_info's arch as saved.
    pub arch: ShinfoArch,
}

/// The toolstack's view of the domain for one save.
struct Ctx<'a> {
    m: &'a XenPvModel,
    max_mfn: u64,
    max_pfn: u64,
    /// The guest's p2m, once its leaves are mapped.
    p2m: Vec<u64>,
}

impl Ctx<'_> {
    fn m2p(&self, mfn: u64) -> u64 {
        self.m.m2p(mfn).unwrap_or(INVALID)
    }
    fn in_pseudophysmap(&self, mfn: u64) -> bool {
        mfn <= self.max_mfn
            && self.m2p(mfn) <= self.max_pfn
            && self.p2m.get(self.m2p(mfn) as usize) == Some(&mfn)
    }
    /// `xc_map_foreign_pages`: only the domain's own frames map.
    fn map(&self, mfn: u64) -> Result<[u64; 512], SaveError> {
        if self.m.frames.contains_key(&mfn) && !self.m.frames[&mfn].xen_shared {
            Ok(self.m.table(mfn))
        } else {
            Err(SaveError::MapFailed { mfn })
        }
    }
}

/// The highest machine frame the toolstack's M2P covers (`XENMEM_maximum_ram_page`):
/// above every frame the model knows.
pub fn max_mfn(m: &XenPvModel) -> u64 {
    m.frames.keys().copied().max().unwrap_or(0) + 0x100
}

/// `map_p2m_list`: the leaf mfns (and `max_pfn` trimmed).
fn map_p2m_list(c: &mut Ctx<'_>, arch: &ShinfoArch) -> Result<Vec<u64>, SaveError> {
    let root = arch.p2m_cr3 >> 12;
    if root > c.max_mfn {
        return Err(SaveError::BadP2mCr3(arch.p2m_cr3));
    }
    let canonical = |v: u64| (v as i64) << 16 >> 16 == v as i64;
    let vaddr = arch.p2m_vaddr;
    let mut frames = c.max_pfn / FPP + 1;
    let mut end = vaddr.wrapping_add(frames * 4096).wrapping_sub(1);
    if !canonical(vaddr)
        || !canonical(end)
        || end < vaddr
        || (vaddr <= XEN_VIRT.1 && end > XEN_VIRT.0)
    {
        return Err(SaveError::BadVaddr(vaddr, end));
    }
    let mask = 0x0000_ffff_ffff_ffffu64;
    let mut mfns = vec![root];
    let (mut off, mut saved_mfn) = (0u64, 0u64);
    let (mut idx_start, mut idx_end, mut saved_idx);
    for level in (1..=4u32).rev() {
        // The tables of this level, mapped side by side (as xc_map_foreign_pages does).
        let mut ptes = Vec::with_capacity(mfns.len() * 512);
        for &t in &mfns {
            ptes.extend_from_slice(&c.map(t)?);
        }
        let shift = level * 9 + 3;
        idx_start = ((vaddr - off) & mask) >> shift;
        idx_end = ((end - off) & mask) >> shift;
        saved_idx = 0;
        let mut next = Vec::new();
        for idx in idx_start..=idx_end {
            let mfn = ptes.get(idx as usize).map_or(0, |e| (e & ADDR) >> 12);
            if mfn == 0 || mfn > c.max_mfn {
                return Err(SaveError::BadMfnDuringWalk { mfn, level });
            }
            next.push(mfn);
            if level == 2 && mfn != saved_mfn {
                saved_mfn = mfn;
                saved_idx = idx - idx_start;
            }
        }
        if level == 2 {
            // The quirk: `saved_idx` is relative, `idx_end` absolute.
            if saved_idx == idx_end {
                saved_idx += 1;
            }
            let max_pfn = (saved_idx << 9) * FPP - 1;
            if max_pfn < c.max_pfn {
                c.max_pfn = max_pfn;
                frames = (c.max_pfn + FPP) / FPP;
                end = vaddr + frames * 4096 - 1;
                idx_end = idx_start + saved_idx;
                next.truncate((idx_end - idx_start + 1) as usize);
            }
        }
        mfns = next;
        off = vaddr & ((mask >> shift) << shift);
    }
    mfns.truncate(frames as usize);
    Ok(mfns)
}

/// `map_p2m_tree`: the leaf mfns (and `max_pfn` trimmed).
fn map_p2m_tree(c: &mut Ctx<'_>, arch: &ShinfoArch) -> Result<Vec<u64>, SaveError> {
    let mut fll_entries = c.max_pfn / (FPP * FPP) + 1;
    if fll_entries > FPP {
        return Err(SaveError::MaxPfnTooLarge(c.max_pfn));
    }
    if arch.fll == 0 || arch.fll > c.max_mfn {
        return Err(SaveError::BadFll(arch.fll));
    }
    let fll = c.map(arch.fll)?;
    let (mut saved_mfn, mut saved_x) = (0, 0);
    for x in 0..fll_entries {
        let e = fll[x as usize];
        if e == 0 || e > c.max_mfn {
            return Err(SaveError::BadTreeEntry {
                level: "fll",
                index: x,
                mfn: e,
            });
        }
        if e != saved_mfn {
            (saved_mfn, saved_x) = (e, x);
        }
    }
    let max_pfn = (saved_x + 1) * FPP * FPP - 1;
    if max_pfn < c.max_pfn {
        c.max_pfn = max_pfn;
        fll_entries = c.max_pfn / (FPP * FPP) + 1;
    }
    let fl_entries = c.max_pfn / FPP + 1;
    let mut fl = Vec::new();
    for x in 0..fll_entries {
        fl.extend_from_slice(&c.map(fll[x as usize])?);
    }
    let leaves: Vec<u64> = fl[..fl_entries as usize].to_vec();
    for (x, &e) in leaves.iter().enumerate() {
        if e == 0 || e > c.max_mfn {
            return Err(SaveError::BadTreeEntry {
                level: "fl",
                index: x as u64,
                mfn: e,
            });
        }
    }
    Ok(leaves)
}

/// `map_p2m` then `map_p2m_leaves`: the guest's p2m, and its leaves' mfns.
fn map_p2m(c: &mut Ctx<'_>, arch: &ShinfoArch) -> Result<Vec<u64>, SaveError> {
    c.max_pfn = arch.max_pfn.wrapping_sub(1);
    let leaves = if arch.p2m_cr3 != 0 {
        map_p2m_list(c, arch)?
    } else {
        map_p2m_tree(c, arch)?
    };
    let mut p2m = Vec::with_capacity(leaves.len() * 512);
    for &l in &leaves {
        p2m.extend_from_slice(&c.map(l)?);
    }
    p2m.truncate((c.max_pfn + 1) as usize);
    c.p2m = p2m;
    for (x, &l) in leaves.iter().enumerate() {
        if !c.in_pseudophysmap(l) {
            return Err(SaveError::BadLeaf {
                index: x as u64,
                mfn: l,
            });
        }
    }
    Ok(leaves)
}

/// The last pfn the toolstack would save (`map_p2m`, with its trims), or its refusal.
pub fn saved_max_pfn(m: &XenPvModel, arch: &ShinfoArch) -> Result<u64, SaveError> {
    let mut c = Ctx {
        m,
        max_mfn: max_mfn(m),
        max_pfn: 0,
        p2m: Vec::new(),
    };
    map_p2m(&mut c, arch)?;
    Ok(c.max_pfn)
}

/// `normalise_pagetable`: `Ok(None)` when the page is deferred (not paused).
fn normalise(
    c: &Ctx<'_>,
    pfn: u64,
    level: u32,
    src: &[u64; 512],
    paused: bool,
) -> Result<Option<Box<[u64; 512]>>, SaveError> {
    let mut dst = Box::new([0u64; 512]);
    for (i, &e) in src.iter().enumerate() {
        let mut pte = e;
        if level == 4 && XEN_L4.contains(&i) {
            pte = 0;
        }
        if pte & PRESENT != 0 {
            let mfn = (pte & ADDR) >> 12;
            if level > 1 && pte & PSE != 0 {
                return Err(SaveError::Superpage { pfn, index: i });
            }
            if !c.in_pseudophysmap(mfn) {
                if !paused {
                    return Ok(None);
                }
                return Err(SaveError::BadMfnForTable {
                    level,
                    pfn,
                    index: i,
                    mfn,
                });
            }
            pte = (pte & !ADDR) | (c.m2p(mfn) << 12);
        }
        dst[i] = pte;
    }
    Ok(Some(dst))
}

/// Save the domain (non-live: the guest has suspended itself; `paused` if the toolstack
/// paused it too, which turns a bad table entry from a dropped page into an error).
pub fn save(
    m: &XenPvModel,
    arch: &ShinfoArch,
    vcpu: Vcpu,
    paused: bool,
) -> Result<Image, SaveError> {
    let mut c = Ctx {
        m,
        max_mfn: max_mfn(m),
        max_pfn: 0,
        p2m: Vec::new(),
    };
    let leaves = map_p2m(&mut c, arch)?;
    if !c.in_pseudophysmap(vcpu.rdx) {
        return Err(SaveError::BadSuspendRecord(vcpu.rdx));
    }
    if !c.in_pseudophysmap(vcpu.cr3) {
        return Err(SaveError::BadCr3(vcpu.cr3));
    }
    let mut img = Image {
        max_pfn: c.max_pfn,
        types: Vec::new(),
        pages: HashMap::new(),
        p2m_pfns: leaves.iter().map(|&l| c.m2p(l)).collect(),
        dropped: Vec::new(),
        rdx_pfn: c.m2p(vcpu.rdx),
        cr3_pfn: c.m2p(vcpu.cr3),
        arch: *arch,
    };
    for pfn in 0..=c.max_pfn {
        let mfn = c.p2m[pfn as usize];
        // getpageframeinfo3: XTAB for a frame that is not the domain's.
        let f = m.frames.get(&mfn).filter(|f| !f.xen_shared);
        let Some(f) = f.filter(|_| mfn != INVALID) else {
            img.types.push(PfnType::Xtab);
            continue;
        };
        let level = match f.ty {
            PageType::L1 => 1,
            PageType::L2 => 2,
            PageType::L3 => 3,
            PageType::L4 => 4,
            _ => 0,
        };
        let page = m.table(mfn);
        if level == 0 {
            img.types.push(PfnType::Notab);
            if page.iter().any(|&w| w != 0) {
                img.pages.insert(pfn, Box::new(page));
            }
            continue;
        }
        match normalise(&c, pfn, level, &page, paused)? {
            Some(p) => {
                img.types.push(PfnType::Table {
                    level,
                    pinned: f.pinned,
                });
                img.pages.insert(pfn, p);
            }
            None => {
                img.types.push(PfnType::Xtab);
                img.dropped.push(pfn);
            }
        }
    }
    Ok(img)
}

/// The start_info fields a restore rewrites (byte offsets, x86-64).
pub mod si {
    pub const NR_PAGES: usize = 32;
    pub const SHARED_INFO: usize = 40;
    pub const FLAGS: usize = 48;
    pub const STORE_MFN: usize = 56;
    pub const STORE_EVTCHN: usize = 64;
    pub const CONSOLE_MFN: usize = 72;
    pub const CONSOLE_EVTCHN: usize = 80;
}

/// What the restored domain starts with besides its memory.
#[derive(Clone)]
pub struct Restored {
    pub m: XenPvModel,
    pub arch: ShinfoArch,
    /// The new shared_info frame.
    pub shared_info: Mfn,
    /// The new p2m (pfn → mfn, [`INVALID`] for pfns not restored).
    pub p2m: Vec<u64>,
}

/// Restore `img` into new frames: every pfn gets a different mfn (`seed` picks and
/// shuffles them; restores with seeds that differ modulo 4096 share no mfn).
pub fn restore(img: &Image, seed: u64, ports: (u32, u32)) -> Result<Restored, RestoreError> {
    let nr = img.max_pfn + 1;
    let fresh = super::shuffled_p2m(nr, seed);
    // A machine range of its own per seed (the builder's mfns lie in 2^20..2^28): every
    // mfn differs from the saved domain's, and from a restore with another seed.
    let shift = ((seed % 4096) + 1) << 28;
    let mut p2m = vec![INVALID; nr as usize];
    let mut m = XenPvModel::new(false);
    for pfn in 0..nr {
        if img.types[pfn as usize] != PfnType::Xtab || img.dropped.contains(&pfn) {
            p2m[pfn as usize] = fresh[pfn as usize] + shift;
        }
    }
    m.add_frames(p2m.iter().copied().filter(|&x| x != INVALID));
    m.set_p2m(p2m.clone());
    let si_mfn = shift - 1;
    m.add_xen_shared(si_mfn);
    for pfn in 0..nr {
        let Some(page) = img.pages.get(&pfn) else {
            continue;
        };
        let mut page = **page;
        if let PfnType::Table { level, .. } = img.types[pfn as usize] {
            for (i, e) in page.iter_mut().enumerate() {
                if *e & PRESENT != 0 {
                    let target = (*e & ADDR) >> 12;
                    let new = p2m.get(target as usize).copied().unwrap_or(INVALID);
                    if new == INVALID {
                        let _ = level;
                        return Err(RestoreError::BadPfn {
                            pfn,
                            index: i,
                            target,
                        });
                    }
                    *e = (*e & !ADDR) | (new << 12);
                }
            }
        }
        for (i, &w) in page.iter().enumerate() {
            if w != 0 {
                m.poke_machine(p2m[pfn as usize] * 4096 + i as u64 * 8, w);
            }
        }
    }
    // The guest's p2m leaves get the new mfns (`update_guest_p2m`).
    for (x, &leaf) in img.p2m_pfns.iter().enumerate() {
        for i in 0..512u64 {
            let pfn = x as u64 * 512 + i;
            let v = p2m.get(pfn as usize).copied().unwrap_or(INVALID);
            m.poke_machine(p2m[leaf as usize] * 4096 + i * 8, v);
        }
    }
    pin_and_load(&mut m, img, &p2m)?;
    start_info(&mut m, img, &p2m, si_mfn, ports)?;
    let arch = ShinfoArch { fll: 0, ..img.arch };
    Ok(Restored {
        m,
        arch,
        shared_info: si_mfn,
        p2m,
    })
}

/// Pins re-applied (Xen validates each tree), then vCPU0's base.
fn pin_and_load(m: &mut XenPvModel, img: &Image, p2m: &[u64]) -> Result<(), RestoreError> {
    for (pfn, t) in img.types.iter().enumerate() {
        if let PfnType::Table {
            level,
            pinned: true,
        } = *t
        {
            let level = [Level::L1, Level::L2, Level::L3, Level::L4][level as usize - 1];
            let mfn = xenpv_paging::ops::Mfn(p2m[pfn]);
            m.apply(MmuOp::Pin { level, mfn })
                .map_err(|e| RestoreError::Refused(e.to_string()))?;
        }
    }
    let cr3 = xenpv_paging::ops::Mfn(p2m[img.cr3_pfn as usize]);
    m.apply(MmuOp::NewBaseptr { mfn: cr3 })
        .map_err(|e| RestoreError::Refused(e.to_string()))
}

/// `process_start_info`.
fn start_info(
    m: &mut XenPvModel,
    img: &Image,
    p2m: &[u64],
    si_mfn: u64,
    (store_port, console_port): (u32, u32),
) -> Result<(), RestoreError> {
    let pfn = img.rdx_pfn;
    if pfn > img.max_pfn {
        return Err(RestoreError::OutOfRange {
            what: "Start Info",
            pfn,
        });
    }
    let base = p2m[pfn as usize] * 4096;
    let word = |m: &XenPvModel, off: usize| m.read_machine(base + off as u64);
    let store = word(m, si::STORE_MFN);
    if store > img.max_pfn {
        return Err(RestoreError::OutOfRange {
            what: "XenStore",
            pfn: store,
        });
    }
    let console = word(m, si::CONSOLE_MFN);
    if console > img.max_pfn {
        return Err(RestoreError::OutOfRange {
            what: "Console",
            pfn: console,
        });
    }
    let half = |m: &XenPvModel, off: usize, v: u32| {
        let w = m.read_machine(base + off as u64);
        (w & !0xffff_ffff) | u64::from(v)
    };
    let writes = [
        (si::STORE_MFN, p2m[store as usize]),
        (si::STORE_EVTCHN, half(m, si::STORE_EVTCHN, store_port)),
        (si::CONSOLE_MFN, p2m[console as usize]),
        (
            si::CONSOLE_EVTCHN,
            half(m, si::CONSOLE_EVTCHN, console_port),
        ),
        (si::NR_PAGES, img.max_pfn + 1),
        (si::SHARED_INFO, si_mfn << 12),
        (si::FLAGS, half(m, si::FLAGS, 0)),
    ];
    for (off, v) in writes {
        m.poke_machine(base + off as u64, v);
    }
    Ok(())
}

impl Clone for XenPvModel {
    fn clone(&self) -> Self {
        XenPvModel {
            mem: self.mem.clone(),
            frames: self.frames.clone(),
            io: self.io.clone(),
            io_caps: self.io_caps,
            base: self.base,
            p2m: self.p2m.clone(),
            ops_applied: self.ops_applied,
            last_populated: self.last_populated,
        }
    }
}
