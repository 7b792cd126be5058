//! The pure halves of a Xen PV guest's protocols: everything that decides, with nothing
//! that touches a shared page or makes a hypercall.
//!
//! What the other side writes (Xen, the toolstack, a backend) is hostile here: indices,
//! lengths, ids and strings are bounds-checked and copied before use, every wait has a
//! deadline, and a bad value is an error naming the value and the limit, never a panic.
//!
//! - [`ring`]: free-running producer/consumer arithmetic for Xen's byte rings, and
//!   [`ring::Duplex`], both rings of a shared page behind the [`ring::Link`] trait;
//! - [`xenstore`]: the wire format and a client generic over the link (transactions
//!   included);
//! - [`xenbus`]: the frontend handshake (probe the backend, publish keys in a
//!   transaction, walk to Connected, close), for the network and block front-ends;
//! - [`shared_ring`], [`netif`] and [`netfront`]: the frontend half of `ring.h`
//!   request/response rings, netif's slots with the checks of every response field, and
//!   netfront's queue (multi-slot packets, GSO extra info);
//! - [`vif`]: a vif's counters summed over its connections, and the events of its
//!   backend going and coming back, in a bounded queue;
//! - [`offload`]: netfront's checksum and segmentation offload, from a frame's headers;
//! - [`grant`]: grant-table v1 entries and the reference free list;
//! - [`evtchn`]: the 2-level event-channel bitmaps and port numbers;
//! - [`start_info`]: Xen's start_info page, validated into a typed view;
//! - [`blkif`] and [`blkfront`]: blkif's wire format, and blkfront's request queue with
//!   the checks of every response;
//! - [`block`]: the block-device API (sectors in and out, errors as values) and byte
//!   reads over it;
//! - `ext4` (feature `ext4`, with `alloc`): read-only ext2/3/4 over a block device,
//!   with ext4-view;
//! - [`clock`]: Xen system time from the pvclock fields;
//! - [`cmdline`]: the guest command line's words;
//! - [`metrics`]: guest metrics for the toolstack (the PV "addons" version, OS name,
//!   memory, vif addresses), diffed into batches of xenstore writes and removes.
//!
//! What the guest and the host tools share (exit statuses, report lines, the defmt
//! framing, the initrd format) is in `xenpv-contract`.
//!
//! The platform crate (`xenpv-rt`) supplies the live side of each: the mapped pages, the
//! event channels, the hypercalls. The host tests drive the same code against the model
//! peers in `xenpv-testkit`.
//!
//! ```
//! use xenpv_protocol::ring::{produce, consume, RingMem, RingError};
//!
//! // A ring's bytes can live anywhere; here, an array.
//! struct Mem([u8; 8]);
//! impl RingMem for Mem {
//!     fn size(&self) -> u32 { 8 }
//!     fn load(&self, i: u32) -> u8 { self.0[i as usize] }
//!     fn store(&mut self, i: u32, b: u8) { self.0[i as usize] = b }
//! }
//! let mut m = Mem([0; 8]);
//! let (n, prod) = produce(&mut m, 0, 0, b"hello").unwrap();
//! let mut out = [0; 8];
//! assert_eq!(consume(&m, 0, prod, &mut out).unwrap(), (n, prod));
//! assert_eq!(&out[..n], b"hello");
//! // A peer that claims more bytes than the ring holds is refused, not followed.
//! assert!(matches!(consume(&m, 0, 100, &mut out), Err(RingError::Corrupt { .. })));
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod blkfront;
pub mod blkif;
pub mod block;
pub mod clock;
pub mod cmdline;
pub mod console_out;
pub mod escape;
pub mod evtchn;
#[cfg(feature = "ext4")]
pub mod ext4;
pub mod grant;
pub mod metrics;
pub mod netfront;
pub mod netif;
pub mod offload;
pub mod ring;
pub mod shared_ring;
pub mod start_info;
pub mod vif;
pub mod xenbus;
pub mod xenstore;

pub use xenpv_abi::{Maddr, Mfn, Pfn, XenError};
