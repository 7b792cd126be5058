//! blkfront's queue against a model blkback: honest reads and writes of any size through
//! direct and indirect requests, several in flight, sector numbers on the wire, grants
//! made and ended with the access each direction needs; calls refused before the ring;
//! and every hostile backend (wrong or duplicate ids, bad statuses and operations, silence,
//! a corrupt `rsp_prod`, grants kept) ending each call by its deadline with an error,
//! counted, the device usable afterwards where it can be.

use proptest::prelude::*;
use xenpv_protocol::blkfront::{BadKey, Counters, Offer, PageRef, Queue, Shape};
use xenpv_protocol::blkif::{
    OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, OP_WRITE_BARRIER, RSP_EOPNOTSUPP, RSP_ERROR,
};
use xenpv_protocol::block::BlockError;
use xenpv_protocol::shared_ring::PageMem;
use xenpv_testkit::blkback::{Blkback, Mode, Seen, WrongId};

const HANDLE: u16 = 51712;
const SEC: u64 = 1_000_000_000;
const MIB: usize = 1 << 20;

/// Bytes from a seed (splitmix64): random data without a 4 MiB proptest vector.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The library's queue and the model it runs against.
struct Dev {
    bb: Blkback,
    q: Queue,
}

impl Dev {
    /// A queue with the shape a driver with 1024 data pages would choose (at least 4
    /// requests in flight).
    fn new(bb: Blkback) -> Dev {
        let shape = Shape::for_offer(&bb.offer(), 1024, 4);
        Dev::with_shape(bb, shape)
    }
    fn with_shape(mut bb: Blkback, shape: Shape) -> Dev {
        let offer = bb.offer();
        let q = Queue::new(&mut bb.ring, offer, shape, HANDLE);
        Dev { bb, q }
    }
    /// A disk of `len` bytes with this sector size, indirect segments and flush.
    fn disk(len: usize, sector_size: u32, max_indirect: u32) -> Dev {
        let mut bb = Blkback::new(vec![0; len], sector_size);
        bb.max_indirect = max_indirect;
        Dev::new(bb)
    }
    fn deadline(&self) -> u64 {
        self.bb.now + SEC
    }
    fn read(&mut self, sector: u64, len: usize) -> Result<Vec<u8>, BlockError> {
        let mut buf = vec![0u8; len];
        let d = self.deadline();
        self.q.read(&mut self.bb, sector, &mut buf, d)?;
        Ok(buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        let d = self.deadline();
        self.q.write(&mut self.bb, sector, data, d)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        let d = self.deadline();
        self.q.flush(&mut self.bb, d)
    }
    /// Disk bytes of device sectors `sector..` (`len` bytes).
    fn on_disk(&self, sector: u64, len: usize) -> &[u8] {
        let at = sector as usize * self.bb.sector_size as usize;
        &self.bb.disk[at..at + len]
    }
    /// Nothing left over: no grant live, nothing in flight, no request refused by the
    /// backend's checks, no frontend misuse of the pages or grants.
    fn assert_clean(&self) {
        assert_eq!(self.bb.live_grants(), 0, "every grant ended");
        assert_eq!(self.q.in_flight(), 0);
        assert_eq!(self.bb.refused, vec![], "blkback's checks passed");
        assert_eq!(self.bb.bad_end_grants, 0, "no grant ended twice");
        assert_eq!(
            self.bb.copies_while_granted, 0,
            "no page touched while granted"
        );
        assert_eq!(self.q.traffic().notifies, self.bb.notifies);
    }
}

/// The requests of one call (the log from `from` on).
fn since(bb: &Blkback, from: usize) -> &[Seen] {
    &bb.log[from..]
}

/// The requests cover `sector..sector + n512` in order, each its operation.
fn assert_covers(reqs: &[Seen], op: u8, sector: u64, n512: u64) {
    let mut at = sector;
    for r in reqs {
        assert_eq!(r.operation, op);
        assert_eq!(r.sector, at, "requests in order, back to back");
        assert_eq!(r.handle, HANDLE);
        at += r.sectors();
    }
    assert_eq!(at, sector + n512);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any whole number of sectors from 512 B to 4 MiB, anywhere on the disk, written and
    /// read back through direct requests (no indirect offered) or indirect ones of 32 or
    /// 256 segments: the disk holds the data, the read returns it, the requests on the
    /// wire cover exactly the range, and nothing is left over.
    #[test]
    fn honest_writes_and_reads_round_trip(
        max_indirect in prop_oneof![Just(0u32), Just(32), Just(256)],
        sectors in prop_oneof![1usize..=64, 64usize..=8192],
        place in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        let mut d = Dev::disk(8 * MIB, 512, max_indirect);
        let disk_sectors = (8 * MIB / 512) as u64;
        let start = ((disk_sectors - sectors as u64) as f64 * place) as u64;
        let data = bytes(seed, sectors * 512);
        let per_request = d.q.request_bytes() / 512;
        d.write(start, &data).unwrap();
        prop_assert!(d.on_disk(start, data.len()) == &data[..], "the disk holds the data");
        let writes = d.bb.log.len();
        assert_covers(since(&d.bb, 0), OP_WRITE, start, sectors as u64);
        prop_assert_eq!(writes, sectors.div_ceil(per_request));
        let back = d.read(start, data.len()).unwrap();
        prop_assert!(back == data, "read back what was written");
        assert_covers(since(&d.bb, writes), OP_READ, start, sectors as u64);
        for r in &d.bb.log {
            let segs = r.segments.len();
            prop_assert_eq!(usize::from(r.nr_segments), segs);
            prop_assert!(segs <= d.q.request_bytes() / 4096);
            // Direct up to 11 segments, indirect beyond (and only when offered).
            prop_assert_eq!(r.indirect, segs > 11);
            prop_assert!(max_indirect != 0 || segs <= 11);
            // Whole pages but the last, which starts at its sector 0.
            prop_assert!(r.segments.iter().all(|s| s.first_sect == 0));
            prop_assert!(r.segments[..segs - 1].iter().all(|s| s.last_sect == 7));
        }
        prop_assert_eq!(d.q.counters(), Counters::default());
        let t = d.q.traffic();
        prop_assert_eq!((t.read_bytes, t.written_bytes), (data.len() as u64, data.len() as u64));
        prop_assert_eq!(t.requests, d.bb.log.len() as u64);
        d.assert_clean();
    }
}

#[test]
fn a_mebibyte_is_one_indirect_request_or_many_direct_ones() {
    let data = bytes(1, MIB);
    // (max-indirect-segments, requests, segments each, indirect)
    for (max_indirect, n, segs, indirect) in [
        (256, 1, 256, true),
        (1000, 1, 256, true), // capped at 256 segments (one indirect page)
        (32, 8, 32, true),
        (0, 24, 11, false), // 23 of 11 and one of 3
        (11, 24, 11, false),
    ] {
        let mut d = Dev::disk(4 * MIB, 512, max_indirect);
        d.write(2048, &data).unwrap();
        assert_eq!(d.read(2048, MIB).unwrap(), data);
        assert_eq!(d.bb.log.len(), 2 * n, "max_indirect {max_indirect}");
        for r in &d.bb.log {
            assert_eq!(r.indirect, indirect, "max_indirect {max_indirect}");
            assert!(r.segments.len() <= segs);
            assert_eq!(r.indirect_grants.len(), usize::from(indirect));
        }
        assert_eq!(d.bb.log[0].segments.len(), segs);
        d.assert_clean();
    }
    // With indirect requests offered, 11 pages still go direct and 12 indirect.
    let mut d = Dev::disk(4 * MIB, 512, 256);
    d.write(0, &data[..11 * 4096]).unwrap();
    d.write(0, &data[..12 * 4096]).unwrap();
    assert!(!d.bb.log[0].indirect && d.bb.log[0].nr_segments == 11);
    assert!(d.bb.log[1].indirect && d.bb.log[1].nr_segments == 12);
    d.assert_clean();
}

#[test]
fn several_requests_are_in_flight_at_once_and_never_more_than_the_ids() {
    // No indirect requests: 1 MiB is 24 requests, all pushed before the first wait.
    let mut d = Dev::disk(4 * MIB, 512, 0);
    d.write(0, &bytes(2, MIB)).unwrap();
    assert_eq!(d.bb.max_outstanding, 24);
    assert!(
        d.bb.notifies < d.bb.log.len() as u64,
        "one notification for a batch"
    );
    // Four ids of 11 pages: four at a time, the rest as responses free ids, the backend
    // slow enough that the queue refills while requests are outstanding.
    let mut bb = Blkback::new(vec![0; 4 * MIB], 512);
    bb.mode = Mode::Slow { every: 2 };
    let mut d = Dev::with_shape(
        bb,
        Shape {
            ids: 4,
            segments: 11,
        },
    );
    let data = bytes(3, MIB);
    d.write(100, &data).unwrap();
    assert_eq!(d.read(100, MIB).unwrap(), data);
    assert_eq!(d.bb.max_outstanding, 4);
    assert!(d.bb.log.iter().skip(4).any(|r| r.outstanding > 1));
    assert!(
        d.bb.now > 0 && d.bb.now < SEC,
        "the clock ran, short of the deadline"
    );
    d.assert_clean();
}

#[test]
fn sectors_on_the_wire_are_512_byte_units_on_a_4096_byte_disk() {
    let mut d = Dev::disk(MIB, 4096, 0);
    let g = d.q.geometry();
    assert_eq!((g.sector_size, g.sectors), (4096, 256));
    let last = g.sectors - 1;
    let (a, b, c) = (bytes(4, 4096), bytes(5, 4096), bytes(6, 3 * 4096));
    d.write(0, &a).unwrap();
    d.write(last, &b).unwrap();
    d.write(100, &c).unwrap();
    assert_eq!(d.on_disk(last, 4096), &b[..]);
    assert_eq!(d.on_disk(100, 3 * 4096), &c[..]);
    assert_eq!(d.read(0, 4096).unwrap(), a);
    assert_eq!(d.read(last, 4096).unwrap(), b);
    assert_eq!(d.read(100, 3 * 4096).unwrap(), c);
    let sectors: Vec<u64> = d.bb.log.iter().map(|r| r.sector).collect();
    assert_eq!(sectors, [0, 255 * 8, 800, 0, 255 * 8, 800]);
    for r in &d.bb.log {
        assert!(r
            .segments
            .iter()
            .all(|s| (s.first_sect, s.last_sect) == (0, 7)));
    }
    // The whole disk in one call, and nothing past it.
    assert_eq!(d.read(0, MIB).unwrap().len(), MIB);
    assert_eq!(
        d.read(last, 2 * 4096),
        Err(BlockError::OutOfRange {
            sector: 255,
            count: 2,
            sectors: 256
        })
    );
    d.assert_clean();
}

#[test]
fn the_first_and_last_sectors_of_a_512_byte_disk() {
    let mut d = Dev::disk(64 * 1024, 512, 0);
    assert_eq!(d.q.geometry().sectors, 128);
    d.write(127, &[0xaa; 512]).unwrap();
    d.write(0, &[0x55; 512]).unwrap();
    let s = &d.bb.log[0];
    assert_eq!((s.sector, s.segments.len()), (127, 1));
    assert_eq!((s.segments[0].first_sect, s.segments[0].last_sect), (0, 0));
    let all = d.read(0, 64 * 1024).unwrap();
    assert_eq!(&all[..512], &[0x55; 512][..]);
    assert_eq!(&all[127 * 512..], &[0xaa; 512][..]);
    assert!(all[512..127 * 512].iter().all(|&b| b == 0));
    // 7 sectors: one page, sectors 0..=6 of it.
    d.write(3, &[1; 7 * 512]).unwrap();
    let s = d.bb.log.last().unwrap();
    assert_eq!((s.sector, s.segments[0].last_sect), (3, 6));
    d.assert_clean();
}

#[test]
fn bad_calls_are_refused_before_anything_reaches_the_ring() {
    let mut d = Dev::disk(64 * 1024, 512, 0);
    let oor = |sector, count| BlockError::OutOfRange {
        sector,
        count,
        sectors: 128,
    };
    assert_eq!(d.read(128, 512), Err(oor(128, 1)));
    assert_eq!(d.read(127, 1024), Err(oor(127, 2)));
    assert_eq!(d.write(u64::MAX, &[0; 512]), Err(oor(u64::MAX, 1)));
    assert_eq!(d.read(0, 65 * 1024), Err(oor(0, 130)));
    let unaligned = |len| BlockError::Unaligned {
        len,
        sector_size: 512,
    };
    assert_eq!(d.read(0, 100), Err(unaligned(100)));
    assert_eq!(d.write(0, &[0; 513]), Err(unaligned(513)));
    // Nothing to do: done, and nothing sent either.
    assert_eq!(d.read(0, 0), Ok(vec![]));
    assert_eq!(d.write(128, &[]), Ok(()));
    assert_eq!(d.flush(), Err(BlockError::FlushUnsupported));
    // A 4096-byte disk refuses 512-byte buffers.
    let mut d4 = Dev::disk(MIB, 4096, 0);
    assert_eq!(
        d4.read(0, 512),
        Err(BlockError::Unaligned {
            len: 512,
            sector_size: 4096
        })
    );
    // A read-only disk refuses writes (and serves reads).
    let mut bb = Blkback::new(vec![9; 64 * 1024], 512);
    bb.read_only = true;
    let mut ro = Dev::new(bb);
    assert!(ro.q.geometry().read_only);
    assert_eq!(ro.write(0, &[0; 512]), Err(BlockError::ReadOnly));
    for dev in [&d, &d4, &ro] {
        assert!(dev.bb.log.is_empty());
        assert_eq!(dev.bb.ring.load_u32(0), 0, "req_prod untouched");
        assert_eq!((dev.bb.grants_made, dev.bb.notifies), (0, 0));
        assert_eq!(dev.q.traffic().requests, 0);
        assert_eq!(dev.bb.now, 0, "no wait");
    }
    assert_eq!(ro.read(0, 512).unwrap(), vec![9; 512]);
    ro.assert_clean();
}

#[test]
fn flush_uses_the_operation_the_backend_offers() {
    for (flush_cache, barrier, op) in [
        (true, false, Some(OP_FLUSH_DISKCACHE)),
        (true, true, Some(OP_FLUSH_DISKCACHE)),
        (false, true, Some(OP_WRITE_BARRIER)),
        (false, false, None),
    ] {
        let mut bb = Blkback::new(vec![0; 64 * 1024], 512);
        (bb.flush_cache, bb.barrier) = (flush_cache, barrier);
        let mut d = Dev::new(bb);
        assert_eq!(d.q.offer().flush, op);
        match op {
            Some(op) => {
                d.flush().unwrap();
                let r = &d.bb.log[0];
                assert_eq!((r.operation, r.nr_segments, r.indirect), (op, 0, false));
                assert_eq!((d.bb.flushes, d.q.traffic().flushes), (1, 1));
            }
            None => {
                assert_eq!(d.flush(), Err(BlockError::FlushUnsupported));
                assert!(d.bb.log.is_empty());
            }
        }
        d.assert_clean();
    }
    // A backend that offers a flush and then refuses it: its status, not a success.
    let mut bb = Blkback::new(vec![0; 64 * 1024], 512);
    bb.flush_cache = true;
    let mut d = Dev::new(bb);
    d.bb.flush_cache = false;
    assert_eq!(
        d.flush(),
        Err(BlockError::Backend {
            status: RSP_EOPNOTSUPP
        })
    );
    assert_eq!(d.q.traffic().flushes, 0);
}

/// Three direct requests (33 pages) written while the backend misbehaves: the call ends
/// at its deadline with `Timeout`; then, honest again, the device reads and writes.
fn hostile_write_then_honest(mode: Mode) -> Dev {
    let mut d = Dev::disk(4 * MIB, 512, 0);
    d.bb.mode = mode;
    let deadline = d.deadline();
    let r = d.q.write(&mut d.bb, 8, &bytes(7, 33 * 4096), deadline);
    assert_eq!(d.bb.log.len(), 3, "{mode:?}");
    assert_eq!(
        r,
        Err(BlockError::Timeout {
            waited_ms: SEC / 1_000_000
        }),
        "{mode:?}"
    );
    assert_eq!(
        d.bb.now, deadline,
        "{mode:?}: the call ended at its deadline"
    );
    d.bb.mode = Mode::Honest;
    let data = bytes(8, 200 * 1024);
    d.write(4096, &data).unwrap();
    assert_eq!(d.read(4096, data.len()).unwrap(), data, "{mode:?}");
    d
}

#[test]
fn wrong_ids_are_counted_and_the_call_ends_at_its_deadline() {
    // Every response names an id past the ring's: all three refused, all time out.
    let d = hostile_write_then_honest(Mode::WrongIds(WrongId::Offset(300)));
    let c = d.q.counters();
    assert_eq!((c.bad_id, c.timed_out, c.late), (3, 3, 0));
    assert_eq!(d.q.in_flight(), 3, "never answered: those ids stay taken");
    // The ids of the same slots a generation on (what a stale or replayed response
    // names): not the requests in flight.
    let d = hostile_write_then_honest(Mode::WrongIds(WrongId::Offset(1 << 8)));
    let c = d.q.counters();
    assert_eq!((c.bad_id, c.not_in_flight, c.timed_out), (0, 3, 3));
    // The first response names the second request, the second the third, the third an
    // id past the ring's: the first request never answered.
    let d = hostile_write_then_honest(Mode::WrongIds(WrongId::OtherInFlight));
    let c = d.q.counters();
    assert_eq!((c.bad_id, c.not_in_flight, c.timed_out), (1, 0, 1));
    assert_eq!(d.q.in_flight(), 1);
    assert_eq!(
        d.bb.live_grants(),
        11,
        "the unanswered request's grants only"
    );
    assert_eq!(d.bb.bad_end_grants, 0);
}

#[test]
fn a_duplicate_id_is_counted_and_the_request_it_hid_times_out() {
    let d = hostile_write_then_honest(Mode::DuplicateIds);
    let c = d.q.counters();
    assert_eq!((c.not_in_flight, c.bad_id, c.timed_out), (1, 0, 1));
    assert_eq!(d.q.in_flight(), 1);
    assert_eq!(d.bb.live_grants(), 11);
}

#[test]
fn a_failure_status_is_the_backends_error_and_the_device_goes_on() {
    for status in [RSP_ERROR, RSP_EOPNOTSUPP, 5, i16::MIN] {
        let mut d = Dev::disk(MIB, 512, 256);
        d.write(0, &[3; 8192]).unwrap();
        d.bb.mode = Mode::BadStatus(status);
        assert_eq!(d.read(0, 8192), Err(BlockError::Backend { status }));
        assert_eq!(d.write(0, &[4; 8192]), Err(BlockError::Backend { status }));
        d.bb.flush_cache = true; // not offered to the queue: refused before the ring
        assert_eq!(d.flush(), Err(BlockError::FlushUnsupported));
        assert_eq!(d.q.counters().failed, 2);
        d.bb.mode = Mode::Honest;
        assert_eq!(
            d.read(0, 8192).unwrap(),
            vec![4; 8192],
            "the model wrote anyway"
        );
        d.assert_clean();
    }
    // A large write failing part way: the call stops sending and says why.
    let mut d = Dev::disk(4 * MIB, 512, 0);
    d.bb.mode = Mode::BadStatus(RSP_ERROR);
    assert_eq!(
        d.write(0, &bytes(9, MIB)),
        Err(BlockError::Backend { status: RSP_ERROR })
    );
    assert_eq!(d.q.counters().failed, d.bb.log.len() as u64);
    d.assert_clean();
}

#[test]
fn a_response_naming_another_operation_is_refused() {
    let mut bb = Blkback::new(vec![0; MIB], 512);
    bb.flush_cache = true;
    let mut d = Dev::new(bb);
    d.bb.mode = Mode::BadOperation;
    assert_eq!(
        d.read(0, 4096),
        Err(BlockError::BadResponse {
            operation: OP_WRITE
        })
    );
    assert_eq!(
        d.write(0, &[1; 4096]),
        Err(BlockError::BadResponse { operation: OP_READ })
    );
    assert_eq!(
        d.flush(),
        Err(BlockError::BadResponse { operation: OP_READ })
    );
    assert_eq!(d.q.counters().bad_operation, 3);
    assert_eq!(d.q.traffic().flushes, 0);
    d.bb.mode = Mode::Honest;
    d.flush().unwrap();
    d.assert_clean();
}

#[test]
fn an_indirect_request_may_be_answered_as_op_indirect() {
    let mut bb = Blkback::new(vec![0; 4 * MIB], 512);
    bb.max_indirect = 256;
    bb.indirect_answer_outer = true;
    let mut d = Dev::new(bb);
    let data = bytes(10, MIB + 4096);
    d.write(0, &data).unwrap();
    assert_eq!(d.read(0, data.len()).unwrap(), data);
    assert_eq!(d.q.counters(), Counters::default());
    d.assert_clean();
}

#[test]
fn a_silent_backend_times_out_and_its_late_answer_is_only_counted() {
    let mut d = Dev::disk(4 * MIB, 512, 0);
    let (a, b) = (bytes(11, 64 * 1024), bytes(12, 64 * 1024));
    d.write(0, &a).unwrap();
    d.write(1024, &b).unwrap();
    d.bb.mode = Mode::Silent;
    let deadline = d.deadline();
    let mut buf = vec![0; a.len()];
    assert_eq!(
        d.q.read(&mut d.bb, 0, &mut buf, deadline),
        Err(BlockError::Timeout { waited_ms: 1000 })
    );
    assert_eq!(d.bb.now, deadline);
    assert_eq!(d.q.counters().timed_out, 2);
    assert_eq!((d.q.in_flight(), d.bb.held()), (2, 2));
    // The backend comes back: the abandoned requests are answered (their data lands in
    // their own pages) during the next read, which gets its own data.
    d.bb.mode = Mode::Honest;
    assert_eq!(d.read(1024, b.len()).unwrap(), b);
    let c = d.q.counters();
    assert_eq!((c.late, c.timed_out, c.not_in_flight), (2, 2, 0));
    assert_eq!(d.read(0, a.len()).unwrap(), a);
    d.assert_clean();
}

#[test]
fn a_slow_backend_is_waited_for_until_the_deadline_and_no_longer() {
    let mut bb = Blkback::new(vec![0; 4 * MIB], 512);
    bb.mode = Mode::Slow { every: 5 };
    let mut d = Dev::new(bb);
    let data = bytes(13, 256 * 1024);
    // 6 requests, one answered every 5 ms: 30 ms is enough, 10 ms is not.
    d.write(0, &data).unwrap();
    assert!(
        d.bb.now >= 25_000_000 && d.bb.now <= 35_000_000,
        "{}",
        d.bb.now
    );
    let start = d.bb.now;
    let mut buf = vec![0; data.len()];
    let r = d.q.read(&mut d.bb, 0, &mut buf, start + 10_000_000);
    assert_eq!(r, Err(BlockError::Timeout { waited_ms: 10 }));
    assert_eq!(d.bb.now, start + 10_000_000);
    let c = d.q.counters();
    assert_eq!(c.timed_out as usize, d.q.in_flight());
    assert!(c.timed_out > 0);
    // The rest come late; the next call still gets its own data.
    assert_eq!(d.read(0, data.len()).unwrap(), data);
    assert_eq!(d.q.counters().late, c.timed_out);
    d.assert_clean();
}

#[test]
fn a_response_index_past_the_requests_stops_the_device() {
    let mut bb = Blkback::new(vec![0; MIB], 512);
    bb.flush_cache = true;
    let mut d = Dev::new(bb);
    d.write(0, &[1; 4096]).unwrap();
    d.bb.mode = Mode::RspProdAhead;
    assert_eq!(d.read(0, 4096), Err(BlockError::Broken));
    assert!(d.q.broken());
    let (sent, req_prod) = (d.q.traffic().requests, d.bb.ring.load_u32(0));
    d.bb.mode = Mode::Honest;
    assert_eq!(d.read(0, 4096), Err(BlockError::Broken));
    assert_eq!(d.write(0, &[2; 512]), Err(BlockError::Broken));
    assert_eq!(d.flush(), Err(BlockError::Broken));
    assert_eq!(d.q.traffic().requests, sent, "nothing more sent");
    assert_eq!(d.bb.ring.load_u32(0), req_prod, "nothing more on the ring");
    // Checks that need no ring still say what is wrong with the call.
    assert!(matches!(d.read(0, 100), Err(BlockError::Unaligned { .. })));
}

#[test]
fn kept_grants_retire_their_ids_and_calls_fail_cleanly_when_none_is_left() {
    let mut bb = Blkback::new(vec![0; MIB], 512);
    bb.mode = Mode::KeepsGrants;
    let mut d = Dev::with_shape(
        bb,
        Shape {
            ids: 4,
            segments: 11,
        },
    );
    d.write(0, &bytes(14, 4096)).unwrap();
    assert_eq!((d.q.counters().retired, d.q.usable_ids()), (1, 3));
    assert_eq!(d.read(0, 4096).unwrap(), bytes(14, 4096));
    // Two more requests in one call: the last two ids.
    let data = bytes(15, 12 * 4096);
    d.write(8, &data).unwrap();
    assert_eq!(d.on_disk(8, data.len()), &data[..]);
    assert_eq!((d.q.counters().retired, d.q.usable_ids()), (4, 0));
    assert_eq!(d.bb.kept_grants(), 1 + 1 + 12);
    assert_eq!(d.bb.live_grants(), d.bb.kept_grants());
    // No id left: the device is stopped at once (no wait), nothing on the ring, no panic.
    let sent = d.bb.log.len();
    let now = d.bb.now;
    assert_eq!(d.read(0, 4096), Err(BlockError::Broken));
    assert_eq!(d.write(0, &[0; 512]), Err(BlockError::Broken));
    assert_eq!(d.bb.now, now, "no waiting for ids that never come back");
    assert_eq!(d.bb.log.len(), sent);
    assert_eq!(d.q.in_flight(), 0);
    assert_eq!(d.bb.bad_end_grants, 0);
    // A call needing more requests than ids are left: the first ones done, then an error.
    let mut bb = Blkback::new(vec![0; MIB], 512);
    bb.mode = Mode::KeepsGrants;
    let mut d = Dev::with_shape(
        bb,
        Shape {
            ids: 2,
            segments: 11,
        },
    );
    assert!(matches!(
        d.write(0, &bytes(16, 30 * 4096)),
        Err(BlockError::Timeout { .. })
    ));
    assert_eq!((d.bb.log.len(), d.q.usable_ids()), (2, 0));
}

#[test]
fn every_grant_ends_and_has_the_access_its_direction_needs() {
    let mut d = Dev::disk(4 * MIB, 512, 256);
    let data = bytes(17, MIB + 5 * 4096);
    d.write(0, &data).unwrap();
    let writes = d.bb.log.len();
    assert_eq!(d.read(0, data.len()).unwrap(), data);
    let mut grants = 0;
    for (i, r) in d.bb.log.iter().enumerate() {
        let write = i < writes;
        assert_eq!(r.operation, if write { OP_WRITE } else { OP_READ });
        for g in &r.grants {
            let g = g.expect("a granted page");
            assert!(matches!(g.page, PageRef::Data(_)));
            assert_eq!(
                g.readonly, write,
                "a write's pages read-only, a read's writable"
            );
        }
        for g in &r.indirect_grants {
            let g = g.expect("a granted indirect page");
            assert!(matches!(g.page, PageRef::Indirect(_)) && g.readonly);
        }
        grants += r.grants.len() + r.indirect_grants.len();
    }
    assert_eq!(d.bb.grants_made, grants as u64);
    d.assert_clean();
    // A read into read-only grants would be refused by blkback; a write through them not.
    assert!(d.bb.refused.is_empty());
}

#[test]
fn a_short_grant_table_serialises_requests_or_fails_cleanly() {
    // Grants for one request at a time: a 1 MiB write goes one request after another.
    let mut bb = Blkback::new(vec![0; 4 * MIB], 512);
    bb.grant_limit = 11;
    let mut d = Dev::new(bb);
    let data = bytes(18, MIB);
    d.write(0, &data).unwrap();
    assert_eq!(d.read(0, MIB).unwrap(), data);
    assert_eq!(d.bb.max_outstanding, 1);
    d.assert_clean();
    // Too few grants for even one request: an error now, nothing sent, nothing leaked.
    for limit in [0, 5] {
        let mut bb = Blkback::new(vec![0; MIB], 512);
        bb.grant_limit = limit;
        let mut d = Dev::new(bb);
        assert_eq!(
            d.write(0, &[1; 11 * 4096]),
            Err(BlockError::Timeout { waited_ms: 0 })
        );
        assert!(d.bb.log.is_empty());
        assert_eq!(d.bb.grants_made, limit as u64);
        d.assert_clean();
    }
}

#[test]
fn a_request_whose_grants_cannot_all_be_ended_after_a_failed_send_retires_its_id() {
    // The 6th grant of an 11-page write fails (grant_limit), and the backend mapped the
    // first one (the predictable gref 8) before the request was published: ending it is
    // refused. The slot's pages must never be touched or granted again.
    let mut bb = Blkback::new(vec![0; MIB], 512);
    bb.grant_limit = 5;
    bb.map_early(8);
    let mut d = Dev::with_shape(
        bb,
        Shape {
            ids: 4,
            segments: 11,
        },
    );
    assert_eq!(
        d.write(0, &[1; 11 * 4096]),
        Err(BlockError::Timeout { waited_ms: 0 })
    );
    assert!(d.bb.log.is_empty(), "nothing sent");
    assert_eq!((d.q.counters().retired, d.q.usable_ids()), (1, 3));
    // The next call uses another id: its pages are not the kept one's.
    d.bb.grant_limit = usize::MAX;
    d.write(0, &bytes(19, 4096)).unwrap();
    assert_eq!(d.read(0, 4096).unwrap(), bytes(19, 4096));
    assert_eq!(
        d.bb.copies_while_granted, 0,
        "no page touched while the backend holds it"
    );
    assert_eq!(d.bb.live_grants(), 1, "only the kept grant is live");
}

#[test]
fn offers_the_frontend_refuses_and_what_it_reads_from_the_rest() {
    let ok: Option<&[u8]> = None;
    // (sectors, sector-size, info, the key refused)
    type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a str);
    let cases: &[Case<'_>] = &[
        (b"", b"512", b"0", "sectors"),
        (b"-8", b"512", b"0", "sectors"),
        (b"8 ", b"512", b"0", "sectors"),
        (b"0x10", b"512", b"0", "sectors"),
        (b"8", b"1000", b"0", "sector-size"),
        (b"8", b"8192", b"0", "sector-size"),
        (b"8", b"256", b"0", "sector-size"),
        (b"8", b"0", b"0", "sector-size"),
        (b"8", b"", b"0", "sector-size"),
        (b"8", b"512", b"ro", "info"),
        (b"8", b"512", b"", "info"),
        (b"8", b"512", b"4294967296", "info"),
    ];
    for &(sectors, ss, info, want) in cases {
        let e = Offer::parse(sectors, ss, info, ok, ok, ok).unwrap_err();
        assert_eq!(e.key, want, "{:?}", (sectors, ss, info));
    }
    let p = |f: Option<&[u8]>, b: Option<&[u8]>, m: Option<&[u8]>| {
        Offer::parse(b"8", b"512", b"0", f, b, m).map_err(|e: BadKey| e.key)
    };
    let yes = Some(&b"yes"[..]);
    assert_eq!(p(yes, ok, ok), Err("feature-flush-cache"));
    assert_eq!(p(ok, yes, ok), Err("feature-barrier"));
    assert_eq!(p(ok, ok, yes), Err("feature-max-indirect-segments"));
    assert_eq!(p(ok, ok, Some(b"-1")), Err("feature-max-indirect-segments"));
    let e = Offer::parse(b"8", b"1000", b"0", ok, ok, ok).unwrap_err();
    assert!(e.to_string().starts_with("sector-size: "), "{e}");
    // What is accepted: sectors in 512-byte units, info bits, features of "0" off.
    let o = Offer::parse(b"524288", b"4096", b"6", Some(b"0"), Some(b"1"), Some(b"0")).unwrap();
    assert_eq!(o.geometry.sectors, 65536);
    assert!(o.geometry.read_only && o.geometry.removable);
    assert_eq!(
        (o.flush, o.max_indirect, o.segments()),
        (Some(OP_WRITE_BARRIER), 0, 11)
    );
    let o = Offer::parse(b"8\0", b"512", b"0", None, None, Some(b"99999999999")).unwrap();
    assert_eq!((o.max_indirect, o.segments()), (u32::MAX, 256));
    assert_eq!(o.geometry.sectors, 8);
}

/// A backend mode for the mixed test.
fn any_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        6 => Just(Mode::Honest),
        1 => (1u32..4).prop_map(|every| Mode::Slow { every }),
        1 => Just(Mode::WrongIds(WrongId::Offset(300))),
        1 => Just(Mode::WrongIds(WrongId::OtherInFlight)),
        1 => Just(Mode::DuplicateIds),
        1 => prop_oneof![Just(RSP_ERROR), Just(5i16)].prop_map(Mode::BadStatus),
        1 => Just(Mode::BadOperation),
        1 => Just(Mode::Silent),
        1 => Just(Mode::KeepsGrants),
        1 => Just(Mode::RspProdAhead),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any run of calls against a backend that changes its ways between calls: every
    /// call returns by its deadline, a call that succeeds moved the right bytes, a
    /// broken device stays broken, and no grant is ended twice.
    #[test]
    fn any_mix_of_backends_never_hangs_or_returns_wrong_data(
        max_indirect in prop_oneof![Just(0u32), Just(256)],
        steps in prop::collection::vec(
            (any_mode(), any::<bool>(), 0u64..2048, 1usize..=96, any::<u64>()),
            1..16,
        ),
    ) {
        let mut d = Dev::disk(MIB, 512, max_indirect);
        let mut broken = false;
        for (mode, write, sector, n512, seed) in steps {
            d.bb.mode = mode;
            let n512 = n512.min(2048 - sector as usize).max(1);
            let sector = sector.min(2048 - n512 as u64);
            let deadline = d.bb.now + 50_000_000;
            let r = if write {
                let data = bytes(seed, n512 * 512);
                let r = d.q.write(&mut d.bb, sector, &data, deadline);
                if r.is_ok() {
                    prop_assert!(d.on_disk(sector, data.len()) == &data[..], "{:?}", mode);
                }
                r
            } else {
                let mut buf = vec![0; n512 * 512];
                let r = d.q.read(&mut d.bb, sector, &mut buf, deadline);
                if r.is_ok() {
                    prop_assert!(d.on_disk(sector, buf.len()) == &buf[..], "{:?}", mode);
                }
                r
            };
            prop_assert!(d.bb.now <= deadline);
            if broken {
                prop_assert_eq!(r, Err(BlockError::Broken));
            }
            broken = d.q.broken();
            prop_assert_eq!(d.bb.bad_end_grants, 0);
        }
    }
}

#[test]
fn a_shape_asking_more_segments_than_the_backend_takes_is_cut_to_the_offer() {
    // A driver that sizes its pool for 1 MiB requests whatever the backend offers: the
    // queue still sends only requests the backend takes (11 direct segments without
    // indirect requests, `max-indirect-segments` with them).
    for (max_indirect, most) in [(0, 11), (32, 32), (256, 256)] {
        let mut bb = Blkback::new(vec![0; 4 * MIB], 512);
        bb.max_indirect = max_indirect;
        let mut d = Dev::with_shape(
            bb,
            Shape {
                ids: 4,
                segments: 256,
            },
        );
        let data = bytes(19, MIB);
        d.write(0, &data).unwrap();
        assert_eq!(d.read(0, MIB).unwrap(), data);
        assert_eq!(d.q.request_bytes(), most * 4096);
        assert!(d.bb.log.iter().all(|r| r.segments.len() <= most));
        d.assert_clean();
    }
}

/// A read stepped by its caller (`begin_read`, `step_read` until `Some`, the caller
/// waiting between steps): the steps that wait for the backend say so (`None`), and
/// the data, the requests and what is left over are those of the blocking read.
#[test]
fn a_stepped_read_gets_what_the_blocking_read_gets() {
    let mut d = Dev::disk(4 * MIB, 512, 32);
    let data = bytes(21, 3 * MIB + 512);
    d.write(8, &data).unwrap();
    let deadline = d.deadline();
    let mut t = d.q.begin_read(&mut d.bb, 8, data.len(), deadline).unwrap();
    assert_eq!(t.deadline(), deadline);
    let mut buf = vec![0u8; data.len()];
    let mut pending = 0;
    let r = loop {
        if let Some(r) = d.q.step_read(&mut d.bb, &mut t, &mut buf) {
            break r;
        }
        pending += 1;
        xenpv_protocol::blkfront::Io::wait(&mut d.bb, deadline);
    };
    assert_eq!(r, Ok(()));
    assert!(pending > 0, "the first step sends and waits");
    assert_eq!(buf, data);
    assert_eq!(d.q.counters(), Counters::default());
    d.assert_clean();
}

/// A stepped read refuses what the blocking one refuses, at its start: past the end,
/// unaligned; and a buffer of another length than begun is refused without a copy.
#[test]
fn a_stepped_read_is_checked_as_the_blocking_one() {
    let mut d = Dev::disk(MIB, 512, 0);
    let deadline = d.deadline();
    let sectors = (MIB / 512) as u64;
    assert!(matches!(
        d.q.begin_read(&mut d.bb, sectors, 512, deadline),
        Err(BlockError::OutOfRange { .. })
    ));
    assert!(matches!(
        d.q.begin_read(&mut d.bb, 0, 100, deadline),
        Err(BlockError::Unaligned { .. })
    ));
    let mut t = d.q.begin_read(&mut d.bb, 0, 4096, deadline).unwrap();
    let mut short = vec![0u8; 512];
    assert!(matches!(
        d.q.step_read(&mut d.bb, &mut t, &mut short),
        Some(Err(BlockError::Unaligned { len: 512, .. }))
    ));
    assert!(d.bb.log.is_empty(), "nothing sent");
    d.assert_clean();
}

/// A silent backend: the steps say `None` until the deadline, then `Timeout`, the
/// requests abandoned and counted; a read given up by its caller (`cancel`) is counted
/// the same, and the late answers of both only free their slots.
#[test]
fn a_stepped_read_times_out_or_is_cancelled_and_the_disk_goes_on() {
    let mut d = Dev::disk(4 * MIB, 512, 0);
    let a = bytes(31, 64 * 1024);
    d.write(0, &a).unwrap();
    d.bb.mode = Mode::Silent;
    let deadline = d.deadline();
    let mut buf = vec![0u8; a.len()];
    let mut t = d.q.begin_read(&mut d.bb, 0, a.len(), deadline).unwrap();
    assert_eq!(d.q.step_read(&mut d.bb, &mut t, &mut buf), None);
    xenpv_protocol::blkfront::Io::wait(&mut d.bb, deadline);
    assert_eq!(
        d.q.step_read(&mut d.bb, &mut t, &mut buf),
        Some(Err(BlockError::Timeout { waited_ms: 1000 }))
    );
    assert_eq!(d.q.counters().timed_out, 2);
    let deadline = d.deadline();
    let mut t = d.q.begin_read(&mut d.bb, 0, a.len(), deadline).unwrap();
    assert_eq!(d.q.step_read(&mut d.bb, &mut t, &mut buf), None);
    d.q.cancel(&mut t);
    assert_eq!(d.q.counters().timed_out, 4);
    d.bb.mode = Mode::Honest;
    assert_eq!(d.read(0, a.len()).unwrap(), a);
    assert_eq!(d.q.counters().late, 4);
    d.assert_clean();
}
