//! Async sockets for xenpv-rt unikernels: TCP listeners with a backlog, `embedded-io-async`
//! streams with idle timeouts, UDP, static or DHCP addresses — over smoltcp 0.14 and any
//! network device implementing [`Driver`] (netfront in a guest, the `loopback` module's device on the host).
//!
//! A [`Stack`] holds an interface and its sockets; a [`Runner`] moves its packets through
//! a device (one task per device; when the link goes down, plug a new device into the
//! same stack). Executor-agnostic: it works under embassy-executor in a guest and under
//! any `block_on` on the host. Time is `embassy-time`'s (a guest gets its driver from
//! xenpv-rt; feature `loopback` uses embassy-time's std driver).
//!
//! ```
//! use embedded_io_async::{Read, Write};
//! use xenpv_net::{loopback, TcpListener, TcpStream};
//!
//! // A host test: an echo server with 4 workers, and one client.
//! loopback::run(|stack| async move {
//!     let listener = TcpListener::bind(&stack, 7).unwrap();
//!     let server = listener.serve(4, |mut s| async move {
//!         let mut buf = [0u8; 512];
//!         while let Ok(n @ 1..) = s.read(&mut buf).await {
//!             if s.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     let client = async {
//!         let mut c = TcpStream::connect(&stack, loopback::endpoint(7)).await.unwrap();
//!         c.write_all(b"ping").await.unwrap();
//!         let mut buf = [0u8; 4];
//!         c.read_exact(&mut buf).await.unwrap();
//!         assert_eq!(&buf, b"ping");
//!     };
//!     embassy_futures::select::select(server, client).await;
//! });
//! ```
//!
//! smoltcp's own types are re-exported as [`smoltcp`] (addresses: [`IpEndpoint`],
//! [`Ipv4Cidr`], [`Ipv4Address`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod frag;
#[cfg(feature = "loopback")]
pub mod loopback;
mod runner;
mod stack;
pub mod tcp;
pub mod udp;
mod waker;

pub use config::{Addressing, Config, TcpConfig};
pub use frag::FragCounts;
pub use runner::{RunEnd, Runner, TX_FULL_WAIT};
pub use smoltcp;
pub use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
pub use stack::Stack;
pub use tcp::{AcceptError, BindError, ConnectError, TcpListener, TcpReader, TcpStream, TcpWriter};
pub use udp::{UdpBuffers, UdpError, UdpSocket};

/// A network device the stack drives: smoltcp's `phy::Device`, plus a way to be woken
/// when it may have work (a frame arrived, transmit space freed, the link changed).
///
/// In a guest, netfront implements it (its event channel wakes the waker); on the host,
/// the `loopback` module's device does (feature `loopback`).
pub trait Driver: smoltcp::phy::Device {
    /// Wake `waker` once the device may have work. A later call replaces the waker.
    /// Called after every round of the stack: a device with work already waiting (a
    /// frame received meanwhile, frames it queued to itself) wakes it at once.
    fn register_waker(&mut self, waker: &core::task::Waker);
    /// The device's Ethernet address.
    fn mac(&self) -> [u8; 6];
    /// Can frames move? `false` once the backend is gone: the runner stops.
    fn link_up(&self) -> bool {
        true
    }
    /// Is every transmit slot in flight, so that nothing can be sent until the device
    /// wakes the waker (netfront: the backend's next TX response)? While it is, the
    /// runner does not take smoltcp's "send now" as a reason to poll again at once; it
    /// waits for the device, or [`TX_FULL_WAIT`] at most. Default: never.
    fn tx_full(&mut self) -> bool {
        false
    }
}
