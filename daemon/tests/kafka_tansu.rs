//! Round trip through a real Kafka-protocol broker (tansu), when installed.

mod kafka_common;

use kafka_common::roundtrip;
use shmkafka_testkit::{report_skip, unique_name, Tansu};

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
        &[("acks", "all")],
    );
}
