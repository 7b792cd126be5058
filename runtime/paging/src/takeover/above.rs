//! Steps 1-3 of the takeover when the new tables lie above Xen's boot region (they do
//! not fit in its free tail, `in_boot`): the upper tables cleared by Xen, the first
//! chunks and the kernel map written entry by entry, and after the switch the other
//! start chunks' L1s written with plain stores through the new direct map.

use super::chunks::{in_chunks, insert_range, ChunkRanges};
use super::{BootEnv, Emitter, Plan, Step, TakeoverError};
use crate::direct::{DirectMap, GrowError, TableStore};
use crate::frames::CHUNK_PAGES;
use crate::graft::LayoutError;
use crate::layout::{FIXMAP_L2_SLOT, L3_FIXMAP, L3_KERNEL, L4_DIRECT_MAP, L4_KERNEL};
use crate::ops::{pte, Mfn, MmuOp, MmuSink, Pfn};

/// The upper tables start empty (`ClearPage`: untyped frames); chunk L1s are written
/// whole when their chunk is mapped, and the allocator fills its bitmaps itself.
pub(super) fn clear_tables<S: MmuSink>(p: &Plan<'_, '_>, e: &mut Emitter<'_, S>) -> Step<S> {
    for pfn in p.start.up_to(p.upper_end) {
        e.op(MmuOp::ClearPage { mfn: p.mfn(pfn)? })?;
    }
    Ok(())
}

/// Step 2: the first chunks of the direct map, entry by entry (nothing maps their L1s
/// yet), and level3_ident. Returns the p2m holes met.
pub(super) fn map_first_chunks<S: MmuSink>(
    p: &Plan<'_, '_>,
    dm: &mut DirectMap,
    e: &mut Emitter<'_, S>,
) -> Result<u64, TakeoverError<S::Error>> {
    e.step = "write direct map";
    let (t, nr) = (&p.t, p.input.nr_pages);
    let mut holes = 0;
    let in_first = |i: u64| in_chunks(i, &p.first);
    let read_only = |pfn: Pfn| p.read_only(pfn);
    for &(cs, ce) in &p.first {
        for c in cs..ce {
            let mut mfns = [Mfn(!0); 512];
            for (i, m) in mfns.iter_mut().enumerate() {
                let pfn = Pfn(c * CHUNK_PAGES + i as u64);
                if pfn.0 < nr {
                    *m = p.input.p2m.mfn(pfn, false).unwrap_or(Mfn(!0));
                }
            }
            let (entries, h) = dm.chunk_entries(c, &mfns, &in_first, Some(&read_only));
            holes += h;
            let l1 = p.mfn(dm.l1_of(c))?;
            for (i, &v) in entries.iter().enumerate() {
                e.put(l1, i, v)?;
            }
            e.put(
                p.mfn(t.level2_ident.0 + c / 512)?,
                (c % 512) as usize,
                pte::entry(l1, pte::TABLE),
            )?;
        }
    }
    for j in 0..t.level2_ident.1 {
        e.put(
            p.mfn(t.level3_ident)?,
            j as usize,
            pte::entry(p.mfn(t.level2_ident.0 + j)?, pte::TABLE),
        )?;
    }
    Ok(holes)
}

/// The kernel map: the fixmap (shared_info), the graft, level3_kernel, and the root.
pub(super) fn build_kernel_map<S: MmuSink>(p: &Plan<'_, '_>, e: &mut Emitter<'_, S>) -> Step<S> {
    e.step = "write kernel map";
    let (t, g) = (&p.t, &p.g);
    let shared_info = pte::entry(p.input.shared_info, p.data);
    e.put(p.mfn(t.level1_fixmap)?, 0, shared_info)?;
    for (slot, &v) in g.level2_kernel.iter().enumerate() {
        if pte::present(v) {
            e.put(p.mfn(t.level2_kernel)?, slot, v)?;
        }
    }
    for (slot, &v) in g.level2_fixmap.iter().enumerate() {
        if pte::present(v) && slot != FIXMAP_L2_SLOT {
            e.put(p.mfn(t.level2_fixmap)?, slot, v)?;
        }
    }
    // (table, slot, the table its entry points at)
    let links = [
        (t.level2_fixmap, FIXMAP_L2_SLOT, t.level1_fixmap),
        (t.level3_kernel, L3_KERNEL, t.level2_kernel),
        (t.level3_kernel, L3_FIXMAP, t.level2_fixmap),
        (t.l4, L4_DIRECT_MAP, t.level3_ident),
        (t.l4, L4_KERNEL, t.level3_kernel),
    ];
    for (table, slot, lower) in links {
        e.put(p.mfn(table)?, slot, pte::entry(p.mfn(lower)?, pte::TABLE))?;
    }
    e.flush()
}

/// Step 3b: the other start chunks, each L1 with plain stores through the direct map
/// (its host chunk mapped first), the p2m still read through the boot mapping. Returns
/// the chunks mapped.
pub(super) fn map_start_chunks<S: MmuSink>(
    p: &Plan<'_, '_>,
    dm: &mut DirectMap,
    store: &mut dyn TableStore,
    e: &mut Emitter<'_, S>,
) -> Result<ChunkRanges, TakeoverError<S::Error>> {
    e.step = "write start chunks";
    let layout = |e| TakeoverError::Layout(e);
    let read_only = |pfn: Pfn| p.read_only(pfn);
    let mut mapped = p.first.clone();
    let mut env = BootEnv {
        p2m: p.input.p2m,
        via_direct_map: p.p2m_high,
        store,
    };
    for &(cs, ce) in &p.wanted {
        for c in cs..ce {
            // The chain of chunks holding the L1s, nearest to a mapped one first.
            let mut chain: heapless::Vec<u64, 8> = heapless::Vec::new();
            let mut x = c;
            while !in_chunks(x, &mapped) {
                if chain.push(x).is_err() {
                    return Err(layout(LayoutError::StartChunks { max: 8 }));
                }
                let h = dm.host_of(x);
                if h == x {
                    break;
                }
                x = h;
            }
            for &x in chain.iter().rev() {
                let step = e.step;
                let is_mapped = |i: u64| in_chunks(i, &mapped);
                dm.write_chunk(x, &mut env, &is_mapped, Some(&read_only), e)
                    .map_err(|g| match g {
                        GrowError::BadP2m { pfn, mfn } => TakeoverError::BadP2m { pfn, mfn },
                        GrowError::Sink(error) => TakeoverError::Sink { step, error },
                        // The chain above maps every host first: not reached.
                        _ => layout(LayoutError::StartChunks { max: 8 }),
                    })?;
                // Live before the next store, which may go through this chunk.
                e.flush()?;
                insert_range(&mut mapped, x, x + 1).map_err(layout)?;
            }
        }
    }
    Ok(mapped)
}
