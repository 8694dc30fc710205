//! An in-memory Kafka cluster (librdkafka's mock) for trying shmkafka out and
//! for tests. Prints one `bootstrap=HOST:PORT,...` line on stdout, then runs
//! until SIGTERM/SIGINT or until stdin closes (so a dying parent takes it
//! down).

use std::io::{IsTerminal, Read, Write};
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

    let reason = wait_for_stop(args.ignore_stdin)?;
    tracing::info!(reason, "stopping mock broker");
    drop(cluster);
    Ok(())
}

/// Blocks until a stop signal arrives or stdin reaches EOF; returns which.
fn wait_for_stop(ignore_stdin: bool) -> anyhow::Result<&'static str> {
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
    if !ignore_stdin {
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            // Anything written is ignored; only EOF (or an error) matters.
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = tx.send("stdin closed");
        });
    }
    rx.recv().context("stop channel closed")
}
