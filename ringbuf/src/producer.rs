//! The producer half: claim space, write in place, publish.
//!
//! Claiming follows Agrona's `ManyToOneRingBuffer`: one compare-exchange on
//! `tail` hands a producer an exclusive byte range; the producer writes the
//! record there and publishes it with a Release store of its state word. A
//! claim that would straddle the end of the data area first fills the rest
//! of the area with a padding record and starts the record at offset 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ReserveError;
use crate::failure::{self, Failure};
use crate::layout::*;
use crate::record::{encode_headers, encoded_headers_len, headers_fit, Record, RecordSpec};
use crate::report::ReportReader;
use crate::ring::Ring;
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{fence, futex_wait, futex_wake, producer_barrier, spin_hint};

/// The writing half of a ring. Cheap to clone; `Send + Sync`, so all threads
/// of a process can share one ring.
#[derive(Clone)]
pub struct RingProducer {
    pub(crate) ring: Arc<Ring>,
}

/// What to do when the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Return [`ReserveError::Full`] at once.
    Fail,
    /// Wait up to this long for the daemon to free space, then fail.
    Block(Duration),
}

/// Encoded size of a record, before alignment.
fn record_len(spec: &RecordSpec<'_>) -> usize {
    RECORD_HEADER_SIZE
        + spec.key_len.unwrap_or(0)
        + spec.value_len.unwrap_or(0)
        + encoded_headers_len(spec.headers)
}

impl RingProducer {
    pub(crate) fn new(ring: Arc<Ring>) -> Self {
        Self { ring }
    }

    /// Data area size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Largest record (header, key, value and headers) this ring accepts.
    pub fn max_record_len(&self) -> usize {
        self.ring.max_record as usize
    }

    /// Bytes claimed so far (the position the next record gets).
    pub fn tail(&self) -> u64 {
        // Relaxed: a position for statistics and flush bookkeeping; record
        // contents are published by each state word.
        self.ring.tail().load(Relaxed)
    }

    /// Bytes the consumer has released so far: every record with a sequence
    /// number below this is acknowledged or reported failed.
    pub fn released(&self) -> u64 {
        // SYNC POINT (space): pairs with the consumer's Release store of
        // `released` in `free_span`; a client that sees its record released
        // then also sees the failure the daemon queued for it before.
        self.ring.released().load(Acquire)
    }

    /// Reserves space for one record shaped like `spec` and writes its header;
    /// the caller fills key and value through the returned [`Slot`] and
    /// commits it. Dropping the slot without commit aborts the record.
    #[inline]
    pub fn reserve(
        &self,
        spec: &RecordSpec<'_>,
        when_full: WhenFull,
    ) -> Result<Slot<'_>, ReserveError> {
        let len = self.checked_len(spec)?;
        let pos = self.claim(align_record(len), when_full)?;
        let seq = self.take_record_numbers(1);
        self.write_header(pos, seq, len, spec);
        Ok(Slot {
            producer: self,
            pos,
            seq,
            len,
            key_len: spec.key_len.unwrap_or(0),
            value_len: spec.value_len.unwrap_or(0),
            done: false,
        })
    }

    /// Copies `record` into the ring and commits it; returns its sequence
    /// number: its number in the ring (0, 1, 2, ...), increasing in the
    /// order one thread sends. Records of different threads racing for
    /// space may take their numbers in the other order than their places.
    #[inline]
    pub fn send(&self, record: &Record<'_>, when_full: WhenFull) -> Result<u64, ReserveError> {
        // The same steps as reserve + write + commit, without a `Slot`: no
        // abort-on-drop bookkeeping is needed when nothing can fail between
        // the claim and the commit.
        let len = self.checked_len(&record.spec())?;
        let pos = self.claim(align_record(len), when_full)?;
        let seq = self.take_record_numbers(1);
        self.write_record(pos, seq, len, record);
        self.wake_consumer();
        Ok(seq)
    }

    /// Copies all `records` into the ring with a single claim (one atomic for
    /// the whole batch) and commits them; returns the first sequence number
    /// (the others follow it). Either all records are written or none is.
    pub fn send_batch(
        &self,
        records: &[Record<'_>],
        when_full: WhenFull,
    ) -> Result<u64, ReserveError> {
        let mut total = 0usize;
        for record in records {
            total += align_record(self.checked_len(&record.spec())?);
        }
        if total > self.ring.capacity as usize / 2 {
            return Err(ReserveError::TooLarge {
                len: total,
                max: self.ring.capacity as usize / 2,
            });
        }
        let mut pos = self.claim(total, when_full)?;
        let first = self.take_record_numbers(records.len() as u64);
        for (seq, record) in (first..).zip(records) {
            let len = record_len(&record.spec());
            self.write_record(pos, seq, len, record);
            pos += align_record(len) as u64;
        }
        self.wake_consumer();
        Ok(first)
    }

    /// Takes the oldest failure the daemon reported for this ring.
    pub fn pop_failure(&self) -> Option<Failure> {
        let failure = failure::pop(&self.ring);
        if failure.is_some() {
            // The consumer may hold failures for the room just made.
            self.wake_consumer();
        }
        failure
    }

    /// Failures the consumer holds until the queue has room: more will come
    /// through [`RingProducer::pop_failure`].
    pub fn failures_held(&self) -> u64 {
        failure::held(&self.ring)
    }

    /// Whether the ring was created for delivery reports.
    pub fn delivery_reports(&self) -> bool {
        self.ring.delivery_reports
    }

    /// The reader of this ring's delivery reports, starting after the last
    /// report read. `None` unless the ring was created for delivery reports.
    /// Reports have one reader: two would each see part of them.
    pub fn report_reader(&self) -> Option<ReportReader> {
        self.ring
            .delivery_reports
            .then(|| ReportReader::new(self.clone()))
    }

    /// Records numbered so far: the sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        // Relaxed: a count, read for statistics and flush bookkeeping.
        self.ring.next_record().load(Relaxed)
    }

    /// Takes `n` consecutive record numbers, after the space is claimed (so
    /// a full ring leaves no gap).
    #[inline]
    pub(crate) fn take_record_numbers(&self, n: u64) -> u64 {
        // Relaxed: the number is the record's name, published with the rest
        // of the record by its state word.
        self.ring.next_record().fetch_add(n, Relaxed)
    }

    /// Reservations dropped without commit so far.
    pub fn aborted(&self) -> u64 {
        self.ring.mem.header_u64(OFF_ABORTED).load(Relaxed)
    }

    /// Times a reservation found the ring full.
    pub fn full_events(&self) -> u64 {
        self.ring.mem.header_u64(OFF_FULL_EVENTS).load(Relaxed)
    }

    /// Position up to which every record has its outcome (delivered or
    /// failed): equal to [`RingProducer::released`] in rings without
    /// delivery reports, ahead of it by the reports not yet read in rings
    /// with them.
    pub fn outcomes(&self) -> u64 {
        // SYNC POINT (outcomes): pairs with the consumer's Release store of
        // `outcomes` in `publish_progress`; the outcomes and report fields of
        // the records before it are visible.
        self.ring.outcomes().load(Acquire)
    }

    /// Waits until every record before `pos` has its outcome, for at most
    /// `timeout`. Returns whether they have.
    pub fn wait_outcomes(&self, pos: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.wait_for_space(deadline, || self.outcomes() >= pos)
    }

    /// Waits until the consumer has released everything before `pos`, for at
    /// most `timeout`. Returns whether it did.
    pub fn wait_released(&self, pos: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.wait_for_space(deadline, || self.released() >= pos)
    }

    #[inline]
    pub(crate) fn checked_len(&self, spec: &RecordSpec<'_>) -> Result<usize, ReserveError> {
        if !spec.headers.is_empty() && !headers_fit(spec.headers) {
            return Err(ReserveError::HeaderTooLarge);
        }
        let key = spec.key_len.unwrap_or(0);
        let value = spec.value_len.unwrap_or(0);
        let len = RECORD_HEADER_SIZE
            .checked_add(key)
            .and_then(|l| l.checked_add(value))
            .and_then(|l| l.checked_add(encoded_headers_len(spec.headers)))
            .unwrap_or(usize::MAX);
        let max = self.ring.max_record as usize;
        if len > max || key >= NULL_LEN as usize || value >= NULL_LEN as usize {
            return Err(ReserveError::TooLarge { len, max });
        }
        Ok(len)
    }

    /// Claims `need` bytes (aligned) at a position that does not straddle the
    /// end of the data area, padding the end if necessary.
    #[inline]
    pub(crate) fn claim(&self, need: usize, when_full: WhenFull) -> Result<u64, ReserveError> {
        debug_assert!(need.is_multiple_of(RECORD_ALIGN) && need as u64 <= self.ring.capacity);
        let mut result = self.try_claim(need as u64);
        if !matches!(result, Err(ReserveError::Full { .. })) {
            return result;
        }
        self.ring
            .mem
            .header_u64(OFF_FULL_EVENTS)
            .fetch_add(1, Relaxed);
        let WhenFull::Block(timeout) = when_full else {
            return result;
        };
        let deadline = Instant::now() + timeout;
        self.wait_for_space(deadline, || {
            result = self.try_claim(need as u64);
            !matches!(result, Err(ReserveError::Full { .. }))
        });
        result
    }

    #[inline]
    fn try_claim(&self, need: u64) -> Result<u64, ReserveError> {
        let ring = &*self.ring;
        let capacity = ring.capacity;
        loop {
            // SYNC POINT (claim-order): pairs with the Release half of the
            // compare-exchange below, made by whichever claim moved the tail
            // here: what that claim saw of `released` (directly or through
            // `released_seen`) happens-before our reads of them, so a tail
            // that a racing claim moved on is never judged against an older
            // release cursor (which would look like corruption).
            let tail = ring.tail().load(Acquire);
            let to_end = capacity - (tail & ring.mask);
            let (start, total) = if need <= to_end {
                (tail, need)
            } else {
                (tail + to_end, to_end + need)
            };
            let fits = |released: u64| {
                let used = tail.wrapping_sub(released);
                used <= capacity && used + total <= capacity
            };
            // SYNC POINT (space-seen): pairs with the Release `fetch_max` in
            // `refresh_released`, which this process's producers make after
            // their Acquire load of `released`: the consumer's zeroes of
            // the space below it are visible here too.
            let seen = ring.released_seen.load(Acquire);
            let released = if fits(seen) {
                seen
            } else {
                self.refresh_released(tail)
            };
            let used = tail.wrapping_sub(released);
            if used > capacity {
                // A claim may have moved the tail since we read it; decide on
                // a tail and cursor read in that order (see claim-order).
                if ring.tail().load(Acquire) != tail {
                    continue;
                }
                return Err(ReserveError::Corrupted { tail, released });
            }
            if used + total > capacity {
                return Err(ReserveError::Full {
                    needed: total as usize,
                    free: (capacity - used) as usize,
                    capacity: capacity as usize,
                });
            }
            // The tail arbitrates who owns which bytes; record contents are
            // published through each record's state word. Release: see
            // claim-order (a failed exchange loops to the Acquire load).
            if ring
                .tail()
                .compare_exchange_weak(tail, tail + total, Release, Relaxed)
                .is_ok()
            {
                #[cfg(loom)]
                ring.mem.assert_zeroed(ring.index(tail), total as usize);
                if start != tail {
                    // SYNC POINT (publish): padding, pairs with the consumer's
                    // Acquire load in `peek`.
                    ring.state_word(tail)
                        .store(STATE_SKIP | to_end as u32, Release);
                }
                return Ok(start);
            }
            spin_hint();
        }
    }

    /// Reads the shared release cursor; returns it, and records it as the
    /// newest this process has seen if it is plausible against `tail` (a
    /// stray value is judged by the caller and not kept, so the next claim
    /// reads the cursor again).
    #[inline(never)]
    fn refresh_released(&self, tail: u64) -> u64 {
        let ring = &*self.ring;
        // SYNC POINT (space): pairs with the consumer's Release store of
        // `released` in `free_span`, after it zeroed the space we are about
        // to write into.
        let released = ring.released().load(Acquire);
        if tail.wrapping_sub(released) <= ring.capacity {
            // SYNC POINT (space-seen): pairs with the Acquire load of
            // `released_seen` in `try_claim`, passing the zeroes acquired
            // just above on to this process's other producing threads.
            // `fetch_max`: a thread that read an older value must not move
            // it back.
            ring.released_seen.fetch_max(released, Release);
        }
        released
    }

    /// Writes `record` (header, key, value) into the claimed space at `pos`
    /// and publishes it; the caller wakes the consumer.
    #[inline]
    fn write_record(&self, pos: u64, seq: u64, len: usize, record: &Record<'_>) {
        let spec = record.spec();
        self.write_header(pos, seq, len, &spec);
        let payload = self.ring.index(pos) + RECORD_HEADER_SIZE;
        if let Some(key) = record.key {
            self.ring.mem.write(payload, key);
        }
        if let Some(value) = record.value {
            self.ring
                .mem
                .write(payload + spec.key_len.unwrap_or(0), value);
        }
        // SYNC POINT (publish): pairs with the consumer's Acquire load of the
        // state word in `RingConsumer::peek`.
        self.ring.state_word(pos).store(len as u32, Release);
    }

    /// Writes the state word (claimed) and the record header at `pos`.
    #[inline]
    pub(crate) fn write_header(&self, pos: u64, seq: u64, len: usize, spec: &RecordSpec<'_>) {
        let ring = &*self.ring;
        ring.state_word(pos)
            .store(STATE_CLAIMED | len as u32, Relaxed);
        // SYNC POINT (claimed-first): orders the claimed marker before every
        // later store to the record. It pairs with no Acquire: its reader is
        // `RingConsumer::unblock`, which runs only once this process is dead
        // (the kernel's process exit orders everything it wrote), and scans
        // state words for the first non-zero one; the fence keeps a record's
        // payload from becoming visible before its state word even to a
        // reader that is merely late, so a hole never ends early.
        fence(Release);
        let mut header = [0u8; RECORD_HEADER_SIZE - REC_KIND];
        let field = |buf: &mut [u8], at: usize, bytes: &[u8]| {
            buf[at - REC_KIND..at - REC_KIND + bytes.len()].copy_from_slice(bytes)
        };
        field(&mut header, REC_KIND, &KIND_MESSAGE.to_le_bytes());
        field(&mut header, REC_TOPIC, &spec.topic_id.to_le_bytes());
        field(&mut header, REC_SEQ, &seq.to_le_bytes());
        field(&mut header, REC_TIMESTAMP, &spec.timestamp_ms.to_le_bytes());
        field(&mut header, REC_PARTITION, &spec.partition.to_le_bytes());
        let len_or_null = |l: Option<usize>| l.map_or(NULL_LEN, |l| l as u32);
        field(
            &mut header,
            REC_KEY_LEN,
            &len_or_null(spec.key_len).to_le_bytes(),
        );
        field(
            &mut header,
            REC_VALUE_LEN,
            &len_or_null(spec.value_len).to_le_bytes(),
        );
        let headers_len = encoded_headers_len(spec.headers);
        field(
            &mut header,
            REC_HEADERS_LEN,
            &(headers_len as u32).to_le_bytes(),
        );
        let index = ring.index(pos);
        ring.mem.write(index + REC_KIND, &header);
        if headers_len > 0 {
            let mut encoded = Vec::with_capacity(headers_len);
            encode_headers(spec.headers, &mut encoded);
            let at = index
                + RECORD_HEADER_SIZE
                + spec.key_len.unwrap_or(0)
                + spec.value_len.unwrap_or(0);
            ring.mem.write(at, &encoded);
        }
    }

    /// Wakes the consumer if it announced it is parked.
    /// Also used after reading delivery reports: the consumer releases their
    /// space on its next pass.
    ///
    /// Dekker-style handshake with `RingConsumer::prepare_park`: we store the
    /// state word then read `consumer_parked`; it stores `consumer_parked` then
    /// reads the state word; the barriers on both sides (asymmetric, see
    /// `sync::producer_barrier`) guarantee at least one of us sees the
    /// other's store, so a commit is never missed.
    #[inline]
    pub(crate) fn wake_consumer(&self) {
        producer_barrier(self.ring.light_barrier);
        let parked = self.ring.consumer_parked();
        if parked.load(Relaxed) != 0 {
            futex_wake(parked, 1);
        }
    }

    /// Blocks until `ready()` holds or `deadline` passes; returns `ready()`.
    /// Woken whenever the consumer moves `released` or `outcomes`.
    pub(crate) fn wait_for_space(
        &self,
        deadline: Instant,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let ring = &*self.ring;
        loop {
            if ready() {
                return true;
            }
            // Announce ourselves, then re-check: the consumer stores
            // `released` and then reads `space_waiters` (Dekker, see
            // `RingConsumer::release`), so either it sees us or we see it.
            ring.space_waiters().fetch_add(1, SeqCst);
            fence(SeqCst);
            // SYNC POINT (space-epoch): see `free_span` in the consumer.
            let epoch = ring.space_epoch().load(Acquire);
            let done = ready();
            let now = Instant::now();
            if !done && now < deadline {
                futex_wait(ring.space_epoch(), epoch, Some(deadline - now));
            }
            ring.space_waiters().fetch_sub(1, Relaxed);
            if done {
                return true;
            }
            if Instant::now() >= deadline {
                return ready();
            }
        }
    }
}

/// A reserved record being written in place. Commit it with [`Slot::commit`];
/// dropping it without commit publishes it as aborted, so the consumer steps
/// over it and the space is reclaimed.
pub struct Slot<'a> {
    producer: &'a RingProducer,
    pos: u64,
    seq: u64,
    len: usize,
    key_len: usize,
    value_len: usize,
    done: bool,
}

impl Slot<'_> {
    /// The record's sequence number (its number in the ring).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record's stream position in the ring: how the consumer names it
    /// ([`crate::RecordView::pos`]).
    pub fn pos(&self) -> u64 {
        self.pos
    }

    fn payload_offset(&self) -> usize {
        self.producer.ring.index(self.pos) + RECORD_HEADER_SIZE
    }

    /// Copies `key` into the key area; `key.len()` must equal the reserved length.
    pub fn write_key(&mut self, key: &[u8]) {
        assert_eq!(
            key.len(),
            self.key_len,
            "key length differs from the reservation"
        );
        self.producer.ring.mem.write(self.payload_offset(), key);
    }

    /// Copies `value` into the value area; `value.len()` must equal the reserved length.
    pub fn write_value(&mut self, value: &[u8]) {
        assert_eq!(
            value.len(),
            self.value_len,
            "value length differs from the reservation"
        );
        self.producer
            .ring
            .mem
            .write(self.payload_offset() + self.key_len, value);
    }

    /// The key area, to write in place.
    #[cfg(not(loom))]
    pub fn key_mut(&mut self) -> &mut [u8] {
        let ptr = self.producer.ring.mem.data_ptr(self.payload_offset());
        // SAFETY: the range [payload, payload + key_len) lies inside this
        // record (checked by `checked_len` against the ring bounds at
        // reservation), which this slot owns exclusively until commit/abort;
        // the borrow of `self` keeps the slice from outliving the slot.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.key_len) }
    }

    /// The value area, to write in place.
    #[cfg(not(loom))]
    pub fn value_mut(&mut self) -> &mut [u8] {
        let ptr = self
            .producer
            .ring
            .mem
            .data_ptr(self.payload_offset() + self.key_len);
        // SAFETY: as for `key_mut`, for the value range.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.value_len) }
    }

    /// Publishes the record to the consumer; returns its sequence number.
    #[inline]
    pub fn commit(mut self) -> u64 {
        self.finish(self.len as u32);
        self.seq
    }

    #[inline]
    fn finish(&mut self, state: u32) {
        self.done = true;
        // SYNC POINT (publish): pairs with the consumer's Acquire load of the
        // state word in `RingConsumer::peek`; everything written into the
        // record happens-before the consumer reads it.
        self.producer
            .ring
            .state_word(self.pos)
            .store(state, Release);
        self.producer.wake_consumer();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.done {
            let ring = &self.producer.ring;
            ring.mem
                .write(ring.index(self.pos) + REC_KIND, &KIND_ABORTED.to_le_bytes());
            ring.mem.header_u64(OFF_ABORTED).fetch_add(1, Relaxed);
            self.finish(STATE_SKIP | self.len as u32);
        }
    }
}
