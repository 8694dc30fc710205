//! `[exactly_once]`: the opt-in mode in which every record a client
//! committed appears exactly once to `read_committed` consumers, across
//! daemon crashes (see `crate::exactly_once`).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::kafka::KafkaConfig;

/// Default name of the compacted topic that holds each ring's committed
/// position.
pub const DEFAULT_PROGRESS_TOPIC: &str = "shmkafka.progress";
/// Default commit interval. 100 ms keeps commit-to-visibility well under a
/// second and the commit cost (two coordinator round trips) small beside
/// the records each transaction carries.
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 100;
/// Default record bound of one transaction.
pub const DEFAULT_COMMIT_MAX_RECORDS: usize = 200_000;
/// Default byte bound (keys and values) of one transaction: what a broker
/// takes in well under a second, so a commit's flush stays short and no
/// record outlives its transaction waiting in librdkafka's queue.
pub const DEFAULT_COMMIT_MAX_BYTES: u64 = 32 << 20;
/// librdkafka's `transaction.timeout.ms` default, which the daemon keeps.
const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;
/// Longest daemon id: it becomes part of `transactional.id`s and keys.
const MAX_DAEMON_ID_LEN: usize = 100;

/// `[exactly_once]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExactlyOnceSection {
    /// Off by default: at-least-once, no transactions.
    pub enabled: bool,
    /// A name for this daemon that is stable across restarts and unique
    /// among the daemons writing to the cluster (e.g. the host name). It
    /// names the transactional ids and the progress keys.
    pub daemon_id: String,
    /// The compacted topic holding committed positions; created (compacted)
    /// if missing.
    pub progress_topic: String,
    /// Partitions, when the daemon creates the progress topic.
    pub progress_partitions: u32,
    /// Replication factor, when the daemon creates the progress topic (-1:
    /// the broker's `default.replication.factor`).
    pub progress_replication_factor: i32,
    /// Longest time a transaction stays open.
    pub commit_interval_ms: u64,
    /// Most records in one transaction.
    pub commit_max_records: usize,
    /// Most bytes (keys and values) in one transaction.
    pub commit_max_bytes: u64,
}

impl Default for ExactlyOnceSection {
    fn default() -> Self {
        Self {
            enabled: false,
            daemon_id: String::new(),
            progress_topic: DEFAULT_PROGRESS_TOPIC.to_owned(),
            progress_partitions: 1,
            progress_replication_factor: -1,
            commit_interval_ms: DEFAULT_COMMIT_INTERVAL_MS,
            commit_max_records: DEFAULT_COMMIT_MAX_RECORDS,
            commit_max_bytes: DEFAULT_COMMIT_MAX_BYTES,
        }
    }
}

impl ExactlyOnceSection {
    /// Refuses settings that would break the guarantee, naming them.
    pub fn validate(&self, kafka: &KafkaConfig) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let id = &self.daemon_id;
        if id.is_empty() {
            return invalid(
                "exactly_once.daemon_id is not set: give this daemon a name that stays the same \
                 across restarts and differs from every other daemon on the cluster (e.g. the \
                 host name)"
                    .into(),
            );
        }
        if id.len() > MAX_DAEMON_ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return invalid(format!(
                "exactly_once.daemon_id = {id:?} must be 1..={MAX_DAEMON_ID_LEN} characters of \
                 A-Z a-z 0-9 . _ -"
            ));
        }
        if kafka.get("enable.idempotence").is_some_and(|v| v != "true") {
            return invalid(
                "exactly_once needs [kafka] enable.idempotence = true (transactions are built on \
                 the idempotent producer)"
                    .into(),
            );
        }
        if kafka
            .get("acks")
            .is_some_and(|v| !matches!(v, "all" | "-1"))
        {
            return invalid(
                "exactly_once needs [kafka] acks = \"all\": a record acknowledged by the leader \
                 alone can be lost with it, and its transaction with it"
                    .into(),
            );
        }
        let topic = &self.progress_topic;
        if topic.is_empty()
            || topic.len() > 249
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return invalid(format!(
                "exactly_once.progress_topic = {topic:?} is not a valid Kafka topic name"
            ));
        }
        if self.progress_partitions == 0 || self.progress_replication_factor == 0 {
            return invalid(
                "exactly_once.progress_partitions and progress_replication_factor must not be 0"
                    .into(),
            );
        }
        let timeout = self.transaction_timeout(kafka).as_millis() as u64;
        if self.commit_interval_ms == 0 || self.commit_interval_ms * 2 > timeout {
            return invalid(format!(
                "exactly_once.commit_interval_ms = {} must be 1..={} (half of [kafka] \
                 transaction.timeout.ms = {timeout})",
                self.commit_interval_ms,
                timeout / 2
            ));
        }
        if self.commit_max_records == 0 || self.commit_max_bytes == 0 {
            return invalid(
                "exactly_once.commit_max_records and commit_max_bytes must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// Longest time a transaction stays open.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    /// `transaction.timeout.ms` as configured, or librdkafka's default.
    pub fn transaction_timeout(&self, kafka: &KafkaConfig) -> Duration {
        let ms = kafka
            .get("transaction.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_TRANSACTION_TIMEOUT_MS);
        Duration::from_millis(ms)
    }
}
