//! One small error enum per operation.

use thiserror::Error;

/// Why a reservation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// The ring has no room now; the daemon frees space as the broker acknowledges.
    #[error("ring full: {needed} bytes needed, {free} free of {capacity}")]
    Full {
        /// Bytes the reservation needs (record plus any wrap padding).
        needed: usize,
        /// Bytes free at the time of the attempt.
        free: usize,
        /// Ring capacity.
        capacity: usize,
    },
    /// The record can never fit: it exceeds the ring's record limit.
    #[error("record of {len} bytes exceeds this ring's limit of {max} bytes")]
    TooLarge {
        /// Encoded record length.
        len: usize,
        /// Largest record the ring accepts.
        max: usize,
    },
    /// Too many headers, or a header name or value exceeds the encodable
    /// length.
    #[error("a record carries more than 1024 headers, a header name longer than 65535 bytes or a value longer than 4 GiB")]
    HeaderTooLarge,
    /// The cursors in shared memory are inconsistent (tail behind released or
    /// more than a capacity ahead): the segment was corrupted.
    #[error("ring cursors corrupted: tail {tail}, released {released}")]
    Corrupted {
        /// Tail cursor read.
        tail: u64,
        /// Released cursor read.
        released: u64,
    },
}

/// Why the consumer could not read the record at its position.
///
/// The ring is written by another process and may contain anything; each
/// variant names the check that failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The length is smaller than a record header or not even a state word.
    #[error("record at {pos} has length {len}, shorter than its header")]
    TooShort {
        /// Stream position of the record.
        pos: u64,
        /// Length found.
        len: u32,
    },
    /// The record would run past the end of the data area.
    #[error("record at {pos} of length {len} runs past the end of the ring")]
    PastEnd {
        /// Stream position of the record.
        pos: u64,
        /// Length found.
        len: u32,
    },
    /// The record lies beyond what producers have claimed.
    #[error("record at {pos} of length {len} extends beyond the tail {tail}")]
    BeyondTail {
        /// Stream position of the record.
        pos: u64,
        /// Length found.
        len: u32,
        /// Tail cursor read.
        tail: u64,
    },
    /// The record is larger than the ring's declared limit.
    #[error("record at {pos} of length {len} exceeds the limit {max}")]
    TooLarge {
        /// Stream position of the record.
        pos: u64,
        /// Length found.
        len: u32,
        /// Declared limit.
        max: u32,
    },
    /// The kind field holds no known kind.
    #[error("record at {pos} has unknown kind {kind}")]
    UnknownKind {
        /// Stream position of the record.
        pos: u64,
        /// Kind found.
        kind: u16,
    },
    /// Key, value and header lengths do not add up to the record length.
    #[error("record at {pos}: field lengths do not add up to the record length {len}")]
    FieldLengths {
        /// Stream position of the record.
        pos: u64,
        /// Record length found.
        len: u32,
    },
    /// The header block is malformed (or holds more than
    /// [`crate::layout::MAX_HEADERS_PER_RECORD`] headers).
    #[error("malformed header block")]
    BadHeaders,
    /// The cursors are inconsistent.
    #[error("ring cursors corrupted: tail {tail}, released {released}")]
    CursorsCorrupted {
        /// Tail cursor read.
        tail: u64,
        /// Released cursor read.
        released: u64,
    },
}
