//! Plumbing of the `real_kafka_*` tests: an Apache Kafka cluster from
//! `testkit`, topics as production runs them, and the check that reads a
//! topic back twice, with this project's byte-level verifier and with
//! Kafka's own console consumer, and requires both to agree.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use shmkafka_testkit::{consume_all_with, ConsumeOptions, KafkaCluster, KafkaOptions};

use crate::common::{self, Guarantee, RecordId, Verdict, Workload, ID_HEADER};

/// Held by every test that runs a cluster: one cluster at a time per test
/// binary, so a 2-core machine runs its JVMs, the daemon and the clients
/// without starving any of them.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_CLUSTER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts Apache Kafka under `dir` (`KafkaOptions::nodes(n)` for plain
/// brokers).
pub fn start_cluster(dir: &Path, options: &KafkaOptions) -> KafkaCluster {
    KafkaCluster::start(&dir.join("kafka"), options).unwrap_or_else(|e| {
        panic!(
            "cannot start Apache Kafka ({} nodes): {e}\n\
             (needs java and mvn; .ci/run installs them)",
            options.nodes
        )
    })
}

/// Creates `topic` as production would on this cluster: replicated to
/// every node (up to 3), `min.insync.replicas=2` when there are 3, unless
/// `configs` sets it.
pub fn create_topic(
    cluster: &KafkaCluster,
    topic: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) {
    let replicas = (cluster.node_ids().len() as u32).min(3);
    let mut configs = configs.to_vec();
    if !configs.iter().any(|(key, _)| *key == "min.insync.replicas") {
        configs.push(("min.insync.replicas", if replicas >= 3 { "2" } else { "1" }));
    }
    cluster
        .create_topic(topic, partitions, replicas, &configs)
        .expect("creating the topic");
}

/// Reads `topic` back with this project's consumer (every byte, order per
/// thread: `common::verify`) and with Kafka's `ConsoleConsumer`, and checks
/// that Kafka's consumer saw the same records at the same positions: every
/// record acknowledged to a client is in what Kafka's consumer read
/// (acked ⊆ consumed).
pub fn verify_with_both_consumers(
    cluster: &KafkaCluster,
    topic: &str,
    workload: &Workload,
    ids: &[RecordId],
    guarantee: Guarantee,
) -> Verdict {
    verify_with_both_consumers_at(cluster, topic, workload, ids, guarantee, READ_UNCOMMITTED)
}

/// Kafka's `isolation.level` values.
pub const READ_UNCOMMITTED: &str = "read_uncommitted";
/// Only records of committed transactions (and non-transactional ones).
pub const READ_COMMITTED: &str = "read_committed";

/// [`verify_with_both_consumers`], both consumers reading at
/// `isolation_level`.
pub fn verify_with_both_consumers_at(
    cluster: &KafkaCluster,
    topic: &str,
    workload: &Workload,
    ids: &[RecordId],
    guarantee: Guarantee,
    isolation_level: &str,
) -> Verdict {
    let grace = match guarantee {
        Guarantee::ExactlyOnce => Duration::from_millis(500),
        Guarantee::AtLeastOnce => Duration::from_secs(2),
    };
    let mut options = ConsumeOptions::new(ids.len(), Duration::from_secs(120)).grace(grace);
    options
        .properties
        .push(("isolation.level".into(), isolation_level.into()));
    let ours = consume_all_with(cluster.bootstrap_servers(), topic, &options).expect("consuming");
    let verdict = common::verify(&ours, workload, ids, guarantee);

    let theirs = cluster
        // One more than ours found: a record only Kafka's consumer sees
        // shows up as a count mismatch below.
        .console_consume(
            topic,
            ours.len() + 1,
            Duration::from_secs(5),
            isolation_level,
        )
        .expect("Kafka's console consumer");
    let by_position: BTreeMap<(i32, i64), Option<&[u8]>> = ours
        .iter()
        .map(|r| {
            let id = r
                .headers
                .iter()
                .find(|(name, _)| name == ID_HEADER)
                .and_then(|(_, value)| value.as_deref());
            ((r.partition, r.offset), id)
        })
        .collect();
    assert_eq!(
        theirs.len(),
        ours.len(),
        "Kafka's console consumer read {} records of {topic}, ours {}",
        theirs.len(),
        ours.len()
    );
    for record in &theirs {
        let position = (record.partition, record.offset);
        let Some(id) = by_position.get(&position) else {
            panic!("Kafka's console consumer read {position:?}, which ours did not");
        };
        assert_eq!(
            record.header(ID_HEADER),
            *id,
            "the record at {position:?} differs between Kafka's consumer and ours"
        );
    }
    verdict
}
