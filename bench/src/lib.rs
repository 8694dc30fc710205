//! # shmkafka-bench
//!
//! Measured comparisons of shmkafka against baselines and the physical
//! limit of the machine. Each scenario is a module with a `run` entry point
//! the `shmkafka-bench` binary exposes as a subcommand; scenarios that need
//! a second process re-execute the binary in a hidden child role.
//!
//! Benchmarks are kept out of the test run: build and run them in release,
//! `cargo run --release -p shmkafka-bench -- <scenario> --help`.

#![deny(missing_docs)]

pub mod fdpass;
pub mod handoff;
pub mod harness;
pub mod latency;
pub mod plot;
pub mod produce;
pub mod scale;
pub mod spsc;
