//! A registered client, as the control side and the drain side share it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use shmkafka_ringbuf::Segment;

/// Most topic ids one client may bind: ids are indices into a per-client
/// table, so the bound is what that table can cost (one pointer per id).
pub const MAX_TOPICS_PER_CLIENT: usize = 4096;

/// A topic id beyond [`MAX_TOPICS_PER_CLIENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("topic id {id} exceeds the limit of {MAX_TOPICS_PER_CLIENT} topics per client")]
pub struct TopicIdOutOfRange {
    /// The id asked for.
    pub id: u32,
}

/// Counters of one client, read by status and metrics.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Records handed to librdkafka.
    pub produced: AtomicU64,
    /// Records acknowledged by the broker.
    pub delivered: AtomicU64,
    /// Records failed permanently.
    pub failed: AtomicU64,
    /// Records written to the dead-letter spool.
    pub spooled: AtomicU64,
    /// The ring held garbage and is no longer drained.
    pub quarantined: AtomicBool,
}

/// One client process's registration.
pub struct Client {
    /// Daemon-assigned id, unique for this daemon's lifetime.
    pub id: u64,
    /// The label the client gave.
    pub name: String,
    /// Peer pid from `SO_PEERCRED`.
    pub pid: u32,
    /// Peer uid.
    pub uid: u32,
    /// The mapped ring.
    pub segment: Segment,
    /// The ring's identity, kept in its header across daemon restarts.
    pub ring_id: u64,
    /// Topic names by client-chosen id; `None` where unregistered or refused.
    /// Never longer than [`MAX_TOPICS_PER_CLIENT`].
    topics: RwLock<Vec<Option<Arc<str>>>>,
    /// Bumped on every change of `topics`, so drain threads refresh lazily.
    topics_version: AtomicU64,
    /// The control connection closed (EOF): no new topics, and once the
    /// process is gone, holes may be padded.
    disconnected: AtomicBool,
    /// pidfd of the peer, readable once it exits (None if pidfd_open failed).
    pidfd: Option<OwnedFd>,
    /// Counters.
    pub counters: ClientCounters,
}

/// A random non-zero ring identity (see `OFF_RING_ID`).
fn new_ring_id() -> u64 {
    loop {
        // The kernel's generator does not fail once it is seeded, which it
        // is long before a daemon starts; a clock-derived value would still
        // be unique per ring in practice.
        let id = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        if id != 0 {
            return id;
        }
    }
}

impl Client {
    /// A new registration.
    pub fn new(id: u64, name: String, pid: u32, uid: u32, segment: Segment) -> Self {
        Self {
            id,
            name,
            pid,
            uid,
            ring_id: segment.identity_or(new_ring_id()),
            segment,
            topics: RwLock::new(Vec::new()),
            topics_version: AtomicU64::new(0),
            disconnected: AtomicBool::new(false),
            pidfd: crate::sys::pidfd_open(pid),
            counters: ClientCounters::default(),
        }
    }

    /// Binds `id` to `name` (`None` marks a refused id). The id comes from
    /// the client and indexes a table: it is checked against
    /// [`MAX_TOPICS_PER_CLIENT`] before anything is allocated.
    pub fn bind_topic(&self, id: u32, name: Option<Arc<str>>) -> Result<(), TopicIdOutOfRange> {
        let index = id as usize;
        if index >= MAX_TOPICS_PER_CLIENT {
            return Err(TopicIdOutOfRange { id });
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics.len() <= index {
            topics.resize(index + 1, None);
        }
        topics[index] = name;
        // SYNC POINT (topics-version): pairs with the Acquire load in
        // `topics_version`; a drain thread that sees the new version then
        // reads the table (under the lock) with this binding in it.
        self.topics_version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Bytes of the mapped segment (header page plus ring): what this
    /// client counts against its uid's `limits.max_mapped_bytes_per_uid`.
    pub fn mapped_bytes(&self) -> u64 {
        (shmkafka_ringbuf::layout::HEADER_SIZE + self.segment.capacity()) as u64
    }

    /// Number of topic ids bound so far.
    pub fn topic_count(&self) -> usize {
        self.topics.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Version of the topic table.
    pub fn topics_version(&self) -> u64 {
        // SYNC POINT (topics-version): see `bind_topic`.
        self.topics_version.load(Ordering::Acquire)
    }

    /// Copy of the topic table.
    pub fn topics(&self) -> Vec<Option<Arc<str>>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records that the control connection closed.
    pub fn mark_disconnected(&self) {
        // SYNC POINT (disconnected): pairs with the Acquire load in
        // `is_disconnected`: a drain thread that sees the flag also sees
        // every topic the connection bound before it closed.
        self.disconnected.store(true, Ordering::Release);
    }

    /// Whether the control connection closed.
    pub fn is_disconnected(&self) -> bool {
        // SYNC POINT (disconnected): see `mark_disconnected`.
        self.disconnected.load(Ordering::Acquire)
    }

    /// The peer's pidfd, readable once the process has exited.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// Whether the ring outlived its connection while its process lives on:
    /// it keeps its place (and counts against its uid's quota) until the
    /// process exits or everything in it is drained.
    pub fn is_orphaned(&self) -> bool {
        self.is_disconnected() && !self.process_exited()
    }

    /// Whether the client process has exited, which is what allows padding
    /// over a record it claimed and never committed. Without a pidfd, falls
    /// back to probing the pid (which could be reused: conservative only in
    /// that a reused pid keeps the hole waiting).
    pub fn process_exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            }
            None => {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None).is_err()
            }
        }
    }
}
