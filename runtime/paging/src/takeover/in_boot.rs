//! The takeover's fast path: the new tables in the free tail of Xen's boot region.
//!
//! Xen maps its boot region read-write and guarantees at least 512 KiB of padding after
//! the last thing it put there (`xen/include/public/xen.h`, start of day). Frames of that
//! tail are ordinary guest pages, writable until they become page tables, like the static
//! tables Linux keeps in its image (`level3_ident_pgt`, `level2_kernel_pgt`, ... in
//! `arch/x86/kernel/head_64.S`): `xen_setup_kernel_pagetable` (`arch/x86/xen/mmu_pv.c`)
//! fills them with plain stores, makes each read-only (`set_page_prot`) and pins the root.
//! Here the same: every upper table and every start chunk's L1 is written with plain
//! stores through the boot mapping, then one `mmu_update` per table frame makes its boot
//! mapping read-only, then the pin. No `ClearPage`, no entry-by-entry writes, and no
//! frame needed above the boot region (a domain whose boot region is all its memory can
//! still take over).

use super::chunks::in_chunks;
use super::{Emitter, Input, Plan, TakeoverError};
use crate::direct::{DirectMap, TableStore};
use crate::frames::CHUNK_PAGES;
use crate::layout::{
    index, FIXMAP_L2_BASE, FIXMAP_L2_SLOT, KERNEL_VIRT_BASE, L3_FIXMAP, L3_KERNEL, L4_DIRECT_MAP,
};
use crate::layout::{L4_KERNEL, PAGE_SIZE};
use crate::ops::{pte, Mfn, Pfn};

/// A table's entries, built on the stack and stored whole.
type Entries = [u64; 512];

/// Write the upper tables and the start chunks' L1s with plain stores through the boot
/// mapping (`store`), then make their boot mappings read-only. Returns the p2m holes met.
pub(super) fn write_tables<S: crate::ops::MmuSink>(
    p: &Plan<'_, '_>,
    dm: &DirectMap,
    store: &mut dyn TableStore,
    e: &mut Emitter<'_, S>,
) -> Result<u64, TakeoverError<S::Error>> {
    e.step = "write tables in the boot region";
    let (t, g, nr) = (&p.t, &p.g, p.input.nr_pages);
    let tbl = |m: Mfn| pte::entry(m, pte::TABLE);
    let mut x: Entries = [0; 512];
    // The root and the direct map's upper levels.
    x[L4_DIRECT_MAP] = tbl(p.mfn(t.level3_ident)?);
    x[L4_KERNEL] = tbl(p.mfn(t.level3_kernel)?);
    store.store_table(t.l4, &x);
    x = [0; 512];
    for j in 0..t.level2_ident.1 {
        x[j as usize] = tbl(p.mfn(t.level2_ident.0 + j)?);
    }
    store.store_table(t.level3_ident, &x);
    for j in 0..t.level2_ident.1 {
        x = [0; 512];
        for &(cs, ce) in &p.wanted {
            for c in cs.max(j * 512)..ce.min((j + 1) * 512) {
                x[(c % 512) as usize] = tbl(p.mfn(dm.l1_of(c))?);
            }
        }
        store.store_table(t.level2_ident.0 + j, &x);
    }
    // The kernel map: level3_kernel, the graft, the fixmap (shared_info).
    x = [0; 512];
    x[L3_KERNEL] = tbl(p.mfn(t.level2_kernel)?);
    x[L3_FIXMAP] = tbl(p.mfn(t.level2_fixmap)?);
    store.store_table(t.level3_kernel, &x);
    x = g.level2_kernel.map(|v| if pte::present(v) { v } else { 0 });
    store.store_table(t.level2_kernel, &x);
    x = g.level2_fixmap.map(|v| if pte::present(v) { v } else { 0 });
    x[FIXMAP_L2_SLOT] = tbl(p.mfn(t.level1_fixmap)?);
    store.store_table(t.level2_fixmap, &x);
    x = [0; 512];
    x[0] = pte::entry(p.input.shared_info, p.data);
    store.store_table(t.level1_fixmap, &x);
    // The start chunks' L1s: page tables (these L1s among them) and what `read_only`
    // names read-only.
    let mut holes = 0;
    let mapped = |c: u64| in_chunks(c, &p.wanted);
    let read_only = |pfn: Pfn| p.read_only(pfn);
    for &(cs, ce) in &p.wanted {
        for c in cs..ce {
            let mut mfns = [Mfn(!0); 512];
            for (i, m) in mfns.iter_mut().enumerate() {
                let pfn = Pfn(c * CHUNK_PAGES + i as u64);
                if pfn.0 < nr {
                    *m = p.input.p2m.mfn(pfn, false).unwrap_or(Mfn(!0));
                }
            }
            let (entries, h) = dm.chunk_entries(c, &mfns, &mapped, Some(&read_only));
            holes += h;
            store.store_table(dm.l1_of(c), &entries);
        }
    }
    // Only now, every store done: the table frames' boot mappings read-only, the chunk
    // L1s not in use yet included. The boot mapping is retired after the switch, but a
    // wrong graft (the 2014 copy) would keep an alias of it: no writable alias of a
    // future page table then survives it, and the layout check, not a refused
    // `mmu_update` at some later chunk, reports the bug.
    for pfn in p.start.up_to(p.upper_end) {
        boot_read_only(p, pfn, e)?;
    }
    for pfn in t.direct_l1.0.up_to(t.direct_l1.0 + t.direct_l1.1) {
        boot_read_only(p, pfn, e)?;
    }
    e.flush()?;
    Ok(holes)
}

/// Make frame `pfn`'s boot mapping (`KERNEL_VIRT_BASE` + `pfn` pages, under
/// level2_kernel: the planner keeps the run below 1 GiB) read-only.
fn boot_read_only<S: crate::ops::MmuSink>(
    p: &Plan<'_, '_>,
    pfn: Pfn,
    e: &mut Emitter<'_, S>,
) -> Result<(), TakeoverError<S::Error>> {
    let va = KERNEL_VIRT_BASE + pfn.0 * PAGE_SIZE;
    let l1 = pte::frame(p.g.level2_kernel[index(va, 2)]);
    e.put(l1, index(va, 1), pte::entry(p.mfn(pfn)?, p.data - pte::RW))
}

/// The free tail of Xen's boot region `[start, end)`: past everything Xen put there (the
/// image, the p2m list, start_info, a domU's rings, a mapped initrd, the boot tables and
/// the boot stack page after them), below the end of memory and under L3\[510\] (the
/// fast path makes the tables' boot mappings read-only through level2_kernel's L1s).
/// Empty if an initrd loaded past the boot region reaches into it.
pub(super) fn boot_tail(input: &Input<'_>, boot_end_pfn: Pfn) -> (Pfn, Pfn) {
    let kernel_end = Pfn((input.kernel_end - KERNEL_VIRT_BASE).div_ceil(PAGE_SIZE));
    let mut start = kernel_end
        .max(input.p2m_pfns.1)
        .max(input.xen_pt.1 + 1)
        .max(input.start_info + 1);
    for r in input.shared_rings.iter().flatten() {
        start = start.max(*r + 1);
    }
    let below_fixmap = Pfn((FIXMAP_L2_BASE - KERNEL_VIRT_BASE) / PAGE_SIZE);
    let end = boot_end_pfn.min(Pfn(input.nr_pages)).min(below_fixmap);
    if let Some(m) = input.module {
        if m.0 < end {
            start = start.max(m.1);
        }
    }
    (start, end.max(start))
}
