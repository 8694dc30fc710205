//! Conditions that repeat or last are logged when they begin, then
//! summarised every `daemon.log_summary_interval_s`, so an outage or a burst
//! of failures costs a few lines instead of one per record or reconnect:
//!
//! * Kafka unreachable: one line when librdkafka reports every broker down,
//!   a summary of what is held while it lasts, one line when deliveries
//!   resume;
//! * records failing permanently, or whose failure a client's full queue
//!   could not take: the first of each kind in full, then a count.
//!
//! The drain threads only count ([`note_failure`]); the supervisor thread
//! writes the summaries ([`Summaries::tick`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

/// Distinct kinds of failure tracked at once; error names and client ids
/// are bounded in practice, the cap keeps it so whatever comes.
const MAX_KINDS: usize = 1024;
/// librdkafka reports "all brokers down" again after each failed round of
/// reconnects (`reconnect.backoff.max.ms`, 10 s by default). With nothing
/// held and no such report for this long, the brokers are taken as back.
const QUIET_AFTER_OUTAGE: Duration = Duration::from_secs(30);
/// librdkafka's name for "every broker connection is down".
pub const ALL_BROKERS_DOWN: &str = "_ALL_BROKERS_DOWN";

/// A kind of repeated failure, e.g. a permanent delivery failure with one
/// error code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// A record failed permanently with this error and went to the spool.
    Permanent(String),
    /// A client's failure queue was full; the failure was counted only.
    QueueFull {
        /// The client.
        client: u64,
    },
}

#[derive(Debug, Default)]
struct Failures {
    /// Kinds seen in the current interval or the one before, with the
    /// number not logged since the last summary.
    held_back: BTreeMap<FailureKind, u64>,
}

static FAILURES: Mutex<Failures> = Mutex::new(Failures {
    held_back: BTreeMap::new(),
});

/// Counts one failure of `kind`; true if it is the first of its kind lately
/// and should be logged in full.
pub fn note_failure(kind: FailureKind) -> bool {
    let mut failures = FAILURES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(held) = failures.held_back.get_mut(&kind) {
        *held += 1;
        return false;
    }
    if failures.held_back.len() >= MAX_KINDS {
        return false;
    }
    failures.held_back.insert(kind, 0);
    true
}

/// Counts held back since the last call, per kind. Kinds with nothing held
/// back are forgotten, so their next failure is logged in full again.
fn take_held_back() -> Vec<(FailureKind, u64)> {
    let mut failures = FAILURES.lock().unwrap_or_else(PoisonError::into_inner);
    failures.held_back.retain(|_, held| *held > 0);
    failures
        .held_back
        .iter_mut()
        .map(|(kind, held)| (kind.clone(), std::mem::take(held)))
        .collect()
}

/// What the daemon holds while Kafka is away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Records handed to librdkafka and not acknowledged yet.
    pub in_flight: u64,
    /// Bytes in the rings not released yet (in flight or not read yet).
    pub bytes: u64,
    /// Rings holding anything.
    pub rings: usize,
}

/// What the supervisor sees at a tick.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// Records delivered since the start, by all drain threads.
    pub delivered: u64,
    /// When librdkafka last reported every broker down.
    pub all_brokers_down: Option<SystemTime>,
    /// What is held.
    pub held: Held,
}

/// The broker-reachability state and the summary clock, kept by the
/// supervisor thread.
#[derive(Debug)]
pub struct Summaries {
    interval: Duration,
    last_summary: Instant,
    delivered: u64,
    last_down_report: Option<SystemTime>,
    last_down_report_at: Instant,
    outage_since: Option<Instant>,
}

impl Summaries {
    /// Summaries every `interval`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            last_summary: now,
            delivered: 0,
            last_down_report: None,
            last_down_report_at: now,
            outage_since: None,
        }
    }

    /// Updates the state from `seen`; logs a change of state at once and
    /// the summaries when they are due.
    pub fn tick(&mut self, now: Instant, seen: Observation) {
        let new_down_report = seen.all_brokers_down > self.last_down_report;
        if new_down_report {
            self.last_down_report = seen.all_brokers_down;
            self.last_down_report_at = now;
        }
        let delivering = seen.delivered > self.delivered;
        self.delivered = seen.delivered;
        match self.outage_since {
            None if new_down_report && !delivering => {
                self.outage_since = Some(now);
                warn!(
                    held_records = seen.held.in_flight,
                    held_bytes = seen.held.bytes,
                    "Kafka brokers unreachable: librdkafka reports every broker down; records stay in the rings until one answers (summary every {} s)",
                    self.interval.as_secs()
                );
            }
            Some(since)
                if delivering
                    || (seen.held.bytes == 0
                        && now.duration_since(self.last_down_report_at) > QUIET_AFTER_OUTAGE) =>
            {
                self.outage_since = None;
                info!(
                    outage_s = now.duration_since(since).as_secs(),
                    "Kafka brokers reachable again after {} s",
                    now.duration_since(since).as_secs()
                );
            }
            _ => {}
        }
        if now.duration_since(self.last_summary) < self.interval {
            return;
        }
        self.last_summary = now;
        if let Some(since) = self.outage_since {
            let Held {
                in_flight,
                bytes,
                rings,
            } = seen.held;
            warn!(
                in_flight,
                bytes,
                rings,
                "Kafka brokers unreachable for {} s: {in_flight} records in flight, {bytes} bytes held in {rings} ring(s)",
                now.duration_since(since).as_secs()
            );
        }
        for (kind, records) in take_held_back() {
            let seconds = self.interval.as_secs();
            match kind {
                FailureKind::Permanent(error) => warn!(
                    records,
                    %error,
                    "{records} more records failed permanently with {error} in the last {seconds} s; they are in the dead-letter spool"
                ),
                FailureKind::QueueFull { client } => warn!(
                    records,
                    client,
                    "{records} more failures not reported to client {client} in the last {seconds} s: its failure queue is full"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_of_a_kind_is_logged_the_rest_counted() {
        let kind = FailureKind::Permanent("TEST_ONLY_KIND".into());
        assert!(note_failure(kind.clone()));
        assert!(!note_failure(kind.clone()));
        assert!(!note_failure(kind.clone()));
        let held = take_held_back();
        assert!(held.contains(&(kind.clone(), 2)), "{held:?}");
        // Nothing more in the next interval: forgotten, logged in full again.
        let held = take_held_back();
        assert!(!held.iter().any(|(k, _)| *k == kind), "{held:?}");
        assert!(note_failure(kind));
    }

    fn seen(delivered: u64, down: Option<SystemTime>, bytes: u64) -> Observation {
        Observation {
            delivered,
            all_brokers_down: down,
            held: Held {
                in_flight: bytes / 10,
                bytes,
                rings: usize::from(bytes > 0),
            },
        }
    }

    #[test]
    fn an_outage_starts_with_a_report_and_ends_with_deliveries() {
        let start = Instant::now();
        let mut s = Summaries::new(Duration::from_secs(60), start);
        s.tick(start, seen(10, None, 0));
        assert!(s.outage_since.is_none());
        let down = SystemTime::now();
        s.tick(start + Duration::from_secs(1), seen(10, Some(down), 100));
        assert!(s.outage_since.is_some());
        // Reports keep coming while it lasts; nothing is delivered.
        for i in 2..100 {
            let at = down + Duration::from_secs(i);
            s.tick(start + Duration::from_secs(i), seen(10, Some(at), 100));
            assert!(s.outage_since.is_some());
        }
        s.tick(start + Duration::from_secs(100), seen(11, None, 0));
        assert!(s.outage_since.is_none());
    }

    #[test]
    fn an_idle_outage_ends_when_the_reports_stop() {
        let start = Instant::now();
        let mut s = Summaries::new(Duration::from_secs(60), start);
        s.tick(start, seen(0, Some(SystemTime::now()), 0));
        assert!(s.outage_since.is_some());
        s.tick(start + Duration::from_secs(10), seen(0, None, 0));
        assert!(s.outage_since.is_some(), "too early to tell");
        s.tick(start + QUIET_AFTER_OUTAGE * 2, seen(0, None, 0));
        assert!(s.outage_since.is_none());
    }
}
