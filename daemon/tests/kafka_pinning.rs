//! librdkafka's threads pinned through the on_thread_start interceptor. Its
//! own test binary: it inspects every `rdk:` thread of the process.

use shmkafkad_test_support::kafka_common;

use std::time::{Duration, Instant};

use kafka_common::poll_reports;
use shmkafkad::kafka::{
    KafkaConfig, MockCluster, OutgoingMessage, Producer, ProducerOptions, ThreadPinning,
};

/// (tid, name, Cpus_allowed_list) of this process's librdkafka threads.
fn rdkafka_threads() -> Vec<(String, String, String)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("rdk:") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let tid = task.file_name().to_string_lossy().into_owned();
        threads.push((tid, comm.trim().to_owned(), allowed));
    }
    threads
}

#[test]
fn librdkafka_threads_are_pinned() {
    assert!(ThreadPinning::new([]).is_err());
    assert!(ThreadPinning::new([100_000]).is_err());

    // The mock cluster's threads are not ours to pin; tell them apart by
    // creating it first.
    let cluster = MockCluster::new(1).expect("cluster");
    // Every thread that exists now is not the producer's, named yet or not.
    let before: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect();

    let config = KafkaConfig::from_pairs([("bootstrap.servers", cluster.bootstrap_servers())]);
    let options = ProducerOptions {
        thread_pinning: Some(ThreadPinning::new([0]).expect("cpu list")),
        ..ProducerOptions::default()
    };
    let producer = Producer::new(&config, options).expect("producer");
    let topic = producer.topic("pinned").expect("topic");
    producer
        .produce_copied(
            &topic,
            &OutgoingMessage {
                value: Some(b"x"),
                ..Default::default()
            },
        )
        .expect("produce");
    assert_eq!(poll_reports(&producer, 1, Duration::from_secs(10)).len(), 1);

    // Main thread + internal broker thread + one per broker at least.
    let deadline = Instant::now() + Duration::from_secs(5);
    while producer.pinned_threads() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pinned = producer.pinned_threads();
    assert!(pinned >= 3, "only {pinned} threads pinned");
    let threads = rdkafka_threads();
    eprintln!("pinned {pinned} thread starts; mock cluster threads {before:?}; now {threads:?}");
    let ours: Vec<_> = threads
        .iter()
        .filter(|(tid, ..)| !before.contains(tid))
        .collect();
    // Some threads librdkafka starts are short-lived (the bootstrap broker
    // thread), so compare live threads, not the start count.
    assert!(ours.len() >= 2, "{threads:?}");
    assert!(
        ours.iter().all(|(_, _, allowed)| allowed == "0"),
        "{ours:?}"
    );
    // And the cluster's threads, created without pinning, were left alone.
    assert!(
        threads
            .iter()
            .filter(|(tid, ..)| before.contains(tid))
            .all(|(_, _, allowed)| allowed != "0"),
        "{threads:?}"
    );
}
