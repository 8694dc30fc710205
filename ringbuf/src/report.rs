//! Delivery reports: the client reads each record's outcome where the
//! record is, in the order records were committed to the ring.
//!
//! The consumer writes a record's outcome and report fields into the record
//! header (see `REP_*` in the layout) and publishes them by moving the
//! `outcomes` cursor past it. In a ring created with delivery reports, it
//! releases a record's space only once the client's report cursor
//! (`reports_read`) has passed it, so a client that does not read its
//! reports fills its ring and is held back at `send`: a report is never
//! dropped. Reports come in ring order, not acknowledgement order: when the
//! report of record `n` arrives, the reports of every record committed
//! before it have arrived, which is what an application committing its own
//! input offsets needs.

use std::time::{Duration, Instant};

use crate::layout::*;
use crate::producer::RingProducer;
use crate::record::Delivery;
use crate::sync::Ordering::{Relaxed, Release};

/// The outcome of one record, as the client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The record's sequence number (what `send` returned).
    pub seq: u64,
    /// Topic id the record was sent to.
    pub topic_id: u32,
    /// Acknowledged by the broker (`true`) or failed for good.
    pub delivered: bool,
    /// Error code (librdkafka's `rd_kafka_resp_err_t`); 0 when delivered.
    pub error_code: i32,
    /// Whether a failed record may have been persisted anyway (0 no,
    /// 1 possibly, 2 yes).
    pub persistence: u8,
    /// Partition the record went to (or was meant for; -1 if none).
    pub partition: i32,
    /// Offset in the partition; -1 when failed.
    pub offset: i64,
    /// Timestamp the broker stored (ms since the epoch).
    pub timestamp_ms: i64,
}

/// Reads a ring's delivery reports; one per ring (see
/// [`RingProducer::report_reader`]).
pub struct ReportReader {
    producer: RingProducer,
    /// Next record to report (a stream position).
    pos: u64,
    /// Reports read since the cursor was last published.
    unpublished: bool,
}

impl ReportReader {
    pub(crate) fn new(producer: RingProducer) -> Self {
        let ring = &producer.ring;
        // Relaxed: this process is the only writer of the cursor.
        let read = ring.reports_read().load(Relaxed);
        let released = ring.released().load(Relaxed);
        Self {
            // A cursor behind `released` (a new ring, or one whose reports a
            // previous reader left) starts where the space is.
            pos: read.max(released),
            producer,
            unpublished: false,
        }
    }

    /// Calls `each` with up to `max` reports, oldest first, without waiting;
    /// returns how many. The space of the reported records is given back to
    /// the ring afterwards.
    pub fn read(&mut self, max: usize, mut each: impl FnMut(DeliveryReport)) -> usize {
        let ring = &*self.producer.ring;
        let outcomes = self.producer.outcomes();
        // Space before `released` was given back without us (our process
        // was taken for gone): its reports are lost, read on from there.
        // Relaxed: only a lower bound; the records after it are published
        // by `outcomes`.
        self.pos = self.pos.max(ring.released().load(Relaxed));
        let mut n = 0;
        while n < max && self.pos < outcomes {
            // Every record before `outcomes` is finished and stays in place
            // until the cursor below passes it; its state word and header
            // were written by this process or published by the Acquire load
            // of `outcomes` above.
            let state = ring.state_word(self.pos).load(Relaxed);
            let len = state & LEN_MASK;
            let span = align_record(len as usize) as u64;
            if span == 0 || state & STATE_CLAIMED != 0 {
                // Cannot happen below `outcomes`; stop rather than spin.
                break;
            }
            if state & STATE_SKIP == 0 {
                each(self.report_at(self.pos));
                n += 1;
            }
            self.pos += span;
            self.unpublished = true;
        }
        if self.unpublished {
            self.publish();
        }
        n
    }

    /// Waits up to `timeout` until a report is ready; returns whether one is.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.producer
            .wait_for_space(deadline, || self.producer.outcomes() > self.pos)
    }

    /// Whether a report is ready to read.
    pub fn ready(&self) -> bool {
        self.producer.outcomes() > self.pos
    }

    /// Position of the next report (records before it have been reported).
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn report_at(&self, pos: u64) -> DeliveryReport {
        let ring = &*self.producer.ring;
        let word = ring.delivery_word(pos).load(Relaxed);
        let mut header = [0u8; RECORD_HEADER_SIZE];
        ring.mem.read(ring.index(pos), &mut header);
        let u32_at =
            |off: usize| u32::from_le_bytes(header[off..off + 4].try_into().expect("4 bytes"));
        let u64_at =
            |off: usize| u64::from_le_bytes(header[off..off + 8].try_into().expect("8 bytes"));
        DeliveryReport {
            seq: u64_at(REC_SEQ),
            topic_id: u32_at(REC_TOPIC),
            delivered: Delivery::from_word(word) == Delivery::Delivered,
            error_code: u32_at(REP_ERROR) as i32,
            persistence: (word >> 8) as u8,
            partition: u32_at(REP_PARTITION) as i32,
            offset: u64_at(REP_OFFSET) as i64,
            timestamp_ms: u64_at(REP_TIMESTAMP) as i64,
        }
    }

    /// Gives the reported records' space back: stores the cursor and wakes
    /// the consumer, which releases up to it on its next pass.
    fn publish(&mut self) {
        // SYNC POINT (reports-read): pairs with the consumer's Acquire load
        // of `reports_read` in `RingConsumer::release`; the reads of the
        // reports above happen before the consumer zeroes their records.
        self.producer.ring.reports_read().store(self.pos, Release);
        self.unpublished = false;
        self.producer.wake_consumer();
    }
}
