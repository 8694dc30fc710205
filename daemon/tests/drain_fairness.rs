//! When librdkafka's queue, not the rings, holds records back, every
//! client's records keep moving: a drain pass that the full queue cuts
//! short hands the next pass to the following ring, so no client waits for
//! another client's whole backlog to be delivered first.

use shmkafkad_test_support::spool_support;

use std::collections::BTreeMap;
use std::time::Duration;

use shmkafka_client::{Message, WhenFull};
use shmkafka_testkit::{consume_all, wait_until, MockBrokerProcess};
use spool_support::{client, mock_broker_bin, start_daemon};

const TOPIC: &str = "drain-fairness";
const CLIENTS: usize = 4;
const RECORDS: usize = 4000;
/// librdkafka takes at most this many records at once, so every drain pass
/// fills its queue long before the rings are empty.
const LIBRDKAFKA_QUEUE: &str = "64";

fn value(client: usize, i: usize) -> Vec<u8> {
    format!("client {client} record {i:05} {}", "x".repeat(64)).into_bytes()
}

#[test]
fn a_full_librdkafka_queue_does_not_starve_later_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(TOPIC, 1)]).expect("broker");
    let daemon = start_daemon(
        dir.path(),
        broker.bootstrap_servers(),
        &dir.path().join("spool"),
        &[("queue.buffering.max.messages", LIBRDKAFKA_QUEUE)],
        "",
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| client(&daemon, 1 << 20, WhenFull::Fail))
        .collect();
    // Each client commits its whole backlog at once, the first one first.
    for (c, producer) in clients.iter().enumerate() {
        let topic = producer.topic(TOPIC).expect("topic");
        for i in 0..RECORDS {
            producer
                .send(&topic, &Message::new().value(&value(c, i)))
                .expect("the ring holds the backlog");
        }
    }
    // Share of each client's backlog acknowledged so far (equal records,
    // so bytes released over bytes committed).
    let shares = || -> Vec<f64> {
        clients
            .iter()
            .map(|p| p.released_position() as f64 / p.claimed_position() as f64)
            .collect()
    };
    // Before, each pass restarted at the first ring, which filled the queue
    // alone: it had 80 % of its backlog delivered while the others had
    // none.
    wait_until(
        "a fifth of all records acknowledged",
        Duration::from_secs(60),
        || shares().iter().sum::<f64>() >= 0.2 * CLIENTS as f64,
    );
    let at_a_fifth = shares();
    eprintln!("acknowledged share per client at a fifth of the total: {at_a_fifth:.2?}");
    for (c, share) in at_a_fifth.iter().enumerate() {
        assert!(
            *share >= 0.05,
            "client {c} had {share:.3} of its records acknowledged while the \
             clients together had a fifth: {at_a_fifth:.3?}"
        );
    }

    for producer in &clients {
        let report = producer
            .flush(Duration::from_secs(60))
            .expect("everything acknowledged");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    }
    let records = consume_all(
        broker.bootstrap_servers(),
        TOPIC,
        CLIENTS * RECORDS,
        Duration::from_secs(60),
    )
    .expect("consume");
    assert_eq!(records.len(), CLIENTS * RECORDS, "nothing lost or doubled");
    // One partition: each client's records arrive whole and in its order.
    let mut per_client: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
    for record in records {
        let value = record.value.expect("value");
        let c = (value[7] - b'0') as usize;
        per_client.entry(c).or_default().push(value);
    }
    for c in 0..CLIENTS {
        let expected: Vec<Vec<u8>> = (0..RECORDS).map(|i| value(c, i)).collect();
        assert!(
            per_client.get(&c) == Some(&expected),
            "client {c}'s records differ from what it sent"
        );
    }
}
