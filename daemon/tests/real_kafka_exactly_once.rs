//! Exactly-once mode against a 3-broker Apache Kafka 4.4.0 cluster (KRaft,
//! topics with `replication.factor=3`, `min.insync.replicas=2`): the daemon
//! SIGKILLed ten times at random moments, the partition leader killed
//! mid-transaction, the transaction coordinator killed, the whole cluster
//! down for 30 s, and a client killed between commits, while three client
//! processes stream.
//!
//! Each test reads the topic back with `read_committed` (this project's
//! consumer and Kafka's console consumer, which must agree) and requires
//! every committed record exactly once, byte-identical, in order per
//! producing thread within its partition. It prints an `EOS-TABLE` row
//! with what a `read_uncommitted` consumer sees of the same topic: the
//! aborted attempts the mode kept from `read_committed` consumers.

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;
use shmkafkad_test_support::kafka_real;

use std::collections::HashMap;
use std::time::Duration;

use common::{Guarantee, RecordId, Workload, ID_HEADER};
use kafka_real::{READ_COMMITTED, READ_UNCOMMITTED};
use shmkafka_testkit::{consume_all_with, ConsumeOptions, KafkaCluster};
use shmkafkad_test_support::stream_run::{Run, RunSpec};

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

/// 3 processes x 4 threads x 10,000 records of up to 200 bytes: 120,000
/// records over 6 partitions.
const WORKLOAD: Workload = Workload {
    procs: 3,
    threads: 4,
    per_thread: 10_000,
    partitions: 6,
    max_value: 200,
};
/// About 5,000 of these records: a client blocks (and is not failed) while
/// the daemon is down or the cluster cannot take them.
const RING: usize = 1 << 20;
/// Each thread sleeps 10 ms after every 50 records: a stream of about 20 s.
const PACE: Duration = Duration::from_millis(10);
const REPORT_EVERY: u32 = 50;
const DAEMON_ID: &str = "eos-test-host";

/// The daemon's configuration in this mode.
fn eos_config() -> String {
    format!(
        "[exactly_once]\nenabled = true\ndaemon_id = \"{DAEMON_ID}\"\n\
         progress_replication_factor = 3\n"
    )
}

/// The run of a fault named `name`, with the daemon in the exactly-once
/// mode.
fn spec(name: &'static str) -> RunSpec {
    RunSpec {
        name,
        topic_prefix: "eos",
        workload: WORKLOAD,
        ring: RING,
        pace: PACE,
        report_every: REPORT_EVERY,
        daemon_config: Some(eos_config()),
    }
}

/// The broker coordinating drain thread 0's transactions.
fn coordinator(run: &Run) -> u32 {
    let out = run
        .cluster
        .run_tool(
            "org.apache.kafka.tools.TransactionsCommand",
            &[
                "--bootstrap-server",
                run.cluster.bootstrap_servers(),
                "describe",
                "--transactional-id",
                &format!("shmkafkad-{DAEMON_ID}-0"),
            ],
        )
        .expect("describing the transaction");
    // A header line, then one row; CoordinatorId is the first column.
    let row = out.lines().nth(1).unwrap_or_default();
    row.split_whitespace()
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no coordinator in {out:?}"))
}

/// Waits for the clients to flush, then checks the topic with
/// `read_committed` (exactly once) and reports what `read_uncommitted`
/// sees; returns its duplicates.
fn finish(mut run: Run, reported_only: &[(u32, fault_support::ChildState)]) -> usize {
    let mut ids = Vec::new();
    for (proc_id, state) in reported_only {
        ids.extend(state.committed_ids(*proc_id));
    }
    let killed: Vec<u32> = reported_only.iter().map(|(p, _)| *p).collect();
    for child in run.children.drain(..) {
        let proc_id = child.proc_id;
        let state = child.wait_success(Duration::from_secs(300));
        ids.extend(state.committed_ids(proc_id));
    }
    // A killed client may have committed up to one report interval
    // more than it said: those records may arrive, once each.
    let may_extra = |id: RecordId| {
        killed.contains(&id.proc)
            && reported_only.iter().any(|(p, s)| {
                *p == id.proc
                    && s.committed
                        .get(&id.thread)
                        .is_some_and(|&n| id.counter >= n && id.counter < n + REPORT_EVERY)
            })
    };
    let committed_view = read_ids(&run.cluster, &run.topic, READ_COMMITTED, ids.len());
    let extra: Vec<RecordId> = {
        let mut seen: Vec<RecordId> = committed_view
            .keys()
            .copied()
            .filter(|&id| may_extra(id))
            .collect();
        seen.sort_unstable();
        seen
    };
    ids.extend(&extra);
    let verdict = kafka_real::verify_with_both_consumers_at(
        &run.cluster,
        &run.topic,
        &WORKLOAD,
        &ids,
        Guarantee::ExactlyOnce,
        READ_COMMITTED,
    );
    assert_eq!(
        verdict.duplicates, 0,
        "{}: duplicates for read_committed",
        run.spec.name
    );
    let uncommitted = read_ids(&run.cluster, &run.topic, READ_UNCOMMITTED, ids.len());
    let uncommitted_total: usize = uncommitted.values().sum();
    let uncommitted_duplicates = uncommitted_total - uncommitted.len();
    assert!(
        ids.iter().all(|id| uncommitted.contains_key(id)),
        "{}: read_uncommitted misses committed records",
        run.spec.name
    );
    eprintln!(
        "EOS-TABLE | {} | committed {} | read_committed {} (duplicates {}) | read_uncommitted {} (duplicates {}) | {:?}",
        run.spec.name,
        ids.len(),
        verdict.consumed,
        verdict.duplicates,
        uncommitted_total,
        uncommitted_duplicates,
        run.started.elapsed()
    );
    assert_eq!(
        run.spooled_files(),
        0,
        "{}: records were spooled as failures",
        run.spec.name
    );
    let log = run.daemon.log_text();
    drop(run.daemon);
    assert!(
        log.contains("exactly-once: transactions initialised"),
        "the daemon did not run in the exactly-once mode:\n{}",
        shmkafka_testkit::tail(&log, 30)
    );
    uncommitted_duplicates
}

/// How many times each record id appears in `topic` at `isolation_level`
/// (read until `at_least` records came and then nothing new for 2 s).
fn read_ids(
    cluster: &KafkaCluster,
    topic: &str,
    isolation_level: &str,
    at_least: usize,
) -> HashMap<RecordId, usize> {
    let mut options =
        ConsumeOptions::new(at_least, Duration::from_secs(120)).grace(Duration::from_secs(2));
    options
        .properties
        .push(("isolation.level".into(), isolation_level.into()));
    let records =
        consume_all_with(cluster.bootstrap_servers(), topic, &options).expect("consuming");
    let mut counts = HashMap::new();
    for record in records {
        let id = record
            .headers
            .iter()
            .find(|(name, _)| name == ID_HEADER)
            .and_then(|(_, value)| value.as_deref())
            .and_then(RecordId::decode)
            .expect("every record carries its id");
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// A small deterministic generator for kill timings; the seed is printed so
/// a failing sequence can be replayed.
struct Jitter(u64);

impl Jitter {
    fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("kill timing seed {seed}");
        Self(seed)
    }

    /// A duration in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % max.as_micros().max(1) as u64)
    }
}

#[test]
fn daemon_sigkilled_ten_times_read_committed_sees_each_record_once() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("daemon SIGKILL x10 (exactly-once)"), &[]);
    let mut jitter = Jitter::from_clock();
    for round in 0..10 {
        run.wait_committed(0.05 + 0.085 * round as f64);
        // Anywhere within a commit interval or two: before, during or after
        // a commit.
        std::thread::sleep(jitter.below(Duration::from_millis(400)));
        run.daemon.kill();
        std::thread::sleep(jitter.below(Duration::from_millis(500)));
        run.daemon = run.daemon_spec.start();
        eprintln!(
            "daemon kill {} done ({:?})",
            round + 1,
            run.started.elapsed()
        );
    }
    let uncommitted_duplicates = finish(run, &[]);
    // The mode did the work: the crashed daemons' open transactions held
    // records that the next daemon produced again.
    assert!(
        uncommitted_duplicates > 0,
        "ten kills mid-stream left no aborted record for read_uncommitted to see"
    );
}

#[test]
fn partition_leader_killed_mid_transaction() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("leader kill -9 (exactly-once)"), &[]);
    run.wait_committed(0.3);
    let leader = run.leader();
    run.cluster.kill(leader);
    eprintln!("killed node {leader}, the leader of partition 0");
    run.wait_committed(0.55);
    run.cluster.restart(leader).expect("restarting the leader");
    finish(run, &[]);
}

#[test]
fn transaction_coordinator_killed() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("coordinator kill -9 (exactly-once)"), &[]);
    run.wait_committed(0.3);
    let coordinator = coordinator(&run);
    run.cluster.kill(coordinator);
    eprintln!("killed node {coordinator}, the transaction coordinator of drain thread 0");
    run.wait_committed(0.55);
    run.cluster
        .restart(coordinator)
        .expect("restarting the coordinator");
    finish(run, &[]);
}

#[test]
fn whole_cluster_down_for_30_seconds() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("whole cluster down 30 s (exactly-once)"), &[]);
    run.wait_committed(0.3);
    run.cluster.kill_all();
    std::thread::sleep(Duration::from_secs(30));
    run.cluster.start_all().expect("restarting the cluster");
    finish(run, &[]);
}

#[test]
fn client_sigkilled_between_commits_its_committed_records_arrive_once() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let mut run = Run::start(spec("client SIGKILL (exactly-once)"), &[]);
    run.wait_committed(0.3);
    let victim = run.children.remove(0);
    let proc_id = victim.proc_id;
    let state = victim.kill();
    eprintln!(
        "killed client {proc_id} after {} reported commits",
        state.committed_total()
    );
    finish(run, &[(proc_id, state)]);
}
