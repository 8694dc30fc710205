//! `shmkafkad spool replay`: produce spooled records again and remove the
//! ones the broker acknowledged.
//!
//! File by file: the file is locked (a running daemon appending to it moves
//! on to a new file), its records are produced with `produce_copied` under
//! the daemon's librdkafka settings, and once every delivery report is in
//! (or the timeout passed and the rest was purged) the file is rewritten
//! without the acknowledged records. A crash before the rewrite leaves them
//! in the spool, so a replay is at-least-once: a record can reach the topic
//! twice, never zero times. Records that were `possibly_persisted` when they
//! failed may already be in the topic, so a replay can duplicate those too.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::compact::ExclusiveFile;
use super::files;
use super::reader::Entry;
use crate::kafka::{
    DeliveryReport, Header, KafkaConfig, KafkaError, OutgoingMessage, ProduceError, Producer,
    ProducerOptions, PurgeScope, Topic,
};

/// Default time a replay waits for one file's delivery reports.
pub const DEFAULT_REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval while librdkafka's queue is full.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(50);

/// What to replay, and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Spool directory.
    pub dir: PathBuf,
    /// Only records of this topic.
    pub topic: Option<String>,
    /// librdkafka properties (the daemon's, from its config file and `-X`).
    pub kafka: KafkaConfig,
    /// How long to wait for the reports of one file.
    pub timeout: Duration,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Acknowledged and removed from the spool.
    pub delivered: usize,
    /// Produced and failed (or not acknowledged in time): still spooled.
    pub failed: usize,
    /// Cannot be replayed as they are (topic unknown, bytes lost, headers
    /// undecodable): still spooled.
    pub unreplayable: usize,
    /// Files that could not be read or rewritten.
    pub problems: usize,
}

/// Why a replay could not run.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The producer could not be created.
    #[error("cannot create the replay producer: {0}")]
    Producer(#[from] KafkaError),
    /// The spool directory cannot be read.
    #[error("cannot list the spool directory: {0}")]
    Io(#[from] io::Error),
}

/// Replays the spool in `options.dir`, reporting per file to `log`.
pub fn replay(options: &ReplayOptions, log: &mut dyn Write) -> Result<Replayed, ReplayError> {
    let mut kafka = options.kafka.clone();
    // The daemon's default (0 = retry forever) would hold a replay until its
    // own timeout without saying why; a finite one reports the cause.
    if kafka.get("message.timeout.ms").is_none_or(|v| v == "0") {
        kafka.set(
            "message.timeout.ms",
            options.timeout.as_millis().max(1).to_string(),
        );
    }
    let producer = Producer::new(&kafka, ProducerOptions::default())?;
    let mut topics: HashMap<String, Topic> = HashMap::new();
    // Opaques are unique across files, so a late report from an earlier
    // file can never acknowledge a record of this one.
    let mut next_opaque = 0usize;
    let mut total = Replayed::default();
    for path in files::list(&options.dir)? {
        let file = match ExclusiveFile::open(&path) {
            Ok(Some(file)) => file,
            Ok(None) => continue,
            Err(e) => {
                let _ = writeln!(log, "warning: {e}");
                total.problems += 1;
                continue;
            }
        };
        for damage in &file.scan.damage {
            let _ = writeln!(log, "warning: {}: {damage}", path.display());
        }
        let outcome = replay_file(
            &producer,
            &mut topics,
            &mut next_opaque,
            &file.scan.records,
            options,
            log,
        );
        let name = path.display();
        match file.retain(|e| !outcome.acked.contains(&e.offset)) {
            Ok(_) => {}
            Err(e) => {
                // The acknowledged records stay too: the next replay sends
                // them again (at-least-once).
                let _ = writeln!(log, "warning: cannot rewrite {name}: {e}");
                total.problems += 1;
            }
        }
        let _ = writeln!(
            log,
            "{name}: delivered {}, failed {}, unreplayable {}",
            outcome.acked.len(),
            outcome.failed,
            outcome.unreplayable
        );
        total.delivered += outcome.acked.len();
        total.failed += outcome.failed;
        total.unreplayable += outcome.unreplayable;
    }
    Ok(total)
}

#[derive(Default)]
struct FileOutcome {
    /// Offsets of acknowledged records.
    acked: HashSet<u64>,
    /// Offset of the record produced with each opaque.
    offsets: HashMap<usize, u64>,
    failed: usize,
    unreplayable: usize,
}

fn replay_file(
    producer: &Producer,
    topics: &mut HashMap<String, Topic>,
    next_opaque: &mut usize,
    entries: &[Entry],
    options: &ReplayOptions,
    log: &mut dyn Write,
) -> FileOutcome {
    let deadline = Instant::now() + options.timeout;
    let mut outcome = FileOutcome::default();
    let mut reports: Vec<DeliveryReport> = Vec::new();
    let mut outstanding = 0usize;
    for entry in entries {
        let r = &entry.record;
        if options.topic.as_ref().is_some_and(|t| *t != r.topic) {
            continue;
        }
        let headers = r.decoded_headers();
        let Some(headers) = headers.filter(|_| !r.topic.is_empty() && !r.content_lost()) else {
            let _ = writeln!(
                log,
                "skipped: offset {} (seq {}): {}",
                entry.offset,
                r.seq,
                if r.topic.is_empty() {
                    "topic unknown (the client never registered its topic id)"
                } else if r.content_lost() {
                    "record bytes were lost"
                } else {
                    "headers do not decode"
                }
            );
            outcome.unreplayable += 1;
            continue;
        };
        let topic = match topics.get(&r.topic) {
            Some(t) => t,
            None => match producer.topic(&r.topic) {
                Ok(t) => topics.entry(r.topic.clone()).or_insert(t),
                Err(e) => {
                    let _ = writeln!(log, "failed: offset {}: {e}", entry.offset);
                    outcome.failed += 1;
                    continue;
                }
            },
        };
        let headers: Vec<Header<'_>> = headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_deref()))
            .collect();
        let message = OutgoingMessage {
            partition: r.partition,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp_ms: r.timestamp_ms,
            headers: &headers,
            opaque: *next_opaque,
        };
        loop {
            match producer.produce_copied(topic, &message) {
                Ok(()) => {
                    outcome.offsets.insert(*next_opaque, entry.offset);
                    *next_opaque += 1;
                    outstanding += 1;
                    break;
                }
                Err(ProduceError::QueueFull { .. }) if Instant::now() < deadline => {
                    outstanding -=
                        collect(producer, QUEUE_FULL_POLL, &mut reports, &mut outcome, log);
                }
                Err(e) => {
                    let _ = writeln!(log, "failed: offset {}: {e}", entry.offset);
                    outcome.failed += 1;
                    break;
                }
            }
        }
    }
    while outstanding > 0 && Instant::now() < deadline {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        outstanding -= collect(producer, wait, &mut reports, &mut outcome, log);
    }
    if outstanding > 0 {
        // Not acknowledged in time: purge (their reports say so) and keep
        // them. Purged in-flight records may still be written: a later
        // replay can duplicate them.
        let _ = producer.purge(PurgeScope::QueuedAndInFlight);
        let until = Instant::now() + Duration::from_secs(5);
        while outstanding > 0 && Instant::now() < until {
            outstanding -= collect(
                producer,
                Duration::from_millis(100),
                &mut reports,
                &mut outcome,
                log,
            );
        }
        outcome.failed += outstanding;
    }
    outcome
}

/// Serves reports; returns how many arrived.
fn collect(
    producer: &Producer,
    timeout: Duration,
    reports: &mut Vec<DeliveryReport>,
    outcome: &mut FileOutcome,
    log: &mut dyn Write,
) -> usize {
    reports.clear();
    producer.poll(timeout, reports);
    let mut n = 0;
    for report in reports.drain(..) {
        let Some(&offset) = outcome.offsets.get(&report.opaque) else {
            continue; // a straggler of an earlier file, already counted failed
        };
        n += 1;
        match report.result {
            Ok(()) => {
                outcome.acked.insert(offset);
            }
            Err(code) => {
                let _ = writeln!(
                    log,
                    "failed: offset {offset}: {}{}",
                    code.name(),
                    report
                        .error_detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
                outcome.failed += 1;
            }
        }
    }
    n
}
