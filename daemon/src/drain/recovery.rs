//! Producer recovery, as an explicit state of the drain thread.
//!
//! A record whose attempt failed retriably (`_MSG_TIMED_OUT` after a
//! user-set `message.timeout.ms`, a purge, a broker-side availability
//! error) stays unmarked in its ring; so does every record in flight when
//! the producer hits a fatal error. Recovery produces them again, in ring
//! order, so per-partition order holds:
//!
//! 1. **Draining**: nothing new is produced. Queued messages are purged (they
//!    were never sent, so they come back at once as not persisted), and the
//!    drain thread waits for the reports of what is in flight. A fatal
//!    producer gets [`FATAL_INFLIGHT_WAIT`] for those before they are purged
//!    too (then they count as possibly persisted).
//! 2. **Rewind**: with nothing in flight, a fatal producer is replaced by a
//!    new one (a new producer id), and every ring's consumer is rebuilt from
//!    its release cursor: it yields the unfinished records again.
//! 3. **Backing off**: production resumes after a delay that doubles from
//!    [`BACKOFF_MIN`] to [`BACKOFF_MAX`] while attempts keep failing, and
//!    starts over once a record is delivered.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::DrainThread;
use crate::kafka::{KafkaError, KafkaErrorCode, Producer, PurgeScope};

/// First delay before producing again after a recovery.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between recoveries while attempts keep failing (e.g. a
/// broker outage longer than `message.timeout.ms`).
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most time recovery spends aborting an exactly-once transaction before
/// it replaces the producer instead.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a producer with a fatal error may take to report what it had
/// in flight (the broker may still acknowledge it) before it is purged.
pub(super) const FATAL_INFLIGHT_WAIT: Duration = Duration::from_secs(5);

/// Why the drain thread must produce records again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// An attempt failed in a way a later attempt may not: same producer.
    Retriable(KafkaErrorCode),
    /// The producer instance is unusable: replace it.
    Fatal(KafkaErrorCode),
}

/// Who asked librdkafka to purge, for judging `_PURGE_*` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PurgeOrigin {
    /// The graceful stop, after its budget ran out.
    Shutdown,
    /// Recovery, to get queued records back at once.
    Recovery,
}

/// What the drain thread must do for recovery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing (producing, backing off, or waiting for reports).
    None,
    /// Purge the producer's messages in this scope.
    Purge(PurgeScope),
    /// Nothing is in flight: replace the producer if `rebuild`, then rewind
    /// the rings and call [`Recovery::rewound`].
    Rewind {
        /// Replace the producer first.
        rebuild: bool,
        /// The error that started the recovery.
        cause: KafkaErrorCode,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Producing,
    Draining {
        rebuild: bool,
        cause: KafkaErrorCode,
        since: Instant,
        purged: Option<PurgeScope>,
        /// No rewind before this (a failed producer replacement waits).
        not_before: Instant,
    },
    BackingOff {
        until: Instant,
    },
}

/// A drain thread's recovery state.
#[derive(Debug)]
pub(super) struct Recovery {
    state: State,
    /// The next backoff.
    backoff: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            state: State::Producing,
            backoff: BACKOFF_MIN,
        }
    }
}

impl Recovery {
    /// Whether records may be handed to librdkafka now.
    pub fn may_produce(&mut self, now: Instant) -> bool {
        match self.state {
            State::Producing => true,
            State::Draining { .. } => false,
            State::BackingOff { until } if now >= until => {
                self.state = State::Producing;
                true
            }
            State::BackingOff { .. } => false,
        }
    }

    /// Whether the drain thread is producing (no recovery under way).
    pub fn is_producing(&self) -> bool {
        matches!(self.state, State::Producing)
    }

    /// Whether records that failed an attempt wait, unmarked and not yet
    /// rewound, for the in-flight reports.
    pub fn is_draining(&self) -> bool {
        matches!(self.state, State::Draining { .. })
    }

    /// When production resumes, if the drain thread is backing off.
    pub fn resumes_at(&self) -> Option<Instant> {
        match self.state {
            State::BackingOff { until } => Some(until),
            _ => None,
        }
    }

    /// A record must be produced again for `cause`. Starts a recovery
    /// (logged once), or makes the running one replace the producer.
    pub fn request(&mut self, cause: Cause, now: Instant) {
        let (rebuild, code) = match cause {
            Cause::Retriable(code) => (false, code),
            Cause::Fatal(code) => (true, code),
        };
        match &mut self.state {
            State::Draining {
                rebuild: running,
                cause,
                since,
                ..
            } => {
                if rebuild && !*running {
                    *running = true;
                    *cause = code;
                    *since = now;
                    error!(error = %code.name(), "fatal librdkafka error during a retry: the producer will be replaced");
                }
            }
            State::Producing | State::BackingOff { .. } => {
                if rebuild {
                    error!(error = %code.name(),
                        "librdkafka producer failed: replacing it once its in-flight records are reported, then producing every unacknowledged record again");
                } else {
                    warn!(error = %code.name(), retry_in_ms = self.backoff.as_millis() as u64,
                        "delivery failed with a retriable error: producing the unacknowledged records again");
                }
                self.state = State::Draining {
                    rebuild,
                    cause: code,
                    since: now,
                    purged: None,
                    not_before: now,
                };
            }
        }
    }

    /// The producer reports a fatal error (`rd_kafka_fatal_error`).
    pub fn request_fatal(&mut self, code: KafkaErrorCode, reason: &str, now: Instant) {
        if !matches!(self.state, State::Draining { rebuild: true, .. }) {
            error!(error = %code.name(), reason, "fatal librdkafka error");
        }
        self.request(Cause::Fatal(code), now);
    }

    /// A record was delivered: the next recovery starts with a short
    /// backoff again.
    pub fn delivered(&mut self) {
        self.backoff = BACKOFF_MIN;
    }

    /// Whether `_PURGE_*` reports now answer a purge of ours.
    pub fn purge_origin(&self) -> Option<PurgeOrigin> {
        match self.state {
            State::Draining {
                purged: Some(_), ..
            } => Some(PurgeOrigin::Recovery),
            _ => None,
        }
    }

    /// The next step, given how many records are in flight.
    pub fn next_action(&mut self, in_flight: usize, now: Instant) -> Action {
        let State::Draining {
            rebuild,
            cause,
            since,
            purged,
            not_before,
        } = &mut self.state
        else {
            return Action::None;
        };
        if in_flight == 0 {
            if now < *not_before {
                return Action::None;
            }
            return Action::Rewind {
                rebuild: *rebuild,
                cause: *cause,
            };
        }
        match purged {
            None => {
                *purged = Some(PurgeScope::Queued);
                Action::Purge(PurgeScope::Queued)
            }
            Some(PurgeScope::Queued)
                if *rebuild && now.duration_since(*since) >= FATAL_INFLIGHT_WAIT =>
            {
                *purged = Some(PurgeScope::QueuedAndInFlight);
                Action::Purge(PurgeScope::QueuedAndInFlight)
            }
            Some(_) => Action::None,
        }
    }

    /// The rings are rewound (and the producer replaced, if asked): back
    /// off, then produce.
    pub fn rewound(&mut self, now: Instant) {
        self.state = State::BackingOff {
            until: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Replacing the producer failed: offer the rewind again after a
    /// backoff; nothing is produced meanwhile.
    pub fn rebuild_failed(&mut self, now: Instant) {
        if let State::Draining { not_before, .. } = &mut self.state {
            *not_before = now + self.backoff;
        }
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

impl DrainThread {
    /// Moves producer recovery on by the step it is ready for.
    pub(super) fn step_recovery(&mut self) {
        let now = Instant::now();
        match self.recovery.next_action(self.in_flight(), now) {
            Action::None => {}
            Action::Purge(_) if self.txn.is_some() => {
                // Exactly-once: the abort purges what the transaction has
                // outstanding, as librdkafka requires of a transactional
                // producer (a plain purge leaves gaps in its sequences).
                if let Err(code) = self.abort_open_transaction(ABORT_TIMEOUT) {
                    self.recovery.request(Cause::Fatal(code), now);
                }
            }
            Action::Purge(scope) => {
                if let Err(e) = self.producer.purge(scope) {
                    error!(error = %e, "purging the producer for a retry failed");
                }
            }
            Action::Rewind { mut rebuild, cause } => {
                // Exactly-once: the open transaction cannot commit; abort it
                // (a failed abort needs a new producer, which fences it).
                if !rebuild && self.abort_open_transaction(ABORT_TIMEOUT).is_err() {
                    rebuild = true;
                }
                if rebuild {
                    if let Err(e) = self.replace_producer(cause) {
                        error!(error = %e, "creating a replacement librdkafka producer failed; retrying");
                        self.recovery.rebuild_failed(now);
                        return;
                    }
                } else {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                let mut again = 0;
                for ring in self.rings.iter_mut().flatten() {
                    let waiting = ring.consumer.pending().saturating_sub(ring.awaiting_spool);
                    if waiting > 0 && ring.quarantined.is_none() {
                        ring.rewind_pending = true;
                        again += waiting;
                    }
                }
                info!(records = again, error = %cause.name(),
                    "rings rewound: unacknowledged records will be produced again");
                self.recovery.rewound(now);
            }
        }
    }

    /// Replaces the producer after a fatal error. Nothing is in flight: the
    /// old one holds no reference into the rings any more.
    fn replace_producer(&mut self, cause: KafkaErrorCode) -> Result<(), KafkaError> {
        let replacement = Producer::new(&self.kafka, self.producer_options.clone())?;
        // Topic handles keep their producer's native client alive.
        for ring in self.rings.iter_mut().flatten() {
            ring.topics.forget();
        }
        self.topic_handles.clear();
        let old = std::mem::replace(&mut self.producer, replacement);
        let old_name = old.name();
        drop(old);
        if let Some(txn) = self.txn.as_mut() {
            // Its open transaction is left to the new producer's fencing;
            // whether its last commit took effect is read back.
            txn.producer_replaced();
            for ring in self.rings.iter_mut().flatten() {
                ring.uncommitted = 0;
                ring.in_transaction = false;
            }
        }
        self.stats.producer_rebuilds.fetch_add(1, Ordering::Relaxed);
        warn!(error = %cause.name(), old = %old_name, new = %self.producer.name(),
            "librdkafka producer replaced after a fatal error");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMED_OUT: KafkaErrorCode = KafkaErrorCode::MSG_TIMED_OUT;
    const FATAL: KafkaErrorCode = KafkaErrorCode::from_raw(45);

    #[test]
    fn retriable_failure_purges_queue_waits_rewinds_and_backs_off() {
        let mut recovery = Recovery::default();
        let now = Instant::now();
        assert!(recovery.may_produce(now));
        recovery.request(Cause::Retriable(TIMED_OUT), now);
        assert!(!recovery.may_produce(now));
        assert_eq!(
            recovery.next_action(3, now),
            Action::Purge(PurgeScope::Queued)
        );
        assert_eq!(recovery.purge_origin(), Some(PurgeOrigin::Recovery));
        assert_eq!(recovery.next_action(3, now), Action::None);
        assert_eq!(
            recovery.next_action(0, now),
            Action::Rewind {
                rebuild: false,
                cause: TIMED_OUT
            }
        );
        recovery.rewound(now);
        assert!(!recovery.may_produce(now));
        assert!(recovery.may_produce(now + BACKOFF_MIN));
        // Failing again waits twice as long; a delivery resets that.
        recovery.request(Cause::Retriable(TIMED_OUT), now);
        assert!(matches!(
            recovery.next_action(0, now),
            Action::Rewind { .. }
        ));
        recovery.rewound(now);
        assert!(!recovery.may_produce(now + BACKOFF_MIN));
        assert!(recovery.may_produce(now + 2 * BACKOFF_MIN));
        recovery.delivered();
        recovery.request(Cause::Retriable(TIMED_OUT), now);
        recovery.next_action(0, now);
        recovery.rewound(now);
        assert!(recovery.may_produce(now + BACKOFF_MIN));
    }

    #[test]
    fn fatal_error_rebuilds_and_purges_in_flight_records_after_a_wait() {
        let mut recovery = Recovery::default();
        let start = Instant::now();
        recovery.request(Cause::Retriable(TIMED_OUT), start);
        // A fatal error during a retry upgrades it.
        recovery.request(Cause::Fatal(FATAL), start);
        assert_eq!(
            recovery.next_action(5, start),
            Action::Purge(PurgeScope::Queued)
        );
        assert_eq!(recovery.next_action(5, start), Action::None);
        assert_eq!(
            recovery.next_action(5, start + FATAL_INFLIGHT_WAIT),
            Action::Purge(PurgeScope::QueuedAndInFlight)
        );
        assert_eq!(
            recovery.next_action(0, start + FATAL_INFLIGHT_WAIT),
            Action::Rewind {
                rebuild: true,
                cause: FATAL
            }
        );
        // A failed replacement is offered again only after a backoff.
        let later = start + FATAL_INFLIGHT_WAIT;
        recovery.rebuild_failed(later);
        assert_eq!(recovery.next_action(0, later), Action::None);
        assert!(matches!(
            recovery.next_action(0, later + BACKOFF_MIN),
            Action::Rewind { rebuild: true, .. }
        ));
    }
}
