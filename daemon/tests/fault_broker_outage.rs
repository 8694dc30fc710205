//! The only broker is down for 30 seconds while three
//! clients write. The rings fill (the daemon holds every record until it is
//! acknowledged, and `message.timeout.ms=0` keeps librdkafka retrying), and
//! each client sees the back-pressure its mode asks for:
//!
//! * `WhenFull::Fail`: `Error::Full` at once;
//! * `WhenFull::Block(2 s)`: blocks 2 s, then `Error::Full`;
//! * `WhenFull::Block(90 s)`: blocks through the outage and succeeds.
//!
//! Nothing is dropped: after the broker is back, every record whose `send`
//! returned Ok is delivered exactly once, and none whose `send` failed.

use shmkafkad_test_support::common;

use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, test_dir, Guarantee, RecordId, Workload};
use shmkafka_client::{Error, Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::MockBrokerProcess;

use fault_support::{report_row, Tally};
use shmkafkad_test_support::fault_support;

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

const TOPIC: &str = "fault-broker-outage";
/// The outage the issue asks for.
const OUTAGE: Duration = Duration::from_secs(30);
const SHORT_BLOCK: Duration = Duration::from_secs(2);
const LONG_BLOCK: Duration = Duration::from_secs(90);
/// Records the long-blocking client sends once its blocked send returned.
const RECORDS_AFTER_OUTAGE: u32 = 2_000;
const WORKLOAD: Workload = Workload {
    procs: 3,
    threads: 1,
    per_thread: u32::MAX,
    partitions: 4,
    max_value: 200,
};

struct Client {
    producer: Producer,
    topic: shmkafka_client::Topic,
    proc_id: u32,
    /// Records `0..sent` returned Ok.
    sent: u32,
}

impl Client {
    fn new(socket: &std::path::Path, proc_id: u32, when_full: WhenFull) -> Self {
        let producer = Producer::connect_with(ProducerOptions {
            socket_path: Some(socket.to_owned()),
            // Small rings: they fill within seconds of the outage.
            ring_capacity: 64 << 10,
            max_record_len: 16 << 10,
            when_full,
            client_name: format!("outage-{proc_id}"),
            delivery_reports: false,
        })
        .expect("connect");
        let topic = producer.topic(TOPIC).expect("topic");
        Client {
            producer,
            topic,
            proc_id,
            sent: 0,
        }
    }

    /// Sends the next record; on success it counts as committed.
    fn send_next(&mut self) -> Result<(), Error> {
        let record = WORKLOAD.record(RecordId {
            proc: self.proc_id,
            thread: 0,
            counter: self.sent,
        });
        let mut message = Message::new();
        message.key = record.key.as_deref();
        message.value = record.value.as_deref();
        message.partition = record.partition;
        message.timestamp_ms = record.timestamp_ms;
        for (name, value) in &record.headers {
            message = message.header(name, value.as_deref());
        }
        self.producer.send(&self.topic, &message)?;
        self.sent += 1;
        Ok(())
    }

    fn ids(&self) -> impl Iterator<Item = RecordId> + '_ {
        (0..self.sent).map(|counter| RecordId {
            proc: self.proc_id,
            thread: 0,
            counter,
        })
    }
}

#[test]
fn broker_down_for_30s_fills_rings_with_back_pressure_and_loses_nothing() {
    let started = Instant::now();
    let dir = test_dir();
    let mut broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(TOPIC, WORKLOAD.partitions as u32)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let daemon = daemon_options(&socket, broker.bootstrap_servers()).start();

    let mut fail = Client::new(&socket, 0, WhenFull::Fail);
    let mut short = Client::new(&socket, 1, WhenFull::Block(SHORT_BLOCK));
    let mut long = Client::new(&socket, 2, WhenFull::Block(LONG_BLOCK));
    // Warm up: the producer has its broker connection and metadata.
    for client in [&mut fail, &mut short, &mut long] {
        for _ in 0..50 {
            client.send_next().expect("send while the broker is up");
        }
        client
            .producer
            .flush(Duration::from_secs(30))
            .expect("flush");
    }

    broker.set_broker_down(1).expect("broker down");
    let down_at = Instant::now();
    let mut rejected = 0u64;

    // Fail: Error::Full as soon as the ring is full, without waiting.
    let full_at = loop {
        let before = Instant::now();
        match fail.send_next() {
            Ok(()) => {}
            Err(Error::Full { .. }) => {
                assert!(before.elapsed() < Duration::from_secs(1));
                rejected += 1;
                break fail.sent;
            }
            Err(e) => panic!("fail-fast client: {e}"),
        }
        assert!(down_at.elapsed() < OUTAGE, "ring never filled");
    };
    // Still full a moment later: nothing leaks out while the broker is down.
    std::thread::sleep(Duration::from_millis(500));
    assert!(matches!(fail.send_next(), Err(Error::Full { .. })));
    rejected += 1;
    eprintln!(
        "fail-fast client: Error::Full after {full_at} records, {:?} into the outage",
        down_at.elapsed()
    );

    // Block(2 s): blocks for its timeout, then Error::Full.
    let blocked = loop {
        let before = Instant::now();
        match short.send_next() {
            Ok(()) => {}
            Err(Error::Full { .. }) => break before.elapsed(),
            Err(e) => panic!("short-block client: {e}"),
        }
        assert!(down_at.elapsed() < OUTAGE, "ring never filled");
    };
    rejected += 1;
    assert!(
        blocked >= SHORT_BLOCK - Duration::from_millis(50) && blocked < SHORT_BLOCK * 3,
        "blocked {blocked:?} for a {SHORT_BLOCK:?} timeout"
    );
    eprintln!(
        "short-block client: Error::Full after blocking {blocked:?}, {} records sent",
        short.sent
    );

    // Block(90 s): keeps sending in a thread; one send blocks through the
    // rest of the outage and then succeeds.
    let longest = std::thread::scope(|scope| {
        let long = &mut long;
        let sender = scope.spawn(move || {
            let mut longest = Duration::ZERO;
            let stop = down_at + OUTAGE + Duration::from_secs(3);
            // Past the outage a few records show that sending goes on; an
            // unbounded burst would, at full speed, overflow the mock
            // broker's 5 MiB per partition and trim what the test counts.
            let mut sent_after_outage = 0;
            while Instant::now() < stop && sent_after_outage < RECORDS_AFTER_OUTAGE {
                let before = Instant::now();
                long.send_next()
                    .unwrap_or_else(|e| panic!("long-block client: {e}"));
                longest = longest.max(before.elapsed());
                if longest >= OUTAGE / 2 {
                    sent_after_outage += 1;
                }
            }
            longest
        });
        let remaining = OUTAGE.saturating_sub(down_at.elapsed());
        std::thread::sleep(remaining);
        broker.set_broker_up(1).expect("broker up");
        eprintln!("broker up after {:?}", down_at.elapsed());
        sender.join().expect("long-block sender")
    });
    assert!(
        longest >= OUTAGE / 2,
        "the long-block client never blocked through the outage (longest send {longest:?})"
    );
    eprintln!(
        "long-block client: longest send blocked {longest:?}, then succeeded; {} records sent",
        long.sent
    );

    // Nothing dropped: everything sent is delivered, exactly once.
    for client in [&fail, &short, &long] {
        let report = client
            .producer
            .flush(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("flush after the outage: {e}"));
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    }
    let ids: Vec<RecordId> = [&fail, &short, &long]
        .iter()
        .flat_map(|c| c.ids())
        .collect();
    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        TOPIC,
        &WORKLOAD,
        &ids,
        |_| false,
        Guarantee::ExactlyOnce,
    );
    assert_eq!(verdict.duplicates, 0);
    eprintln!(
        "{} records sent, {} consumed, {rejected} sends refused with Error::Full",
        ids.len(),
        verdict.consumed
    );
    report_row(
        "3 broker down 30 s (Fail / Block 2 s / Block 90 s)",
        Tally {
            committed: ids.len() as u64,
            acked: ids.len() as u64,
            consumed: verdict.consumed as u64,
            lost: 0,
            duplicated: 0,
        },
        started.elapsed(),
    );
    drop(daemon);
}
