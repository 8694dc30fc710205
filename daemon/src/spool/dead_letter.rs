//! The drain threads' side of the spool.
//!
//! A record that failed permanently stays in flight in its ring (unmarked,
//! so its space is not released) and waits here as a [`PendingFailure`].
//! Once per drain-loop pass [`DeadLetters::spool_due`] copies every waiting
//! record from its ring into one batch, fsyncs it, and only then hands the
//! records back to be marked failed and released. If the spool cannot be
//! written (disk full, directory unusable) nothing is marked: the records
//! stay in their rings, which fill up and push back on their producers, and
//! the batch is retried with backoff while an error is logged (rate-limited).
//! The same happens to the records that do not fit under the spool's size
//! bound (`spool.max_total_bytes`): those that fit are written, whole and
//! in order, the rest wait in their rings.

use std::time::{Duration, Instant};

use shmkafka_ringbuf::{Outcome, RecordView, RingConsumer};
use tracing::{error, info, warn};

use super::budget::{self, SpoolBudget};
use super::files::now_ms;
use super::format::{RecordRef, FILE_HEADER_LEN, FLAG_CONTENT_LOST};
use super::writer::{CommitError, SpoolWriter};
use crate::client::Client;
use crate::config::SpoolSection;
use crate::kafka::{self, KafkaErrorCode, Persistence};

/// First retry after a failed spool write; doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts while the spool stays unwritable.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// At most one error line per this interval while the spool is unwritable.
const ALARM_INTERVAL: Duration = Duration::from_secs(10);
/// Records are copied out of the rings into batches of about this many
/// bytes, so a full ring is not copied into memory at once.
const BATCH_BYTES: usize = 8 << 20;
/// Error code for records spooled at shutdown because the budget ran out
/// (purged from the producer's queue, or never handed to it).
pub const ERR_SHUTDOWN_PURGED: KafkaErrorCode = KafkaErrorCode::PURGE_QUEUE;

/// A failed record waiting, still in its ring, to be spooled.
#[derive(Debug, Clone, Copy)]
pub struct PendingFailure {
    /// The drain thread's ring slot.
    pub slot: usize,
    /// Position of the record in its ring (how the drain names it).
    pub pos: u64,
    /// Partition the failed attempt was for (-1 if none was chosen).
    pub partition: i32,
    /// Why it failed.
    pub code: KafkaErrorCode,
    /// Whether the broker may have it anyway.
    pub status: Persistence,
    /// When it failed, ms since the epoch.
    pub failed_at_ms: i64,
}

impl PendingFailure {
    /// A failure that happened now.
    pub fn now(slot: usize, pos: u64, code: KafkaErrorCode, status: Persistence) -> Self {
        Self {
            slot,
            pos,
            partition: -1,
            code,
            status,
            failed_at_ms: now_ms(),
        }
    }
}

/// Failed records on their way to disk, for one drain thread.
#[derive(Debug)]
pub struct DeadLetters {
    writer: SpoolWriter,
    /// The spool directory's size bound, shared with the other drain threads.
    budget: std::sync::Arc<SpoolBudget>,
    pending: Vec<PendingFailure>,
    /// Set while the spool is failing: no attempt before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    last_alarm: Option<Instant>,
    /// Failed attempts since the last error line.
    suppressed: u64,
    last_full_alarm: Option<Instant>,
    /// Batches held back for the size bound since the last error line.
    full_suppressed: u64,
}

impl DeadLetters {
    /// Dead letters of drain thread `index`, spooled per `config`.
    pub fn new(config: &SpoolSection, index: usize) -> Self {
        Self {
            writer: SpoolWriter::new(&config.dir, config.max_file_bytes, format!("d{index}")),
            budget: SpoolBudget::for_dir(&config.dir, config.max_total_bytes),
            pending: Vec::new(),
            retry_at: None,
            backoff: RETRY_MIN,
            last_alarm: None,
            suppressed: 0,
            last_full_alarm: None,
            full_suppressed: 0,
        }
    }

    /// Queues a failed record; it must stay in flight in its ring until
    /// [`DeadLetters::spool_due`] returns it.
    pub fn defer(&mut self, failure: PendingFailure) {
        self.pending.push(failure);
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Positions of the records of ring `slot` waiting.
    pub fn pending_in(&self, slot: usize) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|f| f.slot == slot)
            .map(|f| f.pos)
            .collect()
    }

    /// Writes the waiting records (up to about [`BATCH_BYTES`] of them, and
    /// as many as fit under the spool's size bound) as one durable batch,
    /// unless a retry is not due yet. `append` adds one waiting record (read
    /// from its ring) to the writer's batch. Returns the records now on
    /// disk, which the caller marks failed; empty if nothing was due, the
    /// write failed or the spool is full.
    pub fn spool_due(
        &mut self,
        now: Instant,
        mut append: impl FnMut(&PendingFailure, &mut SpoolWriter),
    ) -> Vec<PendingFailure> {
        if self.pending.is_empty() || self.retry_at.is_some_and(|at| now < at) {
            return Vec::new();
        }
        let mut appended = 0;
        for failure in &self.pending {
            append(failure, &mut self.writer);
            appended += 1;
            if self.writer.buffered_bytes() >= BATCH_BYTES {
                break;
            }
        }
        let wanted = (self.writer.buffered_bytes() + FILE_HEADER_LEN) as u64;
        let granted = self.budget.take(wanted);
        match self.writer.commit_within(granted) {
            Ok(done) => {
                self.budget.settle(granted, done.disk_bytes);
                if done.records < appended {
                    self.full_alarm(now, appended - done.records);
                    self.retry_at = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(RETRY_MAX);
                } else {
                    if self.retry_at.take().is_some() {
                        info!(dir = %self.writer.dir().display(), records = done.records,
                            "dead-letter spool writable again; held records spooled and released");
                    }
                    self.backoff = RETRY_MIN;
                    self.suppressed = 0;
                    budget::note_room();
                }
                self.pending.drain(..done.records).collect()
            }
            Err(e) => {
                self.budget.settle(granted, granted);
                self.budget.forget_measurement();
                self.alarm(now, &e);
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
                // Records are written in `pending` order: the first
                // `durable` made it and must not be written twice.
                self.pending
                    .drain(..e.durable.min(self.pending.len()))
                    .collect()
            }
        }
    }

    /// The spool is at its size bound: records stay in their rings.
    fn full_alarm(&mut self, now: Instant, held_in_batch: usize) {
        budget::note_full(self.pending.len().max(held_in_batch));
        if self
            .last_full_alarm
            .is_some_and(|at| now.duration_since(at) < ALARM_INTERVAL)
        {
            self.full_suppressed += 1;
            return;
        }
        self.last_full_alarm = Some(now);
        error!(dir = %self.writer.dir().display(), limit_bytes = self.budget.limit(),
            held = self.pending.len(), repeats = self.full_suppressed,
            "DEAD-LETTER SPOOL FULL (spool.max_total_bytes): failed records stay in their rings, which fill up and block the clients whose records fail, until the spool is replayed or purged");
        self.full_suppressed = 0;
    }

    fn alarm(&mut self, now: Instant, e: &CommitError) {
        if self
            .last_alarm
            .is_some_and(|at| now.duration_since(at) < ALARM_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        self.last_alarm = Some(now);
        error!(error = %e, held = self.pending.len(), repeats = self.suppressed,
            "CANNOT WRITE THE DEAD-LETTER SPOOL: failed records stay in their rings (which fill up and block their producers) until it is writable again; retrying");
        self.suppressed = 0;
    }

    /// Shutdown, for a client that is gone (its ring dies with the daemon):
    /// spools every committed record of `consumer` not yet finished, as
    /// failed with [`ERR_SHUTDOWN_PURGED`], each with the persistence
    /// `persistence(seq)` gives (what its attempts may have left in the
    /// log). `consumer` must be fresh (built from the release cursor), so it
    /// also yields the records that were in flight. Returns records spooled,
    /// and whether all were.
    pub fn spool_abandoned(
        &mut self,
        consumer: &mut RingConsumer,
        client: &Client,
        persistence: impl Fn(u64) -> Persistence,
    ) -> (usize, bool) {
        let code = ERR_SHUTDOWN_PURGED;
        let mut batch = Vec::new();
        let mut spooled = 0;
        loop {
            let peeked = match consumer.peek() {
                Ok(Some(view)) => {
                    let failure = PendingFailure::now(0, view.pos(), code, persistence(view.pos()));
                    append_view(&mut self.writer, &view, client, &failure);
                    Some(failure.pos)
                }
                Ok(None) => None,
                Err(e) => {
                    error!(client = client.id, error = %e,
                        "garbage in the ring of a gone client; its records after this point are lost at shutdown");
                    break;
                }
            };
            let Some(seq) = peeked else {
                if consumer.tracked() >= shmkafka_ringbuf::MAX_IN_FLIGHT {
                    // The consumer's bookkeeping is full: write the batch so
                    // far, which releases it, and go on reading.
                    if batch.is_empty() {
                        if consumer.release() == 0 {
                            break;
                        }
                        continue;
                    }
                    match self.commit_abandoned(consumer, &mut batch) {
                        Some(n) => {
                            spooled += n;
                            continue;
                        }
                        None => return (spooled, false),
                    }
                }
                let (tail, _) = client.segment.cursors();
                if consumer.drain_pos() < tail
                    && client.process_exited()
                    && matches!(consumer.unblock(), Ok(true))
                {
                    continue;
                }
                break;
            };
            consumer.advance();
            batch.push(seq);
            if self.writer.buffered_bytes() >= BATCH_BYTES {
                match self.commit_abandoned(consumer, &mut batch) {
                    Some(n) => spooled += n,
                    None => return (spooled, false),
                }
            }
        }
        match self.commit_abandoned(consumer, &mut batch) {
            Some(n) => (spooled + n, true),
            None => (spooled, false),
        }
    }

    fn commit_abandoned(
        &mut self,
        consumer: &mut RingConsumer,
        batch: &mut Vec<u64>,
    ) -> Option<usize> {
        let wanted = (self.writer.buffered_bytes() + FILE_HEADER_LEN) as u64;
        let granted = self.budget.take(wanted);
        match self.writer.commit_within(granted) {
            Ok(done) => {
                self.budget.settle(granted, done.disk_bytes);
                // Nobody reads these reports (the client is gone); the
                // outcome keeps the next daemon from sending them again.
                let outcome = Outcome::failed(ERR_SHUTDOWN_PURGED.raw(), 1, -1, 0);
                for &pos in &batch[..done.records] {
                    consumer.mark(pos, &outcome);
                }
                consumer.release();
                if done.records < batch.len() {
                    error!(records = batch.len() - done.records, limit_bytes = self.budget.limit(),
                        "DEAD-LETTER SPOOL FULL at shutdown (spool.max_total_bytes): undelivered records of a gone client are lost");
                    return None;
                }
                Some(std::mem::take(batch).len())
            }
            Err(e) => {
                self.budget.settle(granted, granted);
                self.budget.forget_measurement();
                error!(error = %e, records = batch.len() - e.durable,
                    "CANNOT WRITE THE DEAD-LETTER SPOOL at shutdown: undelivered records of a gone client are lost");
                None
            }
        }
    }
}

/// Appends the waiting record `failure` from `ring` (its consumer and
/// client; `None` if the slot is empty, which the drain prevents) to the
/// batch. A record whose bytes no longer validate is spooled without them.
pub fn append_failure(
    writer: &mut SpoolWriter,
    ring: Option<(&RingConsumer, &Client)>,
    failure: &PendingFailure,
) {
    let view =
        ring.and_then(|(consumer, client)| Some((consumer.in_flight_view(failure.pos)?, client)));
    match view {
        Some((view, client)) => append_view(writer, &view, client, failure),
        None => {
            warn!(
                pos = failure.pos,
                "failed record no longer readable in its ring; spooling its metadata only"
            );
            let client = ring.map(|(_, c)| c);
            let name = client.map_or_else(String::new, |c| c.name.clone());
            let error_name = failure.code.name();
            writer.append(&RecordRef {
                // Unknown: the record's bytes are not to be trusted.
                seq: u64::MAX,
                failed_at_ms: failure.failed_at_ms,
                timestamp_ms: 0,
                partition: kafka::PARTITION_UNASSIGNED,
                error_code: failure.code.raw(),
                topic_id: u32::MAX,
                client_pid: client.map_or(0, |c| c.pid),
                persistence: failure.status,
                flags: FLAG_CONTENT_LOST,
                topic: "",
                error_name: &error_name,
                client_name: &name,
                key: None,
                value: None,
                headers: &[],
            });
        }
    }
}

fn append_view(
    writer: &mut SpoolWriter,
    view: &RecordView<'_>,
    client: &Client,
    failure: &PendingFailure,
) {
    let topic = client
        .topics()
        .get(view.topic_id() as usize)
        .cloned()
        .flatten();
    let headers = view.headers_to_vec();
    let error_name = failure.code.name();
    writer.append(&RecordRef {
        // The number the client's `send` returned for it.
        seq: view.seq(),
        failed_at_ms: failure.failed_at_ms,
        timestamp_ms: view.timestamp_ms(),
        partition: view.partition(),
        error_code: failure.code.raw(),
        topic_id: view.topic_id(),
        client_pid: client.pid,
        persistence: failure.status,
        flags: 0,
        topic: topic.as_deref().unwrap_or(""),
        error_name: &error_name,
        client_name: &client.name,
        key: view.key(),
        value: view.value(),
        headers: &headers,
    });
}

#[cfg(test)]
mod tests {
    use shmkafka_ringbuf::{heap_ring, Header, Outcome, Record, WhenFull};

    /// At shutdown, a gone client's ring holding more records than the
    /// consumer tracks at once is spooled whole, not cut at the bound.
    #[test]
    fn abandoned_records_beyond_the_tracking_bound_are_all_spooled() {
        use shmkafka_ringbuf::{Segment, SegmentOptions, MAX_IN_FLIGHT};
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(&SegmentOptions::with_capacity(8 << 20)).unwrap();
        let producer = segment.producer();
        let count = MAX_IN_FLIGHT + 100;
        for _ in 0..count {
            let record = Record {
                topic_id: 0,
                partition: 0,
                timestamp_ms: 0,
                key: None,
                value: Some(b"v"),
                headers: &[],
            };
            producer.send(&record, WhenFull::Fail).unwrap();
        }
        let mut consumer = segment.consumer().unwrap();
        let client = crate::client::Client::new(1, "gone".into(), std::process::id(), 0, segment);
        let config = crate::config::SpoolSection {
            dir: dir.path().to_owned(),
            ..Default::default()
        };
        let mut dead = super::DeadLetters::new(&config, 0);
        assert_eq!(
            dead.spool_abandoned(&mut consumer, &client, |_| {
                crate::kafka::Persistence::NotPersisted
            }),
            (count, true)
        );
        assert_eq!(consumer.tracked(), 0);
    }

    /// `in_flight_view` (added to the ring consumer for the spool) re-reads
    /// exactly the in-flight, unmarked record.
    #[test]
    fn in_flight_view_reads_back_only_unmarked_in_flight_records() {
        let (producer, mut consumer) = heap_ring(1 << 12);
        let headers = [Header {
            name: "h",
            value: None,
        }];
        let record = Record {
            topic_id: 2,
            partition: 5,
            timestamp_ms: 77,
            key: Some(b"key"),
            value: Some(b"value"),
            headers: &headers,
        };
        let seq = producer.tail(); // its position
        producer.send(&record, WhenFull::Fail).unwrap();
        assert!(consumer.in_flight_view(seq).is_none(), "not advanced yet");
        consumer.peek().unwrap().unwrap();
        consumer.advance();
        let view = consumer.in_flight_view(seq).expect("in flight");
        assert_eq!(
            (view.topic_id(), view.partition(), view.timestamp_ms()),
            (2, 5, 77)
        );
        assert_eq!(view.key(), Some(&b"key"[..]));
        assert_eq!(view.value(), Some(&b"value"[..]));
        assert_eq!(view.headers().count(), 1);
        assert!(consumer.in_flight_view(seq + 8).is_none());
        consumer.mark(seq, &Outcome::failed(1, 0, -1, 0));
        assert!(consumer.in_flight_view(seq).is_none(), "marked");
    }
}
