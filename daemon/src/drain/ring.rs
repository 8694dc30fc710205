//! What a drain thread knows about one client ring besides the ring itself:
//! its topic handles, what it has in flight, and what earlier attempts of
//! its unfinished records may have left at the broker.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmkafka_ringbuf::{Failure, Outcome, RingConsumer};
use tracing::{error, warn};

use crate::client::Client;
use crate::exactly_once::Committed;
use crate::kafka::{Persistence, Producer, Topic};

/// Topic handles of one producer by name, shared by all rings of a drain
/// thread (librdkafka keeps one object per topic anyway).
pub(super) type TopicHandles = HashMap<Arc<str>, Arc<Topic>>;

/// Failures one ring may have waiting for its client's failure queue (16
/// bytes each) before the ring is no longer drained.
pub(super) const MAX_HELD_FAILURES: usize = 4096;

/// One client ring as its drain thread sees it.
pub(super) struct Ring {
    pub client: Arc<Client>,
    pub consumer: RingConsumer,
    pub topics: TopicTable,
    /// Records handed to librdkafka and not yet reported.
    pub in_flight: usize,
    /// Set when the ring holds garbage: the client is no longer drained.
    pub quarantined: Option<String>,
    /// On shutdown: drain up to here, leave the rest for the next daemon.
    pub stop_at: Option<u64>,
    /// Failed records held in flight until the spool has them on disk.
    pub awaiting_spool: usize,
    /// Spooled (and finished) failures waiting for room in the client's
    /// failure queue, oldest first. At [`MAX_HELD_FAILURES`] the ring is not
    /// drained further, so a client that does not read its failures fills
    /// its ring and is held back at `send`: none is dropped.
    held_failures: VecDeque<Failure>,
    /// Acknowledgements served but not yet added to the client's counter.
    pub acked_unpublished: u64,
    /// Records after a failed attempt wait to be produced again: rebuild
    /// the consumer from the release cursor before draining further.
    pub rewind_pending: bool,
    /// Records before this position are being produced again (counted as
    /// re-produced).
    pub reproduce_before: u64,
    /// Exactly-once: records acknowledged in the open transaction, marked
    /// once it commits.
    pub uncommitted: usize,
    /// Exactly-once: the open transaction carries records of this ring (so
    /// it writes the ring's position).
    pub in_transaction: bool,
    /// Exactly-once: the committed position was looked up (on arrival, and
    /// again after the producer was replaced).
    pub progress_checked: bool,
    /// Exactly-once: records before this position were delivered by a
    /// committed transaction the ring has not seen through (a previous
    /// daemon's): mark them delivered before producing.
    pub catch_up_to: Option<Committed>,
    /// Unfinished records whose earlier attempt failed, with what that
    /// attempt may have left in the log. Records absent here are in flight
    /// now (before `consumer.drain_pos()`) or were never handed to
    /// librdkafka (from it on).
    attempts: HashMap<u64, Persistence>,
}

/// A ring's topic handles by client topic id.
pub(super) struct TopicTable {
    handles: Vec<Option<Arc<Topic>>>,
    /// The client's topic-table version `handles` was built from;
    /// `u64::MAX` forces a rebuild.
    version: u64,
}

impl Default for TopicTable {
    fn default() -> Self {
        Self {
            handles: Vec::new(),
            version: u64::MAX,
        }
    }
}

impl TopicTable {
    /// The handle of client topic `id`, if the client registered it (and a
    /// handle could be created).
    pub fn get(&self, id: u32) -> Option<&Arc<Topic>> {
        self.handles.get(id as usize).and_then(Option::as_ref)
    }

    /// Rebuilds the table if `client`'s changed since it was built.
    pub fn refresh(&mut self, client: &Client, producer: &Producer, shared: &mut TopicHandles) {
        let version = client.topics_version();
        if version == self.version {
            return;
        }
        self.version = version;
        self.handles = client
            .topics()
            .into_iter()
            .map(|name| {
                let name = name?;
                if let Some(handle) = shared.get(&name) {
                    return Some(Arc::clone(handle));
                }
                match producer.topic(&name) {
                    Ok(topic) => {
                        let topic = Arc::new(topic);
                        shared.insert(name, Arc::clone(&topic));
                        Some(topic)
                    }
                    Err(e) => {
                        warn!(topic = %name, error = %e, "cannot create topic handle");
                        None
                    }
                }
            })
            .collect();
    }

    /// Drops the handles (they belong to a producer being replaced).
    pub fn forget(&mut self) {
        *self = Self::default();
    }
}

impl Ring {
    pub fn new(client: Arc<Client>, consumer: RingConsumer) -> Self {
        Self {
            client,
            consumer,
            topics: TopicTable::default(),
            in_flight: 0,
            quarantined: None,
            stop_at: None,
            awaiting_spool: 0,
            held_failures: VecDeque::new(),
            acked_unpublished: 0,
            rewind_pending: false,
            reproduce_before: 0,
            uncommitted: 0,
            in_transaction: false,
            progress_checked: false,
            catch_up_to: None,
            attempts: HashMap::new(),
        }
    }

    /// Whether records handed out are unfinished: in flight, waiting for
    /// the spool, or waiting to be produced again. (While a recovery drains,
    /// records whose attempt failed are unfinished too; see
    /// `Recovery::is_draining`.)
    pub fn has_unfinished_work(&self) -> bool {
        self.in_flight > 0
            || self.awaiting_spool > 0
            || self.rewind_pending
            || self.uncommitted > 0
            || self.in_transaction
            || self.catch_up_to.is_some()
    }

    /// The spooled record at `pos` failed for good: finishes it and tells
    /// its client, in the record's delivery report or through its failure
    /// queue (held here while the queue is full).
    pub fn report_failure(&mut self, pos: u64, failure: Failure, outcome: Outcome) {
        self.consumer.mark(pos, &outcome);
        self.finished(pos);
        if !self.consumer.delivery_reports() {
            self.held_failures.push_back(failure);
            self.report_held_failures();
        }
        // Else the report in the record says it all.
    }

    /// Moves held failures into the client's failure queue while it has
    /// room, in order. Those of a client whose process exited are dropped:
    /// nobody can read them, and the spool has every one.
    pub fn report_held_failures(&mut self) {
        if self.held_failures.is_empty() {
            return;
        }
        if self.client.process_exited() {
            self.held_failures.clear();
        }
        while let Some(&failure) = self.held_failures.front() {
            if !self.consumer.push_failure(failure) {
                break;
            }
            self.held_failures.pop_front();
        }
        self.consumer
            .set_failures_held(self.held_failures.len() as u64);
    }

    /// Whether the client has so many failures unread that its ring is not
    /// drained further until it reads them.
    pub fn failures_back_up(&self) -> bool {
        self.held_failures.len() >= MAX_HELD_FAILURES
    }

    /// Stops draining a ring that holds garbage; its records after this
    /// point are not delivered.
    pub fn quarantine(&mut self, reason: String, context: &'static str) {
        error!(client = self.client.id, name = %self.client.name, error = %reason,
            context, "garbage in ring; client quarantined (its records after this point are not delivered)");
        self.quarantined = Some(reason);
        self.client
            .counters
            .quarantined
            .store(true, Ordering::Relaxed);
    }

    /// Notes that an attempt of the unfinished record `seq` failed with
    /// `status`; the record's verdict is the worst over its attempts.
    pub fn note_failed_attempt(&mut self, seq: u64, status: Persistence) {
        let worst = self.attempts.entry(seq).or_insert(status);
        *worst = (*worst).max(status);
    }

    /// What the attempts of record `seq` so far may have left in the log,
    /// counting `latest` (the report just received) if given. A record
    /// handed to librdkafka without a report is possibly persisted; one
    /// never handed to it is not.
    pub fn persistence(
        &self,
        seq: u64,
        latest: Option<Persistence>,
        handed_before: u64,
    ) -> Persistence {
        let earlier = self.attempts.get(&seq).copied();
        match (earlier, latest) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) if seq < handed_before => Persistence::PossiblyPersisted,
            (None, None) => Persistence::NotPersisted,
        }
    }

    /// Record `seq` is finished (delivered or spooled).
    pub fn finished(&mut self, seq: u64) {
        if !self.attempts.is_empty() {
            self.attempts.remove(&seq);
        }
    }

    /// Exactly-once: marks the records before `catch_up_to` delivered (a
    /// committed transaction carried them; their offsets are unknown here)
    /// and releases them. Runs on a consumer fresh from the release cursor,
    /// nothing in flight. Returns how many it marked, or `None` while some
    /// are not reachable yet (the consumer's tracking is full until the
    /// client reads its reports): call again later.
    pub fn catch_up(&mut self) -> Option<usize> {
        let committed = self.catch_up_to.clone()?;
        let (tail, _) = self.client.segment.cursors();
        // A position past what was ever claimed is not this ring's (the
        // client rewrote its identity): never mark what does not exist.
        let end = committed.position.min(tail);
        let mut marked = 0;
        let mut skipped = false;
        while self.consumer.drain_pos() < end {
            let (pos, partition, timestamp_ms) = match self.consumer.peek() {
                Ok(Some(view)) => (view.pos(), view.partition(), view.timestamp_ms()),
                Ok(None) => {
                    self.consumer.release();
                    return None;
                }
                Err(e) => {
                    self.quarantine(
                        e.to_string(),
                        "marking records a committed transaction carried",
                    );
                    self.catch_up_to = None;
                    return Some(marked);
                }
            };
            if pos >= end {
                break;
            }
            self.consumer.advance();
            if committed.unfinished.contains(&pos) {
                // Failed, not yet spooled: produced (and failed) again.
                skipped = true;
                continue;
            }
            self.consumer
                .mark(pos, &Outcome::delivered(partition, -1, timestamp_ms));
            self.finished(pos);
            marked += 1;
        }
        self.consumer.release();
        self.catch_up_to = None;
        if skipped {
            // The skipped records are in flight in this consumer: start again
            // from the release cursor, which stops at the first of them.
            if let Err(e) = self.rewind() {
                self.quarantine(e, "rewinding after marking committed records");
            }
        }
        Some(marked)
    }

    /// Rebuilds the consumer from the release cursor, so it yields every
    /// unfinished record again, in ring order (finished ones are stepped
    /// over). Only with nothing in flight and no failure waiting for the
    /// spool: their records would be handed out twice.
    pub fn rewind(&mut self) -> Result<usize, String> {
        debug_assert!(self.in_flight == 0 && self.awaiting_spool == 0);
        let again = self.consumer.pending();
        let mut consumer = self.client.segment.consumer().map_err(|e| e.to_string())?;
        if self.client.process_exited() {
            consumer.report_reader_gone();
        }
        self.reproduce_before = self.reproduce_before.max(self.consumer.drain_pos());
        self.consumer = consumer;
        self.rewind_pending = false;
        Ok(again)
    }
}
