//! `shmkafka-bench`: one subcommand per scenario.

use clap::{Parser, Subcommand};
use shmkafka_bench::{handoff, produce};

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Handoff(args) => handoff::run(&args).map(drop),
        Scenario::HandoffChild(args) => handoff::child(&args),
        Scenario::Produce(args) => produce::run(&args).map(drop),
        Scenario::ProduceChild(args) => produce::child(&args),
    }
}
