//! An in-memory Kafka cluster (librdkafka's mock) for trying shmkafka out and
//! for tests. Prints one `bootstrap=HOST:PORT,...` line on stdout, then runs
//! until SIGTERM/SIGINT or until stdin closes (so a dying parent takes it
//! down).

use std::io::{IsTerminal, Write};
use std::sync::mpsc;

use anyhow::Context;
use clap::Parser;
use shmkafkad::kafka::{MockCluster, MockTopicSpec};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// In-memory Kafka test broker (librdkafka mock cluster). Not for production:
/// everything is lost on exit.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of brokers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
    brokers: i32,
    /// Topic to create up front, as `name:partitions` (repeatable). Other
    /// topics are auto-created on first use with 4 partitions.
    #[arg(long = "topic", value_name = "NAME:PARTITIONS")]
    topics: Vec<MockTopicSpec>,
    /// Keep running when stdin closes (for use without a parent process).
    #[arg(long)]
    ignore_stdin: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let cluster = MockCluster::with_topics(args.brokers, &args.topics)
        .context("starting the mock cluster")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "bootstrap={}", cluster.bootstrap_servers())?;
    stdout.flush()?;
    tracing::warn!(
        brokers = args.brokers,
        bootstrap = %cluster.bootstrap_servers(),
        topics = ?args.topics,
        "in-memory TEST broker (librdkafka mock cluster): not for production, all data is lost on exit"
    );

    let reason = if args.ignore_stdin {
        wait_for_stop()?
    } else {
        serve_commands(&cluster, &mut stdout)?
    };
    tracing::info!(reason, "stopping mock broker");
    drop(cluster);
    Ok(())
}

/// Fault injection for tests running the broker in its own process: one
/// command per stdin line, answered with `ok` or `error: ...` on stdout.
/// EOF on stdin (the parent is gone) or a signal stops the broker.
///
/// ```text
/// down BROKER_ID | up BROKER_ID | rtt BROKER_ID MILLIS
/// errors API_KEY CODE[,CODE...] | clear-errors API_KEY
/// topic-error TOPIC CODE | leader TOPIC PARTITION BROKER_ID
/// ```
fn serve_commands(cluster: &MockCluster, out: &mut impl Write) -> anyhow::Result<&'static str> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(SIGTERM, std::sync::Arc::clone(&stop))?;
    signal_hook::flag::register(SIGINT, std::sync::Arc::clone(&stop))?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(line) => {
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok("signal");
        }
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(Some(line)) => {
                let answer = match run_command(cluster, &line) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error: {e:#}"),
                };
                writeln!(out, "{answer}")?;
                out.flush()?;
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok("stdin closed"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

fn run_command(cluster: &MockCluster, line: &str) -> anyhow::Result<()> {
    use shmkafkad::kafka::KafkaErrorCode;
    let words: Vec<&str> = line.split_whitespace().collect();
    let int = |i: usize| -> anyhow::Result<i32> {
        words
            .get(i)
            .context("missing argument")?
            .parse()
            .context("not a number")
    };
    match words.first().copied() {
        Some("down") => cluster.set_broker_down(int(1)?)?,
        Some("up") => cluster.set_broker_up(int(1)?)?,
        Some("rtt") => {
            cluster.set_rtt(int(1)?, std::time::Duration::from_millis(int(2)? as u64))?
        }
        Some("errors") => {
            let codes = words
                .get(2)
                .context("missing codes")?
                .split(',')
                .map(|c| c.parse().map(KafkaErrorCode::from_raw))
                .collect::<Result<Vec<_>, _>>()
                .context("codes must be numbers")?;
            cluster.push_request_errors(int(1)? as i16, &codes);
        }
        Some("clear-errors") => cluster.clear_request_errors(int(1)? as i16),
        Some("topic-error") => cluster.set_topic_error(
            words.get(1).context("missing topic")?,
            KafkaErrorCode::from_raw(int(2)?),
        )?,
        Some("leader") => cluster.partition_set_leader(
            words.get(1).context("missing topic")?,
            int(2)?,
            int(3)?,
        )?,
        other => anyhow::bail!("unknown command {other:?}"),
    }
    Ok(())
}

/// Blocks until a stop signal arrives or stdin reaches EOF; returns which.
fn wait_for_stop() -> anyhow::Result<&'static str> {
    let (tx, rx) = mpsc::channel();
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    let signal_tx = tx.clone();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let _ = signal_tx.send(if signal == SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            });
        }
    });
    drop(tx);
    rx.recv().context("stop channel closed")
}
