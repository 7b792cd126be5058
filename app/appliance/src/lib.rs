//! The sample appliance's decisions, pure and host-tested (the kernel in `app/` only
//! moves bytes between these and its sockets):
//! - [`config`]: the network words of its command line (`ip=`, `vifs=`);
//! - [`http`]: requests parsed, responses planned;
//! - [`pattern`]: the `/bytes/N` body and its checksum.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod http;
pub mod pattern;
