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
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::Serialize;
use shmkafka_client::{Message, Producer as ShmProducer, ProducerOptions};
use shmkafkad::config::KAFKA_DEFAULTS;

use crate::harness::{
    bench_child, process_cpu_seconds, self_cpu_seconds, spawn_guarded, value_of, wall_ns, Broker,
    Daemon,
};

/// Options of the `produce` scenario.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Record value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    pub sizes: Vec<usize>,
    /// Client process counts.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub clients: Vec<usize>,
    /// Bytes of values each client process sends per case (records =
    /// this / size, at most --max-records).
    #[arg(long, default_value_t = 128 << 20)]
    pub bytes_per_client: usize,
    /// Cap on records per client process per case.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_records: usize,
    /// Broker to use instead of a mock cluster process (e.g. tansu).
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Extra shmkafkad argument (repeatable), e.g. `--daemon-arg=--drain-threads=2`.
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    pub daemon_args: Vec<String>,
}

/// Which path a client process takes to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Path2Kafka {
    /// shmkafka client library -> shared memory -> shmkafkad.
    Daemon,
    /// rust-rdkafka `BaseProducer` in the client process.
    InProcess,
}

/// Options of one client process (internal).
#[derive(Debug, Clone, Args)]
pub struct ProduceChildArgs {
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
    /// Records to send.
    #[arg(long)]
    pub records: usize,
    /// Value size.
    #[arg(long)]
    pub size: usize,
    /// Client index (keys differ per client).
    #[arg(long)]
    pub index: usize,
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    /// Path to Kafka.
    pub mode: Path2Kafka,
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
    let value = value_of(args.size);
    let report = match args.mode {
        Path2Kafka::Daemon => child_daemon(args, &value)?,
        Path2Kafka::InProcess => child_in_process(args, &value)?,
    };
    println!(
        "report {} {} {} {} {}",
        report.start_ns, report.end_ns, report.delivered, report.failed, report.cpu_s
    );
    Ok(())
}

fn child_daemon(args: &ProduceChildArgs, value: &[u8]) -> anyhow::Result<ChildReport> {
    let producer = ShmProducer::connect_with(ProducerOptions {
        socket_path: args.socket.clone(),
        client_name: format!("bench-{}", args.index),
        ..ProducerOptions::default()
    })?;
    let topic = producer.topic(&args.topic)?;
    let cpu0 = self_cpu_seconds();
    let start_ns = wall_ns();
    let base = (args.index as u64) << 40;
    for i in 0..args.records as u64 {
        let key = (base + i).to_be_bytes();
        producer.send(&topic, &Message::new().key(&key).value(value))?;
    }
    let report = producer.flush(Duration::from_secs(600))?;
    let end_ns = wall_ns();
    let failed = report.failures.len() as u64;
    Ok(ChildReport {
        start_ns,
        end_ns,
        delivered: args.records as u64 - failed,
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

fn child_in_process(args: &ProduceChildArgs, value: &[u8]) -> anyhow::Result<ChildReport> {
    let mut config = ClientConfig::new();
    for (k, v) in KAFKA_DEFAULTS {
        config.set(*k, *v);
    }
    config.set(
        "bootstrap.servers",
        args.bootstrap.as_deref().context("--bootstrap")?,
    );
    let producer: BaseProducer<Counting> = config.create_with_context(Counting {
        delivered: 0.into(),
        failed: 0.into(),
    })?;
    // Same warm-up as the daemon path, which registers its topic first:
    // fetch the topic's metadata before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let cpu0 = self_cpu_seconds();
    let start_ns = wall_ns();
    let base = (args.index as u64) << 40;
    for i in 0..args.records as u64 {
        let key = (base + i).to_be_bytes();
        let mut record = BaseRecord::to(&args.topic).key(&key[..]).payload(value);
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

fn run_case(
    mode: Path2Kafka,
    clients: usize,
    size: usize,
    records: usize,
    bootstrap: &str,
    daemon: Option<&Daemon>,
    case: usize,
) -> anyhow::Result<ProduceResult> {
    let topic = format!("bench-{case}-{}", std::process::id());
    let daemon_cpu0 = daemon.map(|d| process_cpu_seconds(d.pid())).transpose()?;
    let mut children = Vec::new();
    for index in 0..clients {
        let mut command = bench_child("produce-child")?;
        command
            .args([
                "--mode",
                if mode == Path2Kafka::Daemon {
                    "daemon"
                } else {
                    "in-process"
                },
            ])
            .args(["--topic", &topic])
            .args([
                "--records",
                &records.to_string(),
                "--size",
                &size.to_string(),
            ])
            .args(["--index", &index.to_string(), "--bootstrap", bootstrap])
            .stdout(Stdio::piped());
        if let Some(d) = daemon {
            command.arg("--socket").arg(&d.socket);
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
    Ok(ProduceResult {
        mode,
        clients,
        size,
        delivered,
        failed,
        seconds,
        records_per_sec: delivered as f64 / seconds,
        client_cpu_s_per_million: cpu / million,
        daemon_cpu_s_per_million: daemon_cpu,
    })
}

/// Runs every case and prints the comparison.
pub fn run(args: &ProduceArgs) -> anyhow::Result<Vec<ProduceResult>> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(args.bootstrap.as_deref())?;
    let bootstrap = broker.bootstrap().to_owned();
    let daemon = Daemon::start(dir.path(), &bootstrap, &args.daemon_args)?;
    let mut results = Vec::new();
    let mut case = 0;
    for &size in &args.sizes {
        let records = (args.bytes_per_client / size.max(1)).clamp(1, args.max_records);
        for &clients in &args.clients {
            for mode in [Path2Kafka::InProcess, Path2Kafka::Daemon] {
                case += 1;
                let d = (mode == Path2Kafka::Daemon).then_some(&daemon);
                let result = run_case(mode, clients, size, records, &bootstrap, d, case)?;
                eprintln!(
                    "{:?} clients={} size={} -> {:.0} records/s, client CPU {:.3} s/M",
                    mode, clients, size, result.records_per_sec, result.client_cpu_s_per_million
                );
                results.push(result);
            }
        }
    }
    print_table(&results);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")?;
    }
    Ok(results)
}

fn print_table(results: &[ProduceResult]) {
    println!(
        "\n{:>6} {:>7} | {:>14} {:>14} {:>7} | {:>12} {:>12} {:>8} | {:>12}",
        "size",
        "clients",
        "in-proc rec/s",
        "daemon rec/s",
        "ratio",
        "in-proc cpu",
        "daemon-cli cpu",
        "ratio",
        "daemon cpu"
    );
    println!(
        "{:>6} {:>7} | {:>14} {:>14} {:>7} | {:>12} {:>12} {:>8} | {:>12}",
        "B", "", "", "", "", "s/M rec", "s/M rec", "", "s/M rec"
    );
    for pair in results.chunks(2) {
        let [inproc, daemon] = pair else { continue };
        println!(
            "{:>6} {:>7} | {:>14.0} {:>14.0} {:>6.2}x | {:>12.3} {:>12.3} {:>7.1}x | {:>12.3}",
            daemon.size,
            daemon.clients,
            inproc.records_per_sec,
            daemon.records_per_sec,
            daemon.records_per_sec / inproc.records_per_sec,
            inproc.client_cpu_s_per_million,
            daemon.client_cpu_s_per_million,
            inproc.client_cpu_s_per_million / daemon.client_cpu_s_per_million,
            daemon.daemon_cpu_s_per_million.unwrap_or(f64::NAN),
        );
    }
    println!("ratio: daemon / in-process delivered rate; CPU ratio: in-process client CPU / daemon client CPU (higher is better)");
}
