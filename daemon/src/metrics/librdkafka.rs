//! librdkafka's statistics (`statistics.interval.ms`) as `rdkafka_*`
//! metrics, one producer instance per drain thread (label `drain`).
//!
//! Field meanings are librdkafka's `STATISTICS.md`; times there are in
//! microseconds and are exported in seconds. Cumulative fields become
//! counters, current levels gauges. The document is parsed at scrape time:
//! it is the latest one librdkafka produced, so values may be up to one
//! interval old.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use serde::Deserialize;

use crate::metrics::encode::{counters, gauges, Labels};

/// The top level of the statistics document (the fields we export).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Statistics {
    /// Messages in producer queues.
    pub msg_cnt: f64,
    /// Bytes of messages in producer queues.
    pub msg_size: f64,
    /// `queue.buffering.max.messages`.
    pub msg_max: f64,
    /// `queue.buffering.max.kbytes` in bytes.
    pub msg_size_max: f64,
    /// Ops waiting to be served by poll (delivery reports among them).
    pub replyq: f64,
    /// Requests sent to brokers.
    pub tx: f64,
    /// Bytes sent to brokers.
    pub tx_bytes: f64,
    /// Responses received from brokers.
    pub rx: f64,
    /// Bytes received from brokers.
    pub rx_bytes: f64,
    /// Messages sent to brokers.
    pub txmsgs: f64,
    /// Message bytes sent to brokers.
    pub txmsg_bytes: f64,
    /// Per broker, by librdkafka's broker name.
    pub brokers: BTreeMap<String, Broker>,
    /// Per topic.
    pub topics: BTreeMap<String, Topic>,
}

/// One broker connection.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Broker {
    /// Broker id (-1 for bootstrap and internal brokers).
    pub nodeid: i64,
    /// `configured`, `learned`, `internal` or `logical`.
    pub source: String,
    /// Connection state; `UP` when usable.
    pub state: String,
    /// Requests waiting to be sent.
    pub outbuf_cnt: f64,
    /// Messages waiting to be sent.
    pub outbuf_msg_cnt: f64,
    /// Requests sent, awaiting a response.
    pub waitresp_cnt: f64,
    /// Messages sent, awaiting a response.
    pub waitresp_msg_cnt: f64,
    /// Requests sent.
    pub tx: f64,
    /// Bytes sent.
    pub txbytes: f64,
    /// Transmission errors.
    pub txerrs: f64,
    /// Request retries.
    pub txretries: f64,
    /// Requests timed out.
    pub req_timeouts: f64,
    /// Responses received.
    pub rx: f64,
    /// Bytes received.
    pub rxbytes: f64,
    /// Receive errors.
    pub rxerrs: f64,
    /// Connection attempts.
    pub connects: f64,
    /// Disconnects.
    pub disconnects: f64,
    /// Round-trip time, microseconds.
    pub rtt: Window,
    /// Time messages wait in the producer queue, microseconds.
    pub int_latency: Window,
    /// Time requests wait in the output buffer, microseconds.
    pub outbuf_latency: Window,
}

/// A rolling window of one statistic.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Window {
    /// Average.
    pub avg: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One topic.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Topic {
    /// Batch sizes in bytes.
    pub batchsize: Window,
    /// Messages per batch.
    pub batchcnt: Window,
}

/// Parses a statistics document; `None` if it is not one (serde would take
/// a JSON array for a struct, so the top level must be an object).
pub fn parse(json: &str) -> Option<Statistics> {
    match serde_json::from_str(json).ok()? {
        value @ serde_json::Value::Object(_) => serde_json::from_value(value).ok(),
        _ => None,
    }
}

/// Writes the `rdkafka_*` families for the parsed documents, each with the
/// index of the drain thread whose producer made it.
pub fn encode(encoder: &mut DescriptorEncoder<'_>, stats: &[(usize, Statistics)]) -> fmt::Result {
    let drain = |i: usize| -> Labels { vec![("drain", i.to_string())] };
    type Field = fn(&Statistics) -> f64;
    let top_gauges: [(&str, &str, Field); 6] = [
        ("rdkafka_msg_cnt", "Messages in the producer queues", |s| {
            s.msg_cnt
        }),
        (
            "rdkafka_msg_size_bytes",
            "Bytes of messages in the producer queues",
            |s| s.msg_size,
        ),
        (
            "rdkafka_msg_max",
            "Most messages the producer queues hold (queue.buffering.max.messages)",
            |s| s.msg_max,
        ),
        (
            "rdkafka_msg_size_max_bytes",
            "Most bytes the producer queues hold (queue.buffering.max.kbytes)",
            |s| s.msg_size_max,
        ),
        (
            "rdkafka_replyq",
            "Events waiting to be served by poll (delivery reports among them)",
            |s| s.replyq,
        ),
        (
            "rdkafka_brokers_up",
            "Brokers whose connection is UP",
            |s| {
                s.brokers
                    .values()
                    .filter(|b| reported(b) && b.state == "UP")
                    .count() as f64
            },
        ),
    ];
    for (name, help, field) in top_gauges {
        gauges(
            encoder,
            name,
            help,
            stats.iter().map(|(i, s)| (drain(*i), field(s))),
        )?;
    }
    let top_counters: [(&str, &str, Field); 6] = [
        ("rdkafka_tx_requests", "Requests sent to brokers", |s| s.tx),
        ("rdkafka_tx_bytes", "Bytes sent to brokers", |s| s.tx_bytes),
        (
            "rdkafka_rx_responses",
            "Responses received from brokers",
            |s| s.rx,
        ),
        ("rdkafka_rx_bytes", "Bytes received from brokers", |s| {
            s.rx_bytes
        }),
        ("rdkafka_txmsgs", "Messages sent to brokers", |s| s.txmsgs),
        (
            "rdkafka_txmsg_bytes",
            "Message bytes sent to brokers",
            |s| s.txmsg_bytes,
        ),
    ];
    for (name, help, field) in top_counters {
        counters(
            encoder,
            name,
            help,
            stats.iter().map(|(i, s)| (drain(*i), field(s))),
        )?;
    }

    let brokers = || {
        stats.iter().flat_map(|(i, s)| {
            s.brokers
                .iter()
                .filter(|(_, b)| reported(b))
                .map(move |(name, b)| {
                    let labels: Labels = vec![
                        ("drain", i.to_string()),
                        ("broker", name.clone()),
                        ("nodeid", b.nodeid.to_string()),
                    ];
                    (labels, b)
                })
        })
    };
    type BrokerField = fn(&Broker) -> f64;
    let seconds = |us: f64| us / 1e6;
    let broker_gauges: [(&str, &str, BrokerField); 10] = [
        (
            "rdkafka_broker_up",
            "1 while the broker connection is UP",
            |b| f64::from(u8::from(b.state == "UP")),
        ),
        (
            "rdkafka_broker_outbuf_cnt",
            "Requests waiting to be sent to the broker",
            |b| b.outbuf_cnt,
        ),
        (
            "rdkafka_broker_outbuf_msg_cnt",
            "Messages waiting to be sent to the broker",
            |b| b.outbuf_msg_cnt,
        ),
        (
            "rdkafka_broker_waitresp_cnt",
            "Requests sent, awaiting the broker's response",
            |b| b.waitresp_cnt,
        ),
        (
            "rdkafka_broker_waitresp_msg_cnt",
            "Messages sent, awaiting the broker's response",
            |b| b.waitresp_msg_cnt,
        ),
        (
            "rdkafka_broker_rtt_avg_seconds",
            "Broker round-trip time, average over the statistics window",
            |b| b.rtt.avg,
        ),
        (
            "rdkafka_broker_rtt_p99_seconds",
            "Broker round-trip time, 99th percentile over the statistics window",
            |b| b.rtt.p99,
        ),
        (
            "rdkafka_broker_int_latency_avg_seconds",
            "Time messages waited in the producer queue, average",
            |b| b.int_latency.avg,
        ),
        (
            "rdkafka_broker_int_latency_p99_seconds",
            "Time messages waited in the producer queue, 99th percentile",
            |b| b.int_latency.p99,
        ),
        (
            "rdkafka_broker_outbuf_latency_p99_seconds",
            "Time requests waited in the output buffer, 99th percentile",
            |b| b.outbuf_latency.p99,
        ),
    ];
    for (name, help, field) in broker_gauges {
        let in_seconds = name.ends_with("_seconds");
        gauges(
            encoder,
            name,
            help,
            brokers().map(|(labels, b)| {
                let v = field(b);
                (labels, if in_seconds { seconds(v) } else { v })
            }),
        )?;
    }
    let broker_counters: [(&str, &str, BrokerField); 10] = [
        (
            "rdkafka_broker_tx_requests",
            "Requests sent to the broker",
            |b| b.tx,
        ),
        ("rdkafka_broker_tx_bytes", "Bytes sent to the broker", |b| {
            b.txbytes
        }),
        (
            "rdkafka_broker_tx_errors",
            "Transmission errors to the broker",
            |b| b.txerrs,
        ),
        (
            "rdkafka_broker_tx_retries",
            "Requests retried to the broker",
            |b| b.txretries,
        ),
        (
            "rdkafka_broker_req_timeouts",
            "Requests to the broker that timed out",
            |b| b.req_timeouts,
        ),
        (
            "rdkafka_broker_rx_responses",
            "Responses received from the broker",
            |b| b.rx,
        ),
        (
            "rdkafka_broker_rx_bytes",
            "Bytes received from the broker",
            |b| b.rxbytes,
        ),
        (
            "rdkafka_broker_rx_errors",
            "Receive errors from the broker",
            |b| b.rxerrs,
        ),
        (
            "rdkafka_broker_connects",
            "Connection attempts to the broker",
            |b| b.connects,
        ),
        (
            "rdkafka_broker_disconnects",
            "Disconnects from the broker",
            |b| b.disconnects,
        ),
    ];
    for (name, help, field) in broker_counters {
        counters(
            encoder,
            name,
            help,
            brokers().map(|(labels, b)| (labels, field(b))),
        )?;
    }

    let topics = || {
        stats.iter().flat_map(|(i, s)| {
            s.topics.iter().map(move |(name, t)| {
                let labels: Labels = vec![("drain", i.to_string()), ("topic", name.clone())];
                (labels, t)
            })
        })
    };
    type TopicField = fn(&Topic) -> f64;
    let topic_gauges: [(&str, &str, TopicField); 3] = [
        (
            "rdkafka_topic_batchsize_avg_bytes",
            "Produce batch size in bytes, average",
            |t| t.batchsize.avg,
        ),
        (
            "rdkafka_topic_batchsize_p99_bytes",
            "Produce batch size in bytes, 99th percentile",
            |t| t.batchsize.p99,
        ),
        (
            "rdkafka_topic_batchcnt_avg",
            "Messages per produce batch, average",
            |t| t.batchcnt.avg,
        ),
    ];
    for (name, help, field) in topic_gauges {
        gauges(
            encoder,
            name,
            help,
            topics().map(|(labels, t)| (labels, field(t))),
        )?;
    }
    Ok(())
}

/// librdkafka's internal and logical brokers are not connections.
fn reported(broker: &Broker) -> bool {
    !matches!(broker.source.as_str(), "internal" | "logical")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Fixed(Vec<(usize, String)>);

    impl prometheus_client::collector::Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
            let parsed: Vec<_> = self
                .0
                .iter()
                .filter_map(|(i, json)| Some((*i, parse(json)?)))
                .collect();
            encode(&mut encoder, &parsed)
        }
    }

    /// Trimmed from a real document of librdkafka 2.x.
    const DOCUMENT: &str = r#"{
        "name": "rdkafka#producer-1", "type": "producer", "ts": 1, "time": 1, "age": 5000000,
        "replyq": 2, "msg_cnt": 7, "msg_size": 700, "msg_max": 2000000, "msg_size_max": 1073741824,
        "tx": 10, "tx_bytes": 2000, "rx": 9, "rx_bytes": 900, "txmsgs": 42, "txmsg_bytes": 4200,
        "brokers": {
            "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "source": "learned",
                "state": "UP", "outbuf_cnt": 0, "outbuf_msg_cnt": 3, "waitresp_cnt": 1,
                "waitresp_msg_cnt": 5, "tx": 10, "txbytes": 2000, "txerrs": 1, "txretries": 2,
                "req_timeouts": 0, "rx": 9, "rxbytes": 900, "rxerrs": 0, "connects": 1,
                "disconnects": 0, "rtt": {"min": 100, "max": 900, "avg": 250, "p99": 800},
                "int_latency": {"avg": 5000, "p99": 6000}, "outbuf_latency": {"avg": 1, "p99": 20}},
            ":0/internal": {"name": ":0/internal", "nodeid": -1, "source": "internal", "state": "UP"}
        },
        "topics": {"orders": {"topic": "orders", "batchsize": {"avg": 1000, "p99": 4000},
            "batchcnt": {"avg": 10, "p99": 40}, "partitions": {}}}
    }"#;

    fn render(docs: Vec<(usize, String)>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(docs)));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn document_becomes_rdkafka_metrics() {
        let text = render(vec![(0, DOCUMENT.to_owned())]);
        for line in [
            "rdkafka_msg_cnt{drain=\"0\"} 7",
            "rdkafka_txmsgs_total{drain=\"0\"} 42",
            "rdkafka_brokers_up{drain=\"0\"} 1",
            "rdkafka_broker_outbuf_msg_cnt{drain=\"0\",broker=\"127.0.0.1:9092/1\",nodeid=\"1\"} 3",
            "rdkafka_broker_tx_errors_total{drain=\"0\",broker=\"127.0.0.1:9092/1\",nodeid=\"1\"} 1",
            "rdkafka_broker_rtt_avg_seconds{drain=\"0\",broker=\"127.0.0.1:9092/1\",nodeid=\"1\"} 0.00025",
            "rdkafka_broker_rtt_p99_seconds{drain=\"0\",broker=\"127.0.0.1:9092/1\",nodeid=\"1\"} 0.0008",
            "rdkafka_topic_batchsize_avg_bytes{drain=\"0\",topic=\"orders\"} 1000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("internal"), "{text}");
    }

    #[test]
    fn garbage_and_missing_documents_are_skipped() {
        assert!(parse("not json").is_none());
        assert_eq!(render(vec![(0, "[1]".to_owned())]), "");
        let partial = render(vec![(1, "{\"msg_cnt\": 3}".to_owned())]);
        assert!(
            partial.contains("rdkafka_msg_cnt{drain=\"1\"} 3"),
            "{partial}"
        );
    }
}
