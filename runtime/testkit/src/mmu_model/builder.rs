//! The dom0 builder (xen/arch/x86/pv/dom0_build.c: dom0_construct_pv), 64-bit, no
//! XEN_ELFNOTE_INIT_P2M, not the PV shim.

use super::*;

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

/// Where `dom0_construct_pv` puts everything: the boot region's virtual layout, the page
/// count and the first allocation's order.
struct Layout {
    nr_pages: u64,
    initrd_len: u64,
    initrd_pages: u64,
    v_start: u64,
    vkern_end: u64,
    /// 0 when the initrd is not mapped (`XEN_ELFNOTE_MOD_START_PFN`).
    vinitrd_start: u64,
    vinitrd_end: u64,
    vphysmap_start: u64,
    vstartinfo_start: u64,
    vpt_start: u64,
    vstack_start: u64,
    v_end: u64,
    nr_pt_pages: u64,
    order: u32,
    initrd_pfn: Option<Pfn>,
}

impl Layout {
    /// The region order of `dom0_construct_pv`: kernel, initrd (if mapped), p2m list,
    /// start_info, page tables, stack, up to a 4 MiB boundary with 512 KiB to spare.
    fn new(cfg: &Dom0Config) -> Layout {
        let nr_pages = cfg.nr_pages;
        let initrd_len = cfg.initrd_bytes.unwrap_or(0);
        let v_start = KERNEL_VIRT_BASE;
        let vkern_end = v_start + cfg.kernel_bytes;
        let (vinitrd_start, vinitrd_end, vphysmap_start) = if cfg.mod_start_pfn {
            (0, 0, round_pgup(vkern_end))
        } else {
            let s = round_pgup(vkern_end);
            (s, s + initrd_len, round_pgup(s + initrd_len))
        };
        let vphysmap_end = vphysmap_start + nr_pages * 8;
        let vstartinfo_start = round_pgup(vphysmap_end);
        let vpt_start = round_pgup(vstartinfo_start + START_INFO_SIZE);
        let (nr_pt_pages, vstack_start, v_end) = Self::count_pt_pages(v_start, vpt_start);
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
        Layout {
            nr_pages,
            initrd_len,
            initrd_pages,
            v_start,
            vkern_end,
            vinitrd_start,
            vinitrd_end,
            vphysmap_start,
            vstartinfo_start,
            vpt_start,
            vstack_start,
            v_end,
            nr_pt_pages,
            order,
            initrd_pfn,
        }
    }

    /// Xen's loop: grow the page-table count until the tables map the whole region they
    /// end (stack and slack included). (pages, stack start, region end).
    fn count_pt_pages(v_start: u64, vpt_start: u64) -> (u64, u64, u64) {
        let mut nr_pt_pages = 2;
        loop {
            let vstack_start = vpt_start + nr_pt_pages * PAGE;
            let vstack_end = vstack_start + PAGE;
            let mut v_end = (vstack_end + (1 << 22) - 1) & !((1 << 22) - 1);
            if v_end - vstack_end < 512 << 10 {
                v_end += 1 << 22;
            }
            if 1 + nr(v_start, v_end, 39) + nr(v_start, v_end, 30) + nr(v_start, v_end, 21)
                <= nr_pt_pages
            {
                return (nr_pt_pages, vstack_start, v_end);
            }
            nr_pt_pages += 1;
        }
    }

    /// Pages of the boot region.
    fn boot_pages(&self) -> u64 {
        (self.v_end - self.v_start) / PAGE
    }
}

/// Build dom0's boot state as `dom0_construct_pv` does: same region order, same page-table
/// frame order and flags, page-table frames mapped read-only, L4 pinned and loaded,
/// the p2m list written, start_info filled, the initrd filled with [`initrd_word`]s.
/// Panics where Xen panics ("Domain 0 allocation is too small ...").
pub fn build_dom0(cfg: &Dom0Config) -> (XenPvModel, Dom0Boot) {
    let l = Layout::new(cfg);
    let p2m = shuffled_p2m(l.nr_pages, cfg.p2m_seed);
    let mut m = XenPvModel::new(true);
    m.frames.reserve(l.nr_pages as usize);
    m.add_frames(p2m.iter().copied());
    m.set_p2m(p2m.clone());
    // A Xen heap page outside the domain's mfn range.
    let shared_info: Mfn = l.nr_pages.max(1 << 20).next_power_of_two() * 4 + 0x11;
    m.add_xen_shared(shared_info);

    let (l4, pt_frames) = m.map_boot_region(&l, &p2m);
    m.init_xen_l4_slots(l4);
    m.set_boot_frame_states(&l, &p2m, l4, &pt_frames);
    m.base = Some(l4);
    m.fill_initrd_and_p2m(&l, &p2m);
    let info = StartInfo::of(&l, shared_info);
    m.write_start_info(&l, &p2m, &info);

    let boot = Dom0Boot {
        nr_pages: l.nr_pages,
        shared_info: shared_info << 12,
        flags: info.flags,
        pt_base: l.vpt_start,
        nr_pt_frames: l.nr_pt_pages,
        mfn_list: l.vphysmap_start,
        mod_start: info.mod_start,
        mod_len: l.initrd_len,
        first_p2m_pfn: info.first_p2m_pfn,
        nr_p2m_frames: 0,
        start_info: l.vstartinfo_start,
        stack: l.vstack_start,
        rsp: l.vstack_start + PAGE,
        v_start: l.v_start,
        kernel_end: l.vkern_end,
        initrd_va: (l.vinitrd_start != 0 && l.initrd_len > 0)
            .then_some((l.vinitrd_start, l.vinitrd_end)),
        initrd_pfn: l.initrd_pfn,
        v_end: l.v_end,
        alloc_order: l.order,
        pt_frames,
        l4_mfn: l4,
    };
    (m, boot)
}

/// The start_info fields that follow from the layout.
struct StartInfo {
    shared_info: Mfn,
    flags: u32,
    mod_start: u64,
    first_p2m_pfn: u64,
}

impl StartInfo {
    fn of(l: &Layout, shared_info: Mfn) -> StartInfo {
        let mut flags = SIF_PRIVILEGED | SIF_INITDOMAIN | SIF_PM_DEFAULT;
        if l.vinitrd_start == 0 && l.initrd_len > 0 {
            flags |= SIF_MOD_START_PFN;
        }
        let mod_start = match l.initrd_pfn {
            None => 0,
            Some(_) if l.vinitrd_start != 0 => l.vinitrd_start,
            Some(p) => p,
        };
        StartInfo {
            shared_info,
            flags,
            mod_start,
            first_p2m_pfn: (1u64 << l.order) + l.initrd_pages,
        }
    }
}

impl XenPvModel {
    /// The mapping loop, allocating page-table frames from `vpt_start` on as Xen does:
    /// the L4, then for each page an L1 at each 2 MiB step (an L2 at each 1 GiB, an L3
    /// at each 512 GiB first). The L4 and the frames in allocation order.
    fn map_boot_region(&mut self, l: &Layout, p2m: &[Mfn]) -> (Mfn, Vec<(Pfn, Level)>) {
        let mfn = |pfn: Pfn| p2m[pfn as usize];
        let mut next_pt = (l.vpt_start - l.v_start) / PAGE;
        let mut pt_frames: Vec<(Pfn, Level)> = Vec::new();
        let mut alloc = |level: Level, pt_frames: &mut Vec<(Pfn, Level)>| {
            let p = next_pt;
            next_pt += 1;
            pt_frames.push((p, level));
            mfn(p)
        };
        let l4 = alloc(Level::L4, &mut pt_frames);
        let (mut l3, mut l2, mut l1) = (None::<Mfn>, None::<Mfn>, None::<Mfn>);
        for c in 0..l.boot_pages() {
            let va = l.v_start + c * PAGE;
            if c == 0 || index(va, Level::L1) == 0 {
                let new_l1 = alloc(Level::L1, &mut pt_frames);
                if c == 0 || index(va, Level::L2) == 0 {
                    let new_l2 = alloc(Level::L2, &mut pt_frames);
                    if c == 0 || index(va, Level::L3) == 0 {
                        let new_l3 = alloc(Level::L3, &mut pt_frames);
                        self.store(l4, index(va, Level::L4), (new_l3 << 12) | BOOT_PDE_PROT);
                        l3 = Some(new_l3);
                    }
                    let pde = (new_l2 << 12) | BOOT_PDE_PROT;
                    self.store(l3.expect("l3"), index(va, Level::L3), pde);
                    l2 = Some(new_l2);
                }
                let pde = (new_l1 << 12) | BOOT_PDE_PROT;
                self.store(l2.expect("l2"), index(va, Level::L2), pde);
                l1 = Some(new_l1);
            }
            let pte = (mfn(c) << 12) | BOOT_L1_PROT;
            self.store(l1.expect("l1"), index(va, Level::L1), pte);
        }
        assert_eq!(
            pt_frames.len() as u64,
            l.nr_pt_pages,
            "page-table frames allocated vs. counted"
        );
        (l4, pt_frames)
    }

    /// Frame states (get_page_and_type(writable) in the loop; mark_pv_pt_pages_rdonly):
    /// page-table frames typed and mapped read-only, the L4 pinned, the rest writable.
    fn set_boot_frame_states(&mut self, l: &Layout, p2m: &[Mfn], l4: Mfn, pt: &[(Pfn, Level)]) {
        let pt_level: HashMap<Pfn, Level> = pt.iter().copied().collect();
        for c in 0..l.boot_pages() {
            let f = self.frames.get_mut(&p2m[c as usize]).expect("owned");
            f.count = 1;
            f.validated = true;
            let Some(&level) = pt_level.get(&c) else {
                f.ty = PageType::Writable;
                f.refs = 1;
                continue;
            };
            f.ty = PageType::table(level);
            f.refs = 2; // the read-only boot mapping + the parent entry (cr3 for the L4)
            if level == Level::L4 {
                f.count = 2;
                f.pinned = true;
                f.refs = 3;
            }
            let va = l.v_start + c * PAGE;
            let pl1 = frame(self.walk_entry(l4, va, Level::L2));
            let slot = index(va, Level::L1);
            let e = self.word(pl1, slot);
            self.store(pl1, slot, e & !RW);
        }
    }

    /// Contents: the initrd's frames (filled with [`initrd_word`]s) and the p2m list.
    fn fill_initrd_and_p2m(&mut self, l: &Layout, p2m: &[Mfn]) {
        let mfn = |pfn: Pfn| p2m[pfn as usize];
        if let Some(ip) = l.initrd_pfn {
            for k in 0..l.initrd_pages {
                let f = self.frames.get_mut(&mfn(ip + k)).expect("owned");
                f.fill = Fill::Initrd { first: k * 512 };
            }
        }
        let physmap_pfn0 = (l.vphysmap_start - l.v_start) / PAGE;
        for (pfn, &mf) in p2m.iter().enumerate() {
            let pfn = pfn as u64;
            self.store(mfn(physmap_pfn0 + pfn / 512), (pfn % 512) as usize, mf);
        }
    }

    /// Fill start_info's page.
    fn write_start_info(&mut self, l: &Layout, p2m: &[Mfn], info: &StartInfo) {
        let si_mfn = p2m[((l.vstartinfo_start - l.v_start) / PAGE) as usize];
        let mut put = |off: u64, v: u64| self.store(si_mfn, (off / 8) as usize, v);
        let magic = b"xen-3.0-x86_64\0\0";
        put(
            si::MAGIC,
            u64::from_le_bytes(magic[0..8].try_into().expect("8")),
        );
        put(
            si::MAGIC + 8,
            u64::from_le_bytes(magic[8..16].try_into().expect("8")),
        );
        put(si::NR_PAGES, l.nr_pages);
        put(si::SHARED_INFO, info.shared_info << 12);
        put(si::FLAGS, info.flags as u64);
        put(si::PT_BASE, l.vpt_start);
        put(si::NR_PT_FRAMES, l.nr_pt_pages);
        put(si::MFN_LIST, l.vphysmap_start);
        put(si::MOD_START, info.mod_start);
        put(si::MOD_LEN, l.initrd_len);
        put(si::FIRST_P2M_PFN, info.first_p2m_pfn);
        put(si::NR_P2M_FRAMES, 0);
    }
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
