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
pub const LAYOUT_VERSION: u32 = 2;
/// Size of the header page that precedes the data area.
pub const HEADER_SIZE: usize = 4096;
/// Smallest data area accepted: room for a few maximum-size small records.
pub const MIN_CAPACITY: usize = 4096;
/// Largest data area accepted: record lengths must fit in [`LEN_MASK`].
pub const MAX_CAPACITY: usize = 1 << 30;
/// Every record starts on this boundary, so the state word is always aligned.
pub const RECORD_ALIGN: usize = 8;

// Header page: immutable description, written once by the creator.
// These offsets are public because they are the cross-process contract: the
// daemon's validation tests build hostile segments byte by byte from them.
/// Offset of the magic number (u64, [`MAGIC`]).
pub const OFF_MAGIC: usize = 0;
/// Offset of the layout version (u32, [`LAYOUT_VERSION`]).
pub const OFF_VERSION: usize = 8;
/// Offset of the header size (u32, [`HEADER_SIZE`]).
pub const OFF_HEADER_SIZE: usize = 12;
/// Offset of the data area size (u64, a power of two).
pub const OFF_CAPACITY: usize = 16;
/// Offset of the largest record length accepted (u32).
pub const OFF_MAX_RECORD: usize = 24;
/// Offset of the creator's pid (u32, informational).
pub const OFF_PRODUCER_PID: usize = 28;
/// Offset of the total segment size (u64, header plus data area).
pub const OFF_SEGMENT_SIZE: usize = 32;
/// Offset of the segment's option flags (u32, `FLAG_*`).
pub const OFF_FLAGS: usize = 40;
/// Flag: the client reads a delivery report for every record, and the
/// consumer keeps each record's space until the client has read its report.
pub const FLAG_DELIVERY_REPORTS: u32 = 1;
/// Offset of the ring's identity (u64): a random non-zero number the
/// daemon draws the first time it sees the ring and keeps for the ring's
/// life, so a restarted daemon knows the ring again (exactly-once progress
/// is kept per identity). Zero until then; segments of any client library
/// version start with it zero, so the field needs no new layout version.
pub const OFF_RING_ID: usize = 48;

// Header page: cursors and wake-up words, one 128-byte slot each.
/// Producers' claim cursor: total bytes ever claimed (monotonic, never wraps).
pub const OFF_TAIL: usize = 128;
/// Consumer's release cursor: bytes before it are free and zeroed.
pub const OFF_RELEASED: usize = 256;
/// Consumer's release in progress: set to the new release cursor before the
/// span up to it is zeroed, and left there. A consumer started after one
/// that died mid-release (a daemon SIGKILL) finds it ahead of `released` and
/// finishes the release, instead of waiting forever on zeroed space that
/// no producer may write. Same slot as `released`: only the consumer writes
/// either. Zero in a new segment, so older segments read as "none".
pub const OFF_RELEASING: usize = 264;
/// Consumer's outcome cursor: every record before it has its outcome
/// (delivered or failed, with the report fields) written. Ahead of
/// `released` only in rings with delivery reports, where space is released
/// once the client has read the reports. Same slot: only the consumer
/// writes it.
pub const OFF_OUTCOMES: usize = 272;
/// 1 while the consumer is parked (or about to park) on this word.
pub const OFF_CONSUMER_PARKED: usize = 384;
/// Bumped by the consumer after `released` moved while producers wait.
pub const OFF_SPACE_EPOCH: usize = 512;
/// Number of producers blocked (or about to block) on `space_epoch`.
pub const OFF_SPACE_WAITERS: usize = 516;
/// Producer-side counters (rare paths only: nothing on the hot path).
pub const OFF_ABORTED: usize = 640;
/// Offset of the count of reservations that found the ring full (u64).
pub const OFF_FULL_EVENTS: usize = 648;
/// Failure queue read cursor (producers pop).
pub const OFF_FAILQ_HEAD: usize = 768;
/// Failure queue write cursor (consumer pushes). A failure that finds the
/// queue full waits in the consumer, and its record keeps its space, until
/// the client has made room: failures are never dropped.
pub const OFF_FAILQ_TAIL: usize = 896;
/// Failures the consumer holds for want of room in the queue (u64; same
/// slot as the tail, which only the consumer writes). A client waiting for
/// every outcome waits for this to reach zero too.
pub const OFF_FAILQ_HELD: usize = 904;
/// Failure queue entries: `FAILQ_ENTRIES` x 16 bytes (seq u64, code i32, status u32).
pub const OFF_FAILQ_ENTRIES: usize = 1024;
/// Number of failure queue entries; a power of two.
pub const FAILQ_ENTRIES: usize = 64;
/// Size of one failure queue entry.
pub const FAILQ_ENTRY_SIZE: usize = 16;
/// Producers' record counter (u64): the number the next record gets.
pub const OFF_NEXT_RECORD: usize = 2048;
/// Client's report cursor (u64): the position up to which it has read the
/// delivery reports (rings with [`FLAG_DELIVERY_REPORTS`] only). Untrusted
/// by the consumer: a bogus value can only release the client's own records
/// before it read their reports.
pub const OFF_REPORTS_READ: usize = 2176;

const _: () = assert!(OFF_FAILQ_ENTRIES + FAILQ_ENTRIES * FAILQ_ENTRY_SIZE <= OFF_NEXT_RECORD);
const _: () = assert!(OFF_REPORTS_READ + 128 <= HEADER_SIZE);

// Record format. The state word encodes who owns the record:
//   0                      unwritten (free space is always zeroed)
//   CLAIMED | len          a producer owns it and is writing
//   len                    committed message: the consumer may read it
//   SKIP | len             padding at the wrap, or an aborted reservation
/// Set while a producer writes the record.
pub const STATE_CLAIMED: u32 = 1 << 31;
/// Padding or aborted: the consumer steps over it without reading further.
pub const STATE_SKIP: u32 = 1 << 30;
/// Record length (header + payload, before alignment).
pub const LEN_MASK: u32 = (1 << 30) - 1;

// Record header fields (offsets from the record start).
/// State word (u32): claimed / committed / skip flags and the length.
pub const REC_STATE: usize = 0;
/// Delivery outcome the daemon writes (see [`crate::Delivery`]).
pub const REC_DELIVERY: usize = 4;
/// Record kind (u16): [`KIND_MESSAGE`] or [`KIND_ABORTED`].
pub const REC_KIND: usize = 8;
/// Topic id (u32).
pub const REC_TOPIC: usize = 12;
/// Sequence number (u64): the record's number in its ring, from the
/// producers' record counter; how the client names the record.
pub const REC_SEQ: usize = 16;
/// Create time in ms since the epoch (i64).
pub const REC_TIMESTAMP: usize = 24;
/// Partition (i32) or [`PARTITION_UNASSIGNED`].
pub const REC_PARTITION: usize = 32;
/// Key length (u32) or [`NULL_LEN`].
pub const REC_KEY_LEN: usize = 36;
/// Value length (u32) or [`NULL_LEN`].
pub const REC_VALUE_LEN: usize = 40;
/// Length of the encoded header block (u32).
pub const REC_HEADERS_LEN: usize = 44;
/// Size of a record header; key, value and headers follow in that order.
pub const RECORD_HEADER_SIZE: usize = 48;

// The delivery report. Once the consumer has set the outcome in
// `REC_DELIVERY` (published through `OFF_OUTCOMES`), the header fields the
// consumer no longer needs hold the report instead:
/// Timestamp the broker stored (i64 ms; the create time unless the topic
/// uses log-append time), in place of `REC_TIMESTAMP`.
pub const REP_TIMESTAMP: usize = REC_TIMESTAMP;
/// Partition the record went to (i32), in place of `REC_PARTITION`.
pub const REP_PARTITION: usize = REC_PARTITION;
/// Error code (i32, 0 when delivered), in place of the key length.
pub const REP_ERROR: usize = REC_KEY_LEN;
/// Offset in the partition (i64, -1 when failed), in place of the value and
/// header lengths.
pub const REP_OFFSET: usize = REC_VALUE_LEN;

/// `kind` of a message record.
pub const KIND_MESSAGE: u16 = 1;
/// `kind` of a reservation dropped without commit.
pub const KIND_ABORTED: u16 = 3;

/// Most headers one record may carry. Each header the daemon hands to
/// librdkafka costs it an allocation of its own held until the record is
/// acknowledged, while it costs the producer as little as 6 ring bytes: the
/// bound keeps that ratio from turning a ring into many times its size in
/// the daemon's memory. Kafka sets no limit; records with more than a few
/// dozen headers are rare.
pub const MAX_HEADERS_PER_RECORD: usize = 1024;

/// Length value meaning "null" (Kafka distinguishes a null key from an empty one).
pub const NULL_LEN: u32 = u32::MAX;

/// Partition value meaning "let the partitioner choose".
pub const PARTITION_UNASSIGNED: i32 = -1;

/// Rounds `len` up to the record alignment.
pub const fn align_record(len: usize) -> usize {
    (len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}
