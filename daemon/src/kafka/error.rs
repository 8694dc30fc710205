//! librdkafka error codes, their classification, and the typed errors of this
//! module's operations.

use std::borrow::Cow;
use std::ffi::CStr;
use std::fmt;

use rdkafka_sys::bindings as rd;
use rdkafka_sys::rd_kafka_resp_err_t as RespErr;

/// A librdkafka `rd_kafka_resp_err_t`, kept as the raw integer.
///
/// Held raw rather than as the bindgen enum because brokers may answer with
/// error codes newer than this librdkafka knows, and librdkafka forwards those
/// untouched: materialising such a value as the Rust enum would be undefined
/// behaviour. Convert to the enum only through [`KafkaErrorCode::known`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaErrorCode(i32);

/// What the daemon should do with a record whose delivery failed with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A condition of the cluster or the network: producing the same record
    /// again later may succeed, so keep it in the ring and re-produce it.
    Retriable,
    /// The record itself, its topic/partition, or our authorisation is wrong:
    /// it will fail the same way again, so it goes to the failure queue and
    /// the dead-letter spool.
    Permanent,
    /// The producer instance is unusable (idempotence state lost, fenced):
    /// build a new producer and re-produce what was in flight.
    Fatal,
}

impl KafkaErrorCode {
    /// `RD_KAFKA_RESP_ERR_NO_ERROR`.
    pub const NO_ERROR: Self = Self(0);
    /// `_UNKNOWN_TOPIC`: the daemon uses it for records whose topic id the
    /// client never registered (or was refused).
    pub const UNKNOWN_TOPIC: Self = Self::from_enum(RespErr::RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC);
    /// `_BAD_MSG`: the daemon uses it for records whose header block does
    /// not decode.
    pub const BAD_MSG: Self = Self::from_enum(RespErr::RD_KAFKA_RESP_ERR__BAD_MSG);
    /// `_PURGE_QUEUE`: purged before it was sent.
    pub const PURGE_QUEUE: Self = Self::from_enum(RespErr::RD_KAFKA_RESP_ERR__PURGE_QUEUE);
    /// `_PURGE_INFLIGHT`: purged while a request carrying it was in flight.
    pub const PURGE_INFLIGHT: Self = Self::from_enum(RespErr::RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
    /// `_MSG_TIMED_OUT`: `message.timeout.ms` passed before an
    /// acknowledgement.
    pub const MSG_TIMED_OUT: Self = Self::from_enum(RespErr::RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);

    /// Wraps a raw `rd_kafka_resp_err_t` value.
    pub const fn from_raw(code: i32) -> Self {
        Self(code)
    }

    pub(crate) const fn from_enum(code: RespErr) -> Self {
        Self(code as i32)
    }

    /// The raw integer code.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The code as the bindgen enum, when this librdkafka knows it.
    pub fn known(self) -> Option<RespErr> {
        RespErr::try_from(self.0).ok()
    }

    /// True for `NO_ERROR`.
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// `_PURGE_QUEUE` or `_PURGE_INFLIGHT`: failed by `rd_kafka_purge`, ours
    /// or librdkafka's own after a fatal error.
    pub fn is_purge(self) -> bool {
        self == Self::PURGE_QUEUE || self == Self::PURGE_INFLIGHT
    }

    /// librdkafka's symbolic name without the `RD_KAFKA_RESP_ERR_` prefix,
    /// e.g. `_QUEUE_FULL` or `MSG_SIZE_TOO_LARGE` (`rd_kafka_err2name`).
    pub fn name(self) -> Cow<'static, str> {
        match self.known() {
            // SAFETY: `code` is a valid enum value; rd_kafka_err2name returns
            // a pointer into librdkafka's static, NUL-terminated error table
            // for every code it knows, so the string lives for 'static.
            Some(code) => static_str(unsafe { rd::rd_kafka_err2name(code) }),
            None => Cow::Owned(format!("ERR_{}", self.0)),
        }
    }

    /// librdkafka's human-readable description (`rd_kafka_err2str`).
    pub fn description(self) -> Cow<'static, str> {
        match self.known() {
            // SAFETY: as in `name`: a static string from librdkafka's table.
            Some(code) => static_str(unsafe { rd::rd_kafka_err2str(code) }),
            None => Cow::Owned(format!(
                "broker error code {} unknown to librdkafka",
                self.0
            )),
        }
    }

    /// Classifies a delivery-report or produce error.
    ///
    /// librdkafka has already retried the retriable protocol errors itself
    /// (up to `message.timeout.ms`) before it reports a failure, so this is not
    /// the Kafka protocol's "retriable" flag: it answers whether re-producing
    /// the same record later can succeed. `rd_kafka_error_is_retriable()` does
    /// not help here: it exists only on `rd_kafka_error_t` objects (and is
    /// never set by `rd_kafka_produceva`), while delivery reports carry a bare
    /// `rd_kafka_resp_err_t`.
    ///
    /// Codes not listed are treated as permanent: a permanent record is
    /// spooled, never dropped, whereas a wrongly retriable one would stall its
    /// ring forever.
    pub fn class(self) -> ErrorClass {
        use RespErr::*;
        let Some(code) = self.known() else {
            return ErrorClass::Permanent;
        };
        match code {
            // Local conditions that clear by themselves or by a new attempt.
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
            | RD_KAFKA_RESP_ERR__TIMED_OUT
            | RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE
            | RD_KAFKA_RESP_ERR__TRANSPORT
            | RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
            | RD_KAFKA_RESP_ERR__RESOLVE
            | RD_KAFKA_RESP_ERR__QUEUE_FULL
            | RD_KAFKA_RESP_ERR__WAIT_COORD
            | RD_KAFKA_RESP_ERR__NODE_UPDATE
            | RD_KAFKA_RESP_ERR__ISR_INSUFF
            | RD_KAFKA_RESP_ERR__RETRY
            // A transactional producer refuses records while its transaction
            // must be aborted (a record of it failed): the abort clears it.
            | RD_KAFKA_RESP_ERR__STATE
            // Purged by us (shutdown, or librdkafka after a fatal error) or
            // dropped with the handle: never attempted, or attempted without
            // an answer.
            | RD_KAFKA_RESP_ERR__PURGE_QUEUE
            | RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
            | RD_KAFKA_RESP_ERR__DESTROY
            // Broker-side conditions of availability, not of the record.
            | RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT
            | RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION
            | RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
            | RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION
            | RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE
            | RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE
            | RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS
            | RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR
            | RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH
            | RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH
            | RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED
            | RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS
            | RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS
            | RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE
            | RD_KAFKA_RESP_ERR_NOT_COORDINATOR => ErrorClass::Retriable,

            // The instance must be replaced. librdkafka turns these into a
            // fatal error on an idempotent producer.
            RD_KAFKA_RESP_ERR__FATAL
            | RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE
            | RD_KAFKA_RESP_ERR__FENCED
            | RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER
            | RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH
            | RD_KAFKA_RESP_ERR_PRODUCER_FENCED
            | RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID
            | RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING => ErrorClass::Fatal,

            // Everything else: the record (size, format, timestamp), its
            // destination (unknown topic or partition: librdkafka already
            // waited `topic.metadata.propagation.max.ms` for it to appear),
            // authorisation, policy, or configuration.
            _ => ErrorClass::Permanent,
        }
    }

    /// Re-producing the same record later may succeed.
    pub fn is_retriable(self) -> bool {
        self.class() == ErrorClass::Retriable
    }

    /// The record will fail the same way again.
    pub fn is_permanent(self) -> bool {
        self.class() == ErrorClass::Permanent
    }

    /// The producer instance must be replaced.
    pub fn is_fatal(self) -> bool {
        self.class() == ErrorClass::Fatal
    }
}

fn static_str(ptr: *const std::ffi::c_char) -> Cow<'static, str> {
    if ptr.is_null() {
        return Cow::Borrowed("(null)");
    }
    // SAFETY: callers pass only pointers into librdkafka's static error
    // tables (checked non-null above), which are NUL-terminated and never
    // freed.
    let s: &'static CStr = unsafe { CStr::from_ptr(ptr) };
    s.to_string_lossy()
}

impl fmt::Debug for KafkaErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for KafkaErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.0, self.description())
    }
}

/// Errors of client setup and of whole-client operations.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// `rd_kafka_conf_set` refused a property.
    #[error("invalid librdkafka property {key:?}: {reason}")]
    Config {
        /// The property name as given.
        key: String,
        /// librdkafka's errstr.
        reason: String,
    },
    /// A key or value contained a NUL byte and cannot be passed to C.
    #[error("librdkafka property {key:?} contains a NUL byte")]
    NulByte {
        /// The property name (lossy if the NUL was in the key).
        key: String,
    },
    /// A property the daemon cannot honour, or one this build of
    /// librdkafka lacks.
    #[error("{key}: {reason}")]
    Unsupported {
        /// The property name as given.
        key: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// `rd_kafka_new` refused the configuration as a whole while checking
    /// it (librdkafka's message, which names the properties involved).
    #[error("librdkafka refuses the configuration: {0}")]
    Refused(String),
    /// `rd_kafka_new` failed.
    #[error("creating the librdkafka client failed: {0}")]
    ClientCreation(String),
    /// Thread pinning was requested with an empty or out-of-range CPU list.
    #[error("invalid CPU list for librdkafka thread pinning: {0}")]
    Pinning(String),
    /// `rd_kafka_topic_new` failed.
    #[error("creating topic handle {topic:?} failed: {code}")]
    TopicCreation {
        /// The topic name.
        topic: String,
        /// librdkafka's error (from `rd_kafka_last_error`).
        code: KafkaErrorCode,
    },
    /// A topic name contained a NUL byte.
    #[error("topic name {0:?} contains a NUL byte")]
    TopicName(String),
    /// `rd_kafka_flush` did not empty the queue in time.
    #[error("flush timed out with {in_flight} message(s) still in flight")]
    FlushTimeout {
        /// `rd_kafka_outq_len` after the timeout.
        in_flight: i32,
    },
    /// Another librdkafka call failed with a code.
    #[error("{operation} failed: {code}")]
    Call {
        /// Which call.
        operation: &'static str,
        /// The code it returned.
        code: KafkaErrorCode,
    },
    /// `rd_kafka_mock_cluster_new` returned NULL.
    #[error("creating the librdkafka mock cluster failed")]
    MockCluster,
}

impl KafkaError {
    pub(crate) fn call(operation: &'static str, code: RespErr) -> Result<(), Self> {
        let code = KafkaErrorCode::from_enum(code);
        if code.is_ok() {
            Ok(())
        } else {
            Err(Self::Call { operation, code })
        }
    }
}

/// Why `rd_kafka_produceva` refused a message. Nothing was enqueued, no
/// delivery report will come, and the value is no longer referenced.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// `queue.buffering.max.messages`/`.kbytes` reached: poll (which frees
    /// queue space as delivery reports are served) and produce again. Never a
    /// reason to drop the record.
    #[error("librdkafka queue full: {code}")]
    QueueFull {
        /// `_QUEUE_FULL`.
        code: KafkaErrorCode,
    },
    /// The record exceeds the client's `message.max.bytes`.
    #[error("message too large: {detail}")]
    MessageTooLarge {
        /// `MSG_SIZE_TOO_LARGE`.
        code: KafkaErrorCode,
        /// librdkafka's error string.
        detail: String,
    },
    /// The topic is known not to exist.
    #[error("unknown topic: {detail}")]
    UnknownTopic {
        /// `_UNKNOWN_TOPIC` or `UNKNOWN_TOPIC_OR_PART`.
        code: KafkaErrorCode,
        /// librdkafka's error string.
        detail: String,
    },
    /// The explicit partition is known not to exist.
    #[error("unknown partition: {detail}")]
    UnknownPartition {
        /// `_UNKNOWN_PARTITION`.
        code: KafkaErrorCode,
        /// librdkafka's error string.
        detail: String,
    },
    /// The producer raised a fatal error earlier; it must be replaced.
    #[error("producer is in a fatal state: {detail}")]
    Fatal {
        /// The underlying fatal error's code.
        code: KafkaErrorCode,
        /// librdkafka's error string.
        detail: String,
    },
    /// The topic handle belongs to another producer.
    #[error("topic handle belongs to another producer")]
    ForeignTopic,
    /// Anything else librdkafka reported.
    #[error("produce failed: {code}: {detail}")]
    Other {
        /// The code.
        code: KafkaErrorCode,
        /// librdkafka's error string.
        detail: String,
    },
}

impl ProduceError {
    /// The `rd_kafka_resp_err_t` behind this error (`_INVALID_ARG` for
    /// [`ProduceError::ForeignTopic`]).
    pub fn code(&self) -> KafkaErrorCode {
        match self {
            Self::QueueFull { code }
            | Self::MessageTooLarge { code, .. }
            | Self::UnknownTopic { code, .. }
            | Self::UnknownPartition { code, .. }
            | Self::Fatal { code, .. }
            | Self::Other { code, .. } => *code,
            Self::ForeignTopic => {
                KafkaErrorCode::from_enum(RespErr::RD_KAFKA_RESP_ERR__INVALID_ARG)
            }
        }
    }

    /// How to treat the refused record (see [`KafkaErrorCode::class`]): e.g.
    /// `QueueFull` is retriable, and a topic that failed authorisation is
    /// refused here as `Other(TOPIC_AUTHORIZATION_FAILED)`, permanent.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Fatal { .. } => ErrorClass::Fatal,
            Self::ForeignTopic => ErrorClass::Permanent,
            other => other.code().class(),
        }
    }

    /// Sorts a refused produce into its variant.
    pub(crate) fn classify(code: KafkaErrorCode, is_fatal: bool, detail: String) -> Self {
        use RespErr::*;
        if is_fatal {
            return Self::Fatal { code, detail };
        }
        match code.known() {
            Some(RD_KAFKA_RESP_ERR__QUEUE_FULL) => Self::QueueFull { code },
            Some(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) => Self::MessageTooLarge { code, detail },
            Some(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC | RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                Self::UnknownTopic { code, detail }
            }
            Some(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) => Self::UnknownPartition { code, detail },
            Some(RD_KAFKA_RESP_ERR__FATAL) => Self::Fatal { code, detail },
            _ => Self::Other { code, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_librdkafka() {
        let code = KafkaErrorCode::from_enum(RespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
        assert_eq!(code.name(), "MSG_SIZE_TOO_LARGE");
        assert_eq!(code.raw(), 10);
        assert_eq!(KafkaErrorCode::from_raw(-184).name(), "_QUEUE_FULL");
    }

    #[test]
    fn named_codes_match_librdkafka() {
        for (code, name) in [
            (KafkaErrorCode::UNKNOWN_TOPIC, "_UNKNOWN_TOPIC"),
            (KafkaErrorCode::BAD_MSG, "_BAD_MSG"),
            (KafkaErrorCode::PURGE_QUEUE, "_PURGE_QUEUE"),
            (KafkaErrorCode::PURGE_INFLIGHT, "_PURGE_INFLIGHT"),
            (KafkaErrorCode::MSG_TIMED_OUT, "_MSG_TIMED_OUT"),
        ] {
            assert_eq!(code.name(), name);
        }
        assert_eq!(KafkaErrorCode::UNKNOWN_TOPIC.raw(), -188);
        assert!(KafkaErrorCode::PURGE_QUEUE.is_purge());
        assert!(KafkaErrorCode::PURGE_INFLIGHT.is_purge());
        assert!(!KafkaErrorCode::MSG_TIMED_OUT.is_purge());
    }

    #[test]
    fn unknown_codes_are_named_and_permanent() {
        let code = KafkaErrorCode::from_raw(31_000);
        assert_eq!(code.name(), "ERR_31000");
        assert!(code.is_permanent());
    }

    #[test]
    fn classification() {
        use RespErr::*;
        for retriable in [
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR__PURGE_QUEUE,
        ] {
            assert!(
                KafkaErrorCode::from_enum(retriable).is_retriable(),
                "{retriable:?}"
            );
        }
        for permanent in [
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
            RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            RD_KAFKA_RESP_ERR_INVALID_RECORD,
            RD_KAFKA_RESP_ERR_INVALID_MSG,
            RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
        ] {
            assert!(
                KafkaErrorCode::from_enum(permanent).is_permanent(),
                "{permanent:?}"
            );
        }
        assert!(KafkaErrorCode::from_enum(RD_KAFKA_RESP_ERR__FATAL).is_fatal());
        assert!(
            KafkaErrorCode::from_enum(RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER).is_fatal()
        );
    }
}
