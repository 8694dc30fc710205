//! The progress topic: what its records say, and reading it back.
//!
//! Keys (UTF-8, prefixed with the daemon id so daemons share one topic):
//! - `<daemon_id>/ring/<ring id, 16 hex digits>`: the ring's committed
//!   position, as JSON `{"position": N, "client": "name"}`; a tombstone
//!   (null value) once the ring is retired;
//! - `<daemon_id>/producer/<index>`: a transactional id in use,
//!   `{"transactional_id": "..."}`, written before that producer's first
//!   transaction, so a later start with fewer drain threads still fences it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{Committed, Settings};
use crate::kafka::KafkaConfig;

/// Longest value the reader accepts: anything longer is not ours.
const MAX_VALUE_LEN: usize = 4096;

/// The key of ring `ring_id`'s position.
pub fn ring_key(daemon_id: &str, ring_id: u64) -> String {
    format!("{daemon_id}/ring/{ring_id:016x}")
}

/// The key that records transactional id `index` as used.
pub fn producer_key(daemon_id: &str, index: usize) -> String {
    format!("{daemon_id}/producer/{index}")
}

/// Most unfinished records a position record lists; a ring with more
/// waiting for the spool holds its transaction's commit back.
pub const MAX_UNFINISHED: usize = 1024;

/// The value of a ring's position record.
#[derive(Debug, Serialize, Deserialize)]
pub struct RingPosition {
    /// Every record before this stream position is finished...
    pub position: u64,
    /// ...except these (see [`Committed::unfinished`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unfinished: Vec<u64>,
    /// The client's name, for people reading the topic.
    #[serde(default)]
    pub client: String,
}

/// The value of a producer record.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProducerInUse {
    /// The id, for people reading the topic.
    pub transactional_id: String,
}

/// What one daemon id's records in the progress topic say.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Committed positions by ring identity.
    pub positions: HashMap<u64, Committed>,
    /// Drain-thread indexes whose transactional ids were ever used.
    pub producers: BTreeSet<usize>,
}

impl Loaded {
    /// Applies one record (latest wins, as compaction keeps it).
    fn apply(&mut self, daemon_id: &str, key: &[u8], value: Option<&[u8]>) {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(daemon_id))
            .and_then(|k| k.strip_prefix('/'))
        else {
            return; // Another daemon's.
        };
        let value = value.filter(|v| v.len() <= MAX_VALUE_LEN);
        if let Some(ring) = rest.strip_prefix("ring/") {
            let Ok(ring_id) = u64::from_str_radix(ring, 16) else {
                warn!(key = rest, "progress topic: unreadable ring key ignored");
                return;
            };
            match value.map(serde_json::from_slice::<RingPosition>) {
                None => {
                    self.positions.remove(&ring_id);
                }
                Some(Ok(p)) if p.unfinished.len() <= MAX_UNFINISHED => {
                    self.positions.insert(
                        ring_id,
                        Committed {
                            position: p.position,
                            unfinished: p.unfinished,
                        },
                    );
                }
                Some(Ok(_)) => {
                    warn!(
                        key = rest,
                        "progress topic: position with too many exceptions ignored"
                    )
                }
                Some(Err(e)) => {
                    warn!(key = rest, error = %e, "progress topic: unreadable position ignored")
                }
            }
        } else if let Some(index) = rest.strip_prefix("producer/") {
            match index.parse() {
                // Bounded like `drain.threads`: a stray record cannot make a
                // start fence millions of ids.
                Ok(i) if i < crate::config::MAX_DRAIN_THREADS => {
                    self.producers.insert(i);
                }
                _ => warn!(
                    key = rest,
                    "progress topic: unreadable producer key ignored"
                ),
            }
        }
    }
}

/// Whether a librdkafka property concerns reaching and authenticating to
/// the cluster (and so applies to the progress reader and admin client
/// too), as opposed to producing.
fn is_connection_property(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "bootstrap.servers",
        "metadata.broker.list",
        "security.protocol",
        "ssl.",
        "ssl_",
        "sasl.",
        "enable.ssl.",
        "enable.sasl.",
        "https.",
        "client.id",
        "client.dns.lookup",
        "client.rack",
        "socket.",
        "broker.address.",
        "broker.version.fallback",
        "api.version.",
        "reconnect.backoff",
        "connections.max.idle.ms",
        "topic.metadata.",
        "metadata.max.age.ms",
        "debug",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p))
}

/// A librdkafka client configuration (rust-rdkafka's) with the connection
/// and security properties of `kafka`.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.entries() {
        if is_connection_property(key) {
            config.set(key, value);
        }
    }
    config
}

/// Failure to read the progress topic.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// librdkafka refused or failed a call.
    #[error("{0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic is not in the cluster's metadata.
    #[error("progress topic {0:?} does not exist")]
    NoTopic(String),
    /// Records stayed unreadable (e.g. another producer's transaction on the
    /// topic stayed open) until the deadline.
    #[error("progress topic not read to its end within {0:?}")]
    Timeout(Duration),
}

/// Which records [`read`] sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only those of committed transactions (positions).
    ReadCommitted,
    /// Also those of open or aborted ones (which ids were ever used).
    ReadUncommitted,
}

/// Reads this daemon's records of the progress topic up to the end the
/// topic has now. For positions, read committed, after every producer that
/// may have an open transaction on the topic is fenced: their transactions
/// are then finished, so what is committed is final.
pub fn read(
    settings: &Settings,
    isolation: Isolation,
    timeout: Duration,
) -> Result<Loaded, ReadError> {
    let deadline = Instant::now() + timeout;
    let topic = settings.progress_topic.as_str();
    let consumer: BaseConsumer = client_config(&settings.kafka)
        .set(
            "group.id",
            format!("shmkafkad-{}-progress", settings.daemon_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "isolation.level",
            match isolation {
                Isolation::ReadCommitted => "read_committed",
                Isolation::ReadUncommitted => "read_uncommitted",
            },
        )
        .set("auto.offset.reset", "earliest")
        .create()?;
    // Every call gets what is left of the one budget.
    let left = || deadline.saturating_duration_since(Instant::now());
    let metadata = consumer.fetch_metadata(Some(topic), left())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(ReadError::NoTopic(topic.to_owned()));
    }
    // The end to read to, per partition: the high watermark now. Records a
    // transaction still open (another daemon's) holds back are waited for:
    // `read_committed` stops at the first open transaction, and what lies
    // behind it may be ours.
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, left())?;
        if high > low {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    let mut loaded = Loaded::default();
    if ends.is_empty() {
        return Ok(loaded);
    }
    consumer.assign(&assignment)?;
    let daemon_id = settings.daemon_id.as_str();
    loop {
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            match result {
                Ok(message) => {
                    loaded.apply(daemon_id, message.key().unwrap_or(&[]), message.payload())
                }
                Err(e) => warn!(error = %e, "reading the progress topic"),
            }
        }
        // The position passes control records (transaction markers) too,
        // so it reaches the high watermark once everything is read.
        let positions = consumer.position()?;
        let done = ends.iter().all(|(&partition, &end)| {
            positions
                .find_partition(topic, partition)
                .and_then(|p| match p.offset() {
                    Offset::Offset(o) => Some(o >= end),
                    _ => None,
                })
                .unwrap_or(false)
        });
        if done {
            return Ok(loaded);
        }
        if Instant::now() >= deadline {
            return Err(ReadError::Timeout(timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_record_per_key_wins_and_other_daemons_are_ignored() {
        let mut loaded = Loaded::default();
        let pos = |p: u64| {
            serde_json::to_vec(&RingPosition {
                position: p,
                unfinished: if p == 250 { vec![48, 96] } else { vec![] },
                client: "c".into(),
            })
            .unwrap()
        };
        loaded.apply("host-a", ring_key("host-a", 7).as_bytes(), Some(&pos(100)));
        loaded.apply("host-a", ring_key("host-a", 7).as_bytes(), Some(&pos(250)));
        loaded.apply("host-a", ring_key("host-ab", 8).as_bytes(), Some(&pos(1)));
        loaded.apply("host-a", ring_key("host-b", 9).as_bytes(), Some(&pos(1)));
        loaded.apply("host-a", ring_key("host-a", 10).as_bytes(), Some(&pos(5)));
        loaded.apply("host-a", ring_key("host-a", 10).as_bytes(), None);
        loaded.apply("host-a", producer_key("host-a", 3).as_bytes(), Some(b"{}"));
        loaded.apply(
            "host-a",
            producer_key("host-a", 1 << 40).as_bytes(),
            Some(b"{}"),
        );
        loaded.apply("host-a", b"host-a/ring/zz", Some(&pos(5)));
        loaded.apply(
            "host-a",
            ring_key("host-a", 11).as_bytes(),
            Some(b"not json"),
        );
        assert_eq!(
            loaded.positions,
            HashMap::from([(
                7,
                Committed {
                    position: 250,
                    unfinished: vec![48, 96]
                }
            )])
        );
        assert_eq!(loaded.producers, BTreeSet::from([3]));
    }

    #[test]
    fn only_connection_properties_reach_the_reader() {
        for key in [
            "bootstrap.servers",
            "security.protocol",
            "ssl.ca.location",
            "sasl.password",
        ] {
            assert!(is_connection_property(key), "{key}");
        }
        for key in [
            "acks",
            "linger.ms",
            "enable.idempotence",
            "compression.type",
            "transaction.timeout.ms",
        ] {
            assert!(!is_connection_property(key), "{key}");
        }
    }
}
