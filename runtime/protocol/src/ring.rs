//! Xen's shared byte rings (the console's `in`/`out`, xenstore's `req`/`rsp`): a
//! power-of-two buffer and free-running 32-bit producer/consumer indices, one side
//! writing each index.
//!
//! The other side's index is untrusted: whatever it holds, these functions only touch
//! `buf[index & (size - 1)]` and refuse (`Corrupt`) when the two indices claim more
//! than `size` bytes in flight. Our own index is kept by the caller, never re-read from
//! shared memory.
//!
//! [`produce`], [`consume`] and [`pending`] are the arithmetic over any [`RingMem`];
//! [`Duplex`] drives both rings of a page through a [`Link`] (the platform's mapped page
//! and event channel, or a model peer in the host tests), with a deadline on every wait.
//! [`CONSOLE_PAGE`] and [`XENSTORE_PAGE`] say where the rings and index words live in
//! the two pages that use them.

use core::mem::offset_of;

/// The ring's bytes.
pub trait RingMem {
    /// Bytes in the ring (a power of two).
    fn size(&self) -> u32;
    /// Byte `i` (< size).
    fn load(&self, i: u32) -> u8;
    /// Set byte `i` (< size) to `b`.
    fn store(&mut self, i: u32, b: u8);
}

/// Why a ring's indices were not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The indices claim `prod - cons` bytes in a ring of `size`.
    Corrupt {
        /// The producer index as read.
        prod: u32,
        /// The consumer index as read.
        cons: u32,
        /// Bytes in the ring.
        size: u32,
    },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let RingError::Corrupt { prod, cons, size } = *self;
        write!(
            f,
            "ring indices corrupt: prod {prod:#x} - cons {cons:#x} = {} bytes in a ring of {size}",
            prod.wrapping_sub(cons)
        )
    }
}

fn used(prod: u32, cons: u32, size: u32) -> Result<u32, RingError> {
    let n = prod.wrapping_sub(cons);
    if n > size {
        Err(RingError::Corrupt { prod, cons, size })
    } else {
        Ok(n)
    }
}

/// We produce: copy as much of `data` as fits. Returns bytes written and our new index.
pub fn produce(
    mem: &mut impl RingMem,
    prod: u32,
    peer_cons: u32,
    data: &[u8],
) -> Result<(usize, u32), RingError> {
    let size = mem.size();
    let room = size - used(prod, peer_cons, size)?;
    let n = (room as usize).min(data.len());
    for (k, &b) in data[..n].iter().enumerate() {
        mem.store(prod.wrapping_add(k as u32) & (size - 1), b);
    }
    Ok((n, prod.wrapping_add(n as u32)))
}

/// We consume: copy what is there (up to `out.len()`). Returns bytes read and our new index.
pub fn consume(
    mem: &impl RingMem,
    cons: u32,
    peer_prod: u32,
    out: &mut [u8],
) -> Result<(usize, u32), RingError> {
    let size = mem.size();
    let avail = used(peer_prod, cons, size)?;
    let n = (avail as usize).min(out.len());
    for (k, b) in out[..n].iter_mut().enumerate() {
        *b = mem.load(cons.wrapping_add(k as u32) & (size - 1));
    }
    Ok((n, cons.wrapping_add(n as u32)))
}

/// Bytes waiting to be consumed, if the indices are sane.
///
/// ```
/// use xenpv_protocol::ring::{pending, RingError};
///
/// assert_eq!(pending(10, 4, 16), Ok(6));
/// assert_eq!(pending(3, u32::MAX - 2, 16), Ok(6)); // the indices wrap
/// assert_eq!(
///     pending(4, 10, 16), // a consumer ahead of the producer
///     Err(RingError::Corrupt { prod: 4, cons: 10, size: 16 })
/// );
/// ```
pub fn pending(prod: u32, cons: u32, size: u32) -> Result<u32, RingError> {
    used(prod, cons, size)
}

/// Index words of a duplex page: ours are written only by us, the peer's only read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Idx {
    /// Our producer index on the ring we write (console `out_prod`, xenstore `req_prod`).
    TxProd,
    /// The peer's consumer index on it.
    TxCons,
    /// Our consumer index on the ring we read (console `in_cons`, xenstore `rsp_cons`).
    RxCons,
    /// The peer's producer index on it.
    RxProd,
}

/// One of a duplex page's two rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The ring we produce on (console `out`, xenstore `req`).
    Tx,
    /// The ring we consume from (console `in`, xenstore `rsp`).
    Rx,
}

/// A shared page with one ring each way, and the event channel that goes with it.
pub trait Link {
    /// Bytes in the ring on `side` (a power of two).
    fn size(&self, side: Side) -> u32;
    /// Read an index word (the peer's may hold anything).
    fn index(&self, i: Idx) -> u32;
    /// Write one of our index words ([`Idx::TxProd`] or [`Idx::RxCons`]).
    fn set_index(&mut self, i: Idx, v: u32);
    /// Byte `i` (< size) of the ring on `side`.
    fn load(&self, side: Side, i: u32) -> u8;
    /// Set byte `i` (< size) of the [`Side::Tx`] ring.
    fn store(&mut self, side: Side, i: u32, b: u8);
    /// Signal the peer.
    fn notify(&mut self);
    /// Block until the peer signals or Xen system time reaches `deadline_ns`.
    fn wait(&mut self, deadline_ns: u64);
    /// Xen system time now, in nanoseconds.
    fn now_ns(&self) -> u64;
    /// The event channel changed (the guest resumed in a new domain, where every port
    /// is new): signal the peer through `port` from now on. A link without a port (a
    /// model) ignores it.
    fn set_port(&mut self, _port: u32) {}
    /// A watch event (or another message the peer sent unasked) was taken off the ring
    /// by whichever call was reading it: a link whose port others also wait on (tasks of
    /// an executor) tells them, since the read consumed the port's signal. A model
    /// ignores it.
    fn message_taken(&mut self) {}
}

struct Half<'a, L: Link>(&'a mut L, Side);

impl<L: Link> RingMem for Half<'_, L> {
    fn size(&self) -> u32 {
        self.0.size(self.1)
    }
    fn load(&self, i: u32) -> u8 {
        self.0.load(self.1, i)
    }
    fn store(&mut self, i: u32, b: u8) {
        self.0.store(self.1, i, b)
    }
}

/// Why a [`Duplex`] transfer stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DuplexError {
    /// The peer's index is corrupt.
    Ring(RingError),
    /// The peer took no more bytes before the deadline; `written` of `len` went out (in
    /// order; none dropped).
    Stalled {
        /// Bytes the peer took.
        written: usize,
        /// Bytes we meant to write.
        len: usize,
    },
    /// Fewer bytes than needed arrived before the deadline.
    TimedOut {
        /// Bytes that arrived (and were consumed).
        got: usize,
        /// Bytes needed.
        want: usize,
    },
}

impl core::fmt::Display for DuplexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DuplexError::Ring(e) => write!(f, "{e}"),
            DuplexError::Stalled { written, len } => {
                write!(f, "peer stalled: {written} of {len} bytes written")
            }
            DuplexError::TimedOut { got, want } => {
                write!(f, "timed out: {got} of {want} bytes received")
            }
        }
    }
}

/// Both rings of a shared page, with our indices kept privately.
pub struct Duplex<L: Link> {
    link: L,
    tx_prod: u32,
    rx_cons: u32,
}

impl<L: Link> Duplex<L> {
    /// Attach to a page whose indices the peer (or toolstack) initialised.
    pub fn new(link: L) -> Self {
        Duplex {
            tx_prod: link.index(Idx::TxProd),
            rx_cons: link.index(Idx::RxCons),
            link,
        }
    }

    /// The link underneath.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// Take the page as a new domain finds it (after a restore, against a new peer):
    /// what the old peer had produced and we had not read is dropped (our consumer index
    /// jumps to its producer's, as Linux's `xb_init_comms` does), and our producer
    /// index is re-read from the page. Returns the bytes dropped.
    pub fn resume_new(&mut self) -> u32 {
        let prod = self.link.index(Idx::RxProd);
        let dropped = prod
            .wrapping_sub(self.rx_cons)
            .min(self.link.size(Side::Rx));
        self.rx_cons = prod;
        self.link.set_index(Idx::RxCons, prod);
        self.tx_prod = self.link.index(Idx::TxProd);
        dropped
    }

    /// Write all of `data`, waiting for room as long as the peer makes progress, until
    /// `timeout_ns` passes without it taking everything.
    pub fn write_all(&mut self, data: &[u8], timeout_ns: u64) -> Result<(), DuplexError> {
        let deadline = self.link.now_ns().saturating_add(timeout_ns);
        let mut done = 0;
        while done < data.len() {
            let cons = self.link.index(Idx::TxCons);
            let (n, prod) = produce(
                &mut Half(&mut self.link, Side::Tx),
                self.tx_prod,
                cons,
                &data[done..],
            )
            .map_err(DuplexError::Ring)?;
            if n > 0 {
                // The bytes before the index that publishes them.
                core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
                self.tx_prod = prod;
                self.link.set_index(Idx::TxProd, prod);
                self.link.notify();
                done += n;
                continue;
            }
            if self.link.now_ns() >= deadline {
                return Err(DuplexError::Stalled {
                    written: done,
                    len: data.len(),
                });
            }
            self.link.wait(deadline);
        }
        Ok(())
    }

    /// What has arrived, up to `out.len()` bytes (0 if nothing); never blocks.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, DuplexError> {
        let prod = self.link.index(Idx::RxProd);
        // The index before the bytes it publishes.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let (n, cons) = consume(&Half(&mut self.link, Side::Rx), self.rx_cons, prod, out)
            .map_err(DuplexError::Ring)?;
        if n > 0 {
            core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
            self.rx_cons = cons;
            self.link.set_index(Idx::RxCons, cons);
            self.link.notify();
        }
        Ok(n)
    }

    /// Fill `out` completely, waiting until `deadline_ns` (absolute).
    pub fn read_exact(&mut self, out: &mut [u8], deadline_ns: u64) -> Result<(), DuplexError> {
        let mut got = 0;
        while got < out.len() {
            let n = self.read(&mut out[got..])?;
            got += n;
            if n == 0 && got < out.len() {
                if self.link.now_ns() >= deadline_ns {
                    return Err(DuplexError::TimedOut {
                        got,
                        want: out.len(),
                    });
                }
                self.link.wait(deadline_ns);
            }
        }
        Ok(())
    }
}

/// Where a shared page keeps its rings and index words (byte offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLayout {
    /// Offset and size of the ring we write.
    pub tx: (usize, u32),
    /// Offset and size of the ring we read.
    pub rx: (usize, u32),
    /// Offsets of TxProd, TxCons, RxCons, RxProd (in [`Idx`] order).
    pub idx: [usize; 4],
}

/// `struct xencons_interface` (io/console.h): `in[1024]`, `out[2048]`, in_cons, in_prod,
/// out_cons, out_prod. We write `out`.
pub const CONSOLE_PAGE: PageLayout = {
    use xenpv_abi::ring::ConsInterface as C;
    PageLayout {
        tx: (offset_of!(C, out), 2048),
        rx: (offset_of!(C, input), 1024),
        idx: [
            offset_of!(C, out_prod),
            offset_of!(C, out_cons),
            offset_of!(C, in_cons),
            offset_of!(C, in_prod),
        ],
    }
};

/// `struct xenstore_domain_interface` (io/xs_wire.h): `req[1024]`, `rsp[1024]`, req_cons,
/// req_prod, rsp_cons, rsp_prod. We write `req`.
pub const XENSTORE_PAGE: PageLayout = {
    use xenpv_abi::ring::XenstoreInterface as X;
    PageLayout {
        tx: (offset_of!(X, req), 1024),
        rx: (offset_of!(X, rsp), 1024),
        idx: [
            offset_of!(X, req_prod),
            offset_of!(X, req_cons),
            offset_of!(X, rsp_cons),
            offset_of!(X, rsp_prod),
        ],
    }
};
