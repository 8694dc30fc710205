//! librdkafka through `rdkafka-sys`: the daemon's only module with `unsafe`
//! FFI.
//!
//! Every native handle is owned by a small wrapper whose `Drop` calls the
//! matching destroy (`handle.rs`); callbacks only collect data that the
//! owning [`Producer`] hands out from [`Producer::poll`], so no daemon code
//! runs inside librdkafka.
//!
//! # librdkafka behaviour the daemon relies on (checked in its sources, 2.12.1)
//! - **What is copied.** `rd_kafka_produceva` copies the key into the
//!   message allocation (`rd_kafka_msg_new00`) and header names and values
//!   into the header list (`rd_kafka_header_add`). Only the value is held by
//!   reference when neither `F_COPY` nor `F_FREE` is given.
//! - **Synchronous refusals** ([`ProduceError`]): `_QUEUE_FULL` (poll, then
//!   retry), `MSG_SIZE_TOO_LARGE` against the *client's*
//!   `message.max.bytes`, `_UNKNOWN_TOPIC` / `_UNKNOWN_PARTITION` once the
//!   metadata is known, a topic-level broker error seen before (e.g.
//!   `TOPIC_AUTHORIZATION_FAILED`, as `Other`), and `Fatal` after a fatal
//!   error. Before metadata is known a message is queued and fails later in
//!   its delivery report instead. Use [`ProduceError::class`].
//! - **Unknown topics** with `allow.auto.create.topics=false` fail in the
//!   report with `UNKNOWN_TOPIC_OR_PART` only after
//!   `topic.metadata.propagation.max.ms` (default 30 s).
//! - **Timeouts** are detected by a once-a-second scan: with
//!   `message.timeout.ms=1500` and the broker down, the `_MSG_TIMED_OUT`
//!   report came after ~3 s.
//! - **Fatal errors** (idempotence) purge the queue: queued messages get
//!   `_PURGE_QUEUE` reports (in-flight requests still get their real
//!   outcome), [`Producer::fatal_error`] names the cause, and every later
//!   produce fails with [`ProduceError::Fatal`]; the drain replaces the
//!   producer (`drain::recovery`). A mock broker's
//!   `OUT_OF_ORDER_SEQUENCE_NUMBER` answer to the head-of-line request
//!   raises one.
//! - **Destroy** (dropping the last of `Producer`/`Topic`) discards what is
//!   still queued without reports: flush, then purge and poll, first.
//! - **Mock cluster**: brokers on 127.0.0.1, ids from 1; topics are
//!   auto-created with 4 partitions unless the client sets
//!   `allow.auto.create.topics=false`; it does not enforce
//!   `message.max.bytes` (inject `MSG_SIZE_TOO_LARGE` with
//!   [`MockCluster::push_request_errors`] instead).

mod callbacks;
pub mod client_errors;
mod config;
mod delivery;
mod error;
mod error_descs;
mod handle;
mod log;
mod mock;
mod pinning;
mod preflight;
mod producer;
mod transactions;

pub use callbacks::StatisticsFeed;
pub use config::{is_secret_key, KafkaConfig, Secret, MASK};
pub use delivery::{DeliveryReport, Persistence};
pub use error::{ErrorClass, KafkaError, KafkaErrorCode, ProduceError};
pub use error_descs::{librdkafka_error_descriptions, ErrorDescription};
pub use handle::librdkafka_build;
pub use log::LOG_TARGET;
pub use mock::{api_key, MockCluster, MockTopicSpec, MOCK_DEFAULT_PARTITIONS};
pub use pinning::ThreadPinning;
pub use producer::{
    Header, OutgoingMessage, Producer, ProducerOptions, PurgeScope, Topic, PARTITION_UNASSIGNED,
};
pub use transactions::{TxnError, TxnErrorKind};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_and_sync<T: Send + Sync>() {}

    #[test]
    fn handles_cross_threads() {
        send_and_sync::<Producer>();
        send_and_sync::<Topic>();
        send_and_sync::<MockCluster>();
    }
}
