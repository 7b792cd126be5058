//! Publishing the p2m for the toolstack: what `xl save` and `xl migrate` read before they
//! even ask the guest to suspend (Xen 4.17 `tools/libs/guest/xg_sr_save_x86_pv.c`
//! `map_p2m`), and what the guest checks of it itself.
//!
//! The p2m list is Xen's own (start_info `mfn_list`), at fixed pfns for the guest's life.
//! Two ways to name it, both published, as Linux does (`xen_setup_mfn_list_list`):
//! - **the linear list**: `p2m_cr3` (our L4) + `p2m_vaddr` ([`P2M_LIST_BASE`]): the
//!   toolstack walks the page tables to the list's pages. The window maps the list's own
//!   frames read-only under L4 slot [`L4_P2M_LIST`], 1 GiB-aligned so 4.17's level-2
//!   trim in `map_p2m_list` (it compares a relative index with an absolute one) never cuts
//!   the list. Its tables are page tables reachable from the pinned root: a restore
//!   rewrites them with the new MFNs, so the window never needs planning again.
//! - **the three-level tree**: `pfn_to_mfn_frame_list_list` names one frame (fll) of
//!   frame-list MFNs (fl), each holding 512 MFNs of the list's pages (the leaves). These
//!   are plain data frames holding MFNs: a restore copies them as they are, stale, and
//!   zeroes the fll field, so the tree is refilled after every restore.
//!
//! The pieces: [`window_plan`] (boot only), [`tree_fill`] (boot and after every new
//! domain), [`publish`] (the values for `shared_info.arch`), and [`verify`]: the walks a
//! toolstack makes, over memory read by machine frame, compared with the p2m.

use crate::direct::DirectEnv;
use crate::layout::{index, L4_P2M_LIST, P2M_LIST_BASE, PAGE_SIZE};
use crate::ops::{pte, Maddr, Mfn, MmuOp, MmuSink, Pfn};
use core::convert::Infallible;
use x86_64::VirtAddr;

/// p2m entries per page (64-bit guest: 8-byte entries).
pub const FPP: u64 = 512;

/// Pages of a p2m list of `nr_pages` entries (the tree's leaves).
pub const fn leaves(nr_pages: u64) -> u64 {
    nr_pages.div_ceil(FPP)
}

/// Table frames the window needs for `list_pages` pages: one L3, one L2 per GiB of
/// window, one L1 per 512 pages.
pub const fn window_tables(list_pages: u64) -> u64 {
    1 + list_pages.div_ceil(FPP * FPP) + list_pages.div_ceil(FPP)
}

/// Frames the tree needs for `nr_pages` entries: the fll and one fl per 512 leaves.
pub const fn tree_frames(nr_pages: u64) -> u64 {
    1 + leaves(nr_pages).div_ceil(FPP)
}

/// The values the toolstack reads from `shared_info.arch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2mPublish {
    /// Entries in the p2m (the toolstack reads `max_pfn - 1` as the last pfn).
    pub max_pfn: u64,
    /// Where the list is mapped in the address space of [`P2mPublish::p2m_cr3`].
    pub p2m_vaddr: u64,
    /// The root the list is mapped under (a CR3 value: mfn << 12). Written last: a
    /// non-zero value selects the linear list.
    pub p2m_cr3: u64,
    /// The frame list list.
    pub fll: Mfn,
    /// Bumped around changes of the list's frames during a live migration (ours never
    /// change).
    pub generation: u64,
}

/// Why the p2m cannot be published, or does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mError<E> {
    /// The list's pages do not hold `nr_pages` entries, or it is too big for the window.
    BadList {
        /// Pages given.
        pages: u64,
        /// Entries they must hold.
        nr_pages: u64,
    },
    /// The frames handed over do not match what is needed.
    Frames {
        /// Frames given.
        have: u64,
        /// Frames needed.
        need: u64,
    },
    /// A frame the plan writes into an entry has no valid mfn.
    BadP2m {
        /// The frame.
        pfn: Pfn,
        /// Its p2m entry (`!0` if none).
        mfn: Mfn,
    },
    /// The sink refused an operation.
    Sink(E),
}

impl<E: core::fmt::Display> core::fmt::Display for P2mError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            P2mError::BadList { pages, nr_pages } => write!(
                f,
                "p2m list of {pages} page(s) for {nr_pages} entries (window holds at most {})",
                FPP * FPP * FPP
            ),
            P2mError::Frames { have, need } => {
                write!(f, "{have} frame(s) given, {need} needed")
            }
            P2mError::BadP2m { pfn, mfn } => {
                write!(f, "p2m entry of pfn {pfn:#x} is {mfn:#x}, not a frame")
            }
            P2mError::Sink(e) => write!(f, "{e}"),
        }
    }
}

fn valid<E>(env: &impl DirectEnv, pfn: Pfn) -> Result<Mfn, P2mError<E>> {
    match env.mfn(pfn) {
        Some(m) if m <= Mfn::MAX && m != Mfn(0) => Ok(m),
        other => Err(P2mError::BadP2m {
            pfn,
            mfn: other.unwrap_or(Mfn(!0)),
        }),
    }
}

fn check_list<E>(list: (Pfn, Pfn), nr_pages: u64) -> Result<u64, P2mError<E>> {
    let pages = list.1 .0.saturating_sub(list.0 .0);
    if pages != leaves(nr_pages) || nr_pages == 0 || pages > FPP * FPP {
        return Err(P2mError::BadList { pages, nr_pages });
    }
    Ok(pages)
}

/// The window's tables and where it hooks in.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    /// The root (pinned): slot [`L4_P2M_LIST`] gets the window's L3.
    pub l4: Pfn,
    /// First direct-map L1 (pfn p's entry is in `direct_l1 + p/512`, slot `p%512`): the
    /// tables' direct-map aliases are made read-only there.
    pub direct_l1: Pfn,
    /// [`window_tables`] free frames in mapped chunks (not page tables yet): the L3,
    /// then the L2s, then the L1s.
    pub tables: &'a [Pfn],
    /// Set NX on the mappings.
    pub nx: bool,
}

/// Map the list's pages `[list.0, list.1)` read-only at [`P2M_LIST_BASE`] (boot only):
/// each table cleared (`ClearPage`), made read-only in the direct map, filled, then the
/// window hooked into the root last (Xen validates the whole window at that moment).
pub fn window_plan<S: MmuSink>(
    list: (Pfn, Pfn),
    nr_pages: u64,
    w: &Window<'_>,
    env: &impl DirectEnv,
    sink: &mut S,
) -> Result<(), P2mError<S::Error>> {
    let pages = check_list(list, nr_pages)?;
    let need = window_tables(pages);
    if w.tables.len() as u64 != need {
        return Err(P2mError::Frames {
            have: w.tables.len() as u64,
            need,
        });
    }
    let n_l2 = pages.div_ceil(FPP * FPP) as usize;
    let (l3, rest) = (w.tables[0], &w.tables[1..]);
    let (l2s, l1s) = rest.split_at(n_l2);
    let nx = if w.nx {
        pte::NX
    } else {
        pte::PageTableFlags::empty()
    };
    let ro = pte::PRESENT | pte::ACCESSED | nx;
    let put = |s: &mut S, table: Mfn, slot: u64, val: u64| {
        s.submit(MmuOp::PtUpdate {
            ptr: Maddr(table.maddr().0 + slot * 8),
            val,
        })
        .map_err(P2mError::Sink)
    };
    for &t in w.tables {
        let m = valid(env, t)?;
        sink.submit(MmuOp::ClearPage { mfn: m })
            .map_err(P2mError::Sink)?;
        let dl1 = valid(env, w.direct_l1 + t.0 / FPP)?;
        put(sink, dl1, t.0 % FPP, pte::entry(m, ro | pte::DIRTY))?;
    }
    for k in 0..pages {
        let l1 = valid(env, l1s[(k / FPP) as usize])?;
        put(sink, l1, k % FPP, pte::entry(valid(env, list.0 + k)?, ro))?;
    }
    for (j, &l1) in l1s.iter().enumerate() {
        let l2 = valid(env, l2s[j / FPP as usize])?;
        put(
            sink,
            l2,
            j as u64 % FPP,
            pte::entry(valid(env, l1)?, pte::TABLE),
        )?;
    }
    for (i, &l2) in l2s.iter().enumerate() {
        put(
            sink,
            valid(env, l3)?,
            i as u64,
            pte::entry(valid(env, l2)?, pte::TABLE),
        )?;
    }
    // The tables are read-only everywhere before the root names them.
    sink.flush().map_err(P2mError::Sink)?;
    let l3e = pte::entry(valid(env, l3)?, pte::TABLE);
    put(sink, valid(env, w.l4)?, L4_P2M_LIST as u64, l3e)?;
    sink.flush().map_err(P2mError::Sink)
}

/// Fill the tree over the list's pages (plain stores into `tree`, [`tree_frames`] data
/// frames, mapped read-write): the fll, then the fl frames. Unused slots hold 0 (the
/// toolstack reads them only up to `max_pfn`). Returns the fll's mfn. Run again after
/// every new domain: the frames hold MFNs.
pub fn tree_fill(
    list: (Pfn, Pfn),
    nr_pages: u64,
    tree: &[Pfn],
    env: &mut impl DirectEnv,
) -> Result<Mfn, P2mError<Infallible>> {
    let pages = check_list(list, nr_pages)?;
    let need = tree_frames(nr_pages);
    if tree.len() as u64 != need {
        return Err(P2mError::Frames {
            have: tree.len() as u64,
            need,
        });
    }
    let mut page = [0u64; 512];
    for (f, &fl) in tree[1..].iter().enumerate() {
        for (s, e) in page.iter_mut().enumerate() {
            let k = f as u64 * FPP + s as u64;
            *e = if k < pages {
                valid(env, list.0 + k)?.0
            } else {
                0
            };
        }
        valid(env, fl)?;
        env.store_table(fl, &page);
    }
    for (s, e) in page.iter_mut().enumerate() {
        *e = match tree.get(1 + s) {
            Some(&fl) => valid(env, fl)?.0,
            None => 0,
        };
    }
    let fll = valid(env, tree[0])?;
    env.store_table(tree[0], &page);
    Ok(fll)
}

/// The values for `shared_info.arch`: the window under root `l4_mfn`, `nr_pages`
/// entries, the tree at `fll`.
pub fn publish(l4_mfn: Mfn, nr_pages: u64, fll: Mfn) -> P2mPublish {
    P2mPublish {
        max_pfn: nr_pages,
        p2m_vaddr: P2M_LIST_BASE.as_u64(),
        p2m_cr3: l4_mfn.0 << 12,
        fll,
        generation: 0,
    }
}

/// Memory by machine frame, as the toolstack maps it, and the guest's p2m and Xen's M2P.
pub trait Machine {
    /// Word `index` of machine frame `mfn` (`None`: not a frame of the guest's).
    fn word(&self, mfn: Mfn, index: usize) -> Option<u64>;
    /// The first `out.len()` words of machine frame `mfn`, as [`Machine::word`] reads
    /// them (`None`: not a frame of the guest's). [`verify`] reads each leaf so: the
    /// live system overrides this to look the frame up once, not once a word.
    fn words(&self, mfn: Mfn, out: &mut [u64]) -> Option<()> {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.word(mfn, i)?;
        }
        Some(())
    }
    /// The M2P entry of `mfn` (`None` past the table).
    fn m2p(&self, mfn: Mfn) -> Option<Pfn>;
    /// The p2m entry of `pfn`.
    fn p2m(&self, pfn: Pfn) -> Option<Mfn>;
    /// The highest machine frame.
    fn max_mfn(&self) -> Mfn;
}

/// What [`verify`] walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    /// Leaf pages found by the list walk (and by the tree walk: the same).
    pub leaves: u64,
    /// Entries compared with the p2m.
    pub entries: u64,
}

/// Where a walk of the published p2m went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// `max_pfn` is 0 or more than the p2m holds.
    MaxPfn(u64),
    /// An entry on the way names no frame of the guest's (`what`: `"l4"`, `"fll"`, ...).
    BadMfn {
        /// The table or level.
        what: &'static str,
        /// Index of the leaf or entry.
        index: u64,
        /// The frame found.
        mfn: Mfn,
    },
    /// The walk reached a different frame than the list's page.
    Mismatch {
        /// `"list"` or `"tree"`.
        what: &'static str,
        /// The leaf.
        leaf: u64,
        /// Found.
        found: Mfn,
        /// The list page's frame.
        want: Mfn,
    },
    /// An entry read through the leaf frame differs from the p2m.
    Entry {
        /// The pfn.
        pfn: Pfn,
        /// Read by machine frame.
        found: u64,
    },
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            WalkError::MaxPfn(n) => write!(f, "max_pfn {n} out of range"),
            WalkError::BadMfn { what, index, mfn } => {
                write!(f, "bad mfn {mfn:#x} at {what} index {index}")
            }
            WalkError::Mismatch {
                what,
                leaf,
                found,
                want,
            } => write!(
                f,
                "{what} walk: leaf {leaf} is mfn {found:#x}, list page is {want:#x}"
            ),
            WalkError::Entry { pfn, found } => {
                write!(f, "entry of pfn {pfn:#x} reads {found:#x} by machine frame")
            }
        }
    }
}

fn frame_of(m: &impl Machine, what: &'static str, index: u64, e: u64) -> Result<Mfn, WalkError> {
    let mfn = pte::frame(e);
    if e == 0 || mfn == Mfn(0) || mfn > m.max_mfn() {
        return Err(WalkError::BadMfn { what, index, mfn });
    }
    Ok(mfn)
}

fn word(
    m: &impl Machine,
    what: &'static str,
    index: u64,
    mfn: Mfn,
    i: usize,
) -> Result<u64, WalkError> {
    m.word(mfn, i).ok_or(WalkError::BadMfn { what, index, mfn })
}

/// A leaf must be in the guest's pseudo-physical map (`mfn_in_pseudophysmap`).
fn leaf_ok(
    m: &impl Machine,
    what: &'static str,
    k: u64,
    mfn: Mfn,
    last: u64,
) -> Result<(), WalkError> {
    let pfn = m.m2p(mfn).filter(|p| p.0 <= last);
    if pfn.and_then(|p| m.p2m(p)) != Some(mfn) {
        return Err(WalkError::BadMfn {
            what,
            index: k,
            mfn,
        });
    }
    Ok(())
}

/// Walk what `p` publishes as a toolstack does: the list from `p2m_cr3` and `p2m_vaddr`
/// down to each leaf, and the tree from the fll, each leaf checked to be in the guest's
/// pseudo-physical map, both walks reaching the list's pages `[list.0, ..)`, and every
/// entry read through the leaf frames equal to the p2m.
pub fn verify(p: &P2mPublish, list: Pfn, m: &impl Machine) -> Result<Walked, WalkError> {
    let n = p.max_pfn;
    if n == 0 || m.p2m(Pfn(n - 1)).is_none() {
        return Err(WalkError::MaxPfn(n));
    }
    let nl = leaves(n);
    let root = frame_of(m, "p2m_cr3", 0, p.p2m_cr3)?;
    let fll = frame_of(m, "fll", 0, p.fll.maddr().0)?;
    for k in 0..nl {
        let want = m.p2m(list + k).unwrap_or(Mfn(!0));
        let va = VirtAddr::new_truncate(p.p2m_vaddr + k * PAGE_SIZE);
        let mut t = root;
        for (level, what) in [(4, "l4"), (3, "l3"), (2, "l2"), (1, "l1")] {
            t = frame_of(m, what, k, word(m, what, k, t, index(va, level))?)?;
        }
        let fl = frame_of(
            m,
            "fll",
            k,
            word(m, "fll", k, fll, (k / FPP) as usize)?.wrapping_shl(12),
        )?;
        let tree = frame_of(
            m,
            "fl",
            k,
            word(m, "fl", k, fl, (k % FPP) as usize)?.wrapping_shl(12),
        )?;
        for (what, found) in [("list", t), ("tree", tree)] {
            if found != want {
                return Err(WalkError::Mismatch {
                    what,
                    leaf: k,
                    found,
                    want,
                });
            }
        }
        leaf_ok(m, "leaf", k, t, n - 1)?;
        let mut leaf = [0u64; FPP as usize];
        let here = FPP.min(n - k * FPP) as usize;
        m.words(t, &mut leaf[..here]).ok_or(WalkError::BadMfn {
            what: "leaf",
            index: k,
            mfn: t,
        })?;
        for (i, &found) in leaf[..here].iter().enumerate() {
            let pfn = Pfn(k * FPP + i as u64);
            if Some(Mfn(found)) != m.p2m(pfn) {
                return Err(WalkError::Entry { pfn, found });
            }
        }
    }
    Ok(Walked {
        leaves: nl,
        entries: n,
    })
}
