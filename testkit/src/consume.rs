//! Reads back what arrived at a broker, with rust-rdkafka's `BaseConsumer`
//! (an independent client, so a test does not verify our producer with our
//! own code).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::process::unique_name;
use crate::TestkitError;

/// One record as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key; `None` is a Kafka null key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is a Kafka null value (tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order; a `None` value is a null header value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Record timestamp in ms (create or log-append time), if any.
    pub timestamp_ms: Option<i64>,
}

/// How [`consume_all_with`] reads.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Stop once this many records arrived (then the grace period runs).
    pub expected: usize,
    /// Give up after this long, returning what arrived.
    pub timeout: Duration,
    /// After `expected` records, keep reading this long to catch extra ones
    /// (duplicates). Zero returns immediately.
    pub grace: Duration,
    /// Extra librdkafka consumer properties (e.g. `fetch.wait.max.ms`).
    pub properties: Vec<(String, String)>,
}

impl ConsumeOptions {
    /// Read `expected` records within `timeout`, no grace period.
    pub fn new(expected: usize, timeout: Duration) -> Self {
        Self {
            expected,
            timeout,
            grace: Duration::ZERO,
            properties: Vec::new(),
        }
    }

    /// Sets the grace period after `expected` records.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// Reads every partition of `topic` from the beginning until `expected`
/// records arrived or `timeout` passed; returns them sorted by partition and
/// offset (so per-partition order is the log's order).
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, TestkitError> {
    consume_all_with(bootstrap, topic, &ConsumeOptions::new(expected, timeout))
}

/// [`consume_all`] with a grace period and extra properties.
pub fn consume_all_with(
    bootstrap: &str,
    topic: &str,
    options: &ConsumeOptions,
) -> Result<Vec<ConsumedRecord>, TestkitError> {
    let deadline = Instant::now() + options.timeout;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // Required by librdkafka for a consumer even when only assigning;
        // unique so no committed offsets are ever shared.
        .set("group.id", unique_name("shmkafka-testkit"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in &options.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(TestkitError::kafka("creating the verifying consumer"))?;

    let partitions = wait_for_partitions(&consumer, topic, deadline)?;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(TestkitError::kafka("building the assignment"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(TestkitError::kafka(format!("assigning {topic}")))?;

    let mut records = Vec::with_capacity(options.expected);
    let mut stop_at = deadline;
    let mut grace_started = false;
    while Instant::now() < stop_at {
        if !grace_started && records.len() >= options.expected {
            if options.grace.is_zero() {
                break;
            }
            grace_started = true;
            stop_at = Instant::now() + options.grace;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => records.push(to_record(&message)),
            // Transient fetch errors (broker restarting, leader moving) are
            // retried by librdkafka; the count check is the verdict.
            Some(Err(error)) => eprintln!("shmkafka-testkit: consumer error on {topic}: {error}"),
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

fn wait_for_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: Instant,
) -> Result<Vec<i32>, TestkitError> {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last_problem =
            match consumer.fetch_metadata(Some(topic), remaining.min(Duration::from_secs(5))) {
                Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        return Ok(t.partitions().iter().map(|p| p.id()).collect());
                    }
                    Some(t) => format!(
                        "topic metadata error {:?}, {} partitions",
                        t.error(),
                        t.partitions().len()
                    ),
                    None => "topic missing from metadata".to_owned(),
                },
                Err(error) => error.to_string(),
            };
        if Instant::now() >= deadline {
            return Err(TestkitError::Child {
                what: format!("metadata for {topic}"),
                detail: last_problem,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn to_record<M: Message>(message: &M) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}
