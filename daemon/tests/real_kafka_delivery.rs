//! End to end against Apache Kafka 4.4.0: several client processes with
//! several threads each write through `shmkafkad` to one broker, and to
//! three brokers with `replication.factor=3, min.insync.replicas=2`; the
//! topic is read back with this project's verifier (every byte, per-thread
//! order, exactly once) and with Kafka's own console consumer.

use shmkafkad_test_support::common;
use shmkafkad_test_support::kafka_real;

use shmkafka_testkit::KafkaOptions;
use std::time::{Duration, Instant};

use common::{daemon_options, Finish, Guarantee, RecordId, SenderSpec, Workload, LARGEST_VALUE};

/// Dispatches re-executed client processes (see `common::run_child_role`).
#[test]
fn child_role_entry_point() {
    common::run_child_role();
}

/// Small enough that the largest records wrap the ring and make producers
/// wait for acknowledgements (back-pressure).
const RING: usize = 4 << 20;

/// 3 processes x 3 threads, values from 0 B to 512 KiB (one in a hundred
/// large), keys, null keys, null values, headers (null, empty, binary,
/// repeated), explicit partitions and the partitioner's: about 20 MB.
const WORKLOAD: Workload = Workload {
    procs: 3,
    threads: 3,
    per_thread: 300,
    partitions: 6,
    max_value: LARGEST_VALUE,
};

fn deliver_and_verify(nodes: usize) {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let started = Instant::now();
    let dir = common::test_dir();
    let cluster = kafka_real::start_cluster(dir.path(), &KafkaOptions::nodes(nodes));
    let topic = format!("e2e-kafka-{nodes}");
    kafka_real::create_topic(&cluster, &topic, WORKLOAD.partitions as u32, &[]);
    let cluster_ready = started.elapsed();

    let socket = dir.path().join("shmkafkad.sock");
    let _daemon = daemon_options(&socket, cluster.bootstrap_servers()).start();
    let children: Vec<_> = (0..WORKLOAD.procs)
        .map(|proc_id| {
            SenderSpec {
                socket: socket.clone(),
                topic: topic.clone(),
                proc_id,
                workload: WORKLOAD,
                ring_capacity: RING,
                finish: Finish::Flush,
                run_as: None,
            }
            .spawn()
        })
        .collect();
    for child in children {
        let report = child.wait_success(Duration::from_secs(180));
        assert_eq!(
            report.get("sent"),
            u64::from(WORKLOAD.threads) * u64::from(WORKLOAD.per_thread)
        );
    }
    let flushed = started.elapsed();

    let ids: Vec<RecordId> = WORKLOAD.ids().collect();
    let verdict = kafka_real::verify_with_both_consumers(
        &cluster,
        &topic,
        &WORKLOAD,
        &ids,
        Guarantee::ExactlyOnce,
    );
    assert_eq!(verdict.consumed, WORKLOAD.total());
    eprintln!(
        "Apache Kafka x{nodes}: {} records from {} processes x {} threads; cluster ready after \
         {cluster_ready:?}, flushed after {flushed:?}, verified after {:?}",
        verdict.consumed,
        WORKLOAD.procs,
        WORKLOAD.threads,
        started.elapsed()
    );
}

#[test]
fn one_broker_gets_everything_exactly_once_in_order() {
    deliver_and_verify(1);
}

#[test]
fn three_replicated_brokers_get_everything_exactly_once_in_order() {
    deliver_and_verify(3);
}
