//! The daemon's configuration: one TOML file, CLI overrides, validation.
//!
//! Every librdkafka property may be given under `[kafka]` and is passed
//! through unchanged (as `kcat -X` does); the daemon's own sections refuse
//! unknown keys, naming them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::kafka::{is_secret_key, KafkaConfig, Secret, MASK};

mod exactly_once;
pub use exactly_once::{ExactlyOnceSection, DEFAULT_PROGRESS_TOPIC};

/// Default control socket.
pub const DEFAULT_SOCKET_PATH: &str = shmkafka_protocol::DEFAULT_SOCKET_PATH;
/// Default of `daemon.log_summary_interval_s`.
pub const DEFAULT_LOG_SUMMARY_INTERVAL_S: u64 = 60;
/// Default bound on concurrently registered clients.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// Default time a graceful stop spends flushing before it gives up.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
/// Default busy-poll budget before a drain thread parks: none. A steady
/// stream with gaps shorter than the budget keeps a spinning thread on its
/// CPU all the time; measured on 2 cores at 100k records/s
/// (`shmkafka-bench latency`), 50 us of spinning starved librdkafka's and the
/// broker's threads and raised commit-to-acknowledgement p99 from about
/// 11-14 ms to 51-577 ms. Spinning pays only on a CPU of its own (see
/// `drain.cpus`).
pub const DEFAULT_SPIN_US: u64 = 0;
/// Default dead-letter spool directory (the systemd unit's StateDirectory).
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/shmkafka/spool";
/// Default size at which the spool starts a new file: big enough that a
/// burst of failures touches few files, small enough to replay and compact
/// one file in memory.
pub const DEFAULT_SPOOL_MAX_FILE_BYTES: u64 = 64 << 20;
/// Smallest allowed `spool.max_file_bytes`.
pub const MIN_SPOOL_FILE_BYTES: u64 = 4096;
/// Largest allowed `spool.max_file_bytes` (files are read whole).
pub const MAX_SPOOL_FILE_BYTES: u64 = 1 << 30;

/// Default most control connections one uid may hold open at once.
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 256;
/// Default most rings one uid may have registered at once, counting rings
/// whose connection closed while their process lives on (orphaned).
pub const DEFAULT_MAX_RINGS_PER_UID: usize = 256;
/// Default bytes of ring segments one uid may make the daemon map.
pub const DEFAULT_MAX_MAPPED_BYTES_PER_UID: u64 = 4 << 30;
/// Default bytes of ring segments the daemon maps in total.
pub const DEFAULT_MAX_MAPPED_BYTES: u64 = 16 << 30;
/// Default connections from peers not on the access list (status queries)
/// open at once.
pub const DEFAULT_UNAUTHENTICATED_CONNECTIONS: usize = 8;
/// Default time a new connection has to send its first message.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Most drain threads.
pub const MAX_DRAIN_THREADS: usize = 64;
/// Default bound on the dead-letter spool's total size.
pub const DEFAULT_SPOOL_MAX_TOTAL_BYTES: u64 = 1 << 30;

/// Conventional metrics address (an unassigned port in Prometheus' list of
/// exporter ports); the example config uses it, the built-in default is off.
pub const EXAMPLE_METRICS_LISTEN: &str = "127.0.0.1:9187";
/// Default librdkafka statistics interval while metrics are served: often
/// enough for a 15 s scrape, rare enough that building the JSON document
/// (proportional to brokers x partitions) costs librdkafka nothing to speak of.
pub const DEFAULT_STATISTICS_INTERVAL_MS: u64 = 5_000;

/// librdkafka properties the daemon sets unless the config overrides them.
///
/// * idempotence and `acks=all`: no duplicates or reordering from retries,
///   and an acknowledgement means the record is on every in-sync replica.
/// * `message.timeout.ms=0` (infinite): a record stays in the ring, retried
///   by librdkafka, until the broker takes it; an outage fills the rings
///   (back-pressure) instead of failing records. Only permanent errors fail.
/// * `linger.ms=5` and `batch.size=1000000`: large batches across all
///   clients for throughput, at a few milliseconds of latency.
/// * `queue.buffering.max.messages=50000`: records wait in their rings
///   (which cost nothing more) rather than in librdkafka, whose queue is
///   walked record by record on every acknowledgement (interceptors,
///   metadata, report, free): a shorter queue keeps those records in cache.
///   Measured on 2 cores with 16 clients sending at saturation
///   (`shmkafka-bench produce --variant`), against the earlier 2,000,000:
///   64 B / 1 KiB delivered +15 % / +19 % on three Apache Kafka brokers
///   and +13 % / +11 % on one, with 6-20 % less host CPU per record and
///   the same on the mock cluster; 20,000 was faster still on one broker
///   and the mock but starved three replicated brokers (-25 % at 64 B),
///   whose acknowledgements take longer. The queue must hold peak rate ×
///   acknowledgement latency: raise it for a slower cluster.
pub const KAFKA_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("message.timeout.ms", "0"),
    ("linger.ms", "5"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "100000"),
    ("queue.buffering.max.messages", "50000"),
    ("compression.type", "none"),
];

/// Whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-level settings.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// Who may connect.
    #[serde(default)]
    pub access: AccessSection,
    /// Which topics clients may write.
    #[serde(default)]
    pub topics: TopicsSection,
    /// Drain threads.
    #[serde(default)]
    pub drain: DrainSection,
    /// Dead-letter spool.
    #[serde(default)]
    pub spool: SpoolSection,
    /// What one local user, and all of them together, may make the daemon hold.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The opt-in exactly-once mode.
    #[serde(default)]
    pub exactly_once: ExactlyOnceSection,
    /// librdkafka properties, passed through.
    #[serde(default)]
    pub kafka: KafkaSection,
    /// The file this was read from, for reloads.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Command-line overrides, re-applied on reload.
    #[serde(skip)]
    pub overrides: Overrides,
}

/// Settings given on the command line; they win over the file, also after a
/// reload. Its `Debug` masks credentials given with `-X`.
#[derive(Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--socket`.
    pub socket_path: Option<PathBuf>,
    /// `--drain-threads`.
    pub drain_threads: Option<usize>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--spool-dir`.
    pub spool_dir: Option<PathBuf>,
    /// `--metrics-listen` (empty: off).
    pub metrics_listen: Option<String>,
    /// `--bootstrap-servers` and `-X key=value`, in order.
    pub kafka: Vec<(String, String)>,
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Control socket path.
    pub socket_path: PathBuf,
    /// Permission bits of the socket file (group access is how clients are
    /// admitted by default).
    pub socket_mode: u32,
    /// Most clients registered at once; further ones are refused.
    pub max_clients: usize,
    /// Time a graceful stop may spend delivering what is in flight.
    pub shutdown_timeout_ms: u64,
    /// `tracing` filter, e.g. `info` or `shmkafkad=debug,librdkafka=info`.
    pub log_level: String,
    /// How often a condition that lasts (Kafka unreachable, records failing
    /// permanently) is summarised in the log after its first line.
    pub log_summary_interval_s: u64,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            socket_path: PathBuf::from(DEFAULT_SOCKET_PATH),
            socket_mode: 0o660,
            max_clients: DEFAULT_MAX_CLIENTS,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
            log_level: "info".to_owned(),
            log_summary_interval_s: DEFAULT_LOG_SUMMARY_INTERVAL_S,
        }
    }
}

/// `[access]`: peers are admitted if their uid, primary gid or one of their
/// supplementary gids is listed. With both lists empty, the daemon's own uid
/// and gid are admitted (so membership in the daemon's group grants access,
/// as the systemd unit sets up).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// Admitted user ids.
    pub allowed_uids: Vec<u32>,
    /// Admitted group ids (primary or supplementary group of the peer
    /// process, as `SO_PEERGROUPS` reports them).
    pub allowed_gids: Vec<u32>,
}

/// `[topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsSection {
    /// Allowed topic names; an entry ending in `*` is a prefix; `["*"]`
    /// allows all.
    pub allow: Vec<String>,
}

impl Default for TopicsSection {
    fn default() -> Self {
        Self {
            allow: vec!["*".to_owned()],
        }
    }
}

/// `[drain]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainSection {
    /// Number of drain threads, each with its own librdkafka producer.
    pub threads: usize,
    /// CPUs to pin drain threads to, round-robin; empty: no pinning.
    pub cpus: Vec<usize>,
    /// CPUs for librdkafka's own threads; empty: no pinning.
    pub kafka_thread_cpus: Vec<usize>,
    /// Busy-poll budget in microseconds before parking (0: park at once).
    /// Worth setting only with drain threads pinned to dedicated CPUs.
    pub spin_us: u64,
    /// Records taken from one ring before moving to the next (fairness).
    pub batch_per_ring: usize,
    /// Copy each record into librdkafka (`RD_KAFKA_MSG_F_COPY`) instead of
    /// lending it the bytes in the ring. Costs a copy and an allocation per
    /// record; kept to measure what lending saves.
    pub copy_records: bool,
}

impl Default for DrainSection {
    fn default() -> Self {
        Self {
            threads: 1,
            cpus: Vec::new(),
            kafka_thread_cpus: Vec::new(),
            spin_us: DEFAULT_SPIN_US,
            batch_per_ring: 4096,
            copy_records: false,
        }
    }
}

/// `[limits]`: bounds on what local processes can make the daemon hold.
/// Every control connection counts against its uid before it may send a
/// byte; peers not on the access list share a small budget of their own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Control connections one admitted uid may hold open at once.
    pub max_connections_per_uid: usize,
    /// Rings one uid may have registered, orphaned ones included.
    pub max_rings_per_uid: usize,
    /// Bytes of segments (header page plus ring) one uid may have mapped.
    pub max_mapped_bytes_per_uid: u64,
    /// Bytes of segments mapped for all clients together.
    pub max_mapped_bytes: u64,
    /// Connections from peers off the access list (they may only ask for
    /// status) open at once, all uids together.
    pub unauthenticated_connections: usize,
    /// Time a new connection has to send its first message.
    pub handshake_timeout_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            max_rings_per_uid: DEFAULT_MAX_RINGS_PER_UID,
            max_mapped_bytes_per_uid: DEFAULT_MAX_MAPPED_BYTES_PER_UID,
            max_mapped_bytes: DEFAULT_MAX_MAPPED_BYTES,
            unauthenticated_connections: DEFAULT_UNAUTHENTICATED_CONNECTIONS,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
        }
    }
}

impl LimitsSection {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "limits.max_connections_per_uid",
                self.max_connections_per_uid as u64,
            ),
            ("limits.max_rings_per_uid", self.max_rings_per_uid as u64),
            (
                "limits.unauthenticated_connections",
                self.unauthenticated_connections as u64,
            ),
            ("limits.handshake_timeout_ms", self.handshake_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
        }
        // The smallest segment: one header page and the smallest ring.
        let smallest =
            (shmkafka_ringbuf::layout::HEADER_SIZE + shmkafka_ringbuf::layout::MIN_CAPACITY) as u64;
        for (key, value) in [
            (
                "limits.max_mapped_bytes_per_uid",
                self.max_mapped_bytes_per_uid,
            ),
            ("limits.max_mapped_bytes", self.max_mapped_bytes),
        ] {
            if value < smallest {
                return Err(ConfigError::Invalid(format!(
                    "{key} = {value} is smaller than the smallest segment ({smallest} bytes)"
                )));
            }
        }
        Ok(())
    }

    /// Handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// `[spool]`: where records that failed permanently are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    /// Directory of the spool files (created if missing).
    pub dir: PathBuf,
    /// A file is closed and a new one started once it reaches this size.
    pub max_file_bytes: u64,
    /// Bound on the size of all spool files together. Beyond it, failed
    /// records stay in their rings (back-pressure on the clients whose
    /// records fail) until an operator replays or purges the spool.
    pub max_total_bytes: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_SPOOL_DIR),
            max_file_bytes: DEFAULT_SPOOL_MAX_FILE_BYTES,
            max_total_bytes: DEFAULT_SPOOL_MAX_TOTAL_BYTES,
        }
    }
}

impl SpoolSection {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("spool.dir must not be empty".into()));
        }
        if !(MIN_SPOOL_FILE_BYTES..=MAX_SPOOL_FILE_BYTES).contains(&self.max_file_bytes) {
            return Err(ConfigError::Invalid(format!(
                "spool.max_file_bytes = {} must be {MIN_SPOOL_FILE_BYTES}..={MAX_SPOOL_FILE_BYTES}",
                self.max_file_bytes
            )));
        }
        if self.max_total_bytes < MIN_SPOOL_FILE_BYTES {
            return Err(ConfigError::Invalid(format!(
                "spool.max_total_bytes = {} must be at least {MIN_SPOOL_FILE_BYTES}",
                self.max_total_bytes
            )));
        }
        Ok(())
    }
}

/// `[metrics]`: Prometheus text exposition over a minimal HTTP responder.
/// Off unless `listen` is set; loopback only unless `allow_non_loopback`
/// (the endpoint has no authentication and names client processes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Turns the endpoint off without removing `listen`.
    pub enabled: bool,
    /// `host:port` to serve `GET /metrics` on; empty: off.
    pub listen: String,
    /// Permits a non-loopback `listen` address.
    pub allow_non_loopback: bool,
    /// librdkafka `statistics.interval.ms` while metrics are served (0: no
    /// `rdkafka_*` metrics); a `[kafka]` setting of it wins.
    pub statistics_interval_ms: u64,
    /// Most (client name, uid) pairs given their own metric series; rings
    /// of further pairs are counted under `client="other"`. Read at start.
    pub max_client_series: usize,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: String::new(),
            allow_non_loopback: false,
            statistics_interval_ms: DEFAULT_STATISTICS_INTERVAL_MS,
            max_client_series: crate::metrics::client_series::DEFAULT_MAX_CLIENT_SERIES,
        }
    }
}

impl MetricsSection {
    /// The address to serve on, if metrics are on. Call after `validate`.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        if !self.enabled || self.listen.trim().is_empty() {
            return None;
        }
        self.listen.trim().parse().ok()
    }

    /// Checks that `listen` is a socket address, and a loopback one unless
    /// allowed otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled || self.listen.trim().is_empty() {
            return Ok(());
        }
        let address: std::net::SocketAddr = self.listen.trim().parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "metrics.listen = {:?} is not a socket address like \"{EXAMPLE_METRICS_LISTEN}\" or \"[::1]:9187\"",
                self.listen
            ))
        })?;
        if !address.ip().is_loopback() && !self.allow_non_loopback {
            return Err(ConfigError::Invalid(format!(
                "metrics.listen = {address} is not a loopback address; the endpoint has no \
                 authentication: set metrics.allow_non_loopback = true to serve it anyway"
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kafka: Vec<(&str, &str)> = self
            .kafka
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_key(k) { MASK } else { v.as_str() }))
            .collect();
        f.debug_struct("Overrides")
            .field("socket_path", &self.socket_path)
            .field("drain_threads", &self.drain_threads)
            .field("log_level", &self.log_level)
            .field("spool_dir", &self.spool_dir)
            .field("metrics_listen", &self.metrics_listen)
            .field("kafka", &kafka)
            .finish()
    }
}

/// `[kafka]`: librdkafka properties by name. Its `Debug` masks credentials,
/// so printing a `Config` never shows one.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct KafkaSection(pub BTreeMap<String, KafkaValue>);

impl std::ops::Deref for KafkaSection {
    type Target = BTreeMap<String, KafkaValue>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KafkaSection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for KafkaSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown: &dyn fmt::Debug = if is_secret_key(k) { &MASK } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// A librdkafka property value; TOML numbers and booleans are accepted and
/// passed as their text.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum KafkaValue {
    /// Text.
    Text(String),
    /// Integer.
    Integer(i64),
    /// Boolean.
    Bool(bool),
    /// Float.
    Float(f64),
}

impl fmt::Display for KafkaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaValue::Text(s) => f.write_str(s),
            KafkaValue::Integer(i) => write!(f, "{i}"),
            KafkaValue::Bool(b) => write!(f, "{b}"),
            KafkaValue::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// librdkafka refused a property.
    #[error("invalid [kafka] property: {0}")]
    Kafka(String),
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })
    }

    /// Sets a librdkafka property.
    pub fn set_kafka(&mut self, key: &str, value: &str) {
        self.kafka
            .insert(key.to_owned(), KafkaValue::Text(value.to_owned()));
    }

    /// Applies command-line overrides and remembers them for reloads.
    pub fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(path) = &overrides.socket_path {
            self.daemon.socket_path = path.clone();
        }
        if let Some(threads) = overrides.drain_threads {
            self.drain.threads = threads;
        }
        if let Some(level) = &overrides.log_level {
            self.daemon.log_level = level.clone();
        }
        if let Some(dir) = &overrides.spool_dir {
            self.spool.dir = dir.clone();
        }
        if let Some(listen) = &overrides.metrics_listen {
            self.metrics.listen = listen.clone();
        }
        for (key, value) in &overrides.kafka {
            self.set_kafka(key, value);
        }
        self.overrides = overrides.clone();
    }

    /// Checks ranges and lets librdkafka check every property.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.drain;
        if d.threads == 0 || d.threads > MAX_DRAIN_THREADS {
            return Err(ConfigError::Invalid(format!(
                "drain.threads = {} must be 1..={MAX_DRAIN_THREADS}",
                d.threads
            )));
        }
        let cpus = nix::sched::CpuSet::count();
        if let Some(cpu) = d
            .cpus
            .iter()
            .chain(&d.kafka_thread_cpus)
            .find(|&&c| c >= cpus)
        {
            return Err(ConfigError::Invalid(format!(
                "CPU {cpu} does not exist (CpuSet holds {cpus})"
            )));
        }
        if d.batch_per_ring == 0 {
            return Err(ConfigError::Invalid(
                "drain.batch_per_ring must be at least 1".into(),
            ));
        }
        self.spool.validate()?;
        self.limits.validate()?;
        self.metrics.validate()?;
        if self.daemon.max_clients == 0 {
            return Err(ConfigError::Invalid(
                "daemon.max_clients must be at least 1".into(),
            ));
        }
        if self.daemon.log_summary_interval_s == 0 {
            return Err(ConfigError::Invalid(
                "daemon.log_summary_interval_s must be at least 1".into(),
            ));
        }
        if self.daemon.socket_mode > 0o777 {
            return Err(ConfigError::Invalid(format!(
                "daemon.socket_mode {:o} is not a permission mode",
                self.daemon.socket_mode
            )));
        }
        if !self.kafka.contains_key("bootstrap.servers") {
            return Err(ConfigError::Invalid(
                "[kafka] bootstrap.servers is not set (or run with --embedded-broker to try it out)".into(),
            ));
        }
        for (key, path) in self.kafka.iter() {
            if key.ends_with(SECRET_FILE_SUFFIX) {
                read_secret_file(key, &path.to_string())?;
            }
        }
        let kafka = self.kafka_config();
        kafka
            .validate()
            .map_err(|e| ConfigError::Kafka(e.to_string()))?;
        self.exactly_once.validate(&kafka)
    }

    /// The librdkafka configuration: daemon defaults, then `[kafka]`.
    pub fn kafka_config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::new();
        for (k, v) in KAFKA_DEFAULTS {
            config.set(*k, *v);
        }
        if self.metrics.address().is_some() && self.metrics.statistics_interval_ms > 0 {
            config.set(
                "statistics.interval.ms",
                self.metrics.statistics_interval_ms.to_string(),
            );
        }
        for (k, v) in self.kafka.iter() {
            match k.strip_suffix(SECRET_FILE_SUFFIX) {
                Some(property) => match read_secret_file(k, &v.to_string()) {
                    Ok(secret) => {
                        config.set_secret(property, &secret);
                    }
                    // `validate` read it moments ago; a file that vanished
                    // since leaves the property unset, and librdkafka then
                    // fails authentication loudly.
                    Err(e) => tracing::error!(error = %e, "secret file unreadable"),
                },
                None => {
                    config.set(k.clone(), v.to_string());
                }
            }
        }
        config
    }

    /// How often lasting conditions are summarised in the log.
    pub fn log_summary_interval(&self) -> Duration {
        Duration::from_secs(self.daemon.log_summary_interval_s)
    }

    /// Shutdown flush budget.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.daemon.shutdown_timeout_ms)
    }

    /// The effective configuration as text, secrets masked (for logs and
    /// `--check-config`).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "socket_path = {}\nsocket_mode = {:o}\nmax_clients = {}\nallowed_uids = {:?}\nallowed_gids = {:?}\n\
             topics.allow = {:?}\ndrain.threads = {}\ndrain.cpus = {:?}\ndrain.kafka_thread_cpus = {:?}\n",
            self.daemon.socket_path.display(),
            self.daemon.socket_mode,
            self.daemon.max_clients,
            self.access.allowed_uids,
            self.access.allowed_gids,
            self.topics.allow,
            self.drain.threads,
            self.drain.cpus,
            self.drain.kafka_thread_cpus,
        );
        out.push_str(&format!(
            "spool.dir = {}\nspool.max_file_bytes = {}\nspool.max_total_bytes = {}\n",
            self.spool.dir.display(),
            self.spool.max_file_bytes,
            self.spool.max_total_bytes
        ));
        let l = &self.limits;
        out.push_str(&format!(
            "limits.max_connections_per_uid = {}\nlimits.max_rings_per_uid = {}\n\
             limits.max_mapped_bytes_per_uid = {}\nlimits.max_mapped_bytes = {}\n\
             limits.unauthenticated_connections = {}\nlimits.handshake_timeout_ms = {}\n",
            l.max_connections_per_uid,
            l.max_rings_per_uid,
            l.max_mapped_bytes_per_uid,
            l.max_mapped_bytes,
            l.unauthenticated_connections,
            l.handshake_timeout_ms
        ));
        out.push_str(&format!(
            "metrics.listen = {}\n",
            self.metrics
                .address()
                .map_or_else(|| "off".to_owned(), |a| a.to_string())
        ));
        let e = &self.exactly_once;
        if e.enabled {
            out.push_str(&format!(
                "exactly_once = on
exactly_once.daemon_id = {}
exactly_once.progress_topic = {}
                 exactly_once.commit_interval_ms = {}
exactly_once.commit_max_records = {}
",
                e.daemon_id, e.progress_topic, e.commit_interval_ms, e.commit_max_records
            ));
        } else {
            out.push_str(
                "exactly_once = off
",
            );
        }
        for (k, v) in self.kafka_config().masked_entries() {
            out.push_str(&format!("kafka.{k} = {v}\n"));
        }
        out
    }
}

/// A `[kafka]` key ending in this names a file holding the value of the
/// property without the suffix: `"sasl.password_file" = "sasl-password"`
/// keeps the password out of the config file, the command line and the
/// environment.
pub const SECRET_FILE_SUFFIX: &str = "_file";

/// Reads the credential a `*_file` key names. A relative path is taken
/// inside `$CREDENTIALS_DIRECTORY`, where systemd's `LoadCredential=` puts
/// the files; one trailing newline is dropped.
fn read_secret_file(key: &str, path: &str) -> Result<Secret, ConfigError> {
    let path = Path::new(path);
    let full = if path.is_absolute() {
        path.to_owned()
    } else {
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(path),
            None => {
                return Err(ConfigError::Invalid(format!(
                    "[kafka] {key} = {}: a relative path is looked up in $CREDENTIALS_DIRECTORY \
                     (systemd LoadCredential=), which is not set; give an absolute path",
                    path.display()
                )))
            }
        }
    };
    let mut text = std::fs::read_to_string(&full).map_err(|e| {
        ConfigError::Invalid(format!(
            "[kafka] {key}: cannot read {}: {e}",
            full.display()
        ))
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Secret::new(text))
}

/// Whether a topic name is on the allowlist.
pub fn topic_allowed(allow: &[String], name: &str) -> bool {
    allow.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::parse("[daemon]\nsocket_pth = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("socket_pth"), "{err}");
        let err = Config::parse("[drainn]\n").unwrap_err();
        assert!(err.to_string().contains("drainn"), "{err}");
    }

    #[test]
    fn kafka_properties_pass_through_and_override_defaults() {
        let config = Config::parse(
            "[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"linger.ms\" = 20\n\"enable.idempotence\" = false\n",
        )
        .unwrap();
        config.validate().unwrap();
        let kafka = config.kafka_config();
        assert_eq!(kafka.get("linger.ms"), Some("20"));
        assert_eq!(kafka.get("enable.idempotence"), Some("false"));
        assert_eq!(kafka.get("acks"), Some("all"));
    }

    #[test]
    fn librdkafka_refuses_unknown_property_naming_it() {
        let config = Config::parse(
            "[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"no.such.property\" = 1\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("no.such.property"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        let config = Config::parse(
            "[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"sasl.password\" = \"hunter2\"\n",
        )
        .unwrap();
        let text = config.describe();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sasl.password"), "{text}");
    }

    #[test]
    fn secret_files_are_read_and_masked_whatever_the_property() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credential");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        // A property no name rule would mask: only its type does.
        let config = Config::parse(&format!(
            "[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"client.id_file\" = \"{}\"\n",
            file.display()
        ))
        .unwrap();
        config.validate().unwrap();
        let kafka = config.kafka_config();
        assert_eq!(kafka.get("client.id"), Some("s3cr3t-value"));
        assert_eq!(kafka.get("client.id_file"), None);
        for shown in [
            config.describe(),
            format!("{kafka:?}"),
            kafka.to_string(),
            format!("{config:?}"),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        let mut inline = Config::parse("[kafka]\n\"sasl.password\" = \"hunter2\"\n").unwrap();
        inline.apply_overrides(&Overrides {
            kafka: vec![("ssl.key.password".into(), "cli-s3cret".into())],
            ..Default::default()
        });
        for shown in [format!("{inline:?}"), inline.describe()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("cli-s3cret"), "{shown}");
        }

        let missing = Config::parse(
            "[kafka]\n\"bootstrap.servers\" = \"b:9092\"\n\"sasl.password_file\" = \"/nonexistent/pw\"\n",
        )
        .unwrap();
        let err = missing.validate().unwrap_err().to_string();
        assert!(
            err.contains("sasl.password_file") && err.contains("/nonexistent/pw"),
            "{err}"
        );
    }

    #[test]
    fn missing_bootstrap_is_explained() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("bootstrap.servers"), "{err}");
    }

    #[test]
    fn spool_section_defaults_and_validation() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.spool.dir, PathBuf::from(DEFAULT_SPOOL_DIR));
        assert_eq!(config.spool.max_file_bytes, DEFAULT_SPOOL_MAX_FILE_BYTES);
        let config =
            Config::parse("[spool]\ndir = \"/tmp/x\"\nmax_file_bytes = 1048576\n").unwrap();
        assert_eq!(config.spool.dir, PathBuf::from("/tmp/x"));
        config.spool.validate().unwrap();
        let err = Config::parse("[spool]\ndirectory = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let small = Config::parse("[spool]\nmax_file_bytes = 10\n").unwrap();
        let err = small.spool.validate().unwrap_err().to_string();
        assert!(err.contains("spool.max_file_bytes"), "{err}");
        let empty = Config::parse("[spool]\ndir = \"\"\n").unwrap();
        assert!(empty.spool.validate().is_err());
    }

    #[test]
    fn metrics_section_defaults_off_and_validates_the_address() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.metrics.address(), None);
        assert!(!config
            .kafka_config()
            .entries()
            .any(|(k, _)| k == "statistics.interval.ms"));

        let on = Config::parse("[metrics]\nlisten = \"127.0.0.1:9187\"\n").unwrap();
        on.metrics.validate().unwrap();
        assert_eq!(
            on.metrics.address(),
            Some("127.0.0.1:9187".parse().unwrap())
        );
        assert_eq!(
            on.kafka_config().get("statistics.interval.ms"),
            Some("5000")
        );
        let v6 = Config::parse("[metrics]\nlisten = \"[::1]:9187\"\n").unwrap();
        v6.metrics.validate().unwrap();

        let off =
            Config::parse("[metrics]\nlisten = \"127.0.0.1:9187\"\nenabled = false\n").unwrap();
        off.metrics.validate().unwrap();
        assert_eq!(off.metrics.address(), None);

        let bad = Config::parse("[metrics]\nlisten = \"localhost\"\n").unwrap();
        let err = bad.metrics.validate().unwrap_err().to_string();
        assert!(err.contains("metrics.listen"), "{err}");

        let public = Config::parse("[metrics]\nlisten = \"0.0.0.0:9187\"\n").unwrap();
        let err = public.metrics.validate().unwrap_err().to_string();
        assert!(err.contains("allow_non_loopback"), "{err}");
        let allowed =
            Config::parse("[metrics]\nlisten = \"0.0.0.0:9187\"\nallow_non_loopback = true\n")
                .unwrap();
        allowed.metrics.validate().unwrap();

        let explicit = Config::parse(
            "[metrics]\nlisten = \"127.0.0.1:1\"\n[kafka]\n\"statistics.interval.ms\" = 1000\n",
        )
        .unwrap();
        assert_eq!(
            explicit.kafka_config().get("statistics.interval.ms"),
            Some("1000")
        );

        let err = Config::parse("[metrics]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn limits_section_defaults_and_validation() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.limits, LimitsSection::default());
        assert_eq!(config.spool.max_total_bytes, DEFAULT_SPOOL_MAX_TOTAL_BYTES);
        let config =
            Config::parse("[limits]\nmax_rings_per_uid = 4\nmax_mapped_bytes_per_uid = 1048576\n")
                .unwrap();
        assert_eq!(config.limits.max_rings_per_uid, 4);
        config.limits.validate().unwrap();
        let err = Config::parse("[limits]\nmax_ring = 4\n").unwrap_err();
        assert!(err.to_string().contains("max_ring"), "{err}");
        let zero = Config::parse("[limits]\nmax_connections_per_uid = 0\n").unwrap();
        let err = zero.limits.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_connections_per_uid"), "{err}");
        let tiny = Config::parse("[limits]\nmax_mapped_bytes = 100\n").unwrap();
        let err = tiny.limits.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_mapped_bytes"), "{err}");
        let spool = Config::parse("[spool]\nmax_total_bytes = 10\n").unwrap();
        let err = spool.spool.validate().unwrap_err().to_string();
        assert!(err.contains("spool.max_total_bytes"), "{err}");
    }

    #[test]
    fn allowlist_patterns() {
        let allow = vec!["orders".to_owned(), "logs.*".to_owned()];
        assert!(topic_allowed(&allow, "orders"));
        assert!(topic_allowed(&allow, "logs.app"));
        assert!(!topic_allowed(&allow, "orders2"));
        assert!(!topic_allowed(&allow, "payments"));
        assert!(topic_allowed(&["*".to_owned()], "anything"));
    }
}
