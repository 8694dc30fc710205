//! Byte layout of a segment: the header page and the record format.
//!
//! Everything that lives in shared memory is described here as offsets, never
//! as pointers, so both processes agree on it whatever their address space.
//!
//! ```text
//! segment = [ header page (HEADER_SIZE) | data area (capacity bytes, power of two) ]
//! ```
//!
//! Each cursor sits in its own 128-byte slot: 64-byte lines plus the adjacent
//! line prefetcher of x86 (crossbeam's `CachePadded` uses 128 for the same
//! reason), so producers bumping `tail` never invalidate the line the daemon
//! writes `released` to.

/// `"SHMKRING"` in little-endian: the first word of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKRING");
/// Bumped whenever any offset or record field below changes meaning.
pub const LAYOUT_VERSION: u32 = 1;
/// Size of the header page that precedes the data area.
pub const HEADER_SIZE: usize = 4096;
/// Smallest data area accepted: room for a few maximum-size small records.
pub const MIN_CAPACITY: usize = 4096;
/// Largest data area accepted: record lengths must fit in [`LEN_MASK`].
pub const MAX_CAPACITY: usize = 1 << 30;
/// Every record starts on this boundary, so the state word is always aligned.
pub const RECORD_ALIGN: usize = 8;

// Header page: immutable description, written once by the creator.
pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_SIZE: usize = 12;
pub(crate) const OFF_CAPACITY: usize = 16;
pub(crate) const OFF_MAX_RECORD: usize = 24;
pub(crate) const OFF_PRODUCER_PID: usize = 28;
pub(crate) const OFF_SEGMENT_SIZE: usize = 32;

// Header page: cursors and wake-up words, one 128-byte slot each.
/// Producers' claim cursor: total bytes ever claimed (monotonic, never wraps).
pub(crate) const OFF_TAIL: usize = 128;
/// Consumer's release cursor: bytes before it are free and zeroed.
pub(crate) const OFF_RELEASED: usize = 256;
/// 1 while the consumer is parked (or about to park) on this word.
pub(crate) const OFF_CONSUMER_PARKED: usize = 384;
/// Bumped by the consumer after `released` moved while producers wait.
pub(crate) const OFF_SPACE_EPOCH: usize = 512;
/// Number of producers blocked (or about to block) on `space_epoch`.
pub(crate) const OFF_SPACE_WAITERS: usize = 516;
/// Producer-side counters (rare paths only: nothing on the hot path).
pub(crate) const OFF_ABORTED: usize = 640;
pub(crate) const OFF_FULL_EVENTS: usize = 648;
/// Failure queue read cursor (producers pop).
pub(crate) const OFF_FAILQ_HEAD: usize = 768;
/// Failure queue write cursor (consumer pushes).
pub(crate) const OFF_FAILQ_TAIL: usize = 896;
/// Failures that did not fit in the queue (they are still spooled by the daemon).
pub(crate) const OFF_FAILQ_OVERFLOW: usize = 904;
/// Failure queue entries: `FAILQ_ENTRIES` x 16 bytes (seq u64, code i32, status u32).
pub(crate) const OFF_FAILQ_ENTRIES: usize = 1024;
/// Number of failure queue entries; a power of two.
pub const FAILQ_ENTRIES: usize = 64;
pub(crate) const FAILQ_ENTRY_SIZE: usize = 16;

const _: () = assert!(OFF_FAILQ_ENTRIES + FAILQ_ENTRIES * FAILQ_ENTRY_SIZE <= HEADER_SIZE);

// Record format. The state word encodes who owns the record:
//   0                      unwritten (free space is always zeroed)
//   CLAIMED | len          a producer owns it and is writing
//   len                    committed message: the consumer may read it
//   SKIP | len             padding at the wrap, or an aborted reservation
/// Set while a producer writes the record.
pub(crate) const STATE_CLAIMED: u32 = 1 << 31;
/// Padding or aborted: the consumer steps over it without reading further.
pub(crate) const STATE_SKIP: u32 = 1 << 30;
/// Record length (header + payload, before alignment).
pub(crate) const LEN_MASK: u32 = (1 << 30) - 1;

/// Record header fields (offsets from the record start).
pub(crate) const REC_STATE: usize = 0;
/// Delivery outcome the daemon writes (see [`crate::Delivery`]).
pub(crate) const REC_DELIVERY: usize = 4;
pub(crate) const REC_KIND: usize = 8;
pub(crate) const REC_TOPIC: usize = 12;
pub(crate) const REC_SEQ: usize = 16;
pub(crate) const REC_TIMESTAMP: usize = 24;
pub(crate) const REC_PARTITION: usize = 32;
pub(crate) const REC_KEY_LEN: usize = 36;
pub(crate) const REC_VALUE_LEN: usize = 40;
pub(crate) const REC_HEADERS_LEN: usize = 44;
/// Size of a record header; key, value and headers follow in that order.
pub const RECORD_HEADER_SIZE: usize = 48;

/// `kind` of a message record.
pub(crate) const KIND_MESSAGE: u16 = 1;
/// `kind` of a reservation dropped without commit.
pub(crate) const KIND_ABORTED: u16 = 3;

/// Length value meaning "null" (Kafka distinguishes a null key from an empty one).
pub(crate) const NULL_LEN: u32 = u32::MAX;

/// Partition value meaning "let the partitioner choose".
pub const PARTITION_UNASSIGNED: i32 = -1;

/// Rounds `len` up to the record alignment.
pub(crate) const fn align_record(len: usize) -> usize {
    (len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}
