//! The state both halves of a ring share: its memory and its geometry.

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::consumer::RingConsumer;
use crate::layout::*;
use crate::memory::RingMemory;
use crate::producer::RingProducer;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Geometry of a ring, read once and then trusted from private memory (the
/// copy in the segment header may be scribbled on by the other process).
pub(crate) struct Ring {
    pub(crate) mem: RingMemory,
    /// Data area size; a power of two.
    pub(crate) capacity: u64,
    /// `capacity - 1`: maps a stream position to an offset in the data area.
    pub(crate) mask: u64,
    /// Largest record length (header included, before alignment).
    pub(crate) max_record: u32,
    /// Producers of this process may use the light side of the wake-up
    /// barrier (see `sync::producer_barrier`).
    pub(crate) light_barrier: bool,
    /// The client reads a delivery report for every record
    /// ([`FLAG_DELIVERY_REPORTS`]); read once at creation or open.
    pub(crate) delivery_reports: bool,
    /// The newest value of the shared `released` cursor any producer of this
    /// process has read (0 before the first read). Claims check for room
    /// against it and read the shared cursor only when it shows too little:
    /// the consumer writes that line on every release, and reading it on
    /// every claim cost the claim a cross-core miss each time it had moved
    /// (the enqueue p99 at 100k records/s). Private memory, padded so
    /// claims do not share its line with the fields above.
    pub(crate) released_seen: CachePadded<AtomicU64>,
}

impl Ring {
    pub(crate) fn new(mem: RingMemory, max_record: u32, delivery_reports: bool) -> Self {
        let capacity = mem.capacity() as u64;
        debug_assert!(capacity.is_power_of_two());
        Self {
            mem,
            capacity,
            mask: capacity - 1,
            max_record,
            light_barrier: crate::sync::producer_may_use_light_barrier(),
            delivery_reports,
            released_seen: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Offset in the data area of stream position `pos`.
    #[inline]
    pub(crate) fn index(&self, pos: u64) -> usize {
        (pos & self.mask) as usize
    }

    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.mem.header_u64(OFF_TAIL)
    }

    #[inline]
    pub(crate) fn released(&self) -> &AtomicU64 {
        self.mem.header_u64(OFF_RELEASED)
    }

    #[inline]
    pub(crate) fn outcomes(&self) -> &AtomicU64 {
        self.mem.header_u64(OFF_OUTCOMES)
    }

    #[inline]
    pub(crate) fn reports_read(&self) -> &AtomicU64 {
        self.mem.header_u64(OFF_REPORTS_READ)
    }

    #[inline]
    pub(crate) fn next_record(&self) -> &AtomicU64 {
        self.mem.header_u64(OFF_NEXT_RECORD)
    }

    #[inline]
    pub(crate) fn releasing(&self) -> &AtomicU64 {
        self.mem.header_u64(OFF_RELEASING)
    }

    #[inline]
    pub(crate) fn consumer_parked(&self) -> &AtomicU32 {
        self.mem.header_u32(OFF_CONSUMER_PARKED)
    }

    #[inline]
    pub(crate) fn space_epoch(&self) -> &AtomicU32 {
        self.mem.header_u32(OFF_SPACE_EPOCH)
    }

    #[inline]
    pub(crate) fn space_waiters(&self) -> &AtomicU32 {
        self.mem.header_u32(OFF_SPACE_WAITERS)
    }

    /// The state word of the record at stream position `pos`.
    #[inline]
    pub(crate) fn state_word(&self, pos: u64) -> &AtomicU32 {
        self.mem.data_u32(self.index(pos) + REC_STATE)
    }

    /// The delivery word of the record at stream position `pos`.
    #[inline]
    pub(crate) fn delivery_word(&self, pos: u64) -> &AtomicU32 {
        self.mem.data_u32(self.index(pos) + REC_DELIVERY)
    }

    /// Snapshot of the shared cursors for statistics and flush.
    pub(crate) fn cursors(&self) -> (u64, u64) {
        (
            // Relaxed: statistics; nothing is read through these values.
            self.tail().load(Ordering::Relaxed),
            self.released().load(Ordering::Relaxed),
        )
    }
}

/// A ring on heap memory, for tests and benchmarks within one process.
///
/// `capacity` must be a power of two between [`MIN_CAPACITY`] and
/// [`MAX_CAPACITY`] (or at least 64 under `cfg(loom)`, where models use tiny
/// rings); records are limited to half the capacity.
pub fn heap_ring(capacity: usize) -> (RingProducer, RingConsumer) {
    heap_ring_with(capacity, false)
}

/// [`heap_ring`] with or without delivery reports
/// ([`FLAG_DELIVERY_REPORTS`]).
pub fn heap_ring_with(capacity: usize, delivery_reports: bool) -> (RingProducer, RingConsumer) {
    assert!(capacity.is_power_of_two() && capacity <= MAX_CAPACITY);
    #[cfg(not(loom))]
    assert!(capacity >= MIN_CAPACITY);
    let ring = Arc::new(Ring::new(
        RingMemory::heap(capacity),
        (capacity / 2) as u32,
        delivery_reports,
    ));
    (
        RingProducer::new(Arc::clone(&ring)),
        RingConsumer::new(ring).expect("a fresh ring has consistent cursors"),
    )
}
