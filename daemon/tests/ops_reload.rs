//! SIGHUP: a changed `[topics] allow` applies to registrations made after
//! the reload (topics registered before keep working), the metrics endpoint
//! moves to a new address, and an invalid new file is refused with the
//! reason logged while the running configuration stays.

use shmkafkad_test_support::common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{daemon_options, mock_broker_bin, test_dir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmkafka_client::{Error, Message, Producer, ProducerOptions};
use shmkafka_testkit::{consume_all, free_port, MockBrokerProcess};
use shmkafka_testkit::{wait_until, DaemonProcess as Daemon};

fn config(allow: &str, metrics_port: u16) -> String {
    format!("[topics]\nallow = [{allow}]\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n")
}

/// The config file `daemon_options` wrote next to the socket.
fn config_path(dir: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// Rewrites the config, sends SIGHUP and waits for the log to show the
/// `n`-th reload outcome containing `marker`.
fn reload(daemon: &Daemon, path: &Path, text: &str, marker: &str, n: usize) {
    std::fs::write(path, text).unwrap();
    kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGHUP).unwrap();
    wait_until(
        &format!("reload #{n} logged ({marker})"),
        Duration::from_secs(10),
        || daemon.log_text().matches(marker).count() >= n,
    );
}

fn refused(producer: &Producer, topic: &str) -> bool {
    match producer.topic(topic) {
        Ok(_) => false,
        Err(Error::TopicRefused { .. }) => true,
        Err(e) => panic!("registering {topic}: unexpected {e}"),
    }
}

fn serves_metrics(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn sighup_applies_topics_and_metrics_and_refuses_invalid_files() {
    let broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[("before-a", 1), ("after-b", 1), ("after-c", 1)],
    )
    .expect("mock broker");
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let (port1, port2) = (free_port().unwrap(), free_port().unwrap());
    let daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&config("\"before-*\"", port1))
        .start();
    let path = config_path(dir.path());
    assert!(serves_metrics(port1));

    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.clone()),
        ring_capacity: 1 << 20,
        client_name: "ops-reload".into(),
        ..ProducerOptions::default()
    })
    .expect("connect");
    let before = producer
        .topic("before-a")
        .expect("allowed before the reload");
    assert!(refused(&producer, "after-b"), "not yet allowed");

    // Allow `after-*` instead of `before-*`, and move the metrics endpoint.
    reload(
        &daemon,
        &path,
        &config("\"after-*\"", port2),
        "access list and topic allowlist reloaded",
        1,
    );
    let after = producer.topic("after-b").expect("allowed after the reload");
    assert!(
        refused(&producer, "before-z"),
        "a new registration of a topic no longer allowed is refused"
    );
    wait_until("metrics moved", Duration::from_secs(5), || {
        serves_metrics(port2) && !serves_metrics(port1)
    });

    // An invalid file: refused with its reason; the running config stays.
    reload(
        &daemon,
        &path,
        "[topics]\nallow = [\"before-*\"]\nno_such_key = 1\n",
        "new configuration refused",
        1,
    );
    assert!(
        daemon.log_text().contains("no_such_key"),
        "the reason names the bad key:\n{}",
        daemon.log_text()
    );
    let still = producer
        .topic("after-c")
        .expect("the old allowlist still applies");
    assert!(refused(&producer, "before-y"));
    assert!(serves_metrics(port2), "metrics stay where they were");

    // Topics registered under either allowlist deliver.
    for (topic, value) in [(&before, "1"), (&after, "2"), (&still, "3")] {
        producer
            .send(topic, &Message::new().value(value.as_bytes()))
            .expect("send");
    }
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for topic in ["before-a", "after-b", "after-c"] {
        let got = consume_all(
            broker.bootstrap_servers(),
            topic,
            1,
            Duration::from_secs(30),
        )
        .expect("consume");
        assert_eq!(got.len(), 1, "{topic}");
    }
    drop(producer);
    drop(daemon);
}
