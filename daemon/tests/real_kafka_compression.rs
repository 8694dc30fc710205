//! Every compression codec against Apache Kafka 4.4.0: records compressed
//! by the daemon with gzip, snappy, lz4 and zstd read back byte-identical,
//! and the broker's own log segments (Kafka's `DumpLogSegments`) show the
//! batches stored with that codec.

mod common;
mod kafka_real;

use std::time::Duration;

use common::{DaemonSpec, Finish, Guarantee, RecordId, SenderSpec, Workload};

#[test]
fn child_role_entry_point() {
    common::run_child_role();
}

/// Values up to 16 KiB: `common::fill` bytes, compressible enough for every
/// codec to make a difference.
const WORKLOAD: Workload = Workload {
    procs: 2,
    threads: 2,
    per_thread: 200,
    partitions: 1,
    max_value: 16 * 1024,
};

#[test]
fn every_codec_reaches_the_broker_and_reads_back_byte_identical() {
    let dir = common::test_dir();
    let cluster = kafka_real::start_cluster(dir.path(), 1);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        kafka_real::create_topic(&cluster, &topic, WORKLOAD.partitions as u32, &[]);
        let socket = dir.path().join(format!("{codec}.sock"));
        let daemon = DaemonSpec::new(&socket, cluster.bootstrap_servers())
            .property("compression.type", codec)
            .start();
        let children: Vec<_> = (0..WORKLOAD.procs)
            .map(|proc_id| {
                SenderSpec {
                    socket: socket.clone(),
                    topic: topic.clone(),
                    proc_id,
                    workload: WORKLOAD,
                    ring_capacity: 4 << 20,
                    finish: Finish::Flush,
                    run_as: None,
                }
                .spawn()
            })
            .collect();
        for child in children {
            child.wait_success(Duration::from_secs(120));
        }
        let ids: Vec<RecordId> = WORKLOAD.ids().collect();
        let verdict = kafka_real::verify_with_both_consumers(
            &cluster,
            &topic,
            &WORKLOAD,
            &ids,
            Guarantee::ExactlyOnce,
        );
        assert_eq!(verdict.consumed, WORKLOAD.total(), "{codec}");

        let segment = cluster
            .dir()
            .join("node-1-data")
            .join(format!("{topic}-0"))
            .join("00000000000000000000.log");
        let dump = cluster
            .run_tool(
                "kafka.tools.DumpLogSegments",
                &["--files", segment.to_str().expect("utf-8")],
            )
            .expect("DumpLogSegments");
        let stored_as = format!("compresscodec: {}", codec.to_uppercase());
        let batches = dump.lines().filter(|l| l.contains("baseOffset")).count();
        let compressed = dump.lines().filter(|l| l.contains(&stored_as)).count();
        assert!(
            batches > 0 && compressed == batches,
            "{codec}: {compressed} of {batches} batches stored with {stored_as}:\n{}",
            common::tail(&dump, 5)
        );
        eprintln!(
            "{codec}: {} records, {batches} batches, all {stored_as}",
            verdict.consumed
        );
        drop(daemon);
    }
}
