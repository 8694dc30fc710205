//! Client processes SIGKILLed in the middle of a stream,
//! one of them while a thread holds an open reservation (claimed, half
//! written, never committed) and other threads keep committing behind it.
//!
//! Every record a child reported committed before the kill reaches the
//! broker exactly once. The daemon leaves the hole alone while the process
//! lives (records behind it wait), pads over it only once the process is
//! dead, drains the rest, and then releases the segment: its log says so
//! and `shmkafkad status --json` no longer lists the client.

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, Guarantee, RecordId, Workload};
use fault_support::{log_lines, report_row, status_clients, StreamSpec, Tally};
use shmkafka_testkit::MockBrokerProcess;

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

const TOPIC: &str = "fault-client-kill";
const WORKLOAD: Workload = Workload {
    procs: 3,
    threads: 3,
    // Open-ended for the killed children; the control child sends these.
    per_thread: 4000,
    partitions: 8,
    max_value: 256,
};
const REPORT_EVERY: u32 = 25;
const PADDED: &str = "padded over a record the dead client never committed";
const RELEASED: &str = "client gone and its ring drained; segment released";

#[test]
fn killed_clients_committed_records_are_delivered_and_the_hole_padded_only_after_death() {
    let started = Instant::now();
    let dir = common::test_dir();
    let broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(TOPIC, WORKLOAD.partitions as u32)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let daemon = daemon_options(&socket, broker.bootstrap_servers()).start();

    let stream = |proc_id: u32| {
        let mut s = StreamSpec::new(&socket, TOPIC, proc_id, WORKLOAD);
        s.ring_capacity = 256 << 10;
        s.report_every = REPORT_EVERY;
        s.pace = Duration::from_millis(2);
        s
    };
    // Proc 0: holds a reservation after 300 commits of its thread 0.
    let mut holder = {
        let mut s = stream(0);
        s.workload.per_thread = u32::MAX;
        s.hold_reservation_after = Some(300);
        s.finish = fault_support::Finish::Hang;
        s.spawn()
    };
    // Proc 1: a plain stream, killed wherever it is.
    let mut plain = {
        let mut s = stream(1);
        s.workload.per_thread = u32::MAX;
        s.finish = fault_support::Finish::Hang;
        s.spawn()
    };
    // Proc 2: well behaved, flushes and exits (control).
    let control = stream(2).spawn();

    holder.wait_for("hold a reservation", Duration::from_secs(60), |c| {
        c.event("reserved").is_some()
    });
    let hole_seq: u64 = holder.event("reserved").unwrap()["seq"].parse().unwrap();
    let holder_pid = holder.pid();
    // The other threads keep committing behind the hole until the ring is
    // full; none of that may be delivered while the process lives.
    let at_reserve = holder.committed_total();
    holder.wait_for(
        "commit behind the open reservation",
        Duration::from_secs(30),
        |c| c.committed_total() >= at_reserve + 200,
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = daemon.log_text();
    assert!(
        log_lines(&log, PADDED).is_empty(),
        "hole padded while its client lives:\n{}",
        shmkafka_testkit::tail(&log, 20)
    );
    let holder_row = find_client(&socket, holder_pid).expect("holder registered");
    assert!(
        holder_row["ring_fill_bytes"].as_u64().unwrap() > 0,
        "records wait behind the hole: {holder_row}"
    );
    let delivered_before_kill = holder_row["delivered"].as_u64().unwrap();

    plain.wait_for("stream a while", Duration::from_secs(60), |c| {
        c.committed_total() >= 3000
    });
    let plain_pid = plain.pid();
    let plain_state = plain.kill();
    let holder_state = holder.kill();
    let killed_at = Instant::now();
    eprintln!(
        "killed: holder (pid {holder_pid}, hole at seq {hole_seq}) after {} commits, \
         {delivered_before_kill} of them delivered before the kill; plain (pid {plain_pid}) after {}",
        holder_state.committed_total(),
        plain_state.committed_total()
    );

    // The daemon notices the death, pads the hole, drains, releases.
    shmkafka_testkit::wait_until(
        "the holder's segment to be released",
        Duration::from_secs(30),
        || find_client(&socket, holder_pid).is_none() && find_client(&socket, plain_pid).is_none(),
    );
    let log = daemon.log_text();
    assert!(
        !log_lines(&log, PADDED).is_empty(),
        "no padding logged:\n{}",
        shmkafka_testkit::tail(&log, 20)
    );
    let released = log_lines(&log, RELEASED);
    assert!(
        released.len() >= 2,
        "segment release not logged for both killed clients:\n{}",
        shmkafka_testkit::tail(&log, 20)
    );
    eprintln!(
        "holder's hole padded and both segments released within {:?} of the kill",
        killed_at.elapsed()
    );
    let control_state = control.wait_success(Duration::from_secs(60));

    let mut must: Vec<RecordId> = holder_state.committed_ids(0);
    must.extend(plain_state.committed_ids(1));
    must.extend(control_state.committed_ids(2));
    // A killed thread may have committed up to one report interval more
    // than it reported; those may arrive, nothing else.
    let reported: BTreeMap<(u32, u32), u32> = [(0, &holder_state), (1, &plain_state)]
        .into_iter()
        .flat_map(|(proc, s)| s.committed.iter().map(move |(&t, &n)| ((proc, t), n)))
        .collect();
    let may = |id: RecordId| {
        reported
            .get(&(id.proc, id.thread))
            .is_some_and(|&n| id.counter < n + REPORT_EVERY)
    };
    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        TOPIC,
        &WORKLOAD,
        &must,
        may,
        Guarantee::ExactlyOnce,
    );
    assert_eq!(verdict.duplicates, 0);
    let extra = verdict.distinct - must.len();
    eprintln!(
        "{} records reported committed, {} consumed ({extra} committed after the last report)",
        must.len(),
        verdict.consumed
    );
    report_row(
        "2 client SIGKILL mid-stream + open reservation",
        Tally {
            committed: must.len() as u64,
            acked: control_state.committed_total(),
            consumed: verdict.consumed as u64,
            lost: 0,
            duplicated: verdict.duplicates as u64,
        },
        started.elapsed(),
    );
}

fn find_client(socket: &std::path::Path, pid: u32) -> Option<serde_json::Value> {
    status_clients(socket)
        .expect("daemon answers status")
        .into_iter()
        .find(|c| c["pid"].as_u64() == Some(u64::from(pid)))
}
