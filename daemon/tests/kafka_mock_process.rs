//! Round trip through the `shmkafka-mock-broker` child process.

use shmkafkad_test_support::kafka_common;

use std::path::Path;
use std::time::Duration;

use kafka_common::{poll_reports, producer, roundtrip};
use shmkafka_testkit::{consume_all, unique_name, MockBrokerProcess};
use shmkafkad::kafka::OutgoingMessage;
use shmkafkad_test_support::common::mock_broker_bin;

#[test]
fn roundtrip_by_reference_through_mock_broker_process() {
    let topic = unique_name("roundtrip");
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 3, &[(&topic, 3)])
        .expect("mock broker");
    assert!(
        broker.bootstrap_servers().starts_with("127.0.0.1:"),
        "{}",
        broker.bootstrap_servers()
    );
    roundtrip(
        broker.bootstrap_servers(),
        &topic,
        3,
        300,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
}

#[test]
fn auto_created_topic_gets_four_partitions() {
    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[]).expect("mock broker");
    let topic = unique_name("auto");
    roundtrip(broker.bootstrap_servers(), &topic, 4, 40, &[]);
}

#[test]
fn killed_broker_process_takes_its_data_with_it() {
    let topic = unique_name("killed");
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(&topic, 1)])
        .expect("mock broker");
    let bootstrap = broker.bootstrap_servers().to_owned();
    let producer = producer(&bootstrap, &[]);
    let t = producer.topic(&topic).expect("topic");
    producer
        .produce_copied(
            &t,
            &OutgoingMessage {
                value: Some(b"v"),
                ..Default::default()
            },
        )
        .expect("produce");
    assert_eq!(poll_reports(&producer, 1, Duration::from_secs(10)).len(), 1);
    assert_eq!(
        consume_all(&bootstrap, &topic, 1, Duration::from_secs(10))
            .expect("consume")
            .len(),
        1
    );

    let pid = broker.pid();
    broker.kill();
    // The process is gone (reaped), so its port is closed.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "mock broker {pid} still running"
    );
    assert!(
        std::net::TcpStream::connect(bootstrap.as_str()).is_err(),
        "{bootstrap} still accepts connections"
    );
}

#[test]
fn locate_binary_finds_the_mock_broker_next_to_the_test() {
    let found = shmkafka_testkit::locate_binary(
        shmkafka_testkit::MOCK_BROKER_BIN,
        "SHMKAFKA_TEST_UNSET_VARIABLE",
    )
    .expect("locate");
    assert_eq!(
        found.canonicalize().ok(),
        mock_broker_bin().canonicalize().ok()
    );
    let broker = MockBrokerProcess::start(1, &[]).expect("start via locate_binary");
    assert!(!broker.bootstrap_servers().is_empty());
}
