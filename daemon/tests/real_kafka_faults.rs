//! Faults against a 3-broker Apache Kafka 4.4.0 cluster (KRaft, combined
//! broker+controller nodes, topics with `replication.factor=3` and
//! `min.insync.replicas=2`) while three client processes stream through
//! `shmkafkad`: a partition leader's broker `kill -9`ed and restarted, a
//! rolling restart, a broker frozen (SIGSTOP) for 30 s, the whole cluster
//! down for 30 s, fewer in-sync replicas than `min.insync.replicas`, and
//! the daemon SIGKILLed three times.
//!
//! Each test prints a `FAULT-TABLE` row: committed, acknowledged, consumed,
//! lost (must be 0), duplicated. The daemon runs with its defaults
//! (`enable.idempotence=true`, `acks=all`, no message timeout): without a
//! daemon crash, duplicates must be 0.

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;
use shmkafkad_test_support::kafka_real;

use std::time::Duration;

use common::{Guarantee, Workload};
use fault_support::{report_row, Tally};
use shmkafkad_test_support::stream_run::{Run, RunSpec};

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

/// 3 processes x 4 threads x 25,000 records of up to 200 bytes: 300,000
/// records, about 40 MB with framing, over 6 partitions.
const WORKLOAD: Workload = Workload {
    procs: 3,
    threads: 4,
    per_thread: 25_000,
    partitions: 6,
    max_value: 200,
};
/// The ring holds about 8,000 of these records: a client blocks (and is
/// not failed) while the cluster cannot take them.
const RING: usize = 1 << 20;
/// A stream of about 20 s when nothing goes wrong, so every fault lands
/// in its middle: each thread sleeps 10 ms after every 100 records.
const PACE: Duration = Duration::from_millis(10);
const REPORT_EVERY: u32 = 100;
/// How long a broker stays frozen, and the cluster down.
const OUTAGE: Duration = Duration::from_secs(30);

/// The run of a fault named `name`, with the daemon's defaults.
fn spec(name: &'static str) -> RunSpec {
    RunSpec {
        name,
        topic_prefix: "fault",
        workload: WORKLOAD,
        ring: RING,
        pace: PACE,
        report_every: REPORT_EVERY,
        daemon_config: None,
    }
}

/// Waits for every client to flush, then reads the topic back with both
/// consumers and prints the fault-table row.
fn finish(mut run: Run, guarantee: Guarantee, duplicates_bound: usize) -> Tally {
    let mut ids = Vec::new();
    for child in run.children.drain(..) {
        let proc_id = child.proc_id;
        let state = child.wait_success(Duration::from_secs(300));
        ids.extend(state.committed_ids(proc_id));
    }
    assert_eq!(ids.len(), WORKLOAD.total(), "every record committed");
    let verdict = kafka_real::verify_with_both_consumers(
        &run.cluster,
        &run.topic,
        &WORKLOAD,
        &ids,
        guarantee,
    );
    assert!(
        verdict.duplicates <= duplicates_bound,
        "{}: {} duplicates, bound {duplicates_bound}",
        run.spec.name,
        verdict.duplicates
    );
    assert_eq!(
        run.spooled_files(),
        0,
        "{}: records were spooled as failures",
        run.spec.name
    );
    let total = ids.len() as u64;
    let tally = Tally {
        committed: total,
        // Every client's flush returned without failures: the daemon
        // reported every record acknowledged.
        acked: total,
        consumed: verdict.consumed as u64,
        lost: 0,
        duplicated: verdict.duplicates as u64,
    };
    report_row(run.spec.name, tally, run.started.elapsed());
    drop(run.daemon);
    tally
}

#[test]
fn partition_leader_killed_and_restarted() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("leader kill -9 + restart (3 brokers)"), &[]);
    run.wait_committed(0.25);
    let leader = run.leader();
    run.cluster.kill(leader);
    eprintln!("killed node {leader}, the leader of partition 0");
    run.wait_committed(0.5);
    run.cluster.restart(leader).expect("restarting the leader");
    finish(run, Guarantee::ExactlyOnce, 0);
}

#[test]
fn rolling_restart_of_all_brokers() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("rolling restart (3 brokers)"), &[]);
    for (step, node) in run.cluster.node_ids().into_iter().enumerate() {
        run.wait_committed(0.15 + 0.2 * step as f64);
        run.cluster.stop(node, Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(2));
        run.cluster.restart(node).expect("restarting a node");
        eprintln!("node {node} restarted ({:?})", run.started.elapsed());
    }
    finish(run, Guarantee::ExactlyOnce, 0);
}

#[test]
fn broker_frozen_for_30_seconds() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("leader SIGSTOP 30 s (3 brokers)"), &[]);
    run.wait_committed(0.25);
    let leader = run.leader();
    run.cluster.pause(leader);
    std::thread::sleep(OUTAGE);
    run.cluster.resume(leader);
    finish(run, Guarantee::ExactlyOnce, 0);
}

#[test]
fn whole_cluster_down_for_30_seconds() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("whole cluster down 30 s (3 brokers)"), &[]);
    run.wait_committed(0.25);
    run.cluster.kill_all();
    let at_kill = run.committed();
    std::thread::sleep(OUTAGE);
    let while_down = run.committed() - at_kill;
    run.cluster.start_all().expect("restarting the cluster");
    // Often 0: the clients outpace this machine's brokers, so their rings
    // are already full and they block (not fail) through the outage.
    eprintln!("{while_down} records committed while the cluster was down");
    finish(run, Guarantee::ExactlyOnce, 0);
}

/// `min.insync.replicas=3` on the topic and one broker of three killed:
/// two live replicas cannot satisfy `acks=all` with a minimum of three, so
/// the broker acknowledges nothing (NOT_ENOUGH_REPLICAS and timeouts are
/// both retriable). (Two brokers of three down would also take the KRaft
/// quorum down with them in this combined-mode cluster, which is the
/// whole-cluster outage above.) Records must wait in the rings,
/// acknowledged by nobody, failed and spooled by nobody, and arrive once
/// the broker is back.
#[test]
fn fewer_in_sync_replicas_than_required_holds_records() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(
        spec("ISR below min.insync.replicas (3 brokers)"),
        &[("min.insync.replicas", "3")],
    );
    run.wait_committed(0.2);
    let node = run.leader() % 3 + 1; // a follower
    run.cluster.kill(node);
    // Let the controller fence the broker (session timeout, 9 s), then see
    // that nothing more is acknowledged while records are written.
    std::thread::sleep(Duration::from_secs(12));
    // The daemon's own account: acknowledged and failed records.
    let outcome = |run: &Run| -> (u64, u64) {
        let clients = fault_support::status_clients(run.daemon_spec.socket()).expect("status");
        let sum = |field: &str| {
            clients
                .iter()
                .filter_map(|c| c[field].as_u64())
                .sum::<u64>()
        };
        (sum("delivered"), sum("failed"))
    };
    let before = (outcome(&run), run.committed());
    std::thread::sleep(Duration::from_secs(10));
    let after = (outcome(&run), run.committed());
    eprintln!(
        "with 2 live replicas < min ISR 3: acknowledged {} -> {}, failed {} -> {}, committed {} -> {}",
        before.0 .0, after.0 .0, before.0 .1, after.0 .1, before.1, after.1
    );
    assert_eq!(
        before.0 .0, after.0 .0,
        "records were acknowledged below min.insync.replicas"
    );
    assert_eq!(after.0 .1, 0, "records failed instead of waiting");
    assert!(
        after.1 > after.0 .0,
        "no record was waiting in a ring during the outage"
    );
    run.cluster.restart(node).expect("restarting the broker");
    finish(run, Guarantee::ExactlyOnce, 0);
}

/// Smallest record of the workload as it sits in the ring: bounds how many
/// records one ring's unreleased space can hold (the in-flight window).
const MIN_RECORD_SPAN: usize = 64;

#[test]
fn daemon_sigkilled_three_times() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("daemon SIGKILL x3 (3 brokers)"), &[]);
    for (round, fraction) in [0.2, 0.45, 0.7].into_iter().enumerate() {
        run.wait_committed(fraction);
        run.daemon.kill();
        std::thread::sleep(Duration::from_millis(300));
        run.daemon = run.daemon_spec.start();
        eprintln!(
            "daemon kill {} done ({:?})",
            round + 1,
            run.started.elapsed()
        );
    }
    // A crashed daemon's in-flight records are sent again by the next one:
    // at most what the rings held unreleased at each kill.
    let window = 3 * WORKLOAD.procs as usize * (RING / MIN_RECORD_SPAN);
    let tally = finish(run, Guarantee::AtLeastOnce, window);
    eprintln!(
        "daemon kills: {} duplicates (bound {window})",
        tally.duplicated
    );
}
