//! Kafka transactions on a [`Producer`]: `init`, `begin`, `commit`, `abort`,
//! and their errors sorted the way librdkafka's transactional API asks
//! callers to handle them.

use std::ffi::c_int;
use std::fmt;
use std::time::Duration;

use rdkafka_sys::bindings as rd;

use super::error::KafkaErrorCode;
use super::handle::NativeError;
use super::producer::Producer;

/// How the caller must react to a failed transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnErrorKind {
    /// Call the same operation again (it resumes in the background, e.g.
    /// after a timeout).
    Retriable,
    /// The transaction cannot commit: abort it and produce its records
    /// again in a new one.
    Abortable,
    /// The producer is unusable (fenced, or an error librdkafka does not
    /// classify, which its documentation says to treat as fatal): replace
    /// it. Whether a commit in progress took effect is unknown.
    Fatal,
}

/// A failed transactional call.
#[derive(Debug, Clone)]
pub struct TxnError {
    /// The call that failed.
    pub operation: &'static str,
    /// librdkafka's error code.
    pub code: KafkaErrorCode,
    /// What to do about it.
    pub kind: TxnErrorKind,
    /// librdkafka's message.
    pub message: String,
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed ({:?}): {}: {}",
            self.operation,
            self.kind,
            self.code.name(),
            self.message
        )
    }
}

impl std::error::Error for TxnError {}

impl TxnError {
    fn from_native(operation: &'static str, error: &NativeError) -> Self {
        // Order matters: librdkafka may set both the retriable and the
        // abortable flag; abort wins, and fatal wins over both.
        let kind = if error.is_fatal() {
            TxnErrorKind::Fatal
        } else if error.txn_requires_abort() {
            TxnErrorKind::Abortable
        } else if error.is_retriable() {
            TxnErrorKind::Retriable
        } else {
            TxnErrorKind::Fatal
        };
        Self {
            operation,
            code: KafkaErrorCode::from_raw(error.code_raw()),
            kind,
            message: error.message(),
        }
    }
}

/// librdkafka's timeout argument: milliseconds, -1 for "the transaction's
/// remaining time" (what it recommends for commit and abort).
fn timeout_arg(timeout: Option<Duration>) -> c_int {
    timeout.map_or(-1, |t| c_int::try_from(t.as_millis()).unwrap_or(c_int::MAX))
}

impl Producer {
    /// `rd_kafka_init_transactions`: fences earlier producers with this
    /// `transactional.id` and completes (commits or aborts) what they left
    /// open. Needs `transactional.id` (see `ProducerOptions`).
    pub fn init_transactions(&self, timeout: Duration) -> Result<(), TxnError> {
        // SAFETY: the client is live; the returned error (if any) is ours.
        let error = unsafe {
            NativeError::from_ptr(rd::rd_kafka_init_transactions(
                self.native_ptr(),
                timeout_arg(Some(timeout)),
            ))
        };
        error.map_or(Ok(()), |e| {
            Err(TxnError::from_native("init_transactions", &e))
        })
    }

    /// `rd_kafka_begin_transaction` (local: no request is sent).
    pub fn begin_transaction(&self) -> Result<(), TxnError> {
        // SAFETY: the client is live; the returned error (if any) is ours.
        let error =
            unsafe { NativeError::from_ptr(rd::rd_kafka_begin_transaction(self.native_ptr())) };
        error.map_or(Ok(()), |e| {
            Err(TxnError::from_native("begin_transaction", &e))
        })
    }

    /// `rd_kafka_commit_transaction`: flushes (delivery reports are then
    /// collected for the next [`Producer::poll`]) and commits; blocks up to
    /// `timeout`, or the transaction's remaining time for `None`.
    pub fn commit_transaction(&self, timeout: Option<Duration>) -> Result<(), TxnError> {
        // SAFETY: the client is live; the returned error (if any) is ours.
        let error = unsafe {
            NativeError::from_ptr(rd::rd_kafka_commit_transaction(
                self.native_ptr(),
                timeout_arg(timeout),
            ))
        };
        error.map_or(Ok(()), |e| {
            Err(TxnError::from_native("commit_transaction", &e))
        })
    }

    /// `rd_kafka_abort_transaction`: purges what is outstanding (those
    /// reports come through [`Producer::poll`]) and aborts.
    pub fn abort_transaction(&self, timeout: Option<Duration>) -> Result<(), TxnError> {
        // SAFETY: the client is live; the returned error (if any) is ours.
        let error = unsafe {
            NativeError::from_ptr(rd::rd_kafka_abort_transaction(
                self.native_ptr(),
                timeout_arg(timeout),
            ))
        };
        error.map_or(Ok(()), |e| {
            Err(TxnError::from_native("abort_transaction", &e))
        })
    }
}
