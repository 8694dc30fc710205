//! End to end: `flush` returns only once the broker has the records, and
//! times out (instead of claiming success) when the broker cannot take them.

use shmkafkad_test_support::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    consume_and_verify, daemon_options, mock_broker_bin, test_dir, Guarantee, RecordId, Workload,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use shmkafka_client::{Error, Producer, ProducerOptions, Topic};
use shmkafka_testkit::{free_port, MockBrokerProcess};

/// Dispatches re-executed client processes (see `common::run_child_role`).
#[test]
fn child_role_entry_point() {
    common::run_child_role();
}

const WORKLOAD: Workload = Workload {
    procs: 1,
    threads: 1,
    per_thread: 3000,
    partitions: 3,
    max_value: 4096,
};

fn connect(socket: &Path) -> Producer {
    Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.to_owned()),
        ring_capacity: 32 << 20,
        max_record_len: 1 << 20,
        client_name: "e2e-flush".into(),
        ..ProducerOptions::default()
    })
    .expect("connect")
}

fn send_range(producer: &Producer, topic: &Topic, counters: std::ops::Range<u32>) -> Vec<RecordId> {
    counters
        .map(|counter| {
            let id = RecordId {
                proc: 0,
                thread: 0,
                counter,
            };
            common::send_expected(producer, topic, &WORKLOAD.record(id));
            id
        })
        .collect()
}

/// Records the broker holds in `topic`, summed over partitions, from the
/// partition leaders' watermarks (what a consumer could read right now).
fn stored_count(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions();
    assert!(!partitions.is_empty(), "no partitions for {topic}");
    partitions
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// After `flush` returns Ok, the broker already holds every record: the
/// watermarks are read right after it, with no sleep or retry.
#[test]
fn flush_returns_only_once_the_broker_has_everything() {
    let dir = test_dir();
    let topic = "e2e-flush";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 3)])
        .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    // A longer linger makes an early-returning flush visible: records would
    // still sit in librdkafka's batches when it returns.
    let _daemon = daemon_options(&socket, broker.bootstrap_servers())
        .property("linger.ms", "50")
        .start();

    let producer = connect(&socket);
    let handle = producer.topic(topic).expect("topic");
    let mut ids = Vec::new();
    for round in 0..3u32 {
        let start = round * 1000;
        ids.extend(send_range(&producer, &handle, start..start + 1000));
        let flush_started = Instant::now();
        let report = producer.flush(Duration::from_secs(30)).expect("flush");
        // Acknowledgements from a local broker take milliseconds; a flush
        // that only returns near its timeout missed the daemon's wake-up.
        let took = flush_started.elapsed();
        assert!(took < Duration::from_secs(5), "flush took {took:?}");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(producer.stats().unacknowledged_bytes, 0);
        let stored = stored_count(broker.bootstrap_servers(), topic);
        assert_eq!(
            stored,
            ids.len() as i64,
            "flush returned after round {round} but the broker holds {stored} of {} records",
            ids.len()
        );
    }
    consume_and_verify(
        broker.bootstrap_servers(),
        topic,
        &WORKLOAD,
        &ids,
        Guarantee::ExactlyOnce,
        Duration::from_secs(30),
    );
}

fn assert_flush_times_out(producer: &Producer, timeout: Duration) {
    let started = Instant::now();
    match producer.flush(timeout) {
        Err(Error::FlushTimeout {
            timeout: reported,
            pending_bytes,
        }) => {
            assert_eq!(reported, timeout);
            assert!(pending_bytes > 0, "timed out with nothing pending");
            let waited = started.elapsed();
            assert!(
                waited >= timeout,
                "gave up after {waited:?}, before {timeout:?}"
            );
            assert!(
                waited < timeout + Duration::from_secs(5),
                "overslept: {waited:?}"
            );
        }
        other => panic!("flush with the broker gone must time out, got {other:?}"),
    }
    assert!(producer.stats().unacknowledged_bytes > 0);
}

/// The broker dies after a first successful flush: the next flush times out
/// with the bytes still pending.
#[test]
fn flush_times_out_when_the_broker_is_gone() {
    let dir = test_dir();
    let topic = "e2e-flush-dead";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 3)])
        .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let _daemon = daemon_options(&socket, broker.bootstrap_servers()).start();
    let producer = connect(&socket);
    let handle = producer.topic(topic).expect("topic");
    send_range(&producer, &handle, 0..100);
    producer
        .flush(Duration::from_secs(30))
        .expect("flush while the broker is up");

    broker.kill();
    send_range(&producer, &handle, 100..200);
    assert_flush_times_out(&producer, Duration::from_secs(2));
}

/// The daemon never reaches a broker (nothing listens on its port): flush
/// times out instead of reporting success.
#[test]
fn flush_times_out_when_the_broker_is_unreachable() {
    let dir = test_dir();
    let socket = dir.path().join("shmkafkad.sock");
    let port = free_port().expect("port");
    let _daemon = daemon_options(&socket, &format!("127.0.0.1:{port}")).start();
    let producer = connect(&socket);
    let handle = producer.topic("e2e-flush-unreachable").expect("topic");
    send_range(&producer, &handle, 0..100);
    assert_flush_times_out(&producer, Duration::from_secs(1));
}
