//! Drain threads: read committed records from client rings and hand them to
//! librdkafka by reference; turn delivery reports into released ring space.
//!
//! Each drain thread owns one librdkafka producer and a set of client rings.
//! A record's bytes stay in the ring from commit until the broker has
//! acknowledged it (or it failed permanently and is on disk in the spool):
//! librdkafka gets a pointer into the mapping, and the delivery report,
//! identified by the [`opaque::Opaque`], marks the record so the release
//! cursor can move past it.
//!
//! - this file: the thread, its loop, and parking when there is no work;
//! - [`produce`]: the ring-to-librdkafka step, `produce_one(view) -> Step`;
//! - [`reports`]: delivery reports: mark, hold for another attempt, spool,
//!   release;
//! - [`recovery`]: producing records again after retriable failures, and
//!   replacing a producer after a fatal error;
//! - [`clients`]: rings arriving, retiring, and the graceful stop;
//! - [`transaction`], [`progress_sync`]: exactly-once transactions (when
//!   enabled), and bringing rings up to their committed positions;
//! - [`ring`]: what the thread knows about one ring;
//! - [`opaque`]: the per-message opaque;
//! - [`test_hooks`]: faults the tests provoke through the environment.

mod clients;
mod opaque;
mod produce;
mod progress_sync;
mod recovery;
mod reports;
mod ring;
mod test_hooks;
mod transaction;

pub use test_hooks::{FATAL_FILE_ENV, STALL_FILE_ENV};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkafka_ringbuf::RingConsumer;
use tracing::warn;

use self::produce::HandOff;
use self::recovery::Recovery;
use self::ring::{Ring, TopicHandles};
use crate::client::Client;
use crate::exactly_once::ExactlyOnce;
use crate::kafka::{DeliveryReport, KafkaConfig, Producer, ProducerOptions, StatisticsFeed};
use crate::metrics::latency::LatencySnapshot;
use crate::metrics::DrainStats;
use crate::registry::Registry;
use crate::spool::DeadLetters;

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

/// One drain thread's state. Field order matters: the producer and its
/// topic handles (which reference ring memory through in-flight records)
/// are dropped before the rings are unmapped.
pub struct DrainThread {
    producer: Producer,
    topic_handles: TopicHandles,
    rings: Vec<Option<Ring>>,
    /// The slot the next drain pass starts at: the one after the ring at
    /// which a full librdkafka queue cut the last pass short, so that no
    /// ring is always first or last in line when the queue, not the rings,
    /// is the bottleneck.
    next_drain_slot: usize,
    /// What a replacement producer is built from.
    kafka: KafkaConfig,
    producer_options: ProducerOptions,
    recovery: Recovery,
    /// Set once the graceful stop purged the producer: `_PURGE_*` reports
    /// then leave their records for the next start.
    shutdown_purged: bool,
    hand_off: HandOff,
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
    /// Exactly-once transactions; `None` in the default at-least-once mode.
    txn: Option<transaction::Transactions>,
}

impl DrainThread {
    /// A drain thread with its own producer (transactional if
    /// `exactly_once` is given).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kafka: &KafkaConfig,
        mut producer_options: ProducerOptions,
        options: DrainOptions,
        inbox: Receiver<Arc<Client>>,
        registry: Arc<Registry>,
        stopping: Arc<AtomicBool>,
        stats: Arc<DrainStats>,
        exactly_once: Option<Arc<ExactlyOnce>>,
    ) -> Result<Self, crate::kafka::KafkaError> {
        // Producers that replace this one publish into the same feed.
        producer_options
            .statistics
            .get_or_insert_with(StatisticsFeed::default);
        let kafka = match &exactly_once {
            Some(eos) => {
                producer_options.transactional_id =
                    Some(eos.settings.transactional_id(options.index));
                eos.settings.kafka.clone()
            }
            None => kafka.clone(),
        };
        Ok(Self {
            txn: exactly_once.map(transaction::Transactions::new),
            dead_letters: DeadLetters::new(&options.spool, options.index),
            producer: Producer::new(&kafka, producer_options.clone())?,
            topic_handles: TopicHandles::new(),
            rings: Vec::new(),
            next_drain_slot: 0,
            kafka,
            producer_options,
            recovery: Recovery::default(),
            shutdown_purged: false,
            hand_off: if options.copy_records {
                HandOff::Copied
            } else {
                HandOff::Borrowed
            },
            inbox,
            registry,
            stopping,
            stats,
            options,
            reports: Vec::with_capacity(4096),
            latency_batch: LatencySnapshot::default(),
        })
    }

    /// The producer's librdkafka statistics, for metrics (kept up to date
    /// across producer replacements).
    pub fn statistics_feed(&self) -> StatisticsFeed {
        self.producer.statistics_feed()
    }

    /// Runs until stopped, then flushes within the shutdown budget.
    pub fn run(mut self) {
        if let Some(cpu) = self.options.cpu {
            pin_to(cpu);
        }
        let mut idle_since: Option<Instant> = None;
        // SYNC POINT (stopping): see `daemon::run`.
        while !self.stopping.load(Ordering::Acquire) {
            self.stats.heartbeat.fetch_add(1, Ordering::Relaxed);
            self.accept_new_clients();
            test_hooks::fatal_error_if_asked(&self.producer);
            self.step_recovery();
            let produced = self.drain_rings();
            let reported = self.serve_reports(Duration::ZERO);
            self.commit_if_due(false);
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

    /// Records handed to librdkafka and not yet reported, over all rings.
    fn in_flight(&self) -> usize {
        self.rings.iter().flatten().map(|r| r.in_flight).sum()
    }

    /// Waits for something to do: a delivery report while records are in
    /// flight, the end of a recovery backoff, or a commit in any ring.
    fn wait_for_work(&mut self) {
        test_hooks::stall_if_asked();
        if self.in_flight() > 0 {
            // Delivery reports are due: block in librdkafka, which wakes on
            // the first report; new ring records wait at most this long.
            self.serve_reports(INFLIGHT_POLL);
            return;
        }
        let now = Instant::now();
        if self.txn.as_ref().is_some_and(|t| !t.is_initialised()) {
            // Exactly-once start-up (or a new producer's) under way: records
            // wait, so a commit must not wake us.
            std::thread::sleep(IDLE_PARK);
            return;
        }
        if !self.recovery.may_produce(now) {
            // Committed records wait for the recovery, so a commit must not
            // wake us (parking would return at once).
            let until = self.recovery.resumes_at().unwrap_or(now + IDLE_PARK);
            std::thread::sleep(until.saturating_duration_since(now).min(IDLE_PARK));
            return;
        }
        let consumers: Vec<&RingConsumer> = self
            .rings
            .iter()
            .flatten()
            // A ring held back for unread failures is not drained even if
            // a record waits in it: watching it would wake us at once. Its
            // client's reads are seen within IDLE_PARK.
            .filter(|r| r.quarantined.is_none() && !r.failures_back_up())
            .map(|r| &r.consumer)
            .collect();
        shmkafka_ringbuf::park_any(&consumers, IDLE_PARK);
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
