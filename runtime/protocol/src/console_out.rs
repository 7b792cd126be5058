//! The output policy of a ring console (a domU's `xencons_interface`), kept apart from
//! the page so it can be tested against model backends.
//!
//! A console must never lose data silently and never hold the guest for long: a write
//! waits for room while the backend takes bytes, and gives up after `timeout_ns` without
//! progress, counting what did not go out. After such a stall the console *fails fast*:
//! later writes put in what fits at once and do not wait again until the backend takes
//! a whole write, so a dead `xenconsoled` costs one timeout, not one per line.
//!
//! ```
//! use xenpv_protocol::console_out::ConsoleOut;
//! # use xenpv_protocol::ring::{Idx, Link, Side};
//! # struct Dead(u64, [u8; 4096]);
//! # impl Link for Dead {
//! #     fn size(&self, s: Side) -> u32 { if s == Side::Tx { 2048 } else { 1024 } }
//! #     fn index(&self, _: Idx) -> u32 { 0 }
//! #     fn set_index(&mut self, _: Idx, _: u32) {}
//! #     fn load(&self, _: Side, i: u32) -> u8 { self.1[i as usize] }
//! #     fn store(&mut self, _: Side, i: u32, b: u8) { self.1[i as usize] = b }
//! #     fn notify(&mut self) {}
//! #     fn wait(&mut self, d: u64) { self.0 = d.max(self.0 + 1) }
//! #     fn now_ns(&self) -> u64 { self.0 }
//! # }
//! // A backend that never consumes: the first write waits out the timeout...
//! let mut c = ConsoleOut::new(Dead(0, [0; 4096]), 1_000_000);
//! assert!(c.send(&[b'x'; 3000]).is_err());
//! assert_eq!(c.lost(), 3000 - 2048);
//! // ...the next fails at once, and every byte is counted.
//! assert!(c.send(b"more\n").is_err());
//! assert!(c.stalled());
//! assert_eq!(c.lost(), 3000 - 2048 + 5);
//! ```

use crate::ring::{Duplex, DuplexError, Link};

/// A ring console's output side: the duplex page, the stall state and the loss count.
pub struct ConsoleOut<L: Link> {
    ring: Duplex<L>,
    timeout_ns: u64,
    stalled: bool,
    lost: u64,
}

impl<L: Link> ConsoleOut<L> {
    /// A console over `link`, waiting at most `timeout_ns` for a backend that takes
    /// nothing.
    pub fn new(link: L, timeout_ns: u64) -> Self {
        ConsoleOut {
            ring: Duplex::new(link),
            timeout_ns,
            stalled: false,
            lost: 0,
        }
    }

    /// Write all of `bytes` in order, or as much as the backend takes: waiting up to the
    /// timeout normally, not at all while stalled. What does not go out is counted in
    /// [`lost`](Self::lost) and the error says how much went.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), DuplexError> {
        let timeout = if self.stalled { 0 } else { self.timeout_ns };
        match self.ring.write_all(bytes, timeout) {
            Ok(()) => {
                self.stalled = false;
                Ok(())
            }
            Err(e) => {
                let written = match e {
                    DuplexError::Stalled { written, .. } => written,
                    _ => 0,
                };
                self.lost += (bytes.len() - written) as u64;
                self.stalled = true;
                Err(e)
            }
        }
    }

    /// Count `n` bytes lost elsewhere (before the ring was attached).
    pub fn count_lost(&mut self, n: u64) {
        self.lost += n;
    }

    /// Bytes that never reached the backend.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Is the backend considered stalled (writes do not wait)?
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Input from the backend, without blocking (0 bytes if none).
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, DuplexError> {
        self.ring.read(out)
    }

    /// The link (tests look at the model backend through it).
    pub fn link(&mut self) -> &mut L {
        self.ring.link()
    }
}
