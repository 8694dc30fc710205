//! Round trip through a real Kafka-protocol broker (tansu), when installed.

mod kafka_common;

use kafka_common::roundtrip;
use std::time::Duration;

use shmkafka_testkit::{consume_all, report_skip, unique_name, Tansu};

fn start_or_skip(dir: &std::path::Path) -> Option<Tansu> {
    match Tansu::start(dir) {
        Ok(tansu) => Some(tansu),
        Err(error) if error.is_not_installed() => {
            report_skip("tansu round trip", &error);
            None
        }
        Err(error) => panic!("tansu failed to start: {error}"),
    }
}

#[test]
fn roundtrip_by_reference_through_tansu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(tansu) = start_or_skip(dir.path()) else {
        return;
    };
    let topic = unique_name("tansu-roundtrip");
    tansu.create_topic(&topic, 3).expect("create topic");
    roundtrip(
        tansu.bootstrap_servers(),
        &topic,
        3,
        300,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
}

#[test]
fn tansu_keeps_records_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(tansu) = start_or_skip(dir.path()) else {
        return;
    };
    let topic_name = unique_name("tansu-restart");
    tansu.create_topic(&topic_name, 1).expect("create topic");
    let producer = kafka_common::producer(tansu.bootstrap_servers(), &[("acks", "all")]);
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
    let old_pid = tansu.pid();
    drop(tansu);
    assert!(!std::path::Path::new(&format!("/proc/{old_pid}")).exists());

    let tansu = Tansu::start(dir.path()).expect("restart on the same data");
    let records = consume_all(
        tansu.bootstrap_servers(),
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
