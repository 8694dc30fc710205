//! Delivery reports: each record's outcome, for producers created with
//! [`crate::ProducerOptions::delivery_reports`].
//!
//! The daemon writes a record's outcome into the record itself, in the
//! shared ring, and keeps its space until this process has read it; reports
//! come in the order records were committed (see `shmkafka_ringbuf`'s
//! report module). Three ways to read them, which can be mixed:
//! [`crate::Producer::poll_reports`] (with an optional `u64` opaque per
//! record, as librdkafka's `msg_opaque`), and a future per record from
//! [`crate::Producer::send_async`], resolved by a thread that reads the
//! reports while such futures are outstanding.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use shmkafka_ringbuf::{ReportReader, RingProducer};

/// Reports read by the future-resolving thread (or by a `send` waiting for
/// room) for records sent without a future, waiting for
/// [`crate::Producer::poll_reports`]. At this bound they stop reading, so an
/// application that never polls is held back at `send` (its ring fills)
/// instead of growing this queue. `flush` reads past it: it must see every
/// outcome, and the application asked for them.
pub(crate) const MAX_UNCLAIMED: usize = 1 << 16;

/// librdkafka's `RD_KAFKA_RESP_ERR__DESTROY`: the outcome of a record whose
/// producer was closed before its report arrived.
const ERR_DESTROY: i32 = -197;

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp the broker stored (ms since the epoch): the create time
    /// unless the topic uses log-append time.
    pub timestamp_ms: i64,
}

/// Whether a failed record may be in the log anyway (librdkafka's
/// `rd_kafka_msg_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Never reached the broker's log: safe to send again.
    NotPersisted,
    /// Sent, but its acknowledgement never came: it may be in the log.
    PossiblyPersisted,
    /// In the log.
    Persisted,
}

impl Persistence {
    fn from_byte(byte: u8) -> Self {
        match byte {
            0 => Self::NotPersisted,
            2 => Self::Persisted,
            _ => Self::PossiblyPersisted,
        }
    }
}

/// Why a record was not delivered. It is also in the daemon's dead-letter
/// spool, under the same sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryError {
    /// librdkafka's error code (`rd_kafka_resp_err_t`).
    pub code: i32,
    /// Whether it may be in the log anyway.
    pub persistence: Persistence,
    /// Partition it was meant for (-1 if none was chosen).
    pub partition: i32,
}

impl DeliveryError {
    /// librdkafka's name for the code, e.g. `_MSG_TIMED_OUT`.
    pub fn name(&self) -> &'static str {
        crate::error_name(self.code)
    }

    /// librdkafka's description, e.g. "Local: Message timed out".
    pub fn description(&self) -> &'static str {
        crate::error_description(self.code)
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code, self.description())
    }
}

impl std::error::Error for DeliveryError {}

/// One record's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The record's sequence number (what `send` returned).
    pub seq: u64,
    /// The opaque given to [`crate::Producer::send_with_opaque`], if any.
    pub opaque: Option<u64>,
    /// Topic name.
    pub topic: Arc<str>,
    /// Where it landed, or why it did not.
    pub result: Result<Delivered, DeliveryError>,
}

/// The outcome of one record sent with [`crate::Producer::send_async`].
#[must_use = "a future does nothing unless awaited"]
pub struct DeliveryFuture {
    seq: u64,
    receiver: oneshot::Receiver<Result<Delivered, DeliveryError>>,
}

impl DeliveryFuture {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Future for DeliveryFuture {
    type Output = Result<Delivered, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx).map(|outcome| {
            outcome.unwrap_or(Err(DeliveryError {
                code: ERR_DESTROY,
                persistence: Persistence::PossiblyPersisted,
                partition: -1,
            }))
        })
    }
}

/// Who waits for a record's report besides `poll_reports`.
enum Waiter {
    Opaque(u64),
    Future(oneshot::Sender<Result<Delivered, DeliveryError>>),
}

struct State {
    reader: ReportReader,
    /// Records sent with an opaque or a future, by sequence number.
    waiters: HashMap<u64, Waiter>,
    /// See [`MAX_UNCLAIMED`].
    unclaimed: VecDeque<DeliveryReport>,
}

/// The report side of a producer.
pub(crate) struct Reports {
    ring: RingProducer,
    state: Mutex<State>,
    /// Topic names by id, for the reports.
    topic_names: Mutex<Vec<Arc<str>>>,
}

impl Reports {
    pub(crate) fn new(ring: RingProducer) -> Option<Self> {
        let reader = ring.report_reader()?;
        Some(Self {
            ring,
            state: Mutex::new(State {
                reader,
                waiters: HashMap::new(),
                unclaimed: VecDeque::new(),
            }),
            topic_names: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn add_topic(&self, id: u32, name: &str) {
        let mut names = lock(&self.topic_names);
        if names.len() <= id as usize {
            names.resize(id as usize + 1, Arc::from(""));
        }
        names[id as usize] = Arc::from(name);
    }

    /// Notes that record `seq`, committed after this call, is waited for.
    /// Called between reserving the record (which gives its number) and
    /// committing it, so its report cannot be read before.
    pub(crate) fn expect_opaque(&self, seq: u64, opaque: u64) {
        lock(&self.state)
            .waiters
            .insert(seq, Waiter::Opaque(opaque));
    }

    /// As [`Reports::expect_opaque`], with a future to resolve.
    pub(crate) fn expect_future(&self, seq: u64) -> DeliveryFuture {
        let (sender, receiver) = oneshot::channel();
        lock(&self.state)
            .waiters
            .insert(seq, Waiter::Future(sender));
        DeliveryFuture { seq, receiver }
    }

    /// Calls `each` with up to `max` reports, waiting up to `timeout` for the
    /// first; returns how many reports were served. Reports of records sent
    /// with a future resolve it instead. `each` runs without any lock held,
    /// so it may send.
    pub(crate) fn poll(
        &self,
        timeout: Duration,
        max: usize,
        each: &mut dyn FnMut(DeliveryReport),
    ) -> usize {
        if max == 0 {
            return 0;
        }
        let deadline = Instant::now() + timeout;
        let mut batch = Vec::new();
        loop {
            let served = {
                let mut state = lock(&self.state);
                let take = state.unclaimed.len().min(max);
                batch.extend(state.unclaimed.drain(..take));
                take + self.read_locked(&mut state, max - take, &mut |r| batch.push(r))
            };
            batch.drain(..).for_each(&mut *each);
            if served > 0 || !self.wait_until(deadline) {
                return served;
            }
        }
    }

    /// For the future-resolving thread: reads what is ready, resolving
    /// futures and keeping other reports for `poll`, then waits up to
    /// `timeout` for more. Returns whether it read anything.
    pub(crate) fn resolve_futures(&self, timeout: Duration) -> bool {
        let read = self.take_ready(MAX_UNCLAIMED);
        if read == 0 {
            self.wait_until(Instant::now() + timeout);
        }
        read > 0
    }

    /// Reads the reports that are ready, keeping at most `keep` for `poll`
    /// ([`MAX_UNCLAIMED`] for a bound, `usize::MAX` for none) and resolving
    /// futures, so that their records' space goes back to the ring. For the
    /// future-resolving thread, for a `send` waiting for room on the thread
    /// that would poll, and for `flush`.
    pub(crate) fn take_ready(&self, keep: usize) -> usize {
        let mut state = lock(&self.state);
        let mut read = 0;
        loop {
            let room = keep.saturating_sub(state.unclaimed.len());
            let mut kept = Vec::new();
            let now = self.read_locked(&mut state, room.min(4096), &mut |r| kept.push(r));
            state.unclaimed.extend(kept);
            read += now;
            if now < 4096 {
                return read;
            }
        }
    }

    /// Reads up to `max` reports with the state locked; those of records
    /// with a future resolve it, the others go to `each`. Returns how many
    /// went to `each` (plus futures resolved).
    fn read_locked(
        &self,
        state: &mut State,
        max: usize,
        each: &mut dyn FnMut(DeliveryReport),
    ) -> usize {
        let names = lock(&self.topic_names).clone();
        let State {
            reader, waiters, ..
        } = state;
        reader.read(max, |raw| {
            let result = if raw.delivered {
                Ok(Delivered {
                    partition: raw.partition,
                    offset: raw.offset,
                    timestamp_ms: raw.timestamp_ms,
                })
            } else {
                Err(DeliveryError {
                    code: raw.error_code,
                    persistence: Persistence::from_byte(raw.persistence),
                    partition: raw.partition,
                })
            };
            let opaque = match waiters.remove(&raw.seq) {
                Some(Waiter::Future(sender)) => {
                    // The future may have been dropped: nobody wants it.
                    let _ = sender.send(result);
                    return;
                }
                Some(Waiter::Opaque(opaque)) => Some(opaque),
                None => None,
            };
            each(DeliveryReport {
                seq: raw.seq,
                opaque,
                topic: names
                    .get(raw.topic_id as usize)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
                result,
            });
        })
    }

    /// Waits until a report may be ready or `deadline` passes; returns
    /// whether it is worth reading again.
    fn wait_until(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let next = {
            let state = lock(&self.state);
            if !state.unclaimed.is_empty() {
                // Another thread kept reports for us meanwhile.
                return true;
            }
            state.reader.position()
        };
        self.ring.wait_outcomes(next + 1, deadline - now)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data stays consistent across a panic in a callback.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
