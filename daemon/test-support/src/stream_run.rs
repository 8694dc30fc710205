//! A real-Kafka fault run: a 3-broker Apache Kafka cluster, one topic as
//! production runs it, a daemon, and streaming client processes that report
//! their commits; the fault tests kill things in its middle.

use std::time::{Duration, Instant};

use shmkafka_testkit::{DaemonOptions, DaemonProcess, KafkaCluster, KafkaOptions};

use crate::common::{self, daemon_options, Workload};
use crate::fault_support::{FaultChild, StreamSpec};
use crate::kafka_real;

/// What a run streams, and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The fault, for messages and the topic's name.
    pub name: &'static str,
    /// Topic names start with this.
    pub topic_prefix: &'static str,
    pub workload: Workload,
    /// Ring size of each client.
    pub ring: usize,
    /// Each thread sleeps this long after every `report_every` records.
    pub pace: Duration,
    pub report_every: u32,
    /// The daemon's configuration file, if any.
    pub daemon_config: Option<String>,
}

/// A cluster, a topic, a daemon and the streaming clients of one test.
pub struct Run {
    pub spec: RunSpec,
    pub started: Instant,
    _dir: tempfile::TempDir,
    pub cluster: KafkaCluster,
    pub topic: String,
    pub daemon_spec: DaemonOptions,
    pub daemon: DaemonProcess,
    pub children: Vec<FaultChild>,
}

impl Run {
    /// Starts the cluster (3 nodes), creates the topic with `topic_configs`
    /// on top of production settings, starts the daemon and the clients.
    pub fn start(spec: RunSpec, topic_configs: &[(&str, &str)]) -> Self {
        let started = Instant::now();
        let dir = common::test_dir();
        let cluster = kafka_real::start_cluster(dir.path(), &KafkaOptions::nodes(3));
        let slug: String = spec
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let topic = format!("{}-{slug}", spec.topic_prefix);
        let partitions = spec.workload.partitions as u32;
        kafka_real::create_topic(&cluster, &topic, partitions, topic_configs);
        let socket = dir.path().join("shmkafkad.sock");
        let mut daemon_spec = daemon_options(&socket, cluster.bootstrap_servers());
        if let Some(config) = &spec.daemon_config {
            daemon_spec = daemon_spec.config(config);
        }
        let daemon = daemon_spec.start();
        let children = (0..spec.workload.procs)
            .map(|proc_id| {
                let mut stream = StreamSpec::new(&socket, &topic, proc_id, spec.workload);
                stream.ring_capacity = spec.ring;
                stream.report_every = spec.report_every;
                stream.pace = spec.pace;
                stream.block = Duration::from_secs(300);
                stream.spawn()
            })
            .collect();
        eprintln!(
            "{}: cluster, topic and daemon ready after {:?}",
            spec.name,
            started.elapsed()
        );
        Self {
            spec,
            started,
            _dir: dir,
            cluster,
            topic,
            daemon_spec,
            daemon,
            children,
        }
    }

    /// Records the clients reported committed so far.
    pub fn committed(&self) -> u64 {
        self.children.iter().map(FaultChild::committed_total).sum()
    }

    /// Waits until the clients committed `fraction` of the workload.
    pub fn wait_committed(&self, fraction: f64) {
        let target = (self.spec.workload.total() as f64 * fraction) as u64;
        shmkafka_testkit::wait_until(
            &format!("{}: {target} records committed", self.spec.name),
            Duration::from_secs(180),
            || self.committed() >= target,
        );
    }

    /// The leader (node id) of partition 0 of the topic.
    pub fn leader(&self) -> u32 {
        self.cluster
            .partition_leaders(&self.topic)
            .expect("metadata")
            .first()
            .copied()
            .flatten()
            .expect("partition 0 has a leader")
    }

    /// Records the daemon spooled as failures.
    pub fn spooled_files(&self) -> usize {
        let spool = self
            .daemon_spec
            .socket()
            .parent()
            .expect("dir")
            .join("spool");
        std::fs::read_dir(&spool).map_or(0, |d| d.count())
    }
}
