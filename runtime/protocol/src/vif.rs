//! A vif's life as an application sees it, as pure values: the counters of its netfront
//! summed over every connection it had ([`Counters`]), and the events of its backend
//! going and coming back ([`VifEvent`]) in a bounded queue ([`EventQueue`]) that drops the
//! oldest and counts what it dropped.

use crate::netfront::Traffic;
use crate::netif;
use crate::xenbus::State;

/// A vif's netfront counters: its traffic, the responses it refused, what it could not
/// send, and the frames dropped for a wrong checksum. [`Counters::add`] sums the counters
/// of successive connections (a vif re-attached gets a fresh netfront).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames sent (a frame over several slots counts once).
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames sent for segmentation by the backend (GSO).
    pub tx_gso: u64,
    /// Frames longer than a page written straight into their TX pages.
    pub tx_in_place: u64,
    /// Frames longer than a page copied over their TX pages.
    pub tx_copied: u64,
    /// Frames received and handed on.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames received over more than one slot.
    pub rx_multi: u64,
    /// Times the backend asked to be notified of new requests.
    pub notifies: u64,
    /// Responses refused (a bad id, status, offset, flag, extra info or length).
    pub refused: u64,
    /// Packets the backend answered with an error or dropped.
    pub failed: u64,
    /// Frames handed to the vif that could not go out (no TX buffer free, or stopped).
    pub tx_dropped: u64,
    /// Received frames dropped for a wrong TCP or UDP checksum.
    pub bad_checksums: u64,
}

impl Counters {
    /// One netfront's counters, from its parts.
    pub fn from_parts(
        traffic: &Traffic,
        ring: &netif::Counters,
        tx_dropped: u64,
        bad_checksums: u64,
    ) -> Counters {
        Counters {
            tx_packets: traffic.tx_packets,
            tx_bytes: traffic.tx_bytes,
            tx_gso: traffic.tx_gso,
            tx_in_place: traffic.tx_in_place,
            tx_copied: traffic.tx_copied,
            rx_packets: traffic.rx_packets,
            rx_bytes: traffic.rx_bytes,
            rx_multi: traffic.rx_multi,
            notifies: traffic.notifies,
            refused: ring.refused(),
            failed: ring.failed,
            tx_dropped,
            bad_checksums,
        }
    }

    /// The sum of `self` and `other`, field by field (saturating).
    pub fn add(&self, other: &Counters) -> Counters {
        let s = |a: u64, b: u64| a.saturating_add(b);
        Counters {
            tx_packets: s(self.tx_packets, other.tx_packets),
            tx_bytes: s(self.tx_bytes, other.tx_bytes),
            tx_gso: s(self.tx_gso, other.tx_gso),
            tx_in_place: s(self.tx_in_place, other.tx_in_place),
            tx_copied: s(self.tx_copied, other.tx_copied),
            rx_packets: s(self.rx_packets, other.rx_packets),
            rx_bytes: s(self.rx_bytes, other.rx_bytes),
            rx_multi: s(self.rx_multi, other.rx_multi),
            notifies: s(self.notifies, other.notifies),
            refused: s(self.refused, other.refused),
            failed: s(self.failed, other.failed),
            tx_dropped: s(self.tx_dropped, other.tx_dropped),
            bad_checksums: s(self.bad_checksums, other.bad_checksums),
        }
    }
}

/// Something that happened to a vif's connection to its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VifEvent {
    /// The vif was closed: its backend went away or broke a ring.
    Detached {
        /// Pages the backend still held at the close (kept granted, never reused).
        pages_kept: u32,
        /// Why: the backend's state, `"Closing"` or `"Closed"`; `"gone"` (its directory
        /// vanished); `"broken"` (it corrupted a ring). See [`detach_reason`].
        backend_state: &'static str,
        /// How long the close took, in milliseconds.
        closed_ms: u64,
    },
    /// A backend came back and the vif is connected again (the same stack).
    Reattached {
        /// How long the handshake took, in milliseconds.
        ms: u64,
    },
    /// The guest was restored or migrated into a new domain: the old backend was
    /// abandoned (no handshake with it), the vif connected to the new domain's backend
    /// under the same stack, and a gratuitous ARP announced its address.
    Resumed {
        /// The new domain's suspend epoch (1 after the first save/restore).
        epoch: u32,
        /// From the wake-up to the vif connected, in milliseconds.
        ms: u64,
    },
}

/// Bytes of a gratuitous ARP frame (Ethernet header and an IPv4 ARP body).
pub const GARP_LEN: usize = 42;

/// A gratuitous ARP announcing `ip` at `mac`, as Linux sends one after a migration
/// (`netdev_notify_peers`): a broadcast ARP request whose sender and target address are
/// both `ip` and whose target hardware address is zero. Switches learn the port the
/// guest is behind now, and peers refresh their caches.
pub fn garp_frame(mac: [u8; 6], ip: [u8; 4]) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Hardware Ethernet (1), protocol IPv4, lengths 6 and 4, operation request (1).
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    // Target hardware address stays zero.
    f[38..42].copy_from_slice(&ip);
    f
}

/// The word a [`VifEvent::Detached`] gives for why: a broken ring wins, then the
/// backend's closing state; a backend whose directory vanished (`None`) is `"gone"`.
pub fn detach_reason(state: Option<State>, broken: bool) -> &'static str {
    match (broken, state) {
        (true, _) => "broken",
        (false, Some(State::Closing)) => "Closing",
        (false, Some(State::Closed)) => "Closed",
        (false, _) => "gone",
    }
}

/// A bounded queue of [`VifEvent`]s: at most `N` (at least 1); a push to a full queue
/// drops the oldest event and counts it ([`EventQueue::lost`]).
#[derive(Debug, Default)]
pub struct EventQueue<const N: usize> {
    events: heapless::Deque<VifEvent, N>,
    lost: u64,
}

impl<const N: usize> EventQueue<N> {
    /// An empty queue.
    pub const fn new() -> Self {
        EventQueue {
            events: heapless::Deque::new(),
            lost: 0,
        }
    }

    /// Queue `ev`, dropping (and counting) the oldest event if the queue is full.
    pub fn push(&mut self, ev: VifEvent) {
        if self.events.is_full() {
            self.events.pop_front();
            self.lost += 1;
        }
        // Room was made above (a zero-capacity queue loses every event).
        if self.events.push_back(ev).is_err() {
            self.lost += 1;
        }
    }

    /// The oldest event queued, taken out.
    pub fn pop(&mut self) -> Option<VifEvent> {
        self.events.pop_front()
    }

    /// Events dropped because the queue was full.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Is no event waiting?
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> Counters {
        Counters {
            tx_packets: n,
            tx_bytes: n * 2,
            tx_gso: n * 3,
            tx_in_place: n * 12,
            tx_copied: n * 13,
            rx_packets: n * 4,
            rx_bytes: n * 5,
            rx_multi: n * 6,
            notifies: n * 7,
            refused: n * 8,
            failed: n * 9,
            tx_dropped: n * 10,
            bad_checksums: n * 11,
        }
    }

    #[test]
    fn counters_add_every_field() {
        assert_eq!(c(1).add(&c(2)), c(3));
        assert_eq!(Counters::default().add(&c(5)), c(5));
        let max = Counters {
            tx_bytes: u64::MAX,
            ..Counters::default()
        };
        assert_eq!(max.add(&c(1)).tx_bytes, u64::MAX);
    }

    #[test]
    fn counters_from_a_netfronts_parts() {
        let t = Traffic {
            tx_packets: 1,
            tx_bytes: 2,
            tx_gso: 3,
            tx_in_place: 12,
            tx_copied: 13,
            rx_packets: 4,
            rx_bytes: 5,
            rx_multi: 6,
            notifies: 7,
        };
        let ring = netif::Counters {
            bad_id: 1,
            bad_status: 2,
            out_of_page: 1,
            bad_flags: 1,
            bad_extra: 1,
            too_long: 2,
            failed: 9,
        };
        assert_eq!(Counters::from_parts(&t, &ring, 10, 11), c(1));
    }

    #[test]
    fn a_gratuitous_arp_as_linux_sends_it() {
        let mac = [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03];
        let f = garp_frame(mac, [10, 0, 0, 2]);
        // The frame Linux's arp_create builds for arp_send(ARPOP_REQUEST, ip, ip, NULL target).
        let want: [u8; GARP_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x16, 0x3e, 0x01, 0x02, 0x03, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x16, 0x3e, 0x01, 0x02, 0x03, 10,
            0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn detach_reasons() {
        assert_eq!(detach_reason(Some(State::Closing), false), "Closing");
        assert_eq!(detach_reason(Some(State::Closed), false), "Closed");
        assert_eq!(detach_reason(None, false), "gone");
        assert_eq!(detach_reason(Some(State::Closed), true), "broken");
        assert_eq!(detach_reason(None, true), "broken");
        assert_eq!(detach_reason(Some(State::Closing), true), "broken");
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let mut q = EventQueue::<2>::new();
        for ms in 1..=3 {
            q.push(VifEvent::Reattached { ms });
        }
        assert_eq!(q.lost(), 1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(VifEvent::Reattached { ms: 2 }));
        assert_eq!(q.pop(), Some(VifEvent::Reattached { ms: 3 }));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }
}
