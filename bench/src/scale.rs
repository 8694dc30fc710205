//! `scale`: what `shmkafkad` costs per connected client: CPU, memory apart
//! from the rings, threads, with 1 to hundreds of client processes, idle and
//! sending at a fixed modest rate each.
//!
//! For each client count a fresh daemon starts (so its memory reflects this
//! case only), then that many client processes (this binary re-executed as
//! `scale-child`) connect with a small ring and register a topic. After a
//! settling pause the daemon is measured over a window while the clients are
//! idle, then, after they start sending and another pause, over a window
//! under load:
//!
//! * CPU: utime + stime of the daemon from `/proc/PID/stat`, per second of
//!   the window;
//! * memory: `RssAnon` from `/proc/PID/status` (heap and stacks: the
//!   daemon's own memory; the largest of samples every 250 ms) and
//!   `RssShmem` (the client rings the daemon has mapped and touched);
//! * threads: `Threads` from `/proc/PID/status`;
//! * delivered records/s: records each client sent, minus those the daemon
//!   reported failed, after the client's flush returned (so every one was
//!   acknowledged by the broker), over the client's sending time.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use serde::Serialize;
use shmkafka_client::{Message, Producer as ShmProducer, ProducerOptions};
use shmkafka_testkit::ChildGuard;

use crate::harness::{
    bench_child, process_cpu_seconds, process_status, progress, raise_nofile_limit, spawn_guarded,
    start_daemon, value_of, Broker, ProcStatus, ScenarioArgs,
};
use crate::plot::{self, Chart, Scale, Series};

/// The target for the daemon's own memory with 256 clients.
pub const RSS_TARGET_MIB: f64 = 64.0;
/// How often a sending client wakes to send what is due.
const TICK: Duration = Duration::from_millis(10);
/// Memory sampling interval during a window.
const SAMPLE: Duration = Duration::from_millis(250);

/// Options of the `scale` scenario.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Client process counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub clients: Vec<usize>,
    /// Length of each measuring window (idle, load), seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Pause before each window, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Records per second each client sends under load.
    #[arg(long, default_value_t = 1000)]
    pub rate_per_client: u64,
    /// Value size in bytes (the key is 8 bytes).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Ring size of each client, KiB (a power of two).
    #[arg(long, default_value_t = 1024)]
    pub ring_kib: usize,
    /// Broker, output (SVG: CPU and memory against clients) and daemon
    /// options.
    #[command(flatten)]
    pub common: ScenarioArgs,
}

/// Options of one client process (internal).
#[derive(Debug, Clone, Args)]
pub struct ScaleChildArgs {
    /// Daemon socket.
    #[arg(long)]
    pub socket: PathBuf,
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Client index (keys differ per client).
    #[arg(long)]
    pub index: usize,
    /// Records per second under load.
    #[arg(long)]
    pub rate: u64,
    /// Value size.
    #[arg(long)]
    pub size: usize,
    /// Ring size, KiB.
    #[arg(long)]
    pub ring_kib: usize,
}

/// The daemon over one window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    /// Window length.
    pub seconds: f64,
    /// Daemon CPU seconds (user + system) per second.
    pub cpu_per_sec: f64,
    /// Largest `RssAnon` seen, KiB.
    pub rss_anon_max_kib: u64,
    /// `/proc/PID/status` at the end of the window.
    pub end: ProcStatus,
}

/// One client count.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    /// Connected client processes.
    pub clients: usize,
    /// Clients connected, not sending.
    pub idle: Window,
    /// Clients sending at `offered_per_sec` in all.
    pub load: Window,
    /// Records per second offered by all clients.
    pub offered_per_sec: f64,
    /// Records acknowledged per second, all clients.
    pub delivered_per_sec: f64,
    /// Records acknowledged.
    pub delivered: u64,
    /// Records that failed.
    pub failed: u64,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Per client count.
    pub results: Vec<ScaleResult>,
    /// Ring size of each client, bytes.
    pub ring_bytes: usize,
    /// Records per second each client offered.
    pub rate_per_client: u64,
    /// Whether the broker is the mock cluster.
    pub mock_broker: bool,
}

/// A client process: connect, say "ready", send at the rate between "load"
/// and "stop" on stdin, flush, report. Exits when stdin closes.
pub fn child(args: &ScaleChildArgs) -> anyhow::Result<()> {
    let producer = ShmProducer::connect_with(ProducerOptions {
        socket_path: Some(args.socket.clone()),
        ring_capacity: args.ring_kib << 10,
        client_name: format!("bench-scale-{}", args.index),
        ..ProducerOptions::default()
    })?;
    let topic = producer.topic(&args.topic)?;
    let value = value_of(args.size);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut lines = std::io::stdin().lock().lines();
    match lines.next() {
        Some(Ok(line)) if line == "load" => {}
        _ => return Ok(()),
    }
    let stop = AtomicBool::new(false);
    let (sent, seconds) = std::thread::scope(|s| {
        let sender = s.spawn(|| -> anyhow::Result<(u64, f64)> {
            let base = (args.index as u64) << 40;
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_nanos() * args.rate as u128 / 1_000_000_000) as u64;
                while sent < due {
                    let key = (base + sent).to_be_bytes();
                    producer.send(&topic, &Message::new().key(&key).value(&value))?;
                    sent += 1;
                }
                std::thread::sleep(TICK);
            }
            Ok((sent, start.elapsed().as_secs_f64()))
        });
        // "stop", or the parent went away.
        for line in lines.by_ref() {
            if line.map_or(true, |l| l == "stop") {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        sender.join().expect("sender panicked")
    })?;
    let report = producer.flush(Duration::from_secs(120))?;
    let failed = report.failures.len() as u64;
    writeln!(out, "report {sent} {failed} {seconds}")?;
    out.flush()?;
    Ok(())
}

/// A client process seen from the parent.
struct Client {
    guard: ChildGuard,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn say(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn expect_line(&mut self, prefix: &str) -> anyhow::Result<String> {
        let mut line = String::new();
        while self.stdout.read_line(&mut line)? > 0 {
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return Ok(rest.to_owned());
            }
            line.clear();
        }
        let status = self.guard.child.wait()?;
        bail!("scale client exited ({status}) without {prefix:?}")
    }
}

/// Measures the daemon over `seconds`.
fn window(pid: u32, seconds: f64) -> anyhow::Result<Window> {
    let cpu0 = process_cpu_seconds(pid)?;
    let start = Instant::now();
    let length = Duration::from_secs_f64(seconds);
    let mut max_anon = 0;
    loop {
        let status = process_status(pid)?;
        max_anon = max_anon.max(status.rss_anon_kib);
        let elapsed = start.elapsed();
        if elapsed >= length {
            let cpu = process_cpu_seconds(pid)? - cpu0;
            let seconds = elapsed.as_secs_f64();
            return Ok(Window {
                seconds,
                cpu_per_sec: cpu / seconds,
                rss_anon_max_kib: max_anon,
                end: status,
            });
        }
        std::thread::sleep(SAMPLE.min(length - elapsed));
    }
}

fn run_case(
    args: &ScaleArgs,
    clients: usize,
    broker: &Broker,
    case: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<ScaleResult> {
    let dir = tempfile::tempdir()?;
    // Allow this many clients whatever the default (daemon.max_clients).
    let config = dir.path().join("shmkafkad.toml");
    std::fs::write(
        &config,
        format!("[daemon]\nmax_clients = {}\n", clients.max(1)),
    )?;
    let mut daemon_args = vec!["--config".to_owned(), config.display().to_string()];
    daemon_args.extend(args.common.daemon_args.iter().cloned());
    let daemon = start_daemon(None, dir.path(), broker.bootstrap(), &daemon_args)?;
    let topic = format!("scale-{case}-{}", std::process::id());
    bar.set_message(format!("{clients} clients: connecting"));
    let mut procs = Vec::with_capacity(clients);
    for index in 0..clients {
        let mut command = bench_child("scale-child")?;
        command
            .arg("--socket")
            .arg(daemon.socket())
            .args(["--topic", &topic, "--index", &index.to_string()])
            .args(["--rate", &args.rate_per_client.to_string()])
            .args(["--size", &args.size.to_string()])
            .args(["--ring-kib", &args.ring_kib.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut guard = spawn_guarded(&mut command)?;
        let stdin = guard.child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(guard.child.stdout.take().context("child stdout")?);
        procs.push(Client {
            guard,
            stdin,
            stdout,
        });
    }
    for p in &mut procs {
        p.expect_line("ready")?;
    }
    let settle = Duration::from_secs_f64(args.settle);
    std::thread::sleep(settle);
    bar.set_message(format!("{clients} clients: idle"));
    let idle = window(daemon.pid(), args.seconds)?;
    bar.inc(1);
    for p in &mut procs {
        p.say("load")?;
    }
    std::thread::sleep(settle);
    bar.set_message(format!("{clients} clients: load"));
    let load = window(daemon.pid(), args.seconds)?;
    bar.inc(1);
    for p in &mut procs {
        p.say("stop")?;
    }
    let (mut delivered, mut failed, mut per_sec) = (0u64, 0u64, 0.0f64);
    for p in &mut procs {
        let report = p.expect_line("report ")?;
        let f: Vec<&str> = report.split_whitespace().collect();
        ensure!(f.len() == 3, "bad client report {report:?}");
        let (sent, fail, secs): (u64, u64, f64) = (f[0].parse()?, f[1].parse()?, f[2].parse()?);
        delivered += sent.saturating_sub(fail);
        failed += fail;
        per_sec += sent.saturating_sub(fail) as f64 / secs;
        let status = p.guard.child.wait()?;
        ensure!(status.success(), "scale client failed: {status}");
    }
    drop(procs);
    drop(daemon);
    Ok(ScaleResult {
        clients,
        idle,
        load,
        offered_per_sec: (clients as u64 * args.rate_per_client) as f64,
        delivered_per_sec: per_sec,
        delivered,
        failed,
    })
}

/// Runs every client count and prints the table.
pub fn run(args: &ScaleArgs) -> anyhow::Result<ScaleReport> {
    ensure!(!args.clients.is_empty(), "--clients is empty");
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    let max = args.clients.iter().copied().max().unwrap_or(1);
    let nofile = raise_nofile_limit()?;
    // Per client: two pipes here; a socket and a ring in the daemon.
    ensure!(
        nofile as usize > 3 * max + 64,
        "RLIMIT_NOFILE hard limit {nofile} is too low for {max} clients"
    );
    let broker = Broker::start(args.common.bootstrap.as_deref())?;
    let bar = progress(2 * args.clients.len() as u64, "scale");
    let mut results = Vec::new();
    for (case, &clients) in args.clients.iter().enumerate() {
        results.push(run_case(args, clients, &broker, case, &bar)?);
    }
    bar.finish_and_clear();
    let report = ScaleReport {
        results,
        ring_bytes: args.ring_kib << 10,
        rate_per_client: args.rate_per_client,
        mock_broker: broker.is_mock(),
    };
    print_table(&report);
    args.common.write_json(&report)?;
    if let Some(dir) = &args.common.plot {
        write_plots(dir, &report)?;
    }
    Ok(report)
}

/// KiB of `RssAnon` each client beyond the first row's adds, per row after
/// the first (`None` for the first row).
pub fn per_client_kib(rows: &[(usize, u64)]) -> Vec<Option<f64>> {
    let Some(&(n0, kib0)) = rows.first() else {
        return Vec::new();
    };
    rows.iter()
        .map(|&(n, kib)| (n != n0).then(|| (kib as f64 - kib0 as f64) / (n as f64 - n0 as f64)))
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_table(report: &ScaleReport) {
    println!(
        "\nshmkafkad per client count ({} KiB rings, {} records/s per client under load, broker: {})",
        report.ring_bytes >> 10,
        report.rate_per_client,
        if report.mock_broker {
            "mock cluster process"
        } else {
            "--bootstrap"
        }
    );
    println!(
        "{:>7} | {:>7} {:>8} {:>8} {:>7} | {:>9} {:>9} {:>7} {:>8} {:>8} {:>7} | {:>10} {:>10}",
        "clients",
        "idle",
        "RssAnon",
        "RssShmem",
        "threads",
        "offered",
        "delivered",
        "load",
        "RssAnon",
        "RssShmem",
        "threads",
        "anon/client",
        "anon/client"
    );
    println!(
        "{:>7} | {:>7} {:>8} {:>8} {:>7} | {:>9} {:>9} {:>7} {:>8} {:>8} {:>7} | {:>10} {:>10}",
        "",
        "CPU s/s",
        "MiB",
        "MiB",
        "",
        "rec/s",
        "rec/s",
        "CPU s/s",
        "max MiB",
        "MiB",
        "",
        "idle KiB",
        "load KiB"
    );
    let rows = |f: fn(&ScaleResult) -> u64| -> Vec<(usize, u64)> {
        report.results.iter().map(|r| (r.clients, f(r))).collect()
    };
    let idle_per = per_client_kib(&rows(|r| r.idle.end.rss_anon_kib));
    let load_per = per_client_kib(&rows(|r| r.load.rss_anon_max_kib));
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    for (i, r) in report.results.iter().enumerate() {
        println!(
            "{:>7} | {:>7.4} {:>8.1} {:>8.1} {:>7} | {:>9.0} {:>9.0} {:>7.3} {:>8.1} {:>8.1} {:>7} | {:>10} {:>10}",
            r.clients,
            r.idle.cpu_per_sec,
            mib(r.idle.end.rss_anon_kib),
            mib(r.idle.end.rss_shmem_kib),
            r.idle.end.threads,
            r.offered_per_sec,
            r.delivered_per_sec,
            r.load.cpu_per_sec,
            mib(r.load.rss_anon_max_kib),
            mib(r.load.end.rss_shmem_kib),
            r.load.end.threads,
            opt(idle_per[i]),
            opt(load_per[i]),
        );
    }
    println!(
        "RssAnon: daemon heap and stacks (target: < {RSS_TARGET_MIB} MiB with 256 clients); RssShmem: the rings it touched; \
         anon/client: RssAnon growth per client beyond the first row."
    );
}

fn write_plots(dir: &std::path::Path, report: &ScaleReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let points = |f: &dyn Fn(&ScaleResult) -> f64| -> Vec<(f64, f64)> {
        report
            .results
            .iter()
            .map(|r| (r.clients as f64, f(r)))
            .collect()
    };
    plot::lines(
        &dir.join("scale-cpu.svg"),
        &Chart {
            title: "shmkafkad CPU by connected clients",
            x_label: "client processes",
            y_label: "daemon CPU seconds per second",
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
        },
        &[
            Series::new("idle", points(&|r| r.idle.cpu_per_sec)),
            Series::new(
                format!("{} records/s per client", report.rate_per_client),
                points(&|r| r.load.cpu_per_sec),
            ),
        ],
    )?;
    let target = points(&|_| RSS_TARGET_MIB);
    plot::lines(
        &dir.join("scale-rss.svg"),
        &Chart {
            title: "shmkafkad memory by connected clients",
            x_label: "client processes",
            y_label: "MiB",
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
        },
        &[
            Series::new("RssAnon idle", points(&|r| mib(r.idle.end.rss_anon_kib))),
            Series::new(
                "RssAnon load (max)",
                points(&|r| mib(r.load.rss_anon_max_kib)),
            ),
            Series::new(
                "RssShmem load (rings)",
                points(&|r| mib(r.load.end.rss_shmem_kib)),
            ),
            Series::new("target RssAnon", target),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_growth_is_relative_to_the_first_row() {
        let rows = [(1, 10_000), (16, 11_500), (64, 16_300)];
        let per = per_client_kib(&rows);
        assert_eq!(per[0], None);
        assert_eq!(per[1], Some(100.0));
        assert_eq!(per[2], Some(100.0));
        assert!(per_client_kib(&[]).is_empty());
    }
}
