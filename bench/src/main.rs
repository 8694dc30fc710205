//! `shmkafka-bench`: one subcommand per scenario.

use clap::{Parser, Subcommand};
use shmkafka_bench::{handoff, latency, produce, scale};

#[derive(Parser)]
#[command(version, about = "Measured comparisons of shmkafka against baselines")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Producer process -> ring -> consumer process, against a bare SPSC copy.
    Handoff(handoff::HandoffArgs),
    /// Producer child of `handoff` (internal).
    #[command(hide = true)]
    HandoffChild(handoff::ChildArgs),
    /// Delivered records/s and client CPU: through shmkafkad vs in-process librdkafka.
    Produce(produce::ProduceArgs),
    /// Client process of `produce` (internal).
    #[command(hide = true)]
    ProduceChild(produce::ProduceChildArgs),
    /// Enqueue and commit-to-acknowledgement latency: shmkafkad vs in-process librdkafka.
    Latency(latency::LatencyArgs),
    /// Measuring client of `latency` (internal).
    #[command(hide = true)]
    LatencyChild(latency::LatencyChildArgs),
    /// shmkafkad CPU, memory and threads by number of connected clients.
    Scale(scale::ScaleArgs),
    /// Client process of `scale` (internal).
    #[command(hide = true)]
    ScaleChild(scale::ScaleChildArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Handoff(args) => handoff::run(&args).map(drop),
        Scenario::HandoffChild(args) => handoff::child(&args),
        Scenario::Produce(args) => produce::run(&args).map(drop),
        Scenario::ProduceChild(args) => produce::child(&args),
        Scenario::Latency(args) => latency::run(&args).map(drop),
        Scenario::LatencyChild(args) => latency::child(&args),
        Scenario::Scale(args) => scale::run(&args).map(drop),
        Scenario::ScaleChild(args) => scale::child(&args),
    }
}
