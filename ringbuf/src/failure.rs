//! The small daemon-to-client queue of failed records.
//!
//! Single producer (the consumer side of the ring, i.e. the daemon), many
//! consumers (any thread of the client). Entries live in the header page.
//! The daemon treats the client's read cursor as untrusted: a bogus value
//! makes the queue look full, never makes the daemon write out of bounds.
//! A failure that finds the queue full is not dropped: the consumer keeps
//! it, and its record's space, until the client has read older ones.

use crate::layout::*;
use crate::ring::Ring;
use crate::sync::Ordering::{Acquire, Relaxed, Release};

/// A record the daemon could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Sequence number the producer got for the record.
    pub seq: u64,
    /// Error code (librdkafka's `rd_kafka_resp_err_t` for broker errors).
    pub code: i32,
    /// Whether the broker may have persisted it anyway (0 no, 1 possibly, 2 yes).
    pub persistence: u32,
}

const MASK: u64 = FAILQ_ENTRIES as u64 - 1;

fn entry_offset(index: u64) -> usize {
    OFF_FAILQ_ENTRIES + (index & MASK) as usize * FAILQ_ENTRY_SIZE
}

/// Appends a failure; `false` when the queue is full (the caller keeps it
/// and tries again once the client has read some).
pub(crate) fn push(ring: &Ring, failure: Failure) -> bool {
    let mem = &ring.mem;
    let tail = mem.header_u64(OFF_FAILQ_TAIL).load(Relaxed);
    // SYNC POINT (failq-free): pairs with the Release half of the client's
    // compare_exchange in `pop`, so the slot it gave back is no longer read.
    let head = mem.header_u64(OFF_FAILQ_HEAD).load(Acquire);
    let used = tail.wrapping_sub(head);
    if used >= FAILQ_ENTRIES as u64 {
        return false;
    }
    let off = entry_offset(tail);
    mem.header_u64(off).store(failure.seq, Relaxed);
    let packed = (failure.code as u32 as u64) | ((failure.persistence as u64) << 32);
    mem.header_u64(off + 8).store(packed, Relaxed);
    // SYNC POINT (failq-publish): pairs with the Acquire load of the tail in
    // `pop`, which then sees the entry written above.
    // Wrapping: both cursors live in shared memory, and a client that sets
    // them near u64::MAX must not make the daemon panic on overflow (debug
    // builds); found by the ring_consumer fuzz target.
    mem.header_u64(OFF_FAILQ_TAIL)
        .store(tail.wrapping_add(1), Release);
    true
}

/// Publishes how many failures the consumer holds back.
pub(crate) fn set_held(ring: &Ring, held: u64) {
    // SYNC POINT (failq-held): pairs with the Acquire load in `held`; the
    // failures pushed before (published by their tail stores) are visible
    // to a client that sees the new count.
    ring.mem.header_u64(OFF_FAILQ_HELD).store(held, Release);
}

/// How many failures the consumer holds back (see [`OFF_FAILQ_HELD`]).
pub(crate) fn held(ring: &Ring) -> u64 {
    // SYNC POINT (failq-held): see `set_held`.
    ring.mem.header_u64(OFF_FAILQ_HELD).load(Acquire)
}

/// Takes the oldest failure, if any.
pub(crate) fn pop(ring: &Ring) -> Option<Failure> {
    let mem = &ring.mem;
    loop {
        let head = mem.header_u64(OFF_FAILQ_HEAD).load(Relaxed);
        // SYNC POINT (failq-publish): see `push`.
        let tail = mem.header_u64(OFF_FAILQ_TAIL).load(Acquire);
        if head == tail || tail.wrapping_sub(head) > FAILQ_ENTRIES as u64 {
            return None;
        }
        let off = entry_offset(head);
        let seq = mem.header_u64(off).load(Relaxed);
        let packed = mem.header_u64(off + 8).load(Relaxed);
        // SYNC POINT (failq-free): Release pairs with the daemon's Acquire
        // load of the head in `push`; the entry was read before.
        if mem
            .header_u64(OFF_FAILQ_HEAD)
            // Wrapping, as in `push`: the cursors are shared memory.
            .compare_exchange(head, head.wrapping_add(1), Release, Relaxed)
            .is_ok()
        {
            return Some(Failure {
                seq,
                code: packed as u32 as i32,
                persistence: (packed >> 32) as u32,
            });
        }
    }
}
