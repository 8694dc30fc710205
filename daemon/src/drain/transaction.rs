//! Exactly-once: the drain thread's transactions (see `crate::exactly_once`
//! for the protocol).
//!
//! A transaction opens with the first record the thread produces, carries
//! the records of any of its rings, and commits once it is
//! `commit_interval` old or holds `commit_max_records`. Acknowledgements are
//! collected, not marked: a record is marked (its report published, its
//! space released) only after the commit that carries it and its ring's new
//! position succeeded. A failure of any kind dooms the open transaction;
//! recovery aborts it and the rings produce its records again in a new one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkafka_ringbuf::Outcome;
use tracing::{error, info, warn};

use super::opaque::{Opaque, PROGRESS_SLOT};
use super::recovery::Cause;
use super::DrainThread;
use crate::exactly_once::progress::{self, Isolation, RingPosition};
use crate::exactly_once::ExactlyOnce;
use crate::kafka::{OutgoingMessage, Topic, TxnError, TxnErrorKind};

/// Bound of one transactional call; a call that times out is resumed (as
/// librdkafka allows) after the drain thread's heartbeat moved, so a long
/// outage does not look like a wedged thread.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound of reading the progress topic on the drain thread (after a
/// producer replacement); a read that takes longer is tried again.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(4);
/// Wait before trying `init_transactions` or a resync again.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Most a graceful stop spends aborting a transaction it could not commit.
const ABORT_AT_STOP: Duration = Duration::from_secs(5);

/// An acknowledgement waiting for its transaction's commit.
struct Acked {
    slot: usize,
    pos: u64,
    outcome: Outcome,
    latency_us: i64,
}

/// A drain thread's transactional state.
pub(super) struct Transactions {
    eos: Arc<ExactlyOnce>,
    /// `init_transactions` succeeded on the current producer.
    initialised: bool,
    /// The current producer replaced one whose last commit may or may not
    /// have taken effect: read the positions back before producing.
    resync: bool,
    retry_at: Option<Instant>,
    /// The progress topic's handle on the current producer.
    progress_topic: Option<Arc<Topic>>,
    open: bool,
    /// When the open transaction got its first record.
    first_record_at: Option<Instant>,
    records: usize,
    acked: Vec<Acked>,
    /// The open transaction cannot commit: recovery aborts it.
    doomed: bool,
    /// Reports arriving now answer our abort.
    aborting: bool,
    /// Identities of rings retired since the last commit, whose positions
    /// the next transaction deletes.
    retired: Vec<u64>,
}

impl Transactions {
    pub fn new(eos: Arc<ExactlyOnce>) -> Self {
        Self {
            eos,
            initialised: false,
            resync: false,
            retry_at: None,
            progress_topic: None,
            open: false,
            first_record_at: None,
            records: 0,
            acked: Vec::new(),
            doomed: false,
            aborting: false,
            retired: Vec::new(),
        }
    }

    /// Whether records may be added to a transaction now.
    pub fn accepts_records(&self) -> bool {
        self.initialised && !self.doomed && self.records < self.eos.settings.commit_max_records
    }

    /// Records the open transaction may still take.
    pub fn room(&self) -> usize {
        if self.accepts_records() {
            self.eos.settings.commit_max_records - self.records
        } else {
            0
        }
    }

    /// Whether the producer's transactions are initialised.
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Whether the reports arriving now answer our own abort.
    pub fn is_aborting(&self) -> bool {
        self.aborting
    }

    /// Counts records added to the open transaction.
    pub fn added(&mut self, records: usize) {
        if records > 0 {
            self.first_record_at.get_or_insert_with(Instant::now);
            self.records += records;
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

    /// Something failed: the open transaction must be aborted.
    pub fn doom(&mut self) {
        if self.open {
            self.doomed = true;
        }
    }

    /// A ring was retired: delete its position in the next commit.
    pub fn retired(&mut self, ring_id: u64) {
        self.eos.progress.forget(ring_id);
        self.retired.push(ring_id);
    }

    /// The producer was replaced: initialise the new one, and read the
    /// positions back (the old one's last commit may have taken effect).
    pub fn producer_replaced(&mut self) {
        self.initialised = false;
        self.resync = true;
        self.progress_topic = None;
        self.forget_open();
    }

    /// Forgets the open transaction (aborted, or its producer is gone).
    fn forget_open(&mut self) {
        self.open = false;
        self.doomed = false;
        self.first_record_at = None;
        self.records = 0;
        self.acked.clear();
    }

    fn due(&self, now: Instant, force: bool) -> bool {
        let age = self
            .first_record_at
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        force
            || self.records >= self.eos.settings.commit_max_records
            || age >= self.eos.settings.commit_interval
            || (self.records == 0 && !self.retired.is_empty())
    }
}

impl DrainThread {
    /// Exactly-once: whether the producer may produce now. Initialises
    /// transactions once the start-up fenced the previous daemon (and again
    /// after a producer replacement, reading the positions back first).
    pub(super) fn transactions_ready(&mut self) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        if txn.initialised {
            return true;
        }
        let now = Instant::now();
        if !txn.eos.progress.is_ready() || txn.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        match self.producer.init_transactions(CALL_TIMEOUT) {
            Ok(()) => {}
            Err(e) => {
                txn.retry_at = Some(now + RETRY_AFTER);
                match e.kind {
                    TxnErrorKind::Retriable => {}
                    _ => {
                        error!(error = %e, transactional_id = %txn.eos.settings.transactional_id(self.options.index),
                            "exactly-once: cannot initialise transactions (another daemon with the same \
                             exactly_once.daemon_id fences this one if the error says fenced); retrying");
                        self.recovery.request(Cause::Fatal(e.code), now);
                    }
                }
                return false;
            }
        }
        if txn.resync {
            match progress::read(&txn.eos.settings, Isolation::ReadCommitted, RESYNC_TIMEOUT) {
                Ok(loaded) => {
                    for ring in self.rings.iter_mut().flatten() {
                        if let Some(&position) = loaded.positions.get(&ring.client.ring_id) {
                            txn.eos.progress.record(ring.client.ring_id, position);
                        }
                        ring.progress_checked = false;
                    }
                    txn.resync = false;
                }
                Err(e) => {
                    warn!(error = %e, "exactly-once: reading positions back after a producer replacement failed; retrying");
                    txn.retry_at = Some(now + RETRY_AFTER);
                    return false;
                }
            }
        }
        match self.producer.topic(&txn.eos.settings.progress_topic) {
            Ok(topic) => txn.progress_topic = Some(Arc::new(topic)),
            Err(e) => {
                error!(error = %e, "exactly-once: no handle for the progress topic; retrying");
                txn.retry_at = Some(now + RETRY_AFTER);
                return false;
            }
        }
        txn.initialised = true;
        txn.retry_at = None;
        info!(drain = self.options.index, transactional_id = %txn.eos.settings.transactional_id(self.options.index),
            "exactly-once: transactions initialised");
        true
    }

    /// Exactly-once: opens a transaction if none is, before records are
    /// produced. Returns whether records may be produced.
    pub(super) fn begin_transaction_if_needed(&mut self) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        if !txn.accepts_records() {
            return false;
        }
        if txn.open {
            return true;
        }
        match self.producer.begin_transaction() {
            Ok(()) => {
                txn.open = true;
                true
            }
            Err(e) => {
                error!(error = %e, "exactly-once: cannot begin a transaction");
                self.recovery.request(cause_of(&e), Instant::now());
                false
            }
        }
    }

    /// Exactly-once: the ring in `slot` is looked up in the committed
    /// positions on its first drain (and again after a resync), and the
    /// records a committed transaction carried are marked. Returns whether
    /// the ring may be drained now.
    pub(super) fn ring_caught_up(&mut self, slot: usize) -> bool {
        let Some(txn) = self.txn.as_ref() else {
            return true;
        };
        let Some(ring) = self.rings[slot].as_mut() else {
            return false;
        };
        if !ring.progress_checked {
            ring.progress_checked = true;
            let released = ring.consumer.released_pos();
            ring.catch_up_to = txn
                .eos
                .progress
                .committed(ring.client.ring_id)
                .filter(|&position| position > released);
        }
        if ring.catch_up_to.is_none() {
            return true;
        }
        if ring.in_flight > 0 || ring.awaiting_spool > 0 {
            return false;
        }
        if ring.rewind_pending || ring.consumer.pending() > 0 {
            // Only a consumer fresh from the release cursor can mark from
            // there.
            if let Err(e) = ring.rewind() {
                ring.quarantine(e, "rewinding to mark committed records");
                return false;
            }
        }
        match ring.catch_up() {
            Some(marked) => {
                if marked > 0 {
                    info!(client = ring.client.id, name = %ring.client.name, records = marked,
                        "exactly-once: records a committed transaction carried are marked delivered, not sent again");
                }
                self.stats
                    .recovered_from_progress
                    .fetch_add(marked as u64, Ordering::Relaxed);
                ring.client
                    .counters
                    .delivered
                    .fetch_add(marked as u64, Ordering::Relaxed);
                ring.catch_up_to.is_none() && ring.quarantined.is_none()
            }
            None => false,
        }
    }

    /// Exactly-once: commits the open transaction if it is due (or
    /// `force`), writing the position of every ring it carried records of.
    pub(super) fn commit_if_due(&mut self, force: bool) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let now = Instant::now();
        if !txn.open
            || txn.doomed
            || !self.recovery.is_producing()
            || (txn.records == 0 && txn.retired.is_empty())
            || !txn.due(now, force)
        {
            return;
        }
        if self.rings.iter().flatten().any(|r| r.awaiting_spool > 0) {
            // A failed record is finished only once the spool has it; a
            // position past it must not commit before (the next daemon would
            // take it as delivered). The spool is retried by every poll.
            return;
        }
        let Some(topic) = txn.progress_topic.clone() else {
            return;
        };
        let daemon_id = txn.eos.settings.daemon_id.clone();
        let mut positions = Vec::new();
        for ring in self.rings.iter().flatten().filter(|r| r.in_transaction) {
            let position = ring.consumer.drain_pos();
            let key = progress::ring_key(&daemon_id, ring.client.ring_id);
            let value = serde_json::to_vec(&RingPosition {
                position,
                client: ring.client.name.clone(),
            })
            .expect("a position serialises");
            positions.push((ring.client.ring_id, position, key, Some(value)));
        }
        for &ring_id in &txn.retired {
            positions.push((ring_id, 0, progress::ring_key(&daemon_id, ring_id), None));
        }
        for (_, _, key, value) in &positions {
            let message = OutgoingMessage {
                key: Some(key.as_bytes()),
                value: value.as_deref(),
                opaque: Opaque::progress().encode(),
                ..Default::default()
            };
            if let Err(e) = self.producer.produce_copied(&topic, &message) {
                error!(error = %e, topic = %topic.name(), "exactly-once: cannot produce a position; the transaction is aborted");
                txn.doom();
                self.recovery.request(Cause::Retriable(e.code()), now);
                return;
            }
        }
        let mut resumed = 0u32;
        let committed = loop {
            match self.producer.commit_transaction(Some(CALL_TIMEOUT)) {
                Ok(()) => break true,
                Err(e) if e.kind == TxnErrorKind::Retriable => {
                    // Resumed by the next call; keep the watchdog fed. The
                    // transaction's timeout ends this loop at the latest.
                    self.stats.heartbeat.fetch_add(1, Ordering::Relaxed);
                    if resumed == 0 {
                        warn!(error = %e, records = txn.records,
                            "exactly-once: commit not finished yet; resuming it until it is, or the transaction times out");
                    }
                    resumed += 1;
                }
                Err(e) => {
                    warn!(error = %e, records = txn.records,
                        "exactly-once: commit failed; the transaction's records are produced again");
                    txn.doom();
                    self.recovery.request(cause_of(&e), Instant::now());
                    break false;
                }
            }
        };
        if !committed {
            return;
        }
        // The flush inside the commit collected the last acknowledgements.
        self.serve_reports(Duration::ZERO);
        self.apply_commit(&positions);
    }

    /// The commit succeeded: mark what it carried, publish, release.
    fn apply_commit(&mut self, positions: &[(u64, u64, String, Option<Vec<u8>>)]) {
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
        for (ring_id, position, _, value) in positions {
            if value.is_some() {
                txn.eos.progress.record(*ring_id, *position);
            }
        }
        for ring in self.rings.iter_mut().flatten() {
            ring.uncommitted = 0;
            ring.in_transaction = false;
        }
        txn.retired.clear();
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

    /// Exactly-once: aborts the open transaction (recovery, with nothing of
    /// ours in flight) and forgets its acknowledgements; its records are
    /// unmarked and will be produced again. Returns false if the abort
    /// failed and the producer must be replaced.
    pub(super) fn abort_open_transaction(&mut self, timeout: Duration) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        if !txn.open {
            return true;
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
        // The purge's reports (none of ours should be left in flight).
        self.serve_reports(Duration::ZERO);
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        txn.aborting = false;
        txn.forget_open();
        for ring in self.rings.iter_mut().flatten() {
            ring.uncommitted = 0;
            ring.in_transaction = false;
        }
        self.stats
            .transactions_aborted
            .fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "exactly-once: abort failed; replacing the producer");
                false
            }
        }
    }

    /// Exactly-once, at the end of a graceful stop: abort what could not be
    /// committed, so `read_committed` consumers are not held up by it; the
    /// records stay in the rings for the next start.
    pub(super) fn abort_at_stop(&mut self) {
        if self.txn.as_ref().is_some_and(|t| t.open) {
            self.abort_open_transaction(ABORT_AT_STOP);
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
fn cause_of(error: &TxnError) -> Cause {
    match error.kind {
        TxnErrorKind::Fatal => Cause::Fatal(error.code),
        TxnErrorKind::Retriable | TxnErrorKind::Abortable => Cause::Retriable(error.code),
    }
}
