//! The counters a drain thread owns and everything else reads: status,
//! metrics and the supervisor's watchdog.

use std::sync::atomic::AtomicU64;

use super::latency::LatencyHistogram;

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
    /// Produce-to-acknowledgement latency of acknowledged records.
    pub latency: LatencyHistogram,
    /// Nanoseconds spent in `wait_for_work` (parked or blocked in poll with
    /// nothing else to do); the busy ratio is the rest of the wall time.
    pub idle_ns: AtomicU64,
}
