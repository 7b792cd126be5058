//! The figures paging reports: start of day's phases, the direct map's and module
//! space's state, the executor's counts, and the layout read back and checked.

use super::live;
use super::memory::{DirectMapMode, Memory, FRAMES};
use xenpv_paging::check::{self, Inspect, Report};
use xenpv_paging::direct::DirectStats;
use xenpv_paging::frames::{mapped_chunk_count, Use};
use xenpv_paging::layout::{direct_map_va, KERNEL_VIRT_BASE, PAGE_SIZE};
use xenpv_paging::ops::{pte, Mfn, Pfn};
use xenpv_paging::takeover::Outcome;
use xenpv_paging::vmap::VmapStats;

/// TSC stamps of the takeover's phases (boot tables read, the plan, the allocator, the
/// eager map, end) and the ticks spent in Xen during the plan and the eager map, for
/// [`Memory::phases`]: the clock is not up while they are taken.
pub(super) static PHASES: spin::Mutex<Option<[u64; 7]>> = spin::Mutex::new(None);

/// Where start of day's paging time went ([`Memory::phases`]), in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingPhases {
    /// Reading Xen's boot tables and start_info's frames, and the checks.
    pub read_ns: u64,
    /// The takeover's plan, executed (tables, switch, start chunks, retire, reclaim).
    pub plan_ns: u64,
    /// Of which inside MMU hypercalls.
    pub plan_xen_ns: u64,
    /// Setting up the frame allocator.
    pub allocator_ns: u64,
    /// Mapping every other chunk (`direct_map=eager`; 0 on demand).
    pub eager_ns: u64,
    /// Of which inside MMU hypercalls.
    pub eager_xen_ns: u64,
}

/// The direct map's state ([`Memory::direct_map`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectMapState {
    /// How start of day mapped it.
    pub mode: DirectMapMode,
    /// 2 MiB chunks mapped so far.
    pub mapped_chunks: u64,
    /// Chunks in all (the domain's memory).
    pub chunks: u64,
}

/// Module space in use ([`Memory::module_space_usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleSpaceUsage {
    /// Pages of live areas, their guard pages included.
    pub live_pages: u64,
    /// Pages poisoned (kept out of use for good).
    pub poisoned_pages: u64,
    /// Areas handed out and not freed.
    pub live_areas: usize,
}

/// What the MMU executor issued so far ([`Memory::mmu_counts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuCounts {
    /// `mmu_update` and `mmuext_op` hypercalls.
    pub hypercalls: u64,
    /// PTE updates among them.
    pub pt_updates: u64,
}

impl Memory {
    /// vmap's counters so far.
    pub fn vmap_stats(&self) -> VmapStats {
        self.vmap.stats
    }

    /// Module space in use: live pages (guards included), poisoned pages, live areas.
    pub fn module_space_usage(&self) -> ModuleSpaceUsage {
        let r = self.vmap.ranges();
        let (live_pages, poisoned_pages) = r.usage();
        ModuleSpaceUsage {
            live_pages,
            poisoned_pages,
            live_areas: r.live_areas(),
        }
    }

    /// Hypercalls and PTE updates issued by the MMU executor so far, takeover included.
    pub fn mmu_counts(&self) -> MmuCounts {
        MmuCounts {
            hypercalls: self.exec.hypercalls,
            pt_updates: self.exec.pt_updates,
        }
    }

    /// Where start of day's paging time went.
    pub fn phases(&self) -> PagingPhases {
        let Some(t) = *PHASES.lock() else {
            return PagingPhases::default();
        };
        let ns = |a, b| crate::Timing::ns(a, b);
        PagingPhases {
            read_ns: ns(t[0], t[1]),
            plan_ns: ns(t[1], t[2]),
            plan_xen_ns: ns(0, t[5]),
            allocator_ns: ns(t[2], t[3]),
            eager_ns: ns(t[3], t[4]),
            eager_xen_ns: ns(0, t[6]),
        }
    }

    /// How the direct map is mapped: the mode, and how many of its 2 MiB chunks are
    /// mapped.
    pub fn direct_map(&self) -> DirectMapState {
        DirectMapState {
            mode: self.mode,
            mapped_chunks: mapped_chunk_count(self.direct.mapped),
            chunks: xenpv_paging::frames::chunks(self.direct.nr_pages),
        }
    }

    /// What mapping chunks after start of day took (`None` while the frame allocator is
    /// locked by the caller: a [`FramesGuard`](super::FramesGuard) held).
    pub fn direct_map_stats(&self) -> Option<DirectStats> {
        Some(FRAMES.try_lock()?.as_ref()?.direct.stats)
    }

    /// What the takeover did: the runtime's tables, the reserved regions, counts.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Hypercalls the takeover issued.
    pub fn takeover_hypercalls(&self) -> u64 {
        self.takeover_hypercalls
    }

    /// Read the kernel map back and check it.
    pub fn report(&self) -> Report {
        let t = &self.outcome.tables;
        check::check(
            self.split,
            self.kernel_end,
            &self.table(t.level2_kernel).unwrap_or([0; 512]),
            &self.table(t.level2_fixmap).unwrap_or([0; 512]),
            !pte::flags(self.direct_pte(t.level1_fixmap)).contains(pte::RW),
            self,
        )
    }
}

impl Inspect for Memory {
    fn is_module_table(&self, l1: Mfn) -> bool {
        self.pfn(l1).is_some_and(|p| self.vmap.owns_l1(p))
    }
    fn first_page_holds(&self, l1: Mfn) -> &'static str {
        let Some(l1_pfn) = self.pfn(l1) else {
            return "a foreign frame";
        };
        let Some(&e) = self
            .table(l1_pfn)
            .unwrap_or([0; 512])
            .iter()
            .find(|e| pte::present(**e))
        else {
            return "nothing";
        };
        match self.pfn(pte::frame(e)) {
            None => "a foreign frame",
            Some(p) => match self.frames().region_of(p) {
                Some(Use::Kernel) => "kernel",
                Some(Use::Initrd) => "initrd",
                Some(Use::P2m) => "p2m",
                Some(_) => "page-tables",
                None => "boot-data",
            },
        }
    }
}

/// The top of the layout as read back: which L4 and level3_kernel slots are present and
/// what they point at, and where the initrd lives (the `layout:` lines above the L2 ones).
pub struct TopLevel<'a>(pub &'a Memory, pub Option<(Pfn, Pfn)>);

impl core::fmt::Display for TopLevel<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        let t = &m.outcome.tables;
        let mfn = |p: Pfn| m.mfn(p).unwrap_or(Mfn(!0));
        let name4 = |slot: usize, e: u64| match slot {
            super::layout::L4_XEN_FIRST..=super::layout::L4_XEN_LAST => "xen",
            _ if pte::frame(e) == mfn(t.level3_ident) => "direct-map",
            _ if pte::frame(e) == mfn(t.level3_kernel) => "kernel-map",
            super::layout::L4_P2M_LIST
                if m.p2m.window_l3.is_some_and(|l3| pte::frame(e) == mfn(l3)) =>
            {
                "p2m-window"
            }
            _ => "UNEXPECTED",
        };
        write!(f, "layout: l4")?;
        runs(f, &m.table(t.l4).unwrap_or([0; 512]), name4)?;
        write!(f, "\nlayout: level3_kernel")?;
        runs(f, &m.table(t.level3_kernel).unwrap_or([0; 512]), |_, e| {
            if pte::frame(e) == mfn(t.level2_kernel) {
                "level2_kernel"
            } else if pte::frame(e) == mfn(t.level2_fixmap) {
                "level2_fixmap"
            } else {
                "UNEXPECTED"
            }
        })?;
        // The image's permissions as the live tables have them (W^X), and the direct-map
        // alias of its text.
        let text = KERNEL_VIRT_BASE;
        let image = live::image();
        let rodata = image.text_end.align_up(PAGE_SIZE);
        let (data, guard) = (image.data_start, image.boot_stack_guard);
        write!(
            f,
            "\nlayout: image text={} rodata={} data={} stack-guard={} text-alias={}",
            perms(m.kernel_pte(text)),
            perms(m.kernel_pte(rodata)),
            perms(m.kernel_pte(data)),
            perms(m.kernel_pte(guard)),
            perms(Some(m.direct_pte(Pfn(0)))),
        )?;
        match self.1 {
            None => write!(f, "\nlayout: initrd none"),
            Some((s, e)) => write!(
                f,
                "\nlayout: initrd pfn {s:#x}..{e:#x} at {:#x} (direct map), frames reserved",
                direct_map_va(s)
            ),
        }
    }
}

/// `r-x`, `r--`, `rw-`, `rwx` of a present entry; `unmapped` otherwise.
fn perms(e: Option<u64>) -> &'static str {
    match e {
        Some(e) if pte::present(e) => match (
            pte::flags(e).contains(pte::RW),
            !pte::flags(e).contains(pte::NX),
        ) {
            (false, true) => "r-x",
            (false, false) => "r--",
            (true, false) => "rw-",
            (true, true) => "rwx",
        },
        _ => "unmapped",
    }
}

/// ` a-b=name c=name` over the present entries of a table.
fn runs(
    f: &mut core::fmt::Formatter<'_>,
    table: &[u64; 512],
    name: impl Fn(usize, u64) -> &'static str,
) -> core::fmt::Result {
    let mut i = 0;
    while i < 512 {
        if !pte::present(table[i]) {
            i += 1;
            continue;
        }
        let n = name(i, table[i]);
        let mut j = i;
        while j + 1 < 512 && pte::present(table[j + 1]) && name(j + 1, table[j + 1]) == n {
            j += 1;
        }
        if i == j {
            write!(f, " {i}={n}")?;
        } else {
            write!(f, " {i}-{j}={n}")?;
        }
        i = j + 1;
    }
    Ok(())
}
