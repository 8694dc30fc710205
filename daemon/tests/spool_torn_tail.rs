//! End to end: a spool file whose last frame was cut short (a crash in the
//! middle of an append) or damaged in the middle is read up to and around
//! the damage with a warning, never a panic; replay delivers the intact
//! records and the rewrite leaves a clean spool.

use shmkafkad_test_support::spool_support;

use std::time::Duration;

use shmkafka_client::{Message, WhenFull};
use shmkafka_testkit::{consume_all, MockBrokerProcess};
use spool_support::{
    client, list_json, mock_broker_bin, parse_list, spool_cli, spool_files, start_daemon,
};

const TOPIC: &str = "spool-torn";

#[test]
fn torn_tail_and_damage_are_skipped_with_a_warning_and_the_rest_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(TOPIC, 1)]).expect("broker");
    let mut daemon = start_daemon(
        dir.path(),
        broker.bootstrap_servers(),
        &spool,
        &[("message.max.bytes", "1000")],
        "",
    );
    let producer = client(&daemon, 1 << 20, WhenFull::Fail);
    let topic = producer.topic(TOPIC).expect("topic");
    let value = vec![0x5a; 1500];
    // One at a time, so each is its own fsynced batch and frame.
    for i in 0..4 {
        producer
            .send(
                &topic,
                &Message::new().key(format!("k{i}").as_bytes()).value(&value),
            )
            .expect("send");
        let report = producer.flush(Duration::from_secs(30)).expect("flush");
        assert_eq!(report.failures.len(), 1);
    }
    drop(producer);
    assert!(daemon.terminate(Duration::from_secs(30)).success());

    let files = spool_files(&spool);
    assert_eq!(files.len(), 1, "{files:?}");
    let listed = list_json(&spool);
    assert_eq!(listed.len(), 4);
    // Tear the last frame in half, and flip a byte inside the second.
    let bytes = std::fs::read(&files[0]).unwrap();
    let frame = (bytes.len() - 16) / 4;
    let mut damaged = bytes[..bytes.len() - frame / 2].to_vec();
    damaged[16 + frame + frame / 2] ^= 0x40;
    std::fs::write(&files[0], &damaged).unwrap();

    let spool_arg = spool.to_str().unwrap();
    let out = spool_cli(&["list", "--json", "--dir", spool_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "damage is reported in the exit code: {stderr}"
    );
    assert!(stderr.contains("torn tail"), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let keys: Vec<Vec<u8>> = parse_list(&out.stdout)
        .into_iter()
        .map(|l| l.rec.key.unwrap())
        .collect();
    assert_eq!(keys, vec![b"k0".to_vec(), b"k2".to_vec()]);

    let out = spool_cli(&[
        "replay",
        "--dir",
        spool_arg,
        "--bootstrap-servers",
        broker.bootstrap_servers(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = consume_all(
        broker.bootstrap_servers(),
        TOPIC,
        2,
        Duration::from_secs(30),
    )
    .expect("consume");
    let mut got: Vec<Vec<u8>> = got.into_iter().map(|c| c.key.unwrap()).collect();
    got.sort();
    assert_eq!(got, keys);
    assert!(spool_files(&spool).is_empty());
    // The damaged original is kept aside for inspection, not listed.
    let kept: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        kept.iter().any(|n| n.ends_with(".spool.damaged")),
        "{kept:?}"
    );
    let out = spool_cli(&["list", "--dir", spool_arg]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}
