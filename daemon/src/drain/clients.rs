//! Client lifecycle on a drain thread: rings arrive from the control
//! server, are retired once their client is gone and everything it
//! committed is finished, and at a graceful stop are drained, or spooled if
//! their client is gone.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::opaque::MAX_RING_SLOTS;
use super::ring::Ring;
use super::{DrainThread, INFLIGHT_POLL};
use crate::kafka::PurgeScope;

impl DrainThread {
    /// Takes the rings the control server assigned to this thread.
    pub(super) fn accept_new_clients(&mut self) {
        while let Ok(client) = self.inbox.try_recv() {
            let consumer = match client.segment.consumer() {
                Ok(c) => c,
                Err(e) => {
                    warn!(client = client.id, error = %e, "ring cursors corrupted; client not drained");
                    self.registry.remove(client.id);
                    continue;
                }
            };
            // Failures a previous daemon held died with it (the spool has
            // them): say so, or the client's flush would wait for them.
            consumer.set_failures_held(0);
            if let Some(txn) = self.txn.as_ref() {
                txn.eos.progress.arrived(client.ring_id);
            }
            let ring = Ring::new(client, consumer);
            match self.rings.iter().position(Option::is_none) {
                Some(i) => self.rings[i] = Some(ring),
                None if self.rings.len() < MAX_RING_SLOTS => self.rings.push(Some(ring)),
                None => {
                    error!(
                        client = ring.client.id,
                        rings = MAX_RING_SLOTS,
                        "drain thread is full; client not drained"
                    );
                    self.registry.remove(ring.client.id);
                }
            }
        }
    }

    /// Drops rings whose client is gone and whose records are all finished.
    pub(super) fn retire_finished_clients(&mut self) {
        if self.recovery.is_draining() {
            // Records whose attempt failed are unmarked and not yet
            // rewound: no ring counts as finished until they are.
            return;
        }
        for slot in self.rings.iter_mut() {
            let Some(ring) = slot.as_mut() else { continue };
            if !ring.client.is_disconnected() {
                continue;
            }
            if ring.client.process_exited() {
                // Nobody reads its reports or failures any more. (A live
                // process that lost its connection registers the same ring
                // again and reads on.)
                ring.consumer.report_reader_gone();
                ring.report_held_failures();
            }
            if ring.has_unfinished_work() {
                continue;
            }
            let (tail, _) = ring.client.segment.cursors();
            if ring.consumer.drain_pos() < tail && ring.quarantined.is_none() {
                // Something is still claimed. Once the process is gone, a
                // claim it never committed is a hole we may pad over.
                if ring.client.process_exited() {
                    match ring.consumer.unblock() {
                        Ok(true) => info!(
                            client = ring.client.id,
                            "padded over a record the dead client never committed"
                        ),
                        Ok(false) => {}
                        // Without this a client that corrupted its cursors
                        // (e.g. tail laps beyond capacity) was quarantined
                        // silently (found by fault_hostile).
                        Err(e) => ring.quarantine(e.to_string(), "no hole to pad after its exit"),
                    }
                }
                continue;
            }
            info!(client = ring.client.id, name = %ring.client.name,
                delivered = ring.client.counters.delivered.load(Ordering::Relaxed),
                "client gone and its ring drained; segment released");
            if let Some(txn) = self.txn.as_mut() {
                txn.retired(ring.client.ring_id);
            }
            self.registry.remove(ring.client.id);
            *slot = None;
        }
    }

    /// Graceful stop: deliver what was committed before the stop, within the
    /// budget; whatever is left stays unreleased in the rings of live
    /// clients, and goes to the spool for gone ones.
    pub(super) fn shut_down(mut self) {
        let deadline = Instant::now() + self.options.shutdown_timeout;
        for ring in self.rings.iter_mut().flatten() {
            ring.stop_at = Some(ring.client.segment.cursors().0);
        }
        loop {
            self.accept_new_clients();
            self.step_recovery();
            let produced = self.drain_rings();
            self.serve_reports(INFLIGHT_POLL);
            self.commit_if_due(true);
            let pending = self.recovery.is_draining()
                || self.rings.iter().flatten().any(|r| {
                    r.quarantined.is_none()
                        && (r.has_unfinished_work()
                            || r.stop_at.is_some_and(|stop| r.consumer.drain_pos() < stop))
                });
            let held = !self.dead_letters.is_empty();
            if (!pending && produced == 0 && !held) || Instant::now() >= deadline {
                break;
            }
        }
        self.abort_at_stop();
        let left = self.in_flight();
        if left > 0 {
            warn!(records = left, "shutdown budget spent; unacknowledged records stay in the rings for the next start");
            self.shutdown_purged = true;
            let _ = self.producer.purge(PurgeScope::QueuedAndInFlight);
            self.serve_reports(Duration::from_millis(100));
        }
        self.spool_gone_clients();
        info!(drain = self.options.index, "drain thread stopped");
        // Producer and topic handles go first (field order), then the rings.
    }

    /// Shutdown: the ring of a client that is gone dies with this process,
    /// so what it holds undelivered goes to the spool, each record marked
    /// with what its attempts may have left at the broker. Live clients
    /// keep theirs in the ring for the next daemon.
    fn spool_gone_clients(&mut self) {
        if !self.dead_letters.is_empty() {
            // Held failures of gone clients are rewritten below with the
            // rest; those of live clients stay in their rings.
            warn!(records = self.dead_letters.len(), "dead-letter spool still unwritable at shutdown; failed records stay in the rings of live clients");
        }
        for slot in 0..self.rings.len() {
            let gone = self.rings[slot]
                .as_ref()
                .is_some_and(|r| r.client.is_disconnected() && r.quarantined.is_none());
            if !gone {
                continue;
            }
            // Exactly-once: what committed transactions carried is marked
            // first; if that is unknown, anything may have been delivered.
            let positions_known = self.catch_up_before_spooling(slot);
            let Some(ring) = self.rings[slot].as_mut() else {
                continue;
            };
            // A fresh consumer starts at the release cursor, so it yields
            // the records that were in flight (purged) as well as those
            // never handed to librdkafka; finished ones are stepped over.
            let handed_before = if positions_known {
                ring.consumer.drain_pos().max(ring.reproduce_before)
            } else {
                u64::MAX
            };
            let (spooled, complete) = match ring.client.segment.consumer() {
                Ok(mut consumer) => {
                    // Nobody reads its reports: what is spooled is released.
                    consumer.report_reader_gone();
                    let outcome =
                        self.dead_letters
                            .spool_abandoned(&mut consumer, &ring.client, |seq| {
                                ring.persistence(seq, None, handed_before)
                            });
                    ring.consumer = consumer;
                    outcome
                }
                Err(e) => {
                    error!(client = ring.client.id, error = %e, "ring cursors corrupted; undelivered records of a gone client are lost");
                    continue;
                }
            };
            self.stats
                .spooled
                .fetch_add(spooled as u64, Ordering::Relaxed);
            ring.client
                .counters
                .spooled
                .fetch_add(spooled as u64, Ordering::Relaxed);
            if spooled > 0 || !complete {
                warn!(client = ring.client.id, name = %ring.client.name, records = spooled, complete,
                    "client gone and its records undelivered at shutdown: spooled");
            }
        }
    }
}
