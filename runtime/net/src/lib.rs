//! xenpv-net: async sockets over smoltcp for xenpv-rt unikernels.
//!
//! (Skeleton: the issue-26 helpers fill this in.)
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// A network device the stack drives: smoltcp's `phy::Device`, plus a way to be woken
/// when it may have work (a frame arrived, transmit space freed, the link changed).
///
/// In a guest, netfront implements it (its event channel wakes the waker); on the host,
/// the loopback device does.
pub trait Driver: smoltcp::phy::Device {
    /// Wake `waker` once the device may have work. A later call replaces the waker.
    fn register_waker(&mut self, waker: &core::task::Waker);
    /// The device's Ethernet address.
    fn mac(&self) -> [u8; 6];
    /// Can frames move? `false` once the backend is gone: the runner stops.
    fn link_up(&self) -> bool {
        true
    }
}
