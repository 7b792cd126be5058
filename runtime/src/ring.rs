//! Xen's shared byte rings (the console's `in`/`out`, xenstore's `req`/`rsp`): a
//! power-of-two buffer and free-running 32-bit producer/consumer indices, one side
//! writing each index.
//!
//! The other side's index is untrusted: whatever it holds, these functions only touch
//! `buf[index & (size - 1)]` and refuse (`Corrupt`) when the two indices claim more
//! than `size` bytes in flight. Our own index is kept by the caller, never re-read from
//! shared memory.

/// The ring's bytes.
pub trait RingMem {
    /// Bytes in the ring (a power of two).
    fn size(&self) -> u32;
    /// Byte `i` (< size).
    fn load(&self, i: u32) -> u8;
    fn store(&mut self, i: u32, b: u8);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The indices claim `prod - cons` bytes in a ring of `size`.
    Corrupt { prod: u32, cons: u32, size: u32 },
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
pub fn pending(prod: u32, cons: u32, size: u32) -> Result<u32, RingError> {
    used(prod, cons, size)
}

/// A ring in ordinary memory (tests, and the model peers).
#[cfg(not(all(feature = "rt", not(test))))]
pub struct VecRing(pub std::vec::Vec<u8>);

#[cfg(not(all(feature = "rt", not(test))))]
extern crate std;

#[cfg(not(all(feature = "rt", not(test))))]
impl RingMem for VecRing {
    fn size(&self) -> u32 {
        self.0.len() as u32
    }
    fn load(&self, i: u32) -> u8 {
        self.0[i as usize]
    }
    fn store(&mut self, i: u32, b: u8) {
        self.0[i as usize] = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bytes_go_round_the_wrap_in_order() {
        let mut r = VecRing(vec![0; 8]);
        let (mut prod, mut cons) = (u32::MAX - 3, u32::MAX - 3); // wraps the u32 too
        let mut out = vec![];
        for chunk in [&b"hello"[..], b"world", b"!!"] {
            let (n, p) = produce(&mut r, prod, cons, chunk).unwrap();
            assert_eq!(n, chunk.len());
            prod = p;
            let mut buf = [0; 8];
            let (m, c) = consume(&r, cons, prod, &mut buf).unwrap();
            out.extend_from_slice(&buf[..m]);
            cons = c;
        }
        assert_eq!(out, b"helloworld!!");
    }

    #[test]
    fn a_full_ring_takes_nothing_more() {
        let mut r = VecRing(vec![0; 4]);
        let (n, prod) = produce(&mut r, 0, 0, b"abcdef").unwrap();
        assert_eq!((n, prod), (4, 4));
        assert_eq!(produce(&mut r, prod, 0, b"x").unwrap(), (0, 4));
    }

    #[test]
    fn corrupt_indices_are_refused_not_followed() {
        let mut r = VecRing(vec![0; 16]);
        // Peer says it consumed bytes we never produced.
        assert_eq!(
            produce(&mut r, 10, 20, b"x"),
            Err(RingError::Corrupt {
                prod: 10,
                cons: 20,
                size: 16
            })
        );
        // Peer claims to have produced more than the ring holds.
        let mut out = [0; 64];
        assert!(consume(&r, 0, 17, &mut out).is_err());
        assert!(RingError::Corrupt {
            prod: 1,
            cons: 2,
            size: 16
        }
        .to_string()
        .contains("ring of 16"));
    }

    proptest! {
        /// Whatever indices a peer writes, nothing outside the ring is touched (VecRing
        /// would panic) and a sane pair never loses or reorders bytes.
        #[test]
        fn any_indices_stay_inside(prod in any::<u32>(), cons in any::<u32>(), len in 0usize..40) {
            let mut r = VecRing(vec![0; 16]);
            let data: Vec<u8> = (0..len as u8).collect();
            let _ = produce(&mut r, prod, cons, &data);
            let mut out = [0; 40];
            let _ = consume(&r, cons, prod, &mut out);
            if let Ok((n, p)) = produce(&mut r, prod, prod.wrapping_sub(3), &data) {
                prop_assert!(n <= 13);
                let (m, _) = consume(&r, prod, p, &mut out).unwrap();
                prop_assert_eq!(&out[..m], &data[..n]);
            }
        }
    }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Tx,
    Rx,
}

/// A shared page with one ring each way, and the event channel that goes with it.
pub trait Link {
    fn size(&self, side: Side) -> u32;
    fn index(&self, i: Idx) -> u32;
    fn set_index(&mut self, i: Idx, v: u32);
    fn load(&self, side: Side, i: u32) -> u8;
    fn store(&mut self, side: Side, i: u32, b: u8);
    /// Signal the peer.
    fn notify(&mut self);
    /// Block until the peer signals or Xen system time reaches `deadline_ns`.
    fn wait(&mut self, deadline_ns: u64);
    fn now_ns(&self) -> u64;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DuplexError {
    Ring(RingError),
    /// The peer took no more bytes before the deadline; `written` of `len` went out (in
    /// order; none dropped).
    Stalled {
        written: usize,
        len: usize,
    },
    /// Fewer bytes than needed arrived before the deadline.
    TimedOut {
        got: usize,
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

    pub fn link(&mut self) -> &mut L {
        &mut self.link
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

/// A model peer for the host tests: the other side of a duplex page in ordinary memory,
/// stepped whenever our side waits or notifies, with knobs for bad behaviour. (Built
/// outside tests too, where it stands in for the live page in type signatures.)
#[cfg(not(all(feature = "rt", not(test))))]
pub mod model {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Behaviour {
        /// Consumes up to `n` bytes of what we wrote per step, replies with what it is given.
        Honest { per_step: usize },
        /// Never consumes or produces.
        Stalled,
        /// Writes garbage into its indices.
        Hostile { tx_cons: u32, rx_prod: u32 },
    }

    pub struct Peer {
        pub tx: Vec<u8>,
        pub rx: Vec<u8>,
        pub idx: [u32; 4],
        pub received: Vec<u8>,
        /// Bytes the peer will send us, in order, as room allows.
        pub to_send: std::collections::VecDeque<u8>,
        pub behaviour: Behaviour,
        pub clock: u64,
        pub notifies: u64,
        pub waits: u64,
    }

    impl Peer {
        pub fn new(tx: usize, rx: usize, behaviour: Behaviour) -> Self {
            Peer {
                tx: vec![0; tx],
                rx: vec![0; rx],
                idx: [0; 4],
                received: vec![],
                to_send: Default::default(),
                behaviour,
                clock: 0,
                notifies: 0,
                waits: 0,
            }
        }
        fn step(&mut self) {
            match self.behaviour {
                Behaviour::Honest { per_step } => {
                    let mut buf = vec![0; per_step];
                    let r = VecRing(self.tx.clone());
                    let (n, c) = consume(&r, self.idx[1], self.idx[0], &mut buf).unwrap();
                    self.received.extend_from_slice(&buf[..n]);
                    self.idx[1] = c;
                    let data: Vec<u8> = self.to_send.iter().copied().collect();
                    let mut r = VecRing(std::mem::take(&mut self.rx));
                    let (m, p) = produce(&mut r, self.idx[3], self.idx[2], &data).unwrap();
                    self.rx = r.0;
                    self.to_send.drain(..m);
                    self.idx[3] = p;
                }
                Behaviour::Stalled => {}
                Behaviour::Hostile { tx_cons, rx_prod } => {
                    self.idx[1] = tx_cons;
                    self.idx[3] = rx_prod;
                }
            }
        }
    }

    fn slot(i: Idx) -> usize {
        i as usize
    }

    impl Link for Peer {
        fn size(&self, side: Side) -> u32 {
            match side {
                Side::Tx => self.tx.len() as u32,
                Side::Rx => self.rx.len() as u32,
            }
        }
        fn index(&self, i: Idx) -> u32 {
            self.idx[slot(i)]
        }
        fn set_index(&mut self, i: Idx, v: u32) {
            assert!(
                matches!(i, Idx::TxProd | Idx::RxCons),
                "we write only our own indices"
            );
            self.idx[slot(i)] = v;
        }
        fn load(&self, side: Side, i: u32) -> u8 {
            match side {
                Side::Tx => self.tx[i as usize],
                Side::Rx => self.rx[i as usize],
            }
        }
        fn store(&mut self, side: Side, i: u32, b: u8) {
            assert_eq!(side, Side::Tx, "we write only the ring we produce on");
            self.tx[i as usize] = b;
        }
        fn notify(&mut self) {
            self.notifies += 1;
        }
        fn wait(&mut self, deadline_ns: u64) {
            self.waits += 1;
            self.clock = (self.clock + 1_000_000).min(deadline_ns.max(self.clock));
            self.step();
        }
        fn now_ns(&self) -> u64 {
            self.clock
        }
    }
}

#[cfg(test)]
mod duplex_tests {
    use super::model::{Behaviour, Peer};
    use super::*;

    #[test]
    fn a_long_burst_arrives_complete_and_in_order_through_a_slow_peer() {
        let mut d = Duplex::new(Peer::new(2048, 1024, Behaviour::Honest { per_step: 100 }));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        d.write_all(&data, 10_000_000_000).unwrap();
        // What is still in the ring arrives on later steps.
        for _ in 0..30 {
            d.link().wait(u64::MAX);
        }
        assert_eq!(d.link().received, data);
        assert!(d.link().waits > 900, "it waited for room, never dropped");
    }

    #[test]
    fn a_stalled_peer_gives_an_error_after_the_deadline_not_a_hang() {
        let mut d = Duplex::new(Peer::new(2048, 1024, Behaviour::Stalled));
        let data = vec![7u8; 5000];
        let e = d.write_all(&data, 50_000_000).unwrap_err();
        assert_eq!(
            e,
            DuplexError::Stalled {
                written: 2048,
                len: 5000
            }
        );
        assert!(d.link().waits <= 51);
        let mut buf = [0; 4];
        assert_eq!(
            d.read_exact(&mut buf, 10_000_000),
            Err(DuplexError::TimedOut { got: 0, want: 4 })
        );
    }

    #[test]
    fn hostile_indices_are_refused_whatever_they_are() {
        for (tx_cons, rx_prod) in [(5000, 0), (u32::MAX, 1 << 31), (3, 2000)] {
            let mut d = Duplex::new(Peer::new(
                2048,
                1024,
                Behaviour::Hostile { tx_cons, rx_prod },
            ));
            let _ = d.write_all(b"hello", 1_000_000); // first write may fit
            d.link().wait(u64::MAX); // the peer scribbles
            let w = d.write_all(&[1; 3000], 10_000_000);
            let mut buf = [0; 64];
            let r = d.read(&mut buf);
            assert!(
                matches!(
                    w,
                    Err(DuplexError::Ring(_)) | Err(DuplexError::Stalled { .. })
                ) || matches!(r, Err(DuplexError::Ring(_))),
                "{tx_cons} {rx_prod}: {w:?} {r:?}"
            );
        }
    }

    #[test]
    fn page_layouts_match_the_headers() {
        // io/console.h: in[1024] out[2048] then in_cons in_prod out_cons out_prod.
        assert_eq!(
            CONSOLE_PAGE.idx,
            [
                1024 + 2048 + 12,
                1024 + 2048 + 8,
                1024 + 2048,
                1024 + 2048 + 4
            ]
        );
        // io/xs_wire.h: req[1024] rsp[1024] then req_cons req_prod rsp_cons rsp_prod.
        assert_eq!(XENSTORE_PAGE.idx, [2048 + 4, 2048, 2048 + 8, 2048 + 12]);
        for l in [CONSOLE_PAGE, XENSTORE_PAGE] {
            assert!(l.tx.1.is_power_of_two() && l.rx.1.is_power_of_two());
            assert!(l.idx.iter().all(|&o| o + 4 <= 4096 && o % 4 == 0));
        }
    }

    #[test]
    fn input_is_read_in_order() {
        let mut p = Peer::new(2048, 16, Behaviour::Honest { per_step: 64 });
        p.to_send
            .extend(b"0123456789abcdefghijklmnopqrstuvwxyz".iter());
        let mut d = Duplex::new(p);
        let mut got = vec![0u8; 36];
        d.read_exact(&mut got, 1_000_000_000).unwrap();
        assert_eq!(&got, b"0123456789abcdefghijklmnopqrstuvwxyz");
    }
}

/// Where a shared page keeps its rings and index words (byte offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLayout {
    pub tx: (usize, u32),
    pub rx: (usize, u32),
    /// Offsets of TxProd, TxCons, RxCons, RxProd.
    pub idx: [usize; 4],
}

/// `struct xencons_interface` (io/console.h): `in[1024]`, `out[2048]`, in_cons, in_prod,
/// out_cons, out_prod. We write `out`.
pub const CONSOLE_PAGE: PageLayout = PageLayout {
    tx: (1024, 2048),
    rx: (0, 1024),
    idx: [3084, 3080, 3072, 3076],
};

/// `struct xenstore_domain_interface` (io/xs_wire.h): `req[1024]`, `rsp[1024]`, req_cons,
/// req_prod, rsp_cons, rsp_prod. We write `req`.
pub const XENSTORE_PAGE: PageLayout = PageLayout {
    tx: (0, 1024),
    rx: (1024, 1024),
    idx: [2052, 2048, 2056, 2060],
};

#[cfg(all(feature = "rt", not(test)))]
pub use live::PageLink;

#[cfg(all(feature = "rt", not(test)))]
mod live {
    use super::{Idx, Link, PageLayout, Side};

    /// A shared ring page mapped at `va` (direct map) and its event channel.
    pub struct PageLink {
        va: u64,
        layout: PageLayout,
        port: crate::evtchn::Port,
    }

    impl PageLink {
        /// # Safety
        /// `va` must map the 4 KiB ring page, RW, for as long as the link is used, and
        /// nothing else in this guest may access it.
        pub unsafe fn new(va: u64, layout: PageLayout, port: crate::evtchn::Port) -> Self {
            PageLink { va, layout, port }
        }
        fn at<T>(&self, off: usize) -> *mut T {
            (self.va + off as u64) as *mut T
        }
        fn byte(&self, side: Side, i: u32) -> *mut u8 {
            let (off, size) = match side {
                Side::Tx => self.layout.tx,
                Side::Rx => self.layout.rx,
            };
            self.at(off + (i % size) as usize)
        }
    }

    fn slot(i: Idx) -> usize {
        i as usize
    }

    // SAFETY (all accesses below): `new`'s contract; offsets come from the layouts above,
    // all inside the page; index words are 4-byte aligned. The peer writes the page at
    // any time, so every access is volatile.
    impl Link for PageLink {
        fn size(&self, side: Side) -> u32 {
            match side {
                Side::Tx => self.layout.tx.1,
                Side::Rx => self.layout.rx.1,
            }
        }
        fn index(&self, i: Idx) -> u32 {
            unsafe { self.at::<u32>(self.layout.idx[slot(i)]).read_volatile() }
        }
        fn set_index(&mut self, i: Idx, v: u32) {
            unsafe { self.at::<u32>(self.layout.idx[slot(i)]).write_volatile(v) }
        }
        fn load(&self, side: Side, i: u32) -> u8 {
            unsafe { self.byte(side, i).read_volatile() }
        }
        fn store(&mut self, side: Side, i: u32, b: u8) {
            unsafe { self.byte(side, i).write_volatile(b) }
        }
        fn notify(&mut self) {
            let _ = crate::evtchn::send(self.port);
        }
        fn wait(&mut self, deadline_ns: u64) {
            let _ = crate::evtchn::wait(&[self.port], deadline_ns);
        }
        fn now_ns(&self) -> u64 {
            crate::time::now_ns()
        }
    }
}
