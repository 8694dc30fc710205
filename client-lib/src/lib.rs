//! # shmkafka-client
//!
//! Write Kafka records into shared memory; `shmkafkad` delivers them.
//!
//! ```no_run
//! use shmkafka_client::{Message, Producer};
//! use std::time::Duration;
//!
//! let producer = Producer::connect()?;
//! let orders = producer.topic("orders")?;
//! producer.send(&orders, &Message::new().key(b"id-1").value(b"{\"qty\":3}"))?;
//! let report = producer.flush(Duration::from_secs(10))?;
//! assert!(report.failures.is_empty());
//! # Ok::<(), shmkafka_client::Error>(())
//! ```
//!
//! A [`Producer`] owns one ring in a sealed memfd that the daemon maps too.
//! `send` is a memcpy into the ring and a release store; no system call on
//! the hot path. The daemon keeps each record in the ring until the broker
//! has acknowledged it, so a record committed here survives a crash of this
//! process (the daemon holds the memory) and a restart of the daemon (this
//! process holds it, and registers it again when the daemon is back).

#![deny(missing_docs)]
// The C ABI module is the only place with `unsafe` (and `#[no_mangle]`).
#![deny(unsafe_code)]

mod connection;
mod delivery;
mod error;
#[allow(unsafe_code)]
pub mod ffi;
mod message;
mod producer;

pub use delivery::{Delivered, DeliveryError, DeliveryFuture, DeliveryReport, Persistence};
pub use error::Error;
pub use message::Message;
pub use producer::{
    BatchReservation, FlushReport, Producer, ProducerOptions, RecordLayout, Reservation, Stats,
    Topic,
};

/// librdkafka's name for an error code (`rd_kafka_err2name`), e.g.
/// `_MSG_TIMED_OUT` or `TOPIC_AUTHORIZATION_FAILED`; `UNKNOWN` for a code
/// librdkafka does not define.
pub fn error_name(code: i32) -> &'static str {
    shmkafka_protocol::kafka_error::error_name(code).unwrap_or("UNKNOWN")
}

/// librdkafka's description of an error code (`rd_kafka_err2str`), e.g.
/// "Local: Message timed out".
pub fn error_description(code: i32) -> &'static str {
    shmkafka_protocol::kafka_error::error_description(code).unwrap_or("Unknown error code")
}
pub use shmkafka_ringbuf::{Failure, Header, WhenFull, PARTITION_UNASSIGNED};
