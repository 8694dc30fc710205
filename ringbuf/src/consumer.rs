//! The consumer half: read committed records in place, track their delivery,
//! and give space back to producers.
//!
//! The ring is input from another process. Every field of every record is
//! checked against the ring's bounds (kept in private memory) before use, and
//! the lengths the consumer acts on are its own copies, so a producer that
//! scribbles on a record after it was validated can only garble that
//! record's bytes, never make the consumer read or write out of bounds.
//!
//! The per-record methods (`peek`, `advance`, `mark`, the `RecordView`
//! accessors) are `#[inline]`: without LTO a non-generic function is never
//! inlined into another crate, and the daemon's drain loop calls them once
//! per record. Out of line, each `RecordView` goes through memory and back
//! and the consumer costs about 2.3 times the CPU per record (40 ns vs
//! 17 ns for 64-byte records, one thread, zeroing included), which made it
//! the bottleneck of the whole hand-off.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::error::RecordError;
use crate::failure::{self, Failure};
use crate::layout::*;
use crate::record::{Delivery, Outcome};
use crate::ring::Ring;
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{
    consumer_barrier, fence, futex_wait, futex_wake, AtomicU32, UNBARRIERED_PARK_LIMIT,
};

/// Zeroes the finished span `[start, end)` and gives it to the producers,
/// announcing it in `releasing` first so that a consumer that dies halfway
/// leaves enough behind for the next one to finish (see
/// [`OFF_RELEASING`]). `end - start` is at most the capacity.
fn free_span(ring: &Ring, start: u64, end: u64) {
    announce_and_zero(ring, start, end);
    publish_progress(ring, end, None);
}

/// First half of [`free_span`]: where a consumer that dies mid-release
/// stops at worst.
fn announce_and_zero(ring: &Ring, start: u64, end: u64) {
    ring.releasing().store(end, Relaxed);
    // Crash ordering, not a pairing: `releasing` reaches memory before any
    // of the zeroes, so a span zeroed but not yet released is announced.
    fence(SeqCst);
    let freed = end - start;
    // Zero in at most two pieces: up to the end of the area, then from 0.
    let index = ring.index(start);
    let first = freed.min(ring.capacity - index as u64) as usize;
    ring.mem.zero(index, first);
    ring.mem.zero(0, freed as usize - first);
}

/// Second half of [`free_span`]: gives the zeroed span to the producers
/// (and, with `outcomes`, publishes the records finished since), then wakes
/// producers waiting for either.
fn publish_progress(ring: &Ring, released: u64, outcomes: Option<u64>) {
    if let Some(outcomes) = outcomes {
        // SYNC POINT (outcomes): pairs with the client's Acquire load of
        // `outcomes` in `RingProducer::outcomes`: the outcomes and report
        // fields of the records before it (stored in `mark`) are visible.
        ring.outcomes().store(outcomes, Release);
    }
    // SYNC POINT (space): pairs with the producers' Acquire load of
    // `released` in `RingProducer::refresh_released`: the zeroes above are
    // visible to whoever claims this space (other threads of that process
    // learn of them through `released_seen`).
    ring.released().store(released, Release);
    // Dekker with `RingProducer::wait_for_space`: store `released`, then
    // read `space_waiters`.
    fence(SeqCst);
    if ring.space_waiters().load(Relaxed) != 0 {
        // SYNC POINT (space-epoch): pairs with the Acquire load of the epoch
        // in `RingProducer::wait_for_space`. The epoch only decides whether
        // the futex wait sleeps; the freed space itself is published by the
        // Release store of `released` above (space).
        ring.space_epoch().fetch_add(1, Release);
        futex_wake(ring.space_epoch(), i32::MAX);
    }
}

/// In-flight records `mark` scans after the last one marked before it
/// bisects: covers a producer's records spread over a handful of partitions.
const MARK_PROBE: usize = 16;

/// Most entries the consumer tracks between the release cursor and its read
/// position. The ring is another process's memory: without a bound, a ring
/// of minimal records would cost the consumer 16 bytes of private memory
/// per 8 bytes of ring (twice the ring) in bookkeeping. At the bound `peek`
/// reports nothing ready until `release` frees entries at the front, so the
/// bookkeeping is at most 1 MiB (2 MiB while the deque grows) per ring.
/// Runs of padding and aborted records share one entry. 65536 records in
/// flight per ring is 65 million records/s at 1 ms acknowledgement latency.
pub const MAX_IN_FLIGHT: usize = 1 << 16;

/// A record handed out by the consumer and not yet released.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    pos: u64,
    /// Aligned length: the distance to the next record.
    span: u32,
    /// Delivered, failed, padding or aborted: nothing more to wait for.
    done: bool,
}

/// The reading half of a ring. There is exactly one per ring; it is `Send`
/// but not meant to be shared between threads.
pub struct RingConsumer {
    ring: Arc<Ring>,
    /// Next position to read. Private: rebuilt from `released` after a restart.
    drain_pos: u64,
    /// Private copy of the release cursor (the shared one is only written).
    released_pos: u64,
    /// Tail value last read; re-read only when a record seems to pass it.
    known_tail: u64,
    /// Records between `released_pos` and `drain_pos`, in position order;
    /// consecutive finished ones stepped over by `peek` share an entry. At
    /// most [`MAX_IN_FLIGHT`] long.
    in_flight: VecDeque<InFlight>,
    /// Span of the record returned by the last `peek`, taken by `advance`.
    peeked_span: Option<u32>,
    /// Index in `in_flight` of the record marked last (see `find_in_flight`).
    mark_hint: usize,
    /// End of the contiguous finished prefix of `in_flight`: what the
    /// `outcomes` cursor says. Ahead of `released_pos` while the client has
    /// not read the reports (rings with delivery reports only).
    outcomes_pos: u64,
    /// Entries at the front of `in_flight` that end at or before
    /// `outcomes_pos`.
    finished_entries: usize,
    /// The client that reads the reports is gone: release without waiting
    /// for its report cursor.
    report_reader_gone: bool,
}

/// A validated committed record, borrowed from the ring.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    ring: &'a Ring,
    pos: u64,
    fields: Fields,
}

/// The consumer's own validated copy of a record's header fields.
#[derive(Debug, Clone, Copy)]
struct Fields {
    seq: u64,
    topic_id: u32,
    partition: i32,
    timestamp_ms: i64,
    key_len: Option<u32>,
    value_len: Option<u32>,
    headers_len: u32,
}

impl RingConsumer {
    pub(crate) fn new(ring: Arc<Ring>) -> Result<Self, RecordError> {
        let (tail, mut released) = ring.cursors();
        if released > tail || tail - released > ring.capacity || released % RECORD_ALIGN as u64 != 0
        {
            return Err(RecordError::CursorsCorrupted { tail, released });
        }
        // A consumer died between zeroing a finished span and moving
        // `released` past it: finish that release. Its records were all
        // delivered or failed, or the release would not have started.
        // Relaxed: `releasing` is stored Relaxed (crash ordering through a
        // SeqCst fence in `free_span`, not a pairing), and its reader runs
        // after its writer died: the kernel ordered everything the dead
        // consumer wrote before this process could map the segment again.
        let releasing = ring.releasing().load(Relaxed);
        if releasing > released
            && releasing <= tail
            && releasing.is_multiple_of(RECORD_ALIGN as u64)
        {
            free_span(&ring, released, releasing);
            released = releasing;
        }
        // Every record before `released` is finished; a consumer that died
        // mid-release may have left `outcomes` behind it.
        // Relaxed: only this consumer writes it; a stale read only repeats
        // the store.
        if ring.outcomes().load(Relaxed) < released {
            publish_progress(&ring, released, Some(released));
        }
        Ok(Self {
            ring,
            drain_pos: released,
            released_pos: released,
            known_tail: tail,
            in_flight: VecDeque::new(),
            peeked_span: None,
            mark_hint: 0,
            outcomes_pos: released,
            finished_entries: 0,
            report_reader_gone: false,
        })
    }

    /// Data area size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Position of the next record to read.
    pub fn drain_pos(&self) -> u64 {
        self.drain_pos
    }

    /// Position up to which space has been given back.
    pub fn released_pos(&self) -> u64 {
        self.released_pos
    }

    /// Records read but not yet marked delivered or failed.
    pub fn pending(&self) -> usize {
        self.in_flight.iter().filter(|r| !r.done).count()
    }

    /// Whether nothing is in flight and no committed record waits.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && !self.has_ready_record()
    }

    /// Bytes claimed by producers and not yet released (ring fill).
    pub fn fill(&self) -> u64 {
        self.ring
            .tail()
            .load(Relaxed)
            .wrapping_sub(self.released_pos)
    }

    /// The next committed record, validated, without moving past it.
    ///
    /// Padding, aborted records and records already delivered before a
    /// restart are stepped over here. `Ok(None)` means the next record is not
    /// committed yet (or the ring is empty). An error leaves the position
    /// unchanged: the ring content is garbage there.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<RecordView<'_>>, RecordError> {
        loop {
            let pos = self.drain_pos;
            if self.lap_in_flight() || self.tracking_full() {
                return Ok(None);
            }
            // SYNC POINT (publish): pairs with the producer's Release store of
            // the state word in `Slot::finish`, `send_batch` or the padding
            // store in `try_claim`.
            let state = self.ring.state_word(pos).load(Acquire);
            if state == 0 || state & STATE_CLAIMED != 0 {
                return Ok(None);
            }
            let len = state & LEN_MASK;
            let span = align_record(len as usize) as u32;
            let index = self.ring.index(pos);
            if (len as usize) < RECORD_ALIGN {
                return Err(RecordError::TooShort { pos, len });
            }
            if span as u64 > self.ring.capacity - index as u64 {
                return Err(RecordError::PastEnd { pos, len });
            }
            // No producer can claim past `released + capacity`. Checking it
            // here (not only against the tail, which a hostile producer
            // controls) keeps what is in flight within one lap, so `release`
            // never zeroes more than the data area, and keeps the positions
            // far from overflow.
            let end = match pos.checked_add(span as u64) {
                Some(end) if end - self.released_pos <= self.ring.capacity => end,
                _ => {
                    return Err(RecordError::BeyondTail {
                        pos,
                        len,
                        tail: self.known_tail,
                    })
                }
            };
            if end > self.known_tail {
                // Relaxed: the tail only bounds where a committed record may
                // end; the record itself was acquired through its state word
                // above.
                self.known_tail = self.ring.tail().load(Relaxed);
                if end > self.known_tail {
                    return Err(RecordError::BeyondTail {
                        pos,
                        len,
                        tail: self.known_tail,
                    });
                }
            }
            if state & STATE_SKIP != 0 {
                self.step_over(pos, span);
                continue;
            }
            if Delivery::from_word(self.ring.delivery_word(pos).load(Relaxed)) != Delivery::Pending
            {
                // Finished by a previous consumer before a restart. Checked
                // before the fields: a finished record holds its report in
                // place of some of them, and only its span matters now.
                self.step_over(pos, span);
                continue;
            }
            let fields = self.validate_message(pos, len)?;
            self.peeked_span = Some(span);
            return Ok(Some(RecordView {
                ring: &self.ring,
                pos,
                fields,
            }));
        }
    }

    /// Moves past the record the last `peek` returned; it is now in flight
    /// until marked with [`RingConsumer::mark`].
    ///
    /// # Panics
    /// If no record was peeked since the last advance.
    #[inline]
    pub fn advance(&mut self) {
        let span = self
            .peeked_span
            .take()
            .expect("advance without a peeked record");
        self.in_flight.push_back(InFlight {
            pos: self.drain_pos,
            span,
            done: false,
        });
        self.drain_pos += span as u64;
    }

    /// Moves past a record that needs no delivery. It joins the entry before
    /// it when that one is finished too, so a run of padding costs one entry.
    #[inline]
    fn step_over(&mut self, pos: u64, span: u32) {
        self.drain_pos = pos + span as u64;
        if let Some(last) = self.in_flight.back_mut() {
            if last.done && last.pos + last.span as u64 == pos {
                // Fits: what is in flight spans at most one data area, and
                // the capacity is at most 2^30.
                if let Some(joined) = last.span.checked_add(span) {
                    last.span = joined;
                    return;
                }
            }
        }
        self.in_flight.push_back(InFlight {
            pos,
            span,
            done: true,
        });
    }

    /// Whether the bookkeeping holds [`MAX_IN_FLIGHT`] entries: nothing more
    /// is read until `release` frees some.
    #[inline]
    fn tracking_full(&self) -> bool {
        self.in_flight.len() >= MAX_IN_FLIGHT
    }

    /// Entries of bookkeeping held now (at most [`MAX_IN_FLIGHT`]).
    pub fn tracked(&self) -> usize {
        self.in_flight.len()
    }

    #[inline]
    fn validate_message(&self, pos: u64, len: u32) -> Result<Fields, RecordError> {
        if (len as usize) < RECORD_HEADER_SIZE {
            return Err(RecordError::TooShort { pos, len });
        }
        if len > self.ring.max_record {
            return Err(RecordError::TooLarge {
                pos,
                len,
                max: self.ring.max_record,
            });
        }
        let mut header = [0u8; RECORD_HEADER_SIZE - REC_KIND];
        self.ring
            .mem
            .read(self.ring.index(pos) + REC_KIND, &mut header);
        let at = |off: usize| off - REC_KIND;
        let u16_at = |off| u16::from_le_bytes([header[at(off)], header[at(off) + 1]]);
        let u32_at =
            |off| u32::from_le_bytes(header[at(off)..at(off) + 4].try_into().expect("4 bytes"));
        let u64_at =
            |off| u64::from_le_bytes(header[at(off)..at(off) + 8].try_into().expect("8 bytes"));
        let kind = u16_at(REC_KIND);
        if kind != KIND_MESSAGE {
            return Err(RecordError::UnknownKind { pos, kind });
        }
        // Any number: it names the record for its client, nothing indexes by it.
        let seq = u64_at(REC_SEQ);
        let optional = |l: u32| (l != NULL_LEN).then_some(l);
        let key_len = optional(u32_at(REC_KEY_LEN));
        let value_len = optional(u32_at(REC_VALUE_LEN));
        let headers_len = u32_at(REC_HEADERS_LEN);
        let fields = RECORD_HEADER_SIZE as u64
            + key_len.unwrap_or(0) as u64
            + value_len.unwrap_or(0) as u64
            + headers_len as u64;
        if fields != len as u64 {
            return Err(RecordError::FieldLengths { pos, len });
        }
        Ok(Fields {
            seq,
            topic_id: u32_at(REC_TOPIC),
            partition: u32_at(REC_PARTITION) as i32,
            timestamp_ms: u64_at(REC_TIMESTAMP) as i64,
            key_len,
            value_len,
            headers_len,
        })
    }

    /// Records the outcome of the in-flight record at position `pos`, and
    /// writes its report into it. Returns `false` if `pos` is not in flight
    /// (already marked, or never handed out).
    #[inline]
    pub fn mark(&mut self, pos: u64, outcome: &Outcome) -> bool {
        let Some(i) = self.find_in_flight(pos) else {
            return false;
        };
        let record = &mut self.in_flight[i];
        if record.done || outcome.delivery == Delivery::Pending {
            return false;
        }
        record.done = true;
        // The report, in the header fields nothing reads any more (the span
        // was validated as a message, at least a header long, by `peek`).
        let index = self.ring.index(pos);
        let mem = &self.ring.mem;
        mem.write(index + REP_TIMESTAMP, &outcome.timestamp_ms.to_le_bytes());
        mem.write(index + REP_PARTITION, &outcome.partition.to_le_bytes());
        mem.write(index + REP_ERROR, &outcome.error_code.to_le_bytes());
        mem.write(index + REP_OFFSET, &outcome.offset.to_le_bytes());
        // Kept in the record too, so a consumer rebuilt after a restart does
        // not send an acknowledged record again. Relaxed: published to the
        // client with the report fields by `outcomes` (see `release`).
        self.ring
            .delivery_word(pos)
            .store(outcome.delivery_word(), Relaxed);
        true
    }

    /// The in-flight record `seq` (advanced, not yet marked), validated
    /// again, e.g. to copy a failed record to the dead-letter spool before
    /// marking it. `None` if `seq` is not in flight, or if its bytes no
    /// longer describe a record of the span `peek` saw (its producer wrote
    /// over it after commit).
    pub fn in_flight_view(&self, pos: u64) -> Option<RecordView<'_>> {
        let i = self.in_flight.binary_search_by_key(&pos, |r| r.pos).ok()?;
        let record = self.in_flight[i];
        if record.done {
            return None;
        }
        // The span was checked against the data area by `peek`; a length
        // with the same span stays inside it.
        // SYNC POINT (publish): as in `peek`.
        let state = self.ring.state_word(pos).load(Acquire);
        let len = state & LEN_MASK;
        if state & (STATE_CLAIMED | STATE_SKIP) != 0
            || align_record(len as usize) != record.span as usize
        {
            return None;
        }
        let fields = self.validate_message(pos, len).ok()?;
        Some(RecordView {
            ring: &self.ring,
            pos,
            fields,
        })
    }

    /// Index of the in-flight record at `pos`. Delivery reports come back
    /// in the order records were handed out within a partition, and a
    /// producer's records interleave across a few partitions, so the next
    /// report is usually a few records after the last one marked: look at
    /// up to [`MARK_PROBE`] records after it, then bisect.
    #[inline]
    fn find_in_flight(&mut self, pos: u64) -> Option<usize> {
        let start = (self.mark_hint + 1).min(self.in_flight.len());
        for (i, record) in self.in_flight.range(start..).take(MARK_PROBE).enumerate() {
            if record.pos == pos {
                self.mark_hint = start + i;
                return Some(start + i);
            }
            if record.pos > pos {
                break;
            }
        }
        let found = self.in_flight.binary_search_by_key(&pos, |r| r.pos).ok()?;
        self.mark_hint = found;
        Some(found)
    }

    /// Publishes the outcomes of the contiguous prefix of finished records,
    /// and gives back its space, zeroing it first: at once, or in a ring
    /// with delivery reports once the client has read their reports.
    /// Returns the number of bytes released.
    pub fn release(&mut self) -> u64 {
        let start = self.released_pos;
        let outcomes_before = self.outcomes_pos;
        self.advance_outcomes();
        let end = self.finished_prefix_end();
        let outcomes = (self.outcomes_pos != outcomes_before).then_some(self.outcomes_pos);
        if end == start {
            if outcomes.is_some() {
                publish_progress(&self.ring, start, outcomes);
            }
            return 0;
        }
        announce_and_zero(&self.ring, start, end);
        publish_progress(&self.ring, end, outcomes);
        end - start
    }

    /// Whether the ring was created for delivery reports: records keep
    /// their space until the client has read their reports.
    pub fn delivery_reports(&self) -> bool {
        self.ring.delivery_reports
    }

    /// The client that reads this ring's reports is gone: from now on its
    /// records are released as soon as they are finished.
    pub fn report_reader_gone(&mut self) {
        self.report_reader_gone = true;
    }

    /// Whether records stay in the ring until the client has read their
    /// reports.
    fn waits_for_report_reader(&self) -> bool {
        self.ring.delivery_reports && !self.report_reader_gone
    }

    /// Moves `outcomes_pos` over the finished entries that follow it.
    fn advance_outcomes(&mut self) {
        // The last finished entry may have grown since (`step_over` joins
        // padding to it).
        if let Some(last) = self
            .finished_entries
            .checked_sub(1)
            .and_then(|i| self.in_flight.get(i))
        {
            self.outcomes_pos = last.pos + last.span as u64;
        }
        while let Some(entry) = self.in_flight.get(self.finished_entries) {
            if !entry.done {
                break;
            }
            self.outcomes_pos = entry.pos + entry.span as u64;
            self.finished_entries += 1;
        }
    }

    /// Loom models only: releases like [`RingConsumer::release`] but dies
    /// between zeroing the span and publishing it, as a daemon killed
    /// mid-release does; [`RingConsumer::successor`] then finishes it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn die_mid_release(mut self) {
        let start = self.released_pos;
        self.advance_outcomes();
        let end = self.finished_prefix_end();
        announce_and_zero(&self.ring, start, end);
    }

    /// Loom models only: the consumer a restarted daemon builds for this
    /// ring (from the shared cursors).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn successor(&self) -> Result<Self, RecordError> {
        Self::new(Arc::clone(&self.ring))
    }

    /// Drops the finished entries whose space can be released from the
    /// in-flight list (in a ring with delivery reports, those the client's
    /// report cursor has passed); returns the position up to which space
    /// can be released.
    fn finished_prefix_end(&mut self) -> u64 {
        let limit = if self.waits_for_report_reader() {
            // SYNC POINT (reports-read): pairs with the client's Release
            // store in `ReportReader::publish`: it has read the reports
            // before it; zeroing them comes after. Untrusted: any value only
            // decides how much of this client's finished prefix is freed.
            self.ring.reports_read().load(Acquire)
        } else {
            u64::MAX
        };
        while self.finished_entries > 0 {
            let Some(front) = self.in_flight.front() else {
                break;
            };
            let end = front.pos + front.span as u64;
            if end > limit {
                break;
            }
            self.released_pos = end;
            self.in_flight.pop_front();
            self.finished_entries -= 1;
            self.mark_hint = self.mark_hint.saturating_sub(1);
        }
        self.released_pos
    }

    /// Queues a failure for the producer to read; `false` if the queue is full.
    pub fn push_failure(&self, failure: Failure) -> bool {
        failure::push(&self.ring, failure)
    }

    /// Tells the client how many failures wait for room in its queue.
    pub fn set_failures_held(&self, held: u64) {
        failure::set_held(&self.ring, held);
    }

    /// Whether a whole data area is in flight: the ring is full, and the
    /// word at `drain_pos` is the oldest in-flight record's (one lap back),
    /// not a new record's, so it must not be read as one.
    #[inline]
    fn lap_in_flight(&self) -> bool {
        self.drain_pos - self.released_pos >= self.ring.capacity
    }

    fn has_ready_record(&self) -> bool {
        if self.waits_for_report_reader() && self.finished_entries > 0 {
            if let Some(front) = self.in_flight.front() {
                // Relaxed: only decides whether to stay awake for a release,
                // which loads the cursor again (Acquire). True only when the
                // release would free something, so a cursor inside the
                // front entry cannot keep the consumer spinning.
                if self.ring.reports_read().load(Relaxed) >= front.pos + front.span as u64 {
                    return true; // the client read reports: space to free
                }
            }
        }
        if self.lap_in_flight() || self.tracking_full() {
            return false;
        }
        // SYNC POINT (publish): as in `peek`.
        let state = self.ring.state_word(self.drain_pos).load(Acquire);
        state != 0 && state & STATE_CLAIMED == 0
    }

    /// Announces that the consumer is about to sleep. Returns `false` (and
    /// withdraws the announcement) if a record is already committed.
    pub fn prepare_park(&self) -> bool {
        self.announce_park();
        // Dekker with `RingProducer::wake_consumer`: store the flag, then
        // read the state word (barrier: see `sync::consumer_barrier`).
        consumer_barrier();
        self.withdraw_if_ready()
    }

    /// First half of `prepare_park`, for parking on many rings with one
    /// barrier: store the parked flag.
    pub(crate) fn announce_park(&self) {
        self.ring.consumer_parked().store(1, Relaxed);
    }

    /// Second half, after the barrier: `false` (announcement withdrawn) if a
    /// record is already committed.
    pub(crate) fn withdraw_if_ready(&self) -> bool {
        if self.has_ready_record() {
            self.finish_park();
            return false;
        }
        true
    }

    /// Withdraws the parked announcement.
    pub fn finish_park(&self) {
        self.ring.consumer_parked().store(0, Relaxed);
    }

    /// The futex word producers wake when the consumer is parked.
    pub fn park_word(&self) -> &AtomicU32 {
        self.ring.consumer_parked()
    }

    /// Sleeps until a producer commits a record or `timeout` passes.
    pub fn park(&self, timeout: Duration) {
        self.announce_park();
        let barriered = consumer_barrier();
        if self.withdraw_if_ready() {
            let timeout = if barriered {
                timeout
            } else {
                timeout.min(UNBARRIERED_PARK_LIMIT)
            };
            futex_wait(self.ring.consumer_parked(), 1, Some(timeout));
            self.finish_park();
        }
    }

    /// Pads over a record that was claimed but will never be committed,
    /// because its producer is dead. Returns whether a hole was padded.
    ///
    /// Only call this once every producer of the ring is known to be gone
    /// (the client's socket closed and its pid exited): a live producer may
    /// simply be slow, and padding over it would corrupt its record.
    pub fn unblock(&mut self) -> Result<bool, RecordError> {
        let pos = self.drain_pos;
        if self.lap_in_flight() {
            return Ok(false); // full and all in flight: no hole to pad
        }
        // SYNC POINT (publish): as in `peek`.
        let state = self.ring.state_word(pos).load(Acquire);
        if state != 0 && state & STATE_CLAIMED == 0 {
            return Ok(false); // committed: nothing blocks
        }
        // Relaxed: see `peek`; only a bound for the hole.
        let tail = self.ring.tail().load(Relaxed);
        let released = self.released_pos;
        if tail < pos || tail - released > self.ring.capacity {
            return Err(RecordError::CursorsCorrupted { tail, released });
        }
        let index = self.ring.index(pos) as u64;
        let limit = (tail - pos).min(self.ring.capacity - index);
        if limit == 0 {
            return Ok(false);
        }
        let hole = if state & STATE_CLAIMED != 0 {
            let len = align_record((state & LEN_MASK) as usize) as u64;
            if len < RECORD_ALIGN as u64 || len > limit {
                return Err(RecordError::PastEnd {
                    pos,
                    len: state & LEN_MASK,
                });
            }
            len
        } else {
            // Never written at all: the hole ends at the next non-zero state
            // word (free space is zeroed and every producer writes its state
            // word before anything else), or at the tail / end of the area.
            let mut end = RECORD_ALIGN as u64;
            // SYNC POINT (publish): as in `peek`.
            while end < limit && self.ring.state_word(pos + end).load(Acquire) == 0 {
                end += RECORD_ALIGN as u64;
            }
            end
        };
        // SYNC POINT (publish): read back by our own `peek` (Acquire).
        self.ring
            .state_word(pos)
            .store(STATE_SKIP | hole as u32, Release);
        Ok(true)
    }
}

impl std::fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields.fmt(f)
    }
}

impl<'a> RecordView<'a> {
    /// Stream position of the record: how the consumer names it (in
    /// [`RingConsumer::mark`] and [`RingConsumer::in_flight_view`]).
    #[inline]
    pub fn pos(&self) -> u64 {
        self.pos
    }
    /// Sequence number the client's producer gave the record (untrusted:
    /// only passed back to the client, in reports and failures).
    #[inline]
    pub fn seq(&self) -> u64 {
        self.fields.seq
    }
    /// Topic id the client used.
    #[inline]
    pub fn topic_id(&self) -> u32 {
        self.fields.topic_id
    }
    /// Partition, or [`PARTITION_UNASSIGNED`].
    #[inline]
    pub fn partition(&self) -> i32 {
        self.fields.partition
    }
    /// Create time in ms since the epoch (0: not set).
    #[inline]
    pub fn timestamp_ms(&self) -> i64 {
        self.fields.timestamp_ms
    }
    /// Key length, `None` for a null key.
    #[inline]
    pub fn key_len(&self) -> Option<usize> {
        self.fields.key_len.map(|l| l as usize)
    }
    /// Value length, `None` for a null value.
    #[inline]
    pub fn value_len(&self) -> Option<usize> {
        self.fields.value_len.map(|l| l as usize)
    }
    /// Encoded header block length.
    #[inline]
    pub fn headers_len(&self) -> usize {
        self.fields.headers_len as usize
    }

    #[inline]
    fn key_offset(&self) -> usize {
        self.ring.index(self.pos) + RECORD_HEADER_SIZE
    }
    #[inline]
    fn value_offset(&self) -> usize {
        self.key_offset() + self.fields.key_len.unwrap_or(0) as usize
    }
    #[inline]
    fn headers_offset(&self) -> usize {
        self.value_offset() + self.fields.value_len.unwrap_or(0) as usize
    }

    fn copy(&self, off: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.ring.mem.read(off, &mut out);
        out
    }

    /// Copy of the key.
    pub fn key_to_vec(&self) -> Option<Vec<u8>> {
        self.fields
            .key_len
            .map(|l| self.copy(self.key_offset(), l as usize))
    }
    /// Copy of the value.
    pub fn value_to_vec(&self) -> Option<Vec<u8>> {
        self.fields
            .value_len
            .map(|l| self.copy(self.value_offset(), l as usize))
    }
    /// Copy of the encoded header block (decode with [`crate::HeaderIter`]).
    pub fn headers_to_vec(&self) -> Vec<u8> {
        self.copy(self.headers_offset(), self.fields.headers_len as usize)
    }
}

#[cfg(not(loom))]
impl<'a> RecordView<'a> {
    /// A validated byte range of the record, in place.
    #[inline]
    fn bytes(&self, off: usize, len: usize) -> &'a [u8] {
        let ptr = self.ring.mem.data_ptr(off);
        // SAFETY: `off + len` lies inside this record, whose length was
        // checked against the data area bounds in `validate_message`, and the
        // lengths used are the consumer's own validated copies. The record
        // stays mapped and unreleased while the view borrows the consumer. A
        // misbehaving producer may still change the bytes: they are treated
        // as opaque payload, never as lengths or offsets.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// The key, in place.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.fields
            .key_len
            .map(|l| self.bytes(self.key_offset(), l as usize))
    }
    /// The value, in place.
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.fields
            .value_len
            .map(|l| self.bytes(self.value_offset(), l as usize))
    }
    /// The encoded header block, in place.
    #[inline]
    pub fn headers(&self) -> crate::HeaderIter<'a> {
        crate::HeaderIter::new(self.bytes(self.headers_offset(), self.fields.headers_len as usize))
    }
}
