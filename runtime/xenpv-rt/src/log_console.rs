//! The `log` facade's backend (feature `log`): records as `LEVEL target: message` lines
//! on the console, installed at start of day with the level `log=` names.

use crate::cmdline::Cmdline;
use log::{LevelFilter, Log, Metadata, Record};

/// The logger: one console line per record, through the same lock as `println!`.
struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // `{:<5}`: the level padded as the runtime's own tags are (`INFO `, `ERROR`).
        crate::console::_print(format_args!(
            "{:<5} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

/// Install the logger with the maximum level from `log=` (`off`, `error`, `warn`,
/// `info`, `debug` or `trace`; default `info`). Called once, before the application's
/// `main`; if something else installed a logger first, that one stays.
pub(crate) fn install(cmd: &Cmdline<'_>) {
    let level = match cmd.value("log") {
        None => LevelFilter::Info,
        Some(v) => v.parse().unwrap_or_else(|_| {
            crate::warn!("log={v:?} is not off|error|warn|info|debug|trace; keeping info");
            LevelFilter::Info
        }),
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
