//! The drain survives what librdkafka throws at it.
//!
//! * A fatal producer error (idempotence sequence desynchronisation,
//!   injected as an `OUT_OF_ORDER_SEQUENCE_NUMBER` answer from the mock
//!   cluster, or raised with `rd_kafka_test_fatal_error` through the
//!   daemon's test hook) in the middle of 3 client processes streaming: the daemon
//!   replaces its librdkafka producer once and produces every unacknowledged
//!   record again; all are delivered, none spooled, no client sees an error.
//! * A broker outage longer than a user-set `message.timeout.ms`: the
//!   timed-out records are produced again (with backoff) until the broker is
//!   back; all are delivered exactly once, none spooled.
//! * Topics registered while the drain thread is in the middle of a pass
//!   over a busy ring: their first records are not failed as unknown.
//!
//! Only the mock cluster can inject these faults on demand: a real broker
//! answers `OUT_OF_ORDER_SEQUENCE_NUMBER` only after it lost data, and the
//! outage and topic race need no broker-side fault at all.

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, shmkafkad_bin, Guarantee, RecordId, Workload};
use fault_support::{log_lines, report_row, StreamSpec, Tally};
use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::MockBrokerProcess;

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

/// The PRODUCE request's API key.
const PRODUCE: i16 = 0;
/// Kafka's `OUT_OF_ORDER_SEQUENCE_NUMBER`: on the head-of-line request of an
/// idempotent producer, librdkafka raises a fatal error.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i32 = 45;
/// What the daemon logs, once, when it replaces its producer.
const REBUILT_LINE: &str = "librdkafka producer replaced";

/// The sum over all label sets of the metric `name` the daemon's metrics
/// endpoint on `port` exposes.
fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("metrics answer");
    answer
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(|l| {
            let (_, value) = l.rsplit_once(' ').expect("sample");
            value.parse::<f64>().expect("sample value")
        })
        .sum()
}

/// Records in the dead-letter spool under `dir`.
fn spooled(dir: &Path) -> usize {
    let out = std::process::Command::new(shmkafkad_bin())
        .args(["spool", "list", "--json", "--dir"])
        .arg(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("shmkafkad spool list");
    assert!(
        out.status.success(),
        "spool list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// How a test makes the daemon's producer fail fatally.
#[derive(Debug, Clone, Copy)]
enum FatalFault {
    /// The mock cluster answers the next produce request with
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    SequenceError,
    /// The daemon's test hook calls `rd_kafka_test_fatal_error`.
    TestFatalError,
}

#[test]
fn fatal_sequence_error_mid_stream_rebuilds_the_producer_once_and_delivers_everything() {
    fatal_error_mid_stream(FatalFault::SequenceError, "recovery-fatal-sequence");
}

#[test]
fn rd_kafka_test_fatal_error_mid_stream_rebuilds_the_producer_once_and_delivers_everything() {
    fatal_error_mid_stream(FatalFault::TestFatalError, "recovery-fatal-test-hook");
}

/// 3 client processes stream 3 x 33,334 records (the 100,000);
/// a third of the way in, the daemon's producer fails fatally. Every record
/// reaches the broker, none is spooled, no client sees an error, and the
/// producer is replaced exactly once.
fn fatal_error_mid_stream(fault: FatalFault, topic: &str) {
    // Small values and 16 partitions keep every partition under the mock's
    // 5 MiB retention.
    const WORKLOAD: Workload = Workload {
        procs: 3,
        threads: 1,
        per_thread: 33_334,
        partitions: 16,
        max_value: 100,
    };
    let started = Instant::now();
    let dir = common::test_dir();
    let mut broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(topic, WORKLOAD.partitions as u32)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let fatal_file = dir.path().join("raise-fatal-error");
    let metrics_port = shmkafka_testkit::free_port().expect("port");
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ))
        .env(shmkafkad::drain::FATAL_FILE_ENV, &fatal_file)
        .start();

    let children: Vec<_> = (0..WORKLOAD.procs)
        .map(|proc_id| {
            let mut spec = StreamSpec::new(&socket, topic, proc_id, WORKLOAD);
            spec.report_every = 500;
            // A few seconds of streaming, so the fault lands mid-stream.
            spec.pace = Duration::from_millis(30);
            spec.spawn()
        })
        .collect();
    let total = WORKLOAD.total() as u64;
    shmkafka_testkit::wait_until("a third of the stream", Duration::from_secs(120), || {
        children.iter().map(|c| c.committed_total()).sum::<u64>() >= total / 3
    });
    match fault {
        FatalFault::SequenceError => broker
            .push_request_errors(PRODUCE, &[OUT_OF_ORDER_SEQUENCE_NUMBER])
            .expect("push error"),
        FatalFault::TestFatalError => std::fs::write(&fatal_file, b"").expect("fatal file"),
    }
    eprintln!(
        "{fault:?} injected after {} of {total} records",
        children.iter().map(|c| c.committed_total()).sum::<u64>()
    );

    let mut ids = Vec::new();
    for child in children {
        let proc_id = child.proc_id;
        // Flush must succeed without failures: no record reached the client
        // as failed.
        let state = child.wait_success(Duration::from_secs(180));
        ids.extend(state.committed_ids(proc_id));
    }
    assert_eq!(ids.len() as u64, total);
    let log = fault_support::strip_ansi(&daemon.log_text());
    assert!(
        !log_lines(&log, "fatal librdkafka error").is_empty(),
        "the injected fault did not raise a fatal error:\n{}",
        shmkafka_testkit::tail(&log, 40)
    );
    assert_eq!(
        log_lines(&log, REBUILT_LINE).len(),
        1,
        "the producer must be replaced exactly once:\n{}",
        shmkafka_testkit::tail(&log, 40)
    );
    assert_eq!(spooled(&dir.path().join("spool")), 0, "records spooled");
    let rebuilds = metric(metrics_port, "shmkafkad_drain_producer_rebuilds_total");
    let reproduced = metric(metrics_port, "shmkafkad_drain_records_reproduced_total");
    eprintln!("metrics: {rebuilds} producer rebuilds, {reproduced} records re-produced");
    assert_eq!(rebuilds, 1.0, "the rebuild is counted");
    // Records in flight at the fatal error may be written twice (their first
    // attempt's outcome is unknown); none may be missing or out of order.
    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        topic,
        &WORKLOAD,
        &ids,
        |_| false,
        Guarantee::AtLeastOnce,
    );
    eprintln!(
        "{} consumed, {} distinct, {} duplicates",
        verdict.consumed, verdict.distinct, verdict.duplicates
    );
    report_row(
        &format!("14 fatal producer error mid-stream ({fault:?})"),
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
fn outage_longer_than_message_timeout_delivers_everything_once_it_returns() {
    const TOPIC: &str = "recovery-outage";
    const WORKLOAD: Workload = Workload {
        procs: 1,
        threads: 1,
        per_thread: u32::MAX,
        partitions: 4,
        max_value: 200,
    };
    /// librdkafka scans for timeouts once a second: records fail about
    /// 1.5-3 s into the outage.
    const MESSAGE_TIMEOUT_MS: &str = "1500";
    const OUTAGE: Duration = Duration::from_secs(8);
    const BEFORE: u32 = 500;
    const DURING: u32 = 2_000;

    let dir = common::test_dir();
    let mut broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(TOPIC, WORKLOAD.partitions as u32)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
        .property("message.timeout.ms", MESSAGE_TIMEOUT_MS)
        .start();
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 4 << 20,
        max_record_len: 64 << 10,
        when_full: WhenFull::Block(Duration::from_secs(60)),
        client_name: "recovery-outage".into(),
        delivery_reports: false,
    })
    .expect("connect");
    let topic = producer.topic(TOPIC).expect("topic");
    let id = |counter| RecordId {
        proc: 0,
        thread: 0,
        counter,
    };
    let send = |counter| {
        fault_support::send_record(&producer, &topic, &WORKLOAD.record(id(counter))).expect("send");
    };
    for counter in 0..BEFORE {
        send(counter);
    }
    let report = producer.flush(Duration::from_secs(30)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    broker.set_broker_down(1).expect("broker down");
    let down_at = Instant::now();
    for counter in BEFORE..BEFORE + DURING {
        send(counter);
    }
    std::thread::sleep(OUTAGE.saturating_sub(down_at.elapsed()));
    broker.set_broker_up(1).expect("broker up");

    let report = producer
        .flush(Duration::from_secs(60))
        .expect("flush after the outage");
    assert!(
        report.failures.is_empty(),
        "{} records failed, first {:?}",
        report.failures.len(),
        report.failures.first()
    );
    let log = fault_support::strip_ansi(&daemon.log_text());
    assert!(
        !log_lines(&log, "_MSG_TIMED_OUT").is_empty(),
        "no record timed out: the outage did not exceed message.timeout.ms:\n{}",
        shmkafka_testkit::tail(&log, 30)
    );
    assert_eq!(spooled(&dir.path().join("spool")), 0, "records spooled");
    let ids: Vec<RecordId> = (0..BEFORE + DURING).map(id).collect();
    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        TOPIC,
        &WORKLOAD,
        &ids,
        |_| false,
        Guarantee::ExactlyOnce,
    );
    assert_eq!(verdict.duplicates, 0);
}

#[test]
fn topics_registered_during_a_drain_pass_are_not_failed_as_unknown() {
    const BUSY: &str = "recovery-busy";
    const LATE_TOPICS: usize = 40;
    let dir = common::test_dir();
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(BUSY, 4)])
        .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    // Long passes: every pass over the busy ring takes up to this many
    // records, topics being looked up once at its start.
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
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
    let busy = producer.topic(BUSY).expect("topic");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let late_names: Vec<String> = (0..LATE_TOPICS)
        .map(|i| format!("recovery-late-{i}"))
        .collect();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                producer
                    .send(&busy, &Message::new().value(format!("busy-{n}").as_bytes()))
                    .expect("busy send");
                n += 1;
            }
        });
        // Each topic is registered and used at once, while the busy ring
        // keeps the drain thread inside a pass.
        for name in &late_names {
            let topic = producer.topic(name).expect("late topic");
            producer
                .send(&topic, &Message::new().key(b"late").value(name.as_bytes()))
                .expect("late send");
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(
        report.failures.is_empty(),
        "{} records failed (first {:?}):\n{}",
        report.failures.len(),
        report.failures.first(),
        shmkafka_testkit::tail(&daemon.log_text(), 20)
    );
    assert_eq!(spooled(&dir.path().join("spool")), 0, "records spooled");
    for name in &late_names {
        let stored: i64 = fault_support::watermarks(broker.bootstrap_servers(), name)
            .iter()
            .map(|(_, low, high)| high - low)
            .sum();
        assert_eq!(stored, 1, "topic {name}");
    }
}
