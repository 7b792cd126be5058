//! Paging: the layout, the planners that decide MMU operations, and their executor.
pub mod check;
pub mod exec;
pub mod frames;
pub mod graft;
pub mod layout;
#[cfg(test)]
pub mod model;
pub mod ops;
#[cfg(all(feature = "rt", not(test)))]
pub mod setup;
pub mod snapshot;
pub mod takeover;
#[cfg(test)]
mod takeover_tests;
pub mod vmap;
#[cfg(test)]
mod vmap_tests;
pub mod vrange;
