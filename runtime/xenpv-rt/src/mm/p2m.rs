//! The p2m published for the toolstack, on the live system: the window and the tree of
//! [`xenpv_paging::p2m`] built in frames taken from the allocator, the values written into
//! `shared_info.arch`. Published at the end of the takeover and again after every resume
//! (a restore zeroes the tree's root in shared_info and copies the tree's frames stale).

use super::live::{self, TreeStores};
use super::memory::{Memory, FRAMES};
use core::convert::Infallible;
use xenpv_paging::exec::ExecError;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::p2m::{self, P2mError, P2mPublish, WalkError, Walked, Window};

/// Window tables for the largest list the direct map allows (512 GiB of guest).
const MAX_WINDOW_TABLES: usize = p2m::window_tables(1 << 18) as usize;

/// Why the p2m was not published.
#[derive(Debug)]
pub(crate) enum PublishError {
    /// Xen placed the list at an address that is not page-aligned.
    Unaligned {
        /// start_info's `mfn_list`.
        mfn_list: u64,
    },
    /// Not enough free frames for the window or the tree.
    NoFrames {
        /// Frames needed.
        need: u64,
    },
    /// The window's plan was refused.
    Window(P2mError<ExecError>),
    /// The tree could not be filled.
    Tree(P2mError<Infallible>),
}

impl core::fmt::Display for PublishError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PublishError::Unaligned { mfn_list } => {
                write!(f, "p2m list at {mfn_list:#x} is not page-aligned")
            }
            PublishError::NoFrames { need } => write!(f, "{need} free frame(s) needed"),
            PublishError::Window(e) => write!(f, "window: {e}"),
            PublishError::Tree(e) => write!(f, "tree: {e}"),
        }
    }
}

/// `n` frames in one run, each with a valid mfn (mapping chunks until there is one).
fn take_run(n: u64, mem: &Memory) -> Result<Pfn, PublishError> {
    let mut g = FRAMES.lock();
    let f = g.as_mut().ok_or(PublishError::NoFrames { need: n })?;
    f.grow_until(|a| a.free_frames() >= n);
    let first = f
        .alloc
        .alloc_run(n)
        .ok_or(PublishError::NoFrames { need: n })?;
    let ok = (0..n).all(|i| mem.mfn(first + i).is_some_and(|m| m <= Mfn::MAX));
    if !ok {
        // A hole in the p2m: the frames stay taken (never usable), and we say so.
        return Err(PublishError::NoFrames { need: n });
    }
    Ok(first)
}

/// Map the list's window (once, at boot).
fn map_window(mem: &mut Memory, list: (Pfn, Pfn)) -> Result<(), PublishError> {
    let pages = list.1 .0 - list.0 .0;
    let n = p2m::window_tables(pages);
    if n as usize > MAX_WINDOW_TABLES {
        return Err(PublishError::Window(P2mError::BadList {
            pages,
            nr_pages: mem.direct.nr_pages,
        }));
    }
    let first = take_run(n, mem)?;
    let mut tables = [Pfn(0); MAX_WINDOW_TABLES];
    for (i, t) in tables.iter_mut().enumerate().take(n as usize) {
        *t = first + i as u64;
    }
    let w = Window {
        l4: mem.outcome.tables.l4,
        direct_l1: mem.outcome.tables.direct_l1.0,
        tables: &tables[..n as usize],
        nx: mem.nx,
    };
    p2m::window_plan(list, mem.direct.nr_pages, &w, &mem.direct, &mut mem.exec)
        .map_err(PublishError::Window)?;
    mem.p2m.window = true;
    mem.p2m.window_l3 = Some(first);
    mem.p2m.window_frames = n;
    Ok(())
}

/// Publish the p2m: the window (first time), the tree (filled again every time), then
/// `shared_info.arch` in the order the toolstack relies on. shared_info must be mapped.
pub(crate) fn publish_p2m(mem: &mut Memory) -> Result<P2mPublish, PublishError> {
    let Some(list) = mem.p2m.list else {
        return Err(PublishError::Unaligned {
            mfn_list: mem.p2m.mfn_list,
        });
    };
    let nr = mem.direct.nr_pages;
    if !mem.p2m.window {
        map_window(mem, list)?;
    }
    if mem.p2m.tree.1 == 0 {
        let n = p2m::tree_frames(nr);
        mem.p2m.tree = (take_run(n, mem)?, n);
    }
    let (start, n) = mem.p2m.tree;
    let mut tree = [Pfn(0); 1 + (1 << 18) / 512];
    for (i, t) in tree.iter_mut().enumerate().take(n as usize) {
        *t = start + i as u64;
    }
    let mut store = TreeStores {
        direct: &mem.direct,
        frames: mem.p2m.tree,
    };
    let fll =
        p2m::tree_fill(list, nr, &tree[..n as usize], &mut store).map_err(PublishError::Tree)?;
    let l4 = mem.mfn(mem.outcome.tables.l4).unwrap_or(Mfn(0));
    let p = p2m::publish(l4, nr, fll);
    live::write_p2m_arch(&p);
    Ok(p)
}

/// What a toolstack would find now: `shared_info.arch` read back and walked (the list
/// through the page tables, the tree through the frames), compared with the p2m.
pub(crate) fn check_published(mem: &Memory) -> Result<(P2mPublish, Walked), WalkError> {
    let p = live::read_p2m_arch();
    let list = mem.p2m.list.map_or(Pfn(0), |l| l.0);
    p2m::verify(&p, list, &mem.direct).map(|w| (p, w))
}

/// Publish at the end of the takeover and say so in one line, with the self-check.
pub(crate) fn publish_at_boot(mem: &mut Memory) {
    use xenpv_contract::report::Writer;
    if let Err(e) = publish_p2m(mem) {
        let reason = text(format_args!("{e}"));
        crate::println!(
            "{}",
            Writer::new("p2m")
                .word("not-published")
                .field("reason", reason.as_str())
        );
        return;
    }
    match check_published(mem) {
        Ok((p, w)) => crate::println!(
            "{}",
            xenpv_contract::report!(
                "p2m",
                check = "ok",
                max_pfn = p.max_pfn,
                p2m_vaddr = Hex(p.p2m_vaddr),
                p2m_cr3 = Hex(p.p2m_cr3),
                fll = Hex(p.fll.0),
                leaves = w.leaves,
                entries = w.entries,
                window_tables = mem.p2m.window_frames,
                tree_frames = mem.p2m.tree.1,
            )
        ),
        Err(e) => {
            let reason = text(format_args!("{e}"));
            crate::println!(
                "{}",
                Writer::new("p2m")
                    .field("check", "FAILED")
                    .field("reason", reason.as_str())
            );
        }
    }
}

/// A reason for a report line (cut at 128 bytes).
fn text(args: core::fmt::Arguments<'_>) -> heapless::String<128> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, args);
    s
}

/// `0x…` in a report.
struct Hex(u64);

impl core::fmt::Display for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
