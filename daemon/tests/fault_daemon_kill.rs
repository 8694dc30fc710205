//! The daemon is SIGKILLed three times in the middle of a
//! stream of a million records from four client processes, and restarted
//! each time. The clients keep running across the restarts (their rings
//! hold what no daemon takes; `WhenFull::Block` with a long timeout, so no
//! error ever reaches the application), re-register their segments, and
//! flush at the end. At the broker: nothing lost; duplicates only from the
//! records in flight at each crash (unreleased ring space), counted.

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;

use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, Guarantee, Workload};
use fault_support::{report_row, StreamSpec, Tally};
use shmkafka_testkit::MockBrokerProcess;

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

const TOPIC: &str = "fault-daemon-kill";
/// 4 processes x 8 threads x 31,250 = 1,000,000 records of about 100 bytes.
/// Eight threads per process because `Workload` keys records by thread
/// (`key-{thread}-{n}`): more threads, more distinct keys, so the keyed
/// third of the records spreads over the 64 partitions instead of piling
/// into a few. librdkafka's mock cluster keeps at most 100,000 records and
/// 5 MiB per partition and silently drops older ones: 64 partitions keep
/// every partition far below both (checked through the low watermarks).
const WORKLOAD: Workload = Workload {
    procs: 4,
    threads: 8,
    per_thread: 31_250,
    partitions: 64,
    max_value: 16,
};
/// Ring per client: small enough that the clients cannot run far ahead of
/// the daemon, so every kill lands in the middle of the stream.
const RING: usize = 1 << 20;
/// Kill when the clients have committed these fractions of the stream.
const KILL_AT: [f64; 3] = [0.2, 0.45, 0.7];
/// Smallest record the workload writes, as it sits in the ring (48-byte
/// header, the `e2e-id` header, aligned): bounds how many records one
/// ring's unreleased space can hold.
const MIN_RECORD_SPAN: usize = 64;

#[test]
fn daemon_sigkilled_three_times_mid_stream_loses_nothing() {
    let started = Instant::now();
    let dir = common::test_dir();
    let broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(TOPIC, WORKLOAD.partitions as u32)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let spec = daemon_options(&socket, broker.bootstrap_servers());
    let mut daemon = spec.start();

    let mut children: Vec<_> = (0..WORKLOAD.procs)
        .map(|proc_id| {
            let mut s = StreamSpec::new(&socket, TOPIC, proc_id, WORKLOAD);
            s.ring_capacity = RING;
            s.report_every = 500;
            s.block = Duration::from_secs(300);
            s.spawn()
        })
        .collect();

    let total = WORKLOAD.total() as u64;
    let committed = |children: &[fault_support::FaultChild]| -> u64 {
        children.iter().map(|c| c.committed_total()).sum()
    };
    for (round, fraction) in KILL_AT.iter().enumerate() {
        let target = (total as f64 * fraction) as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed(&children) < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} of {target} records committed after 60 s",
                committed(&children)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let at_kill = committed(&children);
        daemon.kill();
        // The clients keep writing into their rings meanwhile, until full.
        std::thread::sleep(Duration::from_millis(300));
        let while_away = committed(&children) - at_kill;
        daemon = spec.start();
        eprintln!(
            "kill {}: {at_kill} records committed at the kill, {while_away} more while no daemon ran ({:?})",
            round + 1,
            started.elapsed()
        );
    }

    let mut reconnects = Vec::new();
    let mut ids = Vec::new();
    for child in children.drain(..) {
        let proc_id = child.proc_id;
        let state = child.wait_success(Duration::from_secs(120));
        let flushed = state.event("flushed").expect("flushed event");
        reconnects.push(flushed["reconnects"].parse::<u64>().unwrap());
        ids.extend(state.committed_ids(proc_id));
    }
    assert_eq!(ids.len() as u64, total, "every record committed");
    // Each client re-registered with each new daemon.
    assert!(
        reconnects.iter().all(|&r| r == KILL_AT.len() as u64),
        "reconnects per client: {reconnects:?}"
    );
    let produced_at = started.elapsed();

    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        TOPIC,
        &WORKLOAD,
        &ids,
        |_| false,
        Guarantee::AtLeastOnce,
    );
    // Duplicates come only from the in-flight window: what a crashed daemon
    // had sent but not yet released is sent again by the next one, and a
    // ring cannot hold more unreleased records than fit in it.
    let window = KILL_AT.len() * WORKLOAD.procs as usize * (RING / MIN_RECORD_SPAN);
    assert!(
        verdict.duplicates <= window,
        "{} duplicates, more than the in-flight window bound {window}",
        verdict.duplicates
    );
    eprintln!(
        "daemon kill: {} records, {} consumed, {} duplicates (bound {window}); produced in {produced_at:?}",
        ids.len(),
        verdict.consumed,
        verdict.duplicates
    );
    report_row(
        "1 daemon SIGKILL x3 mid-stream (4 procs)",
        Tally {
            committed: total,
            acked: total,
            consumed: verdict.consumed as u64,
            lost: 0,
            duplicated: verdict.duplicates as u64,
        },
        started.elapsed(),
    );
    drop(daemon);
}
