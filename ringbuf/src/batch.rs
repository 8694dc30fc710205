//! Batch reservation: one claim for many records, each written in place,
//! committed together or one by one.
//!
//! The zero-copy counterpart of `RingProducer::send_batch`: a single
//! compare-exchange on the tail claims room for every record, their headers
//! are written at once, and the caller fills keys and values where they
//! will be read. Each record is published by its own state word, so the
//! consumer can take the first records of a batch while later ones are
//! still being written; records dropped without commit become aborted
//! records, as with a single `Slot`.

use crate::error::ReserveError;
use crate::layout::*;
use crate::producer::{RingProducer, WhenFull};
use crate::record::RecordSpec;
use crate::sync::Ordering::{Relaxed, Release};

/// One record of a batch.
#[derive(Debug, Clone, Copy)]
struct Entry {
    pos: u64,
    len: usize,
    key_len: usize,
    value_len: usize,
    committed: bool,
}

/// Records reserved together by [`RingProducer::reserve_batch`]. Dropping it
/// aborts the records not committed.
pub struct BatchSlot<'a> {
    producer: &'a RingProducer,
    entries: Vec<Entry>,
    first_seq: u64,
}

impl RingProducer {
    /// Reserves room for one record per spec with a single claim, writes
    /// their headers and numbers them consecutively; fill keys and values
    /// in place, then [`BatchSlot::commit`] (or commit each with
    /// [`BatchSlot::commit_one`]). The batch may take at most half the ring.
    pub fn reserve_batch(
        &self,
        specs: &[RecordSpec<'_>],
        when_full: WhenFull,
    ) -> Result<BatchSlot<'_>, ReserveError> {
        let mut lens = Vec::with_capacity(specs.len());
        let mut total = 0usize;
        for spec in specs {
            let len = self.checked_len(spec)?;
            lens.push(len);
            total += align_record(len);
        }
        let half = self.ring.capacity as usize / 2;
        if total > half {
            return Err(ReserveError::TooLarge {
                len: total,
                max: half,
            });
        }
        let mut pos = self.claim(total, when_full)?;
        let first_seq = self.take_record_numbers(specs.len() as u64);
        let mut entries = Vec::with_capacity(specs.len());
        for ((seq, spec), len) in (first_seq..).zip(specs).zip(lens) {
            self.write_header(pos, seq, len, spec);
            entries.push(Entry {
                pos,
                len,
                key_len: spec.key_len.unwrap_or(0),
                value_len: spec.value_len.unwrap_or(0),
                committed: false,
            });
            pos += align_record(len) as u64;
        }
        Ok(BatchSlot {
            producer: self,
            entries,
            first_seq,
        })
    }
}

impl BatchSlot<'_> {
    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sequence number of record `i` (the first plus `i`).
    pub fn seq(&self, i: usize) -> u64 {
        assert!(
            i < self.entries.len(),
            "record {i} of {}",
            self.entries.len()
        );
        self.first_seq + i as u64
    }

    fn payload_offset(&self, i: usize) -> usize {
        self.producer.ring.index(self.entries[i].pos) + RECORD_HEADER_SIZE
    }

    /// Copies `key` into record `i`'s key area (its reserved length).
    pub fn write_key(&mut self, i: usize, key: &[u8]) {
        let entry = self.uncommitted(i);
        assert_eq!(
            key.len(),
            entry.key_len,
            "key length differs from the reservation"
        );
        self.producer.ring.mem.write(self.payload_offset(i), key);
    }

    /// Copies `value` into record `i`'s value area (its reserved length).
    pub fn write_value(&mut self, i: usize, value: &[u8]) {
        let entry = self.uncommitted(i);
        assert_eq!(
            value.len(),
            entry.value_len,
            "value length differs from the reservation"
        );
        let at = self.payload_offset(i) + entry.key_len;
        self.producer.ring.mem.write(at, value);
    }

    /// Record `i`'s key area, to write in place.
    #[cfg(not(loom))]
    pub fn key_mut(&mut self, i: usize) -> &mut [u8] {
        let entry = self.uncommitted(i);
        let ptr = self.producer.ring.mem.data_ptr(self.payload_offset(i));
        // SAFETY: [payload, payload + key_len) lies inside record `i`
        // (checked against the ring bounds at reservation), which this
        // batch owns exclusively until it is committed or aborted; the
        // borrow of `self` keeps the slice from outliving the batch.
        unsafe { std::slice::from_raw_parts_mut(ptr, entry.key_len) }
    }

    /// Record `i`'s value area, to write in place.
    #[cfg(not(loom))]
    pub fn value_mut(&mut self, i: usize) -> &mut [u8] {
        let entry = self.uncommitted(i);
        let ptr = self
            .producer
            .ring
            .mem
            .data_ptr(self.payload_offset(i) + entry.key_len);
        // SAFETY: as for `key_mut`, for the value range.
        unsafe { std::slice::from_raw_parts_mut(ptr, entry.value_len) }
    }

    /// Publishes record `i` on its own; the others stay reserved.
    pub fn commit_one(&mut self, i: usize) {
        let entry = self.uncommitted(i);
        self.publish(i, entry.len as u32);
        self.producer.wake_consumer();
    }

    /// Publishes every record not yet committed; returns the first
    /// sequence number.
    pub fn commit(mut self) -> u64 {
        for i in 0..self.entries.len() {
            if !self.entries[i].committed {
                self.publish(i, self.entries[i].len as u32);
            }
        }
        self.producer.wake_consumer();
        self.first_seq
    }

    fn uncommitted(&self, i: usize) -> Entry {
        let entry = self.entries[i];
        assert!(
            !entry.committed,
            "record {i} of the batch is already committed"
        );
        entry
    }

    fn publish(&mut self, i: usize, state: u32) {
        self.entries[i].committed = true;
        // SYNC POINT (publish): pairs with the consumer's Acquire load of
        // the state word in `RingConsumer::peek`; everything written into
        // the record happens-before the consumer reads it.
        self.producer
            .ring
            .state_word(self.entries[i].pos)
            .store(state, Release);
    }
}

impl Drop for BatchSlot<'_> {
    fn drop(&mut self) {
        let mut aborted = false;
        for i in 0..self.entries.len() {
            let entry = self.entries[i];
            if entry.committed {
                continue;
            }
            let ring = &self.producer.ring;
            ring.mem.write(
                ring.index(entry.pos) + REC_KIND,
                &KIND_ABORTED.to_le_bytes(),
            );
            ring.mem.header_u64(OFF_ABORTED).fetch_add(1, Relaxed);
            self.publish(i, STATE_SKIP | entry.len as u32);
            aborted = true;
        }
        if aborted {
            self.producer.wake_consumer();
        }
    }
}
