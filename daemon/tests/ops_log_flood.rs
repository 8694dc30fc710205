//! Repeated conditions do not flood the log: a broker outage is logged when
//! it starts and when it ends, with a periodic summary in between, and
//! records failing permanently are logged once, then counted in a summary.

use shmkafkad_test_support::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, shmkafkad_bin, test_dir};
use shmkafka_client::{Message, Producer, ProducerOptions};
use shmkafka_testkit::MockBrokerProcess;

/// Summaries every few seconds, so that a short test sees several.
const SUMMARY_INTERVAL_S: u64 = 4;
/// Kafka's `MESSAGE_TOO_LARGE`: a permanent failure.
const MESSAGE_TOO_LARGE: i32 = 10;
/// The Produce request's API key.
const PRODUCE: i16 = 0;

fn config() -> String {
    format!("[daemon]\nlog_summary_interval_s = {SUMMARY_INTERVAL_S}\n")
}

fn connect(socket: &Path, name: &str) -> Producer {
    Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.to_owned()),
        client_name: name.into(),
        ..ProducerOptions::default()
    })
    .expect("connect")
}

fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

fn failed_total(socket: &Path) -> u64 {
    let output = Command::new(shmkafkad_bin())
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .expect("status");
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    report["totals"]["failed"].as_u64().expect("totals.failed")
}

#[test]
fn a_broker_outage_is_logged_once_with_periodic_summaries() {
    let topic = "log-flood-outage";
    let mut broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 2)])
        .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&config())
        .property("message.timeout.ms", "0")
        .start();
    let producer = connect(&socket, "outage-client");
    let handle = producer.topic(topic).expect("topic");
    producer
        .send(&handle, &Message::new().value(b"before"))
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");

    broker.set_broker_down(1).expect("broker down");
    let outage = Duration::from_secs(20);
    let start = Instant::now();
    let mut sent = 0u32;
    while start.elapsed() < outage {
        producer
            .send(&handle, &Message::new().value(&sent.to_le_bytes()))
            .expect("send during the outage");
        sent += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.set_broker_up(1).expect("broker up");
    producer.flush(Duration::from_secs(60)).expect("flush");
    // The next summary tick notices the deliveries.
    std::thread::sleep(Duration::from_secs(2));

    let log = daemon.log_text();
    let started = log.matches("Kafka brokers unreachable:").count();
    assert_eq!(started, 1, "one line when the outage starts:\n{log}");
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Kafka brokers unreachable for"))
        .collect();
    // librdkafka reconnects within its backoff after the broker is back,
    // so the outage the daemon sees lasts a little longer than ours.
    let most = start.elapsed().as_secs() / SUMMARY_INTERVAL_S + 1;
    assert!(
        (2..=most as usize).contains(&summaries.len()),
        "a summary every {SUMMARY_INTERVAL_S} s, at most {most}:\n{log}"
    );
    assert!(
        summaries.iter().all(|l| l.contains("records in flight")),
        "{summaries:#?}"
    );
    assert_eq!(
        log.matches("Kafka brokers reachable again").count(),
        1,
        "{log}"
    );
    // Besides the summaries: the start of the outage, librdkafka's first
    // failed connection and its client error, each once.
    let others: Vec<&str> = warnings(&log)
        .into_iter()
        .filter(|l| !l.contains("Kafka brokers unreachable for"))
        .collect();
    assert!(
        others.len() <= 4,
        "{} other warnings for a 20 s outage:\n{}",
        others.len(),
        others.join("\n")
    );
    assert!(sent > 300, "the client kept writing ({sent})");
}

#[test]
fn permanent_failures_are_logged_once_then_summarised() {
    let topic = "log-flood-failures";
    let mut broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 1)])
        .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&config())
        // One record per request: each refused request fails one record.
        .property("batch.num.messages", "1")
        .property("linger.ms", "0")
        .start();
    let producer = connect(&socket, "failing-client");
    let handle = producer.topic(topic).expect("topic");
    producer
        .send(&handle, &Message::new().value(b"warm-up"))
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");

    let records = 300;
    broker
        .push_request_errors(PRODUCE, &vec![MESSAGE_TOO_LARGE; records])
        .expect("push errors");
    for i in 0..records {
        producer
            .send(&handle, &Message::new().value(&i.to_le_bytes()))
            .expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let failed = failed_total(&socket);
    assert!(failed >= 100, "only {failed} records failed");

    let deadline = Instant::now() + Duration::from_secs(3 * SUMMARY_INTERVAL_S);
    let summarised = loop {
        let log = daemon.log_text();
        let summarised: u64 = log
            .lines()
            .filter(|l| l.contains("more records failed permanently"))
            .filter_map(|l| l.split("records=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        if summarised + 1 >= failed || Instant::now() > deadline {
            break summarised;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let log = daemon.log_text();
    let first = log.matches("delivery failed permanently").count();
    assert_eq!(first, 1, "the first failure in full:\n{log}");
    assert_eq!(
        summarised + 1,
        failed,
        "the summaries count every other failure:\n{log}"
    );
    let warned = warnings(&log);
    assert!(
        warned.len() <= 6,
        "{} warnings for {failed} failures:\n{}",
        warned.len(),
        warned.join("\n")
    );
}
