//! The drain's recovery against a 3-broker Apache Kafka cluster, wherever real Kafka can
//! provoke the fault (see `fault_producer_recovery` for the mock cluster):
//!
//! * a fatal producer error mid-stream, raised with
//!   `rd_kafka_test_fatal_error` through the daemon's test hook (a real
//!   broker answers `OUT_OF_ORDER_SEQUENCE_NUMBER` only after it lost
//!   acknowledged data, which no test can arrange on demand: that injection
//!   exists only in the mock cluster);
//! * the whole cluster down for longer than a user-set `message.timeout.ms`;
//! * topics registered with the daemon while it drains a busy ring.
//!
//! In each, every record reaches Kafka (read back by this project's
//! verifier and by Kafka's console consumer) and none is spooled.

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;
use shmkafkad_test_support::kafka_real;

use std::time::{Duration, Instant};

use common::{daemon_options, Guarantee, RecordId, Workload};
use fault_support::{log_lines, report_row, StreamSpec, Tally};
use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::KafkaOptions;

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

const WORKLOAD: Workload = Workload {
    procs: 3,
    threads: 1,
    per_thread: 10_000,
    partitions: 6,
    max_value: 1000,
};
/// What the daemon logs, once, when it replaces its producer.
const REBUILT_LINE: &str = "librdkafka producer replaced";

/// Records in the dead-letter spool under `dir`.
fn spooled(dir: &std::path::Path) -> usize {
    let out = std::process::Command::new(common::shmkafkad_bin())
        .args(["spool", "list", "--json", "--dir"])
        .arg(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("shmkafkad spool list");
    assert!(out.status.success(), "spool list failed");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn fatal_error_mid_stream_against_apache_kafka() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let started = Instant::now();
    let dir = common::test_dir();
    let cluster = kafka_real::start_cluster(dir.path(), &KafkaOptions::nodes(3));
    let topic = "recovery-fatal";
    kafka_real::create_topic(&cluster, topic, WORKLOAD.partitions as u32, &[]);
    let socket = dir.path().join("shmkafkad.sock");
    let fatal_file = dir.path().join("raise-fatal-error");
    let daemon = daemon_options(&socket, cluster.bootstrap_servers())
        .env(shmkafkad::drain::FATAL_FILE_ENV, &fatal_file)
        .start();
    let children: Vec<_> = (0..WORKLOAD.procs)
        .map(|proc_id| {
            let mut spec = StreamSpec::new(&socket, topic, proc_id, WORKLOAD);
            spec.report_every = 250;
            spec.pace = Duration::from_millis(20);
            spec.block = Duration::from_secs(300);
            spec.spawn()
        })
        .collect();
    let total = WORKLOAD.total() as u64;
    shmkafka_testkit::wait_until("a third of the stream", Duration::from_secs(120), || {
        children.iter().map(|c| c.committed_total()).sum::<u64>() >= total / 3
    });
    std::fs::write(&fatal_file, b"").expect("fatal file");
    let mut ids = Vec::new();
    for child in children {
        let proc_id = child.proc_id;
        ids.extend(
            child
                .wait_success(Duration::from_secs(300))
                .committed_ids(proc_id),
        );
    }
    let log = fault_support::strip_ansi(&daemon.log_text());
    assert_eq!(
        log_lines(&log, REBUILT_LINE).len(),
        1,
        "the producer must be replaced exactly once:\n{}",
        shmkafka_testkit::tail(&log, 40)
    );
    assert_eq!(spooled(&dir.path().join("spool")), 0, "records spooled");
    let verdict = kafka_real::verify_with_both_consumers(
        &cluster,
        topic,
        &WORKLOAD,
        &ids,
        Guarantee::AtLeastOnce,
    );
    report_row(
        "14 fatal producer error (Apache Kafka, 3 brokers)",
        Tally {
            committed: total,
            acked: total,
            consumed: verdict.consumed as u64,
            lost: 0,
            duplicated: verdict.duplicates as u64,
        },
        started.elapsed(),
    );
}

#[test]
fn cluster_down_longer_than_message_timeout_against_apache_kafka() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let mut cluster = kafka_real::start_cluster(dir.path(), &KafkaOptions::nodes(3));
    let topic = "recovery-outage";
    kafka_real::create_topic(&cluster, topic, WORKLOAD.partitions as u32, &[]);
    let socket = dir.path().join("shmkafkad.sock");
    let daemon = daemon_options(&socket, cluster.bootstrap_servers())
        .property("message.timeout.ms", "3000")
        .start();
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 8 << 20,
        max_record_len: 64 << 10,
        when_full: WhenFull::Block(Duration::from_secs(120)),
        client_name: "recovery-outage".into(),
        delivery_reports: false,
    })
    .expect("connect");
    let kafka_topic = producer.topic(topic).expect("topic");
    let workload = Workload {
        procs: 1,
        per_thread: 3_000,
        ..WORKLOAD
    };
    let id = |counter| RecordId {
        proc: 0,
        thread: 0,
        counter,
    };
    let send = |counter| {
        fault_support::send_record(&producer, &kafka_topic, &workload.record(id(counter)))
            .expect("send");
    };
    for counter in 0..1_000 {
        send(counter);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    cluster.kill_all();
    for counter in 1_000..workload.per_thread {
        send(counter);
    }
    // Three message timeouts, and librdkafka's once-a-second scan.
    std::thread::sleep(Duration::from_secs(12));
    cluster.start_all().expect("restarting the cluster");
    let report = producer
        .flush(Duration::from_secs(180))
        .expect("flush after the outage");
    assert!(report.failures.is_empty(), "{:?}", report.failures.first());
    let log = fault_support::strip_ansi(&daemon.log_text());
    assert!(
        !log_lines(&log, "_MSG_TIMED_OUT").is_empty(),
        "no record timed out during the outage:\n{}",
        shmkafka_testkit::tail(&log, 30)
    );
    assert_eq!(spooled(&dir.path().join("spool")), 0, "records spooled");
    let ids: Vec<RecordId> = (0..workload.per_thread).map(id).collect();
    // Killed brokers leave the outcome of what was in flight unknown.
    let verdict = kafka_real::verify_with_both_consumers(
        &cluster,
        topic,
        &workload,
        &ids,
        Guarantee::AtLeastOnce,
    );
    eprintln!(
        "{} consumed, {} duplicates",
        verdict.consumed, verdict.duplicates
    );
}

#[test]
fn topics_registered_mid_pass_against_apache_kafka() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let cluster = kafka_real::start_cluster(dir.path(), &KafkaOptions::nodes(3));
    let busy = "recovery-busy";
    let late: Vec<String> = (0..5).map(|i| format!("recovery-late-{i}")).collect();
    kafka_real::create_topic(&cluster, busy, 3, &[]);
    for name in &late {
        kafka_real::create_topic(&cluster, name, 1, &[]);
    }
    let socket = dir.path().join("shmkafkad.sock");
    let daemon = daemon_options(&socket, cluster.bootstrap_servers())
        .config("[drain]\nbatch_per_ring = 100000\n")
        .start();
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 8 << 20,
        max_record_len: 64 << 10,
        when_full: WhenFull::Block(Duration::from_secs(60)),
        client_name: "recovery-late-topics".into(),
        delivery_reports: false,
    })
    .expect("connect");
    let busy_topic = producer.topic(busy).expect("topic");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy_sent = std::thread::scope(|scope| {
        let busy_sender = scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let value = format!("busy-{n}");
                producer
                    .send(&busy_topic, &Message::new().value(value.as_bytes()))
                    .expect("busy send");
                n += 1;
            }
            n
        });
        for name in &late {
            let topic = producer.topic(name).expect("late topic");
            producer
                .send(&topic, &Message::new().key(b"late").value(name.as_bytes()))
                .expect("late send");
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy_sender.join().expect("busy sender")
    });
    let report = producer.flush(Duration::from_secs(120)).expect("flush");
    assert!(
        report.failures.is_empty(),
        "{} records failed (first {:?}):\n{}",
        report.failures.len(),
        report.failures.first(),
        shmkafka_testkit::tail(&daemon.log_text(), 20)
    );
    assert_eq!(spooled(&dir.path().join("spool")), 0, "records spooled");
    // Each late topic holds its one record, once: Kafka's consumer may read
    // up to two and finds one.
    for name in &late {
        let got = cluster
            .console_consume(name, 2, Duration::from_secs(5), "read_uncommitted")
            .expect("console consumer");
        assert_eq!(got.len(), 1, "topic {name}");
    }
    // The busy topic holds every busy record exactly once.
    let busy_records = shmkafka_testkit::consume_all(
        cluster.bootstrap_servers(),
        busy,
        busy_sent as usize,
        Duration::from_secs(60),
    )
    .expect("consume");
    let mut values: Vec<Vec<u8>> = busy_records.into_iter().filter_map(|r| r.value).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len() as u64, busy_sent, "busy records, distinct");
    let theirs = cluster
        .console_consume(
            busy,
            busy_sent as usize + 1,
            Duration::from_secs(5),
            "read_uncommitted",
        )
        .expect("console consumer");
    assert_eq!(
        theirs.len() as u64,
        busy_sent,
        "busy records read by Kafka's consumer"
    );
}
