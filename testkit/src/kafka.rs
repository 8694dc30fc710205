//! Apache Kafka in KRaft mode, run from its Maven Central jars: one broker,
//! or three combined broker+controller nodes forming a 3-voter quorum, each
//! a child JVM on 127.0.0.1 that a test can `kill -9`, restart on the same
//! log directories, pause (SIGSTOP) and resume.
//!
//! The jars come from `testkit/kafka/fetch-kafka.sh` (Maven
//! `dependency:copy-dependencies` of `kafka_2.13` and `kafka-tools`), run
//! on first use when the cache folder is missing. Topics are created and
//! deleted with Kafka's own `TopicCommand`, and [`KafkaCluster::console_consume`]
//! reads records back with Kafka's own `ConsoleConsumer`, so a test proves
//! delivery with a consumer this project did not write.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::process::{die_with_parent, free_port, wait_for_port, ChildGuard};
use crate::TestkitError;

/// The Kafka release every test runs against.
pub const KAFKA_VERSION: &str = "4.4.0";
/// Environment variable naming the folder of Kafka jars (see
/// `testkit/kafka/fetch-kafka.sh`).
pub const KAFKA_LIBS_ENV: &str = "SHMKAFKA_KAFKA_LIBS";

/// A broker JVM starts in a few seconds; generous for a loaded 2-core
/// machine running the build beside it.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// A free port can be taken between our probe and the broker's bind.
const START_ATTEMPTS: usize = 3;
/// Heap per broker: three brokers fit beside the build on a 24 GiB machine,
/// and a test's traffic never needs more.
const BROKER_HEAP: &str = "-Xmx512m";
/// Kafka's tools are short-lived clients.
const TOOL_HEAP: &str = "-Xmx256m";
/// Broker log level and layout; the log file is what a failing test prints.
const LOG4J2: &str = "\
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.state.name = state.change.logger
logger.state.level = warn
";
/// Kafka's tools write only warnings to stderr.
const LOG4J2_TOOLS: &str = "\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %p %m (%c)%n
";
/// Ends each record in `ConsoleConsumer` output: a header value is binary
/// and may hold a newline, never this.
const RECORD_END: &str = "\u{1}END-OF-RECORD\u{1}\n";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// 1, or 3 for a replicated cluster with a 3-voter quorum.
    pub nodes: usize,
    /// Extra `server.properties` lines, applied after the kit's own (the
    /// last value of a key wins).
    pub broker_properties: Vec<(String, String)>,
    /// A second client listener named `CLIENT` with this security protocol
    /// (`SSL`, `SASL_SSL`, `SASL_PLAINTEXT`), configured through
    /// `listener.name.client.*` broker properties; the `PLAINTEXT`
    /// listener stays for Kafka's tools and between brokers.
    pub client_listener: Option<String>,
    /// Extra `kafka-storage format` arguments, e.g. `--add-scram`.
    pub format_args: Vec<String>,
    /// Each broker serves JMX on its own 127.0.0.1 port (no
    /// authentication: the port is local and the cluster a test's), so
    /// [`KafkaCluster::produce_counters`] can read its request metrics.
    pub jmx: bool,
}

impl KafkaOptions {
    /// `nodes` brokers with the kit's defaults.
    pub fn nodes(nodes: usize) -> Self {
        Self {
            nodes,
            broker_properties: Vec::new(),
            client_listener: None,
            format_args: Vec::new(),
            jmx: false,
        }
    }

    /// Serves JMX from every broker (see [`KafkaOptions::jmx`]).
    pub fn with_jmx(mut self) -> Self {
        self.jmx = true;
        self
    }

    /// Adds the `CLIENT` listener with `protocol`.
    pub fn client_listener(mut self, protocol: &str) -> Self {
        self.client_listener = Some(protocol.to_owned());
        self
    }

    /// Adds `kafka-storage format` arguments.
    pub fn format_arg(mut self, arg: &str) -> Self {
        self.format_args.push(arg.to_owned());
        self
    }

    /// Adds a broker property.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.broker_properties
            .push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One node: broker and controller in one JVM.
#[derive(Debug)]
struct Node {
    id: u32,
    port: u16,
    controller_port: u16,
    client_port: Option<u16>,
    jmx_port: Option<u16>,
    config: PathBuf,
    log: PathBuf,
    child: Option<ChildGuard>,
    /// SIGSTOPped: running, but answers nobody.
    paused: bool,
}

/// A running Apache Kafka cluster on 127.0.0.1; every JVM is killed when
/// it drops, and the end of each broker's log is printed if the thread is
/// panicking (a failing test).
#[derive(Debug)]
pub struct KafkaCluster {
    dir: PathBuf,
    libs: PathBuf,
    nodes: Vec<Node>,
    bootstrap: String,
    client_bootstrap: Option<String>,
    /// A fresh id per cluster: a broker that answers with another one is
    /// some other cluster's that took our port.
    cluster_id: String,
}

impl KafkaCluster {
    /// Formats storage for `options.nodes` nodes under `dir`, starts them
    /// and waits until the cluster answers metadata with every broker.
    pub fn start(dir: &Path, options: &KafkaOptions) -> Result<Self, TestkitError> {
        let mut last_error = None;
        for attempt in 0..START_ATTEMPTS {
            let attempt_dir = dir.join(format!("kafka-{attempt}"));
            let mut cluster = Self::format(&attempt_dir, options)?;
            match cluster.start_all() {
                Ok(()) => return Ok(cluster),
                Err(error) => {
                    let error = cluster.with_logs(error);
                    drop(cluster);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Writes every node's configuration and formats its storage, without
    /// starting anything: the bootstrap address is known before the cluster
    /// answers on it (a daemon can be started first).
    pub fn format(dir: &Path, options: &KafkaOptions) -> Result<Self, TestkitError> {
        assert!(
            options.nodes == 1 || options.nodes == 3,
            "a cluster has 1 or 3 nodes, not {}",
            options.nodes
        );
        let libs = kafka_libs()?;
        std::fs::create_dir_all(dir)
            .map_err(TestkitError::io(format!("creating {}", dir.display())))?;
        write_file(&dir.join("log4j2.properties"), LOG4J2)?;
        write_file(&dir.join("log4j2-tools.properties"), LOG4J2_TOOLS)?;
        let mut nodes = Vec::with_capacity(options.nodes);
        for id in 1..=options.nodes as u32 {
            nodes.push(Node {
                id,
                port: free_port()?,
                controller_port: free_port()?,
                client_port: match options.client_listener {
                    Some(_) => Some(free_port()?),
                    None => None,
                },
                jmx_port: match options.jmx {
                    true => Some(free_port()?),
                    false => None,
                },
                config: dir.join(format!("node-{id}.properties")),
                log: dir.join(format!("node-{id}.log")),
                child: None,
                paused: false,
            });
        }
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let replicas = options.nodes.min(3);
        for node in &nodes {
            let (client_listener, client_protocol) =
                match (&options.client_listener, node.client_port) {
                    (Some(protocol), Some(port)) => (
                        format!(",CLIENT://127.0.0.1:{port}"),
                        format!(",CLIENT:{protocol}"),
                    ),
                    _ => (String::new(), String::new()),
                };
            let mut config = format!(
                "process.roles=broker,controller\n\
                 node.id={id}\n\
                 controller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}{client_listener}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}{client_listener}\n\
                 controller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{client_protocol}\n\
                 log.dirs={data}\n\
                 num.partitions=1\n\
                 default.replication.factor={replicas}\n\
                 offsets.topic.replication.factor={replicas}\n\
                 transaction.state.log.replication.factor={replicas}\n\
                 transaction.state.log.min.isr={min_isr}\n\
                 group.initial.rebalance.delay.ms=0\n\
                 auto.create.topics.enable=false\n\
                 num.network.threads=2\n\
                 num.io.threads=4\n\
                 num.recovery.threads.per.data.dir=1\n",
                id = node.id,
                port = node.port,
                cport = node.controller_port,
                data = dir.join(format!("node-{}-data", node.id)).display(),
                min_isr = replicas.min(2),
            );
            for (key, value) in &options.broker_properties {
                config.push_str(&format!("{key}={value}\n"));
            }
            write_file(&node.config, &config)?;
        }
        let client_bootstrap = options.client_listener.as_ref().map(|_| {
            nodes
                .iter()
                .filter_map(|n| n.client_port)
                .map(|port| format!("127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        let cluster = Self {
            dir: dir.to_owned(),
            libs,
            client_bootstrap,
            cluster_id: random_cluster_id()?,
            bootstrap: nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port))
                .collect::<Vec<_>>()
                .join(","),
            nodes,
        };
        // Format every node at once: each is a JVM start of a few seconds.
        let formats = cluster
            .nodes
            .iter()
            .map(|node| {
                cluster
                    .tool("kafka.tools.StorageTool")
                    .args([
                        "format",
                        "--ignore-formatted",
                        "-t",
                        &cluster.cluster_id,
                        "-c",
                    ])
                    .arg(&node.config)
                    .args(&options.format_args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(TestkitError::io("running kafka-storage format"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for format in formats {
            let output = format
                .wait_with_output()
                .map_err(TestkitError::io("waiting for kafka-storage format"))?;
            check_output("kafka-storage format", output)?;
        }
        Ok(cluster)
    }

    /// Starts every node that is not running and waits until all of them
    /// are in the cluster's metadata.
    pub fn start_all(&mut self) -> Result<(), TestkitError> {
        for index in 0..self.nodes.len() {
            if self.nodes[index].child.is_none() {
                self.spawn(index)?;
            }
        }
        for index in 0..self.nodes.len() {
            self.wait_listening(index)?;
        }
        self.wait_brokers(self.node_ids())
    }

    /// The `bootstrap.servers` value naming every node.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The `bootstrap.servers` of the `CLIENT` listener, if the cluster
    /// has one.
    pub fn client_bootstrap_servers(&self) -> Option<&str> {
        self.client_bootstrap.as_deref()
    }

    /// Runs one of Kafka's tools (`main_class`, e.g.
    /// `org.apache.kafka.tools.AclCommand` or `kafka.tools.DumpLogSegments`)
    /// with `args` and returns its standard output.
    pub fn run_tool(&self, main_class: &str, args: &[&str]) -> Result<String, TestkitError> {
        let output = self
            .tool(main_class)
            .args(args)
            .output()
            .map_err(TestkitError::io(format!("running {main_class}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        check_output(main_class, output)?;
        Ok(stdout)
    }

    /// The node ids, 1-based.
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Whether `node` is running (started and not killed or stopped).
    pub fn is_running(&self, node: u32) -> bool {
        self.node(node).child.is_some()
    }

    /// The JVM's process id, for CPU accounting.
    pub fn pid(&self, node: u32) -> Option<u32> {
        self.node(node).child.as_ref().map(ChildGuard::pid)
    }

    /// What the running brokers have been sent since they started, summed
    /// over the nodes, from Kafka's own request metrics (read with its
    /// `JmxTool`); needs [`KafkaOptions::with_jmx`]. Produce requests are
    /// counted where they arrive (partition leaders), so a replicated
    /// cluster counts each once.
    pub fn produce_counters(&self) -> Result<ProduceCounters, TestkitError> {
        let mut total = ProduceCounters::default();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let port = node.jmx_port.ok_or_else(|| TestkitError::Child {
                what: "JmxTool".to_owned(),
                detail: "the cluster was started without KafkaOptions::with_jmx".to_owned(),
            })?;
            let url = format!("service:jmx:rmi:///jndi/rmi://127.0.0.1:{port}/jmxrmi");
            let csv = self.run_tool(
                "org.apache.kafka.tools.JmxTool",
                &[
                    "--jmx-url",
                    &url,
                    "--object-name",
                    PRODUCE_REQUESTS_MBEAN,
                    "--object-name",
                    PRODUCE_BATCHES_MBEAN,
                    "--object-name",
                    RECORDS_IN_MBEAN,
                    "--attributes",
                    "Count",
                    "--one-time",
                    "true",
                    "--report-format",
                    "csv",
                ],
            )?;
            total = total + ProduceCounters::from_jmx_csv(&csv)?;
        }
        Ok(total)
    }

    /// `kill -9` of one node.
    pub fn kill(&mut self, node: u32) {
        let index = self.index(node);
        // ChildGuard's drop is SIGKILL and reap.
        self.nodes[index].child = None;
    }

    /// Graceful stop of one node (SIGTERM: controlled shutdown moves its
    /// leaderships away first), waiting up to `timeout`, then SIGKILL.
    pub fn stop(&mut self, node: u32, timeout: Duration) {
        let index = self.index(node);
        if let Some(mut guard) = self.nodes[index].child.take() {
            signal(guard.pid(), Signal::SIGTERM);
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if matches!(guard.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Drop kills what did not stop in time.
        }
    }

    /// Starts a stopped or killed node again on its own ports and log
    /// directory (its data survives) and waits until it rejoined.
    pub fn restart(&mut self, node: u32) -> Result<(), TestkitError> {
        let index = self.index(node);
        assert!(
            self.nodes[index].child.is_none(),
            "node {node} is still running"
        );
        self.spawn(index)?;
        self.wait_listening(index)
            .and_then(|()| self.wait_brokers(vec![node]))
            .map_err(|e| self.with_logs(e))
    }

    /// SIGSTOP: the JVM freezes with its sockets open, as a long GC pause
    /// or a hung host would.
    pub fn pause(&mut self, node: u32) {
        let pid = self.pid(node).expect("pausing a node that is not running");
        signal(pid, Signal::SIGSTOP);
        let index = self.index(node);
        self.nodes[index].paused = true;
    }

    /// SIGCONT after [`KafkaCluster::pause`].
    pub fn resume(&mut self, node: u32) {
        let pid = self.pid(node).expect("resuming a node that is not running");
        signal(pid, Signal::SIGCONT);
        let index = self.index(node);
        self.nodes[index].paused = false;
    }

    /// `kill -9` of every node.
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.child = None;
        }
    }

    /// Creates `topic` with Kafka's `TopicCommand` and waits until every
    /// partition has a leader.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        replication_factor: u32,
        configs: &[(&str, &str)],
    ) -> Result<(), TestkitError> {
        let mut command = self.tool("org.apache.kafka.tools.TopicCommand");
        command
            .args(["--bootstrap-server", &self.bootstrap, "--create", "--topic"])
            .arg(topic)
            .args(["--partitions", &partitions.to_string()])
            .args(["--replication-factor", &replication_factor.to_string()]);
        for (key, value) in configs {
            command.arg("--config").arg(format!("{key}={value}"));
        }
        let output = command
            .output()
            .map_err(TestkitError::io("running kafka-topics --create"))?;
        check_output(&format!("kafka-topics --create {topic}"), output)?;
        self.wait_for(&format!("leaders of every partition of {topic}"), || {
            self.partition_leaders(topic).is_ok_and(|leaders| {
                leaders.len() == partitions as usize && leaders.iter().all(|l| l.is_some())
            })
        })
    }

    /// Deletes `topic` with Kafka's `TopicCommand`.
    pub fn delete_topic(&self, topic: &str) -> Result<(), TestkitError> {
        let mut command = self.tool("org.apache.kafka.tools.TopicCommand");
        command
            .args(["--bootstrap-server", &self.bootstrap, "--delete", "--topic"])
            .arg(topic);
        let output = command
            .output()
            .map_err(TestkitError::io("running kafka-topics --delete"))?;
        check_output(&format!("kafka-topics --delete {topic}"), output)
    }

    /// Sets topic-level configs with Kafka's `ConfigCommand`.
    pub fn alter_topic_config(
        &self,
        topic: &str,
        configs: &[(&str, &str)],
    ) -> Result<(), TestkitError> {
        let joined = configs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut command = self.tool("org.apache.kafka.tools.ConfigCommand");
        command
            .args(["--bootstrap-server", &self.bootstrap, "--alter"])
            .args(["--entity-type", "topics", "--entity-name", topic])
            .args(["--add-config", &joined]);
        let output = command
            .output()
            .map_err(TestkitError::io("running kafka-configs --alter"))?;
        check_output(&format!("kafka-configs --alter {topic}"), output)
    }

    /// Each partition's leader (a node id), or `None` while it has none,
    /// from a metadata request to the running nodes.
    pub fn partition_leaders(&self, topic: &str) -> Result<Vec<Option<u32>>, TestkitError> {
        let consumer = self.metadata_client()?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(TestkitError::kafka(format!("metadata of {topic}")))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(Vec::new());
        };
        if found.error().is_some() {
            return Ok(Vec::new());
        }
        let mut leaders: Vec<(i32, Option<u32>)> = found
            .partitions()
            .iter()
            .map(|p| {
                let leader = (p.error().is_none() && p.leader() >= 0).then(|| p.leader() as u32);
                (p.id(), leader)
            })
            .collect();
        leaders.sort_unstable_by_key(|(id, _)| *id);
        Ok(leaders.into_iter().map(|(_, leader)| leader).collect())
    }

    /// Reads `topic` from the beginning with Kafka's own `ConsoleConsumer`
    /// until `expected` records arrived or nothing new came for `idle`,
    /// returning each record's partition, offset and headers.
    pub fn console_consume(
        &self,
        topic: &str,
        expected: usize,
        idle: Duration,
        isolation_level: &str,
    ) -> Result<Vec<KafkaToolRecord>, TestkitError> {
        let mut command = self.tool("org.apache.kafka.tools.consumer.ConsoleConsumer");
        command
            .args(["--bootstrap-server", &self.bootstrap, "--topic", topic])
            .args(["--from-beginning", "--isolation-level", isolation_level])
            .args(["--max-messages", &expected.to_string()])
            .args(["--timeout-ms", &idle.as_millis().to_string()])
            .args(["--formatter-property", "print.partition=true"])
            .args(["--formatter-property", "print.offset=true"])
            .args(["--formatter-property", "print.headers=true"])
            .args(["--formatter-property", "print.key=false"])
            .args(["--formatter-property", "print.value=false"])
            .arg("--formatter-property")
            .arg(format!("line.separator={RECORD_END}"))
            // Large records: the default fetch sizes would work, only slower.
            .args(["--command-property", "max.partition.fetch.bytes=4194304"]);
        let output = command
            .output()
            .map_err(TestkitError::io("running kafka-console-consumer"))?;
        // The consumer exits non-zero on its idle timeout, which is how it
        // ends when fewer records than `expected` exist: judge by output.
        let stdout = output.stdout;
        let mut records = Vec::new();
        for chunk in split_bytes(&stdout, RECORD_END.as_bytes()) {
            if chunk.is_empty() {
                continue;
            }
            records.push(
                KafkaToolRecord::parse(chunk).ok_or_else(|| TestkitError::Child {
                    what: "kafka-console-consumer".into(),
                    detail: format!(
                        "unparsable record {:?}; stderr: {}",
                        String::from_utf8_lossy(chunk),
                        String::from_utf8_lossy(&output.stderr)
                    ),
                })?,
            );
        }
        Ok(records)
    }

    /// The last `lines` lines of every node's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            text.push_str(&format!(
                "--- kafka node {} ({}) ---\n{}\n",
                node.id,
                node.log.display(),
                tail.join("\n")
            ));
        }
        text
    }

    /// The folder holding configs, logs and data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn node(&self, node: u32) -> &Node {
        &self.nodes[self.index(node)]
    }

    fn index(&self, node: u32) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == node)
            .unwrap_or_else(|| panic!("no kafka node {node}"))
    }

    fn java_command(&self) -> Command {
        let mut command = Command::new(java());
        command.arg(format!(
            "-Dlog4j2.configurationFile={}",
            self.dir.join("log4j2.properties").display()
        ));
        command.stdin(Stdio::null());
        command
    }

    /// A Kafka tool's JVM, its output captured.
    fn tool(&self, main_class: &str) -> Command {
        let mut command = Command::new(java());
        command
            .arg(TOOL_HEAP)
            .arg("-XX:TieredStopAtLevel=1")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2-tools.properties").display()
            ))
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg(main_class)
            .stdin(Stdio::null());
        command
    }

    fn spawn(&mut self, index: usize) -> Result<(), TestkitError> {
        let node = &self.nodes[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(TestkitError::io(format!("opening {}", node.log.display())))?;
        let log_err = log
            .try_clone()
            .map_err(TestkitError::io("duplicating the broker log"))?;
        let mut command = self.java_command();
        command
            .args([
                BROKER_HEAP,
                "-Xms256m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
            ])
            .args(["-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]);
        if let Some(port) = node.jmx_port {
            // One port for the registry and the objects, both on loopback.
            command.args([
                format!("-Dcom.sun.management.jmxremote.port={port}"),
                format!("-Dcom.sun.management.jmxremote.rmi.port={port}"),
                "-Dcom.sun.management.jmxremote.host=127.0.0.1".to_owned(),
                "-Djava.rmi.server.hostname=127.0.0.1".to_owned(),
                "-Dcom.sun.management.jmxremote.authenticate=false".to_owned(),
                "-Dcom.sun.management.jmxremote.ssl=false".to_owned(),
            ]);
        }
        command
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg("kafka.Kafka")
            .arg(&node.config)
            .stdout(log)
            .stderr(log_err);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(TestkitError::io(format!("spawning {}", java().display())))?;
        self.nodes[index].child = Some(ChildGuard::new(child));
        Ok(())
    }

    fn wait_listening(&mut self, index: usize) -> Result<(), TestkitError> {
        let node = &mut self.nodes[index];
        let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
        let what = format!("kafka node {}", node.id);
        let guard = node.child.as_mut().expect("node started");
        wait_for_port(addr, &mut guard.child, &what, READY_TIMEOUT)
    }

    /// Waits until the metadata lists each of `ids` as a broker, of this
    /// cluster (its id), while every node started here still runs.
    fn wait_brokers(&mut self, ids: Vec<u32>) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for node in &mut self.nodes {
                if let Some(guard) = node.child.as_mut() {
                    if let Ok(Some(status)) = guard.child.try_wait() {
                        return Err(TestkitError::Child {
                            what: format!("kafka node {}", node.id),
                            detail: format!("exited with {status} while the cluster started"),
                        });
                    }
                }
            }
            if let Ok(consumer) = self.metadata_client() {
                let ours = consumer.client().fetch_cluster_id(Duration::from_secs(2));
                if let Some(other) = ours.as_deref().filter(|id| *id != self.cluster_id) {
                    return Err(TestkitError::Child {
                        what: "kafka cluster".into(),
                        detail: format!(
                            "a broker of another cluster ({other}) answers on our port; ours is {}",
                            self.cluster_id
                        ),
                    });
                }
                let listed = consumer
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|metadata| {
                        ids.iter()
                            .all(|id| metadata.brokers().iter().any(|b| b.id() == *id as i32))
                    });
                if listed && ours.is_some() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::NotReady {
                    what: format!("brokers {ids:?} in the metadata"),
                    after: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !done() {
            if Instant::now() >= deadline {
                return Err(TestkitError::NotReady {
                    what: what.to_owned(),
                    after: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn metadata_client(&self) -> Result<BaseConsumer, TestkitError> {
        // Only running nodes: a paused one would stall the request.
        let bootstrap = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.paused)
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",");
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("log_level", "3")
            .create()
            .map_err(TestkitError::kafka("creating a metadata client"))
    }

    fn with_logs(&self, error: TestkitError) -> TestkitError {
        TestkitError::Child {
            what: "kafka cluster".into(),
            detail: format!("{error}\n{}", self.log_tails(30)),
        }
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::io::stderr().write_all(self.log_tails(40).as_bytes());
        }
    }
}

/// A record as Kafka's `ConsoleConsumer` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaToolRecord {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The headers as printed: `name:value` pairs joined by `,`, values
    /// raw (binary values included), or `NO_HEADERS`.
    pub headers: Vec<u8>,
}

impl KafkaToolRecord {
    /// `Partition:P\tOffset:O\tHEADERS`.
    fn parse(chunk: &[u8]) -> Option<Self> {
        let mut fields = chunk.splitn(3, |&b| b == b'\t');
        let partition = std::str::from_utf8(fields.next()?.strip_prefix(b"Partition:")?).ok()?;
        let offset = std::str::from_utf8(fields.next()?.strip_prefix(b"Offset:")?).ok()?;
        Some(Self {
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
            headers: fields.next().unwrap_or_default().to_vec(),
        })
    }

    /// The value of the first header named `name`, if that header is
    /// first in the record or its value holds no `,` (values are printed
    /// raw, so a later header's binary value can hide a separator).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let prefix = format!("{name}:");
        let starts = std::iter::once(0).chain(
            self.headers
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b',')
                .map(|(i, _)| i + 1),
        );
        for start in starts {
            if let Some(rest) = self.headers[start..].strip_prefix(prefix.as_bytes()) {
                let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
                return Some(&rest[..end]);
            }
        }
        None
    }
}

fn split_bytes<'a>(bytes: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.windows(separator.len()).position(|w| w == separator) {
            Some(at) => {
                let chunk = &rest[..at];
                rest = &rest[at + separator.len()..];
                Some(chunk)
            }
            None => {
                let chunk = rest;
                rest = &[];
                Some(chunk)
            }
        }
    })
}

/// Every produce request, one series per request version.
const PRODUCE_REQUESTS_MBEAN: &str =
    "kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,*";
/// One count per partition in a produce request: a partition's batch.
const PRODUCE_BATCHES_MBEAN: &str =
    "kafka.server:type=BrokerTopicMetrics,name=TotalProduceRequestsPerSec";
/// Records appended by produce requests, all topics.
const RECORDS_IN_MBEAN: &str = "kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec";

/// Counts from a broker's request metrics (cumulative since it started;
/// subtract two readings for what happened between them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceCounters {
    /// Produce requests.
    pub requests: u64,
    /// Partition batches in those requests (a request carries one per
    /// partition it writes to).
    pub partition_batches: u64,
    /// Records appended.
    pub records: u64,
}

impl ProduceCounters {
    /// Reads `JmxTool --one-time true --report-format csv` output: a line
    /// per `object:attribute`, its value quoted after the last comma (the
    /// object names hold commas themselves). A metric the broker has not
    /// created yet (no produce request so far) is absent: zero.
    fn from_jmx_csv(csv: &str) -> Result<Self, TestkitError> {
        let malformed = || TestkitError::Child {
            what: "JmxTool".to_owned(),
            detail: format!("unexpected output: {csv}"),
        };
        let mut counters = Self::default();
        let mut seen_time = false;
        for line in csv.lines() {
            let Some((name, value)) = line.rsplit_once(',') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            if name == "time" {
                seen_time = true;
                continue;
            }
            // Counts print as integers, or in scientific notation once large.
            let count = value.parse::<f64>().map_err(|_| malformed())? as u64;
            if name.contains("request=Produce") {
                counters.requests += count;
            } else if name.contains("TotalProduceRequestsPerSec") {
                counters.partition_batches += count;
            } else if name.contains("MessagesInPerSec") {
                counters.records += count;
            }
        }
        if !seen_time {
            return Err(malformed());
        }
        Ok(counters)
    }
}

impl std::ops::Add for ProduceCounters {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            requests: self.requests + other.requests,
            partition_batches: self.partition_batches + other.partition_batches,
            records: self.records + other.records,
        }
    }
}

impl std::ops::Sub for ProduceCounters {
    type Output = Self;
    /// What happened between two readings; a broker restarted in between
    /// counts from zero again, hence saturating.
    fn sub(self, earlier: Self) -> Self {
        Self {
            requests: self.requests.saturating_sub(earlier.requests),
            partition_batches: self
                .partition_batches
                .saturating_sub(earlier.partition_batches),
            records: self.records.saturating_sub(earlier.records),
        }
    }
}

/// The java binary: `$JAVA_HOME/bin/java`, else `java` on the `PATH`.
pub fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// The folder of Kafka jars, fetched with Maven on first use (once per
/// process; the script itself is safe against concurrent runs).
pub fn kafka_libs() -> Result<PathBuf, TestkitError> {
    static LIBS: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = LIBS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(libs) = cached.as_ref() {
        return Ok(libs.clone());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/fetch-kafka.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(TestkitError::io(format!("running {}", script.display())))?;
    if !output.status.success() {
        return Err(TestkitError::Child {
            what: format!(
                "fetching Apache Kafka {KAFKA_VERSION} jars ({}; needs java and mvn)",
                script.display()
            ),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    let libs = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    *cached = Some(libs.clone());
    Ok(libs)
}

/// A cluster id Kafka accepts: 16 random bytes, URL-safe base64 without
/// padding. Like Kafka's own `Uuid.randomUuid`, an id that starts with `-` is
/// drawn again: the storage tool's argument parser would read it as an option.
fn random_cluster_id() -> Result<String, TestkitError> {
    use base64::Engine as _;
    use std::io::Read;
    let mut urandom =
        File::open("/dev/urandom").map_err(TestkitError::io("opening /dev/urandom"))?;
    loop {
        let mut bytes = [0u8; 16];
        urandom
            .read_exact(&mut bytes)
            .map_err(TestkitError::io("reading /dev/urandom"))?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), TestkitError> {
    std::fs::write(path, text).map_err(TestkitError::io(format!("writing {}", path.display())))
}

fn check_output(what: &str, output: std::process::Output) -> Result<(), TestkitError> {
    if output.status.success() {
        return Ok(());
    }
    Err(TestkitError::Child {
        what: what.to_owned(),
        detail: format!(
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

fn signal(pid: u32, signal: Signal) {
    // The node may have exited on its own; the test then fails on what it
    // checks next, with the broker log.
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_counters_sum_every_request_version_from_jmx_csv() {
        // As JmxTool 4.4 prints it, after its connection line.
        let csv =
            "Trying to connect to JMX url: service:jmx:rmi:///jndi/rmi://127.0.0.1:1/jmxrmi\n\
time,\"1795788314985\"\n\
kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,version=12:Count,\"3\"\n\
kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,version=13:Count,\"114\"\n\
kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec:Count,\"1.2E7\"\n\
kafka.server:type=BrokerTopicMetrics,name=TotalProduceRequestsPerSec:Count,\"676\"\n";
        let counters = ProduceCounters::from_jmx_csv(csv).unwrap();
        assert_eq!(
            counters,
            ProduceCounters {
                requests: 117,
                partition_batches: 676,
                records: 12_000_000,
            }
        );
        let later = ProduceCounters {
            requests: 200,
            partition_batches: 1000,
            records: 12_000_500,
        };
        assert_eq!((later - counters).records, 500);
        assert!(ProduceCounters::from_jmx_csv("Could not connect").is_err());
    }

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let a = random_cluster_id().unwrap();
        let b = random_cluster_id().unwrap();
        assert_eq!(a.len(), 22, "{a}");
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn cluster_ids_never_start_with_a_dash() {
        // One id in 64 would start with '-' if it were not drawn again; the
        // storage tool then fails with "expected one argument".
        for _ in 0..2000 {
            let id = random_cluster_id().unwrap();
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn console_consumer_records_parse_with_binary_headers() {
        let out = b"Partition:2\tOffset:17\te2e-id:0/1/2,binary:\x00\n,\xff,dup:first\x01END-OF-RECORD\x01\nPartition:0\tOffset:0\tNO_HEADERS\x01END-OF-RECORD\x01\n";
        let records: Vec<_> = split_bytes(out, RECORD_END.as_bytes())
            .map(|c| KafkaToolRecord::parse(c).expect("parses"))
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].partition, records[0].offset), (2, 17));
        assert_eq!(records[0].header("e2e-id"), Some(&b"0/1/2"[..]));
        assert_eq!(records[0].header("dup"), Some(&b"first"[..]));
        assert_eq!(records[1].header("e2e-id"), None);
    }
}
