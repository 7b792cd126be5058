//! IPv4 fragments: which frames are fragments ([`fragment`]), and a ledger of what
//! became of them ([`Ledger`]).
//!
//! smoltcp reassembles (feature `proto-ipv4-fragmentation`) in a fixed set of
//! [`REASSEMBLY_SLOTS`] buffers, each growing to at most one datagram (64 KiB), each
//! freed [`REASSEMBLY_TIMEOUT_MS`] after its first fragment if the datagram is not whole
//! by then; a fragment of a new datagram while every slot is taken is dropped. So a
//! flood of incomplete fragments costs at most 16 × 64 KiB and delays other fragmented
//! datagrams by at most the timeout, never the loop (each frame is one bounded step).
//!
//! smoltcp counts none of this, so a [`Stack`](crate::Stack) keeps a ledger beside it:
//! every fragment its device receives goes through [`Ledger::see`] (the stack's ingress
//! looks at every frame before smoltcp does), which mirrors smoltcp's slots (same count,
//! same timeout, same clock) and counts the fragments of datagrams that were completed,
//! expired, or found no slot ([`Stack::frag_counts`](crate::Stack::frag_counts)). It counts payload bytes to decide that a
//! datagram is whole, so overlapping or repeated fragments can make it differ from
//! smoltcp (which tracks holes); it is a count for reports, never a decision.
//!
//! ```
//! use xenpv_net::frag::{Fragment, Ledger};
//! let mut l = Ledger::new();
//! let key = [10, 0, 0, 1, 10, 0, 0, 2, 0, 7, 17];
//! l.see(Fragment { key, offset: 0, len: 1480, more: true }, 0);
//! l.see(Fragment { key, offset: 1480, len: 20, more: false }, 1);
//! assert_eq!((l.counts.seen, l.counts.reassembled, l.counts.dropped), (2, 1, 0));
//! ```

/// Datagrams smoltcp reassembles at once (its `reassembly-buffer-count-16` feature, set
/// in this crate's Cargo.toml and the platform's: keep them equal).
pub const REASSEMBLY_SLOTS: usize = 16;
/// How long a datagram may take to arrive whole, from its first fragment, by default
/// ([`Config::reassembly_timeout`](crate::Config::reassembly_timeout), set on smoltcp's
/// interface). Linux allows 30 s; a short time frees the slots a flood of incomplete
/// fragments takes.
pub const REASSEMBLY_TIMEOUT_MS: u64 = 3_000;

/// What identifies a datagram's fragments: source and destination address,
/// identification (big-endian) and protocol.
pub type Key = [u8; 11];

/// One IPv4 fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Its datagram.
    pub key: Key,
    /// Where its payload goes in the datagram (bytes).
    pub offset: u32,
    /// Payload bytes.
    pub len: u32,
    /// More fragments follow (MF).
    pub more: bool,
}

/// The IPv4 fragment an Ethernet frame carries, if it carries one (MF set or an offset):
/// `None` for anything else, including a frame too short or malformed to say.
pub fn fragment(frame: &[u8]) -> Option<Fragment> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if ihl < 20 || total < ihl || ip.len() < ihl {
        return None;
    }
    let flags = u16::from_be_bytes([ip[6], ip[7]]);
    let more = flags & 0x2000 != 0;
    let offset = u32::from(flags & 0x1fff) * 8;
    if !more && offset == 0 {
        return None;
    }
    let mut key = [0u8; 11];
    key[..8].copy_from_slice(&ip[12..20]);
    key[8..10].copy_from_slice(&ip[4..6]);
    key[10] = ip[9];
    Some(Fragment {
        key,
        offset,
        len: (total - ihl) as u32,
        more,
    })
}

/// Is `frame` an IPv4 fragment with more to follow (MF set)? How the stack tells that
/// smoltcp's fragmenter is still sending a datagram.
pub fn more_fragments(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00])
        && frame.get(14).is_some_and(|v| v >> 4 == 4)
        && frame.get(20).is_some_and(|f| f & 0x20 != 0)
}

/// What the ledger counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Fragments received.
    pub seen: u64,
    /// Datagrams completed from fragments.
    pub reassembled: u64,
    /// Fragments dropped: their datagram was not whole within the timeout, or no slot
    /// was free for it.
    pub dropped: u64,
    /// Of `dropped`, those that found every slot taken.
    pub no_slot: u64,
    /// Datagrams given up at the timeout.
    pub expired: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: Key,
    expires: u64,
    frags: u64,
    bytes: u64,
    total: Option<u64>,
}

/// A ledger's counts and what it holds now (what [`Stack::frag_counts`](crate::Stack::frag_counts)
/// returns; the `net: frags` report line's fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragCounts {
    /// Fragments received.
    pub seen: u64,
    /// Datagrams completed from fragments.
    pub reassembled: u64,
    /// Fragments dropped: their datagram was not whole within the timeout, or no slot
    /// was free for it.
    pub dropped: u64,
    /// Of `dropped`, those that found every slot taken.
    pub no_slot: u64,
    /// Datagrams given up at the timeout.
    pub expired: u64,
    /// Fragments held now, of datagrams not yet whole.
    pub pending: u64,
}

/// smoltcp's reassembly slots, mirrored to count what became of each fragment.
#[derive(Clone, Debug)]
pub struct Ledger {
    slots: [Option<Slot>; REASSEMBLY_SLOTS],
    /// The reassembly timeout (ms), the interface's.
    timeout_ms: u64,
    /// The counts so far.
    pub counts: Counts,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger::new()
    }
}

impl Ledger {
    /// Empty, with the default timeout ([`REASSEMBLY_TIMEOUT_MS`]).
    pub fn new() -> Ledger {
        Ledger::with_timeout(REASSEMBLY_TIMEOUT_MS)
    }

    /// Empty, for an interface whose reassembly timeout is `timeout_ms`.
    pub fn with_timeout(timeout_ms: u64) -> Ledger {
        Ledger {
            slots: [None; REASSEMBLY_SLOTS],
            timeout_ms,
            counts: Counts::default(),
        }
    }

    /// Follow the interface's new reassembly timeout (datagrams already held keep theirs,
    /// as smoltcp's do).
    pub fn set_timeout(&mut self, timeout_ms: u64) {
        self.timeout_ms = timeout_ms;
    }

    /// The counts and the fragments pending, together.
    pub fn frag_counts(&self) -> FragCounts {
        let c = self.counts;
        FragCounts {
            seen: c.seen,
            reassembled: c.reassembled,
            dropped: c.dropped,
            no_slot: c.no_slot,
            expired: c.expired,
            pending: self.pending(),
        }
    }

    /// Free the slots whose time is up at `now` (ms), counting their fragments dropped
    /// (smoltcp frees them at every poll before it takes a frame).
    pub fn expire(&mut self, now: u64) {
        for s in self.slots.iter_mut() {
            if let Some(slot) = s {
                if slot.expires < now {
                    self.counts.dropped += slot.frags;
                    self.counts.expired += 1;
                    *s = None;
                }
            }
        }
    }

    /// A fragment received at `now` (ms).
    pub fn see(&mut self, f: Fragment, now: u64) {
        self.expire(now);
        self.counts.seen += 1;
        let i = match self
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.key == f.key))
        {
            Some(i) => i,
            None => match self.slots.iter().position(Option::is_none) {
                Some(i) => {
                    self.slots[i] = Some(Slot {
                        key: f.key,
                        expires: now.saturating_add(self.timeout_ms),
                        frags: 0,
                        bytes: 0,
                        total: None,
                    });
                    i
                }
                None => {
                    self.counts.dropped += 1;
                    self.counts.no_slot += 1;
                    return;
                }
            },
        };
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        slot.frags += 1;
        slot.bytes += u64::from(f.len);
        if !f.more {
            slot.total = Some(u64::from(f.offset) + u64::from(f.len));
        }
        if slot.total.is_some_and(|t| slot.bytes >= t) {
            self.counts.reassembled += 1;
            self.slots[i] = None;
        }
    }

    /// Fragments held now, of datagrams not yet whole.
    pub fn pending(&self) -> u64 {
        self.slots.iter().flatten().map(|s| s.frags).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// An Ethernet frame with an IPv4 fragment: id, offset (bytes), payload length, MF.
    fn frame(id: u16, offset: u32, len: usize, more: bool) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        let flags = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&flags.to_be_bytes());
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[169, 254, 100, 1]);
        ip[16..20].copy_from_slice(&[169, 254, 100, 2]);
        f
    }

    #[test]
    fn fragments_are_told_from_other_frames() {
        let f = fragment(&frame(7, 1480, 100, true)).unwrap();
        assert_eq!((f.offset, f.len, f.more), (1480, 100, true));
        assert_eq!(&f.key[8..], &[0, 7, 17]);
        assert_eq!(fragment(&frame(7, 2960, 8, false)).unwrap().offset, 2960);
        // Whole datagrams, other protocols, short or malformed frames: none.
        assert_eq!(fragment(&frame(7, 0, 100, false)), None);
        let mut arp = frame(7, 8, 100, true);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(fragment(&arp), None);
        let mut v6 = frame(7, 8, 100, true);
        v6[14] = 0x65;
        assert_eq!(fragment(&v6), None);
        let mut bad = frame(7, 8, 100, true);
        bad[14] = 0x44; // IHL 16
        assert_eq!(fragment(&bad), None);
        for n in 0..34 {
            assert_eq!(fragment(&frame(7, 8, 100, true)[..n]), None, "{n} bytes");
        }
    }

    #[test]
    fn more_fragments_is_the_mf_flag_of_ipv4_only() {
        assert!(more_fragments(&frame(1, 0, 100, true)));
        assert!(more_fragments(&frame(1, 1480, 100, true)));
        assert!(!more_fragments(&frame(1, 1480, 100, false)));
        assert!(!more_fragments(&frame(1, 0, 100, false)));
        let mut arp = frame(1, 0, 100, true);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!more_fragments(&arp));
        assert!(!more_fragments(&frame(1, 0, 100, true)[..20]));
    }

    #[test]
    fn a_big_datagram_in_fragments_is_counted_reassembled() {
        // 65,507 bytes of UDP payload (+8 header) in 1480-byte fragments.
        let mut l = Ledger::new();
        let total = 65_515u32;
        let mut off = 0;
        let mut n = 0;
        while off < total {
            let len = (total - off).min(1480);
            let f = fragment(&frame(1, off, len as usize, off + len < total)).unwrap();
            l.see(f, 10);
            off += len;
            n += 1;
        }
        assert_eq!(n, 45);
        assert_eq!(
            l.counts,
            Counts {
                seen: 45,
                reassembled: 1,
                ..Counts::default()
            }
        );
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn a_flood_of_incomplete_fragments_is_bounded_and_counted_dropped() {
        let mut l = Ledger::new();
        // 10 s of first fragments, each of a new datagram, 1000 a second.
        for i in 0..10_000u64 {
            let f = fragment(&frame(i as u16, 0, 1480, true)).unwrap();
            l.see(f, i);
        }
        assert!(l.pending() <= REASSEMBLY_SLOTS as u64);
        assert_eq!(l.counts.seen, 10_000);
        assert_eq!(l.counts.dropped + l.pending(), 10_000);
        assert!(l.counts.no_slot > 9_000);
        assert_eq!(l.counts.reassembled, 0);
        // After the timeout every slot is free again: a whole datagram gets through.
        l.expire(10_000 + REASSEMBLY_TIMEOUT_MS);
        assert_eq!(l.pending(), 0);
        assert_eq!(l.counts.dropped, 10_000);
        let t = 20_000;
        l.see(fragment(&frame(9, 0, 1480, true)).unwrap(), t);
        l.see(fragment(&frame(9, 1480, 100, false)).unwrap(), t);
        assert_eq!(l.counts.reassembled, 1);
    }

    #[test]
    fn a_shorter_timeout_expires_sooner_and_counts_add_up() {
        let mut l = Ledger::with_timeout(200);
        l.see(fragment(&frame(5, 0, 1480, true)).unwrap(), 1000);
        l.expire(1200);
        assert_eq!(l.frag_counts().pending, 1);
        l.expire(1201);
        assert_eq!(
            l.frag_counts(),
            FragCounts {
                seen: 1,
                dropped: 1,
                expired: 1,
                ..FragCounts::default()
            }
        );
    }

    #[test]
    fn out_of_order_fragments_complete_and_late_ones_expire() {
        let mut l = Ledger::new();
        l.see(fragment(&frame(3, 1480, 100, false)).unwrap(), 0);
        assert_eq!(l.pending(), 1);
        l.see(fragment(&frame(3, 0, 1480, true)).unwrap(), 5);
        assert_eq!((l.counts.reassembled, l.pending()), (1, 0));
        // A datagram whose last fragment comes after the timeout: both dropped, and
        // the late one starts a datagram of its own.
        l.see(fragment(&frame(4, 0, 1480, true)).unwrap(), 100);
        l.see(
            fragment(&frame(4, 1480, 100, false)).unwrap(),
            101 + REASSEMBLY_TIMEOUT_MS,
        );
        assert_eq!((l.counts.dropped, l.counts.expired, l.pending()), (1, 1, 1));
    }
}
