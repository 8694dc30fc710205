//! Runs the `latency` and `scale` scenarios end to end with tiny counts
//! against the mock cluster, and `produce` against Apache Kafka with the
//! Java producer: the real daemon, client processes and brokers.
//!
//! The daemon and mock-broker binaries are not built by `cargo test -p
//! shmkafka-bench` (cargo builds a dependency's library only): build them
//! first with `cargo build -p shmkafkad --bins` (`cargo test --workspace`
//! does), or point `SHMKAFKAD_BIN` and `SHMKAFKA_MOCK_BROKER_BIN` at them;
//! otherwise the tests fail saying so.

use std::process::Command;

use serde_json::Value;
use shmkafka_bench::harness::SHMKAFKAD_BIN_ENV;
use shmkafka_testkit::{locate_binary, MOCK_BROKER_BIN, MOCK_BROKER_BIN_ENV};

const BENCH: &str = env!("CARGO_BIN_EXE_shmkafka-bench");

/// The daemon and mock-broker binaries, or a failure that says how to
/// build them (`cargo test --workspace` does).
fn require_binaries() {
    for (name, env) in [
        ("shmkafkad", SHMKAFKAD_BIN_ENV),
        (MOCK_BROKER_BIN, MOCK_BROKER_BIN_ENV),
    ] {
        if let Err(e) = locate_binary(name, env) {
            panic!(
                "{e}: run `cargo build -p shmkafkad --bins` (or `cargo test --workspace`) first"
            );
        }
    }
}

fn run_bench(args: &[&str]) -> String {
    let out = Command::new(BENCH)
        .args(args)
        .output()
        .expect("running the bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn latency_scenario_runs_end_to_end() {
    require_binaries();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("latency.json");
    let plots = dir.path().join("plots");
    let table = run_bench(&[
        "latency",
        "--records",
        "3000",
        "--warmup",
        "300",
        "--rate",
        "20000",
        "--ack-every",
        "10",
        "--ring-mib",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(table.contains("commit -> ack"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["timer_overhead"]["count"].as_u64().unwrap() > 0);
    let results = report["results"].as_array().unwrap();
    // Two load points x two paths.
    assert_eq!(results.len(), 4, "{report}");
    for r in results {
        let m = &r["measurement"];
        assert_eq!(m["delivered"], 3000, "{r}");
        assert_eq!(m["failed"], 0, "{r}");
        assert_eq!(m["enqueue"]["count"], 3000, "{r}");
        // One sample every 10 records, each seen acknowledged.
        assert_eq!(m["ack"]["count"], 300, "{r}");
        assert!(m["ack"]["p50_ns"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(
            m["enqueue_from_schedule"].is_null(),
            r["offered_rate"].is_null(),
            "{r}"
        );
    }
    for name in ["latency-enqueue-64B.svg", "latency-ack-64B.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).unwrap();
        assert!(svg.starts_with("<svg"), "{name}");
    }
}

#[test]
fn scale_scenario_runs_end_to_end() {
    require_binaries();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("scale.json");
    let plots = dir.path().join("plots");
    let table = run_bench(&[
        "scale",
        "--clients",
        "1,3",
        "--seconds",
        "1",
        "--settle",
        "0.3",
        "--rate-per-client",
        "500",
        "--ring-kib",
        "256",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(table.contains("RssAnon"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{report}");
    for (r, clients) in results.iter().zip([1u64, 3]) {
        assert_eq!(r["clients"], clients, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        // About 1.3 s of sending at 500/s per client.
        assert!(r["delivered"].as_u64().unwrap() >= 300 * clients, "{r}");
        for phase in ["idle", "load"] {
            let end = &r[phase]["end"];
            assert!(end["rss_anon_kib"].as_u64().unwrap() > 0, "{r}");
            assert!(end["threads"].as_u64().unwrap() > 1, "{r}");
            assert!(r[phase]["cpu_per_sec"].as_f64().unwrap() >= 0.0, "{r}");
        }
        // The daemon maps every ring: at least one page of each.
        assert!(r["load"]["end"]["rss_shmem_kib"].as_u64().unwrap() >= 4 * clients);
    }
    for name in ["scale-cpu.svg", "scale-rss.svg"] {
        assert!(plots.join(name).is_file(), "{name}");
    }
}

/// `produce --kafka 1 --java --payload json`: Apache Kafka started by the
/// bench, Kafka's own Java producer beside the in-process one and the
/// daemon, every record acknowledged on every path.
#[test]
fn produce_against_apache_kafka_with_the_java_producer() {
    require_binaries();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("produce.json");
    let table = run_bench(&[
        "produce",
        "--kafka",
        "1",
        "--java",
        "--payload",
        "json",
        "--sizes",
        "512",
        "--clients",
        "2",
        "--max-records",
        "2000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(table.contains("| java |"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report.as_array().expect("an array of cells");
    let modes: Vec<&str> = results.iter().filter_map(|r| r["mode"].as_str()).collect();
    assert_eq!(modes, ["InProcess", "Java", "Daemon"], "{report}");
    for r in results {
        assert_eq!(r["delivered"], 4000, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        assert!(r["broker_cpu_s_per_million"].as_f64().unwrap() > 0.0, "{r}");
    }
}
