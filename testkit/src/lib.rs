//! Test brokers and a verifying consumer for shmkafka's integration tests and
//! benchmarks.
//!
//! - [`MockBrokerProcess`]: the `shmkafka-mock-broker` binary (librdkafka's
//!   mock cluster) in a child process, so tests can kill it or outlive it.
//! - [`KafkaCluster`]: Apache Kafka 4.4.0 (KRaft) from its Maven Central
//!   jars, one broker or three, each a child JVM a test can kill, restart,
//!   pause and resume; [`KafkaCluster::console_consume`] reads back with
//!   Kafka's own console consumer.
//! - [`Tansu`]: the tansu broker (a real Kafka-protocol broker with SQLite
//!   storage) in a child process, when it is installed.
//! - [`consume_all`]: reads back what actually arrived at a broker.
//! - [`DaemonProcess`]: `shmkafkad` in a child process.
//!
//! Every child process is killed when its handle drops.

#![deny(missing_docs)]
// One unsafe block: `die_with_parent`'s pre-exec hook.
#![deny(unsafe_code)]

mod consume;
mod daemon;
mod error;
mod kafka;
mod mock_broker;
mod process;
mod tansu;
mod tls;

pub use consume::{consume_all, consume_all_with, ConsumeOptions, ConsumedRecord};
pub use daemon::{
    tail, wait_timeout, wait_until, ChildRole, DaemonOptions, DaemonProcess, SHMKAFKAD_BIN,
    SHMKAFKAD_BIN_ENV,
};
pub use error::TestkitError;
pub use kafka::{
    java, kafka_libs, KafkaCluster, KafkaOptions, KafkaToolRecord, ProduceCounters, KAFKA_LIBS_ENV,
    KAFKA_VERSION,
};
pub use mock_broker::{MockBrokerProcess, MOCK_BROKER_BIN, MOCK_BROKER_BIN_ENV};
pub use process::{
    die_with_parent, free_port, locate_binary, report_skip, unique_name, ChildGuard,
};
pub use tansu::{Tansu, TANSU_BIN_ENV};
pub use tls::{CertFiles, TestCa};
