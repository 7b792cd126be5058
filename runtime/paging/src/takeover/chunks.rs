//! The chunks of the direct map the takeover maps: sorted, disjoint ranges of chunk
//! indexes, and the pfn ranges they must cover.

use crate::frames::CHUNK_PAGES;
use crate::graft::LayoutError;
use crate::ops::Pfn;

/// `[start, end)` ranges of chunk indexes, sorted and disjoint.
pub type ChunkRanges = heapless::Vec<(u64, u64), 32>;

/// Is `pfn` in `[r.0, r.1)`?
pub(super) fn in_range(pfn: Pfn, r: (Pfn, Pfn)) -> bool {
    (r.0..r.1).contains(&pfn)
}

/// Add chunks `[s, e)` to `set`, keeping its ranges sorted, disjoint and merged (ranges
/// that overlap or touch become one).
pub(super) fn insert_range(set: &mut ChunkRanges, s: u64, e: u64) -> Result<(), LayoutError> {
    if s >= e {
        return Ok(());
    }
    // Ranges i..j overlap or touch [s, e).
    let i = set.partition_point(|&(_, re)| re < s);
    let j = set.partition_point(|&(rs, _)| rs <= e);
    if i == j {
        let max = set.capacity();
        return set
            .insert(i, (s, e))
            .map_err(|_| LayoutError::StartChunks { max });
    }
    set[i] = (set[i].0.min(s), set[j - 1].1.max(e));
    for _ in i + 1..j {
        set.remove(i + 1);
    }
    Ok(())
}

pub(super) fn in_chunks(c: u64, set: &ChunkRanges) -> bool {
    set.iter().any(|&(s, e)| (s..e).contains(&c))
}

/// The chunks covering the pfn ranges `want` (empty ranges skipped), plus the
/// lowest `free` chunks not among them, as sorted disjoint ranges of `n` chunks at most.
pub(super) fn start_chunks(
    want: &[(Pfn, Pfn)],
    free: u64,
    n: u64,
) -> Result<ChunkRanges, LayoutError> {
    let mut out = ChunkRanges::new();
    for &(s, e) in want {
        if s < e {
            insert_range(
                &mut out,
                s.0 / CHUNK_PAGES,
                e.0.div_ceil(CHUNK_PAGES).min(n),
            )?;
        }
    }
    let mut left = free;
    let mut c = 0;
    while left > 0 && c < n {
        if !in_chunks(c, &out) {
            insert_range(&mut out, c, c + 1)?;
            left -= 1;
        }
        c += 1;
    }
    Ok(out)
}
