//! What the daemon's integration tests (`daemon/tests/*.rs`) share, as one
//! library: each test binary uses a different part, and a library's public
//! items are compiled once and never count as dead code in a binary that
//! does not use them.
//!
//! - [`common`]: client child processes, the deterministic record workload
//!   and the verifier of what the broker stored.
//! - [`fault_support`]: streaming children that report their commits, the
//!   daemon's status, the broker's watermarks, the fault-table row.
//! - [`spool_support`]: a daemon with a spool directory and the
//!   `shmkafkad spool` CLI.
//! - [`kafka_common`]: the librdkafka-level tests' records and checks.
//! - [`kafka_real`]: an Apache Kafka cluster as production runs topics.
//! - [`stream_run`]: a 3-broker cluster, a daemon and streaming clients
//!   for the real-Kafka fault tests.
//!
//! The daemon's binaries are found next to the test executable
//! ([`shmkafka_testkit::locate_binary`]): cargo builds them before it runs
//! integration tests.

pub mod common;
pub mod fault_support;
pub mod kafka_common;
pub mod kafka_real;
pub mod spool_support;
pub mod stream_run;
