//! The bytes a ring lives in, and the only place that turns offsets into
//! references.
//!
//! In production the memory is a mapped segment; in unit and property tests it
//! is a heap allocation with the same layout; under `cfg(loom)` it is a set of
//! loom atomics, one per 4-byte word, so the model checker sees every access
//! (loom cannot track plain memory that is also accessed atomically). The
//! ring algorithm above this module is the same code in all three cases.

use crate::layout::HEADER_SIZE;
use crate::sync::{AtomicU32, AtomicU64};

#[cfg(not(loom))]
pub(crate) use real::RingMemory;

#[cfg(loom)]
pub(crate) use model::RingMemory;

#[cfg(not(loom))]
mod real {
    use super::*;
    use crate::layout::RECORD_ALIGN;
    use std::ptr::NonNull;

    /// Keeps the storage behind the raw pointers alive (never read: it is
    /// only dropped).
    #[allow(dead_code)]
    pub(crate) enum Backing {
        /// A shared mapping of a memfd segment.
        Mapping(memmap2::MmapRaw),
        /// Heap memory for tests and benchmarks inside one process. A `Vec`,
        /// not a `Box`: moving a `Box` asserts unique access to its memory,
        /// which would invalidate `base` under the aliasing model (miri
        /// flags it); moving a `Vec` keeps pointers from `as_mut_ptr` valid.
        Heap(Vec<u64>),
    }

    /// Header page and data area of one ring.
    pub(crate) struct RingMemory {
        // Invariant: `base` points at HEADER_SIZE + capacity bytes, aligned to
        // at least 8, valid for reads and writes for as long as `_backing`.
        base: NonNull<u8>,
        capacity: usize,
        _backing: Backing,
    }

    // SAFETY: all access through `RingMemory` is either atomic (cursors, state
    // words) or to byte ranges whose exclusive owner is decided by the ring
    // protocol (a producer between claim and commit, the consumer between
    // commit and release). The struct holds no thread-bound state.
    unsafe impl Send for RingMemory {}
    // SAFETY: as for `Send`; shared references only hand out atomics or do
    // copies the protocol makes exclusive.
    unsafe impl Sync for RingMemory {}

    impl RingMemory {
        /// Heap memory with the segment layout, zeroed.
        pub(crate) fn heap(capacity: usize) -> Self {
            let words = (HEADER_SIZE + capacity) / 8;
            let mut storage = vec![0u64; words];
            let base = NonNull::new(storage.as_mut_ptr().cast::<u8>()).expect("vec is non-null");
            Self {
                base,
                capacity,
                _backing: Backing::Heap(storage),
            }
        }

        /// Memory of a mapped segment.
        ///
        /// # Safety
        /// `mapping` must be at least `HEADER_SIZE + capacity` bytes long and
        /// its file must not be able to shrink while mapped (sealed).
        pub(crate) unsafe fn mapped(mapping: memmap2::MmapRaw, capacity: usize) -> Self {
            debug_assert!(mapping.len() >= HEADER_SIZE + capacity);
            let base = NonNull::new(mapping.as_mut_ptr()).expect("mapping is non-null");
            Self {
                base,
                capacity,
                _backing: Backing::Mapping(mapping),
            }
        }

        pub(crate) fn capacity(&self) -> usize {
            self.capacity
        }

        /// An atomic u64 of the header page.
        #[inline]
        pub(crate) fn header_u64(&self, off: usize) -> &AtomicU64 {
            assert!(off.is_multiple_of(8) && off + 8 <= HEADER_SIZE);
            // SAFETY: in bounds and 8-aligned (checked above; base is at least
            // page or u64 aligned); AtomicU64 has the layout of u64 and every
            // access to this word goes through an atomic.
            unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
        }

        /// An atomic u32 of the header page.
        #[inline]
        pub(crate) fn header_u32(&self, off: usize) -> &AtomicU32 {
            assert!(off.is_multiple_of(4) && off + 4 <= HEADER_SIZE);
            // SAFETY: in bounds and 4-aligned (checked above).
            unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
        }

        /// Writes header bytes; only while the segment is not yet shared.
        pub(crate) fn header_write(&self, off: usize, src: &[u8]) {
            assert!(off + src.len() <= HEADER_SIZE);
            // SAFETY: in bounds; called only by the creator before sharing.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(off), src.len())
            }
        }

        /// The atomic u32 at `off` in the data area (a record's state or
        /// delivery word).
        #[inline]
        pub(crate) fn data_u32(&self, off: usize) -> &AtomicU32 {
            debug_assert!(off.is_multiple_of(4) && off + 4 <= self.capacity);
            assert!(off + 4 <= self.capacity);
            // SAFETY: in bounds (checked) and 4-aligned (records start on
            // RECORD_ALIGN boundaries and the word offsets are multiples of 4).
            unsafe { &*self.data_ptr(off).cast::<AtomicU32>() }
        }

        /// Raw pointer to `off` in the data area.
        #[inline]
        pub(crate) fn data_ptr(&self, off: usize) -> *mut u8 {
            debug_assert!(off <= self.capacity);
            // SAFETY: `off <= capacity`, so the result is within (or one past)
            // the allocation.
            unsafe { self.base.as_ptr().add(HEADER_SIZE + off) }
        }

        /// Copies `src` to `off` in the data area.
        #[inline]
        pub(crate) fn write(&self, off: usize, src: &[u8]) {
            assert!(off <= self.capacity && src.len() <= self.capacity - off);
            // SAFETY: the range is in bounds (checked); the caller owns it
            // under the ring protocol (claimed and not yet committed), so no
            // other party accesses it concurrently.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data_ptr(off), src.len()) }
        }

        /// Copies bytes at `off` in the data area into `dst`.
        #[inline]
        pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
            assert!(off <= self.capacity && dst.len() <= self.capacity - off);
            // SAFETY: in bounds (checked); the range belongs to a committed
            // record the consumer owns until release. A hostile producer may
            // still scribble on it: the copy then yields garbage values, which
            // the caller validates, never a memory-safety violation.
            unsafe {
                std::ptr::copy_nonoverlapping(self.data_ptr(off), dst.as_mut_ptr(), dst.len())
            }
        }

        /// Zeroes `len` bytes at `off` in the data area.
        #[inline]
        pub(crate) fn zero(&self, off: usize, len: usize) {
            assert!(off <= self.capacity && len <= self.capacity - off);
            debug_assert!(off.is_multiple_of(RECORD_ALIGN));
            // SAFETY: in bounds (checked); the range was released by the
            // consumer and is not yet visible to producers (released is
            // published after this).
            unsafe { std::ptr::write_bytes(self.data_ptr(off), 0, len) }
        }
    }
}

#[cfg(loom)]
mod model {
    use super::*;
    use crate::sync::Ordering::Relaxed;

    /// The loom model of a ring's memory: every 4-byte data word and every
    /// header word is its own loom atomic. Plain copies become relaxed
    /// per-word accesses, so a missing happens-before edge shows up as a
    /// stale value that the model's assertions catch.
    pub(crate) struct RingMemory {
        header64: Box<[AtomicU64]>,
        header32: Box<[AtomicU32]>,
        data: Box<[AtomicU32]>,
        capacity: usize,
    }

    impl RingMemory {
        pub(crate) fn heap(capacity: usize) -> Self {
            Self {
                header64: (0..HEADER_SIZE / 8).map(|_| AtomicU64::new(0)).collect(),
                header32: (0..HEADER_SIZE / 4).map(|_| AtomicU32::new(0)).collect(),
                data: (0..capacity / 4).map(|_| AtomicU32::new(0)).collect(),
                capacity,
            }
        }
        pub(crate) fn capacity(&self) -> usize {
            self.capacity
        }
        pub(crate) fn header_u64(&self, off: usize) -> &AtomicU64 {
            &self.header64[off / 8]
        }
        pub(crate) fn header_u32(&self, off: usize) -> &AtomicU32 {
            &self.header32[off / 4]
        }
        pub(crate) fn data_u32(&self, off: usize) -> &AtomicU32 {
            assert!(off.is_multiple_of(4));
            &self.data[off / 4]
        }
        pub(crate) fn write(&self, off: usize, src: &[u8]) {
            assert!(off + src.len() <= self.capacity);
            let mut done = 0;
            while done < src.len() {
                let at = off + done;
                let (word, shift) = (at / 4, at % 4);
                let n = (4 - shift).min(src.len() - done);
                // A whole-word write needs no read of the old value; skipping
                // it keeps the model's state space to the accesses the real
                // copy makes.
                let mut bytes = if n == 4 {
                    [0; 4]
                } else {
                    self.data[word].load(Relaxed).to_le_bytes()
                };
                bytes[shift..shift + n].copy_from_slice(&src[done..done + n]);
                self.data[word].store(u32::from_le_bytes(bytes), Relaxed);
                done += n;
            }
        }
        pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
            assert!(off + dst.len() <= self.capacity);
            let mut done = 0;
            while done < dst.len() {
                let at = off + done;
                let (word, shift) = (at / 4, at % 4);
                let n = (4 - shift).min(dst.len() - done);
                let bytes = self.data[word].load(Relaxed).to_le_bytes();
                dst[done..done + n].copy_from_slice(&bytes[shift..shift + n]);
                done += n;
            }
        }
        pub(crate) fn zero(&self, off: usize, len: usize) {
            assert!(off.is_multiple_of(4) && len.is_multiple_of(4));
            for word in &self.data[off / 4..(off + len) / 4] {
                word.store(0, Relaxed);
            }
        }
        /// Asserts that the `len` bytes a claim took at `off` (wrapping
        /// at the end of the area) read as zero: a claim whose view of
        /// the consumer's zeroes lacks a happens-before edge can read the
        /// record that was there before, which the model then reports.
        pub(crate) fn assert_zeroed(&self, off: usize, len: usize) {
            for i in 0..len / 4 {
                let word = (off / 4 + i) % self.data.len();
                assert_eq!(
                    self.data[word].load(Relaxed),
                    0,
                    "claimed space at byte {} not yet zeroed for this producer",
                    word * 4
                );
            }
        }
    }
}
