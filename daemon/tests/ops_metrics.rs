//! The Prometheus endpoint: after a client sent N records and flushed, the
//! scraped counters say exactly what the test sent and the broker stored
//! (produced == acknowledged == N, nothing failed, the ring empty again,
//! N latency observations), keyed by the client's name and uid (no pid),
//! and they stay after the client leaves; a failed record is counted by its
//! error name; librdkafka's statistics show up as `rdkafka_*`, the process
//! as `process_*`; every name follows Prometheus' rules (checked here, and
//! by `promtool check metrics` where it is installed); the number of client
//! series is capped; records held while the broker is unreachable show
//! their age; anything but `GET /metrics` is a 404.

use shmkafkad_test_support::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
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
    body: String,
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
            body: body.to_owned(),
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

    fn has(&self, name: &str) -> bool {
        self.samples
            .keys()
            .any(|k| k.split('{').next() == Some(name))
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
        .property("message.max.bytes", "2000")
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

    let cpu_before = process_cpu_seconds(daemon.pid());
    let scrape = Scrape::get(port, "/metrics");
    let cpu_after = process_cpu_seconds(daemon.pid());
    let me = [
        "client=\"ops-metrics-client\"".to_owned(),
        format!("uid=\"{}\"", nix::unistd::getuid()),
    ];
    let me: Vec<&str> = me.iter().map(String::as_str).collect();
    let n = RECORDS as f64;
    let client = |name: &str| scrape.value(name, &me);
    assert_eq!(client("shmkafkad_client_records_produced_total"), n);
    assert_eq!(client("shmkafkad_client_records_acknowledged_total"), n);
    assert_eq!(client("shmkafkad_client_records_failed_total"), 0.0);
    assert_eq!(client("shmkafkad_client_records_spooled_total"), 0.0);
    assert_eq!(client("shmkafkad_client_records_in_flight"), 0.0);
    assert_eq!(client("shmkafkad_client_rings_quarantined"), 0.0);
    assert_eq!(client("shmkafkad_client_connections"), 1.0);
    assert_eq!(client("shmkafkad_client_rings"), 1.0);
    assert_eq!(client("shmkafkad_client_held_bytes"), 0.0);
    assert_eq!(
        client("shmkafkad_client_oldest_unacknowledged_age_seconds"),
        0.0
    );
    assert_eq!(client("shmkafkad_client_ring_capacity_bytes"), RING as f64);
    assert!(client("shmkafkad_client_ring_written_bytes_total") > 0.0);
    assert_eq!(scrape.value("shmkafkad_clients_connected", &[]), 1.0);
    assert_eq!(
        scrape.value("shmkafkad_oldest_unacknowledged_age_seconds", &[]),
        0.0
    );
    // No per-process or per-connection label: a restarted client keeps its
    // series.
    for key in scrape.samples.keys() {
        assert!(
            !key.contains("pid=") && !key.contains("client_id="),
            "{key}"
        );
    }

    // The daemon's own process.
    // The kernel's count for the daemon, read around the scrape (in clock
    // ticks, so a daemon that has barely run may honestly report 0).
    let cpu = scrape.value("process_cpu_seconds_total", &[]);
    assert!(
        cpu >= cpu_before - 1e-9 && cpu <= cpu_after + 1e-9,
        "process_cpu_seconds_total {cpu} outside the kernel's {cpu_before}..={cpu_after}"
    );
    assert!(scrape.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(scrape.value("process_open_fds", &[]) >= 3.0);
    assert!(scrape.value("process_max_fds", &[]) >= scrape.value("process_open_fds", &[]));
    assert!(scrape.value("process_threads", &[]) >= 2.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = scrape.value("process_start_time_seconds", &[]);
    assert!(
        (now - 120.0..=now + 1.0).contains(&started),
        "start {started}, now {now}"
    );

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
        if scrape.sum("rdkafka_tx_messages_total") >= n
            && scrape.sum("rdkafka_producer_queue_messages") == 0.0
        {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "rdkafka_tx_messages_total never reached {n}: {:#?}",
            scrape.samples
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(rdkafka.sum("rdkafka_broker_up") >= 1.0);
    assert!(rdkafka
        .samples
        .keys()
        .any(|k| k.starts_with("rdkafka_broker_rtt_p99_seconds{")));
    assert!(rdkafka.value("rdkafka_brokers_up", &[]) >= 1.0);
    assert_prometheus_rules(&rdkafka.body);

    // A record the producer refuses (message.max.bytes) is counted by its
    // error name, under its own client's series.
    let failing = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: RING,
        client_name: "ops-metrics-failing".into(),
        ..ProducerOptions::default()
    })
    .expect("connect");
    let failing_topic = failing.topic(topic).expect("topic");
    failing
        .send(&failing_topic, &Message::new().value(&[7u8; 4000]))
        .expect("send");
    let report = failing.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let scrape = Scrape::get(port, "/metrics");
    assert_eq!(
        scrape.value(
            "shmkafkad_records_failed_by_error_total",
            &["error=\"MSG_SIZE_TOO_LARGE\""]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            "shmkafkad_client_records_failed_total",
            &["client=\"ops-metrics-failing\""]
        ),
        1.0
    );

    // Both clients leave; their rings are released and their counters stay.
    drop(failing);
    drop(producer);
    let deadline = Instant::now() + Duration::from_secs(20);
    let gone = loop {
        let scrape = Scrape::get(port, "/metrics");
        if scrape.value("shmkafkad_clients_registered", &[]) == 0.0 {
            break scrape;
        }
        assert!(Instant::now() < deadline, "the rings were never released");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        gone.value("shmkafkad_client_records_acknowledged_total", &me),
        n
    );
    assert_eq!(gone.value("shmkafkad_client_rings", &me), 0.0);
    assert_eq!(
        gone.value(
            "shmkafkad_client_records_failed_total",
            &["client=\"ops-metrics-failing\""]
        ),
        1.0
    );

    let missing = Scrape::get(port, "/nope");
    assert!(
        missing.status.starts_with("HTTP/1.1 404"),
        "{}",
        missing.status
    );
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

#[test]
fn client_series_are_capped_and_further_names_count_as_other() {
    let topic = "ops-metrics-cap";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 1)])
        .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let port = free_port().unwrap();
    let _daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nmax_client_series = 2\n"
        ))
        .start();
    // Five names, one after the other, as a process cycling names would.
    for i in 0..5 {
        let producer = Producer::connect_with(ProducerOptions {
            socket_path: Some(socket.clone()),
            ring_capacity: 64 * 1024,
            client_name: format!("cycling-{i}"),
            ..ProducerOptions::default()
        })
        .expect("connect");
        let handle = producer.topic(topic).expect("topic");
        for _ in 0..=i {
            producer
                .send(&handle, &Message::new().value(b"x"))
                .expect("send");
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
    }
    let scrape = Scrape::get(port, "/metrics");
    let acknowledged: BTreeMap<String, f64> = scrape
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("shmkafkad_client_records_acknowledged_total{"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(
        acknowledged.len(),
        3,
        "two names and other: {acknowledged:#?}"
    );
    let uid = nix::unistd::getuid();
    assert_eq!(
        scrape.value(
            "shmkafkad_client_records_acknowledged_total",
            &["client=\"cycling-0\"", &format!("uid=\"{uid}\"")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            "shmkafkad_client_records_acknowledged_total",
            &["client=\"cycling-1\""]
        ),
        2.0
    );
    assert_eq!(
        scrape.value(
            "shmkafkad_client_records_acknowledged_total",
            &["client=\"other\"", "uid=\"other\""]
        ),
        (3 + 4 + 5) as f64
    );
    assert_eq!(scrape.value("shmkafkad_client_series", &[]), 2.0);
    assert_eq!(scrape.value("shmkafkad_client_series_limit", &[]), 2.0);
    assert_prometheus_rules(&scrape.body);
}

#[test]
fn records_held_while_the_broker_is_unreachable_show_their_age() {
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let port = free_port().unwrap();
    // Nothing listens on this port: every connection attempt is refused.
    let nowhere = format!("127.0.0.1:{}", free_port().unwrap());
    let daemon = daemon_options(&socket, &nowhere)
        .config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nstatistics_interval_ms = 200\n"
        ))
        .start();
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 64 * 1024,
        client_name: "stuck".into(),
        ..ProducerOptions::default()
    })
    .expect("connect");
    let handle = producer.topic("ops-metrics-stuck").expect("topic");
    for i in 0..10 {
        producer
            .send(
                &handle,
                &Message::new().value(format!("stuck-{i}").as_bytes()),
            )
            .expect("send");
    }
    let sent = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let scrape = Scrape::get(port, "/metrics");
        if scrape.has("rdkafka_brokers_up") {
            break scrape;
        }
        assert!(Instant::now() < deadline, "no librdkafka statistics");
        std::thread::sleep(Duration::from_millis(100));
    };
    let waited = sent.elapsed().as_secs_f64();
    let stuck = ["client=\"stuck\""];
    let age = scrape.value("shmkafkad_client_oldest_unacknowledged_age_seconds", &stuck);
    assert!(
        (1.5..=waited + 0.5).contains(&age),
        "age {age} after {waited} s"
    );
    assert_eq!(
        scrape.value("shmkafkad_oldest_unacknowledged_age_seconds", &[]),
        age
    );
    assert!(scrape.value("shmkafkad_client_held_bytes", &stuck) >= 10.0 * 7.0);
    assert_eq!(
        scrape.value("shmkafkad_client_records_acknowledged_total", &stuck),
        0.0
    );
    assert_eq!(scrape.value("rdkafka_brokers_up", &[]), 0.0);
    assert_prometheus_rules(&scrape.body);
    let status: serde_json::Value = serde_json::from_str(&status_json(daemon.socket())).unwrap();
    let row = &status["clients"][0];
    assert!(
        row["oldest_unacknowledged_seconds"].as_f64().unwrap() >= 1.5,
        "{row}"
    );
}

fn status_json(socket: &std::path::Path) -> String {
    let output = Command::new(common::shmkafkad_bin())
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Checks an exposition against Prometheus' naming and format rules (those
/// of `promtool check metrics`), and runs `promtool` on it too where it is
/// installed.
fn assert_prometheus_rules(body: &str) {
    let problems = naming_problems(body);
    assert!(problems.is_empty(), "{problems:#?}\nin\n{body}");
    if let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let output = promtool.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The problems `promtool check metrics` would report, and those of a
/// bounded series set: names and label names valid and snake_case, HELP
/// and TYPE for every family, counters ending in `_total` and nothing else
/// doing so, `_count`/`_sum`/`_bucket` only on histograms and summaries,
/// base units (`_seconds`, `_bytes`), no pid or connection id labels, no
/// repeated series.
fn naming_problems(body: &str) -> Vec<String> {
    let valid_name = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut problems = Vec::new();
    let mut help = BTreeSet::new();
    let mut kinds = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if text.trim().is_empty() {
                problems.push(format!("{name}: empty HELP"));
            }
            help.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            kinds.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
            if !seen.insert(series.to_owned()) {
                problems.push(format!("{series}: repeated"));
            }
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let family = kinds
                .iter()
                .filter(|(f, _)| name == f.as_str() || name.starts_with(&format!("{f}_")))
                .max_by_key(|(f, _)| f.len());
            let Some((family, kind)) = family else {
                problems.push(format!("{name}: no TYPE"));
                continue;
            };
            if !help.contains(family) {
                problems.push(format!("{family}: no HELP"));
            }
            let suffix = &name[family.len()..];
            let allowed: &[&str] = match kind.as_str() {
                // The text format names the family with its `_total`.
                "counter" if family.ends_with("_total") => &["", "_created"],
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                _ => &[""],
            };
            if !allowed.contains(&suffix) {
                problems.push(format!("{name}: suffix {suffix:?} on a {kind}"));
            }
            let histogram_like = kind == "histogram" || kind == "summary";
            if !histogram_like
                && ["_count", "_sum", "_bucket"]
                    .iter()
                    .any(|s| family.ends_with(s))
            {
                problems.push(format!("{family}: _count/_sum/_bucket on a {kind}"));
            }
            if kind != "counter" && name.ends_with("_total") {
                problems.push(format!("{name}: _total on a {kind}"));
            }
            if !valid_name(name) {
                problems.push(format!("{name}: not a snake_case metric name"));
            }
            for bad in [
                "_milliseconds",
                "_microseconds",
                "_nanoseconds",
                "_ms",
                "_us",
                "_ns",
                "_kilobytes",
                "_kb",
                "_megabytes",
                "_percent",
                "_cnt",
                "_avg_bytes_total",
            ] {
                if family.ends_with(bad) || family.contains(&format!("{bad}_")) {
                    problems.push(format!("{family}: not a base unit or unclear ({bad})"));
                }
            }
            for pair in split_labels(labels) {
                let label = pair.split('=').next().unwrap_or("");
                if !valid_name(label) || label.starts_with("__") {
                    problems.push(format!("{name}: label {label:?}"));
                }
                if ["pid", "client_id", "connection"].contains(&label) {
                    problems.push(format!("{name}: unbounded label {label}"));
                }
            }
        }
    }
    problems
}

/// `a="x",b="y, z"` into its pairs (values may hold commas).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    pairs
}

#[test]
fn the_rule_checker_finds_what_promtool_would() {
    let bad = "# HELP a_count x\n# TYPE a_count gauge\na_count 1\n\
               # TYPE b counter\nb 1\n\
               # HELP c_ms x\n# TYPE c_ms gauge\nc_ms{pid=\"1\"} 1\n";
    let problems = naming_problems(bad);
    for expected in [
        "a_count: _count/_sum/_bucket on a gauge",
        "b: no HELP",
        "b: suffix \"\" on a counter",
        "c_ms: not a base unit",
        "unbounded label pid",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
    let good = "# HELP d_seconds x\n# TYPE d_seconds histogram\nd_seconds_bucket{le=\"+Inf\",x=\"a,b\"} 1\nd_seconds_sum 1\nd_seconds_count 1\n";
    assert_eq!(naming_problems(good), Vec::<String>::new());
}

/// User plus system CPU of process `pid`, from `/proc/<pid>/stat`, in seconds.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .expect("daemon's stat");
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}
