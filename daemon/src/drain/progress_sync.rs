//! Exactly-once: bringing a drain thread and its rings in line with the
//! committed positions. A producer initialises its transactions once the
//! start-up fenced the previous daemon (and a replacement producer reads
//! the positions back first, on a helper thread, since its predecessor's
//! last commit may or may not have taken effect); a ring marks the records
//! a committed transaction carried before it is drained.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::recovery::Cause;
use super::transaction::CALL_TIMEOUT;
use super::DrainThread;
use crate::exactly_once::progress::{self, Isolation, Loaded};
use crate::kafka::TxnErrorKind;

/// Longest read of the progress topic after a producer replacement.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait before trying `init_transactions` or a failed read again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A read of the progress topic under way on a helper thread.
pub(super) type ResyncRead = Receiver<Result<Loaded, String>>;

impl DrainThread {
    /// Exactly-once: whether the producer may produce now. Initialises
    /// transactions once the start-up fenced the previous daemon, and after
    /// a producer replacement reads the positions back first.
    pub(super) fn transactions_ready(&mut self) -> bool {
        let index = self.options.index;
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        if txn.initialised {
            return true;
        }
        let now = Instant::now();
        if txn.fenced || !txn.eos.progress.is_ready() || txn.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        if !txn.producer_fenced_others {
            if let Err(e) = self.producer.init_transactions(CALL_TIMEOUT) {
                txn.retry_at = Some(now + RETRY_AFTER);
                if e.kind != TxnErrorKind::Retriable {
                    error!(error = %e, transactional_id = %txn.eos.settings.transactional_id(index),
                        "exactly-once: cannot initialise transactions; replacing the producer");
                    self.note_fenced(&e);
                    self.recovery.request(Cause::Fatal(e.code), now);
                }
                return false;
            }
            txn.producer_fenced_others = true;
        }
        let txn = self.txn.as_mut().expect("exactly-once");
        if txn.resync {
            // Fenced now: what the progress topic holds committed is final.
            let read = txn.resync_read.get_or_insert_with(|| {
                let settings = txn.eos.settings.clone();
                let (tx, rx) = mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("shmkafkad-eos-resync".into())
                    .spawn(move || {
                        let result =
                            progress::read(&settings, Isolation::ReadCommitted, RESYNC_TIMEOUT)
                                .map_err(|e| e.to_string());
                        let _ = tx.send(result);
                    });
                if let Err(e) = spawned {
                    error!(error = %e, "exactly-once: cannot start reading the positions back");
                }
                rx
            });
            match read.try_recv() {
                Ok(Ok(loaded)) => {
                    for ring in self.rings.iter_mut().flatten() {
                        if let Some(committed) = loaded.positions.get(&ring.client.ring_id) {
                            txn.eos
                                .progress
                                .record(ring.client.ring_id, committed.clone());
                        }
                        ring.progress_checked = false;
                    }
                    txn.resync = false;
                    txn.resync_read = None;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "exactly-once: reading the positions back after a producer replacement failed; retrying");
                    txn.resync_read = None;
                    txn.retry_at = Some(now + RETRY_AFTER);
                    return false;
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    txn.resync_read = None;
                    txn.retry_at = Some(now + RETRY_AFTER);
                    return false;
                }
            }
        }
        match self.producer.topic(&txn.eos.settings.progress_topic) {
            Ok(topic) => txn.progress_topic = Some(std::sync::Arc::new(topic)),
            Err(e) => {
                error!(error = %e, "exactly-once: no handle for the progress topic; retrying");
                txn.retry_at = Some(now + RETRY_AFTER);
                return false;
            }
        }
        txn.initialised = true;
        txn.retry_at = None;
        info!(drain = index, transactional_id = %txn.eos.settings.transactional_id(index),
            "exactly-once: transactions initialised");
        true
    }

    /// Exactly-once: looks the ring in `slot` up in the committed positions
    /// on its first drain (and again after a resync), and marks the records
    /// a committed transaction carried. Returns whether the ring may be
    /// drained now.
    pub(super) fn ring_caught_up(&mut self, slot: usize) -> bool {
        let Some(txn) = self.txn.as_ref() else {
            return true;
        };
        let Some(ring) = self.rings[slot].as_mut() else {
            return false;
        };
        if !ring.progress_checked {
            if !txn.eos.progress.is_ready() {
                return false;
            }
            ring.progress_checked = true;
            let released = ring.consumer.released_pos();
            ring.catch_up_to = txn
                .eos
                .progress
                .committed(ring.client.ring_id)
                .filter(|c| c.position > released);
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

    /// Exactly-once, at a graceful stop, before the rings of gone clients
    /// are spooled: marks what committed transactions carried (so it is
    /// not spooled as undelivered). Returns false if the positions are not
    /// known (the start-up did not finish): then whatever is spooled may
    /// have been delivered.
    pub(super) fn catch_up_before_spooling(&mut self, slot: usize) -> bool {
        if self.txn.is_none() {
            return true;
        }
        self.ring_caught_up(slot);
        self.rings[slot]
            .as_ref()
            .is_some_and(|r| r.progress_checked && r.catch_up_to.is_none())
    }
}
