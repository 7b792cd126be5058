//! The takeover planner run against the model of Xen's dom0 builder and PV MMU: the
//! scenario both the takeover and the vmap tests start from.

use crate::mmu_model::{build_dom0, Dom0Config, Refusal, XenPvModel as Model};
use std::cell::RefCell;
use xenpv_paging::direct::{DirectEnv, DirectMap, DirectStats, PtWrite, TableStore};
use xenpv_paging::frames::{bitmap_words, chunk_words, FrameAllocator};
use xenpv_paging::layout::*;
use xenpv_paging::ops::{Mfn, Pfn};
use xenpv_paging::ops::{MmuOp, MmuSink};
use xenpv_paging::snapshot::{self, TableReader};
use xenpv_paging::takeover::{self, ImageLayout, Input, Outcome, P2m, TakeoverError};

/// The model as a sink and as the memory the planner reads through.
pub struct Shared<'a>(pub &'a RefCell<Model>);

impl MmuSink for Shared<'_> {
    type Error = Refusal;
    fn submit(&mut self, op: MmuOp) -> Result<(), Self::Error> {
        self.0.borrow_mut().apply(op)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The model as a sink that holds operations back until a flush (or 512 of them), as the
/// executor batches them into hypercalls: a plan that reads or stores through a mapping
/// it has only queued, not flushed, meets the old address space here, as it would under
/// Xen.
pub struct Queued<'a> {
    pub m: &'a RefCell<Model>,
    pub queue: Vec<MmuOp>,
    /// Flushes that applied something.
    pub flushes: usize,
}

impl<'a> Queued<'a> {
    pub fn new(m: &'a RefCell<Model>) -> Self {
        Queued {
            m,
            queue: vec![],
            flushes: 0,
        }
    }
}

impl MmuSink for Queued<'_> {
    type Error = Refusal;
    fn submit(&mut self, op: MmuOp) -> Result<(), Self::Error> {
        self.queue.push(op);
        if self.queue.len() == 512 {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        if self.queue.is_empty() {
            return Ok(());
        }
        self.flushes += 1;
        let mut m = self.m.borrow_mut();
        for op in self.queue.drain(..) {
            m.apply(op)?;
        }
        Ok(())
    }
}

/// The p2m list read through the guest's mappings of the moment, as the runtime does: a
/// plan that read it through the boot mapping after retiring it would fail here.
pub struct GuestP2m<'a> {
    m: &'a RefCell<Model>,
    mfn_list: VirtAddr,
}

impl P2m for GuestP2m<'_> {
    fn mfn(&self, pfn: Pfn, switched: bool) -> Option<Mfn> {
        let base = if switched {
            DIRECT_MAP_BASE + (self.mfn_list - KERNEL_VIRT_BASE)
        } else {
            self.mfn_list
        };
        self.m
            .borrow()
            .read_va((base + pfn.0 * 8).as_u64())
            .ok()
            .map(Mfn)
    }
}

/// A p2m with holes punched in it.
struct Holes<'a> {
    p2m: GuestP2m<'a>,
    holes: &'a [Pfn],
}

impl P2m for Holes<'_> {
    fn mfn(&self, pfn: Pfn, switched: bool) -> Option<Mfn> {
        if self.holes.contains(&pfn) {
            Some(Mfn(!0))
        } else {
            self.p2m.mfn(pfn, switched)
        }
    }
}

pub struct BootReader<'a> {
    m: &'a RefCell<Model>,
    d: &'a Dom0,
}

impl TableReader for BootReader<'_> {
    fn table(&self, mfn: Mfn) -> Option<[u64; 512]> {
        (self.d.xen_pt.0 .0..self.d.xen_pt.1 .0)
            .any(|p| self.d.p2m[p as usize] == mfn)
            .then(|| self.m.borrow().table(mfn.0))
    }
}

/// The start_info facts of the dom0 builder model, in the shape the tests use.
pub struct Dom0 {
    pub p2m: Vec<Mfn>,
    pub kernel_end: VirtAddr,
    pub module: Option<(Pfn, Pfn)>,
    pub p2m_pfns: (Pfn, Pfn),
    pub mfn_list: VirtAddr,
    pub xen_pt: (Pfn, Pfn),
    pub boot_end: VirtAddr,
    pub shared_info: Mfn,
    /// The start_info page.
    pub start_info: Pfn,
}

/// (mfn, writable) of `va` in the model's current tables.
pub fn tr(m: &Model, va: VirtAddr) -> Option<(Mfn, bool)> {
    m.translate(va.as_u64()).map(|t| (Mfn(t.mfn), t.writable))
}

pub struct Case {
    pub nr_pages: u64,
    pub kernel_pages: u64,
    pub initrd: u64,
    pub mod_start_pfn: bool,
    pub split: Split,
}

pub struct Done {
    pub m: Model,
    pub d: Dom0,
    pub out: Result<Outcome, TakeoverError<Refusal>>,
    /// What mapping the rest of the direct map did ([`take_over`]), `None` if nothing
    /// was mapped after the takeover ([`take_over_on_demand`]).
    pub grown: Option<DirectStats>,
}

/// The direct-map planner's view of the model's guest: the p2m as the runtime reads it
/// (with the scenario's holes), and plain stores through the guest's own mappings. A
/// store into a frame the guest has not mapped writable is a planner bug the model
/// catches: it panics naming the address.
pub struct ModelDirect<'a> {
    pub m: &'a RefCell<Model>,
    pub p2m: &'a [Mfn],
    pub holes: &'a [Pfn],
}

impl DirectEnv for ModelDirect<'_> {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        if self.holes.contains(&pfn) {
            return Some(Mfn(!0));
        }
        self.p2m.get(pfn.0 as usize).copied()
    }
}

impl TableStore for ModelDirect<'_> {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        let mut m = self.m.borrow_mut();
        for (i, &v) in entries.iter().enumerate() {
            let va = direct_map_va(pfn) + i as u64 * 8;
            if let Err(f) = m.write_va(va.as_u64(), v) {
                panic!(
                    "plain store into pfn {pfn:#x} at {va:#x} faults: {}",
                    f.what
                );
            }
        }
    }
}

/// Plain stores through Xen's boot mapping of the model's guest (pfn i at
/// `KERNEL_VIRT_BASE` + i pages). A store into a page not mapped writable there (a page
/// table, or a table made read-only too early) panics naming the address.
pub struct BootStores<'a> {
    pub m: &'a RefCell<Model>,
}

impl TableStore for BootStores<'_> {
    fn store_table(&mut self, pfn: Pfn, entries: &[u64; 512]) {
        let mut m = self.m.borrow_mut();
        for (i, &v) in entries.iter().enumerate() {
            let va = KERNEL_VIRT_BASE + pfn.0 * PAGE_SIZE + i as u64 * 8;
            if let Err(f) = m.write_va(va.as_u64(), v) {
                panic!(
                    "plain store into boot-region pfn {pfn:#x} at {va:#x} faults: {}",
                    f.what
                );
            }
        }
    }
}

/// The allocator's two bitmaps, owned, for an allocator over a takeover's outcome.
pub struct Bitmaps {
    pub bits: Vec<u64>,
    pub chunks: Vec<std::sync::atomic::AtomicU64>,
}

impl Bitmaps {
    /// Bitmaps for `nr_pages`, filled with garbage (the allocator must not rely on zeroes).
    pub fn new(nr_pages: u64) -> Bitmaps {
        Bitmaps {
            bits: vec![0x5555_5555_5555_5555; bitmap_words(nr_pages)],
            chunks: (0..chunk_words(nr_pages))
                .map(|_| std::sync::atomic::AtomicU64::new(0xaaaa_aaaa_aaaa_aaaa))
                .collect(),
        }
    }
    /// The on-demand allocator the runtime builds after the takeover.
    pub fn allocator(&mut self, out: &Outcome, nr_pages: u64) -> FrameAllocator<'_> {
        FrameAllocator::new_on_demand(
            &mut self.bits,
            &self.chunks,
            nr_pages,
            out.regions.clone(),
            &out.start_chunks,
        )
        .expect("bitmaps of the right size")
    }
}

/// The direct-map planner over a takeover's tables.
pub fn direct_map(out: &Outcome, nr_pages: u64, pt_write: PtWrite) -> DirectMap {
    DirectMap::new(&out.tables, nr_pages, true, pt_write)
}

/// The sections the scenario gives the model's kernel image (in the kernel map): text
/// in the first half, read-only data to three quarters, then data with one guard page
/// (at seven eighths, and never the last page: the boot stack follows it).
#[derive(Clone, Copy, Debug)]
pub struct Image {
    /// End of text.
    pub text_end: VirtAddr,
    /// End of read-only data.
    pub rodata_end: VirtAddr,
    /// The guard page, left unmapped (images of 8 pages and more).
    pub guard: Option<VirtAddr>,
}

impl Image {
    /// The layout of a `kernel_pages`-page image.
    pub fn of(kernel_pages: u64) -> Image {
        let at = |n: u64| KERNEL_VIRT_BASE + n * PAGE_SIZE;
        let text = (kernel_pages / 2).max(1);
        Image {
            text_end: at(text),
            rodata_end: at((kernel_pages * 3 / 4).max(text)),
            // As in the linker script, the boot stack follows its guard: the guard is
            // never the image's last page (an 8-page image's would be, at 7/8).
            guard: (kernel_pages >= 8).then(|| at((kernel_pages * 7 / 8).min(kernel_pages - 2))),
        }
    }
}

/// Build the model's dom0, run the takeover planner against it, then map the rest of the
/// direct map with plain stores (the eager direct map), and keep the result.
pub fn take_over(c: &Case, module_space_min: u64) -> Done {
    take_over_with_holes(c, module_space_min, &[])
}

/// [`take_over`] with holes in the p2m: `holes` read as `INVALID_P2M_ENTRY` (!0), as
/// Xen's p2m has for frames a domain does not have.
pub fn take_over_with_holes(c: &Case, module_space_min: u64, holes: &[Pfn]) -> Done {
    let mut done = take_over_only(c, module_space_min, holes);
    if let Ok(out) = &done.out {
        let m = RefCell::new(done.m);
        let mut bm = Bitmaps::new(c.nr_pages);
        let mut frames = bm.allocator(out, c.nr_pages);
        let mut dm = direct_map(out, c.nr_pages, PtWrite::Stores);
        let mut env = ModelDirect {
            m: &m,
            p2m: &done.d.p2m,
            holes,
        };
        dm.map_all(&mut frames, &mut env, &mut Queued::new(&m))
            .unwrap_or_else(|e| panic!("mapping the rest of the direct map: {e:?}"));
        done.m = m.into_inner();
        done.grown = Some(dm.stats);
    }
    done
}

/// The takeover alone: the direct map holds the start chunks only.
pub fn take_over_on_demand(c: &Case, module_space_min: u64, holes: &[Pfn]) -> Done {
    take_over_only(c, module_space_min, holes)
}

fn take_over_only(c: &Case, module_space_min: u64, holes: &[Pfn]) -> Done {
    let image = Image::of(c.kernel_pages);
    let (model, b) = build_dom0(&Dom0Config {
        nr_pages: c.nr_pages,
        kernel_bytes: c.kernel_pages * PAGE_SIZE,
        initrd_bytes: (c.initrd > 0).then_some(c.initrd),
        mod_start_pfn: c.mod_start_pfn,
        p2m_seed: c.nr_pages ^ c.initrd,
    });
    let pfn_of = |va: u64| Pfn((va - KERNEL_VIRT_BASE.as_u64()) / PAGE_SIZE);
    let pt0 = pfn_of(b.pt_base);
    let d = Dom0 {
        p2m: model.p2m().iter().copied().map(Mfn).collect(),
        kernel_end: VirtAddr::new(b.kernel_end),
        module: b
            .initrd_pfn
            .map(|p| (Pfn(p), Pfn(p + b.mod_len.div_ceil(PAGE_SIZE)))),
        p2m_pfns: (
            pfn_of(b.mfn_list),
            Pfn((b.mfn_list - KERNEL_VIRT_BASE.as_u64() + c.nr_pages * 8).div_ceil(PAGE_SIZE)),
        ),
        mfn_list: VirtAddr::new(b.mfn_list),
        xen_pt: (pt0, pt0 + b.nr_pt_frames),
        boot_end: VirtAddr::new(b.v_end),
        shared_info: Mfn(b.shared_info >> 12),
        start_info: pfn_of(b.start_info),
    };
    assert_eq!(
        model.base(),
        Some(d.p2m[pt0.0 as usize].0),
        "pt_base is the current L4"
    );
    let m = RefCell::new(model);
    let xen_l4 = d.p2m[d.xen_pt.0 .0 as usize];
    let snap =
        snapshot::read(&BootReader { m: &m, d: &d }, xen_l4, d.kernel_end).expect("snapshot");
    assert_eq!(snap.boot_end, d.boot_end);
    let p2m = Holes {
        p2m: GuestP2m {
            m: &m,
            mfn_list: d.mfn_list,
        },
        holes,
    };
    let input = Input {
        nr_pages: c.nr_pages,
        p2m: &p2m,
        kernel_end: d.kernel_end,
        snapshot: &snap,
        xen_l4,
        xen_pt: d.xen_pt,
        p2m_pfns: d.p2m_pfns,
        module: d.module,
        shared_rings: [None, None],
        start_info: d.start_info,
        shared_info: d.shared_info,
        split: c.split,
        module_space_min,
        nx: true,
        image: Some(ImageLayout {
            text_end: image.text_end,
            rodata_end: image.rodata_end,
            guard_pages: image.guard.as_slice(),
            keep: &[],
        }),
    };
    let mut store = ModelDirect {
        m: &m,
        p2m: &d.p2m,
        holes: &[],
    };
    let out = takeover::run(
        &input,
        &mut Queued::new(&m),
        &mut store,
        &mut BootStores { m: &m },
    );
    Done {
        m: m.into_inner(),
        d,
        out,
        grown: None,
    }
}

pub struct NoModules;
impl xenpv_paging::check::Inspect for NoModules {
    fn is_module_table(&self, _: Mfn) -> bool {
        false
    }
    fn first_page_holds(&self, _: Mfn) -> &'static str {
        "something"
    }
}
