//! The bound on the spool's total size (`spool.max_total_bytes`), shared by
//! every writer of this process that spools into the same directory.
//!
//! Writers take room before they commit and give back what they did not
//! use, so concurrent drain threads together never write past the bound.
//! The directory is measured again now and then, so that room freed by
//! `shmkafkad spool replay` or `purge` (other processes) is seen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::files;

/// How old a measurement of the directory may get before room is taken
/// against a fresh one.
const REMEASURE: Duration = Duration::from_secs(1);

/// Times a batch of failed records was held back (in its rings) because
/// the spool was at its bound; for metrics.
pub static SPOOL_FULL_EVENTS: AtomicU64 = AtomicU64::new(0);
/// Failed records held in their rings because the spool was at its bound,
/// as last seen by a drain thread; for metrics.
pub static SPOOL_FULL_HELD: AtomicU64 = AtomicU64::new(0);

/// The size bound of one spool directory.
#[derive(Debug)]
pub struct SpoolBudget {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes on disk at the last measurement, plus what was written and
    /// what is taken (granted, not yet settled) since.
    used: u64,
    /// Granted and not yet settled: kept across a new measurement, which
    /// cannot see those bytes yet.
    outstanding: u64,
    measured_at: Option<Instant>,
}

impl SpoolBudget {
    /// The budget of `dir`, shared with every other writer of this process
    /// into it; `limit` of the first caller wins until a reload.
    pub fn for_dir(dir: &Path, limit: u64) -> Arc<SpoolBudget> {
        static BUDGETS: OnceLock<Mutex<HashMap<PathBuf, Arc<SpoolBudget>>>> = OnceLock::new();
        let mut budgets = BUDGETS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            budgets
                .entry(dir.to_owned())
                .and_modify(|b| {
                    if b.limit != limit {
                        *b = Arc::new(SpoolBudget::new(dir, limit));
                    }
                })
                .or_insert_with(|| Arc::new(SpoolBudget::new(dir, limit))),
        )
    }

    /// A budget of its own (tests).
    pub fn new(dir: &Path, limit: u64) -> SpoolBudget {
        SpoolBudget {
            dir: dir.to_owned(),
            limit,
            state: Mutex::new(State::default()),
        }
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes up to `wanted` bytes of room; returns how many were granted
    /// (0 when the spool is at its bound). Settle every grant with
    /// [`SpoolBudget::settle`] once written.
    pub fn take(&self, wanted: u64) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if state
            .measured_at
            .is_none_or(|at| now.duration_since(at) >= REMEASURE)
        {
            if let Some(bytes) = measure(&self.dir) {
                state.used = bytes + state.outstanding;
            }
            state.measured_at = Some(now);
        }
        let granted = wanted.min(self.limit.saturating_sub(state.used));
        state.used += granted;
        state.outstanding += granted;
        granted
    }

    /// Settles a grant of which `written` bytes reached the disk; the rest
    /// is room again.
    pub fn settle(&self, granted: u64, written: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.outstanding = state.outstanding.saturating_sub(granted);
        state.used = state.used.saturating_sub(granted.saturating_sub(written));
    }

    /// After a failed write the bytes on disk are unknown: measure again at
    /// the next `take`.
    pub fn forget_measurement(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .measured_at = None;
    }
}

/// Bytes of spool files in `dir` (rewrites in progress included: they take
/// room too); `None` if it cannot be read. A missing directory holds none.
fn measure(dir: &Path) -> Option<u64> {
    let mut total = 0;
    for path in files::list(dir).ok()? {
        if let Ok(meta) = std::fs::metadata(&path) {
            total += meta.len();
        }
    }
    Some(total)
}

/// Notes that `held` records wait in their rings for room in the spool.
pub fn note_full(held: usize) {
    SPOOL_FULL_EVENTS.fetch_add(1, Ordering::Relaxed);
    SPOOL_FULL_HELD.store(held as u64, Ordering::Relaxed);
}

/// Notes that the spool took every waiting record.
pub fn note_room() {
    SPOOL_FULL_HELD.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_never_exceed_the_limit_and_measure_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dlq-1.spool"), [0u8; 300]).unwrap();
        let budget = SpoolBudget::new(dir.path(), 1000);
        assert_eq!(budget.take(500), 500);
        assert_eq!(budget.take(500), 200, "300 on disk + 500 taken");
        assert_eq!(budget.take(1), 0);
        budget.settle(500, 400);
        assert_eq!(budget.take(1000), 100);
        budget.settle(200, 0);
        budget.settle(100, 0);
        // A purge by another process frees room once measured again.
        std::fs::remove_file(dir.path().join("dlq-1.spool")).unwrap();
        budget.forget_measurement();
        assert_eq!(budget.take(600), 600);
        // A grant outstanding across a new measurement still counts.
        budget.forget_measurement();
        assert_eq!(budget.take(1000), 400);
        assert!(Arc::ptr_eq(
            &SpoolBudget::for_dir(dir.path(), 5),
            &SpoolBudget::for_dir(dir.path(), 5)
        ));
    }
}
