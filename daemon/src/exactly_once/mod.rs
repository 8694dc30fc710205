//! Exactly-once mode (`[exactly_once] enabled = true`).
//!
//! Each drain thread produces inside Kafka transactions with its own
//! `transactional.id`, derived from the configured daemon id and the
//! thread's index. Every transaction also writes, for each ring it carried
//! records of, the ring's *committed position*: the stream position up to
//! which every record of the ring is finished (delivered in this or an
//! earlier transaction, or failed and in the spool). Records and positions
//! become visible together or not at all, and a ring's space is released
//! only after the commit that covers it.
//!
//! After a crash, the next daemon fences every transactional id the
//! previous one used (aborting what it left open), reads the positions back
//! with `read_committed`, and when a ring registers again it marks the
//! records before its committed position delivered without sending them;
//! only the rest is produced again. So a `read_committed` consumer sees each
//! committed record once, whatever happened to the daemon.
//!
//! - [`progress`]: the progress topic's keys and values, and reading it;
//! - [`start`]: the start-up: create the topic, fence, load positions;
//! - the drain thread's side is `crate::drain::transaction`.

pub mod progress;
mod start;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::ExactlyOnceSection;
use crate::kafka::KafkaConfig;

pub use start::spawn_start;

/// What the exactly-once mode needs, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[exactly_once] daemon_id`.
    pub daemon_id: String,
    /// The compacted topic of committed positions.
    pub progress_topic: String,
    /// For creating the topic.
    pub progress_partitions: u32,
    /// For creating the topic.
    pub progress_replication_factor: i32,
    /// Longest time a transaction stays open.
    pub commit_interval: Duration,
    /// Most records in one transaction.
    pub commit_max_records: usize,
    /// Most bytes (keys and values) in one transaction.
    pub commit_max_bytes: u64,
    /// `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// Drain threads (one transactional id each).
    pub threads: usize,
    /// The producers' librdkafka configuration, adjusted for transactions.
    pub kafka: KafkaConfig,
}

impl Settings {
    /// Settings of an enabled `[exactly_once]` section.
    pub fn new(section: &ExactlyOnceSection, kafka: &KafkaConfig, threads: usize) -> Self {
        let transaction_timeout = section.transaction_timeout(kafka);
        let mut kafka = kafka.clone();
        // The daemon's default `message.timeout.ms = 0` (never give up) would
        // let a record outlive its transaction: a transaction that cannot
        // finish is aborted and produced again instead, so a record's
        // attempt may take as long as its transaction, no longer.
        if kafka.get("message.timeout.ms") == Some("0") {
            kafka.set(
                "message.timeout.ms",
                transaction_timeout.as_millis().to_string(),
            );
        }
        Self {
            daemon_id: section.daemon_id.clone(),
            progress_topic: section.progress_topic.clone(),
            progress_partitions: section.progress_partitions,
            progress_replication_factor: section.progress_replication_factor,
            commit_interval: section.commit_interval(),
            commit_max_records: section.commit_max_records,
            commit_max_bytes: section.commit_max_bytes,
            transaction_timeout,
            threads,
            kafka,
        }
    }

    /// The `transactional.id` of drain thread `index`.
    pub fn transactional_id(&self, index: usize) -> String {
        format!("shmkafkad-{}-{index}", self.daemon_id)
    }
}

/// What a committed transaction says about one ring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Every record before this stream position is finished...
    pub position: u64,
    /// ...except these, which had failed and were not yet in the spool
    /// (never sent to Kafka: a later daemon produces them again, and they
    /// fail the same way into its spool).
    pub unfinished: Vec<u64>,
}

/// Committed positions by ring identity, shared by the drain threads; the
/// rings registered now; and whether the start-up has loaded the positions
/// (no drain thread produces before).
#[derive(Debug, Default)]
pub struct Progress {
    ready: AtomicBool,
    committed: Mutex<HashMap<u64, Committed>>,
    live: Mutex<HashSet<u64>>,
}

impl Progress {
    /// Whether the start-up fenced the previous daemon and loaded its
    /// positions.
    pub fn is_ready(&self) -> bool {
        // SYNC POINT (progress ready): pairs with the Release store in
        // `loaded`; the table it publishes is behind the mutex anyway.
        self.ready.load(Ordering::Acquire)
    }

    /// The start-up is done: `positions` are what the previous daemon
    /// committed.
    fn loaded(&self, positions: HashMap<u64, Committed>) {
        *lock(&self.committed) = positions;
        // SYNC POINT (progress ready): pairs with the Acquire in `is_ready`.
        self.ready.store(true, Ordering::Release);
    }

    /// What was committed for ring `ring_id`, if anything.
    pub fn committed(&self, ring_id: u64) -> Option<Committed> {
        lock(&self.committed).get(&ring_id).cloned()
    }

    /// A commit covered ring `ring_id` up to `committed`.
    pub fn record(&self, ring_id: u64, committed: Committed) {
        let mut table = lock(&self.committed);
        match table.get(&ring_id) {
            Some(c) if c.position > committed.position => {}
            _ => {
                table.insert(ring_id, committed);
            }
        }
    }

    /// Ring `ring_id` is registered and drained by this daemon.
    pub fn arrived(&self, ring_id: u64) {
        lock(&self.live).insert(ring_id);
    }

    /// Ring `ring_id` is retired: its position is of no further use.
    pub fn retired(&self, ring_id: u64) {
        lock(&self.live).remove(&ring_id);
        lock(&self.committed).remove(&ring_id);
    }

    /// Whether ring `ring_id` is registered now (then its position must not
    /// be deleted: it registered again after it was retired).
    pub fn is_live(&self, ring_id: u64) -> bool {
        lock(&self.live).contains(&ring_id)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mode's shared state: settings and positions.
#[derive(Debug)]
pub struct ExactlyOnce {
    /// Settings.
    pub settings: Settings,
    /// Positions.
    pub progress: Progress,
}

impl ExactlyOnce {
    /// Shared state for `settings`, positions not yet loaded.
    pub fn new(settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            progress: Progress::default(),
        })
    }
}
