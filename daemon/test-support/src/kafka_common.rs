//! Helpers shared by the `kafka_*` integration tests.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use shmkafka_testkit::{consume_all_with, ConsumeOptions, ConsumedRecord};
use shmkafkad::kafka::{
    DeliveryReport, KafkaConfig, OutgoingMessage, Persistence, Producer, ProducerOptions,
    PARTITION_UNASSIGNED,
};

/// A producer for `bootstrap` with test-friendly latency, plus `extra`.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Producer {
    let mut config =
        KafkaConfig::from_pairs([("bootstrap.servers", bootstrap), ("linger.ms", "5")]);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    Producer::new(&config, ProducerOptions::default()).expect("producer")
}

/// Polls until `count` reports arrived or `timeout` passed.
pub fn poll_reports(producer: &Producer, count: usize, timeout: Duration) -> Vec<DeliveryReport> {
    let deadline = Instant::now() + timeout;
    let mut reports = Vec::new();
    while reports.len() < count && Instant::now() < deadline {
        producer.poll(Duration::from_millis(50), &mut reports);
    }
    reports
}

/// One record of the round-trip workload, with what the broker must store.
#[derive(Debug, Clone)]
pub struct Expected {
    pub seq: usize,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value_range: Option<(usize, usize)>,
    pub timestamp_ms: i64,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Fixed timestamp for the records that carry one (2023-11-14T22:13:20Z).
pub const FIXED_TS: i64 = 1_700_000_000_000;

/// Produces `count` records to `topic` (with `partitions` partitions) by
/// reference out of one arena buffer, mixing: explicit and unassigned
/// partitions, null/empty/set keys, null/empty/set values, headers with null
/// and set values, explicit and "now" timestamps. Waits for every delivery
/// report, checks them, then reads the topic back with an independent
/// consumer and checks content and per-partition order.
pub fn roundtrip(
    bootstrap: &str,
    topic_name: &str,
    partitions: i32,
    count: usize,
    extra: &[(&str, &str)],
) {
    let producer = producer(bootstrap, extra);
    let topic = producer.topic(topic_name).expect("topic");

    // The arena stands in for the shared-memory ring: values point into it
    // and it must not move or change until the reports are in.
    let mut arena = Vec::new();
    let mut expected = Vec::with_capacity(count);
    for seq in 0..count {
        let value_range = match seq % 7 {
            0 => None,                             // null value
            1 => Some((arena.len(), arena.len())), // empty value
            _ => {
                let start = arena.len();
                let body = format!("value-{seq}-{}", "x".repeat(seq % 50));
                arena.extend_from_slice(body.as_bytes());
                Some((start, arena.len()))
            }
        };
        let key = match seq % 5 {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(format!("key-{}", seq % 11).into_bytes()),
        };
        let mut headers = vec![(b"seq".to_vec(), Some(seq.to_string().into_bytes()))];
        if seq % 3 == 0 {
            headers.push((b"null-header".to_vec(), None));
            headers.push((b"empty-header".to_vec(), Some(Vec::new())));
        }
        expected.push(Expected {
            seq,
            // Half explicit partitions, half left to the partitioner.
            partition: if seq % 2 == 0 {
                (seq as i32 / 2) % partitions
            } else {
                PARTITION_UNASSIGNED
            },
            key,
            value_range,
            timestamp_ms: if seq % 4 == 0 {
                FIXED_TS + seq as i64
            } else {
                0
            },
            headers,
        });
    }

    let started = Instant::now();
    let mut reports = Vec::new();
    for e in &expected {
        let headers: Vec<(&[u8], Option<&[u8]>)> = e
            .headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_deref()))
            .collect();
        let msg = OutgoingMessage {
            partition: e.partition,
            key: e.key.as_deref(),
            value: e.value_range.map(|(s, end)| &arena[s..end]),
            timestamp_ms: e.timestamp_ms,
            headers: &headers,
            opaque: e.seq + 1000,
        };
        loop {
            // SAFETY: `arena` is neither moved nor modified until every
            // delivery report has been polled below.
            match unsafe { producer.produce_borrowed(&topic, &msg) } {
                Ok(()) => break,
                Err(shmkafkad::kafka::ProduceError::QueueFull { .. }) => {
                    producer.poll(Duration::from_millis(10), &mut reports);
                }
                Err(e) => panic!("produce {} failed: {e}", e_seq(&msg)),
            }
        }
        // `headers` (and the key) may be dropped now: librdkafka copied them.
    }
    let remaining = count - reports.len();
    reports.extend(poll_reports(&producer, remaining, Duration::from_secs(30)));
    eprintln!("{count} records acknowledged in {:?}", started.elapsed());
    assert_eq!(reports.len(), count, "missing delivery reports");
    assert_eq!(producer.in_flight(), 0);

    let mut by_opaque: HashMap<usize, &DeliveryReport> = HashMap::new();
    for report in &reports {
        assert_eq!(report.result, Ok(()), "{report:?}");
        assert_eq!(report.status, Persistence::Persisted, "{report:?}");
        assert!(
            report.offset >= 0 && report.partition >= 0 && report.partition < partitions,
            "{report:?}"
        );
        assert!(report.latency_us > 0, "{report:?}");
        assert!(
            by_opaque.insert(report.opaque, report).is_none(),
            "duplicate report {report:?}"
        );
    }
    let mut at: HashMap<(i32, i64), &Expected> = HashMap::new();
    for e in &expected {
        let report = by_opaque
            .get(&(e.seq + 1000))
            .unwrap_or_else(|| panic!("no report for seq {}", e.seq));
        if e.partition != PARTITION_UNASSIGNED {
            assert_eq!(report.partition, e.partition, "seq {}", e.seq);
        }
        at.insert((report.partition, report.offset), e);
    }
    // The arena may be dropped now; nothing references it any more.
    let arena_copy = arena.clone();
    drop(arena);

    let records = consume_all_with(
        bootstrap,
        topic_name,
        &ConsumeOptions::new(count, Duration::from_secs(30)).grace(Duration::from_millis(500)),
    )
    .expect("consume");
    assert_eq!(
        records.len(),
        count,
        "records at the broker (duplicates or losses)"
    );
    check_records(&records, &at, &arena_copy);
}

fn e_seq(msg: &OutgoingMessage<'_>) -> usize {
    msg.opaque - 1000
}

fn check_records(records: &[ConsumedRecord], at: &HashMap<(i32, i64), &Expected>, arena: &[u8]) {
    let mut last_seq_in_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for record in records {
        let e = at
            .get(&(record.partition, record.offset))
            .unwrap_or_else(|| {
                panic!(
                    "unexpected record at {}/{}",
                    record.partition, record.offset
                )
            });
        let what = format!("seq {} at {}/{}", e.seq, record.partition, record.offset);
        assert_eq!(record.key, e.key, "key of {what}");
        assert_eq!(
            record.value,
            e.value_range.map(|(s, end)| arena[s..end].to_vec()),
            "value of {what}"
        );
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = record
            .headers
            .iter()
            .map(|(n, v)| (n.clone().into_bytes(), v.clone()))
            .collect();
        assert_eq!(headers, e.headers, "headers of {what}");
        if e.timestamp_ms != 0 {
            assert_eq!(
                record.timestamp_ms,
                Some(e.timestamp_ms),
                "timestamp of {what}"
            );
        } else {
            let ts = record.timestamp_ms.unwrap_or_default();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            assert!(
                (now - ts).abs() < 120_000,
                "timestamp {ts} of {what} is not 'now'"
            );
        }
        // Per-partition order: produce order survives (one producer, in order).
        if let Some(prev) = last_seq_in_partition.insert(record.partition, e.seq) {
            assert!(
                prev < e.seq,
                "partition {} out of order: seq {prev} before {}",
                record.partition,
                e.seq
            );
        }
    }
}
