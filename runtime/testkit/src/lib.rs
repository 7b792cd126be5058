//! Models for the host tests of xenpv-rt: what stands on the other side of every
//! interface the runtime has, so that the pure crates can be tested without Xen.
//!
//! - [`mmu_model`]: Xen 4.17's PV MMU rules and its dom0 builder, as a sink for plans of
//!   MMU operations (`xenpv_paging::ops::MmuSink`);
//! - [`takeover_run`]: the takeover planner run against that model, the scenario the
//!   paging tests start from;
//! - [`p2m_run`]: the p2m publisher run against the model after a takeover;
//! - [`blkback`]: a model blkback, honest, slow or hostile, as `blkfront::Io`;
//! - [`ring_peer`]: the other end of a shared byte ring, honest, slow, stalled or hostile;
//! - [`xenstored`]: a model xenstored on the far side of the store ring;
//! - [`strategies`]: proptest strategies shared by the tests (hostile xenstore replies).
//!
//! A dev-dependency only (`publish = false`): nothing here runs in a guest.
// Not published: missing_docs (in the shared lint table) is for the published crates.
#![allow(missing_docs)]

pub mod blkback;
pub mod mmu_model;
pub mod netback;
pub mod p2m_run;
pub mod ring_peer;
pub mod strategies;
pub mod takeover_run;
pub mod xenstored;
