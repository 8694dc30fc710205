//! Point-in-time copies of the counters that status and metrics report,
//! read from the shared atomics without stopping anyone.

use std::sync::atomic::Ordering;

use super::DrainStats;
use crate::client::Client;
use crate::metrics::latency::LatencySnapshot;

/// One client's ring and counters.
#[derive(Debug, Clone)]
pub struct ClientSnapshot {
    /// Daemon-assigned id.
    pub id: u64,
    /// The label the client gave.
    pub name: String,
    /// Peer pid.
    pub pid: u32,
    /// Peer uid.
    pub uid: u32,
    /// The control connection is open.
    pub connected: bool,
    /// The connection closed while the process lives on: the ring keeps its
    /// place (and its uid's quota) until the process exits or it drains.
    pub orphaned: bool,
    /// The ring held garbage and is no longer drained.
    pub quarantined: bool,
    /// Ring data area, bytes.
    pub capacity: u64,
    /// Bytes claimed and not yet released: committed records waiting to be
    /// sent or acknowledged (and claims still being written).
    pub fill_bytes: u64,
    /// Bytes ever claimed in the ring (the tail cursor, padding included).
    pub written_bytes: u64,
    /// Topic ids bound.
    pub topics: usize,
    /// Records handed to librdkafka.
    pub produced: u64,
    /// Records acknowledged.
    pub delivered: u64,
    /// Records failed permanently.
    pub failed: u64,
    /// Records written to the dead-letter spool.
    pub spooled: u64,
    /// Times the client found its ring full (the client's own count, read
    /// from the ring header: informational).
    pub full_events: u64,
    /// Claims the client dropped without commit (ring header, informational).
    pub aborted: u64,
}

impl ClientSnapshot {
    /// Reads `client`'s counters and cursors.
    pub fn of(client: &Client) -> Self {
        let (tail, released) = client.segment.cursors();
        let header = client.segment.producer();
        let c = &client.counters;
        Self {
            id: client.id,
            name: client.name.clone(),
            pid: client.pid,
            uid: client.uid,
            connected: !client.is_disconnected(),
            orphaned: client.is_orphaned(),
            quarantined: c.quarantined.load(Ordering::Relaxed),
            capacity: client.segment.capacity() as u64,
            fill_bytes: tail.saturating_sub(released),
            written_bytes: tail,
            topics: client.topic_count(),
            produced: c.produced.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            spooled: c.spooled.load(Ordering::Relaxed),
            full_events: header.full_events(),
            aborted: header.aborted(),
        }
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> u64 {
        self.produced
            .saturating_sub(self.delivered)
            .saturating_sub(self.failed)
    }
}

/// One drain thread's counters.
#[derive(Debug, Clone)]
pub struct DrainSnapshot {
    /// Thread index.
    pub index: usize,
    /// Clients it serves.
    pub clients: usize,
    /// Records handed to librdkafka.
    pub produced: u64,
    /// Records acknowledged.
    pub delivered: u64,
    /// Records failed permanently.
    pub failed: u64,
    /// Records spooled.
    pub spooled: u64,
    /// Records produced again after a retriable failure or a rebuild.
    pub reproduced: u64,
    /// Recoveries after retriable delivery failures.
    pub retries: u64,
    /// librdkafka producers replaced after a fatal error.
    pub producer_rebuilds: u64,
    /// Exactly-once transactions committed.
    pub transactions_committed: u64,
    /// Exactly-once transactions aborted.
    pub transactions_aborted: u64,
    /// Records a previous daemon's committed transaction carried, marked
    /// delivered without being sent again.
    pub recovered_from_progress: u64,
    /// Nanoseconds spent waiting for work.
    pub idle_ns: u64,
    /// Delivery latency histogram.
    pub latency: LatencySnapshot,
}

impl DrainSnapshot {
    /// Reads drain thread `index`'s counters.
    pub fn of(index: usize, clients: usize, stats: &DrainStats) -> Self {
        Self {
            index,
            clients,
            produced: stats.produced.load(Ordering::Relaxed),
            delivered: stats.delivered.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            spooled: stats.spooled.load(Ordering::Relaxed),
            reproduced: stats.reproduced.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            producer_rebuilds: stats.producer_rebuilds.load(Ordering::Relaxed),
            transactions_committed: stats.transactions_committed.load(Ordering::Relaxed),
            transactions_aborted: stats.transactions_aborted.load(Ordering::Relaxed),
            recovered_from_progress: stats.recovered_from_progress.load(Ordering::Relaxed),
            idle_ns: stats.idle_ns.load(Ordering::Relaxed),
            latency: stats.latency.snapshot(),
        }
    }
}
