//! `shmkafkad status`: the JSON lists the client with the counters that the
//! test can check (what it sent, what the broker stored), rates appear once
//! the daemon has sampled for a while, and the table names the client.

use shmkafkad_test_support::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, shmkafkad_bin, test_dir};
use serde_json::Value;
use shmkafka_client::{Message, Producer, ProducerOptions};
use shmkafka_testkit::{consume_all, MockBrokerProcess};

const RECORDS: usize = 300;

fn status(socket: &Path, json: bool) -> String {
    let mut command = Command::new(shmkafkad_bin());
    command.arg("status").arg("--socket").arg(socket);
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("running shmkafkad status");
    assert!(
        output.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn status_json(socket: &Path) -> Value {
    serde_json::from_str(&status(socket, true)).expect("status --json is JSON")
}

#[test]
fn status_reports_clients_counters_rates_and_spool() {
    let topic = "ops-status";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 2)])
        .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let _daemon = daemon_options(&socket, broker.bootstrap_servers()).start();

    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 1 << 20,
        client_name: "ops-status-client".into(),
        ..ProducerOptions::default()
    })
    .expect("connect");
    let handle = producer.topic(topic).expect("topic");
    for i in 0..RECORDS {
        producer
            .send(&handle, &Message::new().key(b"k").value(&i.to_le_bytes()))
            .expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let stored = consume_all(
        broker.bootstrap_servers(),
        topic,
        RECORDS,
        Duration::from_secs(60),
    )
    .expect("consume");
    assert_eq!(stored.len(), RECORDS);

    let n = RECORDS as u64;
    let report = status_json(&socket);
    let clients = report["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 1, "{report:#}");
    let me = &clients[0];
    assert_eq!(me["name"], "ops-status-client", "{me:#}");
    assert_eq!(me["pid"], std::process::id(), "{me:#}");
    assert_eq!(me["connected"], true);
    assert_eq!(me["quarantined"], false);
    assert_eq!(me["produced"], n, "{me:#}");
    assert_eq!(me["delivered"], n, "{me:#}");
    assert_eq!(me["failed"], 0);
    assert_eq!(me["spooled"], 0);
    assert_eq!(me["in_flight"], 0);
    assert_eq!(me["ring_fill_bytes"], 0, "flushed: the ring is empty");
    assert_eq!(me["ring_capacity"], 1 << 20);
    assert_eq!(me["topics"], 1);
    let totals = &report["totals"];
    assert_eq!(totals["clients"], 1);
    assert_eq!(totals["connected"], 1);
    assert_eq!(totals["delivered"], n, "{totals:#}");
    assert_eq!(totals["failed"], 0);
    assert_eq!(totals["backlog_bytes"], 0);
    assert_eq!(report["spool"]["files"], 0, "{report:#}");
    assert_eq!(report["spool"]["bytes"], 0);
    let drains = report["drain_threads"].as_array().expect("drain threads");
    assert_eq!(drains.len(), 1);
    assert_eq!(drains[0]["clients"], 1);
    assert_eq!(drains[0]["delivered"], n);
    assert!(drains[0]["latency_p99_ms"].as_f64().is_some(), "{report:#}");

    // The window fills as the supervisor samples once a second; the
    // records above were delivered within it, so the rate covers them.
    let deadline = Instant::now() + Duration::from_secs(15);
    let report = loop {
        let report = status_json(&socket);
        if report["rate_window_seconds"].as_f64().unwrap_or(0.0) >= 2.0
            && report["clients"][0]["rate"].is_object()
        {
            break report;
        }
        assert!(Instant::now() < deadline, "no rates: {report:#}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let rate = &report["clients"][0]["rate"];
    assert!(rate["delivered"].as_f64().unwrap() >= 0.0, "{rate:#}");
    assert_eq!(rate["failed"], 0.0);
    let busy = report["drain_threads"][0]["busy_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&busy), "{busy}");

    let table = status(&socket, false);
    assert!(table.contains("ops-status-client"), "{table}");
    assert!(table.contains(&format!("delivered {RECORDS} (")), "{table}");
    assert!(table.contains("spool "), "{table}");
    drop(producer);
}

/// `shmkafkad -c FILE status` asks the daemon listening where FILE says,
/// as does `shmkafkad status -c FILE`.
#[test]
fn status_finds_the_socket_in_the_config_file() {
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[("ops-status-c", 1)])
        .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("from-config.sock");
    let config = dir.path().join("shmkafkad.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket_path = \"{}\"\n[kafka]\n\"bootstrap.servers\" = \"{}\"\n",
            socket.display(),
            broker.bootstrap_servers()
        ),
    )
    .expect("writing the config");
    let _daemon = daemon_options(&socket, broker.bootstrap_servers()).start();

    for args in [
        vec![
            "-c".into(),
            config.clone().into_os_string(),
            "status".into(),
            "--json".into(),
        ],
        vec![
            "status".into(),
            "--json".into(),
            "-c".into(),
            config.clone().into_os_string(),
        ],
    ] {
        let output = Command::new(shmkafkad_bin())
            .args(&args)
            // The file decides, not the environment.
            .env("SHMKAFKA_SOCKET", dir.path().join("elsewhere.sock"))
            .output()
            .expect("running shmkafkad status");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert!(report["totals"].is_object(), "{report:#}");
    }

    // A file that cannot be read is named.
    let missing = dir.path().join("missing.toml");
    let output = Command::new(shmkafkad_bin())
        .arg("-c")
        .arg(&missing)
        .arg("status")
        .output()
        .expect("running shmkafkad status");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");
}
