//! Plumbing the scenarios share: the broker and `shmkafkad` in child
//! processes, child processes that die with the bench, clocks, CPU and
//! memory readings from `/proc`, and latency summaries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
pub use shmkafka_testkit::die_with_parent;
/// Environment variable naming the `shmkafkad` binary to benchmark (default:
/// next to the bench binary).
pub use shmkafka_testkit::SHMKAFKAD_BIN_ENV;
use shmkafka_testkit::{
    locate_binary, ChildGuard, DaemonOptions, DaemonProcess, KafkaCluster, KafkaOptions,
    MockBrokerProcess, ProduceCounters, Tansu, SHMKAFKAD_BIN,
};

/// Options every broker-facing scenario takes: where to produce, where to
/// write results, and extra daemon arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// Broker to use instead of a mock cluster process.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write SVG charts into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Extra shmkafkad argument (repeatable), e.g.
    /// `--daemon-arg=--drain-threads=2` or `--daemon-arg=-Xlinger.ms=1`.
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    pub daemon_args: Vec<String>,
}

impl ScenarioArgs {
    /// Writes `report` as pretty JSON to `--json`, if given.
    pub fn write_json(&self, report: &impl Serialize) -> anyhow::Result<()> {
        let Some(path) = &self.json else {
            return Ok(());
        };
        create_parent(path)?;
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Enqueues `record` on an in-process producer as an application would:
/// on a full queue, serve callbacks for a millisecond and retry; afterwards
/// serve due callbacks without waiting.
pub fn send_in_process<C: rdkafka::producer::ProducerContext>(
    producer: &rdkafka::producer::BaseProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> anyhow::Result<()> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// Which path a client process takes to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Path2Kafka {
    /// shmkafka client library -> shared memory -> shmkafkad.
    Daemon,
    /// rust-rdkafka `BaseProducer` in the client process.
    InProcess,
    /// Kafka's own Java producer: `ProducerPerformance` from
    /// `kafka-tools`, one JVM per client (produce scenario only).
    Java,
}

impl Path2Kafka {
    /// The command-line spelling.
    pub fn arg(self) -> &'static str {
        match self {
            Path2Kafka::Daemon => "daemon",
            Path2Kafka::InProcess => "in-process",
            Path2Kafka::Java => "java",
        }
    }
}

/// How a measuring client process reaches Kafka (internal child options).
#[derive(Debug, Clone, clap::Args)]
pub struct ChildTarget {
    /// Path to Kafka.
    #[arg(long, value_enum)]
    pub mode: Path2Kafka,
    /// Daemon socket (daemon mode).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Bootstrap servers (in-process mode).
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Topic.
    #[arg(long)]
    pub topic: String,
}

impl ChildTarget {
    /// librdkafka settings for the in-process path: the daemon's defaults,
    /// so both paths produce alike, and `--bootstrap`.
    pub fn in_process_config(&self) -> anyhow::Result<rdkafka::config::ClientConfig> {
        let mut config = rdkafka::config::ClientConfig::new();
        for (k, v) in shmkafkad::config::KAFKA_DEFAULTS {
            config.set(*k, *v);
        }
        config.set(
            "bootstrap.servers",
            self.bootstrap.as_deref().context("--bootstrap")?,
        );
        Ok(config)
    }
}

/// Wall-clock nanoseconds since the epoch (comparable across processes).
pub fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// CPU seconds (user + system) this process has used so far.
pub fn self_cpu_seconds() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => f64::NAN,
    }
}

/// utime + stime in clock ticks from the text of `/proc/PID/stat`. The
/// command name (field 2) may contain spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_name = stat.rsplit_once(')').context("stat: no ')'")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the name.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("stat: too few fields")?
            .parse::<u64>()
            .context("stat: utime/stime not a number")
    };
    Ok(field(11)? + field(12)?)
}

/// CPU seconds a process has used so far, from `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(parse_stat_cpu_ticks(&stat)? as f64 / hz)
}

/// Memory and threads of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    /// Resident anonymous memory (heap, stacks): the process's own memory.
    pub rss_anon_kib: u64,
    /// Resident file-backed memory (the binary and libraries).
    pub rss_file_kib: u64,
    /// Resident shared memory (for `shmkafkad`: the client rings it touched).
    pub rss_shmem_kib: u64,
    /// Peak resident set size.
    pub vm_hwm_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Parses the text of `/proc/PID/status`; missing lines read as 0.
pub fn parse_status(text: &str) -> ProcStatus {
    let mut status = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = || {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match key {
            "RssAnon" => status.rss_anon_kib = number(),
            "RssFile" => status.rss_file_kib = number(),
            "RssShmem" => status.rss_shmem_kib = number(),
            "VmHWM" => status.vm_hwm_kib = number(),
            "Threads" => status.threads = number(),
            _ => {}
        }
    }
    status
}

/// Reads `/proc/PID/status`.
pub fn process_status(pid: u32) -> anyhow::Result<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status(&text))
}

/// Creates the directory `path` is to be written in.
pub fn create_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// A value of `size` bytes (a fixed, non-constant pattern).
pub fn value_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// What the records' values hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Payload {
    /// One fixed byte pattern per size ([`value_of`]); compresses to
    /// almost nothing, so it says nothing about codecs.
    Pattern,
    /// JSON lines of about `size` bytes that differ per record (order
    /// events with varying ids, quantities and prices), compressible as
    /// application logs and events are.
    Json,
}

impl Payload {
    /// The command-line spelling.
    pub fn arg(self) -> &'static str {
        match self {
            Payload::Pattern => "pattern",
            Payload::Json => "json",
        }
    }
}

/// Distinct values a client cycles through for [`Payload::Json`]: enough
/// that a batch does not repeat records.
const JSON_POOL: usize = 4096;

/// The values a client sends, in turn.
pub fn values_of(payload: Payload, size: usize) -> Vec<Vec<u8>> {
    match payload {
        Payload::Pattern => vec![value_of(size)],
        Payload::Json => (0..JSON_POOL).map(|i| json_line(i, size)).collect(),
    }
}

/// An order event as JSON, padded or cut to exactly `size` bytes.
fn json_line(i: usize, size: usize) -> Vec<u8> {
    let mut line = format!(
        r#"{{"order_id":{},"customer":"customer-{}","status":"{}","items":["#,
        i * 7919 % 1_000_003,
        i * 31 % 977,
        ["PLACED", "PAID", "SHIPPED"][i % 3]
    );
    let mut n = 0;
    while line.len() < size {
        line.push_str(&format!(
            r#"{{"sku":"SKU-{:05}","qty":{},"price_cents":{},"warehouse":"eu-west-{}"}},"#,
            (i * 7 + n * 13) % 50_000,
            1 + (i + n) % 9,
            199 + (i * 31 + n * 17) % 10_000,
            n % 3
        ));
        n += 1;
    }
    let mut bytes = line.into_bytes();
    bytes.truncate(size);
    bytes
}

/// Spawns `command` guarded: SIGKILLed when the guard drops (also when the
/// bench fails) or when the bench dies.
pub fn spawn_guarded(command: &mut Command) -> anyhow::Result<ChildGuard> {
    die_with_parent(command);
    let child = command
        .spawn()
        .with_context(|| format!("spawning {:?}", command.get_program()))?;
    Ok(ChildGuard::new(child))
}

/// A command re-executing this bench binary in a (hidden) child role.
pub fn bench_child(role: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg(role);
    Ok(command)
}

/// The broker the scenarios produce to: `--bootstrap` if given, a tansu
/// broker started here, or by default the mock cluster in its own process
/// (both killed on drop).
pub struct Broker {
    kind: BrokerKind,
    bootstrap: String,
}

enum BrokerKind {
    Mock(MockBrokerProcess),
    Tansu(Tansu),
    Kafka(KafkaCluster),
    External,
}

impl Broker {
    /// Uses `bootstrap`, or starts a one-broker mock cluster.
    pub fn start(bootstrap: Option<&str>) -> anyhow::Result<Broker> {
        Ok(match bootstrap {
            Some(b) => Broker {
                kind: BrokerKind::External,
                bootstrap: b.to_owned(),
            },
            None => {
                let mock = MockBrokerProcess::start(1, &[])?;
                let bootstrap = mock.bootstrap_servers().to_owned();
                Broker {
                    kind: BrokerKind::Mock(mock),
                    bootstrap,
                }
            }
        })
    }

    /// Starts Apache Kafka (1 broker, or 3 with replication) with its data
    /// in `dir`.
    pub fn start_kafka(dir: &Path, nodes: usize) -> anyhow::Result<Broker> {
        // Deleted topics' logs go at once (the default waits a minute).
        // JMX: the broker's request metrics say how the records arrived.
        let options = KafkaOptions::nodes(nodes)
            .property("log.segment.delete.delay.ms", "1000")
            .with_jmx();
        let cluster = KafkaCluster::start(dir, &options)?;
        let bootstrap = cluster.bootstrap_servers().to_owned();
        Ok(Broker {
            kind: BrokerKind::Kafka(cluster),
            bootstrap,
        })
    }

    /// Starts tansu with its SQLite storage in `dir`.
    pub fn start_tansu(dir: &Path) -> anyhow::Result<Broker> {
        let tansu = Tansu::start(dir)?;
        let bootstrap = tansu.bootstrap_servers().to_owned();
        Ok(Broker {
            kind: BrokerKind::Tansu(tansu),
            bootstrap,
        })
    }

    /// Bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Process ids of the brokers started here (none for `--bootstrap`),
    /// whose CPU time is the broker's cost.
    pub fn pids(&self) -> Vec<u32> {
        match &self.kind {
            BrokerKind::Mock(mock) => vec![mock.pid()],
            BrokerKind::Tansu(tansu) => vec![tansu.pid()],
            BrokerKind::Kafka(cluster) => cluster
                .node_ids()
                .into_iter()
                .filter_map(|node| cluster.pid(node))
                .collect(),
            BrokerKind::External => Vec::new(),
        }
    }

    /// The broker's own count of produce requests, partition batches and
    /// records so far (Apache Kafka started here; `None` elsewhere).
    pub fn produce_counters(&self) -> anyhow::Result<Option<ProduceCounters>> {
        match &self.kind {
            BrokerKind::Kafka(cluster) => Ok(Some(cluster.produce_counters()?)),
            _ => Ok(None),
        }
    }

    /// Whether this is the mock cluster.
    pub fn is_mock(&self) -> bool {
        matches!(self.kind, BrokerKind::Mock(_))
    }

    /// What the broker is, for reports.
    pub fn describe(&self) -> String {
        match &self.kind {
            BrokerKind::Mock(mock) => {
                format!("librdkafka mock cluster (own process, pid {})", mock.pid())
            }
            BrokerKind::Tansu(tansu) => format!("tansu (SQLite storage, pid {})", tansu.pid()),
            BrokerKind::Kafka(cluster) => format!(
                "Apache Kafka {} x{} (KRaft, pids {:?})",
                shmkafka_testkit::KAFKA_VERSION,
                cluster.node_ids().len(),
                self.pids()
            ),
            BrokerKind::External => self.bootstrap.clone(),
        }
    }

    /// Creates `topic` where topics are not auto-created (tansu, Apache
    /// Kafka: replicated to every node up to 3, `min.insync.replicas=2`
    /// with 3, as production runs them); the mock cluster auto-creates, and
    /// an external broker is the caller's.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        match &self.kind {
            BrokerKind::Tansu(tansu) => tansu.create_topic(topic, partitions)?,
            BrokerKind::Kafka(cluster) => {
                let replicas = cluster.node_ids().len().min(3) as u32;
                let min_isr = if replicas >= 3 { "2" } else { "1" };
                cluster.create_topic(
                    topic,
                    partitions,
                    replicas,
                    &[("min.insync.replicas", min_isr)],
                )?;
            }
            BrokerKind::Mock(_) | BrokerKind::External => {}
        }
        Ok(())
    }

    /// Deletes a case's topic on an Apache Kafka cluster started here, so
    /// a long run does not fill the disk with the logs of finished cases.
    pub fn delete_topic(&self, topic: &str) -> anyhow::Result<()> {
        if let BrokerKind::Kafka(cluster) = &self.kind {
            cluster.delete_topic(topic)?;
        }
        Ok(())
    }
}

/// A `shmkafkad` child process of a scenario (see [`start_daemon`]).
pub type Daemon = DaemonProcess;

/// Starts `shmkafkad` (the executable `exe`, or the one built next to this
/// bench) in `dir`, with its own socket and spool, against `bootstrap`,
/// with `extra` arguments; waits until its socket accepts connections. It
/// logs warnings to the bench's stderr, stops with SIGTERM when dropped
/// (SIGKILL if it does not stop within 10 s), and is SIGKILLed if the bench
/// dies.
pub fn start_daemon(
    exe: Option<&Path>,
    dir: &Path,
    bootstrap: &str,
    extra: &[String],
) -> anyhow::Result<DaemonProcess> {
    let exe = match exe {
        Some(exe) => exe.to_owned(),
        None => locate_binary(SHMKAFKAD_BIN, SHMKAFKAD_BIN_ENV)
            .context("cargo build --release -p shmkafkad first")?,
    };
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool)?;
    DaemonOptions::new(&exe, &dir.join("shmkafkad.sock"), bootstrap)
        .spool_dir(&spool)
        .log_level("warn")
        .args(extra)
        .inherit_log()
        .terminate_on_drop(Duration::from_secs(10))
        .try_start()
        .with_context(|| format!("starting {}", exe.display()))
}

/// Raises the soft open-file limit to the hard limit (children inherit it);
/// returns the new soft limit.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// A latency histogram in nanoseconds, 3 significant digits, up to 100 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest observation.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: f64,
}

impl Summary {
    /// Summarises `h` (all zero if it is empty).
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.50),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

/// Quantiles drawn in percentile plots (followed by the maximum).
pub const CURVE_QUANTILES: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 0.99999];

/// Points of a percentile plot of `h`: x is `1 / (1 - q)` (2 for the median,
/// 100 for p99, 1000 for p99.9), y the latency in nanoseconds; quantiles
/// beyond what `h`'s count resolves are left out, and the maximum is added
/// at x = the count.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    let mut points: Vec<(f64, f64)> = CURVE_QUANTILES
        .iter()
        .map(|&q| ((1.0 / (1.0 - q)).round(), q))
        .filter(|&(x, _)| x < n)
        .map(|(x, q)| (x, h.value_at_quantile(q) as f64))
        .collect();
    points.push((n.max(2.0), h.max() as f64));
    points
}

/// Nanoseconds as a short human string (`850ns`, `12.3us`, `4.56ms`, `1.20s`).
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "-".to_owned();
    }
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// A progress bar on stderr (drawn only on a terminal).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a ')' of its own.
        let stat = "4242 (shm kafka) d) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), 325);
        assert!(parse_stat_cpu_ticks("1 (x) S 1 2").is_err());
        assert!(parse_stat_cpu_ticks("no name here").is_err());
    }

    #[test]
    fn own_stat_parses() {
        let cpu = process_cpu_seconds(std::process::id()).unwrap();
        assert!(cpu >= 0.0);
    }

    #[test]
    fn status_lines_are_read_in_kib() {
        let text = "Name:\tshmkafkad\nVmHWM:\t   20480 kB\nVmRSS:\t   12000 kB\n\
                    RssAnon:\t    8000 kB\nRssFile:\t    3000 kB\nRssShmem:\t    1000 kB\n\
                    Threads:\t17\nSigQ:\t0/1\n";
        assert_eq!(
            parse_status(text),
            ProcStatus {
                rss_anon_kib: 8000,
                rss_file_kib: 3000,
                rss_shmem_kib: 1000,
                vm_hwm_kib: 20480,
                threads: 17,
            }
        );
        let own = process_status(std::process::id()).unwrap();
        assert!(own.threads >= 1 && own.rss_anon_kib > 0, "{own:?}");
    }

    #[test]
    fn summary_reads_percentiles() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 1000);
        // hdrhistogram values are equivalent within 3 significant digits.
        let near = |a: u64, b: u64| (a as f64 - b as f64).abs() / b as f64 <= 1e-3;
        assert!(near(s.p50_ns, 500_000), "{s:?}");
        assert!(near(s.p99_ns, 990_000), "{s:?}");
        assert!(near(s.p999_ns, 999_000), "{s:?}");
        assert!(near(s.max_ns, 1_000_000), "{s:?}");
        assert!((s.mean_ns - 500_500.0).abs() < 1000.0, "{s:?}");
        assert_eq!(Summary::of(&histogram()), Summary::default());
    }

    #[test]
    fn percentile_curve_stops_at_what_the_count_resolves() {
        let mut h = histogram();
        for v in 1..=200u64 {
            h.record(v).unwrap();
        }
        let curve = percentile_curve(&h);
        let xs: Vec<f64> = curve.iter().map(|p| p.0).collect();
        // 2, 4, 10, 20 and 100 (p99.5 needs more than 200), then the max at n.
        assert_eq!(xs.len(), 6, "{curve:?}");
        assert!((xs[0] - 2.0).abs() < 1e-9 && (xs[4] - 100.0).abs() < 1e-6);
        assert_eq!(curve.last().unwrap(), &(200.0, 200.0));
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "{curve:?}");
        assert!(percentile_curve(&histogram()).is_empty());
    }

    #[test]
    fn durations_format_in_readable_units() {
        assert_eq!(fmt_ns(850.0), "850ns");
        assert_eq!(fmt_ns(12_345.0), "12.3us");
        assert_eq!(fmt_ns(4_560_000.0), "4.56ms");
        assert_eq!(fmt_ns(1.2e9), "1.20s");
        assert_eq!(fmt_ns(f64::NAN), "-");
    }
}
