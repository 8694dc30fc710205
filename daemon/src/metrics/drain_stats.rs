//! The counters a drain thread owns and everything else reads: status,
//! metrics and the supervisor's watchdog.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use super::latency::LatencyHistogram;
use crate::kafka::KafkaErrorCode;

/// Distinct error codes counted per drain thread: librdkafka's codes are a
/// bounded set well below this; the cap keeps it so whatever a broker
/// answers. Codes past it are counted under the code 0 slot, named
/// [`OTHER_ERRORS`].
const MAX_ERROR_CODES: usize = 256;

/// The `error` label of failures whose code came past [`MAX_ERROR_CODES`].
pub const OTHER_ERRORS: &str = "other";

/// One drain thread's counters. Each is written by its drain thread only
/// and read by others with `Relaxed` loads: they are monotonic statistics,
/// and no reader infers anything about other memory from them.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// Loop iterations; stops moving if the thread wedges.
    pub heartbeat: AtomicU64,
    /// Records handed to librdkafka (including those produced again).
    pub produced: AtomicU64,
    /// Records acknowledged.
    pub delivered: AtomicU64,
    /// Records failed permanently.
    pub failed: AtomicU64,
    /// Records written to the dead-letter spool (failures, and at shutdown
    /// the undelivered records of gone clients).
    pub spooled: AtomicU64,
    /// Records produced again after a retriable failure or a producer
    /// replacement.
    pub reproduced: AtomicU64,
    /// Recoveries after retriable delivery failures (rings rewound, same
    /// producer).
    pub retries: AtomicU64,
    /// librdkafka producers replaced after a fatal error.
    pub producer_rebuilds: AtomicU64,
    /// Exactly-once: transactions committed.
    pub transactions_committed: AtomicU64,
    /// Exactly-once: transactions aborted (their records are produced
    /// again).
    pub transactions_aborted: AtomicU64,
    /// Exactly-once: records a previous daemon's committed transaction
    /// carried, marked delivered without being sent again.
    pub recovered_from_progress: AtomicU64,
    /// Produce-to-acknowledgement latency of acknowledged records.
    pub latency: LatencyHistogram,
    /// Nanoseconds spent in `wait_for_work` (parked or blocked in poll with
    /// nothing else to do); the busy ratio is the rest of the wall time.
    pub idle_ns: AtomicU64,
    /// Records failed permanently, by raw error code (0: past the cap).
    /// Behind a lock: failures are rare, and counted once each.
    failed_by_code: Mutex<BTreeMap<i32, u64>>,
}

impl DrainStats {
    /// Counts one permanent failure under its error code.
    pub fn count_failure(&self, code: KafkaErrorCode) {
        let mut counts = self
            .failed_by_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = if counts.len() < MAX_ERROR_CODES || counts.contains_key(&code.raw()) {
            code.raw()
        } else {
            0
        };
        *counts.entry(key).or_default() += 1;
    }

    /// Permanent failures by error name (librdkafka's, `_MSG_TIMED_OUT`,
    /// `MSG_SIZE_TOO_LARGE`, ...).
    pub fn failures_by_error(&self) -> Vec<(String, u64)> {
        self.failed_by_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&code, &n)| {
                let name = if code == 0 {
                    OTHER_ERRORS.to_owned()
                } else {
                    KafkaErrorCode::from_raw(code).name().into_owned()
                };
                (name, n)
            })
            .collect()
    }
}
