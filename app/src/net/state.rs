//! What the appliance keeps to show that a save, restore or migration lost nothing: a
//! tick counter, the monotonic clock seen going back (counted), and (word `records`) the
//! disk writer, one record `(seq, mono_ns, epoch, crc)` a second into the first disk,
//! raw (`xenpv_contract::records`), checked in the guest on request.
//!
//! `GET /state` answers `ticks=N mono_ns=N epoch=E last_seq=S written=W mono_back=K`
//! (`last_seq=-1` before the first record); `GET /records` reads back every record
//! written and answers (and prints) `records pass=0|1 checked=N written=W bad=…`.

use core::cell::Cell;
use core::fmt::Write as _;

use embassy_time::{Duration, Timer};
use xenpv_appliance::http::{respond_line, Opened, Response, Route};
use xenpv_appliance_service::{Files, ReadFail};
use xenpv_contract::records::{encode, Record, Scan, SECTOR};
use xenpv_contract::report::Writer;
use xenpv_rt::device::Disk;
use xenpv_rt::println;
use xenpv_rt::time::now_ns;

use super::files::DiskFiles;

/// How often the tick counter counts.
const TICK: Duration = Duration::from_millis(100);
/// How often the writer writes a record.
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// Sectors read back at once by `GET /records` (32 KiB).
const CHECK_CHUNK: usize = 64;
/// Write failures printed (the rest only counted).
const SAY_ERRORS: u64 = 5;

/// The suspend epoch: 0 in the boot domain, +1 for each resume in a new domain.
fn epoch() -> u32 {
    #[cfg(feature = "suspend")]
    {
        xenpv_rt::suspend::epoch()
    }
    #[cfg(not(feature = "suspend"))]
    {
        0
    }
}

/// The counters and the writer's disk.
#[derive(Default)]
pub(super) struct Keeper {
    ticks: Cell<u64>,
    last_ns: Cell<u64>,
    mono_back: Cell<u64>,
    disk: Option<Disk>,
    written: Cell<u64>,
    write_errors: Cell<u64>,
}

impl Keeper {
    /// A keeper; with `disk`, the writer's records go there from sector 0 on.
    pub(super) fn new(disk: Option<Disk>) -> Keeper {
        Keeper {
            disk,
            ..Keeper::default()
        }
    }

    /// Read the clock, counting it going back (it must not, across any resume).
    fn now(&self) -> u64 {
        let now = now_ns();
        if now < self.last_ns.get() {
            self.mono_back.set(self.mono_back.get() + 1);
        } else {
            self.last_ns.set(now);
        }
        now
    }

    /// Count ticks, for ever.
    pub(super) async fn tick(&self) {
        loop {
            Timer::after(TICK).await;
            self.ticks.set(self.ticks.get() + 1);
            self.now();
        }
    }

    /// Write a record a second, for ever (without a disk: never returns, does nothing).
    /// A failed write is retried with the same `seq` a second later, so the records
    /// stay contiguous; a full disk stops the writer (said once).
    pub(super) async fn write(&self) {
        let Some(disk) = self.disk.as_ref() else {
            return core::future::pending().await;
        };
        let mut sector = [0u8; SECTOR];
        loop {
            Timer::after(RECORD_EVERY).await;
            let seq = self.written.get();
            if seq >= disk.sectors() {
                println!("net: records: the disk is full at seq={seq}: the writer stops");
                return core::future::pending().await;
            }
            let r = Record {
                seq,
                mono_ns: self.now(),
                epoch: epoch(),
            };
            encode(&r, &mut sector);
            match disk.write(seq, &sector).and_then(|()| disk.flush()) {
                Ok(()) => self.written.set(seq + 1),
                Err(e) => {
                    let n = self.write_errors.get() + 1;
                    self.write_errors.set(n);
                    if n <= SAY_ERRORS {
                        println!("net: records: write seq={seq} failed ({n} so far): {e}");
                    }
                }
            }
        }
    }

    /// Say the final figures (at shutdown): `net: state final ticks=N mono_back=K
    /// written=W write_errors=E`, so that dom0's count of the records can be held
    /// against what the guest wrote.
    pub(super) fn final_report(&self) {
        let (ticks, back) = (self.ticks.get(), self.mono_back.get());
        let (written, errors) = (self.written.get(), self.write_errors.get());
        println!(
            "{}",
            Writer::new("net")
                .word("state")
                .word("final")
                .field("ticks", &ticks)
                .field("mono_back", &back)
                .field("records", &u8::from(self.disk.is_some()))
                .field("written", &written)
                .field("write_errors", &errors)
        );
    }

    /// `GET /state`'s line.
    fn state(&self) -> Response {
        let mut s: heapless::String<120> = heapless::String::new();
        let last = self.written.get() as i128 - 1;
        let _ = write!(
            s,
            "ticks={} mono_ns={} epoch={} last_seq={last} written={} mono_back={}",
            self.ticks.get(),
            self.now(),
            epoch(),
            self.written.get(),
            self.mono_back.get()
        );
        respond_line(&s)
    }

    /// Read back every record written and check them (`GET /records`): the line, also
    /// printed as a report.
    fn records(&self) -> Option<Response> {
        let disk = self.disk.as_ref()?;
        let written = self.written.get();
        let mut scan = Scan::default();
        let mut buf = [0u8; SECTOR * CHECK_CHUNK];
        let mut at = 0u64;
        let mut read_error = false;
        'read: while at < written {
            let n = (written - at).min(CHECK_CHUNK as u64) as usize;
            if let Err(e) = disk.read_blocking(at, &mut buf[..n * SECTOR]) {
                println!("net: records: reading sector {at}: {e}");
                read_error = true;
                break;
            }
            for s in buf[..n * SECTOR].chunks_exact(SECTOR) {
                let s: &[u8; SECTOR] = s.try_into().unwrap_or(&[0; SECTOR]);
                if !scan.push(s) {
                    break 'read;
                }
            }
            at += n as u64;
        }
        let mut bad: heapless::String<64> = heapless::String::new();
        match scan.bad() {
            Some((sector, why)) => {
                let _ = write!(bad, "at{sector}-{why}");
            }
            None if read_error => {
                let _ = bad.push_str("read-error");
            }
            None => {
                let _ = bad.push_str("none");
            }
        }
        let pass = u8::from(scan.bad().is_none() && !read_error && scan.records() == written);
        let (checked, errors) = (scan.records(), self.write_errors.get());
        let w = Writer::new("net")
            .word("records")
            .field("pass", &pass)
            .field("checked", &checked)
            .field("written", &written)
            .field("bad", bad.as_str())
            .field("write_errors", &errors);
        println!("{w}");
        let mut line: heapless::String<120> = heapless::String::new();
        let _ = write!(line, "{w}");
        Some(respond_line(&line))
    }
}

/// What `GET /…` serves from: the files, and the keeper's pages.
pub(super) struct Site<'a> {
    pub(super) files: &'a DiskFiles,
    pub(super) keeper: &'a Keeper,
}

impl Files for Site<'_> {
    type File = <DiskFiles as Files>::File;

    fn open(&self, path: &str) -> Result<(Self::File, u64), Opened> {
        self.files.open(path)
    }
    fn read_at(&self, f: &mut Self::File, offset: u64, out: &mut [u8]) -> Result<(), ReadFail> {
        self.files.read_at(f, offset, out)
    }
    fn page(&self, route: Route<'_>) -> Option<Response> {
        match route {
            Route::State => Some(self.keeper.state()),
            Route::Records => self.keeper.records(),
            _ => None,
        }
    }
}
