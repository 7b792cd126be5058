//! Networking: netfront ([`netfront::Netfront`], one per vif) and, with the `net`
//! feature, a smoltcp `phy::Device` over it (`net::phy`) clocked by Xen system time.
//!
//! ```no_run
//! # fn f(boot: &mut xenpv_rt::Boot) -> Result<(), xenpv_rt::net::netfront::NetError> {
//! use xenpv_rt::{gnttab::GrantTable, net::netfront::Netfront};
//! let mut gt = GrantTable::setup(boot.memory(), 4).expect("grant table");
//! let (mem, xs) = boot.memory_and_xenstore();
//! let xs = xs.expect("a domU has xenstore");
//! let mut nic = Netfront::connect(mem, &mut gt, xs, 0)?; // device/vif/0
//! let mut frame = [0u8; xenpv_rt::net::netfront::MAX_FRAME];
//! if let Some(p) = nic.recv(&mut frame) {
//!     xenpv_rt::println!("{} bytes from {:02x?}", p.len, &frame[6..12]);
//! }
//! # Ok(()) }
//! ```

pub mod netfront;
#[cfg(feature = "net")]
pub mod phy;
/// The TCP/IP stack (feature `net`), as the runtime builds it.
#[cfg(feature = "net")]
pub use smoltcp;
