//! Paging: the layout, the planners that decide MMU operations, and their executor.
pub mod layout;
pub mod ops;
