//! End to end: at a graceful stop, records of clients that are gone and
//! could not be delivered within the shutdown budget are spooled (their
//! ring dies with the daemon), while a live client's records stay in its
//! ring for the next daemon. The spooled ones replay to a working broker.

use shmkafkad_test_support::spool_support;

use std::time::Duration;

use shmkafka_client::{Message, WhenFull};
use shmkafka_testkit::wait_until;
use shmkafka_testkit::{consume_all, free_port, MockBrokerProcess};
use spool_support::{client, list_json, mock_broker_bin, spool_cli, start_daemon};

const TOPIC: &str = "spool-shutdown";

#[test]
fn gone_clients_records_are_spooled_at_shutdown_live_ones_stay_in_the_ring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    // Nothing listens there: no record can be delivered.
    let nowhere = format!("127.0.0.1:{}", free_port().expect("port"));
    let mut daemon = start_daemon(
        dir.path(),
        &nowhere,
        &spool,
        &[],
        "[daemon]\nshutdown_timeout_ms = 1000\n",
    );

    let gone = client(&daemon, 1 << 20, WhenFull::Fail);
    let topic = gone.topic(TOPIC).expect("topic");
    let mut sent = Vec::new();
    for i in 0..5 {
        let key = format!("gone-{i}");
        let value = format!("value of gone record {i}");
        let seq = gone
            .send(
                &topic,
                &Message::new()
                    .key(key.as_bytes())
                    .value(value.as_bytes())
                    .header("h", Some(b"x")),
            )
            .expect("send");
        sent.push((seq, key, value));
    }
    // The client goes away with its records undelivered.
    let _ = gone.close(Duration::from_millis(10));
    wait_until(
        "the daemon to see the client go",
        Duration::from_secs(10),
        || daemon.log_text().contains("client disconnected"),
    );

    let live = client(&daemon, 1 << 20, WhenFull::Fail);
    let live_topic = live.topic(TOPIC).expect("topic");
    for i in 0..3 {
        live.send(
            &live_topic,
            &Message::new()
                .key(format!("live-{i}").as_bytes())
                .value(b"v"),
        )
        .expect("send");
    }

    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");

    let listed = list_json(&spool);
    let mut keys: Vec<String> = listed
        .iter()
        .map(|l| String::from_utf8(l.rec.key.clone().unwrap()).unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        (0..5).map(|i| format!("gone-{i}")).collect::<Vec<_>>(),
        "exactly the gone client's records are spooled"
    );
    for l in &listed {
        let (_, _, value) = sent
            .iter()
            .find(|(seq, _, _)| *seq == l.seq)
            .expect("seq sent");
        assert_eq!(l.rec.value.as_deref(), Some(value.as_bytes()));
        assert_eq!(l.rec.topic, TOPIC);
        assert_eq!(l.error_name, "_PURGE_QUEUE");
        // Nothing listens at the bootstrap address: no attempt can have
        // reached a broker, so a replay cannot duplicate them.
        assert_eq!(l.persistence, "not_persisted", "seq {}", l.seq);
    }
    // The live client's records are still its own, unreleased.
    assert!(live.stats().unacknowledged_bytes > 0);

    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(TOPIC, 2)]).expect("broker");
    let out = spool_cli(&[
        "replay",
        "--dir",
        spool.to_str().unwrap(),
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
        5,
        Duration::from_secs(30),
    )
    .expect("consume");
    let mut got: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8(c.key.clone().unwrap()).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, keys);
    assert!(list_json(&spool).is_empty());
}
