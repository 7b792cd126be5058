//! Disks (feature `async`): a virtual disk connected without blocking the executor
//! (blkfront's handshake stepped, as a vif's is), a [`Disk`] handle with the disk's
//! geometry, sector reads and writes and (feature `fs`) its ext2/3/4 filesystem, and a
//! task per disk that closes it when the guest ends.
//!
//! [`Disk::read`] is async: blkfront's read stepped, the task waiting for the disk's
//! event channel or the read's deadline between steps, so other tasks run meanwhile.
//! Writes, flushes, [`Disk::read_blocking`] and the filesystem's reads (ext4-view reads
//! synchronously) are blkfront's blocking calls, which wait in `SCHEDOP_poll`: each
//! blocks the executor until the backend answers, at most the disk's timeout
//! ([`Disk::set_timeout`], [`DEFAULT_TIMEOUT_NS`] at first). The handshake and the
//! close are stepped.

use super::{DeviceError, Devices};
use crate::blk::blkfront::{
    Blkfront, CloseStep, ClosingBlkfront, ConnectStep, Counters, Traffic, Transfer, MAX_DISKS,
};
use crate::blk::{BlockDevice, BlockError, Geometry};
use crate::exec;
use alloc::format;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::fmt;
use embassy_futures::select::{select, select3, Either, Either3};
use embassy_time::{Duration, Instant, Timer};
use xenpv_contract::report::Writer;
use xenpv_protocol::blkfront::check_reattach;

/// The most disks the runtime keeps open at once (tasks in its pool).
pub const MAX_OPEN_DISKS: usize = 8;
/// How long one disk call may wait for the backend until [`Disk::set_timeout`] says
/// otherwise (it blocks the executor meanwhile).
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;

/// Why a disk call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// blkfront's error: a range past the end, a buffer not a whole number of sectors, a
    /// write to a read-only disk, the backend's error status, no answer before the
    /// deadline (`Timeout`), a broken ring.
    Io(BlockError),
    /// The runtime closed the disk (the guest is ending).
    Closed,
    /// Another call on the disk is under way (an async [`Disk::read`] another task
    /// awaits, say).
    Busy,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Io(e) => write!(f, "{e}"),
            DiskError::Closed => f.write_str("the disk is closed (the guest is ending)"),
            DiskError::Busy => f.write_str("another call on the disk is under way"),
        }
    }
}

impl core::error::Error for DiskError {}

impl From<BlockError> for DiskError {
    fn from(e: BlockError) -> Self {
        DiskError::Io(e)
    }
}

/// As a block device's error: a closed disk is a stopped device.
impl From<DiskError> for BlockError {
    fn from(e: DiskError) -> Self {
        match e {
            DiskError::Io(e) => e,
            DiskError::Closed | DiskError::Busy => BlockError::Broken,
        }
    }
}

/// What a disk's task shares with its [`Disk`]: blkfront (gone once closed), the last
/// counters seen.
struct Shared {
    devices: &'static Devices,
    id: u32,
    /// Kept across a new domain: a backend that offers another is refused.
    geometry: Geometry,
    /// May change in a new domain (its backend may offer other indirect segments).
    request_bytes: Cell<usize>,
    /// The suspend epoch blkfront is connected in (behind [`Devices::epoch`] between a
    /// new domain and the re-attach).
    epoch: Cell<u32>,
    /// Reads re-issued because the guest moved to a new domain under them, since the
    /// last re-attach's report.
    requeued: Cell<u32>,
    /// Why the disk failed in a new domain (its backend refused or changed).
    failed: Cell<Option<&'static str>>,
    /// `None` while lent to an async read, and once closed.
    blk: RefCell<Option<Blkfront>>,
    /// An async read holds blkfront.
    lent: Cell<bool>,
    counters: Cell<Counters>,
    traffic: Cell<Traffic>,
}

impl Shared {
    /// Run `f` on blkfront, then copy its counters.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Blkfront) -> Result<R, BlockError>,
    ) -> Result<R, DiskError> {
        // blkfront of an old domain, not re-attached yet: its ring is dead.
        if self.epoch.get() != self.devices.epoch() {
            return Err(DiskError::Io(BlockError::Resumed));
        }
        let mut blk = self.blk.try_borrow_mut().map_err(|_| DiskError::Busy)?;
        let Some(blk) = blk.as_mut() else {
            return Err(self.missing());
        };
        let r = f(blk);
        self.copy_counters(blk);
        Ok(r?)
    }

    /// Why blkfront is not there.
    fn missing(&self) -> DiskError {
        if self.lent.get() {
            DiskError::Busy
        } else if self.failed.get().is_some() {
            DiskError::Io(BlockError::Broken)
        } else {
            DiskError::Closed
        }
    }

    /// Wait until blkfront is connected in the current epoch (the disk's task re-attaches
    /// it after a new domain), at most [`REATTACH_NS`]; the disk's failure or close
    /// instead is an error.
    async fn reconnected(&self) -> Result<(), DiskError> {
        let deadline = crate::time::now_ns().saturating_add(REATTACH_NS);
        loop {
            let here = self.blk.try_borrow().is_ok_and(|b| b.is_some());
            if self.epoch.get() == self.devices.epoch() {
                return if here || self.lent.get() {
                    Ok(())
                } else {
                    Err(self.missing())
                };
            }
            if crate::time::now_ns() >= deadline {
                return Err(DiskError::Io(BlockError::Timeout {
                    waited_ms: REATTACH_NS / 1_000_000,
                }));
            }
            Timer::after(Duration::from_millis(2)).await;
        }
    }

    fn copy_counters(&self, blk: &Blkfront) {
        self.counters.set(blk.counters());
        self.traffic.set(blk.traffic());
    }

    /// Lend blkfront to an async read.
    fn lend(&self) -> Result<Lease<'_>, DiskError> {
        let mut cell = self.blk.try_borrow_mut().map_err(|_| DiskError::Busy)?;
        let blk = cell.take().ok_or_else(|| self.missing())?;
        self.lent.set(true);
        Ok(Lease {
            shared: self,
            blk: Some(blk),
            transfer: None,
        })
    }
}

/// Blkfront lent to an async read: given back when the read ends or its future is
/// dropped (then the read's requests in flight are abandoned).
struct Lease<'a> {
    shared: &'a Shared,
    blk: Option<Blkfront>,
    transfer: Option<Transfer>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut blk) = self.blk.take() {
            if let Some(t) = self.transfer.as_mut() {
                blk.cancel(t);
            }
            self.shared.copy_counters(&blk);
            if let Ok(mut cell) = self.shared.blk.try_borrow_mut() {
                *cell = Some(blk);
            }
        }
        self.shared.lent.set(false);
    }
}

/// A `'static` handle on the disk as a [`BlockDevice`] (what a filesystem keeps).
#[cfg(feature = "fs")]
struct Handle(Rc<Shared>);

#[cfg(feature = "fs")]
impl BlockDevice for Handle {
    fn geometry(&self) -> Geometry {
        self.0.geometry
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        Ok(self.0.call(|b| b.read(sector, buf))?)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        Ok(self.0.call(|b| b.write(sector, buf))?)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(self.0.call(|b| b.flush())?)
    }
}

/// A connected disk ([`Devices::disk`]). The runtime closes it when the guest ends;
/// calls fail with [`DiskError::Closed`] from then on.
pub struct Disk {
    shared: Rc<Shared>,
    index: u32,
}

impl Disk {
    /// The disk's id (`device/vbd/<id>`: 51712 for xvda).
    pub fn id(&self) -> u32 {
        self.shared.id
    }
    /// Its position among the domain's disks (what [`Devices::disk`] was given).
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Its size, sector size and whether it is read-only, as the backend offered them.
    pub fn geometry(&self) -> Geometry {
        self.shared.geometry
    }
    /// Sectors on the disk.
    pub fn sectors(&self) -> u64 {
        self.shared.geometry.sectors
    }
    /// Bytes per sector: the unit of [`Self::read`] and [`Self::write`].
    pub fn sector_size(&self) -> u32 {
        self.shared.geometry.sector_size
    }
    /// Are writes refused?
    pub fn read_only(&self) -> bool {
        self.shared.geometry.read_only
    }
    /// Bytes one request to the backend carries at most (larger calls are split).
    ///
    /// A new domain's backend may offer other indirect segments: this may change after a
    /// restore or a migration (the geometry may not).
    pub fn request_bytes(&self) -> usize {
        self.shared.request_bytes.get()
    }
    /// Responses refused and requests failed (as of the last call).
    pub fn counters(&self) -> Counters {
        self.shared.counters.get()
    }
    /// Requests and bytes (as of the last call).
    pub fn traffic(&self) -> Traffic {
        self.shared.traffic.get()
    }
    /// Has the runtime closed it?
    pub fn is_closed(&self) -> bool {
        !self.shared.lent.get() && self.shared.blk.try_borrow().is_ok_and(|b| b.is_none())
    }

    /// How long one call may wait for the backend from now on (the executor waits
    /// with it).
    pub fn set_timeout(&self, ns: u64) -> Result<(), DiskError> {
        self.shared.call(|b| {
            b.set_timeout(ns);
            Ok(())
        })
    }

    /// Read `buf.len()` bytes (whole sectors) from sector `sector` on, within the
    /// disk's timeout (an error of [`BlockError::Timeout`] past it, never a hang). The
    /// task waits for the backend's event between steps; other tasks run meanwhile.
    /// One async read at a time per disk: a call meanwhile (from another task) is
    /// [`DiskError::Busy`]. Dropping the future abandons the read (its requests'
    /// answers only free their slots, counted).
    ///
    /// A read under way when the guest moves to a new domain (a restore, a migration)
    /// waits for the disk to be connected to the new backend and is issued again whole
    /// (reads are idempotent), counted in the disk's `requeued`.
    pub async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        loop {
            match self.read_once(sector, buf).await {
                Err(DiskError::Io(BlockError::Resumed)) => {
                    let n = self.shared.requeued.get();
                    self.shared.requeued.set(n.saturating_add(1));
                    self.shared.reconnected().await?;
                }
                r => return r,
            }
        }
    }

    /// One go of [`Self::read`]: [`BlockError::Resumed`] if the guest moved to a new
    /// domain before or during it (blkfront handed back to the disk's task).
    async fn read_once(&self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let seen = self.shared.epoch.get();
        if seen != self.shared.devices.epoch() {
            return Err(DiskError::Io(BlockError::Resumed));
        }
        let mut lease = self.shared.lend()?;
        let Some(blk) = lease.blk.as_mut() else {
            return Err(DiskError::Busy);
        };
        let port = blk.port();
        let t = lease.transfer.insert(blk.begin_read(sector, buf.len())?);
        loop {
            // A new domain may wake the port's waiters before its own arm is polled: never
            // step (send, notify) on the old ring then.
            if self.shared.devices.epoch() != seen {
                blk.mark_resumed();
            }
            if let Some(r) = blk.step_read(t, buf) {
                lease.transfer = None;
                return Ok(r?);
            }
            // Microseconds rounded up: a timer that fires before the deadline would
            // only step again for nothing.
            let at = Instant::from_micros(t.deadline().div_ceil(1000));
            let new = self.shared.devices.new_domain(seen);
            if let Either3::Third(_) = select3(exec::event(port), Timer::at(at), new).await {
                // The ring is the old domain's: no answer will come. The next step ends
                // in Resumed, and the lease hands blkfront back to the disk's task.
                blk.mark_resumed();
            }
        }
    }

    /// [`Self::read`] as blkfront's blocking call: the executor waits with it (at most
    /// the disk's timeout).
    pub fn read_blocking(&self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.shared.call(|b| b.read(sector, buf))
    }

    /// Write `buf` (whole sectors) from sector `sector` on: blkfront's blocking call,
    /// as [`Self::read_blocking`] waits.
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.shared.call(|b| b.write(sector, buf))
    }

    /// Flush the backend's cache (or write a barrier).
    pub fn flush(&self) -> Result<(), DiskError> {
        self.shared.call(|b| b.flush())
    }

    /// The disk's ext2/3/4 filesystem (feature `fs`), loaded (superblock checked
    /// against the disk, group descriptors, journal); its files are
    /// [`embedded_io::Read`] + [`embedded_io::Seek`] through
    /// [`Ext4File::open`](crate::blk::ext4::Ext4File::open). It reads through the disk
    /// (and its timeout); once the disk is closed, reads fail (`Broken`).
    #[cfg(feature = "fs")]
    pub fn ext4(&self) -> Result<crate::blk::ext4::ext4_view::Ext4, crate::blk::ext4::FileError> {
        use crate::blk::ext4::Ext4Disk;
        Ok(Ext4Disk(Handle(self.shared.clone())).load()?)
    }
}

/// The disk as a [`BlockDevice`] (for [`read_bytes`](crate::blk::read_bytes), say):
/// blkfront's blocking calls.
impl BlockDevice for Disk {
    fn geometry(&self) -> Geometry {
        self.shared.geometry
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        Ok(Disk::read_blocking(self, sector, buf)?)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        Ok(Disk::write(self, sector, buf)?)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(Disk::flush(self)?)
    }
}

impl Devices {
    /// Connect disk `index`: the `index`-th of the domain's disks by ascending
    /// `device/vbd` id (0 is xvda with one `--disk` of xenpv-run or `disk=` entry of
    /// xl). The handshake waits for the backend without blocking other tasks, at most
    /// 60 s; the runtime closes the disk when the guest ends.
    ///
    /// ```no_run
    /// # async fn f(rt: &'static xenpv_rt::Runtime) -> Result<(), xenpv_rt::device::DeviceError> {
    /// use xenpv_rt::blk::ext4::Ext4File;
    /// use xenpv_rt::embedded_io::Read;
    /// let disk = rt.devices().disk(0).await?;
    /// xenpv_rt::println!("{} sectors of {} bytes", disk.sectors(), disk.sector_size());
    /// let mut first = [0u8; 4096];
    /// let n = disk.sector_size() as usize;
    /// disk.read(0, &mut first[..n]).await.expect("sector 0"); // 10 s at most
    /// // Feature `fs`: its files, through embedded-io.
    /// let fs = disk.ext4().expect("an ext4 filesystem");
    /// let mut motd = Ext4File::open(&fs, "/etc/motd").expect("/etc/motd");
    /// let n = motd.read(&mut first).expect("read");
    /// # Ok(()) }
    /// ```
    pub async fn disk(&'static self, index: u32) -> Result<Disk, DeviceError> {
        if self.is_closing() {
            return Err(DeviceError::Closing);
        }
        let ids = self.with(|c| {
            Blkfront::list(c.xenstore).map_err(|e| DeviceError::Frontend(format!("{e}")))
        })??;
        let Some(&id) = ids.get(index as usize) else {
            let n = ids.len();
            let max = MAX_DISKS;
            return Err(DeviceError::Frontend(format!(
                "no disk {index}: the domain has {n} (device/vbd, {max} counted at most)"
            )));
        };
        if self.disks.borrow().contains(&id) {
            return Err(DeviceError::InUse);
        }
        // Every disk's task lives until the end: a free slot in the pool is one less.
        if self.disks.borrow().len() >= MAX_OPEN_DISKS {
            return Err(DeviceError::TooMany);
        }
        // Taken now: a second call for the same disk while this one connects is refused.
        self.disks.borrow_mut().push(id);
        let t0 = crate::time::now_ns();
        let mut blk = match self.connect_disk(id).await {
            Ok(b) => b,
            Err(e) => {
                self.disks.borrow_mut().retain(|&d| d != id);
                return Err(e);
            }
        };
        let ms = (crate::time::now_ns() - t0) / 1_000_000;
        blk.set_timeout(DEFAULT_TIMEOUT_NS);
        let geometry = blk.geometry();
        let shared = Rc::new(Shared {
            devices: self,
            id,
            geometry,
            request_bytes: Cell::new(blk.request_bytes()),
            epoch: Cell::new(self.epoch()),
            requeued: Cell::new(0),
            failed: Cell::new(None),
            lent: Cell::new(false),
            counters: Cell::new(blk.counters()),
            traffic: Cell::new(blk.traffic()),
            blk: RefCell::new(Some(blk)),
        });
        let Ok(token) = disk_task(self, shared.clone()) else {
            // Cannot happen (counted above); closed rather than left open.
            let blk = shared.blk.borrow_mut().take();
            if let Some(b) = blk {
                self.close_disk(b.begin_close()).await;
            }
            self.disks.borrow_mut().retain(|&d| d != id);
            return Err(DeviceError::TooMany);
        };
        self.open.set(self.open.get() + 1);
        self.spawner.spawn(token);
        crate::println!(
            "xenpv-rt: vbd{id} connected in {ms} ms sectors={} sector_size={} {}",
            geometry.sectors,
            geometry.sector_size,
            if geometry.read_only { "ro" } else { "rw" }
        );
        Ok(Disk { shared, index })
    }

    /// Bring disk `id` up, a step at a time: between steps, wait for a xenstore event
    /// or the step's time (the handshake's own deadline bounds the whole).
    async fn connect_disk(&self, id: u32) -> Result<Blkfront, DeviceError> {
        self.settled().await;
        let _h = self.handshake();
        let mut p = self.with(|c| {
            Blkfront::begin_connect(c.memory, c.grants, c.xenstore, id)
                .map_err(|e| DeviceError::Frontend(format!("{e}")))
        })??;
        loop {
            if self.is_closing() {
                self.close_disk(p.abort()).await;
                return Err(DeviceError::Closing);
            }
            let mark = self.store_mark();
            match self.with(move |c| p.step(c.memory, c.grants, c.xenstore))? {
                ConnectStep::Pending(next, wake_at) => {
                    p = next;
                    self.wait_store_since(mark, wake_at).await;
                }
                ConnectStep::Connected(blk) => return Ok(blk),
                ConnectStep::Failed(e, closing) => {
                    self.close_disk(closing).await;
                    return Err(DeviceError::Frontend(format!("{e}")));
                }
            }
        }
    }

    /// Close a disk a step at a time (the close's own deadline bounds the whole);
    /// pages the backend still holds stay granted (the grant table's deferred list).
    async fn close_disk(&self, mut c: ClosingBlkfront) -> usize {
        self.settled().await;
        let _h = self.handshake();
        loop {
            let mark = self.store_mark();
            match self.with(move |x| c.step(x.memory, x.grants, x.xenstore)) {
                Ok(CloseStep::Pending(next, wake_at)) => {
                    c = next;
                    self.wait_store_since(mark, wake_at).await;
                }
                Ok(CloseStep::Closed(closed)) => return closed.pages_kept,
                Err(e) => {
                    crate::warn!("xenpv-rt: closing a disk: {e}");
                    return 0;
                }
            }
        }
    }
}

/// A disk's life: re-attach it in every new domain; at the guest's end, close it.
#[embassy_executor::task(pool_size = MAX_OPEN_DISKS)]
async fn disk_task(devices: &'static Devices, shared: Rc<Shared>) {
    loop {
        let seen = shared.epoch.get();
        match select(devices.closing(), devices.new_domain(seen)).await {
            Either::First(()) => break,
            Either::Second(epoch) => reattach(devices, &shared, epoch).await,
        }
    }
    let t0 = crate::time::now_ns();
    // An async read holds blkfront: it ends by its deadline (or its task is dropped).
    while shared.lent.get() {
        Timer::after(Duration::from_millis(1)).await;
    }
    // No call holds it across an await: the borrow is free.
    let blk = shared.blk.try_borrow_mut().ok().and_then(|mut b| b.take());
    if let Some(blk) = blk {
        let id = blk.id();
        let kept = devices.close_disk(blk.begin_close()).await;
        let ms = (crate::time::now_ns() - t0) / 1_000_000;
        crate::println!("xenpv-rt: vbd{id} closed in {ms} ms pages_kept={kept}");
    }
    devices.open.set(devices.open.get() - 1);
}

/// How long a read that met a new domain waits for the disk to be connected again (the
/// handshake's own bound, and a little more).
const REATTACH_NS: u64 = crate::blk::blkfront::CONNECT_NS + 5_000_000_000;

/// The guest moved to a new domain of epoch `epoch`: take blkfront back (an async read
/// holding it sees the new domain in its own wait and hands it back), let go of it
/// without a word to the old backend, connect to the new domain's backend, check that
/// the geometry is the same (or fail the disk, visibly), accept its features, and put
/// it back. One report line either way.
async fn reattach(devices: &'static Devices, shared: &Shared, epoch: u32) {
    let t0 = match devices.resumed_at() {
        0 => crate::time::now_ns(),
        t => t,
    };
    let id = shared.id;
    while shared.lent.get() {
        Timer::after(Duration::from_millis(1)).await;
    }
    let old = shared.blk.try_borrow_mut().ok().and_then(|mut b| b.take());
    let (mut in_flight, mut timeout) = (0, DEFAULT_TIMEOUT_NS);
    if let Some(old) = old {
        timeout = old.timeout();
        // Its port's number may be bound to something else in the new domain.
        exec::forget(old.port());
        let mut old = Some(old);
        let r = devices.with(|c| old.take().map(|b| b.abandon(c.memory, c.grants)));
        if let Ok(Some((n, _))) = r {
            in_flight = n;
        }
        if let Some(b) = old.take() {
            // Never ended nor deferred (its grants are stale): its pages are lost.
            crate::warn!("xenpv-rt: vbd{id} not abandoned: {:?}", r.err());
            core::mem::forget(b);
        }
    }
    let why = match devices.connect_disk(id).await {
        Ok(mut blk) => match check_reattach(&shared.geometry, &blk.geometry()) {
            Ok(()) => {
                blk.set_timeout(timeout);
                shared.request_bytes.set(blk.request_bytes());
                shared.copy_counters(&blk);
                let offer = blk.offer();
                if let Ok(mut b) = shared.blk.try_borrow_mut() {
                    *b = Some(blk);
                }
                shared.epoch.set(epoch);
                let ms = crate::time::now_ns().saturating_sub(t0) / 1_000_000;
                crate::println!(
                    "{}",
                    Writer::new("disk")
                        .word("resumed")
                        .field("id", &id)
                        .field("epoch", &epoch)
                        .field("requeued", &shared.requeued.replace(0))
                        .field("in_flight", &in_flight)
                        .field("indirect", &offer.max_indirect)
                        .field("flush", &u8::from(offer.flush.is_some()))
                        .field("request_bytes", &shared.request_bytes.get())
                        .field("ms", &ms)
                );
                return;
            }
            Err(e) => {
                crate::println!("xenpv-rt: vbd{id} in the new domain: {e}");
                devices.close_disk(blk.begin_close()).await;
                "geometry-changed"
            }
        },
        Err(e) => {
            crate::println!("xenpv-rt: vbd{id} in the new domain: {e}");
            "no-backend"
        }
    };
    shared.failed.set(Some(why));
    shared.epoch.set(epoch);
    crate::println!(
        "{}",
        Writer::new("disk")
            .word("failed")
            .field("id", &id)
            .field("epoch", &epoch)
            .field("why", why)
            .field("requeued", &shared.requeued.replace(0))
    );
}
