//! Errors a client application can act on.

use std::path::PathBuf;
use std::time::Duration;

use shmkafka_protocol::{ConnectError, RecvError, RefusalCode, SendError};
use shmkafka_ringbuf::{CreateError, ReserveError};
use thiserror::Error;

/// Everything that can go wrong in the client library.
#[derive(Debug, Error)]
pub enum Error {
    /// The daemon's socket could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The daemon refused this client.
    #[error("shmkafkad at {path} refused this client ({reason:?}): {message}")]
    Refused {
        /// Socket path.
        path: PathBuf,
        /// Machine-readable reason.
        reason: RefusalCode,
        /// The daemon's explanation.
        message: String,
    },
    /// The daemon refused a topic.
    #[error("topic {topic:?} refused by shmkafkad ({reason:?}): {message}")]
    TopicRefused {
        /// Topic name.
        topic: String,
        /// Machine-readable reason.
        reason: RefusalCode,
        /// The daemon's explanation.
        message: String,
    },
    /// The topic name is not a legal Kafka topic name.
    #[error("invalid topic name {topic:?}: {message}")]
    InvalidTopic {
        /// Topic name.
        topic: String,
        /// What is wrong with it.
        message: String,
    },
    /// The daemon is not connected right now (it is restarting); records
    /// keep landing in the ring, but new topics cannot be registered.
    #[error("shmkafkad is not connected (restarting?); retry topic registration later")]
    Disconnected,
    /// The ring stayed full for the whole wait: the daemon cannot deliver as
    /// fast as the application writes (broker slow or down).
    #[error(
        "ring full: {needed} bytes needed, {free} free of {capacity}; the broker is not keeping up"
    )]
    Full {
        /// Bytes needed.
        needed: usize,
        /// Bytes free.
        free: usize,
        /// Ring capacity.
        capacity: usize,
    },
    /// The record can never fit this ring.
    #[error("record of {len} bytes exceeds the ring's record limit of {max} bytes (raise ProducerOptions::max_record_len)")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A header is too large to encode.
    #[error("a header name is longer than 65535 bytes or a value longer than 4 GiB")]
    HeaderTooLarge,
    /// `flush` did not see every record finished in time.
    #[error("flush timed out after {timeout:?} with {pending_bytes} bytes of records not yet acknowledged")]
    FlushTimeout {
        /// The timeout given.
        timeout: Duration,
        /// Ring bytes still waiting for acknowledgement.
        pending_bytes: u64,
    },
    /// The shared segment could not be created.
    #[error("cannot create the shared-memory ring: {0}")]
    Segment(#[from] CreateError),
    /// The ring's shared cursors are corrupted.
    #[error("ring corrupted: {0}")]
    Corrupted(String),
    /// Delivery reports were asked for on a producer created without them.
    #[error(
        "this producer was created without delivery reports (ProducerOptions::delivery_reports)"
    )]
    ReportsNotEnabled,
    /// The control connection failed.
    #[error("control connection: {0}")]
    Protocol(String),
}

impl From<ReserveError> for Error {
    fn from(e: ReserveError) -> Self {
        match e {
            ReserveError::Full {
                needed,
                free,
                capacity,
            } => Error::Full {
                needed,
                free,
                capacity,
            },
            ReserveError::TooLarge { len, max } => Error::TooLarge { len, max },
            ReserveError::HeaderTooLarge => Error::HeaderTooLarge,
            e @ ReserveError::Corrupted { .. } => Error::Corrupted(e.to_string()),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Disconnected => Error::Disconnected,
            e => Error::Protocol(e.to_string()),
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        Error::Protocol(e.to_string())
    }
}
