//! The frontend half of a `ring.h` request/response ring (netif, blkif): one shared page
//! with four index words and fixed-size slots, requests produced by us and responses by
//! the backend.
//!
//! Layout (`xen/include/public/io/ring.h`, `DEFINE_RING_TYPES`): `req_prod`, `req_event`,
//! `rsp_prod`, `rsp_event` (u32 each), padding to byte 64, then the slots. Slots are the
//! size of the larger of request and response; their number is the largest power of two
//! that fits the rest of the page.
//!
//! The backend's words are hostile: `rsp_prod` is read once per check, and a value that
//! claims more responses than requests outstanding is refused (`Corrupt`), never
//! followed; `req_event` only decides whether to notify. Our own indices live here, never
//! re-read from the page. Notification follows `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` and
//! `RING_FINAL_CHECK_FOR_RESPONSES`.
//!
//! ```
//! use xenpv_protocol::shared_ring::{FrontRing, PageMem, slots};
//!
//! let mut page = [0u8; 4096];
//! let mut r = FrontRing::new(12, &mut page[..]); // netif TX: 12-byte slots
//! assert_eq!(slots(12), 256);
//! assert_eq!(r.free(), 256);
//! r.put(&mut page[..], &[1; 12]).unwrap();
//! assert!(r.push(&mut page[..]), "the backend asked to be told (req_event = 1)");
//! assert_eq!(r.pending(&page[..]), Ok(0), "no response yet");
//! ```

use core::sync::atomic::{fence, Ordering};

use core::mem::{offset_of, size_of};
use xenpv_abi::ring::SringHeader;

/// Where the slots start (after `struct __name##_sring`'s 64-byte header).
pub const SLOTS_AT: usize = size_of::<SringHeader>();
const REQ_PROD: usize = offset_of!(SringHeader, req_prod);
const REQ_EVENT: usize = offset_of!(SringHeader, req_event);
const RSP_PROD: usize = offset_of!(SringHeader, rsp_prod);
const RSP_EVENT: usize = offset_of!(SringHeader, rsp_event);

/// Slots of `slot_bytes` in a 4 KiB shared ring page (`__RING_SIZE`).
pub const fn slots(slot_bytes: usize) -> u32 {
    let n = ((4096 - SLOTS_AT) / slot_bytes) as u32;
    // The largest power of two not above n.
    1 << (31 - n.leading_zeros())
}

/// The shared page, as the ring reads and writes it (the live system: a mapped page with
/// volatile accesses; the host tests: a byte array).
pub trait PageMem {
    /// The u32 at byte `at` (a volatile read on the live system).
    fn load_u32(&self, at: usize) -> u32;
    /// Set the u32 at byte `at`.
    fn store_u32(&mut self, at: usize, v: u32);
    /// Copy bytes from `at` into `out`.
    fn read(&self, at: usize, out: &mut [u8]);
    /// Copy `data` to `at`.
    fn write(&mut self, at: usize, data: &[u8]);
}

impl PageMem for [u8] {
    fn load_u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self[at..at + 4].try_into().unwrap_or([0; 4]))
    }
    fn store_u32(&mut self, at: usize, v: u32) {
        self[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn read(&self, at: usize, out: &mut [u8]) {
        out.copy_from_slice(&self[at..at + out.len()]);
    }
    fn write(&mut self, at: usize, data: &[u8]) {
        self[at..at + data.len()].copy_from_slice(data);
    }
}

/// Why the ring's indices were not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedRingError {
    /// `rsp_prod` claims more responses than requests are outstanding.
    Corrupt {
        /// `rsp_prod` as read.
        rsp_prod: u32,
        /// Our response consumer index.
        rsp_cons: u32,
        /// Requests pushed and not yet answered.
        outstanding: u32,
    },
    /// No free slot for a request.
    Full,
}

impl core::fmt::Display for SharedRingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SharedRingError::Corrupt {
                rsp_prod,
                rsp_cons,
                outstanding,
            } => write!(
                f,
                "ring corrupt: rsp_prod {rsp_prod:#x} - rsp_cons {rsp_cons:#x} = {} responses, {outstanding} requests outstanding",
                rsp_prod.wrapping_sub(rsp_cons)
            ),
            SharedRingError::Full => write!(f, "ring full"),
        }
    }
}

/// Our side of one ring: our indices and the slot geometry.
#[derive(Clone, Debug)]
pub struct FrontRing {
    slot: usize,
    size: u32,
    req_prod_pvt: u32,
    req_pushed: u32,
    rsp_cons: u32,
}

impl FrontRing {
    /// A ring of `slot_bytes` slots over a page, which is initialised (`SHARED_RING_INIT`:
    /// indices 0, events 1).
    pub fn new(slot_bytes: usize, page: &mut (impl PageMem + ?Sized)) -> Self {
        for (at, v) in [(REQ_PROD, 0), (REQ_EVENT, 1), (RSP_PROD, 0), (RSP_EVENT, 1)] {
            page.store_u32(at, v);
        }
        FrontRing {
            slot: slot_bytes,
            size: slots(slot_bytes),
            req_prod_pvt: 0,
            req_pushed: 0,
            rsp_cons: 0,
        }
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Slots free for requests (none is reused before its response is consumed).
    pub fn free(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    fn at(&self, i: u32) -> usize {
        SLOTS_AT + (i & (self.size - 1)) as usize * self.slot
    }

    /// Write a request into the next slot (not visible to the backend until [`Self::push`]).
    pub fn put(
        &mut self,
        page: &mut (impl PageMem + ?Sized),
        req: &[u8],
    ) -> Result<(), SharedRingError> {
        if self.free() == 0 {
            return Err(SharedRingError::Full);
        }
        debug_assert!(req.len() <= self.slot);
        page.write(self.at(self.req_prod_pvt), &req[..req.len().min(self.slot)]);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publish the requests put so far; whether the backend asked to be notified.
    pub fn push(&mut self, page: &mut (impl PageMem + ?Sized)) -> bool {
        let (old, new) = (self.req_pushed, self.req_prod_pvt);
        // The requests before the index that makes them visible.
        fence(Ordering::Release);
        page.store_u32(REQ_PROD, new);
        self.req_pushed = new;
        // The index before reading req_event (ring.h's mb()).
        fence(Ordering::SeqCst);
        let event = page.load_u32(REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Responses waiting, checked against the requests outstanding.
    pub fn pending(&self, page: &(impl PageMem + ?Sized)) -> Result<u32, SharedRingError> {
        let rsp_prod = page.load_u32(RSP_PROD);
        let n = rsp_prod.wrapping_sub(self.rsp_cons);
        let outstanding = self.req_pushed.wrapping_sub(self.rsp_cons);
        if n > outstanding {
            return Err(SharedRingError::Corrupt {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                outstanding,
            });
        }
        Ok(n)
    }

    /// Copy the next response out (the caller checked [`Self::pending`]); its slot is
    /// free for a request from now on.
    pub fn take(&mut self, page: &(impl PageMem + ?Sized), out: &mut [u8]) {
        // The responses after the index that announced them.
        fence(Ordering::Acquire);
        let n = out.len().min(self.slot);
        page.read(self.at(self.rsp_cons), &mut out[..n]);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
    }

    /// The ring index the next [`Self::put`] writes (a request's slot: backends answer
    /// each request in the response slot of the same index, which is how an RX buffer
    /// consumed by an extra-info response is known).
    pub fn next_req(&self) -> u32 {
        self.req_prod_pvt
    }

    /// The ring index of the next response [`Self::take`] reads.
    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    /// Copy response `ahead` past the next one out without consuming it (the caller
    /// checked that [`Self::pending`] is more than `ahead`).
    pub fn peek(&self, page: &(impl PageMem + ?Sized), ahead: u32, out: &mut [u8]) {
        fence(Ordering::Acquire);
        let n = out.len().min(self.slot);
        page.read(self.at(self.rsp_cons.wrapping_add(ahead)), &mut out[..n]);
    }

    /// Consume `n` responses already copied out with [`Self::peek`] (the caller checked
    /// that at least `n` are pending); their slots are free for requests from now on.
    pub fn skip(&mut self, n: u32) {
        self.rsp_cons = self.rsp_cons.wrapping_add(n);
    }

    /// Ask to be notified of the next response, then look again (closing the race with a
    /// response that came meanwhile): responses waiting.
    pub fn final_check(
        &mut self,
        page: &mut (impl PageMem + ?Sized),
    ) -> Result<u32, SharedRingError> {
        page.store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.pending(page)
    }
}
