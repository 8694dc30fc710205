//! The quick start: `shmkafkad` with its embedded broker, client processes
//! writing through shared memory, and a read-back from the broker.
//!
//! ```text
//! cargo build --release && ./target/release/shmkafka-demo
//! ```
//!
//! Every number in the final table comes from a different witness: the
//! clients count what they committed to their rings, `flush` returning means
//! the daemon saw broker acknowledgements for all of it, and an independent
//! consumer (rust-rdkafka) reads the topic back and checks every record.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use shmkafka_client::{Message, Producer, ProducerOptions};

const TOPIC: &str = "shmkafka-demo";
const CHILD_ENV: &str = "SHMKAFKA_DEMO_CLIENT";

/// Run shmkafkad with its embedded broker and client processes writing
/// through shared memory; show what the broker received.
#[derive(Debug, Parser)]
struct Args {
    /// Client processes.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Records per client.
    #[arg(long, default_value_t = 500_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keep the daemon's log at this level (it goes to stderr).
    #[arg(long, default_value = "warn")]
    daemon_log: String,
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return client_main(&spec);
    }
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("shmkafkad.sock");
    let (mut daemon, bootstrap) = start_daemon(&socket, &args.daemon_log)?;
    let result = run(&args, &socket, &bootstrap);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = daemon.wait()?;
    result?;
    println!("shmkafkad stopped: {status}");
    Ok(())
}

fn run(args: &Args, socket: &Path, bootstrap: &str) -> anyhow::Result<()> {
    let total = args.records * args.clients as u64;
    println!(
        "shmkafkad is up with an embedded broker at {bootstrap}; {} client processes write {} records of {} bytes each",
        args.clients, args.records, args.value_size
    );
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} records ({per_sec})")?
            .progress_chars("=> "),
    );
    bar.set_message("committed");
    let start = Instant::now();
    let mut children = Vec::new();
    for client in 0..args.clients {
        let child = Command::new(std::env::current_exe()?)
            .env(
                CHILD_ENV,
                format!(
                    "{client}:{}:{}:{}",
                    args.records,
                    args.value_size,
                    socket.display()
                ),
            )
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a client process")?;
        children.push(child);
    }
    let mut committed = 0u64;
    let mut acknowledged = 0u64;
    let mut failed = 0u64;
    let readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("piped")))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    for reader in readers {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut acked_at = start.elapsed();
    for line in rx {
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some("committed"), Some(n)) => {
                committed += n;
                bar.inc(n);
                if bar.position() == total {
                    bar.set_message("acked?");
                }
            }
            (Some("acknowledged"), Some(n)) => {
                acknowledged += n;
                acked_at = start.elapsed();
            }
            (Some("failed"), Some(n)) => failed += n,
            _ => eprintln!("client: {line}"),
        }
    }
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            bail!("a client process failed: {status}");
        }
    }
    bar.finish_with_message("committed");
    println!("reading the topic back from the broker with an independent consumer...");
    let records = shmkafka_testkit::consume_all(
        bootstrap,
        TOPIC,
        committed as usize,
        Duration::from_secs(60),
    )?;
    let mut seen = HashSet::with_capacity(records.len());
    let (mut duplicates, mut corrupt) = (0u64, 0u64);
    for record in &records {
        let key = record.key.as_deref().unwrap_or_default();
        let Some((client, index)) = parse_key(key) else {
            corrupt += 1;
            continue;
        };
        if record.value.as_deref() != Some(&expected_value(client, index, args.value_size)[..]) {
            corrupt += 1;
        }
        if !seen.insert((client, index)) {
            duplicates += 1;
        }
    }
    let missing = committed - seen.len() as u64;
    let secs = acked_at.as_secs_f64();
    println!();
    println!("  {:<34} {:>12}", "records committed by clients", committed);
    println!(
        "  {:<34} {:>12}",
        "acknowledged by the broker", acknowledged
    );
    println!("  {:<34} {:>12}", "failed", failed);
    println!(
        "  {:<34} {:>12}",
        "read back from the broker",
        records.len()
    );
    println!("  {:<34} {:>12}", "missing", missing);
    println!("  {:<34} {:>12}", "duplicates", duplicates);
    println!("  {:<34} {:>12}", "content mismatches", corrupt);
    println!("  {:<34} {:>12.2}", "seconds until all acknowledged", secs);
    println!(
        "  {:<34} {:>12.0}  ({:.1} MB/s of values)",
        "delivered records/s",
        acknowledged as f64 / secs,
        (acknowledged as f64 * args.value_size as f64) / secs / 1e6
    );
    println!();
    if missing > 0 || corrupt > 0 || acknowledged != committed {
        bail!("delivery check failed");
    }
    Ok(())
}

fn start_daemon(socket: &Path, log: &str) -> anyhow::Result<(Child, String)> {
    let exe = sibling("shmkafkad")?;
    let mut daemon = Command::new(&exe)
        // The mock cluster retains 5 MB per partition: spread the demo topic
        // over enough partitions to keep every record for the read-back.
        .args([
            "--embedded-broker",
            "--embedded-topic",
            &format!("{TOPIC}:64"),
            "--log-level",
            log,
            "--socket",
        ])
        .arg(socket)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().expect("piped")).read_line(&mut line)?;
    let Some(bootstrap) = line.trim().strip_prefix("embedded-broker bootstrap=") else {
        bail!("shmkafkad did not report its embedded broker (got {line:?})");
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if Instant::now() > deadline {
            bail!("shmkafkad did not open {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((daemon, bootstrap.to_owned()))
}

/// A binary built next to this one (`cargo build --release` builds both).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found; build the workspace first: cargo build --release",
            path.display()
        );
    }
    Ok(path)
}

fn key_of(client: u64, index: u64) -> String {
    format!("c{client}-{index}")
}

fn parse_key(key: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(key).ok()?.strip_prefix('c')?;
    let (client, index) = text.split_once('-')?;
    Some((client.parse().ok()?, index.parse().ok()?))
}

fn expected_value(client: u64, index: u64, size: usize) -> Vec<u8> {
    let seed = client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index;
    (0..size)
        .map(|i| (seed.wrapping_add(i as u64 * 31) % 251) as u8)
        .collect()
}

/// One client process: write, report progress, flush, report.
fn client_main(spec: &str) -> anyhow::Result<()> {
    let mut parts = spec.splitn(4, ':');
    let client: u64 = parts.next().context("client")?.parse()?;
    let records: u64 = parts.next().context("records")?.parse()?;
    let value_size: usize = parts.next().context("size")?.parse()?;
    let socket = PathBuf::from(parts.next().context("socket")?);
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket),
        client_name: format!("demo-client-{client}"),
        ..ProducerOptions::default()
    })?;
    let topic = producer.topic(TOPIC)?;
    let mut value = vec![0u8; value_size];
    let mut reported = 0;
    for index in 0..records {
        let key = key_of(client, index);
        let seed = client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index;
        for (i, byte) in value.iter_mut().enumerate() {
            *byte = (seed.wrapping_add(i as u64 * 31) % 251) as u8;
        }
        producer.send(&topic, &Message::new().key(key.as_bytes()).value(&value))?;
        if (index + 1) % 50_000 == 0 {
            println!("committed {}", index + 1 - reported);
            reported = index + 1;
        }
    }
    println!("committed {}", records - reported);
    let report = producer.flush(Duration::from_secs(120))?;
    println!("failed {}", report.failures.len());
    println!("acknowledged {}", records - report.failures.len() as u64);
    Ok(())
}
