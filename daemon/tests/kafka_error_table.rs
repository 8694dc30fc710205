//! The client-side error table (`shmkafka_protocol::kafka_error`) answers
//! exactly as the librdkafka the daemon links: every code librdkafka lists,
//! with its name and description, and no other code. Fails after a
//! librdkafka upgrade until the table is regenerated with
//! `cargo run -p shmkafkad --example kafka_error_table > protocol/src/kafka_error/table.rs`.

use shmkafka_protocol::kafka_error::{error_description, error_name};
use shmkafkad::kafka::{librdkafka_error_descriptions, KafkaErrorCode};

const REGENERATE: &str = "regenerate protocol/src/kafka_error/table.rs with \
    `cargo run -p shmkafkad --example kafka_error_table`";

#[test]
fn client_table_equals_librdkafkas_error_descriptions() {
    let librdkafka = librdkafka_error_descriptions();
    assert!(
        librdkafka.len() > 100,
        "librdkafka listed only {} codes",
        librdkafka.len()
    );
    for entry in &librdkafka {
        assert_eq!(
            (error_name(entry.code), error_description(entry.code)),
            (Some(entry.name), Some(entry.description)),
            "code {}: {REGENERATE}",
            entry.code
        );
    }
    // Kafka's error codes are 16-bit; librdkafka's local ones lie in
    // -200..-100. A code the table knows but librdkafka does not is a stale
    // row.
    let listed: std::collections::HashSet<i32> = librdkafka.iter().map(|e| e.code).collect();
    for code in i32::from(i16::MIN)..=i32::from(i16::MAX) {
        if !listed.contains(&code) {
            assert_eq!(error_name(code), None, "code {code}: {REGENERATE}");
            assert_eq!(error_description(code), None, "code {code}: {REGENERATE}");
        }
    }
}

#[test]
fn client_table_names_codes_as_the_daemons_err2name_and_err2str() {
    for entry in librdkafka_error_descriptions() {
        let code = KafkaErrorCode::from_raw(entry.code);
        assert_eq!(error_name(entry.code), Some(&*code.name()));
        assert_eq!(error_description(entry.code), Some(&*code.description()));
    }
}
