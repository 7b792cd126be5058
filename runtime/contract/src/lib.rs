//! What a xenpv-rt guest and the host tools share, and nothing else: the host tools
//! (`xenpv-run`, `cargo xtask`, dom0's `xenbox-peer`) depend on this crate alone of the
//! runtime's.
//!
//! - [`status`]: exit statuses, the exit line (`xenpv-rt: exit status N`, one writer and
//!   one parser) and the sample app's statuses ([`status::AppStatus`]);
//! - [`report`](mod@report): the grammar of the console lines a host reads back (`topic: k=v ...`),
//!   an allocation-free writer for guests and, with feature `alloc`, the parsed
//!   `report::Report`;
//! - [`defmt_line`]: the console framing of defmt frames;
//! - [`initrd`]: the checked initrd image format;
//! - [`records`]: the disk writer's records (the sample appliance writes them, dom0
//!   checks them).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod defmt_line;
pub mod initrd;
pub mod records;
pub mod report;
pub mod status;
