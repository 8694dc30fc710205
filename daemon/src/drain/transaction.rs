//! Exactly-once: the drain thread's transactions (see `crate::exactly_once`
//! for the protocol; [`super::progress_sync`] initialises them and brings
//! rings up to their committed positions).
//!
//! A transaction opens with the first record the thread produces, carries
//! the records of any of its rings, and commits once it is
//! `commit_interval` old, holds `commit_max_records`, or a ring it carries
//! records of nears the 65,536 records a ring can hold unreleased.
//! Acknowledgements are collected, not marked: a record is marked (its
//! report published, its space released) only after the commit that carries
//! it and its ring's new position succeeded. A failure of any kind dooms the
//! open transaction; recovery aborts it and the rings produce its records
//! again in a new one.
//!
//! A failure that would doom every transaction carrying a certain record
//! (a topic the broker refuses to add to transactions, e.g. without WRITE
//! permission) is searched for: after such an abort, transactions carry half
//! as many records as the one that failed, until a transaction of a single
//! record fails. That record is spooled with the error, and its topic's
//! records are refused for [`POISONED_FOR`] without entering transactions.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkafka_ringbuf::{Outcome, MAX_IN_FLIGHT};
use tracing::{error, warn};

use super::opaque::{Opaque, PROGRESS_SLOT};
use super::progress_sync::ResyncRead;
use super::recovery::Cause;
use super::DrainThread;
use crate::exactly_once::progress::{self, RingPosition, MAX_UNFINISHED};
use crate::exactly_once::{Committed, ExactlyOnce};
use crate::kafka::{
    ErrorClass, KafkaErrorCode, OutgoingMessage, Persistence, ProduceError, Topic, TxnError,
    TxnErrorKind,
};
use crate::spool::PendingFailure;

/// Bound of one transactional call; a call that times out is resumed (as
/// librdkafka allows) after the drain thread's heartbeat moved, so a long
/// outage does not look like a wedged thread.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Beyond the transaction timeout, how long a commit is resumed before the
/// producer is replaced (which settles the transaction either way).
const COMMIT_GRACE: Duration = Duration::from_secs(10);
/// Most a graceful stop spends aborting a transaction it could not commit.
const ABORT_AT_STOP: Duration = Duration::from_secs(5);
/// How long the records of a topic found to fail every transaction are
/// refused without entering one.
pub(super) const POISONED_FOR: Duration = Duration::from_secs(60);
/// Commits in a row that end the search for a failing record.
const SEARCH_GIVES_UP_AFTER: u32 = 8;

/// An acknowledgement waiting for its transaction's commit.
struct Acked {
    slot: usize,
    pos: u64,
    outcome: Outcome,
    latency_us: i64,
}

/// A position (or, with `committed: None`, a deletion) a commit writes.
pub(super) struct WrittenPosition {
    ring_id: u64,
    committed: Option<Committed>,
}

/// A drain thread's transactional state.
pub(super) struct Transactions {
    pub(super) eos: Arc<ExactlyOnce>,
    /// The current producer is ready for transactions (and, after a
    /// replacement, the positions are read back).
    pub(super) initialised: bool,
    /// `init_transactions` succeeded on the current producer: every earlier
    /// producer with its transactional id is fenced.
    pub(super) producer_fenced_others: bool,
    /// The current producer replaced one whose last commit may or may not
    /// have taken effect: read the positions back before producing.
    pub(super) resync: bool,
    pub(super) resync_read: Option<ResyncRead>,
    pub(super) retry_at: Option<Instant>,
    /// Another daemon with this daemon id fenced ours: produce nothing.
    pub(super) fenced: bool,
    /// The progress topic's handle on the current producer.
    pub(super) progress_topic: Option<Arc<Topic>>,
    open: bool,
    /// When the open transaction got its first record.
    first_record_at: Option<Instant>,
    records: usize,
    /// Bytes (keys and values) of its records.
    bytes: u64,
    /// The open transaction's first record: `(slot, pos)`.
    first_record: Option<(usize, u64)>,
    acked: Vec<Acked>,
    /// The open transaction cannot commit (and why): recovery aborts it.
    doomed: Option<KafkaErrorCode>,
    /// Reports arriving now answer our own abort.
    aborting: bool,
    /// A record's own report said why the transaction failed.
    failing_record_known: bool,
    /// Searching for a record that fails every transaction: transactions
    /// carry at most this many records.
    search_limit: Option<usize>,
    /// Commits in a row during the search.
    search_commits: u32,
    /// Topics whose records fail every transaction, until when.
    poisoned: HashMap<Arc<str>, (KafkaErrorCode, Instant)>,
    /// Identities of rings retired since the last commit, whose positions
    /// the next transaction deletes.
    retired: Vec<u64>,
}

impl Transactions {
    pub fn new(eos: Arc<ExactlyOnce>) -> Self {
        Self {
            eos,
            initialised: false,
            producer_fenced_others: false,
            resync: false,
            resync_read: None,
            retry_at: None,
            fenced: false,
            progress_topic: None,
            open: false,
            first_record_at: None,
            records: 0,
            bytes: 0,
            first_record: None,
            acked: Vec::new(),
            doomed: None,
            aborting: false,
            failing_record_known: false,
            search_limit: None,
            search_commits: 0,
            poisoned: HashMap::new(),
            retired: Vec::new(),
        }
    }

    /// Records the open transaction may still take.
    pub fn room(&self) -> usize {
        if !self.initialised
            || self.doomed.is_some()
            || self.bytes >= self.eos.settings.commit_max_bytes
        {
            return 0;
        }
        let limit = self
            .search_limit
            .unwrap_or(self.eos.settings.commit_max_records);
        limit.saturating_sub(self.records)
    }

    /// Whether the producer's transactions are initialised.
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Whether the reports arriving now answer our own abort.
    pub fn is_aborting(&self) -> bool {
        self.aborting
    }

    /// Bytes the open transaction may still take.
    pub fn bytes_room(&self) -> u64 {
        self.eos
            .settings
            .commit_max_bytes
            .saturating_sub(self.bytes)
    }

    /// Counts records (and their bytes) added to the open transaction;
    /// `first` is the first of them.
    pub fn added(&mut self, records: usize, bytes: u64, first: (usize, u64)) {
        if records > 0 {
            self.first_record_at.get_or_insert_with(Instant::now);
            self.first_record.get_or_insert(first);
            self.records += records;
            self.bytes += bytes;
        }
    }

    /// Holds an acknowledgement until the commit.
    pub fn acknowledged(&mut self, slot: usize, pos: u64, outcome: Outcome, latency_us: i64) {
        self.acked.push(Acked {
            slot,
            pos,
            outcome,
            latency_us,
        });
    }

    /// Something failed with `code`: the open transaction must be aborted.
    pub fn doom(&mut self, code: KafkaErrorCode) {
        if self.open && self.doomed.is_none() {
            self.doomed = Some(code);
        }
    }

    /// A record of the open transaction failed for good (and goes to the
    /// spool): the transaction must be aborted, and the failing record is
    /// known.
    pub fn doom_by_record(&mut self, code: KafkaErrorCode) {
        self.doom(code);
        self.failing_record_known = true;
    }

    /// The error `topic`'s records are refused with, if it is poisoned.
    pub fn poisoned(&mut self, topic: &str) -> Option<KafkaErrorCode> {
        let &(code, until) = self.poisoned.get(topic)?;
        if Instant::now() < until {
            Some(code)
        } else {
            self.poisoned.remove(topic);
            None
        }
    }

    /// A ring was retired: delete its position in the next commit.
    pub fn retired(&mut self, ring_id: u64) {
        self.eos.progress.retired(ring_id);
        self.retired.push(ring_id);
    }

    /// The producer was replaced: initialise the new one, and read the
    /// positions back (the old one's last commit may have taken effect).
    pub fn producer_replaced(&mut self) {
        self.initialised = false;
        self.producer_fenced_others = false;
        self.resync = true;
        self.progress_topic = None;
        self.forget_open();
    }

    /// Forgets the open transaction (aborted, or its producer is gone).
    fn forget_open(&mut self) {
        self.open = false;
        self.doomed = None;
        self.failing_record_known = false;
        self.first_record_at = None;
        self.first_record = None;
        self.records = 0;
        self.bytes = 0;
        self.acked.clear();
    }

    fn due(&self, now: Instant, force: bool) -> bool {
        let age = self
            .first_record_at
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        force
            || self.room() == 0
            || age >= self.eos.settings.commit_interval
            || (self.records == 0 && !self.retired.is_empty())
    }
}

impl DrainThread {
    /// Exactly-once: opens a transaction if none is, before records are
    /// produced. Returns whether records may be produced: not once the open
    /// one is due (it commits first).
    pub(super) fn begin_transaction_if_needed(&mut self) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        if txn.room() == 0 {
            return false;
        }
        if txn.open {
            return !txn.due(Instant::now(), false);
        }
        match self.producer.begin_transaction() {
            Ok(()) => {
                txn.open = true;
                true
            }
            Err(e) => {
                error!(error = %e, "exactly-once: cannot begin a transaction");
                self.note_fenced(&e);
                self.recovery.request(cause_of(&e), Instant::now());
                false
            }
        }
    }

    /// Exactly-once: commits the open transaction if it is due (or
    /// `force`), writing the position of every ring it carried records of.
    pub(super) fn commit_if_due(&mut self, force: bool) {
        let Some(txn) = self.txn.as_ref() else {
            return;
        };
        // A ring keeps every record of the open transaction until the
        // commit: one that can take few more would stall its client until
        // the interval ends.
        let ring_nearly_full = self
            .rings
            .iter()
            .flatten()
            .any(|r| r.in_transaction && r.in_flight + r.uncommitted >= MAX_IN_FLIGHT / 4 * 3);
        if !txn.open
            || txn.doomed.is_some()
            || !self.recovery.is_producing()
            || (txn.records == 0 && txn.retired.is_empty())
            || !txn.due(Instant::now(), force || ring_nearly_full)
        {
            return;
        }
        let Some(positions) = self.positions_to_write() else {
            return;
        };
        if !self.produce_positions(&positions) {
            return;
        }
        if self.run_commit() {
            // The flush inside the commit collected the last
            // acknowledgements.
            self.serve_reports(Duration::ZERO);
            self.apply_commit(&positions);
        }
    }

    /// The positions (and deletions) the commit writes; `None` while a
    /// ring has more failed records waiting for the spool than a position
    /// can list as exceptions.
    fn positions_to_write(&self) -> Option<Vec<WrittenPosition>> {
        let txn = self.txn.as_ref()?;
        let mut positions = Vec::new();
        // Deletions first: a ring retired and registered again writes its
        // new position after the deletion of the old one.
        for &ring_id in &txn.retired {
            if !txn.eos.progress.is_live(ring_id) {
                positions.push(WrittenPosition {
                    ring_id,
                    committed: None,
                });
            }
        }
        for (slot, ring) in self.rings.iter().enumerate() {
            let Some(ring) = ring.as_ref().filter(|r| r.in_transaction) else {
                continue;
            };
            // Failed records not yet on disk are not finished: the position
            // passes them only as exceptions, which a later daemon produces
            // (and fails) again.
            let unfinished = if ring.awaiting_spool > 0 {
                self.dead_letters.pending_in(slot)
            } else {
                Vec::new()
            };
            if unfinished.len() > MAX_UNFINISHED {
                return None;
            }
            positions.push(WrittenPosition {
                ring_id: ring.client.ring_id,
                committed: Some(Committed {
                    position: ring.consumer.drain_pos(),
                    unfinished,
                }),
            });
        }
        Some(positions)
    }

    /// Adds the position records to the open transaction. Returns false
    /// (and dooms the transaction) if one could not be produced.
    fn produce_positions(&mut self, positions: &[WrittenPosition]) -> bool {
        let Some(topic) = self.txn.as_ref().and_then(|t| t.progress_topic.clone()) else {
            return false;
        };
        let daemon_id = self
            .txn
            .as_ref()
            .expect("exactly-once")
            .eos
            .settings
            .daemon_id
            .clone();
        for written in positions {
            let key = progress::ring_key(&daemon_id, written.ring_id);
            let value = written.committed.as_ref().map(|c| {
                let client = self
                    .rings
                    .iter()
                    .flatten()
                    .find(|r| r.client.ring_id == written.ring_id)
                    .map(|r| r.client.name.clone())
                    .unwrap_or_default();
                serde_json::to_vec(&RingPosition {
                    position: c.position,
                    unfinished: c.unfinished.clone(),
                    client,
                })
                .expect("a position serialises")
            });
            let message = OutgoingMessage {
                key: Some(key.as_bytes()),
                value: value.as_deref(),
                opaque: Opaque::progress().encode(),
                ..Default::default()
            };
            // librdkafka's queue may be full of the transaction's records:
            // serve reports (which frees it) until the position fits.
            let deadline = Instant::now() + self.options.shutdown_timeout.max(CALL_TIMEOUT);
            loop {
                match self.producer.produce_copied(&topic, &message) {
                    Ok(()) => break,
                    Err(ProduceError::QueueFull { .. }) if Instant::now() < deadline => {
                        self.serve_reports(super::INFLIGHT_POLL);
                        self.stats.heartbeat.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        error!(error = %e, topic = %topic.name(),
                            "exactly-once: cannot produce a position; the transaction is aborted");
                        let txn = self.txn.as_mut().expect("exactly-once");
                        txn.doom(e.code());
                        self.recovery
                            .request(Cause::Retriable(e.code()), Instant::now());
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Commits, resuming the call while it times out, for at most the
    /// transaction's timeout and a grace (then the producer is replaced).
    /// Returns whether the transaction committed.
    fn run_commit(&mut self) -> bool {
        let txn = self.txn.as_ref().expect("exactly-once");
        let records = txn.records;
        let patience = txn.eos.settings.transaction_timeout + COMMIT_GRACE;
        // A graceful stop gives the commit its shutdown budget.
        let budget_at_stop = self.options.shutdown_timeout;
        let mut stopping = self.stopping.load(Ordering::Acquire);
        let mut give_up_at = Instant::now() + if stopping { budget_at_stop } else { patience };
        let mut resumed = 0u32;
        loop {
            let error = match self.producer.commit_transaction(Some(CALL_TIMEOUT)) {
                Ok(()) => return true,
                Err(e) => e,
            };
            if !stopping && self.stopping.load(Ordering::Acquire) {
                stopping = true;
                give_up_at = give_up_at.min(Instant::now() + budget_at_stop);
            }
            if error.kind == TxnErrorKind::Retriable && Instant::now() < give_up_at {
                // Resumed by the next call; keep the watchdog fed.
                self.stats.heartbeat.fetch_add(1, Ordering::Relaxed);
                if resumed == 0 {
                    warn!(error = %error, records,
                        "exactly-once: commit not finished yet; resuming it");
                }
                resumed += 1;
                continue;
            }
            // A commit given up on is settled by replacing the producer:
            // the new one's fencing completes or aborts it, and the
            // positions are read back.
            let cause = match error.kind {
                TxnErrorKind::Retriable | TxnErrorKind::Fatal => Cause::Fatal(error.code),
                TxnErrorKind::Abortable => Cause::Retriable(error.code),
            };
            warn!(error = %error, records,
                "exactly-once: commit failed; the transaction's records are produced again unless it took effect");
            self.note_fenced(&error);
            self.txn.as_mut().expect("exactly-once").doom(error.code);
            self.recovery.request(cause, Instant::now());
            return false;
        }
    }

    /// The commit succeeded: mark what it carried, publish, release.
    fn apply_commit(&mut self, positions: &[WrittenPosition]) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let mut delivered = 0;
        for acked in txn.acked.drain(..) {
            let Some(ring) = self.rings.get_mut(acked.slot).and_then(Option::as_mut) else {
                continue;
            };
            ring.consumer.mark(acked.pos, &acked.outcome);
            ring.finished(acked.pos);
            ring.acked_unpublished += 1;
            delivered += 1;
            self.latency_batch.observe_us(acked.latency_us);
        }
        for written in positions {
            if let Some(committed) = &written.committed {
                txn.eos.progress.record(written.ring_id, committed.clone());
            }
        }
        for ring in self.rings.iter_mut().flatten() {
            ring.uncommitted = 0;
            ring.in_transaction = false;
        }
        txn.retired.clear();
        if txn.search_limit.is_some() {
            txn.search_commits += 1;
            if txn.search_commits >= SEARCH_GIVES_UP_AFTER {
                txn.search_limit = None;
            }
        }
        txn.forget_open();
        if delivered > 0 {
            self.recovery.delivered();
        }
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.stats
            .transactions_committed
            .fetch_add(1, Ordering::Relaxed);
        self.stats.latency.absorb(&mut self.latency_batch);
        self.publish_and_release();
    }

    /// Exactly-once: aborts the open transaction (librdkafka purges what it
    /// had outstanding, whose reports are served here) and forgets its
    /// acknowledgements; its records are unmarked and will be produced
    /// again. Fails (with the abort's error) if the producer must be
    /// replaced.
    pub(super) fn abort_open_transaction(
        &mut self,
        timeout: Duration,
    ) -> Result<(), KafkaErrorCode> {
        let Some(txn) = self.txn.as_mut() else {
            return Ok(());
        };
        if !txn.open {
            return Ok(());
        }
        txn.aborting = true;
        let deadline = Instant::now() + timeout;
        let result = loop {
            match self.producer.abort_transaction(Some(CALL_TIMEOUT)) {
                Err(e) if e.kind == TxnErrorKind::Retriable && Instant::now() < deadline => {
                    self.stats.heartbeat.fetch_add(1, Ordering::Relaxed);
                }
                other => break other,
            }
        };
        self.serve_reports(Duration::ZERO);
        // Why librdkafka failed the transaction, if it did: the reports of
        // the records it purged do not say.
        let librdkafka_cause = self.producer.take_txn_error();
        let txn = self.txn.as_mut().expect("exactly-once");
        txn.aborting = false;
        let cause = if txn.failing_record_known {
            None
        } else {
            librdkafka_cause.or(txn.doomed)
        };
        let (records, first) = (txn.records, txn.first_record);
        txn.forget_open();
        for ring in self.rings.iter_mut().flatten() {
            ring.uncommitted = 0;
            ring.in_transaction = false;
        }
        self.stats
            .transactions_aborted
            .fetch_add(1, Ordering::Relaxed);
        if let Some(code) = cause.filter(|c| c.class() == ErrorClass::Permanent) {
            self.search_for_failing_record(code, records, first);
        }
        result.map_err(|e| {
            warn!(error = %e, "exactly-once: abort failed; replacing the producer");
            self.note_fenced(&e);
            e.code
        })
    }

    /// A transaction of `records` (the first at `first`) failed with a
    /// permanent error: halve the next transactions until one of a single
    /// record fails; that one is spooled, and its topic poisoned.
    fn search_for_failing_record(
        &mut self,
        code: KafkaErrorCode,
        records: usize,
        first: Option<(usize, u64)>,
    ) {
        let txn = self.txn.as_mut().expect("exactly-once");
        txn.search_commits = 0;
        if records > 1 {
            let limit = (records / 2).max(1);
            txn.search_limit = Some(limit);
            warn!(error = %code.name(), records, next = limit,
                "exactly-once: a transaction failed permanently; looking for the record that fails it");
            return;
        }
        txn.search_limit = None;
        let Some((slot, pos)) = first else { return };
        let Some(ring) = self.rings.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let topic = ring.consumer.in_flight_view(pos).and_then(|view| {
            ring.topics
                .get(view.topic_id())
                .map(|t| t.name().to_owned())
        });
        let Some(topic) = topic else { return };
        error!(topic = %topic, error = %code.name(), poisoned_s = POISONED_FOR.as_secs(),
            "exactly-once: the topic's records fail every transaction; they go to the spool");
        txn.poisoned.insert(
            Arc::from(topic.as_str()),
            (code, Instant::now() + POISONED_FOR),
        );
        ring.awaiting_spool += 1;
        self.dead_letters.defer(PendingFailure::now(
            slot,
            pos,
            code,
            Persistence::NotPersisted,
        ));
    }

    /// Exactly-once, at the end of a graceful stop: abort what could not be
    /// committed, so `read_committed` consumers are not held up by it; the
    /// records stay in the rings for the next start.
    pub(super) fn abort_at_stop(&mut self) {
        if self.txn.as_ref().is_some_and(|t| t.open) {
            let _ = self.abort_open_transaction(ABORT_AT_STOP);
        }
    }

    /// Stops producing for good if `error` says another producer with our
    /// transactional id took over: two daemons with one daemon id would
    /// fence each other in turn, each sending the other's records again.
    pub(super) fn note_fenced(&mut self, error: &TxnError) {
        let fenced = matches!(error.code.name().as_ref(), "PRODUCER_FENCED" | "_FENCED");
        if let Some(txn) = self.txn.as_mut().filter(|_| fenced) {
            if !txn.fenced {
                error!(error = %error, transactional_id = %txn.eos.settings.transactional_id(self.options.index),
                    "exactly-once: another daemon with the same exactly_once.daemon_id took over this \
                     drain thread's transactions; it produces nothing until restarted (give every \
                     daemon its own daemon_id)");
            }
            txn.fenced = true;
        }
    }
}

impl Opaque {
    /// The opaque of a progress record.
    pub(super) fn progress() -> Self {
        Self::new(PROGRESS_SLOT, 0, 1)
    }
}

/// The recovery a failed transactional call asks for.
pub(super) fn cause_of(error: &TxnError) -> Cause {
    match error.kind {
        TxnErrorKind::Fatal => Cause::Fatal(error.code),
        TxnErrorKind::Retriable | TxnErrorKind::Abortable => Cause::Retriable(error.code),
    }
}
