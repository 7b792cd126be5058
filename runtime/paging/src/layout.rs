//! The address space the runtime owns: its constants live in [`xenpv_abi::layout`]
//! (with the drawing), shared with `xenpv-protocol`, which checks start_info against
//! them; they are re-exported here so the planners read `crate::layout::*`.

pub use xenpv_abi::layout::*;
