//! The executor: runs of [`MmuOp`]s become batched `mmu_update` / `mmuext_op` hypercalls.
//! Thin on purpose: what to do was decided by a planner.
//!
//! Linux batches the same way (`xen_mc_batch` / `xen_mc_issue` in `arch/x86/xen/multicalls.c`,
//! used by `mmu_pv.c`): a PV guest pays one guest/Xen transition per hypercall, so a whole
//! L1's worth of entries travels in one `mmu_update`.

use crate::ops::{MmuOp, MmuSink};
use xen_sys as xen;
use xenpv_abi::XenError;

/// How batches reach Xen: hypercalls on the live system (the platform crate's transport),
/// the model of Xen's PV MMU in host tests.
/// On failure each says which request failed (updates counted first in the combined call).
pub trait Transport {
    /// `HYPERVISOR_mmu_update(reqs, len, &done, DOMID_SELF)`. Xen stops at the first
    /// refused request; the error gives its index (= requests done).
    fn mmu_update(&mut self, reqs: &[xen::mmu_update]) -> Result<(), (XenError, usize)>;
    /// `HYPERVISOR_mmuext_op(ops, len, &done, DOMID_SELF)`, stopping likewise.
    fn mmuext_op(&mut self, ops: &[xen::mmuext_op]) -> Result<(), (XenError, usize)>;
    /// Both in one multicall, updates first. Xen runs the second call whatever the first
    /// returned, so the executor only lets TLB flushes ride behind updates.
    fn mmu_update_then_ext(
        &mut self,
        reqs: &[xen::mmu_update],
        ops: &[xen::mmuext_op],
    ) -> Result<(), (XenError, usize)>;
}

/// PTE updates per `mmu_update` call (one whole L1 table).
pub const MMU_BATCH: usize = 512;
/// Operations per `mmuext_op` call.
const EXT_BATCH: usize = 64;

/// A refused operation: which one and what Xen said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecError {
    /// The operation Xen refused (the ones before it in its batch took effect).
    pub op: MmuOp,
    /// Xen's errno.
    pub error: XenError,
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Xen refused {:x?}: {}", self.op, self.error)
    }
}

/// The [`MmuSink`] of the live system: queues operations and hands them to a
/// [`Transport`] in as few hypercalls as the order allows.
///
/// - Consecutive [`MmuOp::PtUpdate`]s share one `mmu_update` (up to [`MMU_BATCH`]); other
///   operations share one `mmuext_op` (up to 64).
/// - The plan's order is kept: an `mmuext` operation after queued updates sends them first,
///   except a TLB flush or INVLPG, which rides along in one multicall (running it after a
///   failed update batch is harmless).
/// - Nothing reaches Xen before a batch is full or [`flush`](MmuSink::flush) is called;
///   an executor dropped with operations queued loses them.
///
/// ```
/// use xen_sys as xen;
/// use xenpv_paging::exec::{ExecError, Executor, Transport};
/// use xenpv_paging::ops::{Level, Maddr, Mfn, MmuOp, MmuSink};
/// use xenpv_paging::XenError;
///
/// /// Records the size of every call; refuses the update at `ptr == 0xbad0`.
/// #[derive(Default)]
/// struct Calls(Vec<(&'static str, usize, usize)>);
/// impl Transport for Calls {
///     fn mmu_update(&mut self, reqs: &[xen::mmu_update]) -> Result<(), (XenError, usize)> {
///         self.0.push(("mmu_update", reqs.len(), 0));
///         match reqs.iter().position(|r| r.ptr == 0xbad0) {
///             Some(i) => Err((XenError(-22), i)),
///             None => Ok(()),
///         }
///     }
///     fn mmuext_op(&mut self, ops: &[xen::mmuext_op]) -> Result<(), (XenError, usize)> {
///         self.0.push(("mmuext_op", 0, ops.len()));
///         Ok(())
///     }
///     fn mmu_update_then_ext(
///         &mut self,
///         reqs: &[xen::mmu_update],
///         ops: &[xen::mmuext_op],
///     ) -> Result<(), (XenError, usize)> {
///         self.0.push(("multicall", reqs.len(), ops.len()));
///         Ok(())
///     }
/// }
///
/// let mut x = Executor::new(Calls::default());
/// let update = |slot: u64| MmuOp::PtUpdate { ptr: Maddr(0x7000 + 8 * slot), val: 0 };
///
/// // Three updates are queued, not sent; `flush` sends them in one mmu_update.
/// for slot in 0..3 {
///     x.submit(update(slot)).unwrap();
/// }
/// assert!(x.transport().0.is_empty());
/// x.flush().unwrap();
/// assert_eq!(x.transport().0, [("mmu_update", 3, 0)]);
/// x.flush().unwrap(); // nothing queued: no hypercall
/// assert_eq!(x.hypercalls, 1);
///
/// // A TLB flush rides along with the updates before it, in one multicall...
/// x.submit(update(3)).unwrap();
/// x.submit(MmuOp::TlbFlushLocal).unwrap();
/// x.flush().unwrap();
/// assert_eq!(x.transport().0[1..], [("multicall", 1, 1)]);
/// // ...a pin does not: the updates before it are sent first, on their own.
/// x.submit(update(4)).unwrap();
/// x.submit(MmuOp::Pin { level: Level::L1, mfn: Mfn(7) }).unwrap();
/// assert_eq!(x.transport().0[2..], [("mmu_update", 1, 0)]);
/// x.flush().unwrap();
/// assert_eq!(x.transport().0[3..], [("mmuext_op", 0, 1)]);
/// assert_eq!((x.hypercalls, x.pt_updates, x.multicalls), (4, 5, 1));
///
/// // A refusal names the operation Xen refused.
/// x.submit(update(5)).unwrap();
/// x.submit(MmuOp::PtUpdate { ptr: Maddr(0xbad0), val: 1 }).unwrap();
/// assert_eq!(
///     x.flush(),
///     Err(ExecError { op: MmuOp::PtUpdate { ptr: Maddr(0xbad0), val: 1 }, error: XenError(-22) })
/// );
/// ```
pub struct Executor<T: Transport> {
    transport: T,
    /// Queued PTE updates (one `mmu_update` batch).
    pending: [MmuOp; MMU_BATCH],
    len: usize,
    /// Queued `mmuext` ops; after queued updates only TLB flushes, which then ride in
    /// the same multicall.
    ext: [MmuOp; EXT_BATCH],
    ext_len: usize,
    /// Most operations per hypercall (1 gives the one-update-per-call baseline).
    batch: usize,
    /// Hypercalls issued (a multicall counts once), for the stress and bench figures.
    pub hypercalls: u64,
    /// PTE updates carried by those hypercalls.
    pub pt_updates: u64,
    /// How many of the hypercalls were an update batch with flushes riding along.
    pub multicalls: u64,
}

impl<T: Transport> Executor<T> {
    /// An executor with nothing queued, batching up to [`MMU_BATCH`] operations.
    pub const fn new(transport: T) -> Self {
        Executor {
            transport,
            pending: [MmuOp::TlbFlushLocal; MMU_BATCH],
            len: 0,
            ext: [MmuOp::TlbFlushLocal; EXT_BATCH],
            ext_len: 0,
            batch: MMU_BATCH,
            hypercalls: 0,
            pt_updates: 0,
            multicalls: 0,
        }
    }

    /// The transport (tests look at what the model saw).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// At most `n` (clamped to 1..=512) operations per hypercall from now on (`mmuext`
    /// batches are capped at 64 in any case). Flushes what is queued first.
    pub fn set_batch(&mut self, n: usize) -> Result<(), ExecError> {
        self.flush()?;
        self.batch = n.clamp(1, MMU_BATCH);
        Ok(())
    }
}

fn ext(op: &MmuOp) -> xen::mmuext_op {
    let (cmd, arg1) = match *op {
        MmuOp::ClearPage { mfn } => (xen::MMUEXT_CLEAR_PAGE, mfn.0),
        MmuOp::Pin { level, mfn } => (xen::MMUEXT_PIN_L1_TABLE + level as u32 - 1, mfn.0),
        MmuOp::Unpin { mfn } => (xen::MMUEXT_UNPIN_TABLE, mfn.0),
        MmuOp::NewBaseptr { mfn } => (xen::MMUEXT_NEW_BASEPTR, mfn.0),
        MmuOp::TlbFlushLocal => (xen::MMUEXT_TLB_FLUSH_LOCAL, 0),
        MmuOp::InvlpgLocal { va } => (xen::MMUEXT_INVLPG_LOCAL, va.as_u64()),
        MmuOp::PtUpdate { .. } => unreachable!("PtUpdate travels by mmu_update"),
    };
    xen::mmuext_op {
        cmd,
        arg1: xen::mmuext_op__bindgen_ty_1 { mfn: arg1 },
        arg2: xen::mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    }
}

/// May this mmuext op follow queued updates in one multicall? Only if running it after
/// a failed update batch is harmless.
fn rides_along(op: &MmuOp) -> bool {
    matches!(op, MmuOp::TlbFlushLocal | MmuOp::InvlpgLocal { .. })
}

impl<T: Transport> MmuSink for Executor<T> {
    type Error = ExecError;

    fn submit(&mut self, op: MmuOp) -> Result<(), ExecError> {
        match op {
            MmuOp::PtUpdate { ptr, .. } => {
                // The low bits would select another mmu_update command, which Xen accepts.
                assert!(ptr.0 & 7 == 0, "PtUpdate ptr {ptr:#x} is not 8-aligned");
                if self.ext_len > 0 {
                    self.flush()?; // keep the order: queued ext ops go first
                }
                self.pending[self.len] = op;
                self.len += 1;
                if self.len >= self.batch {
                    self.flush()?;
                }
            }
            _ => {
                if self.len > 0 && !rides_along(&op) {
                    self.flush()?;
                }
                self.ext[self.ext_len] = op;
                self.ext_len += 1;
                if self.ext_len >= self.batch.min(EXT_BATCH) {
                    self.flush()?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExecError> {
        let (n, e) = (self.len, self.ext_len);
        if n == 0 && e == 0 {
            return Ok(());
        }
        self.len = 0;
        self.ext_len = 0;
        self.hypercalls += 1;
        self.pt_updates += n as u64;
        let mut reqs = [xen::mmu_update { ptr: 0, val: 0 }; MMU_BATCH];
        for (r, op) in reqs.iter_mut().zip(&self.pending[..n]) {
            if let MmuOp::PtUpdate { ptr, val } = *op {
                // Low bits of ptr select the command: 0 = MMU_NORMAL_PT_UPDATE.
                *r = xen::mmu_update {
                    ptr: ptr.0 | xen::MMU_NORMAL_PT_UPDATE as u64,
                    val,
                };
            }
        }
        let mut exts = [ext(&MmuOp::TlbFlushLocal); EXT_BATCH];
        for (r, op) in exts.iter_mut().zip(&self.ext[..e]) {
            *r = ext(op);
        }
        let result = match (n, e) {
            (_, 0) => self.transport.mmu_update(&reqs[..n]),
            (0, _) => self.transport.mmuext_op(&exts[..e]),
            _ => {
                self.multicalls += 1;
                self.transport.mmu_update_then_ext(&reqs[..n], &exts[..e])
            }
        };
        result.map_err(|(error, done)| ExecError {
            op: if done < n {
                self.pending[done]
            } else {
                self.ext[(done - n).min(e.saturating_sub(1))]
            },
            error,
        })
    }
}
