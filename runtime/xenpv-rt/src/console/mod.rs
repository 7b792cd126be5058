//! Console output: `print!`/`println!` and levelled log macros over Xen's console.
//!
//! dom0 writes with `console_io`, which Xen puts on its serial line. A domU's `console_io`
//! writes are dropped by release builds of Xen, so a domU writes its ring console
//! (start_info.console.domU, served by xenconsoled): see [`ring`].
//!
//! Output is line-buffered: one write (a `console_io` hypercall, or one ring write and
//! notification) per line (or per 256 bytes), not per format fragment. Lines from
//! [`print!`](crate::print) and the log macros are written under one lock, so they do not
//! interleave.

use core::fmt::{self, Write};

pub mod ring;
use core::sync::atomic::{AtomicU8, Ordering};

/// Log levels, most severe first (so `Error < Debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed ([`error!`](crate::error)).
    Error = 1,
    /// Something is off but the guest goes on ([`warn!`](crate::warn)).
    Warn = 2,
    /// Start-of-day progress ([`info!`](crate::info)); the default maximum.
    Info = 3,
    /// Detail ([`debug!`](crate::debug)), shown with `loglevel=debug`.
    Debug = 4,
}

impl Level {
    /// The fixed-width tag in a log line: `xenpv-rt[INFO ] ...`.
    pub const fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        }
    }
    /// The level named by a `loglevel=` value: `error`, `warn`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Messages above `level` are dropped (set from `loglevel=` on the command line).
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}
/// Whether messages at `level` are printed (see [`set_max_level`]).
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Serialises whole lines from `print!`, the log macros and [`Console::write_all`].
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Write bytes to the console as they are, without taking the print lock.
///
/// Printing has nowhere to report a failure: ring losses are counted
/// ([`ring::lost_bytes`]), a refused `console_io` write is dropped. Use
/// [`Console::write_all`] to see errors.
pub fn write_bytes(bytes: &[u8]) {
    let _ = write_raw(bytes);
}

/// The ring if this guest has one, else Xen's console_io.
fn write_raw(bytes: &[u8]) -> Result<(), ConsoleError> {
    if let Some(r) = ring::write(bytes) {
        return r.map_err(ConsoleError::Ring);
    }
    // Xen's console_io takes at most a few KiB at a time in practice; chunk generously.
    for chunk in bytes.chunks(1024) {
        crate::hypercall::console_write(chunk).map_err(ConsoleError::Xen)?;
    }
    Ok(())
}

/// A line-buffered [`fmt::Write`] over [`write_bytes`]: flushes on newline, when its
/// 256-byte buffer is full, and on drop.
pub struct LineWriter {
    buf: [u8; 256],
    len: usize,
}

impl LineWriter {
    /// An empty writer.
    pub const fn new() -> Self {
        LineWriter {
            buf: [0; 256],
            len: 0,
        }
    }
    /// Write out what is buffered.
    fn flush(&mut self) {
        write_bytes(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' {
                self.flush();
            }
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What [`print!`](crate::print) and [`println!`](crate::println) expand to: format
/// under the console lock.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    let _ = LineWriter::new().write_fmt(args);
}

/// Print without taking the lock: for the panic path, where the lock may be held by the
/// code that panicked.
#[doc(hidden)]
pub fn _print_unlocked(args: fmt::Arguments<'_>) {
    let _ = LineWriter::new().write_fmt(args);
}

/// What the log macros expand to: `xenpv-rt[LEVEL] message` if `level` is enabled.
#[doc(hidden)]
pub fn _log(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        _print(format_args!("xenpv-rt[{}] {}\n", level.tag(), args));
    }
}

/// Print to the console, like `std`'s `print!` (line-buffered: a line without its
/// newline goes out when the macro returns).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Print a line to the console, like `std`'s `println!`.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Log at [level `Error`](crate::console::Level::Error): `xenpv-rt[ERROR] ...`.
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Error, format_args!($($arg)*)) }; }
/// Log at [level `Warn`](crate::console::Level::Warn): `xenpv-rt[WARN ] ...`.
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Warn, format_args!($($arg)*)) }; }
/// Log at [level `Info`](crate::console::Level::Info): `xenpv-rt[INFO ] ...`.
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Info, format_args!($($arg)*)) }; }
/// Log at [level `Debug`](crate::console::Level::Debug): `xenpv-rt[DEBUG] ...`,
/// printed only with `loglevel=debug`.
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Debug, format_args!($($arg)*)) }; }

/// The guest's console, whichever it is: Xen's (dom0: `console_io`) or the ring (domU).
/// `print!` and friends go through the same path; this handle adds unbuffered writes that
/// report errors, and input.
///
/// It is an [`embedded_io::Write`], so code written against embedded-io writes to the
/// console unchanged:
///
/// ```no_run
/// use xenpv_rt::console::Console;
/// use xenpv_rt::embedded_io::Write;
///
/// fn report(out: &mut impl Write, sum: u32) -> Result<(), impl core::fmt::Debug> {
///     write!(out, "checksum {sum:08x}\n")
/// }
/// report(&mut Console, 0xdead_beef).expect("the console took it");
/// ```
///
/// It is not an `embedded_io::Read`: [`Console::read`] does not block (0 when nothing
/// was typed), and a `Read` that returns 0 means the end of the stream.
pub struct Console;

/// Why a console write or read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The domU ring console: the backend stalled, or its indices were corrupt.
    Ring(crate::ring::DuplexError),
    /// Xen refused a `console_io` hypercall (e.g. a domU's write on a release build of
    /// Xen, or a read by a domU).
    Xen(xenpv_abi::XenError),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::Ring(e) => write!(f, "console ring: {e}"),
            ConsoleError::Xen(e) => write!(f, "console_io: {e}"),
        }
    }
}

impl core::error::Error for ConsoleError {}

impl embedded_io::Error for ConsoleError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use crate::ring::DuplexError;
        use embedded_io::ErrorKind;
        match self {
            ConsoleError::Ring(DuplexError::Stalled { .. } | DuplexError::TimedOut { .. }) => {
                ErrorKind::TimedOut
            }
            ConsoleError::Ring(DuplexError::Ring(_)) => ErrorKind::InvalidData,
            ConsoleError::Xen(_) => ErrorKind::Other,
        }
    }
}

impl embedded_io::ErrorType for Console {
    type Error = ConsoleError;
}

impl embedded_io::Write for Console {
    /// All of `buf`, unbuffered, as [`Console::write_all`]: never a short write.
    fn write(&mut self, buf: &[u8]) -> Result<usize, ConsoleError> {
        Console::write_all(self, buf)?;
        Ok(buf.len())
    }

    /// Nothing to do: every write has gone out when it returns.
    fn flush(&mut self) -> Result<(), ConsoleError> {
        Ok(())
    }
}

impl Console {
    /// Write raw bytes (no line buffering), in order; a ring backend that takes nothing
    /// for [`ring::STALL_TIMEOUT_NS`] gives an error naming how much went out.
    pub fn write_all(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        let _guard = LOCK.lock();
        write_raw(bytes)
    }

    /// Input typed at the console, without blocking: bytes put into `out` (0 if none). A
    /// domU reads its ring console; dom0 reads Xen's console with `console_io`.
    pub fn read(&self, out: &mut [u8]) -> Result<usize, ConsoleError> {
        match ring::read(out) {
            Some(r) => r.map_err(ConsoleError::Ring),
            None => crate::hypercall::console_read(out).map_err(ConsoleError::Xen),
        }
    }
}
