//! librdkafka's client-level errors (a broker unreachable, a TLS handshake
//! or a password refused) and its failed-connection log lines come again
//! with every reconnect, about twice a second per broker. Each kind is
//! logged when it first appears, then at most once per [`LOG_INTERVAL`]
//! with the count of what was held back; the latest of each error is kept
//! for `status`, and every error (fatal ones too) is counted by name for
//! the metrics.
//!
//! Process-wide, because the condition is: every drain thread's producer
//! talks to the same brokers with the same credentials.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A repeated condition is logged at most this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// `status` shows errors seen within this long.
pub const RECENT: Duration = Duration::from_secs(300);
/// Distinct kinds kept: librdkafka's error names and log facilities are a
/// bounded set, far below this; the cap keeps it so whatever comes.
const MAX_KINDS: usize = 256;

/// One kind of error, as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    /// librdkafka's error name (`_AUTHENTICATION`, `_TRANSPORT`, ...).
    pub name: String,
    /// The latest reason text.
    pub reason: String,
    /// How often it was seen since the daemon started.
    pub count: u64,
    /// When it was last seen.
    pub last_seen: SystemTime,
}

#[derive(Debug)]
struct Kind {
    error: Option<ClientError>,
    last_logged: Option<Instant>,
    held_back: u64,
}

/// Whether a line should be written now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Write it; `held_back` like it were not written since the last one.
    Write {
        /// Occurrences not logged since the last line of this kind.
        held_back: u64,
    },
    /// Count it, write nothing.
    HoldBack,
}

#[derive(Debug, Default)]
struct Registry {
    kinds: BTreeMap<String, Kind>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    kinds: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn kind(&mut self, key: &str) -> Option<&mut Kind> {
        if !self.kinds.contains_key(key) && self.kinds.len() >= MAX_KINDS {
            return None;
        }
        Some(self.kinds.entry(key.to_owned()).or_insert(Kind {
            error: None,
            last_logged: None,
            held_back: 0,
        }))
    }
}

fn decide(kind: &mut Kind, now: Instant) -> LogDecision {
    match kind.last_logged {
        Some(at) if now.duration_since(at) < LOG_INTERVAL => {
            kind.held_back += 1;
            LogDecision::HoldBack
        }
        _ => {
            kind.last_logged = Some(now);
            LogDecision::Write {
                held_back: std::mem::take(&mut kind.held_back),
            }
        }
    }
}

/// Records an error from librdkafka's `error_cb` and says whether to log it.
pub fn note_error(name: &str, reason: &str) -> LogDecision {
    note_error_at(name, reason, Instant::now(), SystemTime::now())
}

fn note_error_at(name: &str, reason: &str, now: Instant, wall: SystemTime) -> LogDecision {
    let mut registry = registry();
    let Some(kind) = registry.kind(&format!("error:{name}")) else {
        return LogDecision::HoldBack;
    };
    let count = kind.error.as_ref().map_or(0, |e| e.count) + 1;
    kind.error = Some(ClientError {
        name: name.to_owned(),
        reason: reason.to_owned(),
        count,
        last_seen: wall,
    });
    decide(kind, now)
}

/// Says whether a librdkafka log line of `facility` at a warning or error
/// level should be written now.
pub fn note_log_line(facility: &str) -> LogDecision {
    let mut registry = registry();
    let now = Instant::now();
    match registry.kind(&format!("log:{facility}")) {
        Some(kind) => decide(kind, now),
        None => LogDecision::HoldBack,
    }
}

/// When the error `name` was last seen, if ever.
pub fn last_seen(name: &str) -> Option<SystemTime> {
    registry()
        .kinds
        .get(&format!("error:{name}"))
        .and_then(|k| k.error.as_ref())
        .map(|e| e.last_seen)
}

/// Errors seen within [`RECENT`], most recent first.
pub fn recent_errors() -> Vec<ClientError> {
    let now = SystemTime::now();
    let mut errors: Vec<ClientError> = registry()
        .kinds
        .values()
        .filter_map(|k| k.error.clone())
        .filter(|e| {
            now.duration_since(e.last_seen)
                .map_or(true, |age| age < RECENT)
        })
        .collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
    errors
}

/// Every error name seen and how often, for `shmkafkad_kafka_errors_total`.
pub fn error_counts() -> Vec<(String, u64)> {
    registry()
        .kinds
        .values()
        .filter_map(|k| k.error.as_ref().map(|e| (e.name.clone(), e.count)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_logged_once_per_interval_with_the_count_held_back() {
        let name = "_TEST_REPEATED";
        let start = Instant::now();
        let wall = SystemTime::now();
        assert_eq!(
            note_error_at(name, "first", start, wall),
            LogDecision::Write { held_back: 0 }
        );
        for i in 1..=9 {
            let at = start + Duration::from_millis(500 * i);
            assert_eq!(
                note_error_at(name, "again", at, wall),
                LogDecision::HoldBack
            );
        }
        assert_eq!(
            note_error_at(name, "later", start + LOG_INTERVAL, wall),
            LogDecision::Write { held_back: 9 }
        );
        let seen = recent_errors();
        let error = seen.iter().find(|e| e.name == name).expect("kept");
        assert_eq!((error.count, error.reason.as_str()), (11, "later"));
        assert!(error_counts().contains(&(name.to_owned(), 11)));
    }
}
