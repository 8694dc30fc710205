//! librdkafka's in-memory mock Kafka cluster, for trying the daemon out and
//! for tests, with its fault-injection hooks. Never selected implicitly.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka_sys::bindings as rd;

use super::config::KafkaConfig;
use super::error::{KafkaError, KafkaErrorCode};
use super::handle::{cstring, NativeClient};
use super::log;

/// Kafka protocol API keys, for [`MockCluster::push_request_errors`].
pub mod api_key {
    /// Produce.
    pub const PRODUCE: i16 = 0;
    /// Fetch.
    pub const FETCH: i16 = 1;
    /// ListOffsets.
    pub const LIST_OFFSETS: i16 = 2;
    /// Metadata.
    pub const METADATA: i16 = 3;
    /// ApiVersions.
    pub const API_VERSIONS: i16 = 18;
    /// InitProducerId (idempotent producer start-up).
    pub const INIT_PRODUCER_ID: i16 = 22;
}

extern "C" {
    // Declared with raw integer codes, unlike the bindings' enum, so tests can
    // inject broker codes librdkafka does not know.
    #[link_name = "rd_kafka_mock_push_request_errors_array"]
    fn push_request_errors_raw(
        mcluster: *mut rd::rd_kafka_mock_cluster_t,
        api_key: i16,
        cnt: usize,
        errors: *const i32,
    );
    #[link_name = "rd_kafka_mock_topic_set_error"]
    fn topic_set_error_raw(
        mcluster: *mut rd::rd_kafka_mock_cluster_t,
        topic: *const std::ffi::c_char,
        err: i32,
    );
}

/// A running mock cluster; brokers are numbered from 1 and listen on
/// 127.0.0.1 on ephemeral ports. Topics are auto-created on first use (4
/// partitions, replication min(3, brokers)) unless the client disables
/// `allow.auto.create.topics`. The mock does not enforce
/// `message.max.bytes`.
pub struct MockCluster {
    cluster: NonNull<rd::rd_kafka_mock_cluster_t>,
    /// The handle the cluster was created on; destroyed after the cluster
    /// (field drop runs after `Drop::drop`).
    _client: NativeClient,
    broker_count: i32,
}

// SAFETY: every mock-cluster function either takes the cluster's lock or
// posts an op to the cluster's own thread and waits for it, so they may be
// called from any thread; the handle is thread-safe as well.
unsafe impl Send for MockCluster {}
// SAFETY: as above.
unsafe impl Sync for MockCluster {}

impl MockCluster {
    /// Starts a cluster of `broker_count` brokers.
    pub fn new(broker_count: i32) -> Result<Self, KafkaError> {
        // The handle only hosts the cluster; it never connects anywhere.
        // Keep its log lines in tracing like every other client.
        let conf = KafkaConfig::from_pairs([("client.id", "shmkafka-mock-cluster")]).to_native()?;
        // SAFETY: conf is live and ours; log_cb matches the signature and
        // needs no opaque.
        unsafe { rd::rd_kafka_conf_set_log_cb(conf.as_ptr(), Some(log::log_cb)) };
        let client = NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf)
            .map_err(KafkaError::ClientCreation)?;
        // SAFETY: the handle is live and stays alive as long as the cluster
        // (it is dropped after it).
        let cluster = unsafe { rd::rd_kafka_mock_cluster_new(client.as_ptr(), broker_count) };
        let cluster = NonNull::new(cluster).ok_or(KafkaError::MockCluster)?;
        Ok(Self {
            cluster,
            _client: client,
            broker_count,
        })
    }

    fn ptr(&self) -> *mut rd::rd_kafka_mock_cluster_t {
        self.cluster.as_ptr()
    }

    /// How many brokers the cluster started with.
    pub fn broker_count(&self) -> i32 {
        self.broker_count
    }

    /// The `bootstrap.servers` list, e.g. `127.0.0.1:37001,127.0.0.1:41235`.
    pub fn bootstrap_servers(&self) -> String {
        // SAFETY: the cluster is live; the string it returns is owned by it
        // and copied here.
        unsafe { CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(self.ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// Creates a topic (refused if it exists).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), KafkaError> {
        let name = topic_cstring(name)?;
        // SAFETY: the cluster is live; the name is copied.
        let err = unsafe {
            rd::rd_kafka_mock_topic_create(self.ptr(), name.as_ptr(), partitions, replication)
        };
        KafkaError::call("rd_kafka_mock_topic_create", err)
    }

    /// Makes the broker drop its connections and refuse new ones.
    pub fn set_broker_down(&self, broker_id: i32) -> Result<(), KafkaError> {
        // SAFETY: the cluster is live.
        let err = unsafe { rd::rd_kafka_mock_broker_set_down(self.ptr(), broker_id) };
        KafkaError::call("rd_kafka_mock_broker_set_down", err)
    }

    /// Brings a broker back after [`MockCluster::set_broker_down`].
    pub fn set_broker_up(&self, broker_id: i32) -> Result<(), KafkaError> {
        // SAFETY: the cluster is live.
        let err = unsafe { rd::rd_kafka_mock_broker_set_up(self.ptr(), broker_id) };
        KafkaError::call("rd_kafka_mock_broker_set_up", err)
    }

    /// Delays every response of the broker by `rtt`.
    pub fn set_rtt(&self, broker_id: i32, rtt: Duration) -> Result<(), KafkaError> {
        let rtt_ms = i32::try_from(rtt.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the cluster is live.
        let err = unsafe { rd::rd_kafka_mock_broker_set_rtt(self.ptr(), broker_id, rtt_ms) };
        KafkaError::call("rd_kafka_mock_broker_set_rtt", err)
    }

    /// The next `codes.len()` requests of `api_key` (see [`api_key`]), on any
    /// broker, are answered with these errors in order (`NO_ERROR` entries
    /// let a request through).
    pub fn push_request_errors(&self, api_key: i16, codes: &[KafkaErrorCode]) {
        let raw: Vec<i32> = codes.iter().map(|c| c.raw()).collect();
        // SAFETY: the cluster is live; the array is valid for `raw.len()`
        // elements and copied by the call.
        unsafe { push_request_errors_raw(self.ptr(), api_key, raw.len(), raw.as_ptr()) }
    }

    /// Drops errors pushed for `api_key` that were not yet consumed.
    pub fn clear_request_errors(&self, api_key: i16) {
        // SAFETY: the cluster is live.
        unsafe { rd::rd_kafka_mock_clear_request_errors(self.ptr(), api_key) }
    }

    /// Makes Metadata responses report `code` for the topic (`NO_ERROR`
    /// clears it).
    pub fn set_topic_error(&self, topic: &str, code: KafkaErrorCode) -> Result<(), KafkaError> {
        let topic = topic_cstring(topic)?;
        // SAFETY: the cluster is live; the name is copied.
        unsafe { topic_set_error_raw(self.ptr(), topic.as_ptr(), code.raw()) };
        Ok(())
    }

    /// Moves a partition's leadership to `broker_id` (-1: no leader).
    pub fn partition_set_leader(
        &self,
        topic: &str,
        partition: i32,
        broker_id: i32,
    ) -> Result<(), KafkaError> {
        let topic = topic_cstring(topic)?;
        // SAFETY: the cluster is live; the name is copied.
        let err = unsafe {
            rd::rd_kafka_mock_partition_set_leader(self.ptr(), topic.as_ptr(), partition, broker_id)
        };
        KafkaError::call("rd_kafka_mock_partition_set_leader", err)
    }
}

/// A topic to pre-create, written `name:partitions` (or `name`, for the
/// mock's default of 4 partitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockTopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
}

impl std::str::FromStr for MockTopicSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, partitions) = match s.rsplit_once(':') {
            Some((name, count)) => {
                let count: i32 = count
                    .parse()
                    .map_err(|e| format!("partition count in {s:?}: {e}"))?;
                (name, count)
            }
            None => (s, MOCK_DEFAULT_PARTITIONS),
        };
        if name.is_empty() || partitions < 1 {
            return Err(format!(
                "{s:?}: expected name:partitions with partitions >= 1"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            partitions,
        })
    }
}

/// The partition count librdkafka's mock gives auto-created topics.
pub const MOCK_DEFAULT_PARTITIONS: i32 = 4;

impl MockCluster {
    /// Starts a cluster and creates `topics` with replication
    /// min(3, brokers), as the mock does for auto-created topics.
    pub fn with_topics(broker_count: i32, topics: &[MockTopicSpec]) -> Result<Self, KafkaError> {
        let cluster = Self::new(broker_count)?;
        let replication = broker_count.min(3);
        for topic in topics {
            cluster.create_topic(&topic.name, topic.partitions, replication)?;
        }
        Ok(cluster)
    }
}

fn topic_cstring(name: &str) -> Result<CString, KafkaError> {
    cstring(name).ok_or_else(|| KafkaError::TopicName(name.to_owned()))
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: we own the cluster; its handle (`_client`) is destroyed only
        // after this, when the fields drop.
        unsafe { rd::rd_kafka_mock_cluster_destroy(self.ptr()) }
    }
}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCluster")
            .field("brokers", &self.broker_count)
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_specs_parse() {
        assert_eq!(
            "orders:3".parse::<MockTopicSpec>(),
            Ok(MockTopicSpec {
                name: "orders".into(),
                partitions: 3
            })
        );
        assert_eq!(
            "plain".parse::<MockTopicSpec>().map(|t| t.partitions),
            Ok(MOCK_DEFAULT_PARTITIONS)
        );
        assert!("orders:0".parse::<MockTopicSpec>().is_err());
        assert!("orders:x".parse::<MockTopicSpec>().is_err());
        assert!(":3".parse::<MockTopicSpec>().is_err());
    }

    #[test]
    fn cluster_starts_on_loopback_and_creates_topics() {
        let cluster = MockCluster::with_topics(
            2,
            &[MockTopicSpec {
                name: "t".into(),
                partitions: 2,
            }],
        )
        .expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        assert_eq!(bootstrap.split(',').count(), 2, "{bootstrap}");
        assert!(
            bootstrap.split(',').all(|b| b.starts_with("127.0.0.1:")),
            "{bootstrap}"
        );
        assert!(
            cluster.create_topic("t", 2, 1).is_err(),
            "duplicate topic accepted"
        );
        cluster.set_broker_down(1).expect("broker down");
        cluster.set_broker_up(1).expect("broker up");
        cluster.set_rtt(2, Duration::from_millis(5)).expect("rtt");
        cluster.partition_set_leader("t", 0, 2).expect("leader");
        assert!(
            cluster.set_broker_down(9).is_err(),
            "unknown broker accepted"
        );
    }
}
