//! Against Apache Kafka 4.4.0 (one broker, `auto.create.topics.enable=false`
//! as production clusters run): permanent failures caused by the real
//! broker reach the client's failure queue and the dead-letter spool with
//! their codes, and `shmkafkad spool replay` delivers them once the cause
//! is fixed; and a daemon started while the cluster is unreachable holds
//! its clients' records and delivers them when the cluster appears.

use rdkafka::error::RDKafkaErrorCode;
use shmkafkad_test_support::{kafka_real, spool_support};

use std::collections::BTreeMap;
use std::time::Duration;

use shmkafka_client::WhenFull;
use shmkafka_testkit::{KafkaCluster, KafkaOptions};
use spool_support::{by_seq, client, list_json, send, spool_cli, spool_files, start_daemon, Rec};

/// librdkafka's codes for the failures a real broker causes here.
const UNKNOWN_TOPIC_OR_PART: i32 = RDKafkaErrorCode::UnknownTopicOrPartition as i32;
const UNKNOWN_TOPIC_LOCAL: i32 = RDKafkaErrorCode::UnknownTopic as i32;
const MSG_SIZE_TOO_LARGE: i32 = RDKafkaErrorCode::MessageSizeTooLarge as i32;

fn record(topic: &str, i: usize, value_len: usize) -> Rec {
    Rec {
        topic: topic.to_owned(),
        key: (i % 3 != 1).then(|| format!("key-{i}").into_bytes()),
        value: Some((0..value_len).map(|b| (b * 7 + i) as u8).collect()),
        headers: vec![
            ("idx".into(), Some(i.to_string().into_bytes())),
            ("nul".into(), None),
        ],
    }
}

/// `topic`'s records as the cluster holds them, sorted by index.
fn read_back(cluster: &KafkaCluster, topic: &str, expected: usize) -> Vec<Rec> {
    spool_support::read_back(cluster.bootstrap_servers(), topic, expected)
}

#[test]
fn broker_refusals_reach_the_client_and_the_spool_and_replay_after_the_fix() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let cluster = KafkaCluster::start(&dir.path().join("kafka"), &KafkaOptions::nodes(1))
        .expect("Apache Kafka");
    // A topic that takes records of at most 2,000 bytes (a batch of one
    // small-valued record fits, 3,000 bytes of value do not).
    let small = "real-small";
    cluster
        .create_topic(small, 1, 1, &[("max.message.bytes", "2000")])
        .expect("topic");
    let doomed = "real-deleted";
    cluster.create_topic(doomed, 1, 1, &[]).expect("topic");
    let missing = "real-missing";

    let daemon = start_daemon(
        dir.path(),
        cluster.bootstrap_servers(),
        &spool,
        // Fail a missing topic after 2 s instead of librdkafka's 30 s.
        &[("topic.metadata.propagation.max.ms", "2000")],
        "",
    );
    let producer = client(&daemon, 1 << 20, WhenFull::Block(Duration::from_secs(30)));
    let to_small = producer.topic(small).expect("topic");
    let to_missing = producer
        .topic(missing)
        .expect("a missing topic still registers");

    let mut must_fail: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut delivered = Vec::new();
    let mut ok_seqs = Vec::new();
    for i in 0..5 {
        let rec = record(missing, i, 10 + i);
        must_fail.insert(send(&producer, &to_missing, &rec), rec);
        let big = record(small, 100 + i, 3000);
        must_fail.insert(send(&producer, &to_small, &big), big);
        let ok = record(small, 200 + i, 50);
        ok_seqs.push(send(&producer, &to_small, &ok));
        delivered.push(ok);
    }
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    let failures: BTreeMap<u64, i32> = report.failures.iter().map(|f| (f.seq, f.code)).collect();
    for (seq, rec) in &must_fail {
        let Some(&code) = failures.get(seq) else {
            panic!(
                "seq {seq} ({}) did not fail: failures {failures:?}",
                rec.topic
            );
        };
        if rec.topic == small {
            assert_eq!(code, MSG_SIZE_TOO_LARGE, "seq {seq}");
        } else {
            assert!(
                [UNKNOWN_TOPIC_OR_PART, UNKNOWN_TOPIC_LOCAL].contains(&code),
                "seq {seq}: code {code}"
            );
        }
    }
    // The broker checks `max.message.bytes` against a whole record batch and
    // refuses the batch: a small record that librdkafka put in the same
    // batch as a too-large one fails with it (librdkafka, unlike Kafka's
    // Java producer, does not split the batch and retry). Nothing else may
    // fail, and whatever failed is spooled and replayed below.
    let collateral: Vec<_> = failures
        .iter()
        .filter(|(seq, _)| !must_fail.contains_key(seq))
        .collect();
    assert!(
        collateral
            .iter()
            .all(|(seq, &code)| code == MSG_SIZE_TOO_LARGE && ok_seqs.contains(seq)),
        "records failed that the broker had no reason to refuse: {collateral:?}"
    );
    eprintln!(
        "{} records failed beside the {} that had to: batched with a too-large one",
        collateral.len(),
        must_fail.len()
    );
    for (seq, _) in &collateral {
        let rec = delivered
            .iter()
            .zip(&ok_seqs)
            .find(|(_, s)| s == seq)
            .map(|(r, _)| r.clone())
            .expect("collateral is an ok record");
        must_fail.insert(**seq, rec);
    }
    let listed = by_seq(&list_json(&spool));
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        must_fail.keys().collect::<Vec<_>>(),
        "the spool holds other records than those that failed"
    );
    for (seq, rec) in &must_fail {
        assert_eq!(&listed[seq].rec, rec, "seq {seq}");
        assert_eq!(listed[seq].error_code, failures[seq], "seq {seq}");
    }

    // A topic deleted while records for it are in flight: records written
    // after the deletion fail, none is lost, and the rest still flows.
    let to_doomed = producer.topic(doomed).expect("topic");
    let mut before_delete = Vec::new();
    for i in 0..20 {
        let rec = record(doomed, 300 + i, 40);
        send(&producer, &to_doomed, &rec);
        before_delete.push(rec);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    cluster.delete_topic(doomed).expect("deleting the topic");
    let mut after_delete: BTreeMap<u64, Rec> = BTreeMap::new();
    for i in 0..20 {
        let rec = record(doomed, 400 + i, 40);
        after_delete.insert(send(&producer, &to_doomed, &rec), rec);
    }
    let report = producer.flush(Duration::from_secs(90)).expect("flush");
    let deleted_failures: BTreeMap<u64, i32> =
        report.failures.iter().map(|f| (f.seq, f.code)).collect();
    assert_eq!(
        deleted_failures.keys().collect::<Vec<_>>(),
        after_delete.keys().collect::<Vec<_>>(),
        "records for the deleted topic: failures {deleted_failures:?}"
    );
    let listed = by_seq(&list_json(&spool));
    for seq in after_delete.keys() {
        assert!(listed.contains_key(seq), "seq {seq} not spooled");
    }
    drop(producer);
    drop(daemon);

    // The fixes: create the missing and the deleted topic, raise the limit.
    cluster.create_topic(missing, 1, 1, &[]).expect("topic");
    cluster.create_topic(doomed, 1, 1, &[]).expect("topic");
    cluster
        .alter_topic_config(small, &[("max.message.bytes", "1048588")])
        .expect("raising max.message.bytes");
    let out = spool_cli(&[
        "replay",
        "--dir",
        spool.to_str().unwrap(),
        "--bootstrap-servers",
        cluster.bootstrap_servers(),
        "--timeout-ms",
        "60000",
    ]);
    assert!(
        out.status.success(),
        "replay failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(spool_files(&spool).is_empty(), "{:?}", spool_files(&spool));

    let sorted = |mut v: Vec<Rec>| {
        v.sort_by(|a, b| a.headers.cmp(&b.headers));
        v
    };
    let want_small = sorted(
        must_fail
            .values()
            .filter(|r| r.topic == small && !delivered.contains(r))
            .chain(&delivered)
            .cloned()
            .collect(),
    );
    assert_eq!(read_back(&cluster, small, want_small.len()), want_small);
    let want_missing = sorted(
        must_fail
            .values()
            .filter(|r| r.topic == missing)
            .cloned()
            .collect(),
    );
    assert_eq!(
        read_back(&cluster, missing, want_missing.len()),
        want_missing
    );
    let want_doomed = sorted(after_delete.values().cloned().collect());
    assert_eq!(read_back(&cluster, doomed, want_doomed.len()), want_doomed);
}

#[test]
fn daemon_started_before_the_cluster_holds_records_and_delivers_them() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    // Ports and storage are chosen now; nothing listens yet.
    let mut cluster = KafkaCluster::format(&dir.path().join("kafka"), &KafkaOptions::nodes(1))
        .expect("formatting Apache Kafka");
    // librdkafka gives a topic `topic.metadata.propagation.max.ms` (30 s by
    // default) from the moment the daemon first uses it to show up in the
    // cluster's metadata, then fails its records as unknown. Here the
    // topic is created only after the cluster has started, which on a
    // loaded machine can take longer than that.
    let daemon = start_daemon(
        dir.path(),
        cluster.bootstrap_servers(),
        &dir.path().join("spool"),
        &[("topic.metadata.propagation.max.ms", "600000")],
        "",
    );
    let producer = client(&daemon, 1 << 20, WhenFull::Block(Duration::from_secs(120)));
    let topic = "real-late";
    let to_late = producer.topic(topic).expect("registers without a cluster");
    let records: Vec<Rec> = (0..2000).map(|i| record(topic, i, 100)).collect();
    for rec in &records {
        send(&producer, &to_late, rec);
    }
    // Held, not failed: the daemon says so in `status`.
    std::thread::sleep(Duration::from_secs(3));
    let status = std::process::Command::new(spool_support::shmkafkad_bin())
        .args(["status", "--json", "--socket"])
        .arg(daemon.socket())
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let totals = &status["totals"];
    assert_eq!(
        totals["delivered"], 0,
        "acknowledged without a cluster: {status}"
    );
    assert_eq!(
        totals["failed"], 0,
        "failed while the cluster was unreachable: {status}"
    );
    assert!(
        totals["backlog_bytes"].as_u64().unwrap_or(0) > 0,
        "status shows no records held: {status}"
    );
    assert!(
        list_json(&dir.path().join("spool")).is_empty(),
        "records spooled while the cluster was unreachable"
    );

    cluster.start_all().expect("starting Apache Kafka");
    cluster.create_topic(topic, 2, 1, &[]).expect("topic");
    let report = producer.flush(Duration::from_secs(120)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let mut want = records.clone();
    want.sort_by(|a, b| a.headers.cmp(&b.headers));
    assert_eq!(read_back(&cluster, topic, want.len()), want);
    let log = daemon.log_text();
    assert!(
        log.contains("127.0.0.1"),
        "the daemon's log never mentions the unreachable broker:\n{log}"
    );
}
