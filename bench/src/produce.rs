//! `produce`: records delivered to a broker per second, and client CPU per
//! record, through `shmkafkad` versus an in-process librdkafka producer.
//!
//! Both set-ups use the same librdkafka settings (the daemon's defaults), the
//! same broker (the mock cluster in its own process unless `--bootstrap` is
//! given), the same keys and values. A record counts as delivered only when
//! its producer saw the broker's acknowledgement: for the daemon, the client's
//! `flush` returns once every record's delivery report arrived; for the
//! in-process producer, its own delivery callbacks are counted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::Serialize;
use shmkafka_client::{Message, Producer as ShmProducer, ProducerOptions};
use shmkafka_testkit::ProduceCounters;

mod java;

use crate::harness::{
    bench_child, process_cpu_seconds, progress, self_cpu_seconds, send_in_process, spawn_guarded,
    start_daemon, values_of, wall_ns, Broker, ChildTarget, Daemon, Path2Kafka, Payload,
    ScenarioArgs,
};

/// Options of the `produce` scenario.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Record value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "64,1024,16384")]
    pub sizes: Vec<usize>,
    /// Client process counts.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Bytes of values each client process sends per case (records =
    /// this / size, at most --max-records).
    #[arg(long, default_value_t = 128 << 20)]
    pub bytes_per_client: usize,
    /// Cap on records per client process per case.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_records: usize,
    /// Records per second each client offers (0: as fast as it can). Below
    /// saturation every path delivers what is offered, and the comparison
    /// is CPU per record: on the host (clients + daemon) and at the broker.
    /// Clients send what is due, then sleep 1 ms, as a busy application
    /// does between bursts.
    #[arg(long, default_value_t = 0)]
    pub rate_per_client: u64,
    /// Runs of every cell; the table reports each figure's median. Runs
    /// of one cell take turns (in-process, each variant, again), so a slow
    /// spell of the machine hits all of them.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Broker, output and daemon options; with `--bootstrap`, topics must
    /// exist or be auto-created (see `--tansu` for a broker started here).
    #[command(flatten)]
    pub common: ScenarioArgs,
    /// Start a tansu broker (SQLite storage in a temporary directory) and
    /// create each case's topic on it, instead of the mock cluster.
    #[arg(long)]
    pub tansu: bool,
    /// Start Apache Kafka with this many brokers (1, or 3 with
    /// `replication.factor=3, min.insync.replicas=2`) from its Maven
    /// Central jars, and create each case's topic on it.
    #[arg(long, value_name = "NODES")]
    pub kafka: Option<usize>,
    /// Partitions of each case's topic (tansu, Kafka; the mock cluster
    /// auto-creates 4).
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// What the values hold: `pattern` (one fixed pattern) or `json`
    /// (order events that differ per record, compressible as real ones;
    /// use it to compare `compression.type` variants).
    #[arg(long, value_enum, default_value_t = Payload::Pattern)]
    pub payload: Payload,
    /// Also measure Kafka's own Java producer (`ProducerPerformance` from
    /// kafka-tools, one JVM per client, the same acks, idempotence,
    /// linger.ms and batch.size); needs --kafka or --bootstrap.
    #[arg(long)]
    pub java: bool,
    /// A daemon configuration to measure, as `LABEL:KEY=VALUE;KEY=VALUE`
    /// (repeatable; default: one variant `daemon` with the defaults). A KEY
    /// `kafka.PROP` sets a librdkafka property; any other `section.key`
    /// takes a TOML value, e.g.
    /// `--variant 'pinned:drain.cpus=[1];drain.kafka_thread_cpus=[0]'`,
    /// `--variant 'linger0:kafka.linger.ms=0'`; the pseudo-key
    /// `client.delivery_reports=true` makes its clients read a delivery
    /// report per record; the pseudo-key `bin=PATH`
    /// runs another daemon executable. Every variant runs its own
    /// daemon; each case runs them one after another with the in-process
    /// producer, so their ratios share one machine state.
    #[arg(long = "variant")]
    pub variants: Vec<String>,
}

/// Options of one client process (internal).
#[derive(Debug, Clone, Args)]
pub struct ProduceChildArgs {
    /// Where the records go.
    #[command(flatten)]
    pub target: ChildTarget,
    /// Records to send.
    #[arg(long)]
    pub records: usize,
    /// Value size.
    #[arg(long)]
    pub size: usize,
    /// Client index (keys differ per client).
    #[arg(long)]
    pub index: usize,
    /// Records per second to offer (0: unpaced).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// What the values hold.
    #[arg(long, value_enum, default_value_t = Payload::Pattern)]
    pub payload: Payload,
    /// Daemon path: read a delivery report for every record (polled every
    /// 256 sends, the rest after the last), counting delivered records from
    /// the reports.
    #[arg(long)]
    pub delivery_reports: bool,
}

/// Paces a sender to `rate` records per second in bursts: what is due is
/// sent at once, then the sender sleeps 1 ms (no busy waiting, which would
/// charge the pacing itself to the client's CPU).
struct Pacer {
    start: std::time::Instant,
    rate: u64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            start: std::time::Instant::now(),
            rate,
        }
    }

    /// Blocks until record `i` is due.
    fn wait_for(&self, i: u64) {
        if self.rate == 0 {
            return;
        }
        loop {
            let due = self.start.elapsed().as_secs_f64() * self.rate as f64;
            if i as f64 <= due {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    /// Path to Kafka.
    pub mode: Path2Kafka,
    /// Daemon variant label (`in-process` for the in-process producer).
    pub variant: String,
    /// Client processes.
    pub clients: usize,
    /// Value size.
    pub size: usize,
    /// Records acknowledged by the broker, all clients.
    pub delivered: u64,
    /// Records that failed.
    pub failed: u64,
    /// First client start to last client's last acknowledgement.
    pub seconds: f64,
    /// Delivered records per second.
    pub records_per_sec: f64,
    /// CPU seconds (user + system) of the client processes per million records.
    pub client_cpu_s_per_million: f64,
    /// CPU seconds of shmkafkad per million records (daemon mode only).
    pub daemon_cpu_s_per_million: Option<f64>,
    /// CPU seconds of the host's part (client processes and shmkafkad) per
    /// million records.
    pub host_cpu_s_per_million: f64,
    /// CPU seconds of the broker process per million records (when the
    /// broker runs here).
    pub broker_cpu_s_per_million: Option<f64>,
    /// Produce requests the broker received per second (Apache Kafka
    /// started here, from its request metrics).
    pub produce_requests_per_sec: Option<f64>,
    /// Records per produce request, as the broker counted them.
    pub records_per_request: Option<f64>,
    /// Records per partition batch (a request carries one batch per
    /// partition it writes to).
    pub records_per_batch: Option<f64>,
    /// Records per second each client offered (0: unpaced).
    pub rate_per_client: u64,
    /// Runs behind the figures (medians when more than one).
    pub runs: usize,
    /// Delivered records per second of each run.
    pub runs_records_per_sec: Vec<f64>,
}

/// What a child reports on stdout.
#[derive(Debug, Clone, Copy)]
struct ChildReport {
    start_ns: u128,
    end_ns: u128,
    delivered: u64,
    failed: u64,
    cpu_s: f64,
}

/// A client process: send, wait for acknowledgements, report.
pub fn child(args: &ProduceChildArgs) -> anyhow::Result<()> {
    let values = values_of(args.payload, args.size);
    let report = match args.target.mode {
        Path2Kafka::Daemon => child_daemon(args, &values)?,
        Path2Kafka::InProcess => child_in_process(args, &values)?,
        Path2Kafka::Java => bail!("Java clients run ProducerPerformance, not this binary"),
    };
    println!(
        "report {} {} {} {} {}",
        report.start_ns, report.end_ns, report.delivered, report.failed, report.cpu_s
    );
    Ok(())
}

fn child_daemon(args: &ProduceChildArgs, values: &[Vec<u8>]) -> anyhow::Result<ChildReport> {
    let producer = ShmProducer::connect_with(ProducerOptions {
        socket_path: args.target.socket.clone(),
        client_name: format!("bench-{}", args.index),
        delivery_reports: args.delivery_reports,
        ..ProducerOptions::default()
    })?;
    let topic = producer.topic(&args.target.topic)?;
    let cpu0 = self_cpu_seconds();
    let start_ns = wall_ns();
    let base = (args.index as u64) << 40;
    let pacer = Pacer::new(args.rate);
    let (mut delivered, mut failed) = (0u64, 0u64);
    let mut count = |report: shmkafka_client::DeliveryReport| match report.result {
        Ok(_) => delivered += 1,
        Err(_) => failed += 1,
    };
    for i in 0..args.records as u64 {
        pacer.wait_for(i);
        let key = (base + i).to_be_bytes();
        let value = &values[i as usize % values.len()];
        producer.send(&topic, &Message::new().key(&key).value(value))?;
        if args.delivery_reports && i % 256 == 255 {
            producer.poll_reports(Duration::ZERO, usize::MAX, &mut count)?;
        }
    }
    let report = producer.flush(Duration::from_secs(600))?;
    if args.delivery_reports {
        // Every outcome is in; read the reports that remain.
        while producer.poll_reports(Duration::ZERO, usize::MAX, &mut count)? > 0 {}
        anyhow::ensure!(
            delivered + failed == args.records as u64,
            "{} reports for {} records",
            delivered + failed,
            args.records
        );
    } else {
        failed = report.failures.len() as u64;
        delivered = args.records as u64 - failed;
    }
    let end_ns = wall_ns();
    Ok(ChildReport {
        start_ns,
        end_ns,
        delivered,
        failed,
        cpu_s: self_cpu_seconds() - cpu0,
    })
}

struct Counting {
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn child_in_process(args: &ProduceChildArgs, values: &[Vec<u8>]) -> anyhow::Result<ChildReport> {
    let config = args.target.in_process_config()?;
    let producer: BaseProducer<Counting> = config.create_with_context(Counting {
        delivered: 0.into(),
        failed: 0.into(),
    })?;
    // Same warm-up as the daemon path, which registers its topic first:
    // fetch the topic's metadata before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&args.target.topic), Duration::from_secs(10))?;
    let cpu0 = self_cpu_seconds();
    let start_ns = wall_ns();
    let base = (args.index as u64) << 40;
    let pacer = Pacer::new(args.rate);
    for i in 0..args.records as u64 {
        pacer.wait_for(i);
        let key = (base + i).to_be_bytes();
        let record = BaseRecord::to(&args.target.topic)
            .key(&key[..])
            .payload(&values[i as usize % values.len()][..]);
        send_in_process(&producer, record)?;
    }
    producer.flush(Duration::from_secs(600))?;
    let end_ns = wall_ns();
    let ctx = producer.context();
    Ok(ChildReport {
        start_ns,
        end_ns,
        delivered: ctx.delivered.load(std::sync::atomic::Ordering::Relaxed),
        failed: ctx.failed.load(std::sync::atomic::Ordering::Relaxed),
        cpu_s: self_cpu_seconds() - cpu0,
    })
}

/// One cell of the table: who produces, how many clients, what size.
pub(crate) struct Case<'a> {
    mode: Path2Kafka,
    variant: &'a str,
    clients: usize,
    size: usize,
    records: usize,
    topic: &'a str,
    rate_per_client: u64,
    payload: Payload,
    broker_pids: &'a [u32],
    /// Clients read a delivery report per record (daemon path).
    delivery_reports: bool,
}

fn run_case(
    case: &Case<'_>,
    bootstrap: &str,
    daemon: Option<&Daemon>,
) -> anyhow::Result<ProduceResult> {
    let Case {
        mode,
        clients,
        size,
        records,
        topic,
        ..
    } = *case;
    let daemon_cpu0 = daemon.map(|d| process_cpu_seconds(d.pid())).transpose()?;
    let brokers_cpu = || -> anyhow::Result<f64> {
        case.broker_pids
            .iter()
            .map(|&pid| process_cpu_seconds(pid))
            .sum()
    };
    let broker_cpu0 = (!case.broker_pids.is_empty())
        .then(brokers_cpu)
        .transpose()?;
    let mut children = Vec::new();
    for index in 0..clients {
        let mut command = bench_child("produce-child")?;
        command
            .args(["--mode", mode.arg()])
            .args(["--topic", topic])
            .args([
                "--records",
                &records.to_string(),
                "--size",
                &size.to_string(),
            ])
            .args(["--index", &index.to_string(), "--bootstrap", bootstrap])
            .args(["--rate", &case.rate_per_client.to_string()])
            .args(["--payload", case.payload.arg()])
            .stdout(Stdio::piped());
        if let Some(d) = daemon {
            command.arg("--socket").arg(d.socket());
        }
        if case.delivery_reports {
            command.arg("--delivery-reports");
        }
        children.push(spawn_guarded(&mut command)?);
    }
    let mut reports = Vec::new();
    for mut guard in children {
        let child = &mut guard.child;
        let stdout = child.stdout.take().expect("piped");
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("report "))
            .context("client reported nothing")?;
        let status = child.wait()?;
        if !status.success() {
            bail!("client failed: {status}");
        }
        let f: Vec<&str> = line.split_whitespace().skip(1).collect();
        reports.push(ChildReport {
            start_ns: f[0].parse()?,
            end_ns: f[1].parse()?,
            delivered: f[2].parse()?,
            failed: f[3].parse()?,
            cpu_s: f[4].parse()?,
        });
    }
    let start = reports.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let end = reports.iter().map(|r| r.end_ns).max().unwrap_or(0);
    let seconds = (end - start) as f64 / 1e9;
    let delivered: u64 = reports.iter().map(|r| r.delivered).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let cpu: f64 = reports.iter().map(|r| r.cpu_s).sum();
    let million = delivered as f64 / 1e6;
    let daemon_cpu = match (daemon, daemon_cpu0) {
        (Some(d), Some(c0)) => Some((process_cpu_seconds(d.pid())? - c0) / million),
        _ => None,
    };
    let broker_cpu = match broker_cpu0 {
        Some(c0) => Some((brokers_cpu()? - c0) / million),
        None => None,
    };
    Ok(ProduceResult {
        mode,
        variant: case.variant.to_owned(),
        clients,
        size,
        delivered,
        failed,
        seconds,
        records_per_sec: delivered as f64 / seconds,
        client_cpu_s_per_million: cpu / million,
        daemon_cpu_s_per_million: daemon_cpu,
        host_cpu_s_per_million: cpu / million + daemon_cpu.unwrap_or(0.0),
        broker_cpu_s_per_million: broker_cpu,
        produce_requests_per_sec: None,
        records_per_request: None,
        records_per_batch: None,
        rate_per_client: case.rate_per_client,
        runs: 1,
        runs_records_per_sec: vec![delivered as f64 / seconds],
    })
}

impl ProduceResult {
    /// Fills the request figures from what the broker counted during the
    /// case (cases run one at a time, so the counts are this case's).
    fn count_requests(&mut self, sent: ProduceCounters) {
        let per = |records: u64, count: u64| (count > 0).then(|| records as f64 / count as f64);
        self.produce_requests_per_sec =
            (self.seconds > 0.0).then(|| sent.requests as f64 / self.seconds);
        self.records_per_request = per(sent.records, sent.requests);
        self.records_per_batch = per(sent.records, sent.partition_batches);
    }
}

/// A daemon configuration under test: a label and the TOML it runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Name in tables and charts.
    pub label: String,
    /// Configuration file contents (empty: the defaults).
    pub toml: String,
    /// Daemon executable (default: `shmkafkad` beside this binary).
    pub binary: Option<PathBuf>,
    /// Clients read a delivery report per record (pseudo-key
    /// `client.delivery_reports=true`).
    pub delivery_reports: bool,
}

/// Parses `LABEL:KEY=VALUE;KEY=VALUE` (see [`ProduceArgs::variants`]).
pub fn parse_variant(spec: &str) -> anyhow::Result<Variant> {
    let (label, settings) = spec.split_once(':').unwrap_or((spec, ""));
    anyhow::ensure!(
        !label.is_empty() && label != "in-process",
        "variant needs a label other than in-process: {spec:?}"
    );
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut binary = None;
    let mut delivery_reports = false;
    for setting in settings.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("{setting:?}: expected KEY=VALUE"))?;
        if key == "bin" {
            binary = Some(PathBuf::from(value));
            continue;
        }
        if key == "client.delivery_reports" {
            delivery_reports = value
                .parse()
                .with_context(|| format!("{setting:?}: expected true or false"))?;
            continue;
        }
        let (section, name) = key
            .split_once('.')
            .with_context(|| format!("{key:?}: expected section.key"))?;
        let line = if section == "kafka" {
            format!("{name:?} = {value:?}")
        } else {
            format!("{name} = {value}")
        };
        match sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => lines.push(line),
            None => sections.push((section.to_owned(), vec![line])),
        }
    }
    let toml: String = sections
        .iter()
        .map(|(section, lines)| format!("[{section}]\n{}\n", lines.join("\n")))
        .collect();
    Ok(Variant {
        label: label.to_owned(),
        toml,
        binary,
        delivery_reports,
    })
}

/// Runs every case and prints the comparison.
pub fn run(args: &ProduceArgs) -> anyhow::Result<Vec<ProduceResult>> {
    let dir = tempfile::tempdir()?;
    let started_here = usize::from(args.tansu) + usize::from(args.kafka.is_some());
    anyhow::ensure!(
        started_here + usize::from(args.common.bootstrap.is_some()) <= 1,
        "--tansu, --kafka and --bootstrap each name the broker: give one"
    );
    let broker = if args.tansu {
        Broker::start_tansu(&dir.path().join("tansu"))?
    } else if let Some(nodes) = args.kafka {
        Broker::start_kafka(&dir.path().join("kafka"), nodes)?
    } else {
        Broker::start(args.common.bootstrap.as_deref())?
    };
    let broker_pids = broker.pids();
    let bootstrap = broker.bootstrap().to_owned();
    let variants = if args.variants.is_empty() {
        vec![parse_variant("daemon")?]
    } else {
        args.variants
            .iter()
            .map(|v| parse_variant(v))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut daemons = Vec::new();
    for (i, variant) in variants.iter().enumerate() {
        let variant_dir = dir.path().join(format!("variant-{i}"));
        std::fs::create_dir_all(&variant_dir)?;
        let mut extra = args.common.daemon_args.clone();
        if !variant.toml.is_empty() {
            let config = variant_dir.join("shmkafkad.toml");
            std::fs::write(&config, &variant.toml)?;
            extra.push("--config".to_owned());
            extra.push(config.display().to_string());
        }
        let daemon = start_daemon(variant.binary.as_deref(), &variant_dir, &bootstrap, &extra);
        daemons.push(daemon.with_context(|| format!("variant {}", variant.label))?);
    }
    eprintln!(
        "produce: broker {}, {} CPUs, variants: {}",
        broker.describe(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        variants
            .iter()
            .map(|v| format!("{} [{}]", v.label, v.toml.replace('\n', " ").trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    anyhow::ensure!(
        !args.java || !broker.is_mock(),
        "--java needs a real broker (--kafka N or --bootstrap): the mock cluster runs inside librdkafka"
    );
    let peers = 1 + usize::from(args.java);
    let cells = args.sizes.len() * args.clients.len() * (peers + variants.len()) * args.repeat;
    let progress = progress(cells as u64, "cases");
    let mut results = Vec::new();
    let mut case_no = 0;
    for &size in &args.sizes {
        let records = (args.bytes_per_client / size.max(1)).clamp(1, args.max_records);
        for &clients in &args.clients {
            let runners: Vec<(&str, Path2Kafka, Option<&Daemon>, bool)> =
                std::iter::once(("in-process", Path2Kafka::InProcess, None, false))
                    .chain(args.java.then_some(("java", Path2Kafka::Java, None, false)))
                    .chain(variants.iter().zip(&daemons).map(|(v, d)| {
                        (
                            v.label.as_str(),
                            Path2Kafka::Daemon,
                            Some(d),
                            v.delivery_reports,
                        )
                    }))
                    .collect();
            let mut runs: Vec<Vec<ProduceResult>> = vec![Vec::new(); runners.len()];
            for (i, &(label, mode, daemon, delivery_reports)) in
                (0..args.repeat).flat_map(|_| runners.iter().enumerate())
            {
                case_no += 1;
                let topic = format!("bench-{case_no}-{}", std::process::id());
                broker.create_topic(&topic, args.partitions)?;
                let case = Case {
                    mode,
                    variant: label,
                    clients,
                    size,
                    records,
                    topic: &topic,
                    rate_per_client: args.rate_per_client,
                    payload: args.payload,
                    broker_pids: &broker_pids,
                    delivery_reports,
                };
                progress.set_message(format!("{label}, {clients} clients, {size} B"));
                // Optional figures: a failed reading costs them, not the run.
                let read_counters = || {
                    broker.produce_counters().unwrap_or_else(|e| {
                        progress.println(format!("reading the broker's request metrics: {e:#}"));
                        None
                    })
                };
                let counters_before = read_counters();
                let mut result = match mode {
                    Path2Kafka::Java => java::run_case(&case, &bootstrap, dir.path())?,
                    _ => run_case(&case, &bootstrap, daemon)?,
                };
                if let (Some(before), Some(after)) = (counters_before, read_counters()) {
                    result.count_requests(after - before);
                }
                progress.println(format!(
                    "{label} clients={clients} size={size} -> {:.0} records/s delivered, client CPU {:.3} s/M",
                    result.records_per_sec, result.client_cpu_s_per_million
                ));
                if let Err(e) = broker.delete_topic(&topic) {
                    progress.println(format!("deleting {topic}: {e:#}"));
                }
                progress.inc(1);
                runs[i].push(result);
            }
            results.extend(runs.iter().map(|r| median_of(r)));
        }
    }
    progress.finish_and_clear();
    print_table(&results);
    args.common.write_json(&results)?;
    if let Some(dir) = &args.common.plot {
        plot(dir, &results)?;
    }
    Ok(results)
}

/// A cell's result from its runs: the median of each rate and CPU figure
/// (for two runs, their mean), records summed.
fn median_of(runs: &[ProduceResult]) -> ProduceResult {
    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }
    let of = |f: &dyn Fn(&ProduceResult) -> f64| median(runs.iter().map(f).collect());
    let of_opt = |f: &dyn Fn(&ProduceResult) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| median(values))
    };
    let first = &runs[0];
    ProduceResult {
        delivered: runs.iter().map(|r| r.delivered).sum(),
        failed: runs.iter().map(|r| r.failed).sum(),
        seconds: of(&|r| r.seconds),
        records_per_sec: of(&|r| r.records_per_sec),
        client_cpu_s_per_million: of(&|r| r.client_cpu_s_per_million),
        daemon_cpu_s_per_million: of_opt(&|r| r.daemon_cpu_s_per_million),
        host_cpu_s_per_million: of(&|r| r.host_cpu_s_per_million),
        broker_cpu_s_per_million: of_opt(&|r| r.broker_cpu_s_per_million),
        produce_requests_per_sec: of_opt(&|r| r.produce_requests_per_sec),
        records_per_request: of_opt(&|r| r.records_per_request),
        records_per_batch: of_opt(&|r| r.records_per_batch),
        runs: runs.len(),
        runs_records_per_sec: runs.iter().map(|r| r.records_per_sec).collect(),
        ..first.clone()
    }
}

fn in_process_of<'a>(results: &'a [ProduceResult], r: &ProduceResult) -> Option<&'a ProduceResult> {
    results
        .iter()
        .find(|i| i.mode == Path2Kafka::InProcess && i.size == r.size && i.clients == r.clients)
}

fn print_table(results: &[ProduceResult]) {
    println!(
        "\n| size B | clients | offered/client | variant | delivered rec/s | vs in-process | client CPU s/M | in-process / this | host CPU s/M | in-process / this | broker CPU s/M | in-process / this | produce requests/s | records/request | records/batch |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |c| format!("{c:.3}"));
    for r in results {
        let base = in_process_of(results, r);
        // "-" where a ratio has no meaning (no baseline, or a zero reading:
        // CPU comes in 10 ms ticks, so a short run can read 0).
        let ratio = |ours: f64, theirs: Option<f64>, digits: usize| match theirs {
            Some(t) if ours > 0.0 && t > 0.0 => format!("{:.*}x", digits, t / ours),
            _ => "-".to_owned(),
        };
        let (lo, hi) = r
            .runs_records_per_sec
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let rate = if r.runs > 1 {
            format!("{:.0} ({:.0}-{:.0})", r.records_per_sec, lo, hi)
        } else {
            format!("{:.0}", r.records_per_sec)
        };
        let offered = if r.rate_per_client == 0 {
            "max".to_owned()
        } else {
            r.rate_per_client.to_string()
        };
        let whole = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"));
        let tenths = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {} | {:.3} | {} | {} | {} | {} | {} | {} |",
            r.size,
            r.clients,
            offered,
            r.variant,
            rate,
            // Rate: this path over in-process, so the argument order flips.
            ratio(
                base.map_or(0.0, |b| b.records_per_sec),
                Some(r.records_per_sec),
                2
            ),
            r.client_cpu_s_per_million,
            ratio(
                r.client_cpu_s_per_million,
                base.map(|b| b.client_cpu_s_per_million),
                1
            ),
            r.host_cpu_s_per_million,
            ratio(
                r.host_cpu_s_per_million,
                base.map(|b| b.host_cpu_s_per_million),
                2
            ),
            opt(r.broker_cpu_s_per_million),
            ratio(
                r.broker_cpu_s_per_million.unwrap_or(0.0),
                base.and_then(|b| b.broker_cpu_s_per_million),
                2
            ),
            whole(r.produce_requests_per_sec),
            tenths(r.records_per_request),
            tenths(r.records_per_batch),
        );
    }
    println!("delivered = acknowledged by the broker; with --repeat, medians over runs (range of the rate in brackets). vs in-process: delivered rate over the in-process producer's in the same cell. CPU per million delivered records: client = the application processes; host = clients + shmkafkad; broker = the broker process (when started here). in-process / this: above 1 means this path costs less. Requests and batches: the broker's own produce-request metrics (Apache Kafka started here).");
}

fn plot(dir: &Path, results: &[ProduceResult]) -> anyhow::Result<()> {
    use crate::plot::{lines, Chart, Scale, Series};
    std::fs::create_dir_all(dir)?;
    let mut sizes: Vec<usize> = results.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut labels: Vec<&str> = Vec::new();
    for r in results {
        if !labels.contains(&r.variant.as_str()) {
            labels.push(&r.variant);
        }
    }
    for size in sizes {
        let series_of = |value: &dyn Fn(&ProduceResult) -> f64| -> Vec<Series> {
            labels
                .iter()
                .map(|label| {
                    let points = results
                        .iter()
                        .filter(|r| r.size == size && r.variant == *label)
                        .map(|r| (r.clients as f64, value(r)))
                        .collect();
                    Series::new(*label, points)
                })
                .collect()
        };
        lines(
            &dir.join(format!("produce-rate-{size}B.svg")),
            &Chart {
                title: &format!("Delivered records/s, {size} B values"),
                x_label: "client processes",
                y_label: "records/s acknowledged by the broker",
                x_scale: Scale::Log,
                y_scale: Scale::Linear,
            },
            &series_of(&|r| r.records_per_sec),
        )?;
        lines(
            &dir.join(format!("produce-client-cpu-{size}B.svg")),
            &Chart {
                title: &format!("Client CPU per million delivered records, {size} B values"),
                x_label: "client processes",
                y_label: "CPU seconds",
                x_scale: Scale::Log,
                y_scale: Scale::Log,
            },
            &series_of(&|r| r.client_cpu_s_per_million),
        )?;
        lines(
            &dir.join(format!("produce-host-cpu-{size}B.svg")),
            &Chart {
                title: &format!(
                    "Host CPU (clients + shmkafkad) per million delivered records, {size} B values"
                ),
                x_label: "client processes",
                y_label: "CPU seconds",
                x_scale: Scale::Log,
                y_scale: Scale::Linear,
            },
            &series_of(&|r| r.host_cpu_s_per_million),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_settings_become_toml_sections() {
        let v = parse_variant("pinned:drain.cpus=[1];kafka.linger.ms=0;drain.spin_us=0").unwrap();
        assert_eq!(v.label, "pinned");
        let parsed: toml::Table = toml::from_str(&v.toml).unwrap();
        assert_eq!(parsed["drain"]["cpus"].as_array().unwrap().len(), 1);
        assert_eq!(parsed["drain"]["spin_us"].as_integer(), Some(0));
        assert_eq!(parsed["kafka"]["linger.ms"].as_str(), Some("0"));
    }

    #[test]
    fn repeated_runs_report_medians_and_keep_every_rate() {
        let run = |rate: f64, cpu: f64| ProduceResult {
            mode: Path2Kafka::Daemon,
            variant: "daemon".into(),
            clients: 1,
            size: 64,
            delivered: 100,
            failed: 0,
            seconds: 100.0 / rate,
            records_per_sec: rate,
            client_cpu_s_per_million: cpu,
            daemon_cpu_s_per_million: Some(cpu * 10.0),
            host_cpu_s_per_million: cpu * 11.0,
            broker_cpu_s_per_million: None,
            produce_requests_per_sec: None,
            records_per_request: None,
            records_per_batch: None,
            rate_per_client: 0,
            runs: 1,
            runs_records_per_sec: vec![rate],
        };
        let m = median_of(&[run(300.0, 0.3), run(100.0, 0.1), run(200.0, 0.5)]);
        assert_eq!(m.records_per_sec, 200.0);
        assert_eq!(m.client_cpu_s_per_million, 0.3);
        assert_eq!(m.daemon_cpu_s_per_million, Some(3.0));
        assert_eq!(m.broker_cpu_s_per_million, None);
        assert_eq!(m.delivered, 300);
        assert_eq!(m.runs, 3);
        assert_eq!(m.runs_records_per_sec, vec![300.0, 100.0, 200.0]);
        let two = median_of(&[run(100.0, 0.1), run(200.0, 0.2)]);
        assert_eq!(two.records_per_sec, 150.0);
    }

    #[test]
    fn variant_without_settings_runs_the_defaults() {
        let v = parse_variant("plain").unwrap();
        assert_eq!(v.toml, "");
        assert_eq!(v.binary, None);
        let v = parse_variant("other:bin=/opt/shmkafkad;drain.spin_us=0").unwrap();
        assert_eq!(v.binary, Some(PathBuf::from("/opt/shmkafkad")));
        assert_eq!(v.toml, "[drain]\nspin_us = 0\n");
    }

    #[test]
    fn variant_errors_are_reported() {
        assert!(parse_variant("x:drain.spin_us").is_err());
        assert!(parse_variant("x:nosection=1").is_err());
        assert!(parse_variant(":drain.spin_us=1").is_err());
        assert!(parse_variant("in-process").is_err());
    }
}
