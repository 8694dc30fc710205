//! The daemon's librdkafka producer against Apache Kafka 4.4.0: a round
//! trip by reference, and records that survive the broker's `kill -9` and
//! restart on the same log directory.

use shmkafkad_test_support::kafka_common;

use kafka_common::roundtrip;
use std::time::Duration;

use shmkafka_testkit::{consume_all, unique_name, KafkaCluster, KafkaOptions};

fn start_kafka(dir: &std::path::Path) -> KafkaCluster {
    KafkaCluster::start(dir, &KafkaOptions::nodes(1)).expect("Apache Kafka")
}

#[test]
fn roundtrip_by_reference_through_apache_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = start_kafka(dir.path());
    let topic = unique_name("kafka-roundtrip");
    kafka.create_topic(&topic, 3, 1, &[]).expect("create topic");
    roundtrip(
        kafka.bootstrap_servers(),
        &topic,
        3,
        300,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
}

#[test]
fn acknowledged_records_survive_a_broker_kill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kafka = start_kafka(dir.path());
    let topic_name = unique_name("kafka-restart");
    kafka
        .create_topic(&topic_name, 1, 1, &[])
        .expect("create topic");
    let producer = kafka_common::producer(kafka.bootstrap_servers(), &[("acks", "all")]);
    let topic = producer.topic(&topic_name).expect("topic");
    for i in 0..10u8 {
        let value = [i];
        producer
            .produce_copied(
                &topic,
                &shmkafkad::kafka::OutgoingMessage {
                    value: Some(&value),
                    ..Default::default()
                },
            )
            .expect("produce");
    }
    let reports = kafka_common::poll_reports(&producer, 10, Duration::from_secs(30));
    assert!(
        reports.len() == 10 && reports.iter().all(|r| r.result.is_ok()),
        "{reports:?}"
    );
    drop(topic);
    drop(producer);
    let old_pid = kafka.pid(1).expect("running");
    kafka.kill(1);
    assert!(!std::path::Path::new(&format!("/proc/{old_pid}")).exists());

    kafka.restart(1).expect("restart on the same log directory");
    let records = consume_all(
        kafka.bootstrap_servers(),
        &topic_name,
        10,
        Duration::from_secs(30),
    )
    .expect("consume");
    let values: Vec<u8> = records
        .iter()
        .map(|r| r.value.as_deref().unwrap_or_default()[0])
        .collect();
    assert_eq!(values, (0..10).collect::<Vec<u8>>());
}
