//! Every compression codec against Apache Kafka 4.4.0: JSON-lines records
//! compressed by the daemon with gzip, snappy, lz4 and zstd read back
//! byte-identical and in order, and the broker's own log segments (Kafka's
//! `DumpLogSegments`) show every batch stored with that codec, in fewer
//! bytes than the records.
//!
//! The records must compress: librdkafka sends a batch uncompressed when
//! the codec would make it larger (random bytes do), which is right for the
//! user but would prove nothing here.

use shmkafkad_test_support::common;

use std::time::Duration;

use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::{consume_all, KafkaCluster, KafkaOptions};

use common::daemon_options;

const RECORDS: usize = 3_000;

/// About 1 KiB of JSON, like an application's event log.
fn json_line(i: usize) -> Vec<u8> {
    let items: Vec<String> = (0..12)
        .map(|n| {
            format!(
                r#"{{"sku":"SKU-{:05}","qty":{},"price_cents":{},"warehouse":"eu-west-{}"}}"#,
                (i * 7 + n * 13) % 50_000,
                1 + (i + n) % 9,
                199 + ((i * 31 + n * 17) % 10_000),
                n % 3
            )
        })
        .collect();
    format!(
        r#"{{"order_id":{i},"customer":"customer-{}","status":"PLACED","items":[{}]}}"#,
        i % 977,
        items.join(",")
    )
    .into_bytes()
}

#[test]
fn every_codec_reaches_the_broker_and_reads_back_byte_identical() {
    let dir = common::test_dir();
    let cluster = KafkaCluster::start(&dir.path().join("kafka"), &KafkaOptions::nodes(1))
        .expect("Apache Kafka");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        cluster.create_topic(&topic, 1, 1, &[]).expect("topic");
        let socket = dir.path().join(format!("{codec}.sock"));
        let daemon = daemon_options(&socket, cluster.bootstrap_servers())
            .property("compression.type", codec)
            .start();
        let producer = Producer::connect_with(ProducerOptions {
            socket_path: Some(socket.clone()),
            ring_capacity: 8 << 20,
            max_record_len: 64 * 1024,
            when_full: WhenFull::Block(Duration::from_secs(60)),
            client_name: format!("compression-{codec}"),
            delivery_reports: false,
        })
        .expect("client");
        let handle = producer.topic(&topic).expect("topic");
        let sent: Vec<(Vec<u8>, Vec<u8>)> = (0..RECORDS)
            .map(|i| (format!("order-{i}").into_bytes(), json_line(i)))
            .collect();
        for (key, value) in &sent {
            producer
                .send(
                    &handle,
                    &Message::new()
                        .key(key)
                        .value(value)
                        .header("codec", Some(codec.as_bytes())),
                )
                .expect("send");
        }
        let report = producer.flush(Duration::from_secs(60)).expect("flush");
        assert!(report.failures.is_empty(), "{codec}: {:?}", report.failures);

        let got = consume_all(
            cluster.bootstrap_servers(),
            &topic,
            RECORDS,
            Duration::from_secs(60),
        )
        .expect("consume");
        let got: Vec<(Vec<u8>, Vec<u8>)> = got
            .into_iter()
            .map(|r| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
            .collect();
        assert!(
            got == sent,
            "{codec}: {} records read back differ from the {} sent",
            got.len(),
            sent.len()
        );
        let theirs = cluster
            .console_consume(&topic, RECORDS, Duration::from_secs(15), "read_uncommitted")
            .expect("Kafka's console consumer");
        assert_eq!(theirs.len(), RECORDS, "{codec}: Kafka's consumer");

        let segment = cluster
            .dir()
            .join("node-1-data")
            .join(format!("{topic}-0"))
            .join("00000000000000000000.log");
        let dump = cluster
            .run_tool(
                "org.apache.kafka.tools.DumpLogSegments",
                &["--files", segment.to_str().expect("utf-8")],
            )
            .expect("DumpLogSegments");
        let stored_as = format!("compresscodec: {codec}");
        let batches = dump.lines().filter(|l| l.contains("baseOffset")).count();
        let compressed = dump.lines().filter(|l| l.contains(&stored_as)).count();
        assert!(
            batches > 0 && compressed == batches,
            "{codec}: {compressed} of {batches} batches stored with {stored_as}:\n{}",
            shmkafka_testkit::tail(&dump, 5)
        );
        let raw: usize = sent.iter().map(|(k, v)| k.len() + v.len()).sum();
        let on_disk = std::fs::metadata(&segment).expect("segment").len() as usize;
        assert!(
            on_disk * 2 < raw,
            "{codec}: {on_disk} bytes on disk for {raw} bytes of records"
        );
        eprintln!("{codec}: {RECORDS} records, {batches} batches, {raw} bytes stored in {on_disk}");
        drop(producer);
        drop(daemon);
    }
}
