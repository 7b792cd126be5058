//! Guest metrics in xenstore, as a Linux guest's agent publishes them (the
//! xen-guest-agent's "std" schema, which XAPI and Xen Orchestra read, and
//! xe-guest-utilities' `data/updated`), decided here as pure values: from a
//! [`Snapshot`] of the guest, the batch of writes and removes that brings what dom0 sees
//! up to date, diffed against what was last published.
//!
//! The keys, relative to the domain's home (`/local/domain/<domid>/`):
//!
//! | key | value |
//! | --- | --- |
//! | `attr/PVAddons/Installed` | `1` |
//! | `attr/PVAddons/{Major,Minor,Micro}Version` | `1`, `0`, `0`: the agent's pseudo version (XO shows nothing for a major of 0, XAPI `-1` when a key is missing) |
//! | `attr/PVAddons/BuildVersion` | `xenpv-rt-<version>` |
//! | `data/os_distro` | `xenpv-rt` |
//! | `data/os_name` | `xenpv-rt <version>` |
//! | `data/os_majorver`, `data/os_minorver` | the version's first two numbers |
//! | `data/os_uname` | `<version>` |
//! | `data/meminfo_total`, `data/meminfo_free` | kB, decimal |
//! | `attr/vif/<devid>` | `""` while the vif exists |
//! | `attr/vif/<devid>/ipv4/<slot>` | `A.B.C.D`, one per address |
//! | `data/updated` | after each batch: the time (`Mon Jan  2 15:04:05 2006`, UTC) or, without a wall clock, the batch's number |
//!
//! Slots are stable as the agent keeps them: an address keeps its slot while it stays,
//! a new one takes the lowest free slot, one that went away is removed. The first batch
//! removes `attr/vif` whole first (what the agent does at start), so nothing of an
//! earlier life of the domain stays.
//!
//! Everything is bounded: at most [`MAX_VIFS`] vifs and [`MAX_IPV4`] addresses each
//! (more are counted in [`Plan::refused`] and left out), values at most [`VALUE_MAX`]
//! bytes of printable ASCII (a version string from elsewhere is cleaned, see
//! [`printable`]).
//!
//! ```
//! use xenpv_protocol::metrics::{Op, Publisher, Snapshot, VifAddrs};
//!
//! let vifs = [VifAddrs::new(0, &[[169, 254, 100, 2]])];
//! let snap = Snapshot { version: "0.1.0", mem_total_kb: 262144, mem_free_kb: 200000,
//!                       vifs: &vifs, unix_time_s: None };
//! let mut p = Publisher::new();
//! let plan = p.plan(&snap, false);
//! assert!(plan.ops.iter().any(|op| matches!(op, Op::Write(k, v)
//!     if k.path() == "attr/vif/0/ipv4/0" && v == "169.254.100.2")));
//! p.commit(plan);
//! // Nothing changed: nothing to write (not even data/updated).
//! assert!(p.plan(&snap, false).ops.is_empty());
//! ```

use crate::ring::Link;
use crate::xenstore::{Xenstore, XsError};
use core::fmt::{self, Write as _};

/// Vifs published at most (the runtime's own limit on vifs).
pub const MAX_VIFS: usize = 8;
/// IPv4 addresses published per vif at most (the agent's `NUM_IFACE_IPS`).
pub const MAX_IPV4: usize = 10;
/// Longest value written, in bytes.
pub const VALUE_MAX: usize = 48;
/// Longest version string kept (cut beyond, on a character boundary).
pub const VERSION_MAX: usize = 24;
/// Longest key (`attr/vif/4294967295/ipv4/9` and the fixed keys fit).
pub const PATH_MAX: usize = 40;
/// The fixed keys written once ([`Publisher::plan`]'s statics).
const STATICS: usize = 10;
/// Operations in one batch at most: the first batch's removal of `attr/vif`, the
/// statics, the two memory figures, a removal per vif gone, a vif node and its slots per
/// vif, and `data/updated`.
pub const MAX_OPS: usize = 1 + STATICS + 2 + MAX_VIFS + MAX_VIFS * (1 + MAX_IPV4) + 1;

/// The name the guest gives itself (`data/os_distro`, the start of `data/os_name`).
pub const OS_NAME: &str = "xenpv-rt";

/// A key, relative to the domain's home path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A fixed key (`data/meminfo_free`, …).
    Fixed(&'static str),
    /// `attr/vif`, every vif's node at once.
    AllVifs,
    /// `attr/vif/<devid>`.
    Vif(u32),
    /// `attr/vif/<devid>/ipv4/<slot>`.
    Ipv4(u32, u8),
}

impl Key {
    /// The key as a xenstore path.
    pub fn path(&self) -> heapless::String<PATH_MAX> {
        let mut s = heapless::String::new();
        // Every key fits PATH_MAX (the longest is `attr/vif/4294967295/ipv4/255`).
        let _ = write!(s, "{self}");
        s
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Key::Fixed(k) => f.write_str(k),
            Key::AllVifs => f.write_str("attr/vif"),
            Key::Vif(d) => write!(f, "attr/vif/{d}"),
            Key::Ipv4(d, s) => write!(f, "attr/vif/{d}/ipv4/{s}"),
        }
    }
}

/// A value written: at most [`VALUE_MAX`] bytes.
pub type Value = heapless::String<VALUE_MAX>;

/// One xenstore operation of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write the value at the key.
    Write(Key, Value),
    /// Remove the key and what is under it (a key that is not there is no error).
    Remove(Key),
}

/// A vif's addresses, as the guest has them now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifAddrs {
    /// The vif's device id (`device/vif/<devid>`).
    pub devid: u32,
    /// Its IPv4 addresses (the first [`MAX_IPV4`]; the rest are counted as refused).
    pub ipv4: heapless::Vec<[u8; 4], MAX_IPV4>,
    /// Addresses beyond [`MAX_IPV4`] left out.
    pub ipv4_over: u32,
}

impl VifAddrs {
    /// Vif `devid` with `addrs` (the first [`MAX_IPV4`] kept, duplicates once).
    pub fn new(devid: u32, addrs: &[[u8; 4]]) -> VifAddrs {
        let mut v = VifAddrs {
            devid,
            ipv4: heapless::Vec::new(),
            ipv4_over: 0,
        };
        for a in addrs {
            if v.ipv4.contains(a) {
                continue;
            }
            if v.ipv4.push(*a).is_err() {
                v.ipv4_over += 1;
            }
        }
        v
    }
}

/// What the guest is now: what a batch publishes.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    /// The runtime's version (`0.1.0`; cleaned by [`printable`], at most
    /// [`VERSION_MAX`] bytes).
    pub version: &'a str,
    /// Memory the domain has now, in kB.
    pub mem_total_kb: u64,
    /// Memory free in the guest, in kB.
    pub mem_free_kb: u64,
    /// The vifs (the first [`MAX_VIFS`] by position; more are counted as refused).
    pub vifs: &'a [VifAddrs],
    /// Wall-clock time in seconds since 1970 (UTC), if the guest knows it: the value of
    /// `data/updated`.
    pub unix_time_s: Option<u64>,
}

/// What a snapshot held that could not be published (the limits above).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// Vifs beyond [`MAX_VIFS`].
    pub vifs: u32,
    /// Addresses beyond [`MAX_IPV4`] on a vif.
    pub addrs: u32,
}

/// A vif as published: its slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PubVif {
    devid: u32,
    slots: [Option<[u8; 4]>; MAX_IPV4],
}

/// What has been published (or will be, once a plan is committed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    /// The fixed keys' version, once written.
    version: Option<heapless::String<VERSION_MAX>>,
    total_kb: Option<u64>,
    free_kb: Option<u64>,
    vifs: heapless::Vec<PubVif, MAX_VIFS>,
    batches: u64,
}

/// A batch to apply: [`Self::ops`] in order, then [`Publisher::commit`] if they all
/// went through.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The writes and removes, `data/updated` last; empty if nothing changed.
    pub ops: heapless::Vec<Op, MAX_OPS>,
    /// What the snapshot held beyond the limits, left out.
    pub refused: Refused,
    next: State,
}

impl Plan {
    /// Keys written or removed, `data/updated` not counted.
    pub fn keys(&self) -> usize {
        self.ops.len().saturating_sub(1)
    }
}

/// What has been published so far, and the diff to the next snapshot.
#[derive(Clone, Debug, Default)]
pub struct Publisher {
    done: State,
}

impl Publisher {
    /// Nothing published yet: the first plan writes everything (and clears `attr/vif`).
    pub fn new() -> Publisher {
        Publisher::default()
    }

    /// Batches committed so far.
    pub fn batches(&self) -> u64 {
        self.done.batches
    }

    /// The batch that takes dom0's view from what was last committed to `snap`; with
    /// `full`, every current key is written again even if unchanged (a refresh in case
    /// something else changed them).
    pub fn plan(&self, snap: &Snapshot<'_>, full: bool) -> Plan {
        let mut ops = heapless::Vec::new();
        let mut push = |op| {
            // MAX_OPS bounds what one plan can hold (see its definition).
            let _ = ops.push(op);
        };
        let old = &self.done;
        let first = old.batches == 0;
        if first {
            push(Op::Remove(Key::AllVifs));
        }
        let mut next = State {
            version: Some(version_of(snap.version)),
            total_kb: Some(snap.mem_total_kb),
            free_kb: Some(snap.mem_free_kb),
            vifs: heapless::Vec::new(),
            batches: old.batches,
        };
        if full || old.version != next.version {
            statics(next.version.as_deref().unwrap_or(""), &mut push);
        }
        if full || old.total_kb != next.total_kb {
            push(Op::Write(
                Key::Fixed("data/meminfo_total"),
                num(snap.mem_total_kb),
            ));
        }
        if full || old.free_kb != next.free_kb {
            push(Op::Write(
                Key::Fixed("data/meminfo_free"),
                num(snap.mem_free_kb),
            ));
        }
        let mut refused = Refused::default();
        for v in snap.vifs {
            refused.addrs += v.ipv4_over;
            if next.vifs.iter().any(|p| p.devid == v.devid) {
                continue; // a devid twice: the first one counts
            }
            let was = old.vifs.iter().find(|p| p.devid == v.devid);
            let now = PubVif {
                devid: v.devid,
                slots: slots(was.map(|p| &p.slots), &v.ipv4),
            };
            if next.vifs.push(now).is_err() {
                refused.vifs += 1;
                continue;
            }
            vif_ops(was, &now, full, &mut push);
        }
        for p in &old.vifs {
            if !next.vifs.iter().any(|n| n.devid == p.devid) {
                push(Op::Remove(Key::Vif(p.devid)));
            }
        }
        if !ops.is_empty() {
            next.batches += 1;
            let _ = ops.push(Op::Write(
                Key::Fixed("data/updated"),
                updated(snap.unix_time_s, next.batches),
            ));
        }
        Plan { ops, refused, next }
    }

    /// The plan's operations all went through: it is what dom0 sees now.
    pub fn commit(&mut self, plan: Plan) {
        self.done = plan.next;
    }
}

/// Times [`apply`] starts its transaction again after xenstored's `EAGAIN`.
pub const TX_ATTEMPTS: u32 = 3;

/// Apply `ops` in one xenstore transaction (dom0 sees the whole batch or none of it),
/// started again up to [`TX_ATTEMPTS`] times when another writer got in first. An
/// error aborts the transaction (nothing of it lands) and is returned; the caller keeps
/// its [`Publisher`] uncommitted, so the next plan does it all again.
pub fn apply<L: Link>(xs: &mut Xenstore<L>, ops: &[Op]) -> Result<(), XsError> {
    if ops.is_empty() {
        return Ok(());
    }
    for _ in 0..TX_ATTEMPTS {
        let tx = xs.transaction_start()?;
        let r = ops.iter().try_for_each(|op| match op {
            Op::Write(k, v) => xs.write_in(tx, &k.path(), v.as_bytes()),
            Op::Remove(k) => xs.remove_in(tx, &k.path()),
        });
        if let Err(e) = r {
            let _ = xs.transaction_end(tx, false);
            return Err(e);
        }
        if xs.transaction_end(tx, true)? {
            return Ok(());
        }
    }
    let mut e = heapless::String::new();
    let _ = e.push_str("EAGAIN");
    Err(XsError::Xenstore(e))
}

/// The fixed keys for `version`.
fn statics(version: &str, push: &mut impl FnMut(Op)) {
    let (major, minor) = major_minor(version);
    let mut put = |k: &'static str, args: fmt::Arguments<'_>| {
        let mut v = Value::new();
        // Every value is a short constant and a version of at most VERSION_MAX bytes.
        let _ = v.write_fmt(args);
        push(Op::Write(Key::Fixed(k), v));
    };
    put("attr/PVAddons/Installed", format_args!("1"));
    put("attr/PVAddons/MajorVersion", format_args!("1"));
    put("attr/PVAddons/MinorVersion", format_args!("0"));
    put("attr/PVAddons/MicroVersion", format_args!("0"));
    put(
        "attr/PVAddons/BuildVersion",
        format_args!("{OS_NAME}-{version}"),
    );
    put("data/os_distro", format_args!("{OS_NAME}"));
    put("data/os_name", format_args!("{OS_NAME} {version}"));
    put("data/os_majorver", format_args!("{major}"));
    put("data/os_minorver", format_args!("{minor}"));
    put("data/os_uname", format_args!("{version}"));
}

/// The ops that take a vif from `was` (`None`: not published) to `now` (with `full`,
/// its node and every address written again).
fn vif_ops(was: Option<&PubVif>, now: &PubVif, full: bool, push: &mut impl FnMut(Op)) {
    if full || was.is_none() {
        push(Op::Write(Key::Vif(now.devid), Value::new()));
    }
    for (i, slot) in now.slots.iter().enumerate() {
        let before = was.and_then(|w| w.slots[i]);
        let key = Key::Ipv4(now.devid, i as u8);
        match (*slot, before) {
            (Some(a), b) if full || b != Some(a) => push(Op::Write(key, ipv4(a))),
            (None, Some(_)) => push(Op::Remove(key)),
            _ => {}
        }
    }
}

/// The slots for `addrs`: an address published before keeps its slot, a new one takes
/// the lowest free slot, one gone frees its slot.
fn slots(
    was: Option<&[Option<[u8; 4]>; MAX_IPV4]>,
    addrs: &[[u8; 4]],
) -> [Option<[u8; 4]>; MAX_IPV4] {
    let mut s = [None; MAX_IPV4];
    if let Some(w) = was {
        for (i, a) in w.iter().enumerate() {
            if let Some(a) = a.filter(|a| addrs.contains(a)) {
                s[i] = Some(a);
            }
        }
    }
    for a in addrs {
        if s.contains(&Some(*a)) {
            continue;
        }
        if let Some(free) = s.iter_mut().find(|x| x.is_none()) {
            *free = Some(*a);
        }
    }
    s
}

/// `version` made printable and bounded.
fn version_of(version: &str) -> heapless::String<VERSION_MAX> {
    let mut s = heapless::String::new();
    for c in printable(version) {
        if s.push(c).is_err() {
            break;
        }
    }
    if s.is_empty() {
        let _ = s.push_str("unknown");
    }
    s
}

/// `s` as xenstore values should be (7-bit printable ASCII, `docs/misc/xenstore.txt`):
/// every other character, and a space at either end, becomes `?`.
pub fn printable(s: &str) -> impl Iterator<Item = char> + '_ {
    let last = s.chars().count().saturating_sub(1);
    s.chars().enumerate().map(move |(i, c)| {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if c.is_ascii_graphic() || (c == ' ' && !edge_space) {
            c
        } else {
            '?'
        }
    })
}

/// A version's first two numbers (`0.1.0` → `0`, `1`); `0` for a part that is not one.
fn major_minor(version: &str) -> (u64, u64) {
    let mut it = version.split(['.', '-', '+']);
    let mut n = || it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let major = n();
    (major, n())
}

fn num(n: u64) -> Value {
    let mut v = Value::new();
    let _ = write!(v, "{n}");
    v
}

fn ipv4(a: [u8; 4]) -> Value {
    let mut v = Value::new();
    let _ = write!(v, "{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    v
}

/// `data/updated`: the time as xe-guest-utilities writes it, or the batch's number.
fn updated(unix_time_s: Option<u64>, batch: u64) -> Value {
    let mut v = Value::new();
    match unix_time_s {
        Some(t) => {
            let _ = write!(v, "{}", Date(t));
        }
        None => {
            let _ = write!(v, "{batch}");
        }
    }
    v
}

/// A time in seconds since 1970 (UTC) as `Mon Jan  2 15:04:05 2006` (Go's
/// `Mon Jan _2 15:04:05 2006`, xe-guest-utilities' format for `data/updated`).
pub struct Date(pub u64);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{} {} {:>2} {:02}:{:02}:{:02} {}",
            DAYS[(days % 7) as usize],
            MONTHS[(m - 1) as usize],
            d,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            y
        )
    }
}

/// Days since 1970-01-01 as (year, month 1..=12, day 1..=31): the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`, for days on or after 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}
