//! End to end, with the mock broker process: every record's delivery report
//! reaches the process that sent it exactly once, naming the partition and
//! offset where an independent consumer then reads that record; permanent
//! failures all reach the application (none dropped, whatever their number)
//! and the spool, under the sequence numbers `send` returned.

use shmkafkad_test_support::spool_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use shmkafka_client::{DeliveryReport, Message, Persistence, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::{unique_name, MockBrokerProcess};
use spool_support::{list_json, mock_broker_bin, start_daemon};

const PARTITIONS: i32 = 3;
/// librdkafka's `MSG_SIZE_TOO_LARGE`: what a record over `message.max.bytes`
/// fails with.
const MSG_SIZE_TOO_LARGE: i32 = 10;

fn producer(daemon: &shmkafka_testkit::DaemonProcess, delivery_reports: bool) -> Producer {
    Producer::connect_with(ProducerOptions {
        socket_path: Some(daemon.socket().to_owned()),
        ring_capacity: 1 << 20,
        max_record_len: 16 * 1024,
        when_full: WhenFull::Block(Duration::from_secs(30)),
        client_name: "reports-test".into(),
        delivery_reports,
    })
    .expect("client connects")
}

/// A mock broker with `topic` of `partitions` partitions, and a daemon
/// producing to it with extra `properties`; its spool is `dir/spool`.
struct Setup {
    dir: tempfile::TempDir,
    topic: String,
    broker: MockBrokerProcess,
    daemon: shmkafka_testkit::DaemonProcess,
}

impl Setup {
    fn new(topic_prefix: &str, partitions: u32, properties: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let topic = unique_name(topic_prefix);
        let broker = MockBrokerProcess::start_with_binary(
            mock_broker_bin(),
            1,
            &[(topic.as_str(), partitions)],
        )
        .expect("broker");
        let daemon = start_daemon(
            dir.path(),
            broker.bootstrap_servers(),
            &dir.path().join("spool"),
            properties,
            "",
        );
        Self {
            dir,
            topic,
            broker,
            daemon,
        }
    }
}

/// Polls reports until `expected` arrived (or a minute passed).
fn collect_reports(producer: &Producer, expected: usize) -> Vec<DeliveryReport> {
    let mut reports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports.len() < expected && Instant::now() < deadline {
        producer
            .poll_reports(Duration::from_millis(200), 1000, |r| reports.push(r))
            .expect("poll");
    }
    reports
}

#[test]
fn every_record_gets_one_report_naming_where_the_broker_stored_it() {
    // Every field bound: a field left to `..` would be dropped at once.
    let Setup {
        dir: _dir,
        topic: topic_name,
        broker,
        daemon,
    } = Setup::new("reports", PARTITIONS as u32, &[]);
    let producer = producer(&daemon, true);
    let topic = producer.topic(&topic_name).expect("topic");

    // Three ways to send, interleaved: plain, with an opaque, with a future.
    const RECORDS: u64 = 6_000;
    let mut sent_by_seq: HashMap<u64, u64> = HashMap::new();
    let mut futures = Vec::new();
    let mut reports = Vec::new();
    for i in 0..RECORDS {
        let idx = i.to_string();
        let value = format!("value-{i}");
        let message = Message::new()
            .key(idx.as_bytes())
            .value(value.as_bytes())
            .header("idx", Some(idx.as_bytes()));
        let seq = match i % 3 {
            0 => producer.send(&topic, &message).expect("send"),
            1 => producer
                .send_with_opaque(&topic, &message, 1_000_000 + i)
                .expect("send_with_opaque"),
            _ => {
                let future = producer.send_async(&topic, &message).expect("send_async");
                let seq = future.seq();
                futures.push((i, future));
                seq
            }
        };
        assert!(
            sent_by_seq.insert(seq, i).is_none(),
            "seq {seq} given twice"
        );
        if i % 500 == 0 {
            // Read while sending, as an application would.
            producer
                .poll_reports(Duration::ZERO, usize::MAX, |r| reports.push(r))
                .expect("poll");
        }
    }
    let polled = (RECORDS - futures.len() as u64) as usize;
    reports.extend(collect_reports(&producer, polled - reports.len()));

    // Where each record landed, by its index.
    let mut landed: BTreeMap<u64, (i32, i64)> = BTreeMap::new();
    let mut last_seq = None;
    for report in &reports {
        let i = sent_by_seq[&report.seq];
        assert_ne!(i % 3, 2, "a future's report went to poll: {report:?}");
        let delivered = report.result.expect("delivered");
        assert_eq!(&*report.topic, topic_name);
        let expected_opaque = (i % 3 == 1).then_some(1_000_000 + i);
        assert_eq!(report.opaque, expected_opaque, "record {i}");
        assert!(
            landed
                .insert(i, (delivered.partition, delivered.offset))
                .is_none(),
            "record {i} reported twice"
        );
        // One producing thread: commit order is send order.
        assert!(last_seq < Some(report.seq), "reports out of commit order");
        last_seq = Some(report.seq);
    }
    for (i, future) in futures {
        let delivered = futures_executor::block_on(future).expect("delivered");
        assert!(landed
            .insert(i, (delivered.partition, delivered.offset))
            .is_none());
    }
    assert_eq!(landed.len() as u64, RECORDS, "every record reported once");
    // Nothing more comes.
    let mut extra = 0;
    producer
        .poll_reports(Duration::from_millis(300), usize::MAX, |_| extra += 1)
        .expect("poll");
    assert_eq!(extra, 0, "no report twice");

    // An independent consumer finds each record where its report said.
    let stored = shmkafka_testkit::consume_all(
        broker.bootstrap_servers(),
        &topic_name,
        RECORDS as usize,
        Duration::from_secs(60),
    )
    .expect("consume");
    assert_eq!(stored.len() as u64, RECORDS);
    for record in stored {
        let idx: u64 = record
            .headers
            .iter()
            .find(|(name, _)| name == "idx")
            .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok()?.parse().ok())
            .expect("idx header");
        assert_eq!(
            landed[&idx],
            (record.partition, record.offset),
            "record {idx}: the report and the broker disagree"
        );
    }
    assert!(producer.flush(Duration::from_secs(10)).is_ok());
}

fn reports_producer(daemon: &shmkafka_testkit::DaemonProcess, when_full: WhenFull) -> Producer {
    Producer::connect_with(ProducerOptions {
        socket_path: Some(daemon.socket().to_owned()),
        ring_capacity: 64 << 10,
        max_record_len: 16 * 1024,
        when_full,
        client_name: "reports-held".into(),
        delivery_reports: true,
    })
    .expect("client connects")
}

#[test]
fn unread_reports_hold_back_send_and_nothing_is_dropped() {
    let Setup {
        dir: _dir,
        topic: topic_name,
        broker: _broker,
        daemon,
    } = Setup::new("reports-held", 1, &[]);

    // Fail-fast: the ring fills with records whose reports are unread.
    let producer = reports_producer(&daemon, WhenFull::Fail);
    let topic = producer.topic(&topic_name).expect("topic");
    let value = [7u8; 1000];
    let mut sent = 0u64;
    let full = loop {
        match producer.send(&topic, &Message::new().value(&value)) {
            Ok(_) => sent += 1,
            Err(e) if sent > 0 && producer.flush(Duration::from_secs(10)).is_ok() => {
                // Full only once everything before is acknowledged too.
                match producer.send(&topic, &Message::new().value(&value)) {
                    Ok(_) => sent += 1,
                    Err(_) => break e,
                }
            }
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 10_000, "a 64 KiB ring never filled");
    };
    assert!(
        matches!(full, shmkafka_client::Error::Full { .. }),
        "{full}"
    );
    let reports = collect_reports(&producer, sent as usize);
    assert_eq!(reports.len() as u64, sent);
    assert!(reports.iter().all(|r| r.result.is_ok()));
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>());
    // The daemon gives the space back on its next pass.
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = producer.send(&topic, &Message::new().value(&value)) {
        assert!(Instant::now() < deadline, "no room after reading: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(producer);

    // Blocking: a send waiting for room keeps ready reports for the next
    // poll (so one thread can send and poll), up to 65,536; beyond that
    // the application is held back.
    let producer = reports_producer(&daemon, WhenFull::Block(Duration::from_millis(500)));
    let topic = producer.topic(&topic_name).expect("topic");
    let mut sent = 0u64;
    let full = loop {
        match producer.send(&topic, &Message::new().value(b"x")) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 200_000, "unread reports never held send back");
    };
    assert!(
        matches!(full, shmkafka_client::Error::Full { .. }),
        "{full}"
    );
    assert!(
        sent > 65_536,
        "only {sent} records before send was held back"
    );
    let reports = collect_reports(&producer, sent as usize);
    assert_eq!(reports.len() as u64, sent, "none dropped");
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>());
}

/// Sends `count` records of 2,000 bytes, which a daemon whose producer has
/// `message.max.bytes=1000` fails for good, calling `read` now and then
/// (20 MB through a 1 MiB ring: the application must read its failures as
/// it goes, or it is held back).
fn send_too_large(
    producer: &Producer,
    topic: &shmkafka_client::Topic,
    count: u64,
    mut read: impl FnMut(),
) -> HashSet<u64> {
    let value = vec![1u8; 2000];
    (0..count)
        .map(|i| {
            if i % 100 == 0 {
                read();
            }
            producer
                .send(topic, &Message::new().value(&value))
                .expect("send")
        })
        .collect()
}

#[test]
fn ten_thousand_permanent_failures_all_reach_the_application_and_the_spool() {
    const FAILURES: u64 = 10_000;
    let Setup {
        dir,
        topic: topic_name,
        broker: _broker,
        daemon,
    } = Setup::new("too-large", 1, &[("message.max.bytes", "1000")]);
    let spool = dir.path().join("spool");

    // Without delivery reports: through the failure queue, which holds 64.
    let flushing = producer(&daemon, false);
    let topic = flushing.topic(&topic_name).expect("topic");
    let mut failures = Vec::new();
    let seqs = send_too_large(&flushing, &topic, FAILURES, || {
        failures.extend(flushing.failures());
    });
    failures.extend(
        flushing
            .flush(Duration::from_secs(120))
            .expect("flush")
            .failures,
    );
    let failed: HashSet<u64> = failures.iter().map(|f| f.seq).collect();
    assert_eq!(failures.len() as u64, FAILURES, "every failure, once");
    assert_eq!(failed, seqs);
    assert!(failures.iter().all(|f| f.code == MSG_SIZE_TOO_LARGE));
    assert_eq!(
        shmkafka_client::error_name(MSG_SIZE_TOO_LARGE),
        "MSG_SIZE_TOO_LARGE"
    );

    // With delivery reports: each failure in its record's report.
    let reporting = producer(&daemon, true);
    let topic = reporting.topic(&topic_name).expect("topic");
    let mut reports = Vec::new();
    let seqs = send_too_large(&reporting, &topic, FAILURES, || {
        reporting
            .poll_reports(Duration::ZERO, usize::MAX, |r| reports.push(r))
            .expect("poll");
    });
    let rest = FAILURES as usize - reports.len();
    reports.extend(collect_reports(&reporting, rest));
    assert_eq!(reports.len() as u64, FAILURES);
    let reported: HashSet<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(reported, seqs);
    for report in &reports {
        let error = report.result.expect_err("failed");
        assert_eq!(error.code, MSG_SIZE_TOO_LARGE);
        assert_eq!(error.name(), "MSG_SIZE_TOO_LARGE");
        assert_eq!(error.persistence, Persistence::NotPersisted);
    }

    // The spool has all of them, under the numbers the application saw.
    drop((flushing, reporting));
    let listed = list_json(&spool);
    assert_eq!(listed.len() as u64, 2 * FAILURES);
    let mut per_seq: BTreeMap<u64, usize> = BTreeMap::new();
    for entry in &listed {
        assert_eq!(entry.error_name, "MSG_SIZE_TOO_LARGE");
        *per_seq.entry(entry.seq).or_default() += 1;
    }
    // Two clients, each numbering its records from 0.
    assert_eq!(per_seq.len() as u64, FAILURES);
    assert!(per_seq.values().all(|&n| n == 2));
}

#[test]
fn flush_without_polling_keeps_every_report_for_the_next_poll() {
    // More records than the daemon tracks unreleased per ring (65,536)
    // plus what a waiting send keeps (65,536): flush must take every
    // report as it waits, or it would wait forever.
    const RECORDS: u64 = 300_000;
    let Setup {
        dir: _dir,
        topic: topic_name,
        broker: _broker,
        daemon,
    } = Setup::new("reports-flush", 2, &[]);
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(daemon.socket().to_owned()),
        ring_capacity: 32 << 20,
        max_record_len: 16 * 1024,
        when_full: WhenFull::Block(Duration::from_secs(30)),
        client_name: "reports-flush".into(),
        delivery_reports: true,
    })
    .expect("client connects");
    let topic = producer.topic(&topic_name).expect("topic");
    for i in 0..RECORDS {
        producer
            .send(&topic, &Message::new().value(&i.to_le_bytes()))
            .expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let reports = collect_reports(&producer, RECORDS as usize);
    assert_eq!(reports.len() as u64, RECORDS);
    assert!(reports.iter().all(|r| r.result.is_ok()));
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..RECORDS).collect::<Vec<_>>());
}
