//! End to end: records that fail permanently at the broker are spooled
//! byte for byte, reported to the client with their codes, listed by
//! `shmkafkad spool list`, and delivered by `shmkafkad spool replay` once
//! the topic works (checked with an independent consumer).
//!
//! How the failures are caused, reliably, with the mock broker process:
//! - **Topic missing at the broker.** The daemon's producer runs with
//!   `allow.auto.create.topics=false` (a producer property too since
//!   librdkafka 1.6; the mock cluster honours it) and
//!   `topic.metadata.propagation.max.ms=500`: the first record fails in its
//!   delivery report with `UNKNOWN_TOPIC_OR_PART` after half a second,
//!   later ones synchronously at produce time with `_UNKNOWN_TOPIC`.
//!   The replay runs with librdkafka's default (auto-creation on), so the
//!   same broker creates the topic and takes them.
//! - **Record too large.** `message.max.bytes=1000` on the daemon's
//!   producer refuses larger records with `MSG_SIZE_TOO_LARGE` (the mock
//!   cluster does not enforce a broker-side limit); the replay runs with the
//!   default limit.

use rdkafka::error::RDKafkaErrorCode;
use shmkafkad_test_support::spool_support;

use std::collections::BTreeMap;
use std::time::Duration;

use shmkafka_client::WhenFull;
use shmkafka_testkit::{unique_name, MockBrokerProcess};
use spool_support::{
    by_seq, client, list_json, mock_broker_bin, read_back, send, spool_cli, spool_files,
    start_daemon, Rec,
};

const GOOD: &str = "spool-good";
/// librdkafka's codes for the failures caused here.
const UNKNOWN_TOPIC_OR_PART: i32 = RDKafkaErrorCode::UnknownTopicOrPartition as i32;
const UNKNOWN_TOPIC_LOCAL: i32 = RDKafkaErrorCode::UnknownTopic as i32;
const MSG_SIZE_TOO_LARGE: i32 = RDKafkaErrorCode::MessageSizeTooLarge as i32;

fn record(topic: &str, i: usize, value_len: usize) -> Rec {
    Rec {
        topic: topic.to_owned(),
        // A null key, an empty value and a null header value among them.
        key: (i % 3 != 1).then(|| format!("key-{i}").into_bytes()),
        value: Some((0..value_len).map(|b| (b * 7 + i) as u8).collect()),
        headers: vec![
            ("idx".into(), Some(i.to_string().into_bytes())),
            ("nul".into(), None),
            ("bin".into(), Some(vec![0, 255, i as u8])),
        ],
    }
}

#[test]
fn permanent_failures_are_spooled_listed_and_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(GOOD, 1)]).expect("broker");
    let daemon = start_daemon(
        dir.path(),
        broker.bootstrap_servers(),
        &spool,
        &[
            ("allow.auto.create.topics", "false"),
            ("topic.metadata.propagation.max.ms", "500"),
            ("message.max.bytes", "1000"),
        ],
        "",
    );
    let missing = unique_name("spool-missing");
    let producer = client(&daemon, 1 << 20, WhenFull::Block(Duration::from_secs(10)));
    let good = producer.topic(GOOD).expect("good topic");
    let gone = producer.topic(&missing).expect("missing topic registers");

    let mut sent: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut delivered = Vec::new();
    for i in 0..6 {
        let rec = record(&missing, i, 10 + i);
        sent.insert(send(&producer, &gone, &rec), rec);
    }
    for i in 0..4 {
        let big = record(GOOD, 100 + i, 2000);
        sent.insert(send(&producer, &good, &big), big);
        let small = record(GOOD, 200 + i, 50);
        send(&producer, &good, &small);
        delivered.push(small);
    }

    // The client learns every failure with its code...
    let report = producer.flush(Duration::from_secs(30)).expect("flush");
    let failures: BTreeMap<u64, i32> = report.failures.iter().map(|f| (f.seq, f.code)).collect();
    assert_eq!(
        failures.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>(),
        "failed seqs differ from the records that had to fail"
    );
    for (seq, rec) in &sent {
        let code = failures[seq];
        if rec.topic == GOOD {
            assert_eq!(code, MSG_SIZE_TOO_LARGE, "seq {seq}");
        } else {
            assert!(
                [UNKNOWN_TOPIC_OR_PART, UNKNOWN_TOPIC_LOCAL].contains(&code),
                "seq {seq}: code {code}"
            );
        }
    }
    assert!(
        failures.values().any(|&c| c == UNKNOWN_TOPIC_OR_PART),
        "no failure came through a delivery report: {failures:?}"
    );

    // ...and the spool holds exactly those records, byte for byte.
    let listed = by_seq(&list_json(&spool));
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>()
    );
    for (seq, rec) in &sent {
        let entry = &listed[seq];
        assert_eq!(&entry.rec, rec, "seq {seq}");
        assert_eq!(entry.error_code, failures[seq], "seq {seq}");
        assert!(!entry.error_name.is_empty());
    }
    let text = spool_cli(&["list", "--dir", spool.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert_eq!(text.lines().count(), sent.len(), "{text}");
    assert!(text.contains("error=MSG_SIZE_TOO_LARGE"), "{text}");

    // Replay with the broker's and librdkafka's defaults: the topic gets
    // created, the size limit is the default one.
    let out = spool_cli(&[
        "replay",
        "--dir",
        spool.to_str().unwrap(),
        "--bootstrap-servers",
        broker.bootstrap_servers(),
        "--timeout-ms",
        "30000",
    ]);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(list_json(&spool).is_empty(), "spool not emptied by replay");
    assert!(spool_files(&spool).is_empty(), "{:?}", spool_files(&spool));

    let expect = |topic: &str| -> Vec<Rec> {
        let mut v: Vec<Rec> = sent
            .values()
            .chain(&delivered)
            .filter(|r| r.topic == topic)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.headers.cmp(&b.headers));
        v
    };
    for topic in [missing.as_str(), GOOD] {
        let want = expect(topic);
        let got = read_back(broker.bootstrap_servers(), topic, want.len());
        assert_eq!(got, want, "topic {topic}");
    }
    drop(producer);
}
