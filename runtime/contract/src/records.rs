//! The disk writer's records: what the sample appliance writes to a raw disk once a
//! second (one record per 512-byte sector, record `seq` in sector `seq`) and what checks
//! them, in the guest and from dom0 after the guest ends.
//!
//! A record holds its sequence number, the guest's monotonic clock when it was written
//! and the suspend epoch then; a CRC-32 over the rest of the sector seals it. A scan
//! ([`Scan`]) takes sectors in order from sector 0: each must be the record of its own
//! index, no clock or epoch may go back, and the first empty (all-zero) sector ends the
//! records; anything else is the first bad sector, with why.
//!
//! ```
//! use xenpv_contract::records::{encode, Record, Scan, SECTOR};
//! let mut disk = vec![[0u8; SECTOR]; 4];
//! for seq in 0..3 {
//!     encode(&Record { seq, mono_ns: 1_000 + seq, epoch: 0 }, &mut disk[seq as usize]);
//! }
//! let mut scan = Scan::default();
//! for s in &disk {
//!     if !scan.push(s) {
//!         break;
//!     }
//! }
//! assert_eq!(scan.records(), 3);
//! assert!(scan.bad().is_none());
//! ```

/// Bytes of one record: a sector.
pub const SECTOR: usize = 512;

/// The first bytes of every record.
pub const MAGIC: [u8; 8] = *b"xpvrec01";

/// Where the CRC-32 sits: the sector's last four bytes (little-endian), over all before.
const CRC_AT: usize = SECTOR - 4;

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number: 0, 1, 2 … (and its sector).
    pub seq: u64,
    /// The guest's monotonic clock when it was made (ns).
    pub mono_ns: u64,
    /// The suspend epoch then (0 before any resume in a new domain).
    pub epoch: u32,
}

/// Why a sector is not a good record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Not all zero, and not starting with [`MAGIC`].
    Magic,
    /// The CRC stored is not the CRC of the bytes.
    Crc {
        /// What the sector says.
        stored: u32,
        /// What its bytes give.
        computed: u32,
    },
    /// A good record of another sequence number than its sector's.
    Seq {
        /// What was expected (the sector's index).
        expected: u64,
        /// What it says.
        found: u64,
    },
    /// Its clock is before the previous record's.
    ClockBack {
        /// The previous record's clock.
        previous: u64,
        /// This one's.
        found: u64,
    },
    /// Its epoch is before the previous record's.
    EpochBack {
        /// The previous record's epoch.
        previous: u32,
        /// This one's.
        found: u32,
    },
}

impl core::fmt::Display for Bad {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Bad::Magic => f.write_str("magic"),
            Bad::Crc { stored, computed } => write!(f, "crc-{stored:08x}-not-{computed:08x}"),
            Bad::Seq { expected, found } => write!(f, "seq-{found}-not-{expected}"),
            Bad::ClockBack { previous, found } => write!(f, "clock-back-{found}-after-{previous}"),
            Bad::EpochBack { previous, found } => write!(f, "epoch-back-{found}-after-{previous}"),
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`) of `bytes`, bit by bit: 512 bytes
/// a second need no table.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Write `r` into `out` (the whole sector: the bytes after the fields are zero).
pub fn encode(r: &Record, out: &mut [u8; SECTOR]) {
    out.fill(0);
    out[..8].copy_from_slice(&MAGIC);
    out[8..16].copy_from_slice(&r.seq.to_le_bytes());
    out[16..24].copy_from_slice(&r.mono_ns.to_le_bytes());
    out[24..28].copy_from_slice(&r.epoch.to_le_bytes());
    let crc = crc32(&out[..CRC_AT]);
    out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
}

/// Read a sector: `Ok(None)` if it is all zero (no record yet), the record, or why not.
pub fn decode(s: &[u8; SECTOR]) -> Result<Option<Record>, Bad> {
    if s.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if s[..8] != MAGIC {
        return Err(Bad::Magic);
    }
    let word = |a: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[a..a + 8]);
        u64::from_le_bytes(w)
    };
    let quad = |a: usize| u32::from_le_bytes([s[a], s[a + 1], s[a + 2], s[a + 3]]);
    let (stored, computed) = (quad(CRC_AT), crc32(&s[..CRC_AT]));
    if stored != computed {
        return Err(Bad::Crc { stored, computed });
    }
    Ok(Some(Record {
        seq: word(8),
        mono_ns: word(16),
        epoch: quad(24),
    }))
}

/// A check of the records from sector 0 on ([`Scan::push`] each sector in order).
#[derive(Clone, Debug, Default)]
pub struct Scan {
    records: u64,
    last: Option<Record>,
    ended: bool,
    bad: Option<(u64, Bad)>,
}

impl Scan {
    /// Take the next sector: `true` to go on, `false` once the records ended (an empty
    /// sector) or one was bad.
    pub fn push(&mut self, s: &[u8; SECTOR]) -> bool {
        if self.ended || self.bad.is_some() {
            return false;
        }
        let at = self.records;
        let r = match decode(s) {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.ended = true;
                return false;
            }
            Err(b) => return self.fail(at, b),
        };
        if r.seq != at {
            return self.fail(
                at,
                Bad::Seq {
                    expected: at,
                    found: r.seq,
                },
            );
        }
        if let Some(p) = self.last {
            if r.mono_ns < p.mono_ns {
                let (previous, found) = (p.mono_ns, r.mono_ns);
                return self.fail(at, Bad::ClockBack { previous, found });
            }
            if r.epoch < p.epoch {
                let (previous, found) = (p.epoch, r.epoch);
                return self.fail(at, Bad::EpochBack { previous, found });
            }
        }
        self.last = Some(r);
        self.records += 1;
        true
    }

    fn fail(&mut self, at: u64, b: Bad) -> bool {
        self.bad = Some((at, b));
        false
    }

    /// Good records so far (sectors 0 to this, less one).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The last good record.
    pub fn last(&self) -> Option<Record> {
        self.last
    }

    /// The first bad sector and why, if one was found.
    pub fn bad(&self) -> Option<(u64, Bad)> {
        self.bad
    }

    /// Did an empty sector end the records?
    pub fn ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(n: u64) -> Vec<[u8; SECTOR]> {
        let mut d = vec![[0u8; SECTOR]; n as usize + 2];
        for seq in 0..n {
            let r = Record {
                seq,
                mono_ns: 1_000_000_000 * (seq + 1),
                epoch: (seq / 3) as u32,
            };
            encode(&r, &mut d[seq as usize]);
        }
        d
    }

    fn scan(d: &[[u8; SECTOR]]) -> Scan {
        let mut s = Scan::default();
        for x in d {
            if !s.push(x) {
                break;
            }
        }
        s
    }

    #[test]
    fn crc_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip_and_a_clean_scan() {
        let d = disk(10);
        let r = decode(&d[7]).unwrap().unwrap();
        assert_eq!((r.seq, r.mono_ns, r.epoch), (7, 8_000_000_000, 2));
        let s = scan(&d);
        assert_eq!(s.records(), 10);
        assert!(s.ended() && s.bad().is_none());
        assert_eq!(s.last().unwrap().seq, 9);
        assert_eq!(decode(&[0u8; SECTOR]), Ok(None));
    }

    #[test]
    fn each_damage_is_named_at_its_sector() {
        let mut d = disk(10);
        d[4][100] ^= 1;
        assert!(matches!(scan(&d).bad(), Some((4, Bad::Crc { .. }))));
        let mut d = disk(10);
        d[2][0] = b'X';
        assert_eq!(scan(&d).bad(), Some((2, Bad::Magic)));
        let mut d = disk(10);
        d.swap(3, 5);
        let b = scan(&d).bad();
        assert_eq!(
            b,
            Some((
                3,
                Bad::Seq {
                    expected: 3,
                    found: 5
                }
            ))
        );
        let mut d = disk(10);
        let back = Record {
            seq: 6,
            mono_ns: 1,
            epoch: 2,
        };
        encode(&back, &mut d[6]);
        assert!(matches!(scan(&d).bad(), Some((6, Bad::ClockBack { .. }))));
        let mut d = disk(10);
        let back = Record {
            seq: 7,
            mono_ns: 8_000_000_000,
            epoch: 0,
        };
        encode(&back, &mut d[7]);
        assert!(matches!(scan(&d).bad(), Some((7, Bad::EpochBack { .. }))));
        assert_eq!(
            format!(
                "{}",
                Bad::Crc {
                    stored: 1,
                    computed: 2
                }
            ),
            "crc-00000001-not-00000002"
        );
    }

    #[test]
    fn a_hole_ends_the_records() {
        let mut d = disk(10);
        d[5] = [0u8; SECTOR];
        let s = scan(&d);
        assert_eq!(s.records(), 5);
        assert!(s.ended());
    }
}
