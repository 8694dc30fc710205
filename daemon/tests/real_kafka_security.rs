//! Secured Apache Kafka 4.4.0: the daemon delivers through each security
//! mode production clusters use (TLS with server authentication, mutual
//! TLS, SASL_SSL with SCRAM-SHA-512, SASL_PLAINTEXT with PLAIN, OAUTHBEARER
//! with Kafka's unsecured JWT validator), refuses a broker whose certificate
//! its CA did not sign, holds records through a wrong password and delivers
//! them once restarted with the right one, keeps the password out of every
//! log line and printed configuration, and reports a topic its principal
//! may not write (ACLs) as a failure while other topics keep flowing.
//!
//! Each cluster has a `CLIENT` listener in the mode under test, which the
//! daemon uses; Kafka's tools and the verifying consumers use the
//! `PLAINTEXT` listener beside it.

use shmkafkad_test_support::common;
use shmkafkad_test_support::kafka_real;

use std::path::Path;
use std::time::Duration;

use common::{daemon_options, Finish, Guarantee, RecordId, SenderSpec, Workload};
use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::{CertFiles, DaemonProcess, KafkaCluster, KafkaOptions, TestCa};

#[test]
fn child_role_entry_point() {
    common::run_child_role();
}

/// 2 processes x 2 threads, values up to 64 KiB, keys, headers.
const WORKLOAD: Workload = Workload {
    procs: 2,
    threads: 2,
    per_thread: 150,
    partitions: 3,
    max_value: 64 * 1024,
};

/// librdkafka's code for a topic the principal may not write.
const TOPIC_AUTHORIZATION_FAILED: i32 = 29;

/// A one-broker cluster whose `CLIENT` listener speaks `protocol`.
fn secured_cluster(
    dir: &Path,
    protocol: &str,
    properties: &[(&str, String)],
    format_args: &[&str],
) -> KafkaCluster {
    let mut options = KafkaOptions::nodes(1).client_listener(protocol);
    for (key, value) in properties {
        options = options.property(key, value);
    }
    for arg in format_args {
        options = options.format_arg(arg);
    }
    kafka_real::start_cluster(dir, &options)
}

/// Broker properties for TLS on the `CLIENT` listener with `ca` issuing the
/// broker's certificate for 127.0.0.1.
fn broker_tls(ca: &TestCa) -> Vec<(&'static str, String)> {
    let broker = ca.issue("broker", &["IP:127.0.0.1"]).expect("broker cert");
    vec![
        ("listener.name.client.ssl.keystore.type", "PEM".into()),
        (
            "listener.name.client.ssl.keystore.location",
            broker.keystore.display().to_string(),
        ),
        ("listener.name.client.ssl.truststore.type", "PEM".into()),
        (
            "listener.name.client.ssl.truststore.location",
            ca.cert.display().to_string(),
        ),
    ]
}

/// `[kafka]` lines of a daemon config.
fn kafka_section(properties: &[(&str, String)]) -> String {
    let mut text = String::from("[kafka]\n");
    for (key, value) in properties {
        text.push_str(&format!("{key:?} = {value:?}\n"));
    }
    text
}

/// Runs the workload through a daemon with `daemon_properties` to the
/// `CLIENT` listener, and checks with both consumers that everything
/// arrived exactly once, in order, byte-identical.
fn deliver_through(
    cluster: &KafkaCluster,
    dir: &Path,
    topic: &str,
    daemon_properties: &[(&str, String)],
) {
    kafka_real::create_topic(cluster, topic, WORKLOAD.partitions as u32, &[]);
    let socket = dir.join(format!("{topic}.sock"));
    let bootstrap = cluster
        .client_bootstrap_servers()
        .expect("a CLIENT listener");
    let daemon = daemon_options(&socket, bootstrap)
        .config(&kafka_section(daemon_properties))
        .start();
    let children: Vec<_> = (0..WORKLOAD.procs)
        .map(|proc_id| {
            SenderSpec {
                socket: socket.clone(),
                topic: topic.to_owned(),
                proc_id,
                workload: WORKLOAD,
                ring_capacity: 4 << 20,
                finish: Finish::Flush,
                run_as: None,
            }
            .spawn()
        })
        .collect();
    for child in children {
        child.wait_success(Duration::from_secs(120));
    }
    let ids: Vec<RecordId> = WORKLOAD.ids().collect();
    let verdict = kafka_real::verify_with_both_consumers(
        cluster,
        topic,
        &WORKLOAD,
        &ids,
        Guarantee::ExactlyOnce,
    );
    assert_eq!(verdict.consumed, WORKLOAD.total());
    drop(daemon);
}

/// A client of the daemon at `socket`, in this process.
fn client(socket: &Path) -> Producer {
    Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.to_owned()),
        ring_capacity: 1 << 20,
        max_record_len: 16 * 1024,
        when_full: WhenFull::Block(Duration::from_secs(60)),
        client_name: "security-test".into(),
        delivery_reports: false,
    })
    .expect("client connects")
}

/// Sends `count` small records to `topic`; returns their values.
fn send_values(producer: &Producer, topic: &str, count: usize) -> Vec<Vec<u8>> {
    let handle = producer.topic(topic).expect("topic registers");
    (0..count)
        .map(|i| {
            let value = format!("{topic}-{i}").into_bytes();
            producer
                .send(&handle, &Message::new().value(&value))
                .expect("send");
            value
        })
        .collect()
}

/// Waits `time`, then asks the daemon's `status`: nothing may have been
/// acknowledged or failed, and the rings must hold records.
fn assert_held(socket: &Path, time: Duration) -> serde_json::Value {
    std::thread::sleep(time);
    let out = std::process::Command::new(common::shmkafkad_bin())
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let totals = &status["totals"];
    assert_eq!(
        totals["delivered"], 0,
        "delivered through a refused connection: {status}"
    );
    assert_eq!(
        totals["failed"], 0,
        "records failed instead of waiting: {status}"
    );
    assert!(
        totals["backlog_bytes"].as_u64().unwrap_or(0) > 0,
        "no records held: {status}"
    );
    status
}

/// Waits until the daemon's `status` lists the client error `name` (the
/// reason it holds the records).
fn wait_for_status_error(socket: &Path, name: &str, daemon: &shmkafka_testkit::DaemonProcess) {
    let listed = || {
        let out = std::process::Command::new(common::shmkafkad_bin())
            .args(["status", "--json", "--socket"])
            .arg(socket)
            .output()
            .expect("status");
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["kafka_errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["name"] == name))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !listed() {
        assert!(
            std::time::Instant::now() < deadline,
            "status never named {name} in 60 s; log:\n{}",
            shmkafka_testkit::tail(&daemon.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The values of `topic` as they are at the broker, sorted.
fn values_at_broker(cluster: &KafkaCluster, topic: &str, expected: usize) -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = shmkafka_testkit::consume_all(
        cluster.bootstrap_servers(),
        topic,
        expected,
        Duration::from_secs(60),
    )
    .expect("consume")
    .into_iter()
    .filter_map(|r| r.value)
    .collect();
    values.sort();
    values
}

#[test]
fn tls_with_server_authentication_and_an_untrusted_broker_refused() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let ca = TestCa::new(&dir.path().join("pki"), "good").expect("CA");
    let cluster = secured_cluster(dir.path(), "SSL", &broker_tls(&ca), &[]);
    deliver_through(
        &cluster,
        dir.path(),
        "tls-server-auth",
        &[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", ca.cert.display().to_string()),
        ],
    );

    // A daemon that trusts another CA must not talk to this broker: records
    // wait in the ring, none is delivered or failed.
    let other = TestCa::new(&dir.path().join("pki-other"), "other").expect("CA");
    let topic = "tls-untrusted";
    cluster.create_topic(topic, 1, 1, &[]).expect("topic");
    let socket = dir.path().join("untrusted.sock");
    let daemon = daemon_options(&socket, cluster.client_bootstrap_servers().unwrap())
        .config(&kafka_section(&[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", other.cert.display().to_string()),
        ]))
        .start();
    let producer = client(&socket);
    send_values(&producer, topic, 50);
    assert_held(&socket, Duration::from_secs(5));
    shmkafka_testkit::wait_until(
        "the daemon's log to say why it cannot connect (certificate verify failed)",
        Duration::from_secs(60),
        || daemon.log_text().contains("certificate verify failed"),
    );
    assert_eq!(values_at_broker(&cluster, topic, 0).len(), 0);
}

#[test]
fn mutual_tls() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let ca = TestCa::new(&dir.path().join("pki"), "mtls").expect("CA");
    let mut broker = broker_tls(&ca);
    broker.push(("listener.name.client.ssl.client.auth", "required".into()));
    let cluster = secured_cluster(dir.path(), "SSL", &broker, &[]);
    let client_cert = ca.issue("shmkafkad", &[]).expect("client cert");
    deliver_through(
        &cluster,
        dir.path(),
        "mtls",
        &[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", ca.cert.display().to_string()),
            (
                "ssl.certificate.location",
                client_cert.cert.display().to_string(),
            ),
            ("ssl.key.location", client_cert.key.display().to_string()),
        ],
    );

    // Without a client certificate the broker rejects the daemon: records
    // wait, nothing fails.
    let topic = "mtls-no-client-cert";
    cluster.create_topic(topic, 1, 1, &[]).expect("topic");
    let socket = dir.path().join("no-cert.sock");
    let _daemon = daemon_options(&socket, cluster.client_bootstrap_servers().unwrap())
        .config(&kafka_section(&[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", ca.cert.display().to_string()),
        ]))
        .start();
    let producer = client(&socket);
    send_values(&producer, topic, 50);
    assert_held(&socket, Duration::from_secs(5));
    assert_eq!(values_at_broker(&cluster, topic, 0).len(), 0);
}

/// A broker certificate from the trusted CA but for another host name:
/// librdkafka checks the name (`ssl.endpoint.identification.algorithm=https`
/// by default) and does not talk to it.
#[test]
fn tls_broker_certificate_for_another_host_refused() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let ca = TestCa::new(&dir.path().join("pki"), "named").expect("CA");
    let broker = ca
        .issue("elsewhere", &["DNS:kafka.elsewhere.example"])
        .expect("cert");
    broker_certificate_refused(dir.path(), &ca, &broker, "tls-wrong-host");
}

/// A broker certificate from the trusted CA for the right address, but
/// expired.
#[test]
fn tls_expired_broker_certificate_refused() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let ca = TestCa::new(&dir.path().join("pki"), "expired").expect("CA");
    let broker = ca.issue_expired("broker", &["IP:127.0.0.1"]).expect("cert");
    let (_cluster, daemon) = broker_certificate_refused(dir.path(), &ca, &broker, "tls-expired");
    // librdkafka reports OpenSSL's handshake error, which does not carry
    // the verifier's reason: the certificate is signed by the trusted CA
    // for this address, so only its dates can have failed it.
    shmkafka_testkit::wait_until(
        "the daemon's log to say why it cannot connect (certificate verify failed)",
        Duration::from_secs(60),
        || daemon.log_text().contains("certificate verify failed"),
    );
}

/// Runs a broker with `broker`'s certificate and a daemon trusting `ca`:
/// records sent to `topic` are held (none delivered or failed), `status`
/// names `_SSL`, and the broker has none of them. Returns both, running.
fn broker_certificate_refused(
    dir: &Path,
    ca: &TestCa,
    broker: &CertFiles,
    topic: &str,
) -> (KafkaCluster, DaemonProcess) {
    let properties = vec![
        ("listener.name.client.ssl.keystore.type", "PEM".to_owned()),
        (
            "listener.name.client.ssl.keystore.location",
            broker.keystore.display().to_string(),
        ),
    ];
    let cluster = secured_cluster(dir, "SSL", &properties, &[]);
    cluster.create_topic(topic, 1, 1, &[]).expect("topic");
    let socket = dir.join(format!("{topic}.sock"));
    let daemon = daemon_options(&socket, cluster.client_bootstrap_servers().unwrap())
        .config(&kafka_section(&[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", ca.cert.display().to_string()),
        ]))
        .start();
    let producer = client(&socket);
    send_values(&producer, topic, 50);
    assert_held(&socket, Duration::from_secs(5));
    wait_for_status_error(&socket, "_SSL", &daemon);
    assert_eq!(values_at_broker(&cluster, topic, 0).len(), 0);
    (cluster, daemon)
}

#[test]
fn sasl_ssl_scram_sha_512_with_a_password_file_and_a_wrong_password_fixed_by_restart() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let ca = TestCa::new(&dir.path().join("pki"), "scram").expect("CA");
    let mut broker = broker_tls(&ca);
    broker.push((
        "listener.name.client.sasl.enabled.mechanisms",
        "SCRAM-SHA-512".into(),
    ));
    broker.push((
        "listener.name.client.scram-sha-512.sasl.jaas.config",
        "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
    ));
    const PASSWORD: &str = "alice-Pa55word-7f3e";
    let cluster = secured_cluster(
        dir.path(),
        "SASL_SSL",
        &broker,
        &[
            "--add-scram",
            &format!("SCRAM-SHA-512=[name=alice,password={PASSWORD}]"),
        ],
    );
    let good = dir.path().join("sasl-password");
    std::fs::write(&good, format!("{PASSWORD}\n")).expect("password file");
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").expect("password file");
    let properties = |password_file: &Path| {
        vec![
            ("security.protocol", "sasl_ssl".to_owned()),
            ("sasl.mechanisms", "SCRAM-SHA-512".into()),
            ("sasl.username", "alice".into()),
            ("sasl.password_file", password_file.display().to_string()),
            ("ssl.ca.location", ca.cert.display().to_string()),
        ]
    };
    deliver_through(&cluster, dir.path(), "scram", &properties(&good));

    // The wrong password: the daemon runs, holds the records, says why.
    let topic = "scram-wrong-password";
    cluster.create_topic(topic, 2, 1, &[]).expect("topic");
    let socket = dir.path().join("wrong.sock");
    // A short graceful-stop budget: the stop below gives up on the held
    // records quickly and leaves them in the client's ring.
    let wrong_spec =
        daemon_options(&socket, cluster.client_bootstrap_servers().unwrap()).config(&format!(
            "[daemon]\nshutdown_timeout_ms = 2000\n{}",
            kafka_section(&properties(&wrong))
        ));
    let mut daemon = wrong_spec.start();
    let producer = client(&socket);
    let sent = send_values(&producer, topic, 500);
    assert_held(&socket, Duration::from_secs(6));
    wait_for_status_error(&socket, "_AUTHENTICATION", &daemon);
    let log = daemon.log_text();
    let lines = log.matches("SASL authentication error").count();
    // librdkafka retries about twice a second: logged once, then summarised.
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for the refused password in 6 s:\n{log}"
    );
    let check = std::process::Command::new(common::shmkafkad_bin())
        .arg("--check-config")
        .arg("--bootstrap-servers")
        .arg(cluster.client_bootstrap_servers().unwrap())
        .args(["-X", &format!("sasl.password={PASSWORD}")])
        .args([
            "-X",
            "sasl.username=alice",
            "-X",
            "security.protocol=sasl_ssl",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
        ])
        .output()
        .expect("--check-config");
    let check_text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{check_text}");
    let stopped = daemon.terminate(Duration::from_secs(30));
    assert!(stopped.success(), "graceful stop: {stopped}");

    // Fixed and restarted: the client re-registers its ring, everything
    // arrives once, and no password ever reached a log or the printout.
    let good_spec = daemon_options(&socket, cluster.client_bootstrap_servers().unwrap())
        .config(&kafka_section(&properties(&good)));
    let daemon = good_spec.start();
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let mut want = sent;
    want.sort();
    assert_eq!(values_at_broker(&cluster, topic, want.len()), want);
    for text in [log, daemon.log_text(), check_text] {
        assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
        assert!(
            !text.contains("not-the-password"),
            "the password leaked:\n{text}"
        );
    }
}

/// Lets `principal` write `topic`, with Kafka's `kafka-acls` tool.
fn grant_write(cluster: &KafkaCluster, principal: &str, topic: &str) {
    add_acl(
        cluster,
        &[
            "--allow-principal",
            principal,
            "--operation",
            "Write",
            "--operation",
            "Describe",
            "--topic",
            topic,
        ],
    );
}

/// A one-broker cluster whose `CLIENT` listener takes SASL/PLAIN user bob,
/// with ACLs on (`StandardAuthorizer`), and the daemon properties for bob.
fn plain_cluster_with_acls(dir: &Path) -> (KafkaCluster, Vec<(&'static str, String)>) {
    let broker = vec![
        (
            "listener.name.client.sasl.enabled.mechanisms",
            "PLAIN".to_owned(),
        ),
        (
            "listener.name.client.plain.sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             user_bob=\"bob-secret\";"
                .into(),
        ),
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        ),
        // The PLAINTEXT and controller listeners: brokers, tools, verifier.
        ("super.users", "User:ANONYMOUS".into()),
    ];
    let cluster = secured_cluster(dir, "SASL_PLAINTEXT", &broker, &[]);
    let properties = vec![
        ("security.protocol", "sasl_plaintext".to_owned()),
        ("sasl.mechanisms", "PLAIN".into()),
        ("sasl.username", "bob".into()),
        ("sasl.password", "bob-secret".into()),
    ];
    (cluster, properties)
}

/// Adds an ACL with Kafka's `kafka-acls` tool (`args` after `--add`).
fn add_acl(cluster: &KafkaCluster, args: &[&str]) {
    let mut all = vec!["--bootstrap-server", cluster.bootstrap_servers(), "--add"];
    all.extend_from_slice(args);
    cluster
        .run_tool("org.apache.kafka.tools.AclCommand", &all)
        .unwrap_or_else(|e| panic!("kafka-acls {args:?}: {e}"));
}

#[test]
fn sasl_plaintext_plain_and_acls_refuse_one_topic_while_another_flows() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let (cluster, properties) = plain_cluster_with_acls(dir.path());
    let granted = "plain-granted";
    cluster.create_topic(granted, 3, 1, &[]).expect("topic");
    grant_write(&cluster, "User:bob", granted);
    let forbidden = "plain-forbidden";
    cluster.create_topic(forbidden, 1, 1, &[]).expect("topic");
    let socket = dir.path().join("plain.sock");
    let daemon = daemon_options(&socket, cluster.client_bootstrap_servers().unwrap())
        .config(&kafka_section(&properties))
        .start();
    let producer = client(&socket);
    let refused = send_values(&producer, forbidden, 20);
    let delivered = send_values(&producer, granted, 200);
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(
        report.failures.len(),
        refused.len(),
        "{:?}",
        report.failures
    );
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.code == TOPIC_AUTHORIZATION_FAILED),
        "{:?}",
        report.failures
    );
    let mut want = delivered;
    want.sort();
    assert_eq!(values_at_broker(&cluster, granted, want.len()), want);
    let spooled = dir.path().join("spool");
    let listed = std::process::Command::new(common::shmkafkad_bin())
        .args(["spool", "list", "--json", "--dir"])
        .arg(&spooled)
        .output()
        .expect("spool list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.lines().count(), refused.len(), "{listed}");
    assert!(listed.contains("TOPIC_AUTHORIZATION_FAILED"), "{listed}");
    drop(producer);
    drop(daemon);

    // The same listener carries the full workload (explicit partitions,
    // headers, large values), with bob allowed on its topic.
    let workload_topic = "plain-workload";
    grant_write(&cluster, "User:bob", workload_topic);
    deliver_through(&cluster, dir.path(), workload_topic, &properties);
}

/// Exactly-once with ACLs: bob may describe a topic but not write it, so
/// the broker refuses to add its partitions to bob's transactions, which
/// fails every transaction carrying one of its records. Those records must
/// go to the failure queue and the spool with TOPIC_AUTHORIZATION_FAILED,
/// and the records of the topic bob may write must reach `read_committed`
/// consumers exactly once.
#[test]
fn exactly_once_a_topic_that_fails_every_transaction_is_found_and_spooled() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let (cluster, properties) = plain_cluster_with_acls(dir.path());
    let granted = "eos-granted";
    cluster.create_topic(granted, 3, 1, &[]).expect("topic");
    grant_write(&cluster, "User:bob", granted);
    let forbidden = "eos-forbidden";
    cluster.create_topic(forbidden, 1, 1, &[]).expect("topic");
    add_acl(
        &cluster,
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Describe",
            "--topic",
            forbidden,
        ],
    );
    // What the exactly-once mode needs of bob: its transactional ids, and
    // the progress topic (created here as an operator would).
    let progress = "shmkafka.progress";
    cluster
        .create_topic(progress, 1, 1, &[("cleanup.policy", "compact")])
        .expect("progress topic");
    add_acl(
        &cluster,
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Write",
            "--operation",
            "Describe",
            "--transactional-id",
            "shmkafkad-acl-host-",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    add_acl(
        &cluster,
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Read",
            "--operation",
            "Write",
            "--operation",
            "Describe",
            "--topic",
            progress,
        ],
    );
    add_acl(
        &cluster,
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Read",
            "--group",
            "shmkafkad-acl-host-progress",
        ],
    );
    let socket = dir.path().join("eos-acl.sock");
    let config = format!(
        "{}[exactly_once]\nenabled = true\ndaemon_id = \"acl-host\"\n",
        kafka_section(&properties)
    );
    let daemon = daemon_options(&socket, cluster.client_bootstrap_servers().unwrap())
        .config(&config)
        .start();
    let producer = client(&socket);
    let mut refused = Vec::new();
    for _ in 0..10 {
        send_values(&producer, granted, 20);
        refused.extend(send_values(&producer, forbidden, 2));
    }
    let report = producer.flush(Duration::from_secs(120)).expect("flush");
    assert_eq!(
        report.failures.len(),
        refused.len(),
        "{:?}",
        report.failures
    );
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.code == TOPIC_AUTHORIZATION_FAILED),
        "{:?}",
        report.failures
    );
    let mut options = shmkafka_testkit::ConsumeOptions::new(200, Duration::from_secs(60))
        .grace(Duration::from_secs(2));
    options
        .properties
        .push(("isolation.level".into(), "read_committed".into()));
    let mut at_broker: Vec<Vec<u8>> =
        shmkafka_testkit::consume_all_with(cluster.bootstrap_servers(), granted, &options)
            .expect("consume")
            .into_iter()
            .filter_map(|r| r.value)
            .collect();
    at_broker.sort();
    let mut want: Vec<Vec<u8>> = (0..10)
        .flat_map(|_| (0..20).map(|i| format!("{granted}-{i}").into_bytes()))
        .collect();
    want.sort();
    assert_eq!(
        at_broker, want,
        "read_committed must see each granted record once"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("the topic's records fail every transaction"),
        "the failing topic was not found:\n{}",
        shmkafka_testkit::tail(&log, 40)
    );
    drop(producer);
}

#[test]
fn oauthbearer_with_the_unsecured_jwt() {
    let _one_cluster = kafka_real::one_cluster_at_a_time();
    let dir = common::test_dir();
    let broker = vec![
        (
            "listener.name.client.sasl.enabled.mechanisms",
            "OAUTHBEARER".to_owned(),
        ),
        (
            "listener.name.client.oauthbearer.sasl.jaas.config",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             unsecuredLoginStringClaim_sub=\"broker\";"
                .into(),
        ),
    ];
    let cluster = secured_cluster(dir.path(), "SASL_PLAINTEXT", &broker, &[]);
    deliver_through(
        &cluster,
        dir.path(),
        "oauthbearer",
        &[
            ("security.protocol", "sasl_plaintext".into()),
            ("sasl.mechanisms", "OAUTHBEARER".into()),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true".into()),
            ("sasl.oauthbearer.config", "principal=shmkafkad".into()),
        ],
    );
}
