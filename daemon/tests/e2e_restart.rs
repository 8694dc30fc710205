//! End to end: the daemon restarts under a live client. The client keeps
//! writing into its ring while no daemon runs, re-registers the same segment
//! with the next daemon, and every record reaches the broker: exactly once
//! across a graceful stop, at least once (duplicates counted) across a crash.

use shmkafkad_test_support::common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{
    consume_and_verify, daemon_options, mock_broker_bin, test_dir, Guarantee, RecordId, Workload,
};
use shmkafka_client::{Producer, ProducerOptions};
use shmkafka_testkit::wait_until;
use shmkafka_testkit::MockBrokerProcess;

/// Dispatches re-executed client processes (see `common::run_child_role`).
#[test]
fn child_role_entry_point() {
    common::run_child_role();
}

const WORKLOAD: Workload = Workload {
    procs: 1,
    threads: 2,
    per_thread: u32::MAX, // open-ended: the senders run until told to stop
    partitions: 3,
    max_value: 4096,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Graceful,
    Crash,
}

/// One restart scenario; returns the verifier's verdict.
fn restart_under_live_client(topic: &str, stop: Stop) -> common::Verdict {
    let started = Instant::now();
    let dir = test_dir();
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 3)])
        .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let spec = daemon_options(&socket, broker.bootstrap_servers());
    let mut first = spec.start();
    let mut second = None;

    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 32 << 20,
        max_record_len: 1 << 20,
        client_name: "e2e-restart".into(),
        ..ProducerOptions::default()
    })
    .expect("connect");
    let handle = producer.topic(topic).expect("topic");

    let stop_sending = AtomicBool::new(false);
    let sent: Vec<AtomicU32> = (0..WORKLOAD.threads).map(|_| AtomicU32::new(0)).collect();
    let total_sent = || sent.iter().map(|s| s.load(Ordering::Relaxed)).sum::<u32>();
    std::thread::scope(|scope| {
        // Sender threads: write steadily through the whole scenario, about
        // 2 x 2000 records per second, so records land in the ring while no
        // daemon runs.
        for thread in 0..WORKLOAD.threads {
            let (producer, handle, stop_sending, sent) = (&producer, &handle, &stop_sending, &sent);
            scope.spawn(move || {
                let mut counter = 0;
                while !stop_sending.load(Ordering::Relaxed) {
                    let id = RecordId {
                        proc: 0,
                        thread,
                        counter,
                    };
                    common::send_expected(producer, handle, &WORKLOAD.record(id));
                    counter += 1;
                    sent[thread as usize].store(counter, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
        }

        // If a step below panics, the senders must still stop, or the scope
        // would wait for them forever instead of failing the test.
        let _stop_senders = SetOnDrop(&stop_sending);

        // Phase 1: a first batch, flushed through the first daemon.
        wait_until("a first batch", Duration::from_secs(30), || {
            total_sent() >= 1000
        });
        producer
            .flush(Duration::from_secs(30))
            .expect("flush through the first daemon");
        let before_stop = total_sent();

        // Phase 2: stop the daemon while records are being written.
        match stop {
            Stop::Graceful => {
                let status = first.terminate(Duration::from_secs(30));
                assert!(status.success(), "SIGTERM: shmkafkad exited with {status}");
            }
            Stop::Crash => first.kill(),
        }
        wait_until(
            "the client to notice the daemon is gone",
            Duration::from_secs(10),
            || !producer.stats().connected,
        );
        let gone_at = total_sent();
        // Records keep landing in the ring while no daemon runs.
        wait_until(
            "sends while the daemon is away",
            Duration::from_secs(30),
            || total_sent() >= gone_at + 500,
        );
        assert!(!producer.stats().connected);

        // Phase 3: a new daemon on the same socket; the client registers again.
        second = Some(spec.start());
        wait_until("the client to re-register", Duration::from_secs(15), || {
            let stats = producer.stats();
            stats.connected && stats.reconnects >= 1
        });
        let back_at = total_sent();
        wait_until("sends after the restart", Duration::from_secs(30), || {
            total_sent() >= back_at + 500
        });
        eprintln!(
            "{stop:?}: {before_stop} records sent before the stop, {gone_at} when the client \
             noticed, {back_at} at re-registration"
        );
    });
    // The senders are joined; everything they sent must now get through.
    let report = producer.flush(Duration::from_secs(60));
    let stats = producer.stats();
    report.unwrap_or_else(|e| panic!("flush through the second daemon: {e}; stats {stats:?}"));
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert!(stats.connected, "{stats:?}");

    let ids: Vec<RecordId> = (0..WORKLOAD.threads)
        .flat_map(|thread| {
            let count = sent[thread as usize].load(Ordering::Relaxed);
            (0..count).map(move |counter| RecordId {
                proc: 0,
                thread,
                counter,
            })
        })
        .collect();
    let guarantee = match stop {
        Stop::Graceful => Guarantee::ExactlyOnce,
        Stop::Crash => Guarantee::AtLeastOnce,
    };
    let verdict = consume_and_verify(
        broker.bootstrap_servers(),
        topic,
        &WORKLOAD,
        &ids,
        guarantee,
        Duration::from_secs(30),
    );
    eprintln!(
        "{stop:?}: {} records sent, {} consumed, {} duplicates, {:?}",
        ids.len(),
        verdict.consumed,
        verdict.duplicates,
        started.elapsed()
    );
    drop(second);
    verdict
}

/// Sets the flag when dropped (at the end of the scenario or on a panic).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// SIGTERM: the first daemon delivers what it took before exiting, the rest
/// waits in the ring; nothing is lost and nothing duplicated.
#[test]
fn graceful_daemon_restart_loses_nothing() {
    restart_under_live_client("e2e-restart-term", Stop::Graceful);
}

/// SIGKILL: records in flight at the crash are sent again by the next
/// daemon (at-least-once); none may be missing.
#[test]
fn crashed_daemon_restart_loses_nothing() {
    let verdict = restart_under_live_client("e2e-restart-kill", Stop::Crash);
    eprintln!("duplicates after a daemon crash: {}", verdict.duplicates);
}
