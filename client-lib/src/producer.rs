//! The application's handle: one ring, one control connection, and a
//! supervisor thread that re-registers the ring when the daemon restarts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmkafka_protocol::{validate_topic_name, TopicBinding};
use shmkafka_ringbuf::{
    BatchSlot, Failure, Header, Record, RecordSpec, ReserveError, RingProducer, Segment,
    SegmentOptions, Slot, WhenFull,
};

use crate::connection::{self, Connection};
use crate::delivery::{DeliveryFuture, DeliveryReport, Reports};
use crate::error::Error;
use crate::message::Message;

/// Default ring size: at 100 MB/s of records and 100 ms of acknowledgement
/// latency a ring holds 10 MB in flight; 64 MiB leaves room for bursts and
/// broker hiccups of about half a second at that rate.
pub const DEFAULT_RING_CAPACITY: usize = 64 << 20;
/// Default record limit, matching Kafka's default `message.max.bytes` (1 MB).
pub const DEFAULT_MAX_RECORD_LEN: usize = 1 << 20;
/// Default wait on a full ring, as Kafka's `max.block.ms`.
pub const DEFAULT_MAX_BLOCK: Duration = Duration::from_secs(60);
/// Reconnect backoff bounds while the daemon is away.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// How to connect.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Daemon socket; `None` uses `$SHMKAFKA_SOCKET` or `/run/shmkafka/shmkafkad.sock`.
    pub socket_path: Option<PathBuf>,
    /// Ring size in bytes (power of two). Size it as record rate x
    /// acknowledgement latency, with headroom for broker outages.
    pub ring_capacity: usize,
    /// Largest record (key + value + headers + 48 bytes of framing).
    pub max_record_len: usize,
    /// What `send` and `reserve` do on a full ring.
    pub when_full: WhenFull,
    /// Label shown in the daemon's logs, metrics and status.
    pub client_name: String,
    /// Read a delivery report for every record ([`Producer::poll_reports`],
    /// [`Producer::send_async`]). The daemon then keeps each record's ring
    /// space until its report has been read: an application that stops
    /// reading reports fills its ring and is held back at `send`.
    pub delivery_reports: bool,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            socket_path: None,
            ring_capacity: DEFAULT_RING_CAPACITY,
            max_record_len: DEFAULT_MAX_RECORD_LEN,
            when_full: WhenFull::Block(DEFAULT_MAX_BLOCK),
            client_name: std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "shmkafka-client".to_owned()),
            delivery_reports: false,
        }
    }
}

/// A registered topic; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    id: u32,
    name: Arc<str>,
}

impl Topic {
    /// Topic name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What `flush` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Records that failed permanently since the last `flush` or `failures`
    /// call (they are also in the daemon's dead-letter spool).
    pub failures: Vec<Failure>,
}

/// Counters of this producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Ring capacity in bytes.
    pub capacity: u64,
    /// Bytes written and not yet acknowledged (ring fill).
    pub unacknowledged_bytes: u64,
    /// Reservations dropped without commit.
    pub aborted: u64,
    /// Times the ring was found full.
    pub full_events: u64,
    /// Whether the daemon is registered right now.
    pub connected: bool,
    /// Successful registrations after the first.
    pub reconnects: u64,
    /// The daemon's id for this client in the current registration.
    pub client_id: Option<u64>,
}

struct Shared {
    segment: Segment,
    ring: RingProducer,
    path: PathBuf,
    options: ProducerOptions,
    /// The live connection; `None` while the daemon is away.
    connection: Mutex<Option<Connection>>,
    /// Topic ids in use, in id order (ids are dense from 0).
    topics: Mutex<Vec<TopicBinding>>,
    closing: AtomicBool,
    reconnects: AtomicU64,
    /// Wakes the supervisor early on close.
    wake: (Mutex<()>, Condvar),
    /// With [`ProducerOptions::delivery_reports`].
    reports: Option<Reports>,
    /// Reads reports to resolve futures; started by the first `send_async`.
    resolver: Mutex<Option<JoinHandle<()>>>,
    /// Failures taken from the ring's queue by `flush` (to make room for
    /// more while it waits) and not yet handed out.
    failures_taken: Mutex<Vec<Failure>>,
}

impl<'a> RecordLayout<'a> {
    /// The ring's description of this record for `topic`, stamped `now`
    /// unless it has a timestamp.
    fn spec(&self, topic: &Topic, now: i64) -> RecordSpec<'a> {
        RecordSpec {
            topic_id: topic.id,
            partition: self
                .partition
                .unwrap_or(shmkafka_ringbuf::PARTITION_UNASSIGNED),
            timestamp_ms: self.timestamp_ms.unwrap_or(now),
            key_len: self.key_len,
            value_len: self.value_len,
            headers: self.headers,
        }
    }
}

/// The shape of a record to write in place with [`Producer::reserve_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordLayout<'a> {
    /// Key length, or `None` for a null key.
    pub key_len: Option<usize>,
    /// Value length, or `None` for a null value.
    pub value_len: Option<usize>,
    /// Partition, or `None` to let the partitioner choose.
    pub partition: Option<i32>,
    /// Create time in ms since the epoch; `None` for now.
    pub timestamp_ms: Option<i64>,
    /// Headers, copied in at reservation.
    pub headers: &'a [Header<'a>],
}

/// A producer: `Send + Sync`, so all threads of a process can share one.
pub struct Producer {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
}

/// Create time for records that do not set one. `CLOCK_REALTIME_COARSE`
/// is a vDSO read of the last tick (accurate to 1-4 ms, the kernel's tick),
/// about 6x cheaper than `CLOCK_REALTIME` on the hot path; Kafka timestamps
/// are milliseconds.
fn now_ms() -> i64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_REALTIME_COARSE) {
        Ok(ts) => ts.tv_sec() * 1000 + ts.tv_nsec() / 1_000_000,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    }
}

impl Producer {
    /// Connects to the daemon at the default socket with default options.
    pub fn connect() -> Result<Producer, Error> {
        Self::connect_with(ProducerOptions::default())
    }

    /// Connects to the daemon at `path` with default options.
    pub fn connect_to(path: impl Into<PathBuf>) -> Result<Producer, Error> {
        Self::connect_with(ProducerOptions {
            socket_path: Some(path.into()),
            ..ProducerOptions::default()
        })
    }

    /// Creates the ring and registers it with the daemon.
    pub fn connect_with(options: ProducerOptions) -> Result<Producer, Error> {
        let path = connection::resolve_path(options.socket_path.as_deref());
        let segment = Segment::create(&SegmentOptions {
            capacity: options.ring_capacity,
            max_record_len: options.max_record_len.min(options.ring_capacity / 2),
            name: format!("shmkafka:{}", options.client_name),
            delivery_reports: options.delivery_reports,
        })?;
        let conn = connection::register(&path, &segment, &options.client_name, &[])?;
        let reports = Reports::new(segment.producer());
        let shared = Arc::new(Shared {
            reports,
            resolver: Mutex::new(None),
            failures_taken: Mutex::new(Vec::new()),
            ring: segment.producer(),
            segment,
            path,
            options,
            connection: Mutex::new(Some(conn)),
            topics: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let supervisor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("shmkafka-supervisor".into())
                .spawn(move || supervise(&shared))
                .map_err(|e| Error::Protocol(format!("cannot start supervisor thread: {e}")))?
        };
        Ok(Producer {
            shared,
            supervisor: Some(supervisor),
        })
    }

    /// Registers `name` with the daemon (which checks its allowlist) and
    /// returns a handle for `send`. Registering the same name again returns
    /// the same topic.
    pub fn topic(&self, name: &str) -> Result<Topic, Error> {
        validate_topic_name(name).map_err(|e| Error::InvalidTopic {
            topic: name.to_owned(),
            message: e.to_string(),
        })?;
        let mut topics = lock(&self.shared.topics);
        if let Some(t) = topics.iter().find(|t| t.name == name) {
            return Ok(Topic {
                id: t.id,
                name: name.into(),
            });
        }
        let id = topics.len() as u32;
        {
            let connection = lock(&self.shared.connection);
            let conn = connection.as_ref().ok_or(Error::Disconnected)?;
            conn.register_topic(id, name)?;
        }
        topics.push(TopicBinding {
            id,
            name: name.to_owned(),
        });
        if let Some(reports) = &self.shared.reports {
            reports.add_topic(id, name);
        }
        Ok(Topic {
            id,
            name: name.into(),
        })
    }

    /// Copies `message` into the ring; returns its sequence number. The
    /// record is delivered even if this process exits right after.
    pub fn send(&self, topic: &Topic, message: &Message<'_>) -> Result<u64, Error> {
        let record = Record {
            topic_id: topic.id,
            partition: message
                .partition
                .unwrap_or(shmkafka_ringbuf::PARTITION_UNASSIGNED),
            timestamp_ms: message.timestamp_ms.unwrap_or_else(now_ms),
            key: message.key,
            value: message.value,
            headers: &message.headers,
        };
        self.with_room(|when_full| self.shared.ring.send(&record, when_full))
    }

    /// As [`Producer::send`], and the record's delivery report carries
    /// `opaque` (as librdkafka's `msg_opaque`). Needs
    /// [`ProducerOptions::delivery_reports`].
    pub fn send_with_opaque(
        &self,
        topic: &Topic,
        message: &Message<'_>,
        opaque: u64,
    ) -> Result<u64, Error> {
        let reports = self.reports()?;
        let slot = self.reserve_message(topic, message)?;
        reports.expect_opaque(slot.seq(), opaque);
        Ok(slot.commit())
    }

    /// As [`Producer::send`], returning a future that resolves to where the
    /// record landed, or why it did not, once the broker has answered. A
    /// thread of this producer reads the reports for the futures; reports
    /// of records sent otherwise wait for [`Producer::poll_reports`]. Needs
    /// [`ProducerOptions::delivery_reports`].
    pub fn send_async(
        &self,
        topic: &Topic,
        message: &Message<'_>,
    ) -> Result<DeliveryFuture, Error> {
        let reports = self.reports()?;
        self.start_resolver()?;
        let slot = self.reserve_message(topic, message)?;
        let future = reports.expect_future(slot.seq());
        slot.commit();
        Ok(future)
    }

    /// Calls `each` with up to `max` delivery reports, oldest first (in the
    /// order records were committed), waiting up to `timeout` for the first;
    /// returns how many reports were served (those of `send_async` records
    /// resolve their futures instead). Reading reports gives their records'
    /// ring space back. `each` may send. Needs
    /// [`ProducerOptions::delivery_reports`].
    pub fn poll_reports(
        &self,
        timeout: Duration,
        max: usize,
        mut each: impl FnMut(DeliveryReport),
    ) -> Result<usize, Error> {
        Ok(self.reports()?.poll(timeout, max, &mut each))
    }

    /// Reserves room for a record with a key of `key_len` and a value of
    /// `value_len` bytes (`None`: null) to be written in place, then
    /// committed with [`Reservation::commit`]. Dropping the reservation
    /// aborts it.
    pub fn reserve(
        &self,
        topic: &Topic,
        key_len: Option<usize>,
        value_len: Option<usize>,
        partition: Option<i32>,
    ) -> Result<Reservation<'_>, Error> {
        self.reserve_with(
            topic,
            &RecordLayout {
                key_len,
                value_len,
                partition,
                ..RecordLayout::default()
            },
        )
    }

    /// Reserves room for a record shaped like `layout` (headers and
    /// timestamp included) to be written in place, then committed with
    /// [`Reservation::commit`]. Dropping the reservation aborts it.
    pub fn reserve_with(
        &self,
        topic: &Topic,
        layout: &RecordLayout<'_>,
    ) -> Result<Reservation<'_>, Error> {
        let spec = layout.spec(topic, now_ms());
        let slot = self.with_room(|when_full| self.shared.ring.reserve(&spec, when_full))?;
        Ok(Reservation { slot })
    }

    /// Reserves room for one record per layout with a single claim (one
    /// atomic for the whole batch), to be written in place and committed
    /// together ([`BatchReservation::commit`]) or one by one. Dropping the
    /// batch aborts what was not committed. The batch may take at most half
    /// the ring.
    pub fn reserve_batch(
        &self,
        topic: &Topic,
        layouts: &[RecordLayout<'_>],
    ) -> Result<BatchReservation<'_>, Error> {
        let now = now_ms();
        let specs: Vec<RecordSpec<'_>> = layouts.iter().map(|l| l.spec(topic, now)).collect();
        let batch =
            self.with_room(|when_full| self.shared.ring.reserve_batch(&specs, when_full))?;
        Ok(BatchReservation { batch })
    }

    /// Copies `messages` into the ring with a single claim and commits them;
    /// returns the first sequence number (the others follow it). All or
    /// none: the batch may take at most half the ring.
    pub fn send_batch(&self, topic: &Topic, messages: &[Message<'_>]) -> Result<u64, Error> {
        let now = now_ms();
        let records: Vec<Record<'_>> = messages
            .iter()
            .map(|message| Record {
                topic_id: topic.id,
                partition: message
                    .partition
                    .unwrap_or(shmkafka_ringbuf::PARTITION_UNASSIGNED),
                timestamp_ms: message.timestamp_ms.unwrap_or(now),
                key: message.key,
                value: message.value,
                headers: &message.headers,
            })
            .collect();
        self.with_room(|when_full| self.shared.ring.send_batch(&records, when_full))
    }

    /// Reserves and fills `message`, uncommitted: its number is known before
    /// anyone can read its report.
    fn reserve_message(&self, topic: &Topic, message: &Message<'_>) -> Result<Slot<'_>, Error> {
        let spec = RecordSpec {
            topic_id: topic.id,
            partition: message
                .partition
                .unwrap_or(shmkafka_ringbuf::PARTITION_UNASSIGNED),
            timestamp_ms: message.timestamp_ms.unwrap_or_else(now_ms),
            key_len: message.key.map(<[u8]>::len),
            value_len: message.value.map(<[u8]>::len),
            headers: &message.headers,
        };
        let mut slot = self.with_room(|when_full| self.shared.ring.reserve(&spec, when_full))?;
        if let Some(key) = message.key {
            slot.write_key(key);
        }
        if let Some(value) = message.value {
            slot.write_value(value);
        }
        Ok(slot)
    }

    /// Runs `claim` (a send or reservation) as `ProducerOptions::when_full`
    /// says. While it waits for room it takes failures from the ring's queue
    /// (kept for `failures` and `flush`) and ready delivery reports (kept
    /// for `poll_reports`, up to a bound): the ring's space waits for them,
    /// and the thread blocked here may be the one that would read them.
    fn with_room<T>(
        &self,
        mut claim: impl FnMut(WhenFull) -> Result<T, ReserveError>,
    ) -> Result<T, Error> {
        const TAKE_FAILURES_EVERY: Duration = Duration::from_millis(10);
        let WhenFull::Block(timeout) = self.shared.options.when_full else {
            return Ok(claim(WhenFull::Fail)?);
        };
        // The first claim reads no clock: it returns at once unless the ring
        // is full (two clock reads were a fifth of a 64 B send).
        let first_wait = timeout.min(TAKE_FAILURES_EVERY);
        match claim(WhenFull::Block(first_wait)) {
            Err(ReserveError::Full { .. }) if !timeout.is_zero() => {}
            result => return Ok(result?),
        }
        // What is left of the timeout (none, if the first wait took it all:
        // then the loop still takes failures and reports once and claims
        // again without waiting). A timeout too long for the clock waits
        // without end.
        let rest = timeout - first_wait;
        let deadline = std::time::Instant::now().checked_add(rest);
        loop {
            let ring = &self.shared.ring;
            lock(&self.shared.failures_taken).extend(std::iter::from_fn(|| ring.pop_failure()));
            if let Some(reports) = &self.shared.reports {
                reports.take_ready(crate::delivery::MAX_UNCLAIMED);
            }
            let left = deadline.map_or(rest, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            match claim(WhenFull::Block(left.min(TAKE_FAILURES_EVERY))) {
                Err(ReserveError::Full { .. }) if !left.is_zero() => {}
                result => return Ok(result?),
            }
        }
    }

    fn reports(&self) -> Result<&Reports, Error> {
        self.shared.reports.as_ref().ok_or(Error::ReportsNotEnabled)
    }

    /// Starts the thread that resolves `send_async` futures, once.
    fn start_resolver(&self) -> Result<(), Error> {
        let mut resolver = lock(&self.shared.resolver);
        if resolver.is_some() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("shmkafka-reports".into())
            .spawn(move || {
                let reports = shared.reports.as_ref().expect("checked by send_async");
                // SYNC POINT (closing): see `Producer::stop`.
                while !shared.closing.load(Ordering::Acquire) {
                    reports.resolve_futures(Duration::from_millis(100));
                }
            })
            .map_err(|e| Error::Protocol(format!("cannot start report thread: {e}")))?;
        *resolver = Some(handle);
        Ok(())
    }

    /// Waits until every record sent before this call is acknowledged by the
    /// broker or reported failed, for at most `timeout`. With delivery
    /// reports, the reports are kept for [`Producer::poll_reports`] (taken
    /// into this producer's memory while it waits: about 64 bytes each).
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, Error> {
        // The daemon holds failures that do not fit in the ring's queue and
        // stops draining a ring with many: take them as they come, or the
        // records behind them would never finish.
        const TAKE_FAILURES_EVERY: Duration = Duration::from_millis(10);
        let ring = &self.shared.ring;
        let target = ring.tail();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let slice = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(TAKE_FAILURES_EVERY);
            let done = ring.wait_outcomes(target, slice);
            // Read before the queue: failures counted as held are in the
            // queue or still held, never neither.
            let held = ring.failures_held();
            lock(&self.shared.failures_taken).extend(std::iter::from_fn(|| ring.pop_failure()));
            if let Some(reports) = &self.shared.reports {
                // The daemon tracks a bounded number of unreleased records
                // per ring: unread reports would stop it short of `target`.
                reports.take_ready(usize::MAX);
            }
            if done && held == 0 {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::FlushTimeout {
                    timeout,
                    pending_bytes: target.saturating_sub(ring.outcomes()),
                });
            }
        }
        Ok(FlushReport {
            failures: self.failures(),
        })
    }

    /// Takes the failures the daemon reported since the last call.
    pub fn failures(&self) -> Vec<Failure> {
        let mut failures = std::mem::take(&mut *lock(&self.shared.failures_taken));
        failures.extend(std::iter::from_fn(|| self.shared.ring.pop_failure()));
        failures
    }

    /// The ring's release cursor, a byte position in the ring's stream:
    /// every record that ends at or before it has been acknowledged by the
    /// broker or reported failed (see [`Producer::failures`]), and its space
    /// given back. Records are released in ring order. With
    /// [`Producer::claimed_position`] read after a send, one atomic load
    /// tells whether that record (and every one before it) is finished,
    /// without locks, system calls or waiting as [`Producer::flush`] does.
    pub fn released_position(&self) -> u64 {
        self.shared.ring.released()
    }

    /// The ring's claim cursor: the byte position after every record
    /// reserved so far (see [`Producer::released_position`]).
    pub fn claimed_position(&self) -> u64 {
        self.shared.ring.tail()
    }

    /// Counters of this producer.
    pub fn stats(&self) -> Stats {
        let ring = &self.shared.ring;
        // Read once: a guard temporary lives to the end of the statement, so
        // locking twice inside the struct literal below deadlocked.
        let client_id = lock(&self.shared.connection).as_ref().map(|c| c.client_id);
        Stats {
            capacity: ring.capacity() as u64,
            unacknowledged_bytes: ring.tail().saturating_sub(ring.released()),
            aborted: ring.aborted(),
            full_events: ring.full_events(),
            connected: client_id.is_some(),
            client_id,
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Flushes for at most `timeout`, then disconnects. Records not yet
    /// acknowledged stay with the daemon, which delivers them after we are gone.
    pub fn close(mut self, timeout: Duration) -> Result<FlushReport, Error> {
        let report = self.flush(timeout);
        self.stop();
        report
    }

    fn stop(&mut self) {
        // SYNC POINT (closing): pairs with the Acquire loads in `supervise`
        // and `sleep_unless_closing`; the supervisor then stops using the
        // connection this thread is about to drop.
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.1.notify_all();
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
        if let Some(handle) = lock(&self.shared.resolver).take() {
            let _ = handle.join();
        }
        lock(&self.shared.connection).take();
    }

    /// The socket path in use.
    pub fn socket_path(&self) -> &std::path::Path {
        &self.shared.path
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A record being written in place.
pub struct Reservation<'a> {
    slot: Slot<'a>,
}

impl Reservation<'_> {
    /// The key area.
    pub fn key_mut(&mut self) -> &mut [u8] {
        self.slot.key_mut()
    }
    /// The value area.
    pub fn value_mut(&mut self) -> &mut [u8] {
        self.slot.value_mut()
    }
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.slot.seq()
    }
    /// Publishes the record.
    pub fn commit(self) -> u64 {
        self.slot.commit()
    }
}

/// Records reserved together, written in place.
pub struct BatchReservation<'a> {
    batch: BatchSlot<'a>,
}

impl BatchReservation<'_> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.batch.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
    /// Record `i`'s key area.
    pub fn key_mut(&mut self, i: usize) -> &mut [u8] {
        self.batch.key_mut(i)
    }
    /// Record `i`'s value area.
    pub fn value_mut(&mut self, i: usize) -> &mut [u8] {
        self.batch.value_mut(i)
    }
    /// Record `i`'s sequence number.
    pub fn seq(&self, i: usize) -> u64 {
        self.batch.seq(i)
    }
    /// Publishes record `i` alone.
    pub fn commit_one(&mut self, i: usize) {
        self.batch.commit_one(i);
    }
    /// Publishes every record not yet committed; returns the first
    /// sequence number.
    pub fn commit(self) -> u64 {
        self.batch.commit()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind that
    // is still consistent (a connection or a topic list), so poisoning is
    // ignored rather than propagated into every later call.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Watches the connection; when the daemon goes away, registers the same
/// segment (and the topic ids already used in it) with the next daemon.
fn supervise(shared: &Shared) {
    let mut backoff = RECONNECT_MIN;
    // SYNC POINT (closing): see `Producer::stop`.
    while !shared.closing.load(Ordering::Acquire) {
        let closed = {
            let guard = lock(&shared.connection);
            match guard.as_ref() {
                Some(conn) => {
                    // Poll outside the lock would race with a topic request
                    // reading its reply; a short poll under it is cheap.
                    conn.wait_closed(Duration::ZERO)
                }
                None => true,
            }
        };
        if !closed {
            backoff = RECONNECT_MIN;
            sleep_unless_closing(shared, Duration::from_millis(100));
            continue;
        }
        lock(&shared.connection).take();
        let topics = lock(&shared.topics).clone();
        match connection::register(
            &shared.path,
            &shared.segment,
            &shared.options.client_name,
            &topics,
        ) {
            Ok(conn) => {
                *lock(&shared.connection) = Some(conn);
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                backoff = RECONNECT_MIN;
            }
            Err(_) => {
                sleep_unless_closing(shared, backoff);
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}

fn sleep_unless_closing(shared: &Shared, duration: Duration) {
    let (mutex, condvar) = &shared.wake;
    let guard = lock(mutex);
    // SYNC POINT (closing): see `Producer::stop`.
    if !shared.closing.load(Ordering::Acquire) {
        let _ = condvar.wait_timeout(guard, duration);
    }
}
