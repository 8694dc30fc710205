//! The Java peer of the `produce` scenario: Kafka's own producer, run as
//! Kafka's `ProducerPerformance` tool (kafka-tools, from the same Maven
//! Central jars as the broker), one JVM per client process, with the
//! settings the daemon and the in-process producer use.
//!
//! Each JVM reports the records the broker acknowledged and its own rate;
//! they start together, so the cell's time is the slowest JVM's (records /
//! rate). CPU is the JVMs' own (`RUSAGE_CHILDREN` over the case), JIT and
//! start-up included: what a JVM application pays. `ProducerPerformance`
//! sends records without keys; the other paths send 8-byte keys.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};

use super::{Case, ProduceResult};
use crate::harness::{process_cpu_seconds, spawn_guarded, values_of, Path2Kafka};

/// Heap per client JVM: the producer's 32 MiB buffer and batches fit.
const CLIENT_HEAP: &str = "-Xmx512m";

/// librdkafka's defaults the daemon sets, in the Java producer's terms.
fn producer_props(bootstrap: &str) -> Vec<String> {
    let mut props = vec![format!("bootstrap.servers={bootstrap}")];
    for (key, value) in shmkafkad::config::KAFKA_DEFAULTS {
        // Java has no message.timeout.ms (delivery.timeout.ms is its
        // bound, default 2 min: enough for a bench) and no librdkafka queue
        // limits; the rest have the same names and meanings.
        if matches!(
            *key,
            "enable.idempotence" | "acks" | "linger.ms" | "batch.size" | "compression.type"
        ) {
            props.push(format!("{key}={value}"));
        }
    }
    props
}

/// CPU seconds (user + system) of this process's reaped children.
fn children_cpu_seconds() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => f64::NAN,
    }
}

/// Everything a child wrote to a pipe.
fn read_all(mut pipe: impl std::io::Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    bytes
}

/// `N records sent, R records/sec (...)`: ProducerPerformance's summary.
fn parse_summary(stdout: &str) -> Option<(u64, f64)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" records sent, "))?;
    let mut words = line.split_whitespace();
    let sent: u64 = words.next()?.parse().ok()?;
    let rate: f64 = line
        .split(" records sent, ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((sent, rate))
}

/// Runs one cell with `case.clients` ProducerPerformance JVMs.
pub(super) fn run_case(
    case: &Case<'_>,
    bootstrap: &str,
    dir: &Path,
) -> anyhow::Result<ProduceResult> {
    let libs = shmkafka_testkit::kafka_libs()?;
    // The same values the other paths send, one per line.
    let payload_file = dir.join(format!("java-payload-{}-{:?}.txt", case.size, case.payload));
    if !payload_file.exists() {
        let mut file = std::fs::File::create(&payload_file)?;
        for value in values_of(case.payload, case.size) {
            // ProducerPerformance reads the file as UTF-8 text, one value a
            // line: other bytes would change size on the way.
            anyhow::ensure!(
                std::str::from_utf8(&value).is_ok() && !value.contains(&b'\n'),
                "the Java producer sends text lines; --payload {} is not (use --payload json)",
                case.payload.arg()
            );
            file.write_all(&value)?;
            file.write_all(b"\n")?;
        }
    }
    let throughput = if case.rate_per_client == 0 {
        "-1".to_owned()
    } else {
        case.rate_per_client.to_string()
    };
    let brokers_cpu = || -> anyhow::Result<f64> {
        case.broker_pids
            .iter()
            .map(|&pid| process_cpu_seconds(pid))
            .sum()
    };
    let broker_cpu0 = brokers_cpu()?;
    let cpu0 = children_cpu_seconds();
    let mut children = Vec::new();
    for _ in 0..case.clients {
        let mut command = std::process::Command::new(shmkafka_testkit::java());
        command
            .arg(CLIENT_HEAP)
            .arg("-cp")
            .arg(libs.join("*"))
            .arg("org.apache.kafka.tools.ProducerPerformance")
            .args(["--topic", case.topic])
            .args(["--num-records", &case.records.to_string()])
            .args(["--throughput", &throughput])
            .arg("--payload-file")
            .arg(&payload_file)
            .arg("--producer-props")
            .args(producer_props(bootstrap))
            .stdin(Stdio::null())
            // A few lines each (a progress line every 5 s): far below a
            // pipe's buffer, so reading one JVM's to the end never stalls
            // the others.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Killed with the bench, and on drop if a sibling failed to start.
        children.push(spawn_guarded(&mut command).context("starting java (ProducerPerformance)")?);
    }
    // Every JVM is waited for before any result is judged.
    let outputs: Vec<std::process::Output> = children
        .iter_mut()
        .map(|guard| {
            let stdout = guard.child.stdout.take().map(read_all).unwrap_or_default();
            let stderr = guard.child.stderr.take().map(read_all).unwrap_or_default();
            let status = guard.child.wait()?;
            Ok(std::process::Output {
                status,
                stdout,
                stderr,
            })
        })
        .collect::<std::io::Result<_>>()?;
    let mut delivered = 0;
    let mut seconds: f64 = 0.0;
    for output in outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || stderr.contains("Exception") {
            bail!("ProducerPerformance failed ({}): {stderr}", output.status);
        }
        let (sent, rate) = parse_summary(&stdout)
            .with_context(|| format!("no summary in ProducerPerformance's output: {stdout}"))?;
        delivered += sent;
        seconds = seconds.max(sent as f64 / rate.max(f64::MIN_POSITIVE));
    }
    let cpu = children_cpu_seconds() - cpu0;
    let broker_cpu = brokers_cpu()? - broker_cpu0;
    let million = delivered as f64 / 1e6;
    Ok(ProduceResult {
        mode: Path2Kafka::Java,
        variant: case.variant.to_owned(),
        clients: case.clients,
        size: case.size,
        delivered,
        failed: 0,
        seconds,
        records_per_sec: delivered as f64 / seconds,
        client_cpu_s_per_million: cpu / million,
        daemon_cpu_s_per_million: None,
        host_cpu_s_per_million: cpu / million,
        broker_cpu_s_per_million: (!case.broker_pids.is_empty()).then(|| broker_cpu / million),
        produce_requests_per_sec: None,
        records_per_request: None,
        records_per_batch: None,
        rate_per_client: case.rate_per_client,
        runs: 1,
        runs_records_per_sec: vec![delivered as f64 / seconds],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_read() {
        let out = "5000 records sent, 2500.0 records/sec (2.44 MB/sec), 3.1 ms avg latency\n\
                   100000 records sent, 48123.4 records/sec (47.00 MB/sec), 120.5 ms avg latency, \
                   400.0 ms max latency, 100 ms 50th, 300 ms 95th, 350 ms 99th, 390 ms 99.9th.\n";
        assert_eq!(parse_summary(out), Some((100000, 48123.4)));
        assert_eq!(parse_summary("nothing"), None);
    }
}
