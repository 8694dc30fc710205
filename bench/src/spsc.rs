//! The baseline: the least a cross-process hand-off of messages can do.
//!
//! A plain single-producer single-consumer byte ring in a shared memfd:
//! length-prefixed frames, the producer writing each byte once and the
//! consumer reading it once. The tail is published once per
//! [`PUBLISH_BYTES`] of frames (and before waiting for room), not per frame:
//! a store per frame would make the consumer chase the tail's cache line
//! once per record, which no batching hand-off pays. The consumer gives
//! space back the same way, once per [`PUBLISH_BYTES`] it has read: giving
//! it back only after draining everything visible would leave a producer
//! that filled the ring waiting for the whole ring to be read, so the two
//! would take turns instead of overlapping. No claim atomics, no record
//! header, no zeroing.
//! Whatever the shmkafka ring costs on top of this is the price of being
//! multi-producer, per-record, self-describing and crash-tolerant.
//!
//! ```text
//! memfd = [ head (u64) @0 | tail (u64) @128 | ... | data @4096 (capacity, power of two) ]
//! frame = [ len: u32 | pad: u32 | payload | pad to 8 ]   len == WRAP: skip to the next lap
//!
//! The payload starts 8-aligned, as a ring record's value does: a copy to a
//! misaligned address costs the producer several times more per byte here.
//! ```

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{ensure, Context};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

const OFF_HEAD: usize = 0;
/// Own 128-byte slot, as in the shmkafka header: no false sharing with `head`.
const OFF_TAIL: usize = 128;
const DATA: usize = 4096;
const WRAP: u32 = u32::MAX;
const ALIGN: u64 = 8;
/// Frames are published in batches of about this many bytes.
pub const PUBLISH_BYTES: u64 = 4096;

/// A mapped SPSC ring (either side).
pub struct SpscRing {
    map: memmap2::MmapRaw,
    capacity: u64,
    file: File,
}

impl SpscRing {
    /// Creates a ring with a `capacity`-byte data area in a new memfd.
    pub fn create(capacity: usize) -> anyhow::Result<Self> {
        ensure!(capacity.is_power_of_two() && capacity >= 4096, "capacity");
        let fd = memfd_create(c"shmkafka-bench-spsc", MemFdCreateFlag::MFD_CLOEXEC)
            .context("memfd_create")?;
        let file = File::from(fd);
        file.set_len((DATA + capacity) as u64)
            .context("ftruncate")?;
        Self::map(file, capacity, true)
    }

    /// Maps a ring created by [`SpscRing::create`] in another process.
    pub fn open(fd: OwnedFd, capacity: usize) -> anyhow::Result<Self> {
        let file = File::from(fd);
        let len = file.metadata().context("fstat")?.len();
        ensure!(len == (DATA + capacity) as u64, "spsc memfd size {len}");
        Self::map(file, capacity, false)
    }

    /// Maps as a shmkafka segment is mapped: the creator (the producer)
    /// populates its mapping, the other side faults pages in as it reads.
    fn map(file: File, capacity: usize, populate: bool) -> anyhow::Result<Self> {
        let mut options = memmap2::MmapOptions::new();
        options.len(DATA + capacity);
        if populate {
            options.populate();
        }
        let map = options.map_raw(&file).context("mmap")?;
        Ok(SpscRing {
            map,
            capacity: capacity as u64,
            file,
        })
    }

    /// The memfd, to pass to the other process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= DATA);
        // SAFETY: `off` is 8-aligned inside the header page of a live,
        // page-aligned mapping; both processes access this word only
        // atomically.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU64>() }
    }

    fn data(&self, index: u64) -> *mut u8 {
        debug_assert!(index <= self.capacity);
        // SAFETY: `index <= capacity`, so the pointer stays within (or one
        // past) the mapping.
        unsafe { self.map.as_mut_ptr().add(DATA + index as usize) }
    }

    /// The producer half; there must be only one.
    pub fn producer(&self) -> SpscProducer<'_> {
        let tail = self.word(OFF_TAIL).load(Ordering::Relaxed);
        SpscProducer {
            ring: self,
            tail,
            published: tail,
            head_cache: self.word(OFF_HEAD).load(Ordering::Acquire),
        }
    }

    /// The consumer half; there must be only one.
    pub fn consumer(&self) -> SpscConsumer<'_> {
        SpscConsumer {
            ring: self,
            head: self.word(OFF_HEAD).load(Ordering::Relaxed),
        }
    }
}

/// Bytes before the payload.
const FRAME_HEADER: u64 = 8;

fn frame_len(payload: usize) -> u64 {
    (FRAME_HEADER + payload as u64).div_ceil(ALIGN) * ALIGN
}

/// Writes frames; spins while the ring is full.
pub struct SpscProducer<'a> {
    ring: &'a SpscRing,
    tail: u64,
    /// The tail the consumer can see.
    published: u64,
    head_cache: u64,
}

impl SpscProducer<'_> {
    /// Copies `payload` into the ring as one frame.
    pub fn push(&mut self, payload: &[u8]) {
        let ring = self.ring;
        let need = frame_len(payload.len());
        assert!(need <= ring.capacity / 2, "frame too large");
        let index = self.tail & (ring.capacity - 1);
        let to_end = ring.capacity - index;
        let total = if need <= to_end { need } else { to_end + need };
        let mut backoff = crate::handoff::Backoff::default();
        if self.tail + total - self.head_cache > ring.capacity {
            // The consumer frees room only for what it can see.
            self.flush();
        }
        while self.tail + total - self.head_cache > ring.capacity {
            // SYNC POINT: pairs with the consumer's Release store of head.
            self.head_cache = ring.word(OFF_HEAD).load(Ordering::Acquire);
            if self.tail + total - self.head_cache > ring.capacity {
                backoff.snooze();
            }
        }
        let mut index = index;
        if need > to_end {
            // SAFETY: `index + 4 <= capacity` (to_end >= 8); the range is
            // free (between tail and head + capacity), owned by us.
            unsafe { self.ring.data(index).cast::<u32>().write(WRAP) };
            self.tail += to_end;
            index = 0;
        }
        // SAFETY: `index + need <= capacity` (checked above) and the range
        // lies in free space this producer owns until it publishes the tail.
        unsafe {
            ring.data(index).cast::<u32>().write(payload.len() as u32);
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                ring.data(index + FRAME_HEADER),
                payload.len(),
            );
        }
        self.tail += need;
        if self.tail - self.published >= PUBLISH_BYTES {
            self.flush();
        }
    }

    /// Publishes every frame pushed so far.
    pub fn flush(&mut self) {
        if self.published != self.tail {
            // SYNC POINT: pairs with the consumer's Acquire load of tail.
            self.ring.word(OFF_TAIL).store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
    }
}

/// Reads frames in place.
pub struct SpscConsumer<'a> {
    ring: &'a SpscRing,
    head: u64,
}

impl SpscConsumer<'_> {
    /// Lets the producer reuse everything read so far.
    fn give_back(&self) {
        // SYNC POINT: pairs with the producer's Acquire load of head.
        self.ring.word(OFF_HEAD).store(self.head, Ordering::Release);
    }

    /// Hands every frame published so far to `f`, then gives the space back.
    /// Returns the number of frames.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> u64 {
        let ring = self.ring;
        // SYNC POINT: pairs with the producer's Release store of tail.
        let tail = ring.word(OFF_TAIL).load(Ordering::Acquire);
        let mut frames = 0;
        let mut given_back = self.head;
        while self.head < tail {
            let index = self.head & (ring.capacity - 1);
            // SAFETY: the frame at head was published by the tail store we
            // acquired; index is 8-aligned and < capacity.
            let len = unsafe { ring.data(index).cast::<u32>().read() };
            if len == WRAP {
                self.head += ring.capacity - index;
                continue;
            }
            let len = len as u64;
            assert!(index + FRAME_HEADER + len <= ring.capacity, "corrupt frame");
            // SAFETY: in bounds (checked above); the producer does not touch
            // the frame until we publish a head past it.
            let payload = unsafe {
                std::slice::from_raw_parts(ring.data(index + FRAME_HEADER), len as usize)
            };
            f(payload);
            self.head += frame_len(len as usize);
            frames += 1;
            if self.head - given_back >= PUBLISH_BYTES {
                self.give_back();
                given_back = self.head;
            }
        }
        if self.head != given_back {
            self.give_back();
        }
        frames
    }
}
