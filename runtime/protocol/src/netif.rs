//! netif (`xen/include/public/io/netif.h`): the request and response slots of the
//! network rings, and the frontend's bookkeeping of which ids are in flight, which
//! checks every response field the backend writes before anything is used.
//!
//! Buffers are granted once per slot id (persistent grants, as Unikraft does; Mini-OS
//! grants and ends access per packet): TX id `i` always sends from buffer page `i`, RX id
//! `i` always receives into buffer page `i`. A response is accepted only for an id that
//! is in flight, with a status and an offset/length that stay inside its page; anything
//! else is dropped and counted ([`Bad`], [`Counters`]), never followed.
//!
//! ```
//! use xenpv_protocol::netif::*;
//!
//! let mut tx = TxIds::new();
//! let id = tx.take().unwrap();
//! let req = TxRequest { gref: 8, offset: 0, flags: 0, id, size: 60 };
//! assert_eq!(TxRequest::decode(&req.encode()), req);
//! // The backend answers for that id: done. A second answer for it is refused.
//! assert_eq!(tx.complete(TxResponse { id, status: RSP_OKAY }), Ok(id));
//! assert_eq!(tx.complete(TxResponse { id, status: RSP_OKAY }), Err(Bad::NotInFlight { id }));
//! ```

/// Slot bytes of the TX ring (the request, 12 bytes, is the larger).
pub const TX_SLOT: usize = 12;
/// Slot bytes of the RX ring (8).
pub const RX_SLOT: usize = 8;
/// Ids of each ring: one per slot (256 in a 4 KiB ring).
pub const IDS: usize = crate::shared_ring::slots(TX_SLOT) as usize;
/// The backend could not send the packet (`NETIF_RSP_DROPPED`).
pub const RSP_DROPPED: i16 = -2;
/// The backend failed (`NETIF_RSP_ERROR`).
pub const RSP_ERROR: i16 = -1;
/// Done (`NETIF_RSP_OKAY`).
pub const RSP_OKAY: i16 = 0;
/// The answer to an extra-info slot (`NETIF_RSP_NULL`): we send none.
pub const RSP_NULL: i16 = 1;
/// RX: more data in the next response (`NETRXF_more_data`): not requested (no `feature-sg`).
pub const RXF_MORE_DATA: u16 = 1 << 2;
/// RX: an extra-info slot follows (`NETRXF_extra_info`): not requested (no GSO).
pub const RXF_EXTRA_INFO: u16 = 1 << 3;
/// Bytes of a buffer page.
pub const PAGE: u32 = 4096;

/// A TX request (`netif_tx_request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRequest {
    /// The grant of the buffer page.
    pub gref: u32,
    /// Where the packet starts in it.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Packet bytes.
    pub size: u16,
}

impl TxRequest {
    /// The slot's bytes.
    pub fn encode(&self) -> [u8; TX_SLOT] {
        let mut b = [0u8; TX_SLOT];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4..6].copy_from_slice(&self.offset.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..10].copy_from_slice(&self.id.to_le_bytes());
        b[10..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
    /// From a slot's bytes (what a backend reads).
    pub fn decode(b: &[u8; TX_SLOT]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        TxRequest {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16_at(4),
            flags: u16_at(6),
            id: u16_at(8),
            size: u16_at(10),
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

impl TxResponse {
    /// From the slot's first 4 bytes.
    pub fn decode(b: &[u8]) -> Self {
        let b: [u8; 4] = b
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; 4]);
        TxResponse {
            id: u16::from_le_bytes([b[0], b[1]]),
            status: i16::from_le_bytes([b[2], b[3]]),
        }
    }
    /// The slot's bytes (what a backend writes).
    pub fn encode(&self) -> [u8; 4] {
        let mut b = [0u8; 4];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.to_le_bytes());
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
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[4..8].copy_from_slice(&self.gref.to_le_bytes());
        b
    }
    /// From a slot's bytes (what a backend reads).
    pub fn decode(b: &[u8; RX_SLOT]) -> Self {
        RxRequest {
            id: u16::from_le_bytes([b[0], b[1]]),
            gref: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
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
    /// `NETRXF_*`.
    pub flags: u16,
    /// Packet bytes if >= 0, else `NETIF_RSP_*`.
    pub status: i16,
}

impl RxResponse {
    /// From the slot's 8 bytes.
    pub fn decode(b: &[u8]) -> Self {
        let b: [u8; 8] = b
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; 8]);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        RxResponse {
            id: u16_at(0),
            offset: u16_at(2),
            flags: u16_at(4),
            status: u16_at(6) as i16,
        }
    }
    /// The slot's bytes (what a backend writes).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..6].copy_from_slice(&self.flags.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_le_bytes());
        b
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
        flags: u16,
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
        }
    }
    /// All responses refused.
    pub fn refused(&self) -> u64 {
        self.bad_id + self.bad_status + self.out_of_page + self.bad_flags
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

/// TX ids: one per buffer page; taken to send, given back by its response.
#[derive(Clone, Debug)]
pub struct TxIds(Ids);

impl Default for TxIds {
    fn default() -> Self {
        Self::new()
    }
}

impl TxIds {
    /// All ids free.
    pub fn new() -> Self {
        TxIds(Ids::new())
    }
    /// An id (and so a buffer page) to send with; `None` when all are in flight.
    pub fn take(&mut self) -> Option<u16> {
        self.0.take()
    }
    /// Ids in flight.
    pub fn in_flight(&self) -> usize {
        IDS - self.0.free.len()
    }
    /// Check a response: its id, now free again (sent, or failed by the backend:
    /// `Ok` either way, see the status). A bad response changes nothing.
    pub fn complete(&mut self, r: TxResponse) -> Result<u16, Bad> {
        self.0.check(r.id)?;
        if !matches!(r.status, RSP_OKAY | RSP_ERROR | RSP_DROPPED) {
            return Err(Bad::Status {
                id: r.id,
                status: r.status,
            });
        }
        self.0.give_back(r.id);
        Ok(r.id)
    }
}

/// A packet received: in buffer page `id`, `len` bytes from `offset` (checked to stay in
/// the page). Copy it out, then post the id again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// The buffer page's id.
    pub id: u16,
    /// Where the packet starts.
    pub offset: u16,
    /// Its length.
    pub len: u16,
    /// The backend failed this receive (`RSP_ERROR`/`RSP_DROPPED`): no data; count it
    /// and post the id again.
    pub failed: bool,
    /// `NETRXF_data_validated` / `csum_blank`: the checksum was checked or is blank.
    pub flags: u16,
}

/// RX ids: one per buffer page; posted to receive, returned by its response.
#[derive(Clone, Debug)]
pub struct RxIds(Ids);

impl Default for RxIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RxIds {
    /// All ids free (not posted).
    pub fn new() -> Self {
        RxIds(Ids::new())
    }
    /// An id to post a buffer with; `None` when all are posted.
    pub fn take(&mut self) -> Option<u16> {
        self.0.take()
    }
    /// Ids posted.
    pub fn posted(&self) -> usize {
        IDS - self.0.free.len()
    }
    /// Check a response. A good one (or a failed receive, [`RxPacket::failed`]) returns
    /// its id to the free ids (post it again). A bad one with a posted id also frees the id, since the
    /// backend is done with that slot, and says why; an unknown id changes nothing.
    pub fn receive(&mut self, r: RxResponse) -> Result<RxPacket, Bad> {
        self.0.check(r.id)?;
        self.0.give_back(r.id);
        let id = r.id;
        if r.flags & (RXF_MORE_DATA | RXF_EXTRA_INFO) != 0 {
            return Err(Bad::Flags { id, flags: r.flags });
        }
        if r.status < 0 {
            return match r.status {
                RSP_ERROR | RSP_DROPPED => Ok(RxPacket {
                    id,
                    offset: 0,
                    len: 0,
                    flags: 0,
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
