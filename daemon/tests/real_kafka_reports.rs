//! Delivery reports against Apache Kafka 4.4.0: every record's report
//! arrives once, with its opaque or through its future, and names the
//! partition and offset at which Kafka's own console consumer then reads
//! the record.

use shmkafkad_test_support::{common, kafka_real};

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use shmkafka_client::{DeliveryReport, Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::KafkaOptions;

const PARTITIONS: u32 = 4;
const RECORDS: u64 = 3_000;

#[test]
fn reports_name_the_partition_and_offset_kafka_stores_each_record_at() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let cluster = kafka_real::start_cluster(dir.path(), &KafkaOptions::nodes(1));
    let topic_name = "reports-kafka";
    kafka_real::create_topic(&cluster, topic_name, PARTITIONS, &[]);
    let socket = dir.path().join("shmkafkad.sock");
    let _daemon = common::daemon_options(&socket, cluster.bootstrap_servers()).start();

    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket),
        ring_capacity: 4 << 20,
        max_record_len: 64 << 10,
        when_full: WhenFull::Block(Duration::from_secs(60)),
        client_name: "reports-kafka".into(),
        delivery_reports: true,
    })
    .expect("connect");
    let topic = producer.topic(topic_name).expect("topic");

    let mut index_of_seq: HashMap<u64, u64> = HashMap::new();
    let mut futures = Vec::new();
    for i in 0..RECORDS {
        let idx = i.to_string();
        let value = vec![(i % 251) as u8; (i % 700) as usize];
        let message = Message::new()
            .key(idx.as_bytes())
            .value(&value)
            .header("idx", Some(idx.as_bytes()));
        let seq = if i % 2 == 0 {
            producer
                .send_with_opaque(&topic, &message, i)
                .expect("send")
        } else {
            let future = producer.send_async(&topic, &message).expect("send_async");
            let seq = future.seq();
            futures.push((i, future));
            seq
        };
        index_of_seq.insert(seq, i);
    }

    let mut landed: BTreeMap<u64, (i32, i64)> = BTreeMap::new();
    let polled = RECORDS as usize - futures.len();
    let mut reports: Vec<DeliveryReport> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while reports.len() < polled && Instant::now() < deadline {
        producer
            .poll_reports(Duration::from_millis(200), usize::MAX, |r| reports.push(r))
            .expect("poll");
    }
    assert_eq!(reports.len(), polled, "every polled report, once");
    for report in reports {
        let i = index_of_seq[&report.seq];
        assert_eq!(report.opaque, Some(i), "the opaque comes back");
        let delivered = report.result.expect("delivered");
        assert!(delivered.timestamp_ms > 0);
        assert!(landed
            .insert(i, (delivered.partition, delivered.offset))
            .is_none());
    }
    for (i, future) in futures {
        let delivered = futures_executor::block_on(future).expect("delivered");
        assert!(landed
            .insert(i, (delivered.partition, delivered.offset))
            .is_none());
    }
    assert_eq!(landed.len() as u64, RECORDS);

    // Kafka's own consumer reads each record where its report said.
    let stored = cluster
        .console_consume(
            topic_name,
            RECORDS as usize,
            Duration::from_secs(20),
            "read_uncommitted",
        )
        .expect("console consumer");
    assert_eq!(stored.len() as u64, RECORDS);
    for record in stored {
        let idx: u64 = std::str::from_utf8(record.header("idx").expect("idx header"))
            .expect("utf-8")
            .parse()
            .expect("number");
        assert_eq!(
            landed[&idx],
            (record.partition, record.offset),
            "record {idx}: report and broker disagree"
        );
    }
}
