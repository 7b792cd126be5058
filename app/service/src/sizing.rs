//! How much memory the appliance's sockets and disks take, decided from the memory the
//! domain has: socket buffers, the connection pool (`tcp_max=`), the listeners' backlog
//! (`tcp_listen=`), UDP echo's queues and each disk's data pool, after the fixed costs
//! (each vif's ring and buffer pages, each disk's ring, a reserve for the rest of the
//! heap).
//!
//! The rule ([`size`]):
//! - the **socket budget** is the free memory less the fixed costs ([`Costs`]) and the
//!   disks' data pools (blkfront's 4 MiB at full size, halved with the buffers down to
//!   [`MIN_DISK_POOL`] pages);
//! - the **buffers** (and the disks' pools) are the defaults ([`BUFFER`],
//!   [`STREAM_BUFFER`], [`SMALL_BUFFER`], UDP 512 KiB each way) halved step by step
//!   ([`Sizes::shift`], at most [`MAX_SHIFT`]) until [`MIN_POOL`] sockets on every port
//!   of every vif fit in the budget at once, so a small domain serves every service with
//!   smaller windows rather than refusing them;
//! - the **connection pool** is `tcp_max=` (default 128) but at most what one port's
//!   buffers fit in the budget (a flood on one service cannot take more than there is);
//!   the backlog is at most a quarter of the pool;
//! - an override (`sock_kib=N`: the streaming buffer, the others in proportion; an
//!   explicit `tcp_max=`) is taken as asked, and refused ([`NoFit`]) when its
//!   [`MIN_POOL`] (or its pool, if smaller) does not fit; so is a domain where even the
//!   smallest buffers do not.
//!
//! ```
//! use xenpv_appliance_service::sizing::{size, Ask, Costs, Memory};
//! let mem = Memory { total: 256 << 20, free: 240 << 20, target: None };
//! let s = size(mem, &Costs::for_vifs(1, 2 << 20), &Ask::default()).unwrap();
//! assert_eq!((s.shift, s.max), (0, 128)); // the defaults
//! let small = Memory { total: 16 << 20, free: 5 << 20, target: None };
//! let s = size(small, &Costs::for_vifs(1, 2 << 20), &Ask::default()).unwrap();
//! assert!(s.shift > 0 && s.max >= 16);
//! ```

use core::fmt;

/// Socket buffers of an echo connection, each way: a window of several of dom0's GSO
/// acknowledgements (throughput is window / round trip: 256 KiB measured 73 Mbit/s of
/// single-stream echo in the emulated box, 128 KiB 50). Sockets whose buffers the heap
/// cannot give are not made (the listener counts `no_memory`), so a flood costs
/// connections, never the guest.
pub const BUFFER: usize = 256 * 1024;
/// The buffer of the direction a service streams in (discard's receive side, HTTP's
/// transmit side), and of the other direction: the polled appliance's sizes.
pub const STREAM_BUFFER: usize = 1024 * 1024;
/// The buffer of the direction a service hardly uses (a request head, discard's replies).
pub const SMALL_BUFFER: usize = 4 * 1024;

/// Sockets every port of every vif can hold at once, whatever the domain's size (the
/// backlog and a dozen connections: the boot rows' 8 echo clients at once fit).
pub const MIN_POOL: usize = 16;
/// The most the buffers are halved (the streaming buffer 1 MiB down to 16 KiB).
pub const MAX_SHIFT: u32 = 6;
/// The default connection pool per port (`tcp_max=`, `Limits::DEFAULT`).
pub const DEFAULT_POOL: usize = 128;
/// UDP echo's queue each way at full size: eight of the largest datagrams.
pub const UDP_BYTES: usize = 8 * 65_536;
/// UDP echo's queue each way at least: one whole 65,507-byte datagram.
pub const UDP_MIN_BYTES: usize = 65_536;
/// Heap kept for everything but the socket buffers (each connection's future and copy
/// buffer, smoltcp's socket set, IPv4 reassembly, request heads).
pub const RESERVE: u64 = 1 << 20;
/// The least a buffer is: a page (below it smoltcp's window is too small to matter).
const MIN_BUFFER: usize = 4096;
/// The least data pool a disk is given, in pages (4 requests of 16 KiB in flight).
pub const MIN_DISK_POOL: usize = 16;
/// The least `sock_kib=` takes, and the most.
pub const SOCK_KIB: (u64, u64) = (16, 16 * 1024);

/// The domain's memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// What it has (start_info's nr_pages less what the balloon gave back).
    pub total: u64,
    /// What is free now (the frame allocator's free frames).
    pub free: u64,
    /// The balloon's target, if one was read: memory above it goes back to Xen, so it is
    /// not the appliance's to size into.
    pub target: Option<u64>,
}

impl Memory {
    /// The memory the domain keeps: its own, or the balloon's target if lower.
    pub fn kept(&self) -> u64 {
        self.target.map_or(self.total, |t| t.min(self.total))
    }

    /// What is free and stays: the free memory less what the balloon is to give back.
    pub fn usable(&self) -> u64 {
        self.free.saturating_sub(self.total - self.kept())
    }
}

/// What the appliance takes besides its socket buffers, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    /// Vifs it brings up.
    pub vifs: usize,
    /// Each vif's ring and buffer pages and its frame scratch.
    pub per_vif: u64,
    /// Disks it brings up.
    pub disks: usize,
    /// Each disk's pages besides its data pool (ring, indirect pages), in bytes.
    pub per_disk: u64,
    /// A disk's data pool at full size, in pages (blkfront's largest); it is halved with
    /// the buffers ([`Sizes::disk_pool`]).
    pub disk_pool: usize,
    /// The rest of the heap ([`RESERVE`]).
    pub reserve: u64,
}

impl Costs {
    /// `vifs` vifs of `per_vif` bytes each, no disk, the [`RESERVE`].
    pub fn for_vifs(vifs: usize, per_vif: u64) -> Costs {
        Costs {
            vifs,
            per_vif,
            disks: 0,
            per_disk: 0,
            disk_pool: 0,
            reserve: RESERVE,
        }
    }

    /// All of it but the disks' data pools.
    pub fn total(&self) -> u64 {
        (self.vifs as u64)
            .saturating_mul(self.per_vif)
            .saturating_add((self.disks as u64).saturating_mul(self.per_disk))
            .saturating_add(self.reserve)
    }
}

/// What the command line asks (`None`: sized to memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// `sock_kib=N`: the streaming buffer in KiB (the others in proportion).
    pub sock_kib: Option<u64>,
    /// `tcp_max=N`, given on the command line.
    pub max: Option<usize>,
    /// `tcp_listen=N` (default 4).
    pub listen: Option<usize>,
}

/// The chosen sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// How many times the default buffers were halved.
    pub shift: u32,
    /// Echo's buffers each way (port 7).
    pub echo: usize,
    /// The direction a service streams in (discard's receive, HTTP's transmit).
    pub stream: usize,
    /// The direction a service hardly uses.
    pub small: usize,
    /// UDP echo's queue each way, bytes.
    pub udp: usize,
    /// Sockets per port, listening or connected (`tcp_max`).
    pub max: usize,
    /// Listening sockets kept ready per port (`tcp_listen`).
    pub listen: usize,
    /// Each disk's data pool, in pages (blkfront's `set_pool_pages`).
    pub disk_pool: usize,
    /// The socket budget: free memory less the fixed costs and the disks' pools.
    pub budget: u64,
}

impl Sizes {
    /// The full-size buffers and the default pool (a large domain's choice).
    pub const FULL: Sizes = Sizes {
        shift: 0,
        echo: BUFFER,
        stream: STREAM_BUFFER,
        small: SMALL_BUFFER,
        udp: UDP_BYTES,
        max: DEFAULT_POOL,
        listen: 4,
        disk_pool: 1024,
        budget: 0,
    };

    /// Bytes of one socket on each of the three TCP ports (echo, discard, HTTP).
    pub fn per_triple(&self) -> u64 {
        (2 * self.echo + 2 * (self.stream + self.small)) as u64
    }

    /// Bytes of `n` sockets on every port of `vifs` vifs, and UDP echo's queues.
    pub fn sockets(&self, n: usize, vifs: usize) -> u64 {
        let per_vif = self.per_triple() * n as u64 + 2 * self.udp as u64;
        per_vif * vifs as u64
    }
}

/// Why a configuration does not fit: what it needs and what there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoFit {
    /// What was asked (`sockets` for the smallest sizing, or the override).
    pub what: &'static str,
    /// Bytes it needs besides the fixed costs.
    pub need: u64,
    /// Bytes free for it (free memory less the fixed costs; 0 if they do not fit).
    pub free: u64,
    /// The fixed costs.
    pub fixed: u64,
    /// The domain's memory (the balloon's target if lower).
    pub total: u64,
}

/// Bytes as MiB, rounded up for a need (`up`) and down for what there is.
fn mib(b: u64, up: bool) -> u64 {
    if up {
        b.div_ceil(1 << 20)
    } else {
        b >> 20
    }
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "does not fit: {} need {} KiB ({} MiB), {} KiB free of {} MiB after {} KiB of vif pages, disk pools and heap reserve",
            self.what,
            self.need.div_ceil(1024),
            mib(self.need, true),
            self.free >> 10,
            mib(self.total, false),
            self.fixed.div_ceil(1024)
        )
    }
}

/// The buffers at `shift`: the defaults halved that many times (at least a page; UDP at
/// least one whole datagram; a disk's pool at least [`MIN_DISK_POOL`] pages), and the
/// socket budget that leaves of `budget` (after `disks` pools).
fn at_shift(shift: u32, budget: u64, c: &Costs, listen: usize) -> Sizes {
    let half = |b: usize| (b >> shift).max(MIN_BUFFER);
    let disk_pool = (c.disk_pool >> shift).max(MIN_DISK_POOL).min(c.disk_pool);
    let pools = (c.disks * disk_pool) as u64 * 4096;
    Sizes {
        shift,
        echo: half(BUFFER),
        stream: half(STREAM_BUFFER),
        small: SMALL_BUFFER,
        udp: (UDP_BYTES >> shift).max(UDP_MIN_BYTES),
        max: 0,
        listen,
        disk_pool,
        budget: budget.saturating_sub(pools),
    }
}

/// The shift a `sock_kib=` override asks for: the streaming buffer at most `kib`.
fn shift_for_kib(kib: u64) -> u32 {
    let want = (kib as usize).saturating_mul(1024);
    (0..=MAX_SHIFT + 4)
        .find(|s| STREAM_BUFFER >> s <= want)
        .unwrap_or(MAX_SHIFT + 4)
}

/// Decide the sizes for `mem` after `costs`, taking `ask`'s overrides; [`NoFit`] when
/// what is asked (or the smallest sizing) does not fit. See the module's rule.
pub fn size(mem: Memory, costs: &Costs, ask: &Ask) -> Result<Sizes, NoFit> {
    let fixed = costs.total();
    let free = mem.usable();
    let budget = free.saturating_sub(fixed);
    let listen = ask.listen.unwrap_or(4);
    let nofit = |what, need| NoFit {
        what,
        need,
        free: budget,
        fixed,
        total: mem.kept(),
    };
    if fixed > free {
        return Err(nofit("vifs, disks and heap reserve", fixed - free));
    }
    let vifs = costs.vifs.max(1);
    // The sockets that must fit at once: the guaranteed pool, or an explicit smaller one.
    let floor = ask.max.map_or(MIN_POOL, |m| m.min(MIN_POOL)).max(listen);
    let sized = |shift| at_shift(shift, budget, costs, listen);
    let (shift, what) = match ask.sock_kib {
        Some(kib) => (shift_for_kib(kib), "sockets (sock_kib=)"),
        None => {
            let fits = |s: &u32| sized(*s).sockets(floor, vifs) <= sized(*s).budget;
            let what = if costs.disks > 0 {
                "sockets and disk pools"
            } else {
                "sockets"
            };
            ((0..=MAX_SHIFT).find(fits).unwrap_or(MAX_SHIFT), what)
        }
    };
    let s = sized(shift);
    let need = s.sockets(floor, vifs);
    if need > s.budget {
        // What it needs besides the fixed costs: the sockets and the disks' pools.
        return Err(nofit(what, need + (budget - s.budget)));
    }
    let budget = s.budget;
    // One port's pool fits the budget by itself (with UDP's queues).
    let port_max = (s.stream + s.small).max(2 * s.echo) as u64;
    let room = budget.saturating_sub(2 * s.udp as u64 * vifs as u64);
    let fit = (room / (port_max * vifs as u64)) as usize;
    let max = match ask.max {
        Some(m) if m > fit => {
            let need = port_max * (m * vifs) as u64 + 2 * s.udp as u64 * vifs as u64;
            return Err(nofit("tcp_max= sockets", need));
        }
        Some(m) => m,
        None => fit.min(DEFAULT_POOL),
    };
    let listen = match ask.listen {
        Some(l) => l,
        None => listen.min((max / 4).max(1)),
    };
    Ok(Sizes { max, listen, ..s })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    const MIB: u64 = 1 << 20;
    /// A vif as the runtime has it: 514 pages and 128 KiB of frame scratch.
    const VIF: u64 = 514 * 4096 + 128 * 1024;

    fn mem(total: u64, free: u64) -> Memory {
        Memory {
            total,
            free,
            target: None,
        }
    }

    fn one_vif() -> Costs {
        Costs::for_vifs(1, VIF)
    }

    #[test]
    fn a_large_domain_keeps_the_defaults() {
        let s = size(mem(256 * MIB, 240 * MIB), &one_vif(), &Ask::default()).unwrap();
        assert_eq!(
            (s.echo, s.stream, s.small, s.udp),
            (BUFFER, STREAM_BUFFER, SMALL_BUFFER, UDP_BYTES)
        );
        assert_eq!((s.max, s.listen), (DEFAULT_POOL, 4));
    }

    #[test]
    fn smaller_domains_get_smaller_buffers_and_the_guaranteed_pool_fits() {
        let mut last = u32::MAX;
        for free_mib in [240u64, 64, 32, 16, 8, 6, 5] {
            let m = mem(free_mib * MIB + 10 * MIB, free_mib * MIB);
            let s = size(m, &one_vif(), &Ask::default()).unwrap();
            // Every port holds MIN_POOL sockets at once, with UDP's queues.
            assert!(s.sockets(MIN_POOL, 1) <= s.budget, "{free_mib} MiB: {s:?}");
            assert!(s.max >= MIN_POOL && s.max <= DEFAULT_POOL, "{s:?}");
            assert!(s.listen >= 1 && s.listen <= 4);
            assert!(s.udp >= UDP_MIN_BYTES);
            // One port's whole pool fits too.
            let port = (s.stream + s.small).max(2 * s.echo) as u64;
            assert!(port * s.max as u64 + 2 * s.udp as u64 <= s.budget, "{s:?}");
            // Less memory never means larger buffers.
            if last != u32::MAX {
                assert!(
                    s.shift >= last,
                    "{free_mib} MiB: shift {} < {last}",
                    s.shift
                );
            }
            last = s.shift;
        }
        assert!(last > 0, "4 MiB free cannot keep the 1 MiB buffers");
    }

    #[test]
    fn the_sizes_follow_the_memory_not_a_constant() {
        let at = |free| size(mem(16 * MIB, free), &one_vif(), &Ask::default()).unwrap();
        assert!(at(5 * MIB).stream < at(64 * MIB).stream);
        assert!(at(5 * MIB).max < at(200 * MIB).max);
    }

    #[test]
    fn too_little_memory_is_refused_naming_the_need_and_what_there_is() {
        let m = mem(12 * MIB, 2 * MIB);
        let e = size(m, &one_vif(), &Ask::default()).unwrap_err();
        assert_eq!(e.what, "vifs, disks and heap reserve");
        assert_eq!(e.total, 12 * MIB);
        assert!(e
            .to_string()
            .starts_with("does not fit: vifs, disks and heap reserve need "));
        assert!(e.to_string().contains("free of 12 MiB"), "{e}");
        // Room for the vif but not for the smallest sockets.
        let m = mem(12 * MIB, VIF + RESERVE + 256 * 1024);
        let e = size(m, &one_vif(), &Ask::default()).unwrap_err();
        assert_eq!(e.what, "sockets");
        assert!(e.need > e.free, "{e:?}");
        assert_eq!(e.free, 256 * 1024);
        assert_eq!(
            e.to_string(),
            format!(
                "does not fit: sockets need {} KiB ({} MiB), 256 KiB free of 12 MiB after {} KiB of vif pages, disk pools and heap reserve",
                e.need / 1024,
                e.need.div_ceil(MIB),
                (VIF + RESERVE) / 1024
            )
        );
    }

    #[test]
    fn overrides_are_taken_or_refused_clearly() {
        let small = mem(16 * MIB, 5 * MIB);
        // A smaller buffer than memory allows is taken.
        let ask = Ask {
            sock_kib: Some(32),
            ..Ask::default()
        };
        let s = size(small, &one_vif(), &ask).unwrap();
        assert_eq!(s.stream, 32 * 1024);
        // The default 1 MiB stream buffers with 16 sockets a port do not fit in 16 MiB.
        let ask = Ask {
            sock_kib: Some(1024),
            ..Ask::default()
        };
        let e = size(small, &one_vif(), &ask).unwrap_err();
        assert_eq!(e.what, "sockets (sock_kib=)");
        assert!(e.need > 16 * MIB);
        // An explicit pool larger than fits is refused; one that fits is kept.
        let ask = Ask {
            max: Some(1024),
            ..Ask::default()
        };
        assert_eq!(
            size(small, &one_vif(), &ask).unwrap_err().what,
            "tcp_max= sockets"
        );
        let ask = Ask {
            max: Some(8),
            listen: Some(2),
            ..Ask::default()
        };
        let s = size(small, &one_vif(), &ask).unwrap();
        assert_eq!((s.max, s.listen), (8, 2));
        // The large domain keeps an explicit pool above the default.
        let big = mem(1024 * MIB, 1000 * MIB);
        let ask = Ask {
            max: Some(300),
            ..Ask::default()
        };
        assert_eq!(size(big, &one_vif(), &ask).unwrap().max, 300);
    }

    #[test]
    fn disks_and_more_vifs_cost_their_share() {
        let m = mem(32 * MIB, 20 * MIB);
        let one = size(m, &one_vif(), &Ask::default()).unwrap();
        let mut c = Costs::for_vifs(2, VIF);
        c.disks = 1;
        c.per_disk = 64 * 4096;
        c.disk_pool = 1024;
        let two = size(m, &c, &Ask::default()).unwrap();
        assert!(two.budget < one.budget);
        assert!(two.sockets(MIN_POOL, 2) <= two.budget);
        assert!(two.shift >= one.shift);
        // The disk's pool is halved with the buffers, and counted.
        assert_eq!(two.disk_pool, (1024 >> two.shift).max(MIN_DISK_POOL));
        let fixed = c.total() + two.disk_pool as u64 * 4096;
        assert_eq!(two.budget, m.free - fixed);
        // A large domain keeps the whole pool; too small a one says what it needs.
        let big = size(mem(256 * MIB, 240 * MIB), &c, &Ask::default()).unwrap();
        assert_eq!(big.disk_pool, 1024);
        let e = size(mem(16 * MIB, 6 * MIB), &c, &Ask::default()).unwrap_err();
        assert_eq!(e.what, "sockets and disk pools");
        assert!(e.need > e.free, "{e:?}");
    }

    #[test]
    fn memory_the_balloon_gives_back_is_not_sized_into() {
        let full = size(mem(64 * MIB, 50 * MIB), &one_vif(), &Ask::default()).unwrap();
        let ballooned = Memory {
            target: Some(24 * MIB),
            ..mem(64 * MIB, 50 * MIB)
        };
        assert_eq!(ballooned.usable(), 10 * MIB);
        let s = size(ballooned, &one_vif(), &Ask::default()).unwrap();
        assert!(s.budget < full.budget && s.shift > full.shift, "{s:?}");
        // A target above the memory (or none) changes nothing; one too low is refused.
        let above = Memory {
            target: Some(128 * MIB),
            ..mem(64 * MIB, 50 * MIB)
        };
        assert_eq!(size(above, &one_vif(), &Ask::default()), Ok(full));
        let low = Memory {
            target: Some(16 * MIB),
            ..mem(64 * MIB, 50 * MIB)
        };
        let e = size(low, &one_vif(), &Ask::default()).unwrap_err();
        assert_eq!(e.total, 16 * MIB);
        assert!(e.to_string().contains("free of 16 MiB"), "{e}");
    }

    #[test]
    fn sock_kib_rounds_down_to_a_halving() {
        for (kib, shift) in [(1024, 0), (1000, 1), (512, 1), (16, 6)] {
            assert_eq!(shift_for_kib(kib), shift, "sock_kib={kib}");
        }
    }
}
