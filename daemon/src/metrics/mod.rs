//! Observability: the Prometheus endpoint and `shmkafkad status`.
//!
//! Nothing here is on the data path. The drain threads and the control side
//! count into atomics they own ([`DrainStats`],
//! [`crate::client::ClientCounters`], [`latency::LatencyHistogram`]); this
//! module reads them when asked.
//!
//! - [`Telemetry`]: where every counter is found; shared by the status
//!   command, the metrics collector and the supervisor's sampling tick.
//! - [`drain_stats`]: the counters each drain thread owns.
//! - [`snapshot`]: point-in-time copies of client and drain counters.
//! - [`rates`]: records per second and busy ratios over a sliding window.
//! - [`latency`]: the drain threads' lock-free latency histogram.
//! - [`spool_size`]: bytes and files in the dead-letter spool.
//! - [`librdkafka`]: librdkafka's statistics JSON as `rdkafka_*` metrics.
//! - [`client_series`]: per-client series by name and uid, bounded.
//! - [`backlog_age`]: how long the oldest unacknowledged record waited.
//! - [`process`]: the `process_*` metrics.
//! - [`encode`], [`collector`]: the `shmkafkad_*` metrics.
//! - [`http`], [`endpoint`]: the loopback HTTP responder and its lifecycle.
//! - [`status`]: the status command's table and JSON.

pub mod backlog_age;
pub mod client_series;
pub mod collector;
pub mod drain_stats;
pub mod encode;
pub mod endpoint;
pub mod http;
pub mod latency;
pub mod librdkafka;
pub mod process;
pub mod rates;
pub mod snapshot;
pub mod spool_size;
pub mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::kafka::StatisticsFeed;
use crate::registry::Registry;

pub use drain_stats::DrainStats;
pub use endpoint::Endpoint;

/// One drain thread as observability sees it.
struct DrainSource {
    stats: Arc<DrainStats>,
    kafka: StatisticsFeed,
}

/// Where every reported number comes from.
pub struct Telemetry {
    registry: Arc<Registry>,
    drains: Vec<DrainSource>,
    spool_dir: PathBuf,
    started: SystemTime,
    sampler: Mutex<rates::Sampler>,
    backlog: Mutex<backlog_age::BacklogAges>,
}

impl Telemetry {
    /// Telemetry over `registry`'s clients and the spool in `spool_dir`;
    /// drain threads are added with [`Telemetry::add_drain`].
    pub fn new(registry: Arc<Registry>, spool_dir: PathBuf) -> Self {
        Self {
            registry,
            drains: Vec::new(),
            spool_dir,
            started: SystemTime::now(),
            sampler: Mutex::new(rates::Sampler::default()),
            backlog: Mutex::new(backlog_age::BacklogAges::default()),
        }
    }

    /// Adds the next drain thread (in index order).
    pub fn add_drain(&mut self, stats: Arc<DrainStats>, kafka: StatisticsFeed) {
        self.drains.push(DrainSource { stats, kafka });
    }

    /// Every registered client (including disconnected ones still drained).
    pub fn clients(&self) -> Vec<snapshot::ClientSnapshot> {
        self.registry
            .clients()
            .iter()
            .map(|c| snapshot::ClientSnapshot::of(c))
            .collect()
    }

    /// Every drain thread.
    pub fn drains(&self) -> Vec<snapshot::DrainSnapshot> {
        let loads = self.registry.drain_loads();
        self.drains
            .iter()
            .enumerate()
            .map(|(i, d)| {
                snapshot::DrainSnapshot::of(i, loads.get(i).copied().unwrap_or(0), &d.stats)
            })
            .collect()
    }

    /// Takes a rate sample if one is due; the supervisor calls this on
    /// every tick.
    pub fn tick(&self) {
        let (clients, drains) = (self.clients(), self.drains());
        let now = Instant::now();
        self.sampler().record(now, &clients, &drains);
        self.backlog().record(now, &clients);
    }

    /// Every per-client series (by name and uid), with the age of the
    /// oldest unacknowledged record of its rings.
    pub fn client_series(&self) -> Vec<(client_series::SeriesKey, client_series::SeriesRow)> {
        let now = Instant::now();
        let backlog = self.backlog();
        self.registry
            .client_series()
            .rows(|| self.clients(), |c| backlog.oldest_seconds(now, c))
    }

    /// Keys with their own series, and the cap.
    pub fn client_series_usage(&self) -> (usize, usize) {
        self.registry.client_series().usage()
    }

    /// Seconds the oldest unacknowledged record of client `c` has waited.
    pub fn oldest_unacknowledged_seconds(&self, c: &snapshot::ClientSnapshot) -> f64 {
        self.backlog().oldest_seconds(Instant::now(), c)
    }

    /// Records failed permanently, by error name, over all drain threads.
    pub fn failures_by_error(&self) -> std::collections::BTreeMap<String, u64> {
        let mut total = std::collections::BTreeMap::new();
        for drain in &self.drains {
            for (name, n) in drain.stats.failures_by_error() {
                *total.entry(name).or_default() += n;
            }
        }
        total
    }

    /// Rates over the sampling window.
    pub fn rates(&self) -> rates::Rates {
        self.sampler().rates()
    }

    /// The latest librdkafka statistics of each drain thread's producer that
    /// has one.
    pub fn kafka_statistics(&self) -> Vec<(usize, librdkafka::Statistics)> {
        self.drains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, librdkafka::parse(&d.kafka.latest()?)?)))
            .collect()
    }

    /// The dead-letter spool's size now.
    pub fn spool(&self) -> Option<spool_size::SpoolSize> {
        spool_size::measure(&self.spool_dir)
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.spool_dir
    }

    /// When the daemon started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    fn backlog(&self) -> std::sync::MutexGuard<'_, backlog_age::BacklogAges> {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sampler(&self) -> std::sync::MutexGuard<'_, rates::Sampler> {
        self.sampler.lock().unwrap_or_else(|p| p.into_inner())
    }
}
