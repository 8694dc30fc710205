//! Drain threads: read committed records from client rings and hand them to
//! librdkafka by reference; turn delivery reports into released ring space.
//!
//! Each drain thread owns one librdkafka producer and a set of client rings.
//! A record's bytes stay in the ring from commit until the broker has
//! acknowledged it (or it failed permanently): librdkafka gets a pointer into
//! the mapping, and the delivery report, identified by the opaque, marks the
//! record so the release cursor can move past it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkafka_ringbuf::{Delivery, Failure, RingConsumer};
use tracing::{error, info, warn};

use crate::client::Client;
use crate::kafka::{
    DeliveryReport, Header, KafkaConfig, KafkaErrorCode, OutgoingMessage, Persistence,
    ProduceError, Producer, ProducerOptions, StatisticsFeed, Topic,
};
use crate::metrics::latency::{LatencyHistogram, LatencySnapshot};
use crate::registry::Registry;
use crate::spool::{self, DeadLetters, PendingFailure};

/// librdkafka's `RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC`, reported for records
/// whose topic id the client never registered (or was refused).
const ERR_UNKNOWN_TOPIC: i32 = -188;
/// librdkafka's `RD_KAFKA_RESP_ERR__BAD_MSG`, for records whose header
/// block does not decode.
const ERR_BAD_MSG: i32 = -199;
/// Opaque layout: client slot in the high 16 bits, ring offset (< 2^30)
/// below; the full stream position is rebuilt from the consumer's window.
const SLOT_SHIFT: u32 = 48;
const OFFSET_MASK: u64 = (1 << SLOT_SHIFT) - 1;
/// Longest sleep when nothing at all is happening; bounds how long a newly
/// assigned client waits for its first drain.
const IDLE_PARK: Duration = Duration::from_millis(20);
/// Poll interval for delivery reports while records are in flight. It is
/// also how long a record committed meanwhile can wait to be drained: the
/// thread blocks in librdkafka, which a ring commit does not wake. 200 us
/// was measured too: it doubled the daemon's CPU per record at 16 x 20k
/// records/s (`shmkafka-bench produce --rate-per-client 20000`) and moved
/// no latency percentile beyond the noise.
const INFLIGHT_POLL: Duration = Duration::from_millis(1);

/// Settings of a drain thread.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Index, for names and logs.
    pub index: usize,
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Busy-poll budget before parking.
    pub spin: Duration,
    /// Records per ring per pass.
    pub batch_per_ring: usize,
    /// Hand librdkafka copies instead of lending it the ring's bytes.
    pub copy_records: bool,
    /// Time a graceful stop may spend flushing.
    pub shutdown_timeout: Duration,
    /// Dead-letter spool of permanently failed records.
    pub spool: crate::config::SpoolSection,
}

/// Counters shared with status, metrics and the watchdog.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// Loop iterations; stops moving if the thread wedges.
    pub heartbeat: AtomicU64,
    /// Records handed to librdkafka.
    pub produced: AtomicU64,
    /// Records acknowledged.
    pub delivered: AtomicU64,
    /// Records failed permanently.
    pub failed: AtomicU64,
    /// Records written to the dead-letter spool (failures, and at shutdown
    /// the undelivered records of gone clients).
    pub spooled: AtomicU64,
    /// Produce-to-acknowledgement latency of acknowledged records.
    pub latency: LatencyHistogram,
    /// Nanoseconds spent in `wait_for_work` (parked or blocked in poll with
    /// nothing else to do); the busy ratio is the rest of the wall time.
    pub idle_ns: AtomicU64,
}

/// What the drain thread knows about one ring.
struct Ring {
    client: Arc<Client>,
    consumer: RingConsumer,
    /// Topic handles by client topic id.
    topics: Vec<Option<Arc<Topic>>>,
    topics_version: u64,
    /// Records handed to librdkafka and not yet reported.
    in_flight: usize,
    /// Set when the ring holds garbage: the client is no longer drained.
    quarantined: Option<String>,
    /// On shutdown: drain up to here, leave the rest for the next daemon.
    stop_at: Option<u64>,
    /// Failed records held in flight until the spool has them on disk.
    awaiting_spool: usize,
    /// Acknowledgements served but not yet added to the client's counter.
    acked_unpublished: u64,
}

/// One drain thread's state. Field order matters: the producer and its
/// topic handles (which reference ring memory through in-flight records)
/// are dropped before the rings are unmapped.
pub struct DrainThread {
    producer: Producer,
    topic_handles: HashMap<Arc<str>, Arc<Topic>>,
    rings: Vec<Option<Ring>>,
    inbox: Receiver<Arc<Client>>,
    registry: Arc<Registry>,
    stopping: Arc<AtomicBool>,
    stats: Arc<DrainStats>,
    options: DrainOptions,
    reports: Vec<DeliveryReport>,
    /// Latencies of the current poll's acknowledgements, added to
    /// `stats.latency` once per poll.
    latency_batch: LatencySnapshot,
    dead_letters: DeadLetters,
}

impl DrainThread {
    /// A drain thread with its own producer.
    pub fn new(
        kafka: &KafkaConfig,
        producer_options: ProducerOptions,
        options: DrainOptions,
        inbox: Receiver<Arc<Client>>,
        registry: Arc<Registry>,
        stopping: Arc<AtomicBool>,
        stats: Arc<DrainStats>,
    ) -> Result<Self, crate::kafka::KafkaError> {
        Ok(Self {
            dead_letters: DeadLetters::new(&options.spool, options.index),
            producer: Producer::new(kafka, producer_options)?,
            topic_handles: HashMap::new(),
            rings: Vec::new(),
            inbox,
            registry,
            stopping,
            stats,
            options,
            reports: Vec::with_capacity(4096),
            latency_batch: LatencySnapshot::default(),
        })
    }

    /// The producer's librdkafka statistics, for metrics.
    pub fn statistics_feed(&self) -> StatisticsFeed {
        self.producer.statistics_feed()
    }

    /// Runs until stopped, then flushes within the shutdown budget.
    pub fn run(mut self) {
        if let Some(cpu) = self.options.cpu {
            pin_to(cpu);
        }
        let mut idle_since: Option<Instant> = None;
        while !self.stopping.load(Ordering::Acquire) {
            self.stats.heartbeat.fetch_add(1, Ordering::Relaxed);
            self.accept_new_clients();
            let produced = self.drain_rings();
            let reported = self.serve_reports(Duration::ZERO);
            self.retire_finished_clients();
            if produced + reported > 0 {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.options.spin {
                std::hint::spin_loop();
                continue;
            }
            let parked = Instant::now();
            self.wait_for_work();
            self.stats
                .idle_ns
                .fetch_add(parked.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        self.shut_down();
    }

    fn accept_new_clients(&mut self) {
        while let Ok(client) = self.inbox.try_recv() {
            let consumer = match client.segment.consumer() {
                Ok(c) => c,
                Err(e) => {
                    warn!(client = client.id, error = %e, "ring cursors corrupted; client not drained");
                    self.registry.remove(client.id);
                    continue;
                }
            };
            let ring = Ring {
                client,
                consumer,
                topics: Vec::new(),
                topics_version: u64::MAX,
                in_flight: 0,
                quarantined: None,
                stop_at: None,
                awaiting_spool: 0,
                acked_unpublished: 0,
            };
            match self.rings.iter().position(Option::is_none) {
                Some(i) => self.rings[i] = Some(ring),
                None if self.rings.len() < (1 << 16) => self.rings.push(Some(ring)),
                None => {
                    error!(
                        client = ring.client.id,
                        "drain thread has 65536 rings; client not drained"
                    );
                    self.registry.remove(ring.client.id);
                }
            }
        }
    }

    /// One pass over all rings; returns records handed to librdkafka.
    fn drain_rings(&mut self) -> usize {
        let mut total = 0;
        for slot in 0..self.rings.len() {
            match self.drain_ring(slot) {
                Ok(n) => total += n,
                Err(QueueFull) => {
                    // librdkafka's queue is full: serve delivery reports
                    // (which frees queue space) and come back later.
                    self.serve_reports(INFLIGHT_POLL);
                    break;
                }
            }
        }
        total
    }

    fn drain_ring(&mut self, slot: usize) -> Result<usize, QueueFull> {
        let Some(ring) = self.rings[slot].as_mut() else {
            return Ok(0);
        };
        if ring.quarantined.is_some() {
            return Ok(0);
        }
        refresh_topics(ring, &self.producer, &mut self.topic_handles);
        let offset_mask = ring.consumer.capacity() as u64 - 1;
        let mut produced = 0;
        let mut full = false;
        while produced < self.options.batch_per_ring {
            if ring
                .stop_at
                .is_some_and(|stop| ring.consumer.drain_pos() >= stop)
            {
                break;
            }
            let step = {
                let view = match ring.consumer.peek() {
                    Ok(Some(view)) => view,
                    Ok(None) => break,
                    Err(e) => {
                        error!(client = ring.client.id, name = %ring.client.name, error = %e,
                            "garbage in ring; client quarantined (its records after this point are not delivered)");
                        ring.quarantined = Some(e.to_string());
                        ring.client
                            .counters
                            .quarantined
                            .store(true, Ordering::Relaxed);
                        break;
                    }
                };
                let seq = view.seq();
                match ring
                    .topics
                    .get(view.topic_id() as usize)
                    .and_then(Option::as_ref)
                {
                    None => Step::Fail(seq, ERR_UNKNOWN_TOPIC),
                    Some(topic) => {
                        let headers: Result<Vec<Header<'_>>, _> = view
                            .headers()
                            .map(|h| h.map(|h| (h.name, h.value)))
                            .collect();
                        match headers {
                            Err(_) => Step::Fail(seq, ERR_BAD_MSG),
                            Ok(headers) => {
                                let message = OutgoingMessage {
                                    partition: view.partition(),
                                    key: view.key(),
                                    value: view.value(),
                                    timestamp_ms: view.timestamp_ms(),
                                    headers: &headers,
                                    opaque: (((slot as u64) << SLOT_SHIFT) | (seq & offset_mask))
                                        as usize,
                                };
                                let result = if self.options.copy_records {
                                    self.producer.produce_copied(topic, &message)
                                } else {
                                    #[allow(unsafe_code)]
                                    // SAFETY: the value points into this
                                    // client's ring mapping. On Ok we
                                    // `advance` below, so the record stays in
                                    // flight: the consumer neither releases
                                    // nor lets producers reuse its bytes until
                                    // we `mark` it from its delivery report.
                                    // The mapping (owned by
                                    // `ring.client.segment`) outlives the
                                    // producer: rings are retired only with
                                    // `in_flight == 0`, and `DrainThread`
                                    // drops the producer before the rings. A
                                    // hostile client may change the bytes
                                    // under librdkafka; that garbles only its
                                    // own record.
                                    unsafe {
                                        self.producer.produce_borrowed(topic, &message)
                                    }
                                };
                                match result {
                                    Ok(()) => Step::Produced,
                                    Err(ProduceError::QueueFull { .. }) => Step::QueueFull,
                                    Err(e) => {
                                        warn!(client = ring.client.id, seq, error = %e, "record refused by librdkafka");
                                        Step::Fail(seq, e.code().raw())
                                    }
                                }
                            }
                        }
                    }
                }
            };
            match step {
                Step::Produced => {
                    ring.consumer.advance();
                    ring.in_flight += 1;
                    produced += 1;
                }
                Step::Fail(seq, code) => fail_now(ring, slot, seq, code, &mut self.dead_letters),
                Step::QueueFull => {
                    full = true;
                    break;
                }
            }
        }
        self.stats
            .produced
            .fetch_add(produced as u64, Ordering::Relaxed);
        ring.client
            .counters
            .produced
            .fetch_add(produced as u64, Ordering::Relaxed);
        if full {
            Err(QueueFull)
        } else {
            Ok(produced)
        }
    }

    /// Serves delivery reports: marks records, pushes failures, releases.
    fn serve_reports(&mut self, timeout: Duration) -> usize {
        self.reports.clear();
        let n = self.producer.poll(timeout, &mut self.reports);
        // Counters are summed here and published once per poll, before the
        // releases that let clients see their acknowledgements.
        let mut delivered = 0;
        for report in self.reports.drain(..) {
            let slot = (report.opaque as u64 >> SLOT_SHIFT) as usize;
            let Some(ring) = self.rings.get_mut(slot).and_then(Option::as_mut) else {
                error!(
                    opaque = report.opaque,
                    "delivery report for an unknown ring"
                );
                continue;
            };
            let window_start = ring.consumer.released_pos();
            let mask = ring.consumer.capacity() as u64 - 1;
            let offset = report.opaque as u64 & OFFSET_MASK;
            let seq = window_start + (offset.wrapping_sub(window_start) & mask);
            ring.in_flight = ring.in_flight.saturating_sub(1);
            match report.result {
                Ok(()) => {
                    ring.consumer.mark(seq, Delivery::Delivered);
                    ring.acked_unpublished += 1;
                    delivered += 1;
                    self.latency_batch.observe_us(report.latency_us);
                }
                Err(code) if is_shutdown_purge(code) => {
                    // Purged at shutdown: left unmarked, the record stays in
                    // the ring and the next daemon sends it.
                }
                Err(code) => {
                    warn!(client = ring.client.id, seq, error = %code.name(), persisted = ?report.status,
                        "delivery failed permanently");
                    // Still in flight: marked and released once spooled.
                    ring.awaiting_spool += 1;
                    self.dead_letters
                        .defer(PendingFailure::now(slot, seq, code, report.status));
                }
            }
        }
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.stats.latency.absorb(&mut self.latency_batch);
        self.spool_failures();
        for ring in self.rings.iter_mut().flatten() {
            if ring.acked_unpublished > 0 {
                ring.client.counters.delivered.fetch_add(
                    std::mem::take(&mut ring.acked_unpublished),
                    Ordering::Relaxed,
                );
            }
            ring.consumer.release();
        }
        n
    }

    /// Writes the failed records held in the rings to the spool in one
    /// fsynced batch; only those now on disk are marked failed (and so
    /// released by the caller). If the spool is unwritable they stay held.
    fn spool_failures(&mut self) {
        let rings = &self.rings;
        let durable = self
            .dead_letters
            .spool_due(Instant::now(), |failure, writer| {
                let ring = rings.get(failure.slot).and_then(Option::as_ref);
                spool::dead_letter::append_failure(
                    writer,
                    ring.map(|r| (&r.consumer, &*r.client)),
                    failure,
                );
            });
        for failure in durable {
            let Some(ring) = self.rings.get_mut(failure.slot).and_then(Option::as_mut) else {
                continue;
            };
            ring.awaiting_spool -= 1;
            ring.consumer.mark(failure.seq, Delivery::Failed);
            push_failure(ring, failure.seq, failure.code, failure.status);
            ring.client.counters.failed.fetch_add(1, Ordering::Relaxed);
            ring.client.counters.spooled.fetch_add(1, Ordering::Relaxed);
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.stats.spooled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops rings whose client is gone and whose records are all finished.
    fn retire_finished_clients(&mut self) {
        for slot in self.rings.iter_mut() {
            let Some(ring) = slot.as_mut() else { continue };
            if !ring.client.is_disconnected() || ring.in_flight > 0 || ring.awaiting_spool > 0 {
                continue;
            }
            let (tail, _) = ring.client.segment.cursors();
            if ring.consumer.drain_pos() < tail && ring.quarantined.is_none() {
                // Something is still claimed. Once the process is gone, a
                // claim it never committed is a hole we may pad over.
                if ring.client.process_exited() {
                    match ring.consumer.unblock() {
                        Ok(true) => info!(
                            client = ring.client.id,
                            "padded over a record the dead client never committed"
                        ),
                        Ok(false) => {}
                        Err(e) => {
                            // Logged like the quarantine in `drain_ring`:
                            // without it a client that corrupted its cursors
                            // (e.g. tail laps beyond capacity) was
                            // quarantined silently (found by fault_hostile).
                            error!(client = ring.client.id, name = %ring.client.name, error = %e,
                                "garbage in ring; client quarantined (no hole to pad after its exit)");
                            ring.quarantined = Some(e.to_string());
                            ring.client
                                .counters
                                .quarantined
                                .store(true, Ordering::Relaxed);
                        }
                    }
                }
                continue;
            }
            info!(client = ring.client.id, name = %ring.client.name,
                delivered = ring.client.counters.delivered.load(Ordering::Relaxed),
                "client gone and its ring drained; segment released");
            self.registry.remove(ring.client.id);
            *slot = None;
        }
    }

    fn wait_for_work(&mut self) {
        stall_if_asked();
        let in_flight: usize = self.rings.iter().flatten().map(|r| r.in_flight).sum();
        if in_flight > 0 {
            // Delivery reports are due: block in librdkafka, which wakes on
            // the first report; new ring records wait at most this long.
            self.serve_reports(INFLIGHT_POLL);
            return;
        }
        let consumers: Vec<&RingConsumer> = self
            .rings
            .iter()
            .flatten()
            .filter(|r| r.quarantined.is_none())
            .map(|r| &r.consumer)
            .collect();
        shmkafka_ringbuf::park_any(&consumers, IDLE_PARK);
    }

    /// Graceful stop: deliver what was committed before the stop, within the
    /// budget; whatever is left stays unreleased in the rings.
    fn shut_down(mut self) {
        let deadline = Instant::now() + self.options.shutdown_timeout;
        for ring in self.rings.iter_mut().flatten() {
            ring.stop_at = Some(ring.client.segment.cursors().0);
        }
        loop {
            self.accept_new_clients();
            let produced = self.drain_rings();
            self.serve_reports(INFLIGHT_POLL);
            let in_flight: usize = self.rings.iter().flatten().map(|r| r.in_flight).sum();
            let pending = self.rings.iter().flatten().any(|r| {
                r.quarantined.is_none()
                    && r.stop_at.is_some_and(|stop| r.consumer.drain_pos() < stop)
            });
            let held = !self.dead_letters.is_empty();
            if (in_flight == 0 && !pending && produced == 0 && !held) || Instant::now() >= deadline
            {
                break;
            }
        }
        let left: usize = self.rings.iter().flatten().map(|r| r.in_flight).sum();
        if left > 0 {
            warn!(records = left, "shutdown budget spent; unacknowledged records stay in the rings for the next start");
            let _ = self
                .producer
                .purge(crate::kafka::PurgeScope::QueuedAndInFlight);
            self.serve_reports(Duration::from_millis(100));
        }
        self.spool_gone_clients();
        info!(drain = self.options.index, "drain thread stopped");
        // Producer and topic handles go first (field order), then the rings.
    }
}

impl DrainThread {
    /// Shutdown: the ring of a client that is gone dies with this process,
    /// so what it holds undelivered goes to the spool. Live clients keep
    /// theirs in the ring for the next daemon.
    fn spool_gone_clients(&mut self) {
        if !self.dead_letters.is_empty() {
            // Held failures of gone clients are rewritten below with the
            // rest; those of live clients stay in their rings.
            warn!(records = self.dead_letters.len(), "dead-letter spool still unwritable at shutdown; failed records stay in the rings of live clients");
        }
        for ring in self.rings.iter_mut().flatten() {
            if !ring.client.is_disconnected() || ring.quarantined.is_some() {
                continue;
            }
            // A fresh consumer starts at the release cursor, so it yields
            // the records that were in flight (purged) as well as those
            // never handed to librdkafka; finished ones are stepped over.
            let (spooled, complete) = match ring.client.segment.consumer() {
                Ok(mut consumer) => {
                    let outcome = self
                        .dead_letters
                        .spool_abandoned(&mut consumer, &ring.client);
                    ring.consumer = consumer;
                    outcome
                }
                Err(e) => {
                    error!(client = ring.client.id, error = %e, "ring cursors corrupted; undelivered records of a gone client are lost");
                    continue;
                }
            };
            self.stats
                .spooled
                .fetch_add(spooled as u64, Ordering::Relaxed);
            ring.client
                .counters
                .spooled
                .fetch_add(spooled as u64, Ordering::Relaxed);
            if spooled > 0 || !complete {
                warn!(client = ring.client.id, name = %ring.client.name, records = spooled, complete,
                    "client gone and its records undelivered at shutdown: spooled");
            }
        }
    }
}

/// librdkafka's queue was full.
struct QueueFull;

/// What became of one peeked record.
enum Step {
    /// Handed to librdkafka.
    Produced,
    /// Failed before reaching librdkafka, with this error code.
    Fail(u64, i32),
    /// librdkafka's queue is full; try again after serving reports.
    QueueFull,
}

fn refresh_topics(
    ring: &mut Ring,
    producer: &Producer,
    handles: &mut HashMap<Arc<str>, Arc<Topic>>,
) {
    let version = ring.client.topics_version();
    if version == ring.topics_version {
        return;
    }
    ring.topics_version = version;
    ring.topics = ring
        .client
        .topics()
        .into_iter()
        .map(|name| {
            let name = name?;
            if let Some(handle) = handles.get(&name) {
                return Some(Arc::clone(handle));
            }
            match producer.topic(&name) {
                Ok(topic) => {
                    let topic = Arc::new(topic);
                    handles.insert(name, Arc::clone(&topic));
                    Some(topic)
                }
                Err(e) => {
                    warn!(topic = %name, error = %e, "cannot create topic handle");
                    None
                }
            }
        })
        .collect();
}

/// Fails the record just peeked without handing it to librdkafka: it stays
/// in flight until the spool has it.
fn fail_now(ring: &mut Ring, slot: usize, seq: u64, code: i32, dead_letters: &mut DeadLetters) {
    ring.consumer.advance();
    ring.awaiting_spool += 1;
    dead_letters.defer(PendingFailure::now(
        slot,
        seq,
        KafkaErrorCode::from_raw(code),
        Persistence::NotPersisted,
    ));
}

fn push_failure(ring: &Ring, seq: u64, code: KafkaErrorCode, status: Persistence) {
    let persistence = match status {
        Persistence::NotPersisted => 0,
        Persistence::PossiblyPersisted => 1,
        Persistence::Persisted => 2,
    };
    let failure = Failure {
        seq,
        code: code.raw(),
        persistence,
    };
    if !ring.consumer.push_failure(failure) {
        warn!(
            client = ring.client.id,
            seq, "client's failure queue is full; failure counted as overflowed"
        );
    }
}

fn is_shutdown_purge(code: KafkaErrorCode) -> bool {
    // _PURGE_QUEUE (-152) and _PURGE_INFLIGHT (-151).
    matches!(code.raw(), -152 | -151)
}

/// Environment variable naming a file whose existence wedges idle drain
/// threads: lets the watchdog test prove that pings stop when a drain thread
/// stops making progress. Unset in production; checked only when idle.
pub const STALL_FILE_ENV: &str = "SHMKAFKAD_TEST_STALL_FILE";

fn stall_if_asked() {
    static STALL_FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    if let Some(path) = STALL_FILE.get_or_init(|| std::env::var_os(STALL_FILE_ENV).map(Into::into))
    {
        while path.exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            warn!(cpu, error = %e, "cannot pin drain thread");
        }
    }
}
