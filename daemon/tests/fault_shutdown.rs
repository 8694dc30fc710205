//! SIGTERM while the rings still
//! hold records and the broker is slow (5 s round trip, against a 2 s
//! shutdown budget). The daemon exits 0 within its budget. What it could
//! not deliver stays in the ring of the live client (sent by the next
//! daemon) or, for the client that is gone, is written to the dead-letter
//! spool, from which `shmkafkad spool replay` delivers it.
//!
//! Duplicates are possible and counted: a produce request in flight at the
//! shutdown was stored by the broker, whose answer was merely late; the
//! daemon cannot know, so it keeps (or spools) those records and they are
//! sent again (at-least-once for an unknown outcome).

use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, shmkafkad_bin, Guarantee, RecordId, Workload};
use fault_support::{log_lines, report_row, send_record, Finish, StreamSpec, Tally};
use shmkafka_client::{Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::MockBrokerProcess;

#[test]
fn child_role_entry_point() {
    if let Some(role) = fault_support::run_child_role() {
        panic!("unknown role {role:?}");
    }
}

const TOPIC: &str = "fault-shutdown";
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(2000);
const SLOW_RTT: Duration = Duration::from_secs(5);
const WORKLOAD: Workload = Workload {
    procs: 2,
    threads: 1,
    per_thread: 3000,
    partitions: 4,
    max_value: 200,
};

fn spool_cli(args: &[&str]) -> std::process::Output {
    Command::new(shmkafkad_bin())
        .arg("spool")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("shmkafkad spool")
}

fn spool_list(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let out = spool_cli(&["list", "--json", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "spool list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn sigterm_with_a_slow_broker_keeps_live_rings_and_spools_gone_clients() {
    let started = Instant::now();
    let dir = common::test_dir();
    let spool = dir.path().join("spool");
    let mut broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(TOPIC, WORKLOAD.partitions as u32)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let spec = daemon_options(&socket, broker.bootstrap_servers()).config(&format!(
        "[daemon]\nshutdown_timeout_ms = {}\n",
        SHUTDOWN_BUDGET.as_millis()
    ));
    let mut first = spec.start();

    // Live client (proc 0), in this process.
    let live = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 4 << 20,
        max_record_len: 64 << 10,
        when_full: WhenFull::Block(Duration::from_secs(60)),
        client_name: "shutdown-live".into(),
        delivery_reports: false,
    })
    .expect("connect");
    let topic = live.topic(TOPIC).expect("topic");
    let live_id = |counter| RecordId {
        proc: 0,
        thread: 0,
        counter,
    };
    // Warm up at full speed: connection and metadata are in place.
    for counter in 0..100 {
        send_record(&live, &topic, &WORKLOAD.record(live_id(counter))).expect("send");
    }
    live.flush(Duration::from_secs(30)).expect("warm-up flush");

    broker.set_rtt(1, SLOW_RTT).expect("slow broker");
    for counter in 100..WORKLOAD.per_thread {
        send_record(&live, &topic, &WORKLOAD.record(live_id(counter))).expect("send");
    }
    // The gone client (proc 1): commits its records and exits unflushed.
    let gone = {
        let mut s = StreamSpec::new(&socket, TOPIC, 1, WORKLOAD);
        s.finish = Finish::Exit;
        s.spawn()
    }
    .wait_success(Duration::from_secs(60));
    shmkafka_testkit::wait_until(
        "the daemon to see the gone client disconnect",
        Duration::from_secs(10),
        || !log_lines(&first.log_text(), "client disconnected").is_empty(),
    );

    let term_at = Instant::now();
    let status = first.terminate(Duration::from_secs(30));
    let took = term_at.elapsed();
    assert!(status.success(), "shmkafkad exited with {status}");
    assert!(
        took < SHUTDOWN_BUDGET + Duration::from_millis(1500),
        "shutdown took {took:?} with a budget of {SHUTDOWN_BUDGET:?}"
    );
    let log = first.log_text();
    let left_in_ring = live.stats().unacknowledged_bytes;
    assert!(
        left_in_ring > 0,
        "the slow broker acknowledged everything; nothing tested"
    );
    let spooled = spool_list(&spool);
    let spooled_seqs: Vec<u64> = spooled
        .iter()
        .map(|v| v["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        !spooled.is_empty(),
        "nothing of the gone client spooled:\n{}",
        shmkafka_testkit::tail(&log, 20)
    );
    assert!(spooled.iter().all(|v| v["topic"] == TOPIC));
    eprintln!(
        "SIGTERM: exit 0 after {took:?}; live client keeps {left_in_ring} bytes in its ring, \
         {} records of the gone client spooled ({:?})",
        spooled.len(),
        spooled
            .iter()
            .map(|v| v["error_name"].as_str().unwrap_or("?").to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    );

    // Fast broker again; the next daemon delivers the live client's ring.
    broker.set_rtt(1, Duration::ZERO).expect("fast broker");
    let second = spec.start();
    live.flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("flush through the second daemon: {e}"));
    assert_eq!(live.stats().reconnects, 1);

    // The spool delivers the gone client's records.
    let out = spool_cli(&[
        "replay",
        "--dir",
        spool.to_str().unwrap(),
        "--bootstrap-servers",
        broker.bootstrap_servers(),
    ]);
    assert!(
        out.status.success(),
        "spool replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(spool_list(&spool).is_empty(), "replay left records behind");

    let mut ids: Vec<RecordId> = (0..WORKLOAD.per_thread).map(live_id).collect();
    ids.extend(gone.committed_ids(1));
    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        TOPIC,
        &WORKLOAD,
        &ids,
        |_| false,
        Guarantee::AtLeastOnce,
    );
    // Only records whose outcome was unknown at the shutdown may repeat:
    // at most what was unacknowledged then.
    let bound = left_in_ring as usize / 64 + spooled_seqs.len();
    assert!(
        verdict.duplicates <= bound,
        "{} duplicates, more than the {bound} records unacknowledged at the shutdown",
        verdict.duplicates
    );
    eprintln!(
        "{} records committed, {} consumed, {} duplicates (requests in flight at the SIGTERM)",
        ids.len(),
        verdict.consumed,
        verdict.duplicates
    );
    report_row(
        "5 SIGTERM, slow broker: ring kept / spooled",
        Tally {
            committed: ids.len() as u64,
            acked: u64::from(WORKLOAD.per_thread),
            consumed: verdict.consumed as u64,
            lost: 0,
            duplicated: verdict.duplicates as u64,
        },
        started.elapsed(),
    );
    drop(second);
}
