//! Pure planners of Xen PV paging: what the runtime does to the page tables, decided as
//! data and checked on the host before it ever runs under Xen.
//!
//! A PV guest cannot write its page tables directly: every change is a request to Xen
//! (`mmu_update`, `mmuext_op`), and Xen refuses any that would break its rules (a table
//! mapped writable, a frame of the wrong type, a table not pinned...). This crate decides
//! *which* requests to make, as plans of [`ops::MmuOp`]s sent into an [`ops::MmuSink`]:
//! on the live system the sink is [`exec::Executor`] over the platform's hypercalls, in
//! the host tests it is a model of Xen's PV MMU (the `xenpv-testkit` crate), so every
//! operation the runtime would issue is checked against Xen's rules on the host. The
//! rules, with references into Xen's source, are in `docs/xen-pv-facts.md`.
//!
//! The pieces, in the order start of day uses them:
//! - [`layout`]: every constant of the address space (from `xenpv-abi`, with a drawing);
//! - [`snapshot`]: read Xen's boot page tables into a summary;
//! - [`graft`]: decide which of Xen's boot mappings move into our layout, slot by slot;
//! - [`tables`]: the runtime's own page-table frames;
//! - [`takeover`]: the plan that builds our tables, switches to them and retires Xen's;
//! - [`frames`]: the frame allocator (a bitmap over pfns, with reserved regions);
//! - [`direct`]: the on-demand direct map, which maps 2 MiB chunks as the allocator
//!   needs their frames;
//! - [`vrange`] and [`vmap`]: module-space ranges and the vmap planner;
//! - [`check`]: the layout checker the guest also runs on itself after boot;
//! - [`exec`]: batching plans into hypercalls;
//! - [`balloon`]: giving frames back to Xen and taking them again;
//! - [`p2m`]: publishing the p2m for the toolstack (save, migrate), and checking it.
//!
//! Everything here is `no_std`, has no `unsafe`, and reads memory only through traits
//! ([`takeover::P2m`], [`snapshot::TableReader`], [`vmap::VmapEnv`]), so the same code
//! runs over the direct map in the guest and over the model on the host.
//!
//! ```
//! use xenpv_paging::layout::{direct_map_va, index, Split, DIRECT_MAP_BASE, L4_DIRECT_MAP};
//! use xenpv_paging::ops::{MmuOp, MmuSink};
//! use xenpv_abi::Pfn;
//!
//! // The direct map puts pfn 3 at a fixed address under L4 slot 272.
//! let va = direct_map_va(Pfn(3));
//! assert_eq!(va, DIRECT_MAP_BASE + 3 * 4096);
//! assert_eq!(index(va, 4), L4_DIRECT_MAP);
//! assert_eq!(Split::parse("1G"), Some(Split::Full));
//!
//! // Plans go into any sink; a Vec is enough to look at one.
//! struct Record(Vec<MmuOp>);
//! impl MmuSink for Record {
//!     type Error = ();
//!     fn submit(&mut self, op: MmuOp) -> Result<(), ()> { self.0.push(op); Ok(()) }
//!     fn flush(&mut self) -> Result<(), ()> { Ok(()) }
//! }
//! let mut r = Record(Vec::new());
//! r.submit(MmuOp::TlbFlushLocal).unwrap();
//! assert_eq!(r.0, [MmuOp::TlbFlushLocal]);
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod balloon;
pub mod check;
pub mod direct;
pub mod exec;
pub mod frames;
pub mod graft;
pub mod layout;
pub mod ops;
pub mod p2m;
pub mod snapshot;
pub mod tables;
pub mod takeover;
pub mod vmap;
pub mod vrange;

pub use xenpv_abi::{Maddr, Mfn, Pfn, XenError};
