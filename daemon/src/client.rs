//! A registered client, as the control side and the drain side share it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use shmkafka_ringbuf::Segment;

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
    /// Topic names by client-chosen id; `None` where unregistered or refused.
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

impl Client {
    /// A new registration.
    pub fn new(id: u64, name: String, pid: u32, uid: u32, segment: Segment) -> Self {
        Self {
            id,
            name,
            pid,
            uid,
            segment,
            topics: RwLock::new(Vec::new()),
            topics_version: AtomicU64::new(0),
            disconnected: AtomicBool::new(false),
            pidfd: crate::sys::pidfd_open(pid),
            counters: ClientCounters::default(),
        }
    }

    /// Binds `id` to `name` (`None` marks a refused id).
    pub fn bind_topic(&self, id: u32, name: Option<Arc<str>>) {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let index = id as usize;
        if topics.len() <= index {
            topics.resize(index + 1, None);
        }
        topics[index] = name;
        // SYNC POINT (topics-version): pairs with the Acquire load in
        // `topics_version`; a drain thread that sees the new version then
        // reads the table (under the lock) with this binding in it.
        self.topics_version.fetch_add(1, Ordering::Release);
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
