//! Delivery reports: each record's outcome marks it (delivered), holds it
//! for another attempt (retriable, or its producer failed), or sends it to
//! the spool (permanent); then the rings release what is finished.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmkafka_ringbuf::{Failure, Outcome};
use tracing::{error, warn};

use super::opaque::{Opaque, PROGRESS_SLOT};
use super::recovery::{Cause, PurgeOrigin};
use super::DrainThread;
use crate::kafka::{ErrorClass, KafkaErrorCode};
use crate::log_summary::{self, FailureKind};
use crate::spool::{self, PendingFailure};

/// What becomes of a record, given its delivery report. The one place
/// where a report's error is turned into an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Acknowledged: mark it delivered.
    Delivered,
    /// Leave it unmarked in the ring and produce it again once the drain
    /// thread has recovered (`Cause` says whether with a new producer).
    ProduceAgain(Cause),
    /// Purged by our shutdown: leave it unmarked for the next daemon (or
    /// the spool, if its client is gone).
    KeepForNextStart,
    /// Failed for good: spool it, then mark it failed.
    Spool(KafkaErrorCode),
}

fn verdict(result: Result<(), KafkaErrorCode>, purge_origin: Option<PurgeOrigin>) -> Verdict {
    let code = match result {
        Ok(()) => return Verdict::Delivered,
        Err(code) => code,
    };
    if code.is_purge() {
        return match purge_origin {
            Some(PurgeOrigin::Shutdown) => Verdict::KeepForNextStart,
            Some(PurgeOrigin::Recovery) => Verdict::ProduceAgain(Cause::Retriable(code)),
            // Not ours: librdkafka purges its queue after a fatal error.
            None => Verdict::ProduceAgain(Cause::Fatal(code)),
        };
    }
    match code.class() {
        ErrorClass::Retriable => Verdict::ProduceAgain(Cause::Retriable(code)),
        ErrorClass::Fatal => Verdict::ProduceAgain(Cause::Fatal(code)),
        ErrorClass::Permanent => Verdict::Spool(code),
    }
}

impl DrainThread {
    /// Serves delivery reports (waiting up to `timeout` for the first):
    /// marks records, holds or spools failures, releases. Returns how many
    /// reports it served.
    pub(super) fn serve_reports(&mut self, timeout: Duration) -> usize {
        self.reports.clear();
        let n = self.producer.poll(timeout, &mut self.reports);
        let purge_origin = self.purge_origin();
        // Counters are summed here and published once per poll, before the
        // releases that let clients see their acknowledgements.
        let mut delivered = 0;
        let mut failed_attempts = false;
        for report in self.reports.drain(..) {
            let opaque = Opaque::decode(report.opaque);
            if opaque.slot == PROGRESS_SLOT {
                // A position record of an exactly-once transaction: only its
                // failure matters (the transaction cannot commit).
                if let (Err(code), Some(txn)) = (report.result, self.txn.as_mut()) {
                    if !txn.is_aborting() {
                        txn.doom(code);
                        self.recovery
                            .request(Cause::Retriable(code), Instant::now());
                    }
                }
                continue;
            }
            let Some(ring) = self.rings.get_mut(opaque.slot).and_then(Option::as_mut) else {
                error!(
                    opaque = report.opaque,
                    "delivery report for an unknown ring"
                );
                continue;
            };
            let seq = opaque.seq(ring.consumer.released_pos(), ring.consumer.capacity());
            ring.in_flight = ring.in_flight.saturating_sub(1);
            match verdict(report.result, purge_origin) {
                Verdict::Delivered => {
                    let outcome =
                        Outcome::delivered(report.partition, report.offset, report.timestamp_ms);
                    if let Some(txn) = self.txn.as_mut() {
                        // Marked once the transaction commits.
                        txn.acknowledged(opaque.slot, seq, outcome, report.latency_us);
                        ring.uncommitted += 1;
                        continue;
                    }
                    ring.consumer.mark(seq, &outcome);
                    ring.finished(seq);
                    ring.acked_unpublished += 1;
                    delivered += 1;
                    self.latency_batch.observe_us(report.latency_us);
                }
                Verdict::ProduceAgain(cause) => {
                    failed_attempts = true;
                    if let (Some(txn), Err(code)) = (self.txn.as_mut(), report.result) {
                        txn.doom(code);
                    }
                    ring.note_failed_attempt(seq, report.status);
                    self.recovery.request(cause, Instant::now());
                }
                Verdict::KeepForNextStart => ring.note_failed_attempt(seq, report.status),
                Verdict::Spool(code) => {
                    failed_attempts = true;
                    if let Some(txn) = self.txn.as_mut() {
                        // librdkafka fails the transaction with the record:
                        // abort it, and produce the others again.
                        txn.doom_by_record(code);
                        self.recovery
                            .request(Cause::Retriable(code), Instant::now());
                    }
                    let status = ring.persistence(seq, Some(report.status), 0);
                    if log_summary::note_failure(FailureKind::Permanent(code.name().into_owned())) {
                        warn!(client = ring.client.id, seq, error = %code.name(),
                            detail = report.error_detail.as_deref().unwrap_or(""),
                            persistence = status.name(),
                            "delivery failed permanently (more of this error are summarised)");
                    }
                    // Still in flight: marked and released once spooled.
                    ring.awaiting_spool += 1;
                    self.dead_letters.defer(PendingFailure {
                        partition: report.partition,
                        ..PendingFailure::now(opaque.slot, seq, code, status)
                    });
                }
            }
        }
        if failed_attempts {
            // Any failure may be the first sign of a fatal error whose own
            // reports (purges) look retriable.
            if let Some((code, reason)) = self.producer.fatal_error() {
                self.recovery.request_fatal(code, &reason, Instant::now());
            }
        }
        if delivered > 0 {
            self.recovery.delivered();
        }
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.stats.latency.absorb(&mut self.latency_batch);
        self.spool_failures();
        self.publish_and_release();
        n
    }

    /// Adds served acknowledgements to the clients' counters, moves held
    /// failures on, and releases what is finished.
    pub(super) fn publish_and_release(&mut self) {
        for ring in self.rings.iter_mut().flatten() {
            if ring.acked_unpublished > 0 {
                ring.client.counters.delivered.fetch_add(
                    std::mem::take(&mut ring.acked_unpublished),
                    Ordering::Relaxed,
                );
            }
            ring.report_held_failures();
            ring.consumer.release();
        }
    }

    /// Whose purge the `_PURGE_*` reports of this poll answer, if ours.
    fn purge_origin(&self) -> Option<PurgeOrigin> {
        if self.txn.as_ref().is_some_and(|t| t.is_aborting()) {
            // An abort purges what the transaction had outstanding.
            Some(PurgeOrigin::Recovery)
        } else if self.shutdown_purged {
            Some(PurgeOrigin::Shutdown)
        } else if self.txn.is_some() {
            // A transaction that failed is purged by librdkafka itself;
            // whether the producer failed too is asked of it after the
            // reports (`fatal_error`).
            Some(PurgeOrigin::Recovery)
        } else {
            self.recovery.purge_origin()
        }
    }

    /// Writes the failed records held in the rings to the spool in one
    /// fsynced batch; only those now on disk are marked failed (and so
    /// released by the caller). If the spool is unwritable they stay held.
    fn spool_failures(&mut self) {
        let rings = &self.rings;
        let durable = self
            .dead_letters
            .spool_due(Instant::now(), |failure, writer| {
                let ring = rings.get(failure.slot).and_then(Option::as_ref);
                spool::dead_letter::append_failure(
                    writer,
                    ring.map(|r| (&r.consumer, &*r.client)),
                    failure,
                );
            });
        for failure in durable {
            let Some(ring) = self.rings.get_mut(failure.slot).and_then(Option::as_mut) else {
                continue;
            };
            ring.awaiting_spool -= 1;
            // The number the client knows the record by, and its create
            // time, read before the report takes their place.
            let (seq, timestamp_ms) = ring
                .consumer
                .in_flight_view(failure.pos)
                .map_or((u64::MAX, -1), |view| (view.seq(), view.timestamp_ms()));
            let outcome = Outcome::failed(
                failure.code.raw(),
                failure.status.as_byte(),
                failure.partition,
                timestamp_ms,
            );
            let report = Failure {
                seq,
                code: failure.code.raw(),
                persistence: u32::from(failure.status.as_byte()),
            };
            ring.report_failure(failure.pos, report, outcome);
            ring.client.counters.failed.fetch_add(1, Ordering::Relaxed);
            ring.client.counters.spooled.fetch_add(1, Ordering::Relaxed);
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.stats.count_failure(failure.code);
            self.stats.spooled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permanent_errors_reach_the_spool() {
        let timed_out = Err(KafkaErrorCode::MSG_TIMED_OUT);
        assert_eq!(
            verdict(timed_out, None),
            Verdict::ProduceAgain(Cause::Retriable(KafkaErrorCode::MSG_TIMED_OUT))
        );
        let too_large = KafkaErrorCode::from_raw(10);
        assert_eq!(verdict(Err(too_large), None), Verdict::Spool(too_large));
        let out_of_order = KafkaErrorCode::from_raw(45);
        assert_eq!(
            verdict(Err(out_of_order), None),
            Verdict::ProduceAgain(Cause::Fatal(out_of_order))
        );
        assert_eq!(verdict(Ok(()), None), Verdict::Delivered);
    }

    #[test]
    fn purges_are_judged_by_who_purged() {
        let purged = Err(KafkaErrorCode::PURGE_QUEUE);
        assert_eq!(
            verdict(purged, Some(PurgeOrigin::Shutdown)),
            Verdict::KeepForNextStart
        );
        assert_eq!(
            verdict(purged, Some(PurgeOrigin::Recovery)),
            Verdict::ProduceAgain(Cause::Retriable(KafkaErrorCode::PURGE_QUEUE))
        );
        // librdkafka purges by itself only after a fatal error.
        assert_eq!(
            verdict(purged, None),
            Verdict::ProduceAgain(Cause::Fatal(KafkaErrorCode::PURGE_QUEUE))
        );
    }
}
