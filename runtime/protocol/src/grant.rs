//! Grant tables, version 1: give another domain (or Xen, on our behalf) access to a frame.
//!
//! The table is a run of frames Xen shares with us (`GNTTABOP_setup_table`), mapped at
//! the fixmap's grant slots. An entry is `{flags: u16, domid: u16, frame: u32}`; granting
//! writes domid and frame first and `GTF_permit_access` last (a peer that sees the flag
//! sees the rest); ending access clears the flags with a compare-and-swap that refuses
//! while Xen has marked the entry in use by a peer (`GTF_reading` / `GTF_writing`), as
//! Linux's `gnttab_end_foreign_access_ref_v1` does — the peer's mapping would otherwise
//! outlive our permission.
//!
//! The free list and the entry protocol are pure and host-tested; setup and the
//! grant-table operations are thin hypercall glue.

use core::sync::atomic::{AtomicU16, Ordering};

/// A grant reference: an entry's index in the table, what the peer is told to map.
pub type GrantRef = u32;

/// Entries per frame (v1 entries are 8 bytes: 512).
pub const ENTRIES_PER_FRAME: u32 =
    (xenpv_abi::PAGE_SIZE / size_of::<xenpv_abi::grant::EntryV1>() as u64) as u32;
/// References 0..8 are reserved by convention (0: console, 1: xenstore for a domU's
/// toolstack-set-up rings).
pub const RESERVED: u32 = 8;

pub use xenpv_abi::grant::GrantFlags;

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GntError {
    /// Every reference is in use.
    Exhausted {
        /// References the list hands out (the reserved ones not counted).
        refs: u32,
    },
    /// The reference is not one we handed out (or it was already ended).
    NotGranted(GrantRef),
    /// The peer still uses the grant (flags as Xen left them): access not ended.
    InUse {
        /// The reference.
        gref: GrantRef,
        /// The entry's flags as last read.
        flags: GrantFlags,
    },
    /// A v1 entry holds a 32-bit frame number.
    FrameTooBig(u64),
    /// A grant-table operation's status (`GNTST_*`).
    Status(&'static str, i16),
    /// The hypercall itself failed.
    Xen(&'static str, xenpv_abi::XenError),
    /// Xen offers fewer frames than asked, or the fixmap cannot hold them.
    Frames {
        /// Grant-table frames asked for.
        want: u32,
        /// The most Xen offers or the fixmap holds.
        max: u32,
    },
    /// A mapping made with the grant-mapping slot is still live: unmap it first (the
    /// runtime has one slot for mapping grants back, and Xen must not see it replaced).
    MapSlotBusy,
    /// The entry is still granted or in use by a peer (flags as read): granting it again
    /// would change what the peer maps under its feet, so it is not overwritten.
    EntryInUse {
        /// The entry's flags as read.
        flags: GrantFlags,
    },
    /// The grant table is already set up: a guest has one table (a second would be a
    /// second free list over the same entries).
    AlreadySetUp,
    /// A handle from before the guest resumed in a new domain (its grant table is a new
    /// one; the reference may name someone else's grant now): not used.
    Stale {
        /// The epoch the handle was made in (the current one is later).
        epoch: u32,
    },
}

/// `GNTST_*` names.
pub fn status_name(s: i16) -> &'static str {
    match s {
        0 => "okay",
        -1 => "general error",
        -2 => "bad domain",
        -3 => "bad grant reference",
        -4 => "bad handle",
        -5 => "bad virtual address",
        -6 => "bad device address",
        -7 => "no device space",
        -8 => "permission denied",
        -9 => "bad page",
        -10 => "copy crosses a page boundary",
        -11 => "address too big",
        -12 => "try again",
        _ => "unknown status",
    }
}

impl core::fmt::Display for GntError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            GntError::Exhausted { refs } => write!(f, "all {refs} grant references in use"),
            GntError::NotGranted(r) => write!(f, "grant reference {r} is not granted"),
            GntError::InUse { gref, flags } => write!(
                f,
                "grant reference {gref} still in use by the peer (flags {flags:#x}): access not ended"
            ),
            GntError::FrameTooBig(m) => write!(f, "mfn {m:#x} does not fit a v1 grant entry"),
            GntError::Status(op, s) => write!(f, "{op}: status {s} ({})", status_name(s)),
            GntError::Xen(op, e) => write!(f, "{op}: {e}"),
            GntError::Frames { want, max } => {
                write!(f, "{want} grant-table frames wanted, at most {max}")
            }
            GntError::MapSlotBusy => {
                write!(f, "the grant-mapping slot is in use: unmap that mapping first")
            }
            GntError::EntryInUse { flags } => write!(
                f,
                "grant entry still granted or in use (flags {flags:#x}): not overwritten"
            ),
            GntError::AlreadySetUp => write!(f, "the grant table is already set up"),
            GntError::Stale { epoch } => write!(
                f,
                "grant handle from epoch {epoch}, before a resume in a new domain: not used"
            ),
        }
    }
}

/// Which references are in use: a bitmap (2 KiB for the most the fixmap holds), searched
/// from a rotor, which also catches double frees.
pub struct FreeList {
    refs: u32,
    free: u32,
    rotor: u32,
    used: [u64; MAX_REFS as usize / 64],
}

/// References the fixmap's grant slots can hold.
pub const MAX_REFS: u32 = xenpv_abi::layout::GNTTAB_MAX_FRAMES as u32 * ENTRIES_PER_FRAME;

impl FreeList {
    /// References `RESERVED..refs` free (`refs` at most [`MAX_REFS`]).
    pub fn new(refs: u32) -> Self {
        let refs = refs.clamp(RESERVED, MAX_REFS);
        let mut used = [0u64; MAX_REFS as usize / 64];
        used[0] = (1 << RESERVED) - 1;
        FreeList {
            refs,
            free: refs - RESERVED,
            rotor: RESERVED,
            used,
        }
    }
    /// Every reference free again (but the reserved ones): the table of a new domain,
    /// after a restore, where Xen starts with every entry empty.
    pub fn reset(&mut self) {
        *self = FreeList::new(self.refs);
    }
    /// References free to hand out.
    pub fn free_count(&self) -> usize {
        self.free as usize
    }
    /// A free reference, searched from just past the last one handed out (a freed
    /// reference comes back only after the others).
    pub fn alloc(&mut self) -> Result<GrantRef, GntError> {
        if self.free == 0 {
            return Err(GntError::Exhausted {
                refs: self.refs - RESERVED,
            });
        }
        for k in 0..self.refs {
            let r = (self.rotor + k) % self.refs;
            if !self.is_used(r) {
                self.used[(r / 64) as usize] |= 1 << (r % 64);
                self.free -= 1;
                self.rotor = r + 1;
                return Ok(r);
            }
        }
        unreachable!("free count {} but no free bit", self.free)
    }
    /// Is `r` handed out (or reserved)?
    pub fn is_used(&self, r: GrantRef) -> bool {
        r < self.refs && self.used[(r / 64) as usize] & (1 << (r % 64)) != 0
    }
    /// Give `r` back; refuses a reserved reference, one not handed out, and a double free.
    pub fn free(&mut self, r: GrantRef) -> Result<(), GntError> {
        if r < RESERVED || !self.is_used(r) {
            return Err(GntError::NotGranted(r));
        }
        self.used[(r / 64) as usize] &= !(1 << (r % 64));
        self.free += 1;
        Ok(())
    }
}

/// Pages whose grant a peer kept (ending it was refused), each with its reference, until
/// the peer lets go: as Linux's `gnttab_add_deferred`, [`Deferred::retry`] ends them
/// later and hands the reference and the page back. Bounded: at most `N` (the table's
/// references bound how many can ever be granted); past that a page is counted
/// [`lost`](Deferred::lost) and the caller keeps it out of use forever.
pub struct Deferred<P, const N: usize> {
    kept: heapless::Vec<(GrantRef, P), N>,
    lost: u64,
}

impl<P, const N: usize> Default for Deferred<P, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P, const N: usize> Deferred<P, N> {
    /// Empty.
    pub const fn new() -> Self {
        Deferred {
            kept: heapless::Vec::new(),
            lost: 0,
        }
    }
    /// Keep `page`, granted through `gref`, until its grant can be ended. `Err(page)`
    /// when the list is full: counted lost, and the caller must never free or reuse it.
    pub fn defer(&mut self, gref: GrantRef, page: P) -> Result<(), P> {
        self.kept.push((gref, page)).map_err(|(_, p)| {
            self.lost += 1;
            p
        })
    }
    /// Pages waiting for their peer to let go.
    pub fn len(&self) -> usize {
        self.kept.len()
    }
    /// None waiting.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
    /// Pages that could not be deferred (the list was full): never coming back.
    pub fn lost(&self) -> u64 {
        self.lost
    }
    /// Try to end each kept grant with `end`; each one ended goes to `done` (give the
    /// reference back to the free list and the page to the allocator). One pass, bounded
    /// by the list: how many came back.
    pub fn retry(
        &mut self,
        mut end: impl FnMut(GrantRef) -> Result<(), GntError>,
        mut done: impl FnMut(GrantRef, P),
    ) -> usize {
        let mut back = 0;
        let mut i = 0;
        while i < self.kept.len() {
            if end(self.kept[i].0).is_ok() {
                let (r, p) = self.kept.swap_remove(i);
                done(r, p);
                back += 1;
            } else {
                i += 1;
            }
        }
        back
    }
}

/// The once-per-guest claim on the grant table: the first [`claim`](SetUpOnce::claim)
/// wins, every later one is refused ([`GntError::AlreadySetUp`]) until a failed setup
/// gives it back ([`release`](SetUpOnce::release)). Atomic, so two callers cannot both
/// win.
pub struct SetUpOnce(core::sync::atomic::AtomicBool);

impl Default for SetUpOnce {
    fn default() -> Self {
        Self::new()
    }
}

impl SetUpOnce {
    /// Not claimed.
    pub const fn new() -> Self {
        SetUpOnce(core::sync::atomic::AtomicBool::new(false))
    }
    /// Claim the table; refused once claimed.
    pub fn claim(&self) -> Result<(), GntError> {
        if self.0.swap(true, Ordering::AcqRel) {
            Err(GntError::AlreadySetUp)
        } else {
            Ok(())
        }
    }
    /// Give the claim back (the setup that claimed it failed before making a table).
    pub fn release(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One v1 entry, wherever it lives (the mapped table, or plain memory in tests).
pub struct Entry<'a> {
    /// `flags`: `GTF_*`, written last when granting; Xen sets the in-use bits.
    pub flags: &'a AtomicU16,
    /// `domid`: the domain allowed access.
    pub domid: &'a AtomicU16,
    /// `frame`: the machine frame granted (32 bits in a v1 entry).
    pub frame: &'a core::sync::atomic::AtomicU32,
}

impl Entry<'_> {
    /// Let `domid` access `mfn`: domid and frame first, then the flags. Refused for an
    /// entry still granted, or still marked in use by Xen (`GTF_reading`/`GTF_writing`):
    /// its peer would see the frame change under it.
    pub fn grant(&self, domid: u16, mfn: u64, readonly: bool) -> Result<(), GntError> {
        let frame = u32::try_from(mfn).map_err(|_| GntError::FrameTooBig(mfn))?;
        let flags = GrantFlags::from_bits_retain(self.flags.load(Ordering::Acquire));
        if flags.intersects(GrantFlags::PERMIT_ACCESS | GrantFlags::READING | GrantFlags::WRITING) {
            return Err(GntError::EntryInUse { flags });
        }
        self.domid.store(domid, Ordering::Relaxed);
        self.frame.store(frame, Ordering::Relaxed);
        let mut granted = GrantFlags::PERMIT_ACCESS;
        granted.set(GrantFlags::READONLY, readonly);
        self.flags.store(granted.bits(), Ordering::Release);
        Ok(())
    }

    /// End access unless the peer is using the grant right now.
    pub fn end(&self, gref: GrantRef) -> Result<(), GntError> {
        let mut flags = self.flags.load(Ordering::Acquire);
        loop {
            let seen = GrantFlags::from_bits_retain(flags);
            if seen.intersects(GrantFlags::READING | GrantFlags::WRITING) {
                return Err(GntError::InUse { gref, flags: seen });
            }
            match self
                .flags
                .compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                // Xen changed the flags between our load and the swap: look again.
                Err(now) => flags = now,
            }
        }
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    #[test]
    fn a_reset_frees_every_reference_but_the_reserved() {
        let refs = 2 * ENTRIES_PER_FRAME;
        let mut f = FreeList::new(refs);
        let taken: Vec<_> = (0..300).map(|_| f.alloc().unwrap()).collect();
        assert_eq!(f.free_count(), (refs - RESERVED) as usize - 300);
        f.reset();
        assert_eq!(f.free_count(), (refs - RESERVED) as usize);
        // Every one comes out once again, none of them reserved.
        let mut all: Vec<_> = (0..refs - RESERVED).map(|_| f.alloc().unwrap()).collect();
        all.sort();
        assert_eq!(all, (RESERVED..refs).collect::<Vec<_>>());
        assert!(taken.iter().all(|r| *r >= RESERVED));
        assert!(f.alloc().is_err());
        assert_eq!(
            format!("{}", GntError::Stale { epoch: 2 }),
            "grant handle from epoch 2, before a resume in a new domain: not used"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;
    const GTF_PERMIT_ACCESS: u16 = GrantFlags::PERMIT_ACCESS.bits();
    const GTF_READONLY: u16 = GrantFlags::READONLY.bits();
    const GTF_READING: u16 = GrantFlags::READING.bits();
    const GTF_WRITING: u16 = GrantFlags::WRITING.bits();

    #[test]
    fn references_run_out_with_an_error_and_come_back() {
        let mut f = FreeList::new(ENTRIES_PER_FRAME);
        let mut got = vec![];
        loop {
            match f.alloc() {
                Ok(r) => got.push(r),
                Err(e) => {
                    assert_eq!(e, GntError::Exhausted { refs: 504 });
                    assert!(e.to_string().contains("all 504"));
                    break;
                }
            }
        }
        assert_eq!(got.len(), 504);
        assert!(
            got.iter().all(|&r| (RESERVED..512).contains(&r)),
            "reserved refs never handed out"
        );
        assert_eq!(f.free(got[10]), Ok(()));
        assert_eq!(
            f.free(got[10]),
            Err(GntError::NotGranted(got[10])),
            "double free"
        );
        assert_eq!(f.free(3), Err(GntError::NotGranted(3)), "a reserved ref");
        assert_eq!(f.free(100_000), Err(GntError::NotGranted(100_000)));
        // The rotor moves on, so the freed one comes back once the others are taken.
        assert_eq!(f.alloc(), Ok(got[10]));
        assert!(f.alloc().is_err());
    }

    struct Mem(AtomicU16, AtomicU16, AtomicU32);
    fn mem() -> Mem {
        Mem(AtomicU16::new(0), AtomicU16::new(0), AtomicU32::new(0))
    }
    fn entry(m: &Mem) -> Entry<'_> {
        Entry {
            flags: &m.0,
            domid: &m.1,
            frame: &m.2,
        }
    }

    #[test]
    fn an_entry_is_granted_then_ended_unless_in_use() {
        let m = mem();
        let e = entry(&m);
        e.grant(7, 0x1234, true).unwrap();
        assert_eq!(m.0.load(Ordering::SeqCst), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(
            (m.1.load(Ordering::SeqCst), m.2.load(Ordering::SeqCst)),
            (7, 0x1234)
        );
        // The peer maps it: Xen sets GTF_reading.
        m.0.fetch_or(GTF_READING, Ordering::SeqCst);
        assert_eq!(
            e.end(9),
            Err(GntError::InUse {
                gref: 9,
                flags: GrantFlags::PERMIT_ACCESS | GrantFlags::READONLY | GrantFlags::READING
            })
        );
        assert_ne!(m.0.load(Ordering::SeqCst), 0, "still granted");
        m.0.fetch_and(!GTF_READING, Ordering::SeqCst);
        assert_eq!(e.end(9), Ok(()));
        assert_eq!(m.0.load(Ordering::SeqCst), 0);
        assert_eq!(
            e.grant(1, 1 << 40, false),
            Err(GntError::FrameTooBig(1 << 40))
        );
    }

    #[test]
    fn ending_races_with_a_peer_that_starts_using_the_grant() {
        // A peer thread flips GTF_writing on and off while we try to end access: every
        // attempt either refuses (saw it in use) or clears the flags with nothing set.
        let m = std::sync::Arc::new(mem());
        for _ in 0..200 {
            entry(&m).grant(1, 5, false).unwrap();
            let peer = {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _ = m.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                            (f & GTF_PERMIT_ACCESS != 0).then_some(f | GTF_WRITING)
                        });
                        m.0.fetch_and(!GTF_WRITING, Ordering::SeqCst);
                    }
                })
            };
            loop {
                match entry(&m).end(1) {
                    Ok(()) => break,
                    Err(GntError::InUse { flags, .. }) => {
                        assert!(flags.contains(GrantFlags::WRITING))
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            peer.join().unwrap();
            assert_eq!(m.0.load(Ordering::SeqCst) & GTF_PERMIT_ACCESS, 0);
        }
    }

    #[test]
    fn an_entry_granted_or_in_use_is_not_granted_again() {
        let m = mem();
        let e = entry(&m);
        e.grant(7, 0x1234, false).unwrap();
        // Still granted: a second grant would swap the frame under the peer.
        assert_eq!(
            e.grant(9, 0x5678, true),
            Err(GntError::EntryInUse {
                flags: GrantFlags::PERMIT_ACCESS
            })
        );
        assert_eq!(
            (m.1.load(Ordering::SeqCst), m.2.load(Ordering::SeqCst)),
            (7, 0x1234),
            "domid and frame untouched"
        );
        // Access ended, but Xen still marks the entry in use (a copy or a mapping that
        // has not let go): refused too.
        m.0.store(GTF_WRITING, Ordering::SeqCst);
        assert_eq!(
            e.grant(9, 0x5678, true),
            Err(GntError::EntryInUse {
                flags: GrantFlags::WRITING
            })
        );
        assert_eq!(m.2.load(Ordering::SeqCst), 0x1234);
        m.0.store(0, Ordering::SeqCst);
        assert_eq!(e.grant(9, 0x5678, true), Ok(()));
        assert_eq!(m.2.load(Ordering::SeqCst), 0x5678);
    }

    /// A model of the table a driver sees: entries, the free list and the deferred list;
    /// the "backend" maps entries (GTF_reading) and later lets go.
    struct Model {
        entries: Vec<Mem>,
        free: FreeList,
        deferred: Deferred<u64, 64>,
        pages_back: Vec<u64>,
    }

    impl Model {
        fn new() -> Model {
            Model {
                entries: (0..ENTRIES_PER_FRAME).map(|_| mem()).collect(),
                free: FreeList::new(ENTRIES_PER_FRAME),
                deferred: Deferred::new(),
                pages_back: vec![],
            }
        }
        /// Close: end each grant; the ones refused are deferred with their page.
        fn close(&mut self, granted: Vec<(GrantRef, u64)>) -> usize {
            let mut kept = 0;
            for (r, page) in granted {
                match entry(&self.entries[r as usize]).end(r) {
                    Ok(()) => {
                        self.free.free(r).unwrap();
                        self.pages_back.push(page);
                    }
                    Err(_) => {
                        kept += 1;
                        assert!(self.deferred.defer(r, page).is_ok());
                    }
                }
            }
            kept
        }
        fn retry(&mut self) -> usize {
            let (entries, free, back) = (&self.entries, &mut self.free, &mut self.pages_back);
            self.deferred.retry(
                |r| entry(&entries[r as usize]).end(r),
                |r, page| {
                    free.free(r).unwrap();
                    back.push(page);
                },
            )
        }
    }

    #[test]
    fn grants_a_backend_keeps_come_back_once_it_lets_go() {
        let mut m = Model::new();
        let all = m.free.free_count();
        // Three detach cycles, each granting 10 pages; the backend keeps 4 mapped each time.
        for cycle in 0..3u64 {
            let mut granted = vec![];
            for k in 0..10 {
                let r = m.free.alloc().unwrap();
                entry(&m.entries[r as usize])
                    .grant(1, 100 * cycle + k, false)
                    .unwrap();
                granted.push((r, 100 * cycle + k));
            }
            for &(r, _) in &granted[..4] {
                m.entries[r as usize]
                    .0
                    .fetch_or(GTF_WRITING, Ordering::SeqCst);
            }
            assert_eq!(m.close(granted.clone()), 4);
            // Still mapped: a retry ends none of them.
            assert_eq!(m.retry(), 0);
            assert_eq!(m.deferred.len(), 4 * (cycle as usize + 1));
        }
        assert_eq!(m.free.free_count(), all - 12);
        // The backend unmaps two of the first cycle's pages, then everything.
        for e in &m.entries[8..10] {
            e.0.fetch_and(!GTF_WRITING, Ordering::SeqCst);
        }
        assert_eq!(m.retry(), 2);
        assert_eq!(m.deferred.len(), 10);
        for e in &m.entries {
            e.0.fetch_and(!GTF_WRITING, Ordering::SeqCst);
        }
        assert_eq!(m.retry(), 10);
        assert!(m.deferred.is_empty());
        assert_eq!(
            m.free.free_count(),
            all,
            "every reference back in the free list"
        );
        let mut pages = m.pages_back.clone();
        pages.sort_unstable();
        assert_eq!(pages.len(), 30, "every page back to the allocator");
        pages.dedup();
        assert_eq!(pages.len(), 30, "each once");
        assert_eq!(m.deferred.lost(), 0);
    }

    #[test]
    fn a_full_deferred_list_counts_what_it_cannot_keep() {
        let mut d: Deferred<u8, 2> = Deferred::new();
        assert_eq!(d.defer(8, 1), Ok(()));
        assert_eq!(d.defer(9, 2), Ok(()));
        assert_eq!(d.defer(10, 3), Err(3));
        assert_eq!((d.len(), d.lost()), (2, 1));
    }

    #[test]
    fn the_table_is_set_up_once() {
        let once = SetUpOnce::new();
        assert_eq!(once.claim(), Ok(()));
        assert_eq!(once.claim(), Err(GntError::AlreadySetUp));
        assert!(GntError::AlreadySetUp
            .to_string()
            .contains("already set up"));
        // A setup that failed gives the claim back.
        once.release();
        assert_eq!(once.claim(), Ok(()));
        // Racing threads: exactly one wins.
        let once = std::sync::Arc::new(SetUpOnce::new());
        let wins: usize = (0..8)
            .map(|_| {
                let o = once.clone();
                std::thread::spawn(move || o.claim().is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn statuses_have_names() {
        assert_eq!(status_name(-8), "permission denied");
        assert_eq!(status_name(-99), "unknown status");
        assert!(GntError::Status("GNTTABOP_copy", -8)
            .to_string()
            .contains("permission denied"));
    }
}
