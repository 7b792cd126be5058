//! The vocabulary every xenpv-rt crate shares: typed frame numbers and addresses, the
//! address-space layout ([`layout`], with its drawing), and Xen's error returns.
//!
//! A PV guest deals in two kinds of frame numbers: *machine* frames ([`Mfn`]), which Xen
//! and the page tables see, and *pseudo-physical* frames ([`Pfn`]), the guest's own
//! contiguous numbering, translated through the p2m list. Mixing them up is the classic
//! PV paging bug, so they are distinct types: the compiler refuses an `Mfn` where a `Pfn`
//! is wanted, and a conversion is always spelled out (`Mfn(raw)`, `mfn.0`, or a lookup
//! through the p2m/m2p).
//!
//! ```
//! use xenpv_abi::{Maddr, Mfn, Pfn};
//! let mfn = Mfn(0x1234);
//! assert_eq!(mfn.maddr(), Maddr(0x1234000));
//! assert_eq!(Maddr(0x1234_008).mfn(), mfn);
//! let pfn = Pfn(7);
//! assert_eq!(pfn + 1, Pfn(8));
//! // `let m: Mfn = pfn;` does not compile.
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod args;
pub mod blkif;
mod errno;
mod frame;
pub mod grant;
pub mod layout;
pub mod netif;
pub mod ring;

pub use errno::XenError;
pub use frame::{Maddr, Mfn, Pfn, PAGE_SHIFT, PAGE_SIZE};
/// A canonical x86-64 virtual address (the `x86_64` crate's): every virtual address that
/// crosses a public API of the runtime's crates has this type, not `u64`.
pub use x86_64::VirtAddr;
