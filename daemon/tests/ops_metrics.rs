//! The Prometheus endpoint: after a client sent N records and flushed, the
//! scraped counters say exactly what the test sent and the broker stored
//! (produced == acknowledged == N, nothing failed, the ring empty again,
//! N latency observations), librdkafka's statistics show up as
//! `rdkafka_*`, and anything but `GET /metrics` is a 404.

use shmkafkad_test_support::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, test_dir};
use shmkafka_client::{Message, Producer, ProducerOptions};
use shmkafka_testkit::{consume_all, free_port, MockBrokerProcess};

const RECORDS: usize = 500;
const RING: usize = 1 << 20;

/// A scrape: the HTTP status line, the headers and the samples by
/// `name{labels}` exactly as exposed.
struct Scrape {
    status: String,
    head: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(port: u16, path: &str) -> Scrape {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP head");
        let ok = head.starts_with("HTTP/1.1 200 ");
        let samples = body
            .lines()
            .filter(|_| ok)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("sample line");
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v
                        .parse()
                        .unwrap_or_else(|_| panic!("sample value in {l:?}")),
                };
                (name.to_owned(), value)
            })
            .collect();
        Scrape {
            status: head.lines().next().unwrap_or("").to_owned(),
            head: head.to_owned(),
            samples,
        }
    }

    /// The one sample of `name` whose labels contain every `label="value"`
    /// in `labels`.
    fn value(&self, name: &str, labels: &[&str]) -> f64 {
        let matching: Vec<_> = self
            .samples
            .iter()
            .filter(|(k, _)| {
                k.split('{').next() == Some(name) && labels.iter().all(|l| k.contains(l))
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{name} {labels:?}: {matching:?} in {:#?}",
            self.samples
        );
        *matching[0].1
    }

    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }
}

#[test]
fn scraped_counters_match_what_was_sent_and_stored() {
    let topic = "ops-metrics";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 2)])
        .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let port = free_port().unwrap();
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nstatistics_interval_ms = 200\n"
        ))
        .start();

    let before = Scrape::get(port, "/metrics");
    assert_eq!(before.status, "HTTP/1.1 200 OK");
    assert!(
        before
            .head
            .contains("Content-Type: text/plain; version=0.0.4"),
        "{}",
        before.head
    );
    assert_eq!(before.value("shmkafkad_clients_connected", &[]), 0.0);

    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: RING,
        client_name: "ops-metrics-client".into(),
        ..ProducerOptions::default()
    })
    .expect("connect");
    let handle = producer.topic(topic).expect("topic");
    for i in 0..RECORDS {
        let value = format!("record-{i}");
        producer
            .send(&handle, &Message::new().value(value.as_bytes()))
            .expect("send");
    }
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let stored = consume_all(
        broker.bootstrap_servers(),
        topic,
        RECORDS,
        Duration::from_secs(60),
    )
    .expect("consume");
    assert_eq!(stored.len(), RECORDS, "the broker has what was sent");

    let scrape = Scrape::get(port, "/metrics");
    let me = [
        "name=\"ops-metrics-client\"".to_owned(),
        format!("pid=\"{}\"", std::process::id()),
    ];
    let me: Vec<&str> = me.iter().map(String::as_str).collect();
    let n = RECORDS as f64;
    let client = |name: &str| scrape.value(name, &me);
    assert_eq!(client("shmkafkad_client_records_produced_total"), n);
    assert_eq!(client("shmkafkad_client_records_acknowledged_total"), n);
    assert_eq!(client("shmkafkad_client_records_failed_total"), 0.0);
    assert_eq!(client("shmkafkad_client_records_spooled_total"), 0.0);
    assert_eq!(client("shmkafkad_client_records_in_flight"), 0.0);
    assert_eq!(client("shmkafkad_client_quarantined"), 0.0);
    assert_eq!(client("shmkafkad_client_connected"), 1.0);
    assert_eq!(client("shmkafkad_client_ring_fill_bytes"), 0.0);
    assert_eq!(client("shmkafkad_client_ring_capacity_bytes"), RING as f64);
    assert!(client("shmkafkad_client_ring_written_bytes_total") > 0.0);
    assert_eq!(scrape.value("shmkafkad_clients_connected", &[]), 1.0);

    // Drain-thread totals and the latency histogram (one drain thread here;
    // summed so the test holds for any number).
    assert_eq!(scrape.sum("shmkafkad_drain_records_produced_total"), n);
    assert_eq!(scrape.sum("shmkafkad_drain_records_acknowledged_total"), n);
    assert_eq!(scrape.sum("shmkafkad_drain_records_failed_total"), 0.0);
    assert_eq!(scrape.sum("shmkafkad_delivery_latency_seconds_count"), n);
    assert_eq!(
        scrape.value(
            "shmkafkad_delivery_latency_seconds_bucket",
            &["le=\"+Inf\""]
        ),
        n
    );
    assert!(scrape.sum("shmkafkad_delivery_latency_seconds_sum") > 0.0);
    assert_eq!(scrape.value("shmkafkad_spool_bytes", &[]), 0.0);
    let busy = scrape.sum("shmkafkad_drain_busy_ratio");
    assert!((0.0..=1.0).contains(&busy), "busy ratio {busy}");

    // librdkafka's statistics arrive every 200 ms; wait for one that counts
    // every record (idempotent retries could only add to it).
    let deadline = Instant::now() + Duration::from_secs(20);
    let rdkafka = loop {
        let scrape = Scrape::get(port, "/metrics");
        // Queued counts a record until its delivery report: 0 once every
        // acknowledgement is in the document too.
        if scrape.sum("rdkafka_txmsgs_total") >= n && scrape.sum("rdkafka_msg_cnt") == 0.0 {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "rdkafka_txmsgs_total never reached {n}: {:#?}",
            scrape.samples
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(rdkafka.sum("rdkafka_broker_up") >= 1.0);
    assert!(rdkafka
        .samples
        .keys()
        .any(|k| k.starts_with("rdkafka_broker_rtt_p99_seconds{")));

    let missing = Scrape::get(port, "/nope");
    assert!(
        missing.status.starts_with("HTTP/1.1 404"),
        "{}",
        missing.status
    );
    drop(producer);
    drop(daemon);
}

#[test]
fn a_busy_metrics_address_stops_the_start_with_a_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = test_dir();
    let config = dir.path().join("busy.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    let output = std::process::Command::new(common::shmkafkad_bin())
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("d.sock"))
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("metrics.listen") && log.contains(&port.to_string()),
        "{log}"
    );
    assert!(
        !dir.path().join("d.sock").exists(),
        "it must not have served"
    );

    // A non-loopback address is refused by --check-config without
    // allow_non_loopback.
    std::fs::write(
        &config,
        "[metrics]\nlisten = \"0.0.0.0:9187\"\n[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(common::shmkafkad_bin())
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("allow_non_loopback"), "{err}");
}
