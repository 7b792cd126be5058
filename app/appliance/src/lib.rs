//! The sample appliance's decisions, pure and host-tested (the kernel in `app/` only
//! moves bytes between these and its sockets):
//! - [`admission`]: which TCP connections are taken and how long they are kept;
//! - [`breaker`]: when the disk is called again after a call failed (`GET /files/…`);
//! - [`config`]: the network words of its command line (`ip=`, `vifs=`);
//! - [`http`]: requests parsed, responses planned;
//! - [`pattern`]: the `/bytes/N` body and its checksum;
//! - [`round`]: how much one round of the loop takes in.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod admission;
pub mod breaker;
pub mod config;
pub mod http;
pub mod pattern;
pub mod round;
