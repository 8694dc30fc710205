//! librdkafka's statistics (`statistics.interval.ms`) as `rdkafka_*`
//! metrics, one producer instance per drain thread (label `drain`).
//!
//! Field meanings are librdkafka's `STATISTICS.md`; times there are in
//! microseconds and are exported in seconds. Cumulative fields become
//! counters, current levels gauges. The document is parsed at scrape time:
//! it is the latest one librdkafka produced, so values may be up to one
//! interval old. The document is read into the `rdkafka` crate's statistics
//! structs, which hold every field exported here.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
pub use rdkafka::statistics::{Broker, Statistics, Topic, Window};

use crate::metrics::encode::{counters, gauges, Labels};

/// Topics exported per drain thread (the first by name): clients choose
/// topic names, so the label set is capped like every other.
pub const MAX_TOPIC_SERIES: usize = 128;

/// Parses a statistics document; `None` if it is not one. `rdkafka`'s
/// structs cover every field exported here; they need a whole document
/// (every field librdkafka writes), which is what librdkafka hands over.
pub fn parse(json: &str) -> Option<Statistics> {
    serde_json::from_str(json).ok()
}

/// Writes the `rdkafka_*` families for the parsed documents, each with the
/// index of the drain thread whose producer made it.
pub fn encode(encoder: &mut DescriptorEncoder<'_>, stats: &[(usize, Statistics)]) -> fmt::Result {
    let drain = |i: usize| -> Labels { vec![("drain", i.to_string())] };
    type Field = fn(&Statistics) -> f64;
    let top_gauges: [(&str, &str, Field); 6] = [
        (
            "rdkafka_producer_queue_messages",
            "Messages in the producer queues",
            |s| s.msg_cnt as f64,
        ),
        (
            "rdkafka_producer_queue_bytes",
            "Bytes of messages in the producer queues",
            |s| s.msg_size as f64,
        ),
        (
            "rdkafka_producer_queue_max_messages",
            "Most messages the producer queues hold (queue.buffering.max.messages)",
            |s| s.msg_max as f64,
        ),
        (
            "rdkafka_producer_queue_max_bytes",
            "Most bytes the producer queues hold (queue.buffering.max.kbytes)",
            |s| s.msg_size_max as f64,
        ),
        (
            "rdkafka_reply_queue_events",
            "Events waiting to be served by poll (delivery reports among them)",
            |s| s.replyq as f64,
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
        ("rdkafka_tx_requests", "Requests sent to brokers", |s| {
            s.tx as f64
        }),
        ("rdkafka_tx_bytes", "Bytes sent to brokers", |s| {
            s.tx_bytes as f64
        }),
        (
            "rdkafka_rx_responses",
            "Responses received from brokers",
            |s| s.rx as f64,
        ),
        ("rdkafka_rx_bytes", "Bytes received from brokers", |s| {
            s.rx_bytes as f64
        }),
        ("rdkafka_tx_messages", "Messages sent to brokers", |s| {
            s.txmsgs as f64
        }),
        (
            "rdkafka_tx_message_bytes",
            "Message bytes sent to brokers",
            |s| s.txmsg_bytes as f64,
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
                        ("node_id", b.nodeid.to_string()),
                    ];
                    (labels, b)
                })
        })
    };
    type BrokerField = fn(&Broker) -> f64;
    let seconds = |us: f64| us / 1e6;
    let broker_gauges: [(&str, &str, BrokerField); 11] = [
        (
            "rdkafka_broker_state_age_seconds",
            "Time since the broker connection last changed state",
            |b| b.stateage as f64,
        ),
        (
            "rdkafka_broker_up",
            "1 while the broker connection is UP",
            |b| f64::from(u8::from(b.state == "UP")),
        ),
        (
            "rdkafka_broker_outbuf_requests",
            "Requests waiting to be sent to the broker",
            |b| b.outbuf_cnt as f64,
        ),
        (
            "rdkafka_broker_outbuf_messages",
            "Messages waiting to be sent to the broker",
            |b| b.outbuf_msg_cnt as f64,
        ),
        (
            "rdkafka_broker_waitresp_requests",
            "Requests sent, awaiting the broker's response",
            |b| b.waitresp_cnt as f64,
        ),
        (
            "rdkafka_broker_waitresp_messages",
            "Messages sent, awaiting the broker's response",
            |b| b.waitresp_msg_cnt as f64,
        ),
        (
            "rdkafka_broker_rtt_avg_seconds",
            "Broker round-trip time, average over the last statistics interval (a snapshot)",
            |b| window(&b.rtt).avg as f64,
        ),
        (
            "rdkafka_broker_rtt_p99_seconds",
            "Broker round-trip time, 99th percentile over the last statistics interval (a snapshot)",
            |b| window(&b.rtt).p99 as f64,
        ),
        (
            "rdkafka_broker_int_latency_avg_seconds",
            "Time messages waited in the producer queue, average over the last statistics interval (a snapshot)",
            |b| window(&b.int_latency).avg as f64,
        ),
        (
            "rdkafka_broker_int_latency_p99_seconds",
            "Time messages waited in the producer queue, 99th percentile over the last statistics interval (a snapshot)",
            |b| window(&b.int_latency).p99 as f64,
        ),
        (
            "rdkafka_broker_outbuf_latency_p99_seconds",
            "Time requests waited in the output buffer, 99th percentile over the last statistics interval (a snapshot)",
            |b| window(&b.outbuf_latency).p99 as f64,
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
            |b| b.tx as f64,
        ),
        ("rdkafka_broker_tx_bytes", "Bytes sent to the broker", |b| {
            b.txbytes as f64
        }),
        (
            "rdkafka_broker_tx_errors",
            "Transmission errors to the broker",
            |b| b.txerrs as f64,
        ),
        (
            "rdkafka_broker_tx_retries",
            "Requests retried to the broker",
            |b| b.txretries as f64,
        ),
        (
            "rdkafka_broker_request_timeouts",
            "Requests to the broker that timed out",
            |b| b.req_timeouts as f64,
        ),
        (
            "rdkafka_broker_rx_responses",
            "Responses received from the broker",
            |b| b.rx as f64,
        ),
        (
            "rdkafka_broker_rx_bytes",
            "Bytes received from the broker",
            |b| b.rxbytes as f64,
        ),
        (
            "rdkafka_broker_rx_errors",
            "Receive errors from the broker",
            |b| b.rxerrs as f64,
        ),
        (
            "rdkafka_broker_connects",
            "Connection attempts to the broker",
            |b| b.connects.unwrap_or(0) as f64,
        ),
        (
            "rdkafka_broker_disconnects",
            "Disconnects from the broker",
            |b| b.disconnects.unwrap_or(0) as f64,
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
            let mut names: Vec<&String> = s.topics.keys().collect();
            names.sort();
            names.truncate(MAX_TOPIC_SERIES);
            names.into_iter().map(move |name| {
                let labels: Labels = vec![("drain", i.to_string()), ("topic", name.clone())];
                (labels, &s.topics[name])
            })
        })
    };
    type TopicField = fn(&Topic) -> f64;
    let topic_gauges: [(&str, &str, TopicField); 3] = [
        (
            "rdkafka_topic_batch_size_avg_bytes",
            "Produce batch size in bytes, average over the last statistics interval (a snapshot)",
            |t| t.batchsize.avg as f64,
        ),
        (
            "rdkafka_topic_batch_size_p99_bytes",
            "Produce batch size in bytes, 99th percentile over the last statistics interval (a snapshot)",
            |t| t.batchsize.p99 as f64,
        ),
        (
            "rdkafka_topic_batch_messages_avg",
            "Messages per produce batch, average over the last statistics interval (a snapshot)",
            |t| t.batchcnt.avg as f64,
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

/// A broker's window, or zeros where librdkafka left it out.
fn window(w: &Option<Window>) -> Window {
    w.clone().unwrap_or_default()
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

    /// A whole document as librdkafka writes it (every field present),
    /// with the values the test reads set.
    fn document() -> String {
        let up = Broker {
            name: "127.0.0.1:9092/1".into(),
            nodeid: 1,
            source: "learned".into(),
            state: "UP".into(),
            stateage: 2_000_000,
            outbuf_msg_cnt: 3,
            waitresp_cnt: 1,
            waitresp_msg_cnt: 5,
            tx: 10,
            txbytes: 2000,
            txerrs: 1,
            txretries: 2,
            connects: Some(1),
            rtt: Some(Window {
                avg: 250,
                p99: 800,
                ..Window::default()
            }),
            ..Broker::default()
        };
        let internal = Broker {
            name: ":0/internal".into(),
            nodeid: -1,
            source: "internal".into(),
            state: "UP".into(),
            ..Broker::default()
        };
        let topic = Topic {
            topic: "orders".into(),
            batchsize: Window {
                avg: 1000,
                p99: 4000,
                ..Window::default()
            },
            ..Topic::default()
        };
        let stats = Statistics {
            name: "rdkafka#producer-1".into(),
            client_type: "producer".into(),
            msg_cnt: 7,
            txmsgs: 42,
            brokers: [
                ("127.0.0.1:9092/1".to_owned(), up),
                (":0/internal".to_owned(), internal),
            ]
            .into(),
            topics: [("orders".to_owned(), topic)].into(),
            ..Statistics::default()
        };
        serde_json::to_string(&stats).unwrap()
    }

    fn render(docs: Vec<(usize, String)>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(docs)));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn document_becomes_rdkafka_metrics() {
        let text = render(vec![(0, document())]);
        for line in [
            "rdkafka_producer_queue_messages{drain=\"0\"} 7",
            "rdkafka_tx_messages_total{drain=\"0\"} 42",
            "rdkafka_brokers_up{drain=\"0\"} 1",
            "rdkafka_broker_outbuf_messages{drain=\"0\",broker=\"127.0.0.1:9092/1\",node_id=\"1\"} 3",
            "rdkafka_broker_tx_errors_total{drain=\"0\",broker=\"127.0.0.1:9092/1\",node_id=\"1\"} 1",
            "rdkafka_broker_rtt_avg_seconds{drain=\"0\",broker=\"127.0.0.1:9092/1\",node_id=\"1\"} 0.00025",
            "rdkafka_broker_rtt_p99_seconds{drain=\"0\",broker=\"127.0.0.1:9092/1\",node_id=\"1\"} 0.0008",
            "rdkafka_broker_state_age_seconds{drain=\"0\",broker=\"127.0.0.1:9092/1\",node_id=\"1\"} 2",
            "rdkafka_topic_batch_size_avg_bytes{drain=\"0\",topic=\"orders\"} 1000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("internal"), "{text}");
    }

    #[test]
    fn topic_series_are_capped() {
        let mut stats: Statistics = serde_json::from_str(&document()).unwrap();
        let topic = stats.topics["orders"].clone();
        for i in 0..1000 {
            stats.topics.insert(format!("t{i:04}"), topic.clone());
        }
        let text = render(vec![(0, serde_json::to_string(&stats).unwrap())]);
        let series = text
            .lines()
            .filter(|l| l.starts_with("rdkafka_topic_batch_size_avg_bytes{"))
            .count();
        assert_eq!(series, MAX_TOPIC_SERIES);
    }

    #[test]
    fn garbage_and_partial_documents_are_skipped() {
        assert!(parse("not json").is_none());
        assert_eq!(render(vec![(0, "[1]".to_owned())]), "");
        assert_eq!(render(vec![(1, "{\"msg_cnt\": 3}".to_owned())]), "");
    }
}
