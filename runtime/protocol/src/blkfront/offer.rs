//! What a blkback offers ([`Offer`], parsed from its keys and checked), and whether a new
//! domain's backend offers the same disk ([`check_reattach`]).

use super::{DIRECT_SEGMENTS, MAX_SEGMENTS};
use crate::blkif::{parse_number, VdiskInfo, OP_FLUSH_DISKCACHE, OP_WRITE_BARRIER};
use crate::block::Geometry;

/// What the backend offers, from its keys, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Size, sector size, read-only and removable (from `sectors`, `sector-size`, `info`).
    pub geometry: Geometry,
    /// The flush operation to use: `feature-flush-cache` first, then `feature-barrier`.
    pub flush: Option<u8>,
    /// `feature-max-indirect-segments` (0: none).
    pub max_indirect: u32,
}

/// A backend key whose value this frontend refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadKey {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub why: &'static str,
}

impl core::fmt::Display for BadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

impl Offer {
    /// Check the backend's keys: `sectors` (512-byte units), `sector-size` (a power of
    /// two, 512..=4096), `info` (`VDISK_*` bits), and the optional features (a missing
    /// or `0` feature is off; anything that is not a number is refused).
    pub fn parse(
        sectors: &[u8],
        sector_size: &[u8],
        info: &[u8],
        flush_cache: Option<&[u8]>,
        barrier: Option<&[u8]>,
        max_indirect: Option<&[u8]>,
    ) -> Result<Offer, BadKey> {
        let bad = |key, why| BadKey { key, why };
        let s512 = parse_number(sectors).ok_or(bad("sectors", "not a decimal number"))?;
        let ss = parse_number(sector_size)
            .filter(|&s| (512..=4096).contains(&s) && s.is_power_of_two())
            .ok_or(bad("sector-size", "not a power of two from 512 to 4096"))?;
        let info = parse_number(info)
            .filter(|&i| i <= u64::from(u32::MAX))
            .ok_or(bad("info", "not a 32-bit decimal number"))? as u32;
        // Unknown bits are kept (and ignored), as Linux's blkfront does.
        let info = VdiskInfo::from_bits_retain(info);
        let feature = |v: Option<&[u8]>, key| match v {
            None => Ok(0),
            Some(v) => parse_number(v).ok_or(bad(key, "not a decimal number")),
        };
        let flush = if feature(flush_cache, "feature-flush-cache")? != 0 {
            Some(OP_FLUSH_DISKCACHE)
        } else if feature(barrier, "feature-barrier")? != 0 {
            Some(OP_WRITE_BARRIER)
        } else {
            None
        };
        let max_indirect =
            feature(max_indirect, "feature-max-indirect-segments")?.min(u64::from(u32::MAX)) as u32;
        Ok(Offer {
            geometry: Geometry {
                sector_size: ss as u32,
                // `sectors` counts 512-byte units; the API counts the disk's sectors.
                sectors: s512 / (ss / 512),
                read_only: info.contains(VdiskInfo::READONLY),
                removable: info.contains(VdiskInfo::REMOVABLE),
            },
            flush,
            max_indirect,
        })
    }

    /// Segments per request: up to [`MAX_SEGMENTS`] when the backend takes indirect
    /// requests with more than [`DIRECT_SEGMENTS`], else [`DIRECT_SEGMENTS`].
    pub fn segments(&self) -> usize {
        (self.max_indirect as usize).clamp(DIRECT_SEGMENTS, MAX_SEGMENTS)
    }
}

/// A disk connected again in a new domain whose backend offers another geometry than
/// the one the guest has been using: what differs, before and after. Such a disk is
/// failed visibly rather than used (offsets, a filesystem, would name other data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeometryChanged {
    /// `sectors`, `sector-size` or `read-only`.
    pub what: &'static str,
    /// The value before (read-only as 0 or 1).
    pub before: u64,
    /// The new backend's.
    pub after: u64,
}

impl core::fmt::Display for GeometryChanged {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} changed across the new domain: {} before, {} now",
            self.what, self.before, self.after
        )
    }
}

/// Is the geometry the new domain's backend offers the same as before (size, sector
/// size, read-only)? Features (flush, indirect segments) may change;
/// these may not.
pub fn check_reattach(before: &Geometry, after: &Geometry) -> Result<(), GeometryChanged> {
    let pairs = [
        // The unit first: with another sector size, the count differs too.
        (
            "sector-size",
            u64::from(before.sector_size),
            u64::from(after.sector_size),
        ),
        ("sectors", before.sectors, after.sectors),
        (
            "read-only",
            u64::from(before.read_only),
            u64::from(after.read_only),
        ),
    ];
    match pairs.into_iter().find(|(_, b, a)| b != a) {
        Some((what, before, after)) => Err(GeometryChanged {
            what,
            before,
            after,
        }),
        None => Ok(()),
    }
}
