//! shmkafkad: drains shared-memory rings written by shmkafka clients into
//! librdkafka and on to Kafka.
//!
//! Unsafe code is confined to `kafka` (librdkafka FFI), `sys` (system calls
//! nix lacks) and the one by-reference hand-off in `drain`.

#![deny(unsafe_code)]

pub mod client;
pub mod config;
pub mod daemon;
pub mod drain;
pub mod exactly_once;
pub mod fuzzing;
#[allow(unsafe_code)]
pub mod kafka;
pub mod log_summary;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod registry;
pub mod server;
pub mod socket_path;
pub mod spool;
pub mod status_table;
mod sys;
pub mod tune;
