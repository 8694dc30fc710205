//! `latency`: how long an application waits in `send`, and how long until
//! the broker's acknowledgement is visible to it, through `shmkafkad`
//! versus an in-process librdkafka producer.
//!
//! Each case runs in a fresh client process (this binary re-executed as
//! `latency-child`) at two load points: a fixed offered rate below
//! saturation, paced by spinning to a schedule, and saturation (sending as
//! fast as `send` returns).
//!
//! * **Enqueue latency**: one `Producer::send` (daemon path) or one
//!   `BaseProducer::send` plus the `poll(0)` an application must call to
//!   serve delivery callbacks (in-process path), same librdkafka settings as
//!   the daemon (`KAFKA_DEFAULTS`). At the fixed rate it is also measured
//!   from the *scheduled* start, so a stall that delays the following sends
//!   is charged to them too (coordinated omission: timing only from the
//!   actual start would hide exactly the stalls that matter).
//! * **Commit-to-acknowledgement latency** of every `--ack-every`-th record:
//!   from `send` returning until the client can see the acknowledgement. For
//!   the daemon path that is the ring's release cursor
//!   ([`shmkafka_client::Producer::released_position`]) passing the end of
//!   the record ([`shmkafka_client::Producer::claimed_position`] after it):
//!   the daemon releases space only after librdkafka's delivery report. A
//!   watcher thread polls the cursor every `--ack-poll-us` (the figures are
//!   rounded up by up to that much plus the sleep's timer slack). Records are
//!   released in ring order, so the cursor shows a record acknowledged once
//!   every record before it is finished as well. For the in-process path it
//!   is the delivery callback, which runs in the `poll(0)` after a later send.
//!
//! Clock: `Instant::now()`, i.e. `clock_gettime(CLOCK_MONOTONIC)` served by
//! the vDSO (with the `tsc` clocksource: an ordered `rdtsc` plus the kernel's
//! scaling, no system call). It is the one clock every thread and process
//! shares (the watcher compares it with times taken on the sending thread),
//! already calibrated and monotonic across CPUs; a raw `rdtsc` would save
//! some nanoseconds per read but needs its own calibration and an invariant,
//! synchronised TSC, which VMs do not always give. The cost of an empty pair
//! of reads is measured and printed so it can be discounted; it is not
//! subtracted.
//!
//! Every record counted as delivered was acknowledged: the client flushes
//! (all records released) and subtracts the failures the daemon reported;
//! the in-process client counts its successful delivery callbacks.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use shmkafka_client::{Message, Producer as ShmProducer, ProducerOptions};

use crate::harness::{
    bench_child, fmt_ns, histogram, percentile_curve, progress, send_in_process, spawn_guarded,
    start_daemon, value_of, Broker, ChildTarget, Daemon, Path2Kafka, ScenarioArgs, Summary,
};
use crate::plot::{self, Chart, Scale, Series};

/// Partitions of each case's topic where the bench creates it (Apache
/// Kafka); the mock cluster auto-creates 4.
const LATENCY_PARTITIONS: u32 = 4;

/// Result line prefix of a child.
const RESULT_PREFIX: &str = "latency-result ";

/// Options of the `latency` scenario.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Record value sizes in bytes (the key is 8 bytes).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub sizes: Vec<usize>,
    /// Offered rate of the load point below saturation, records/s.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Measured records per case.
    #[arg(long, default_value_t = 500_000)]
    pub records: usize,
    /// Records sent and acknowledged before measuring, per case.
    #[arg(long, default_value_t = 20_000)]
    pub warmup: usize,
    /// Measure commit-to-acknowledgement latency of every N-th record.
    #[arg(long, default_value_t = 100)]
    pub ack_every: usize,
    /// Sleep of the acknowledgement watcher between polls, microseconds.
    #[arg(long, default_value_t = 50)]
    pub ack_poll_us: u64,
    /// Ring size of the daemon client, MiB (a power of two).
    #[arg(long, default_value_t = 64)]
    pub ring_mib: usize,
    /// Paths to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "daemon,in-process"
    )]
    pub paths: Vec<Path2Kafka>,
    /// Start Apache Kafka with this many brokers (`testkit`'s
    /// `KafkaCluster`) instead of the mock cluster or `--bootstrap`.
    #[arg(long)]
    pub kafka: Option<usize>,
    /// Broker, output (SVG: percentile curves) and daemon options.
    #[command(flatten)]
    pub common: ScenarioArgs,
}

/// Options of one measuring client process (internal).
#[derive(Debug, Clone, Args)]
pub struct LatencyChildArgs {
    /// Where the records go.
    #[command(flatten)]
    pub target: ChildTarget,
    /// Measured records.
    #[arg(long)]
    pub records: usize,
    /// Warm-up records.
    #[arg(long)]
    pub warmup: usize,
    /// Value size.
    #[arg(long)]
    pub size: usize,
    /// Offered rate in records/s; 0: saturation.
    #[arg(long)]
    pub rate: u64,
    /// Acknowledgement sample interval in records.
    #[arg(long)]
    pub ack_every: usize,
    /// Watcher poll interval, microseconds.
    #[arg(long)]
    pub ack_poll_us: u64,
    /// Ring size, MiB.
    #[arg(long)]
    pub ring_mib: usize,
}

/// What one client process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Enqueue latency from the actual start of each send.
    pub enqueue: Summary,
    /// Enqueue latency from each send's scheduled start (fixed rate only).
    pub enqueue_from_schedule: Option<Summary>,
    /// Commit-to-acknowledgement latency of the sampled records.
    pub ack: Summary,
    /// Measured records acknowledged by the broker.
    pub delivered: u64,
    /// Measured records that failed.
    pub failed: u64,
    /// Records per second the send loop achieved.
    pub achieved_rate: f64,
    /// Percentile curve of `enqueue` (see [`percentile_curve`]).
    pub enqueue_curve: Vec<(f64, f64)>,
    /// Percentile curve of `enqueue_from_schedule`.
    pub enqueue_from_schedule_curve: Vec<(f64, f64)>,
    /// Percentile curve of `ack`.
    pub ack_curve: Vec<(f64, f64)>,
}

/// One case: path, size, load point.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Path to Kafka.
    pub path: Path2Kafka,
    /// Value size in bytes.
    pub size: usize,
    /// Offered rate, records/s; `None`: saturation.
    pub offered_rate: Option<u64>,
    /// What the client measured.
    pub measurement: Measurement,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// The clock used for every figure.
    pub clock: String,
    /// Kernel clocksource behind it.
    pub clocksource: String,
    /// An empty pair of clock reads (the floor of every figure).
    pub timer_overhead: Summary,
    /// Whether the broker is the mock cluster.
    pub mock_broker: bool,
    /// The cases.
    pub results: Vec<LatencyResult>,
}

/// Measures `n` empty pairs of `Instant::now()`.
pub fn timer_overhead(n: usize) -> Summary {
    let mut h = histogram();
    for _ in 0..n {
        let a = Instant::now();
        let b = Instant::now();
        h.saturating_record(b.duration_since(a).as_nanos() as u64);
    }
    Summary::of(&h)
}

fn clocksource() -> String {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// Commit times of sampled records, published by the sending thread and
/// consumed in order by the watcher; preallocated so the sender neither
/// allocates nor locks.
struct Samples {
    seq: Vec<AtomicU64>,
    /// Ring position after the record: once the release cursor reaches it,
    /// the record is finished.
    end_pos: Vec<AtomicU64>,
    committed_ns: Vec<AtomicU64>,
    published: AtomicUsize,
}

impl Samples {
    fn new(capacity: usize) -> Samples {
        Samples {
            seq: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            end_pos: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            committed_ns: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            published: AtomicUsize::new(0),
        }
    }

    /// Single writer.
    fn push(&self, seq: u64, end_pos: u64, committed_ns: u64) {
        let i = self.published.load(Ordering::Relaxed);
        if i < self.seq.len() {
            self.seq[i].store(seq, Ordering::Relaxed);
            self.end_pos[i].store(end_pos, Ordering::Relaxed);
            self.committed_ns[i].store(committed_ns, Ordering::Relaxed);
            self.published.store(i + 1, Ordering::Release);
        }
    }
}

/// Polls the release cursor; returns (seq, commit-to-ack ns) of every
/// sample, in order. Stops after a last pass once `done` is set (which the
/// sender does after its flush returned, so every sample is released).
fn watch(
    producer: &ShmProducer,
    samples: &Samples,
    done: &AtomicBool,
    base: Instant,
    poll: Duration,
) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(samples.seq.len());
    loop {
        let finished = done.load(Ordering::Acquire);
        let published = samples.published.load(Ordering::Acquire);
        // The cursor before the clock: the acknowledgement happened before
        // the cursor was read, so the figure is never too small.
        let released = producer.released_position();
        let now = base.elapsed().as_nanos() as u64;
        let before = out.len();
        while out.len() < published {
            let i = out.len();
            let seq = samples.seq[i].load(Ordering::Relaxed);
            if released < samples.end_pos[i].load(Ordering::Relaxed) {
                break;
            }
            let committed = samples.committed_ns[i].load(Ordering::Relaxed);
            out.push((seq, now.saturating_sub(committed)));
        }
        if finished {
            return out;
        }
        if out.len() == before {
            std::thread::sleep(poll);
        }
    }
}

/// Spins until `due`; returns the first reading at or after it.
fn spin_until(due: Instant) -> Instant {
    loop {
        let now = Instant::now();
        if now >= due {
            return now;
        }
        std::hint::spin_loop();
    }
}

/// The schedule: record `i` is due at `start + i / rate`.
fn due(start: Instant, i: u64, rate: u64) -> Instant {
    start + Duration::from_nanos((i as u128 * 1_000_000_000 / rate as u128) as u64)
}

/// Enqueue histograms of a send loop.
struct SendLoop {
    enqueue: Histogram<u64>,
    from_schedule: Option<Histogram<u64>>,
    seconds: f64,
}

/// Runs `records` timed sends, paced to `rate` unless it is 0. `send(i)`
/// sends record `i`; `committed(i, token, t)` is told when it returned,
/// outside the timed region.
fn send_loop<T>(
    records: usize,
    rate: u64,
    mut send: impl FnMut(u64) -> anyhow::Result<T>,
    mut committed: impl FnMut(u64, T, Instant),
) -> anyhow::Result<SendLoop> {
    let mut enqueue = histogram();
    let mut from_schedule = (rate > 0).then(histogram);
    let start = Instant::now();
    for i in 0..records as u64 {
        let (scheduled, t0) = if rate > 0 {
            let d = due(start, i, rate);
            (Some(d), spin_until(d))
        } else {
            (None, Instant::now())
        };
        let token = send(i)?;
        let t1 = Instant::now();
        enqueue.saturating_record(t1.duration_since(t0).as_nanos() as u64);
        if let (Some(h), Some(d)) = (from_schedule.as_mut(), scheduled) {
            h.saturating_record(t1.duration_since(d).as_nanos() as u64);
        }
        committed(i, token, t1);
    }
    Ok(SendLoop {
        enqueue,
        from_schedule,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn measurement(run: &SendLoop, ack: &Histogram<u64>, delivered: u64, failed: u64) -> Measurement {
    Measurement {
        enqueue: Summary::of(&run.enqueue),
        enqueue_from_schedule: run.from_schedule.as_ref().map(Summary::of),
        ack: Summary::of(ack),
        delivered,
        failed,
        achieved_rate: run.enqueue.len() as f64 / run.seconds,
        enqueue_curve: percentile_curve(&run.enqueue),
        enqueue_from_schedule_curve: run
            .from_schedule
            .as_ref()
            .map(percentile_curve)
            .unwrap_or_default(),
        ack_curve: percentile_curve(ack),
    }
}

/// A measuring client process: warm up, measure, report one JSON line.
pub fn child(args: &LatencyChildArgs) -> anyhow::Result<()> {
    ensure!(args.ack_every > 0, "--ack-every must be at least 1");
    let value = value_of(args.size);
    let m = match args.target.mode {
        Path2Kafka::Daemon => child_daemon(args, &value)?,
        Path2Kafka::InProcess => child_in_process(args, &value)?,
        Path2Kafka::Java => anyhow::bail!("the latency scenario has no Java path"),
    };
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&m)?);
    Ok(())
}

fn child_daemon(args: &LatencyChildArgs, value: &[u8]) -> anyhow::Result<Measurement> {
    let producer = ShmProducer::connect_with(ProducerOptions {
        socket_path: args.target.socket.clone(),
        ring_capacity: args.ring_mib << 20,
        client_name: "bench-latency".to_owned(),
        ..ProducerOptions::default()
    })?;
    let topic = producer.topic(&args.target.topic)?;
    let key_of = |i: u64| i.to_be_bytes();
    for i in 0..args.warmup as u64 {
        producer.send(&topic, &Message::new().key(&key_of(i)).value(value))?;
    }
    let warm = producer.flush(Duration::from_secs(120))?;
    ensure!(
        warm.failures.is_empty(),
        "warm-up failed: {:?}",
        warm.failures
    );

    let samples = Samples::new(args.records / args.ack_every + 1);
    let done = AtomicBool::new(false);
    let base = Instant::now();
    let poll = Duration::from_micros(args.ack_poll_us);
    let (run, acks, failures) = std::thread::scope(|s| -> anyhow::Result<_> {
        let watcher = s.spawn(|| watch(&producer, &samples, &done, base, poll));
        let run = send_loop(
            args.records,
            args.rate,
            |i| {
                let key = key_of(args.warmup as u64 + i);
                Ok(producer.send(&topic, &Message::new().key(&key).value(value))?)
            },
            |i, seq, returned| {
                if i % args.ack_every as u64 == 0 {
                    // The only sending thread: the claim cursor now ends
                    // just after this record.
                    let end_pos = producer.claimed_position();
                    samples.push(
                        seq,
                        end_pos,
                        returned.duration_since(base).as_nanos() as u64,
                    );
                }
            },
        );
        let flushed = producer.flush(Duration::from_secs(600));
        done.store(true, Ordering::Release);
        let acks = watcher.join().expect("watcher panicked");
        Ok((run?, acks, flushed?.failures))
    })?;
    let failed_seqs: std::collections::HashSet<u64> = failures.iter().map(|f| f.seq).collect();
    let mut ack = histogram();
    for (seq, ns) in acks {
        if !failed_seqs.contains(&seq) {
            ack.saturating_record(ns);
        }
    }
    let failed = failures.len() as u64;
    Ok(measurement(
        &run,
        &ack,
        (args.records as u64).saturating_sub(failed),
        failed,
    ))
}

/// Delivery callbacks of the in-process producer: counts, and for sampled
/// records (opaque: sample index plus one; 0 for the others) the time the
/// callback ran, in ns since `base`.
struct AckContext {
    base: Instant,
    delivered: AtomicU64,
    failed: AtomicU64,
    acked_ns: Vec<AtomicU64>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = opaque.checked_sub(1).and_then(|i| self.acked_ns.get(i)) {
            slot.store(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

fn child_in_process(args: &LatencyChildArgs, value: &[u8]) -> anyhow::Result<Measurement> {
    let config = args.target.in_process_config()?;
    let base = Instant::now();
    let n_samples = args.records / args.ack_every + 1;
    let producer: BaseProducer<AckContext> = config.create_with_context(AckContext {
        base,
        delivered: 0.into(),
        failed: 0.into(),
        acked_ns: (0..n_samples).map(|_| AtomicU64::new(0)).collect(),
    })?;
    producer
        .client()
        .fetch_metadata(Some(&args.target.topic), Duration::from_secs(10))?;
    let send = |i: u64, opaque: usize| -> anyhow::Result<()> {
        let key = i.to_be_bytes();
        let record = BaseRecord::with_opaque_to(&args.target.topic, opaque)
            .key(&key[..])
            .payload(value);
        send_in_process(&producer, record)
    };
    for i in 0..args.warmup as u64 {
        send(i, 0)?;
    }
    producer.flush(Duration::from_secs(120))?;
    let ctx = producer.context();
    ensure!(
        ctx.failed.load(Ordering::Relaxed) == 0,
        "warm-up records failed"
    );
    let delivered0 = ctx.delivered.load(Ordering::Relaxed);
    let every = args.ack_every as u64;
    let mut committed_ns = vec![0u64; n_samples];
    let run = send_loop(
        args.records,
        args.rate,
        |i| {
            let opaque = if i % every == 0 {
                (i / every) as usize + 1
            } else {
                0
            };
            send(args.warmup as u64 + i, opaque)
        },
        |i, (), returned| {
            if i % every == 0 {
                committed_ns[(i / every) as usize] =
                    returned.duration_since(base).as_nanos() as u64;
            }
        },
    )?;
    producer.flush(Duration::from_secs(600))?;
    let delivered = ctx.delivered.load(Ordering::Relaxed) - delivered0;
    let failed = ctx.failed.load(Ordering::Relaxed);
    let mut ack = histogram();
    for (i, committed) in committed_ns.iter().enumerate() {
        let acked = ctx.acked_ns[i].load(Ordering::Relaxed);
        // Unset: not sampled (past the end) or failed.
        if acked != 0 && (i as u64 * every) < args.records as u64 {
            // A callback inside the same send's poll(0) would come before
            // `returned`: count it as zero.
            ack.saturating_record(acked.saturating_sub(*committed));
        }
    }
    Ok(measurement(&run, &ack, delivered, failed))
}

/// Runs every case and prints the comparison.
pub fn run(args: &LatencyArgs) -> anyhow::Result<LatencyReport> {
    ensure!(args.ack_every > 0, "--ack-every must be at least 1");
    ensure!(args.rate > 0, "--rate must be positive");
    let timer = timer_overhead(200_000);
    let dir = tempfile::tempdir()?;
    ensure!(
        args.kafka.is_none() || args.common.bootstrap.is_none(),
        "--kafka and --bootstrap each name the broker: give one"
    );
    let broker = match args.kafka {
        Some(nodes) => Broker::start_kafka(&dir.path().join("kafka"), nodes)?,
        None => Broker::start(args.common.bootstrap.as_deref())?,
    };
    let daemon = if args.paths.contains(&Path2Kafka::Daemon) {
        Some(start_daemon(
            None,
            dir.path(),
            broker.bootstrap(),
            &args.common.daemon_args,
        )?)
    } else {
        None
    };
    let mut cases = Vec::new();
    for &size in &args.sizes {
        for rate in [Some(args.rate), None] {
            for &path in &args.paths {
                cases.push((size, rate, path));
            }
        }
    }
    let bar = progress(cases.len() as u64, "latency");
    let mut results = Vec::new();
    for (n, &(size, rate, path)) in cases.iter().enumerate() {
        bar.set_message(format!("{path:?} {size} B {}", load_label(rate)));
        let topic = format!("latency-{n}-{}", std::process::id());
        broker.create_topic(&topic, LATENCY_PARTITIONS)?;
        let measurement = run_child(args, path, size, rate, &topic, broker.bootstrap(), &daemon)?;
        broker.delete_topic(&topic)?;
        ensure!(
            measurement.delivered + measurement.failed == args.records as u64,
            "{path:?}: {} delivered + {} failed of {} records",
            measurement.delivered,
            measurement.failed,
            args.records
        );
        results.push(LatencyResult {
            path,
            size,
            offered_rate: rate,
            measurement,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(daemon);
    let report = LatencyReport {
        clock: "Instant::now (clock_gettime CLOCK_MONOTONIC, vDSO)".to_owned(),
        clocksource: clocksource(),
        timer_overhead: timer,
        mock_broker: broker.is_mock(),
        results,
    };
    print_table(&report, args);
    args.common.write_json(&report)?;
    if let Some(dir) = &args.common.plot {
        write_plots(dir, &report)?;
    }
    Ok(report)
}

fn run_child(
    args: &LatencyArgs,
    path: Path2Kafka,
    size: usize,
    rate: Option<u64>,
    topic: &str,
    bootstrap: &str,
    daemon: &Option<Daemon>,
) -> anyhow::Result<Measurement> {
    let mut command = bench_child("latency-child")?;
    command
        .args(["--mode", path.arg(), "--topic", topic])
        .args(["--bootstrap", bootstrap])
        .args(["--records", &args.records.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--rate", &rate.unwrap_or(0).to_string()])
        .args(["--ack-every", &args.ack_every.to_string()])
        .args(["--ack-poll-us", &args.ack_poll_us.to_string()])
        .args(["--ring-mib", &args.ring_mib.to_string()])
        .stdout(Stdio::piped());
    if path == Path2Kafka::Daemon {
        let daemon = daemon.as_ref().context("no daemon")?;
        command.arg("--socket").arg(daemon.socket());
    }
    let mut guard = spawn_guarded(&mut command)?;
    let stdout = guard.child.stdout.take().context("child stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix(RESULT_PREFIX).map(str::to_owned));
    let status = guard.child.wait()?;
    ensure!(
        status.success(),
        "latency client ({path:?}) failed: {status}"
    );
    let line = line.context("latency client reported nothing")?;
    Ok(serde_json::from_str(&line)?)
}

fn load_label(rate: Option<u64>) -> String {
    match rate {
        Some(r) if r % 1000 == 0 => format!("{}k/s", r / 1000),
        Some(r) => format!("{r}/s"),
        None => "saturated".to_owned(),
    }
}

fn path_label(path: Path2Kafka) -> &'static str {
    match path {
        Path2Kafka::Daemon => "daemon",
        Path2Kafka::InProcess => "in-proc",
        Path2Kafka::Java => "java",
    }
}

fn quad(s: &Summary) -> String {
    [s.p50_ns, s.p99_ns, s.p999_ns, s.max_ns]
        .iter()
        .map(|&v| format!("{:>8}", fmt_ns(v as f64)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a / b` of each of p50, p99, p99.9 and max.
pub fn ratios(a: &Summary, b: &Summary) -> [f64; 4] {
    let r = |x: u64, y: u64| x as f64 / y as f64;
    [
        r(a.p50_ns, b.p50_ns),
        r(a.p99_ns, b.p99_ns),
        r(a.p999_ns, b.p999_ns),
        r(a.max_ns, b.max_ns),
    ]
}

fn print_table(report: &LatencyReport, args: &LatencyArgs) {
    let t = &report.timer_overhead;
    println!(
        "\nclock: {} on clocksource {}; empty pair of reads: p50 {} p99 {} max {} (not subtracted)",
        report.clock,
        report.clocksource,
        fmt_ns(t.p50_ns as f64),
        fmt_ns(t.p99_ns as f64),
        fmt_ns(t.max_ns as f64)
    );
    println!(
        "broker: {}; {} measured records per case, commit->ack sampled every {} records (watcher poll {} us)\n",
        if report.mock_broker { "mock cluster process" } else { "--bootstrap" },
        args.records,
        args.ack_every,
        args.ack_poll_us
    );
    let head4 = format!("{:>8} {:>8} {:>8} {:>8}", "p50", "p99", "p99.9", "max");
    println!(
        "{:>5} {:>9} {:>7} {:>9} | {:<35} | {:<35} | {:<35} {:>6}",
        "size",
        "load",
        "path",
        "rec/s",
        "enqueue (from send start)",
        "enqueue (from schedule)",
        "commit -> ack",
        "acks"
    );
    println!(
        "{:>5} {:>9} {:>7} {:>9} | {head4} | {head4} | {head4} {:>6}",
        "B", "", "", "", ""
    );
    let blank = format!("{:>35}", "-");
    for r in &report.results {
        let m = &r.measurement;
        println!(
            "{:>5} {:>9} {:>7} {:>9.0} | {} | {} | {} {:>6}",
            r.size,
            load_label(r.offered_rate),
            path_label(r.path),
            m.achieved_rate,
            quad(&m.enqueue),
            m.enqueue_from_schedule.as_ref().map_or(blank.clone(), quad),
            if m.ack.count > 0 {
                quad(&m.ack)
            } else {
                blank.clone()
            },
            m.ack.count
        );
    }
    // Ratios in-process / daemon per size and load point.
    let fmt = |v: [f64; 4]| {
        v.iter()
            .map(|&x| {
                if x < 1.0 {
                    format!("{x:>7.2}x")
                } else {
                    format!("{x:>7.1}x")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut printed_header = false;
    for d in report
        .results
        .iter()
        .filter(|r| r.path == Path2Kafka::Daemon)
    {
        let Some(i) = report.results.iter().find(|r| {
            r.path == Path2Kafka::InProcess && r.size == d.size && r.offered_rate == d.offered_rate
        }) else {
            continue;
        };
        if !printed_header {
            println!(
                "\nin-process / daemon (above 1: daemon lower)   {:>8} {:>8} {:>8} {:>8}",
                "p50", "p99", "p99.9", "max"
            );
            printed_header = true;
        }
        let (im, dm) = (&i.measurement, &d.measurement);
        let label = format!("{:>5} B {:>9}", d.size, load_label(d.offered_rate));
        println!(
            "  {label} enqueue               {}",
            fmt(ratios(&im.enqueue, &dm.enqueue))
        );
        if let (Some(a), Some(b)) = (&im.enqueue_from_schedule, &dm.enqueue_from_schedule) {
            println!("  {label} enqueue from schedule {}", fmt(ratios(a, b)));
        }
        if im.ack.count > 0 && dm.ack.count > 0 {
            println!(
                "  {label} commit -> ack         {}",
                fmt(ratios(&im.ack, &dm.ack))
            );
        }
    }
    println!(
        "\nenqueue: time in send (in-process: send + poll(0)); from schedule: from when the send was due at the offered rate (includes queueing behind stalls)."
    );
    println!(
        "commit -> ack: send returned -> acknowledgement visible to the client (daemon: ring release cursor passed the record; in-process: delivery callback)."
    );
}

fn write_plots(dir: &std::path::Path, report: &LatencyReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut sizes: Vec<usize> = report.results.iter().map(|r| r.size).collect();
    sizes.dedup();
    let us = |c: &[(f64, f64)]| -> Vec<(f64, f64)> {
        c.iter().map(|&(x, y)| (x, (y / 1e3).max(1e-3))).collect()
    };
    for size in sizes {
        let mut enqueue = Vec::new();
        let mut ack = Vec::new();
        for r in report.results.iter().filter(|r| r.size == size) {
            let label = format!("{} {}", path_label(r.path), load_label(r.offered_rate));
            let m = &r.measurement;
            enqueue.push(Series::new(label.clone(), us(&m.enqueue_curve)));
            if !m.enqueue_from_schedule_curve.is_empty() {
                enqueue.push(Series::new(
                    format!("{label} from schedule"),
                    us(&m.enqueue_from_schedule_curve),
                ));
            }
            if !m.ack_curve.is_empty() {
                ack.push(Series::new(label, us(&m.ack_curve)));
            }
        }
        fn chart(title: &str) -> Chart<'_> {
            Chart {
                title,
                x_label: "percentile as 1/(1-p): 2 = p50, 100 = p99, 1000 = p99.9; last point: max",
                y_label: "latency (us)",
                x_scale: Scale::Log,
                y_scale: Scale::Log,
            }
        }
        plot::lines(
            &dir.join(format!("latency-enqueue-{size}B.svg")),
            &chart(&format!("enqueue latency, {size} B values")),
            &enqueue,
        )?;
        if !ack.is_empty() {
            plot::lines(
                &dir.join(format!("latency-ack-{size}B.svg")),
                &chart(&format!(
                    "commit-to-acknowledgement latency, {size} B values"
                )),
                &ack,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_records_by_the_rate() {
        let start = Instant::now();
        assert_eq!(due(start, 0, 100_000), start);
        assert_eq!(
            due(start, 3, 100_000).duration_since(start),
            Duration::from_micros(30)
        );
        // No drift from rounding a fractional interval once.
        assert_eq!(
            due(start, 3_000_000, 3).duration_since(start),
            Duration::from_secs(1_000_000)
        );
    }

    #[test]
    fn paced_loop_measures_from_schedule_and_start() {
        // One stalled send at 1k/s delays the next ones: their time from the
        // schedule includes the stall, their own send time does not.
        let mut returned = Vec::new();
        let run = send_loop(
            5,
            1000,
            |i| {
                if i == 1 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(i * 10)
            },
            |i, token, t| returned.push((i, token, t)),
        )
        .unwrap();
        assert_eq!(
            returned.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]
        );
        let from_schedule = run.from_schedule.unwrap();
        assert_eq!(run.enqueue.len(), 5);
        assert!(run.enqueue.value_at_quantile(0.5) < 1_000_000);
        assert!(from_schedule.max() >= 5_000_000);
        // Sends 2 and 3 were due before the stall ended.
        assert!(from_schedule.value_at_quantile(0.5) > 1_000_000);
        let saturated = send_loop(3, 0, |_| Ok(()), |_, (), _| {}).unwrap();
        assert!(saturated.from_schedule.is_none());
    }

    #[test]
    fn ratios_divide_percentile_by_percentile() {
        let a = Summary {
            count: 1,
            p50_ns: 100,
            p99_ns: 400,
            p999_ns: 900,
            max_ns: 1000,
            mean_ns: 0.0,
        };
        let b = Summary {
            p50_ns: 50,
            p99_ns: 100,
            p999_ns: 300,
            max_ns: 1000,
            ..a
        };
        assert_eq!(ratios(&a, &b), [2.0, 4.0, 3.0, 1.0]);
    }

    #[test]
    fn load_points_are_labelled() {
        assert_eq!(load_label(Some(100_000)), "100k/s");
        assert_eq!(load_label(Some(1500)), "1500/s");
        assert_eq!(load_label(None), "saturated");
    }

    #[test]
    fn timer_overhead_is_small_and_counted() {
        let t = timer_overhead(1000);
        assert_eq!(t.count, 1000);
        assert!(t.p50_ns < 100_000, "{t:?}");
    }
}
