//! The ring-to-librdkafka step: committed records are handed to librdkafka
//! by reference, one at a time, in ring order.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmkafka_ringbuf::RecordView;
use tracing::warn;

use super::opaque::Opaque;
use super::recovery::Cause;
use super::ring::Ring;
use super::DrainThread;
use crate::kafka::{
    ErrorClass, Header, KafkaErrorCode, OutgoingMessage, Persistence, ProduceError, Producer, Topic,
};
use crate::log_summary::{self, FailureKind};
use crate::spool::{DeadLetters, PendingFailure};

/// How record bytes reach librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HandOff {
    /// By reference into the ring (the default).
    Borrowed,
    /// As a copy librdkafka owns (`drain.copy_records`).
    Copied,
}

/// What became of one peeked record.
#[derive(Debug)]
pub(super) enum Step {
    /// Handed to librdkafka: in flight until its delivery report.
    Produced,
    /// Refused before reaching librdkafka, in a way no retry changes: it
    /// goes to the spool.
    Refused(KafkaErrorCode),
    /// librdkafka's queue is full: serve delivery reports (which frees
    /// queue space), then come back.
    QueueFull,
    /// Refused for a reason another attempt (or another producer) clears:
    /// the record stays where it is, and the drain thread recovers.
    Recover(Cause),
}

/// librdkafka's queue was full.
pub(super) struct QueueFull;

/// Hands the record `view` of the ring in `opaque.slot` to librdkafka.
pub(super) fn produce_one(
    producer: &Producer,
    hand_off: HandOff,
    topic: &Topic,
    view: &RecordView<'_>,
    opaque: Opaque,
) -> Step {
    let headers: Result<Vec<Header<'_>>, _> = view
        .headers()
        .map(|h| h.map(|h| (h.name, h.value)))
        .collect();
    let Ok(headers) = headers else {
        return Step::Refused(KafkaErrorCode::BAD_MSG);
    };
    let message = OutgoingMessage {
        partition: view.partition(),
        key: view.key(),
        value: view.value(),
        timestamp_ms: view.timestamp_ms(),
        headers: &headers,
        opaque: opaque.encode(),
    };
    let result = match hand_off {
        HandOff::Copied => producer.produce_copied(topic, &message),
        #[allow(unsafe_code)]
        // SAFETY: the value points into the client's ring mapping. On Ok the
        // caller `advance`s past the record, so it stays in flight: the
        // consumer neither releases nor lets producers reuse its bytes until
        // it is marked from its delivery report (or the producer is
        // destroyed, which the drain thread does only with nothing in flight
        // or after the rings' last use). The mapping (owned by the client's
        // segment) outlives the producer: rings are retired only with nothing
        // in flight, and `DrainThread` drops the producer before the rings.
        // A hostile client may change the bytes under librdkafka; that
        // garbles only its own record.
        HandOff::Borrowed => unsafe { producer.produce_borrowed(topic, &message) },
    };
    match result {
        Ok(()) => Step::Produced,
        Err(ProduceError::QueueFull { .. }) => Step::QueueFull,
        Err(e) => {
            let code = e.code();
            match e.class() {
                ErrorClass::Permanent => {
                    if log_summary::note_failure(FailureKind::Permanent(code.name().into_owned())) {
                        warn!(seq = view.seq(), error = %e,
                            "record refused by librdkafka (more of this error are summarised)");
                    }
                    Step::Refused(code)
                }
                ErrorClass::Retriable => Step::Recover(Cause::Retriable(code)),
                ErrorClass::Fatal => Step::Recover(Cause::Fatal(code)),
            }
        }
    }
}

impl DrainThread {
    /// One pass over all rings; returns records handed to librdkafka.
    pub(super) fn drain_rings(&mut self) -> usize {
        if !self.recovery.may_produce(std::time::Instant::now())
            || !self.transactions_ready()
            || !self.begin_transaction_if_needed()
        {
            return 0;
        }
        let mut total = 0;
        let slots = self.rings.len();
        let first = self.next_drain_slot.min(slots.saturating_sub(1));
        for slot in (first..slots).chain(0..first) {
            if !self.ring_caught_up(slot) {
                continue;
            }
            match self.drain_ring(slot) {
                Ok(n) => total += n,
                Err(QueueFull) => {
                    // The next pass begins with the ring after this one:
                    // with the queue as the bottleneck, a pass may reach
                    // only its first ring.
                    self.next_drain_slot = (slot + 1) % slots;
                    self.serve_reports(super::INFLIGHT_POLL);
                    break;
                }
            }
            if !self.recovery.is_producing() {
                // A record of this ring started a recovery.
                break;
            }
        }
        total
    }

    /// Produces up to `batch_per_ring` records of the ring in `slot`.
    fn drain_ring(&mut self, slot: usize) -> Result<usize, QueueFull> {
        let Some(ring) = self.rings[slot].as_mut() else {
            return Ok(0);
        };
        if ring.quarantined.is_some() {
            return Ok(0);
        }
        ring.report_held_failures();
        if ring.failures_back_up() {
            // The client reads its failures no more: hold its ring back
            // rather than its failures in our memory.
            return Ok(0);
        }
        if ring.rewind_pending {
            if ring.awaiting_spool > 0 {
                // Its failed records are still being spooled.
                return Ok(0);
            }
            if let Err(e) = ring.rewind() {
                ring.quarantine(e, "rewinding to produce records again");
                return Ok(0);
            }
        }
        ring.topics
            .refresh(&ring.client, &self.producer, &mut self.topic_handles);
        let capacity = ring.consumer.capacity();
        let (mut produced, mut reproduced, mut refused) = (0u64, 0u64, 0usize);
        let mut first = None;
        // Exactly-once: what the open transaction may still take.
        let (room, bytes_room) = self
            .txn
            .as_ref()
            .map_or((usize::MAX, u64::MAX), |t| (t.room(), t.bytes_room()));
        let mut bytes = 0u64;
        let mut result = Ok(());
        while (produced as usize) < self.options.batch_per_ring
            && (produced as usize) + refused < room
            && bytes < bytes_room
        {
            if ring
                .stop_at
                .is_some_and(|stop| ring.consumer.drain_pos() >= stop)
            {
                break;
            }
            let (seq, step) = {
                let view = match ring.consumer.peek() {
                    Ok(Some(view)) => view,
                    Ok(None) => break,
                    Err(e) => {
                        ring.quarantine(e.to_string(), "draining");
                        break;
                    }
                };
                let seq = view.pos();
                bytes += (view.key_len().unwrap_or(0) + view.value_len().unwrap_or(0)) as u64;
                if ring.topics.get(view.topic_id()).is_none() {
                    // The client may have registered it after the table was
                    // built (the server answers at once): look again.
                    ring.topics
                        .refresh(&ring.client, &self.producer, &mut self.topic_handles);
                }
                let topic = ring.topics.get(view.topic_id()).map(Arc::clone);
                let poisoned = match (&topic, self.txn.as_mut()) {
                    (Some(topic), Some(txn)) => txn.poisoned(topic.name()),
                    _ => None,
                };
                let step = match (topic, poisoned) {
                    (None, _) => Step::Refused(KafkaErrorCode::UNKNOWN_TOPIC),
                    // Exactly-once: the topic fails every transaction.
                    (Some(_), Some(code)) => Step::Refused(code),
                    (Some(topic), None) => produce_one(
                        &self.producer,
                        self.hand_off,
                        &topic,
                        &view,
                        Opaque::new(slot, seq, capacity),
                    ),
                };
                (seq, step)
            };
            match step {
                Step::Produced => {
                    first.get_or_insert(seq);
                    ring.consumer.advance();
                    ring.in_flight += 1;
                    produced += 1;
                    reproduced += u64::from(seq < ring.reproduce_before);
                }
                Step::Refused(code) => {
                    first.get_or_insert(seq);
                    refused += 1;
                    fail_now(ring, slot, seq, code, &mut self.dead_letters);
                }
                Step::QueueFull => {
                    result = Err(QueueFull);
                    break;
                }
                Step::Recover(cause) => {
                    self.recovery.request(cause, std::time::Instant::now());
                    break;
                }
            }
        }
        if let Some(txn) = self.txn.as_mut() {
            // Refused records count too: the ring's position passes them.
            let added = produced as usize + refused;
            if let Some(first) = first {
                txn.added(added, bytes, (slot, first));
            }
            ring.in_transaction |= added > 0;
        }
        self.stats.produced.fetch_add(produced, Ordering::Relaxed);
        self.stats
            .reproduced
            .fetch_add(reproduced, Ordering::Relaxed);
        ring.client
            .counters
            .produced
            .fetch_add(produced, Ordering::Relaxed);
        result.map(|()| produced as usize)
    }
}

/// Fails the record just peeked without handing it to librdkafka: it stays
/// in flight until the spool has it. This attempt left nothing at the
/// broker; an earlier one may have.
fn fail_now(
    ring: &mut Ring,
    slot: usize,
    seq: u64,
    code: KafkaErrorCode,
    dead_letters: &mut DeadLetters,
) {
    ring.consumer.advance();
    ring.awaiting_spool += 1;
    let status = ring.persistence(seq, Some(Persistence::NotPersisted), 0);
    dead_letters.defer(PendingFailure::now(slot, seq, code, status));
}
