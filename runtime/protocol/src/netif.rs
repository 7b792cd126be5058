//! netif (`xen/include/public/io/netif.h`): the request and response slots of the
//! network rings, and the frontend's bookkeeping of which ids are in flight, which
//! checks every response field the backend writes before anything is used.
//!
//! Buffers are granted once per slot id (persistent grants, as Unikraft does; Mini-OS
//! grants and ends access per packet): TX id `i` always sends from buffer page `i`, RX id
//! `i` always receives into buffer page `i`. A response is accepted only for an id that
//! is in flight (on RX: the id posted in the response's slot), with a status, flags and
//! an offset/length that stay inside its page; anything else is dropped and counted
//! ([`Bad`], [`Counters`]), never followed.
//!
//! ```
//! use xenpv_protocol::netif::*;
//!
//! let mut tx = TxIds::new();
//! let id = tx.take().unwrap();
//! let req = TxRequest { gref: 8, offset: 0, flags: TxFlags::empty(), id, size: 60 };
//! assert_eq!(TxRequest::decode(&req.encode()), req);
//! // The backend answers for that id: done. A second answer for it is refused.
//! assert_eq!(tx.complete(TxResponse { id, status: RSP_OKAY }), Ok(Some(id)));
//! assert_eq!(tx.complete(TxResponse { id, status: RSP_OKAY }), Err(Bad::NotInFlight { id }));
//! ```

use core::mem::{offset_of, size_of};
use xenpv_abi::netif as abi;
pub use xenpv_abi::netif::{
    ExtraFlags, RxFlags, TxFlags, EXTRA_TYPE_GSO, GSO_TYPE_TCPV4, RSP_DROPPED, RSP_ERROR, RSP_NULL,
    RSP_OKAY,
};

/// Slot bytes of the TX ring (the request, 12 bytes, is the larger).
pub const TX_SLOT: usize = size_of::<abi::TxRequest>();
/// Slot bytes of the RX ring (8).
pub const RX_SLOT: usize = size_of::<abi::RxRequest>();
/// Ids of each ring: one per slot (256 in a 4 KiB ring).
pub const IDS: usize = crate::shared_ring::slots(TX_SLOT) as usize;
/// The RX flags this frontend negotiates; any other is refused ([`Bad::Flags`]).
pub const RXF_KNOWN: RxFlags = RxFlags::DATA_VALIDATED
    .union(RxFlags::CSUM_BLANK)
    .union(RxFlags::MORE_DATA)
    .union(RxFlags::EXTRA_INFO);
/// Bytes of a buffer page.
pub const PAGE: u32 = 4096;

/// `N` bytes of `b` from `at` (the slot is at least that long: the callers' arrays are).
fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut v = [0u8; N];
    v.copy_from_slice(&b[at..at + N]);
    v
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(take(b, at))
}
fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// A TX request (`netif_tx_request`, laid out as [`xenpv_abi::netif::TxRequest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRequest {
    /// The grant of the buffer page.
    pub gref: u32,
    /// Where the packet starts in it.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: TxFlags,
    /// Echoed in the response.
    pub id: u16,
    /// Packet bytes.
    pub size: u16,
}

impl TxRequest {
    /// The slot's bytes.
    pub fn encode(&self) -> [u8; TX_SLOT] {
        let mut b = [0u8; TX_SLOT];
        put(
            &mut b,
            offset_of!(abi::TxRequest, gref),
            &self.gref.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::TxRequest, offset),
            &self.offset.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::TxRequest, flags),
            &self.flags.bits().to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::TxRequest, id),
            &self.id.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::TxRequest, size),
            &self.size.to_le_bytes(),
        );
        b
    }
    /// From a slot's bytes (what a backend reads). Unknown flags are kept.
    pub fn decode(b: &[u8; TX_SLOT]) -> Self {
        TxRequest {
            gref: u32::from_le_bytes(take(b, offset_of!(abi::TxRequest, gref))),
            offset: u16_at(b, offset_of!(abi::TxRequest, offset)),
            flags: TxFlags::from_bits_retain(u16_at(b, offset_of!(abi::TxRequest, flags))),
            id: u16_at(b, offset_of!(abi::TxRequest, id)),
            size: u16_at(b, offset_of!(abi::TxRequest, size)),
        }
    }
}

/// A TX response (`netif_tx_response`), copied out of the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxResponse {
    /// The request's id (as the backend wrote it).
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// Bytes of a TX response (4).
const TX_RSP: usize = size_of::<abi::TxResponse>();

impl TxResponse {
    /// From the slot's first 4 bytes.
    pub fn decode(b: &[u8]) -> Self {
        let b: [u8; TX_RSP] = b
            .get(..TX_RSP)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; TX_RSP]);
        TxResponse {
            id: u16_at(&b, offset_of!(abi::TxResponse, id)),
            status: u16_at(&b, offset_of!(abi::TxResponse, status)) as i16,
        }
    }
    /// The slot's bytes (what a backend writes).
    pub fn encode(&self) -> [u8; TX_RSP] {
        let mut b = [0u8; TX_RSP];
        put(
            &mut b,
            offset_of!(abi::TxResponse, id),
            &self.id.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::TxResponse, status),
            &self.status.to_le_bytes(),
        );
        b
    }
}

/// An RX request (`netif_rx_request`): a buffer page offered for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// The grant of the buffer page (the backend copies into it).
    pub gref: u32,
}

impl RxRequest {
    /// The slot's bytes.
    pub fn encode(&self) -> [u8; RX_SLOT] {
        let mut b = [0u8; RX_SLOT];
        put(
            &mut b,
            offset_of!(abi::RxRequest, id),
            &self.id.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::RxRequest, gref),
            &self.gref.to_le_bytes(),
        );
        b
    }
    /// From a slot's bytes (what a backend reads).
    pub fn decode(b: &[u8; RX_SLOT]) -> Self {
        RxRequest {
            id: u16_at(b, offset_of!(abi::RxRequest, id)),
            gref: u32::from_le_bytes(take(b, offset_of!(abi::RxRequest, gref))),
        }
    }
}

/// An RX response (`netif_rx_response`), copied out of the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxResponse {
    /// The request's id (as the backend wrote it).
    pub id: u16,
    /// Where the packet starts in the buffer page.
    pub offset: u16,
    /// `NETRXF_*`, unknown bits kept (they are refused, [`Bad::Flags`]).
    pub flags: RxFlags,
    /// Packet bytes if >= 0, else `NETIF_RSP_*`.
    pub status: i16,
}

/// Bytes of an RX response (8).
const RX_RSP: usize = size_of::<abi::RxResponse>();

impl RxResponse {
    /// From the slot's 8 bytes.
    pub fn decode(b: &[u8]) -> Self {
        let b: [u8; RX_RSP] = b
            .get(..RX_RSP)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; RX_RSP]);
        RxResponse {
            id: u16_at(&b, offset_of!(abi::RxResponse, id)),
            offset: u16_at(&b, offset_of!(abi::RxResponse, offset)),
            flags: RxFlags::from_bits_retain(u16_at(&b, offset_of!(abi::RxResponse, flags))),
            status: u16_at(&b, offset_of!(abi::RxResponse, status)) as i16,
        }
    }
    /// The slot's bytes (what a backend writes).
    pub fn encode(&self) -> [u8; RX_RSP] {
        let mut b = [0u8; RX_RSP];
        put(
            &mut b,
            offset_of!(abi::RxResponse, id),
            &self.id.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::RxResponse, offset),
            &self.offset.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::RxResponse, flags),
            &self.flags.bits().to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(abi::RxResponse, status),
            &self.status.to_le_bytes(),
        );
        b
    }
}

/// An extra-info slot (`netif_extra_info`), as this frontend uses it: segmentation
/// offload (GSO) of a TCP/IPv4 packet into segments of `gso_size` payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub kind: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`, unknown bits kept.
    pub flags: ExtraFlags,
    /// GSO: the payload bytes of each segment (the MSS).
    pub gso_size: u16,
    /// GSO: `XEN_NETIF_GSO_TYPE_*`.
    pub gso_type: u8,
}

/// Bytes of an extra-info slot (8).
const EXTRA: usize = size_of::<abi::ExtraInfo>();
/// Where the GSO size and type are in the slot.
const GSO_SIZE: usize = offset_of!(abi::ExtraInfo, gso.size);
const GSO_TYPE: usize = offset_of!(abi::ExtraInfo, gso.kind);

impl ExtraInfo {
    /// GSO of a TCP/IPv4 packet into `mss`-byte segments, no extra slot after it.
    pub fn gso_tcpv4(mss: u16) -> Self {
        ExtraInfo {
            kind: EXTRA_TYPE_GSO,
            flags: ExtraFlags::empty(),
            gso_size: mss,
            gso_type: GSO_TYPE_TCPV4,
        }
    }
    /// The slot's first 8 bytes.
    pub fn encode(&self) -> [u8; EXTRA] {
        let mut b = [0u8; EXTRA];
        b[offset_of!(abi::ExtraInfo, kind)] = self.kind;
        b[offset_of!(abi::ExtraInfo, flags)] = self.flags.bits();
        put(&mut b, GSO_SIZE, &self.gso_size.to_le_bytes());
        b[GSO_TYPE] = self.gso_type;
        b
    }
    /// From a slot's bytes (at least 8; fewer read as an unknown type).
    pub fn decode(b: &[u8]) -> Self {
        let b: [u8; EXTRA] = b
            .get(..EXTRA)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; EXTRA]);
        ExtraInfo {
            kind: b[offset_of!(abi::ExtraInfo, kind)],
            flags: ExtraFlags::from_bits_retain(b[offset_of!(abi::ExtraInfo, flags)]),
            gso_size: u16_at(&b, GSO_SIZE),
            gso_type: b[GSO_TYPE],
        }
    }
    /// Is this an extra slot a frontend with `feature-gso-tcpv4` accepts: GSO of
    /// TCP/IPv4 with a segment size?
    pub fn check(&self) -> Result<(), Bad> {
        if self.kind == EXTRA_TYPE_GSO && self.gso_type == GSO_TYPE_TCPV4 && self.gso_size > 0 {
            Ok(())
        } else {
            Err(Bad::Extra {
                kind: self.kind,
                gso_type: self.gso_type,
            })
        }
    }
}

/// A response refused: what was wrong with it. The id stays as it was (a refused TX id
/// stays in flight; a refused RX id is given back for reposting, see [`RxIds::receive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// An id past the ring's.
    IdOutOfRange {
        /// The id.
        id: u16,
    },
    /// An id not in flight (never sent, or answered already).
    NotInFlight {
        /// The id.
        id: u16,
    },
    /// A status no response of this ring has.
    Status {
        /// The id.
        id: u16,
        /// The status.
        status: i16,
    },
    /// A packet reaching past its buffer page.
    OutOfPage {
        /// The id.
        id: u16,
        /// Where it starts.
        offset: u16,
        /// Its length.
        len: u16,
    },
    /// Flags for features this frontend did not ask for.
    Flags {
        /// The id.
        id: u16,
        /// The flags.
        flags: RxFlags,
    },
    /// An extra-info slot of a kind this frontend did not ask for.
    Extra {
        /// `XEN_NETIF_EXTRA_TYPE_*`.
        kind: u8,
        /// Its GSO type (meaningful for `kind` 1).
        gso_type: u8,
    },
    /// A packet longer than the frame buffer it is copied into.
    TooLong {
        /// Its bytes so far.
        len: usize,
        /// The buffer's.
        limit: usize,
    },
    /// A packet spread over more slots than any frame needs (or an extra-info chain
    /// that does not end).
    Chain {
        /// The slots seen.
        slots: u32,
    },
}

impl core::fmt::Display for Bad {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Bad::IdOutOfRange { id } => write!(f, "id {id} is not below {IDS}"),
            Bad::NotInFlight { id } => write!(f, "id {id} is not in flight"),
            Bad::Status { id, status } => write!(f, "id {id}: status {status}"),
            Bad::OutOfPage { id, offset, len } => {
                write!(
                    f,
                    "id {id}: {len} bytes at offset {offset} pass the page end"
                )
            }
            Bad::Flags { id, flags } => write!(f, "id {id}: flags {flags:#x} not negotiated"),
            Bad::Extra { kind, gso_type } => {
                write!(
                    f,
                    "extra info type {kind} (gso type {gso_type}) not negotiated"
                )
            }
            Bad::TooLong { len, limit } => {
                write!(f, "a packet of {len} bytes or more, the limit is {limit}")
            }
            Bad::Chain { slots } => write!(f, "a packet over {slots} slots or more"),
        }
    }
}

/// Responses dropped, by reason, and packets the backend failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// [`Bad::IdOutOfRange`] and [`Bad::NotInFlight`].
    pub bad_id: u64,
    /// [`Bad::Status`] (an unknown status).
    pub bad_status: u64,
    /// [`Bad::OutOfPage`].
    pub out_of_page: u64,
    /// [`Bad::Flags`].
    pub bad_flags: u64,
    /// [`Bad::Extra`].
    pub bad_extra: u64,
    /// [`Bad::TooLong`] and [`Bad::Chain`].
    pub too_long: u64,
    /// Packets the backend answered with `RSP_ERROR` or `RSP_DROPPED`.
    pub failed: u64,
}

impl Counters {
    /// Count a refused response.
    pub fn count(&mut self, b: Bad) {
        match b {
            Bad::IdOutOfRange { .. } | Bad::NotInFlight { .. } => self.bad_id += 1,
            Bad::Status { .. } => self.bad_status += 1,
            Bad::OutOfPage { .. } => self.out_of_page += 1,
            Bad::Flags { .. } => self.bad_flags += 1,
            Bad::Extra { .. } => self.bad_extra += 1,
            Bad::TooLong { .. } | Bad::Chain { .. } => self.too_long += 1,
        }
    }
    /// All responses refused.
    pub fn refused(&self) -> u64 {
        self.bad_id
            + self.bad_status
            + self.out_of_page
            + self.bad_flags
            + self.bad_extra
            + self.too_long
    }
}

/// Which of the ring's ids are in flight (a bitset) and which are free (a queue: the
/// id freed longest ago is reused first, so a buffer page the backend has just let go of
/// is the last to be written again).
#[derive(Clone, Debug)]
struct Ids {
    in_flight: [u64; IDS / 64],
    free: heapless::Deque<u16, IDS>,
}

impl Ids {
    fn new() -> Self {
        Ids {
            in_flight: [0; IDS / 64],
            // Lowest id first out.
            free: {
                let mut q = heapless::Deque::new();
                for id in 0..IDS as u16 {
                    let _ = q.push_back(id);
                }
                q
            },
        }
    }
    fn is_free(&self, id: usize) -> bool {
        self.in_flight[id / 64] & (1 << (id % 64)) == 0
    }
    /// The first of `n` consecutive free ids (`first..first + n`, below [`IDS`]), looking
    /// from `from` on and then from 0; `None` if there is no such run.
    fn find_run(&self, n: usize, from: usize) -> Option<u16> {
        if n == 0 || n > self.free.len() {
            return None;
        }
        let from = from % IDS;
        let mut run = 0;
        // From `from` to the end, then from 0 up to `from + n` (a run may start before
        // `from` and end after it); a run never crosses IDS - 1 -> 0.
        for id in (from..IDS).chain(0..(from + n).min(IDS)) {
            if id == 0 {
                run = 0;
            }
            run = if self.is_free(id) { run + 1 } else { 0 };
            if run == n {
                return Some((id + 1 - n) as u16);
            }
        }
        None
    }
    /// Take `first..first + n` (all free: see [`Ids::find_run`]) out of the free queue.
    fn take_run(&mut self, first: u16, n: usize) {
        let run = first as usize..first as usize + n;
        for id in run.clone() {
            self.in_flight[id / 64] |= 1 << (id % 64);
        }
        for _ in 0..self.free.len() {
            if let Some(id) = self.free.pop_front() {
                if !run.contains(&(id as usize)) {
                    // Cannot overflow: one was just taken out.
                    let _ = self.free.push_back(id);
                }
            }
        }
    }
    fn take(&mut self) -> Option<u16> {
        let id = self.free.pop_front()?;
        self.in_flight[id as usize / 64] |= 1 << (id % 64);
        Some(id)
    }
    fn check(&self, id: u16) -> Result<(), Bad> {
        if id as usize >= IDS {
            return Err(Bad::IdOutOfRange { id });
        }
        if self.in_flight[id as usize / 64] & (1 << (id % 64)) == 0 {
            return Err(Bad::NotInFlight { id });
        }
        Ok(())
    }
    fn give_back(&mut self, id: u16) {
        self.in_flight[id as usize / 64] &= !(1 << (id % 64));
        // Cannot overflow: the id was taken from this stack.
        let _ = self.free.push_back(id);
    }
}

/// TX ids: one per buffer page; taken to send, given back by its response. Extra-info
/// slots sent are counted too: each is answered with [`RSP_NULL`] and no id.
#[derive(Clone, Debug)]
pub struct TxIds {
    ids: Ids,
    extras: u32,
    /// Where the next run is looked for: after the last one, so runs go round the ids
    /// as single ids do.
    run_from: usize,
}

impl Default for TxIds {
    fn default() -> Self {
        Self::new()
    }
}

impl TxIds {
    /// All ids free.
    pub fn new() -> Self {
        TxIds {
            ids: Ids::new(),
            extras: 0,
            run_from: 0,
        }
    }
    /// An id (and so a buffer page) to send with; `None` when all are in flight.
    pub fn take(&mut self) -> Option<u16> {
        self.ids.take()
    }
    /// Ids free.
    pub fn free(&self) -> usize {
        self.ids.free.len()
    }
    /// The first of `n` consecutive free ids (`first..first + n`, all below [`IDS`]),
    /// looked for after the last run taken; `None` if there is none now.
    pub fn find_run(&self, n: usize) -> Option<u16> {
        self.ids.find_run(n, self.run_from)
    }
    /// Take the run [`TxIds::find_run`] found: `first..first + n` (ids already in flight
    /// in it are left as they are).
    pub fn take_run(&mut self, first: u16, n: usize) {
        self.ids.take_run(first, n);
        self.run_from = first as usize + n;
    }
    /// Ids in flight.
    pub fn in_flight(&self) -> usize {
        IDS - self.ids.free.len()
    }
    /// An extra-info slot was sent: one [`RSP_NULL`] response is due.
    pub fn sent_extra(&mut self) {
        self.extras += 1;
    }
    /// Check a response: its id, now free again (sent, or failed by the backend: `Ok`
    /// either way, see the status), or `None` for the answer to an extra-info slot. A
    /// bad response changes nothing.
    pub fn complete(&mut self, r: TxResponse) -> Result<Option<u16>, Bad> {
        if r.status == RSP_NULL && self.extras > 0 {
            self.extras -= 1;
            return Ok(None);
        }
        self.ids.check(r.id)?;
        if !matches!(r.status, RSP_OKAY | RSP_ERROR | RSP_DROPPED) {
            return Err(Bad::Status {
                id: r.id,
                status: r.status,
            });
        }
        self.ids.give_back(r.id);
        Ok(Some(r.id))
    }
}

/// A slot of a packet received: in buffer page `id`, `len` bytes from `offset` (checked
/// to stay in the page). Copy it out; the id is free for posting again already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// The buffer page's id.
    pub id: u16,
    /// Where the data starts.
    pub offset: u16,
    /// Its length.
    pub len: u16,
    /// The backend failed this receive (`RSP_ERROR`/`RSP_DROPPED`): no data; count it.
    pub failed: bool,
    /// `NETRXF_*` (only those in [`RXF_KNOWN`]).
    pub flags: RxFlags,
}

/// RX ids: one per buffer page, posted to receive. Each is remembered with the ring
/// slot it was posted in, because the backend answers every request in the response
/// slot of the same index (netback's `xenvif_rx_skb`; Linux's and Mini-OS's netfront
/// rely on it) and an extra-info response carries no id: whatever a response says, the
/// buffer posted in its slot is the one it used up.
#[derive(Clone, Debug)]
pub struct RxIds {
    ids: Ids,
    at_slot: [u16; IDS],
}

impl Default for RxIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RxIds {
    /// All ids free (not posted).
    pub fn new() -> Self {
        RxIds {
            ids: Ids::new(),
            at_slot: [0; IDS],
        }
    }
    /// An id to post a buffer with in ring slot `slot`; `None` when all are posted.
    pub fn post(&mut self, slot: u32) -> Option<u16> {
        let id = self.ids.take()?;
        self.at_slot[slot as usize % IDS] = id;
        Some(id)
    }
    /// Ids posted.
    pub fn posted(&self) -> usize {
        IDS - self.ids.free.len()
    }
    /// The response in ring slot `slot` is consumed (the ring checked that a request
    /// was posted there): the buffer posted with it is free again. Its id.
    pub fn retire(&mut self, slot: u32) -> u16 {
        let id = self.at_slot[slot as usize % IDS];
        let posted = self.ids.check(id).is_ok();
        debug_assert!(posted, "slot {slot} was posted");
        if posted {
            self.ids.give_back(id);
        }
        id
    }
    /// Retire ring slot `slot` and check its data response: the id posted there, a
    /// status, flags and a length inside the page. A bad one says why (the buffer is
    /// free again either way).
    pub fn receive(&mut self, slot: u32, r: RxResponse) -> Result<RxPacket, Bad> {
        let id = self.retire(slot);
        if r.id != id {
            return Err(if r.id as usize >= IDS {
                Bad::IdOutOfRange { id: r.id }
            } else {
                Bad::NotInFlight { id: r.id }
            });
        }
        if !RXF_KNOWN.contains(r.flags) {
            return Err(Bad::Flags { id, flags: r.flags });
        }
        if r.status < 0 {
            return match r.status {
                RSP_ERROR | RSP_DROPPED => Ok(RxPacket {
                    id,
                    offset: 0,
                    len: 0,
                    flags: r.flags,
                    failed: true,
                }),
                status => Err(Bad::Status { id, status }),
            };
        }
        let len = r.status as u16;
        if u32::from(r.offset) + u32::from(len) > PAGE {
            return Err(Bad::OutOfPage {
                id,
                offset: r.offset,
                len,
            });
        }
        Ok(RxPacket {
            id,
            offset: r.offset,
            len,
            flags: r.flags,
            failed: false,
        })
    }
}
