//! Console output: `print!`/`println!` and levelled log macros over Xen's console.
//!
//! dom0 writes with `console_io`, which Xen puts on its serial line. A domU's `console_io`
//! writes are dropped by release builds of Xen, so a domU writes its ring console
//! (start_info.console.domU, served by xenconsoled): see [`ring`].
//!
//! Output is line-buffered: one hypercall per line (or per 256 bytes), not per format
//! fragment.

use core::fmt::{self, Write};

pub mod ring;
use core::sync::atomic::{AtomicU8, Ordering};

/// Log levels, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub const fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        }
    }
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
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Write bytes to the console as they are.
/// Printing has nowhere to report a failure: ring losses are counted
/// (`ring::lost_bytes`), a refused console_io write is dropped.
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

/// A line-buffered writer; flushes on newline, when full, and on drop.
pub struct LineWriter {
    buf: [u8; 256],
    len: usize,
}

impl LineWriter {
    pub const fn new() -> Self {
        LineWriter {
            buf: [0; 256],
            len: 0,
        }
    }
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

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _guard = LOCK.lock();
    let _ = LineWriter::new().write_fmt(args);
}

/// Print without taking the lock: for the panic path, where the lock may be held by the
/// code that panicked.
#[doc(hidden)]
pub fn _print_unlocked(args: fmt::Arguments) {
    let _ = LineWriter::new().write_fmt(args);
}

#[doc(hidden)]
pub fn _log(level: Level, args: fmt::Arguments) {
    if enabled(level) {
        _print(format_args!("xenpv-rt[{}] {}\n", level.tag(), args));
    }
}

/// Print to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Print a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Error, format_args!($($arg)*)) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Warn, format_args!($($arg)*)) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Info, format_args!($($arg)*)) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::console::_log($crate::console::Level::Debug, format_args!($($arg)*)) }; }

/// The guest's console, whichever it is: Xen's (dom0: `console_io`) or the ring (domU).
/// `print!` and friends go through the same path.
pub struct Console;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    Ring(crate::ring::DuplexError),
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

impl Console {
    /// Write raw bytes (no line buffering), in order; a ring backend that takes nothing
    /// for [`ring::STALL_TIMEOUT_NS`] gives an error naming how much went out.
    pub fn write_all(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        let _guard = LOCK.lock();
        write_raw(bytes)
    }

    /// Input typed at the console, without blocking (0 bytes if none).
    pub fn read(&self, out: &mut [u8]) -> Result<usize, ConsoleError> {
        match ring::read(out) {
            Some(r) => r.map_err(ConsoleError::Ring),
            None => crate::hypercall::console_read(out).map_err(ConsoleError::Xen),
        }
    }
}
