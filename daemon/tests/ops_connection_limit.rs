//! A flood of control connections is refused once the daemon holds
//! `max_clients` + 64 of them, instead of costing a thread each; once the
//! flood ends, clients are served again.

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmkafka_client::{Message, Producer, ProducerOptions};
use shmkafka_protocol::{recv_message, DaemonMessage, RefusalCode};
use shmkafka_testkit::{ChildGuard, MockBrokerProcess};

#[test]
fn connection_flood_is_bounded_and_recovers() {
    let broker = MockBrokerProcess::start_with_binary(
        env!("CARGO_BIN_EXE_shmkafka-mock-broker").as_ref(),
        1,
        &[("flood", 1)],
    )
    .expect("mock broker");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("d.toml");
    std::fs::write(&config, "[daemon]\nmax_clients = 1\n").unwrap();
    let socket = dir.path().join("d.sock");
    let mut daemon = ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_shmkafkad"))
            .arg("--config")
            .arg(&config)
            .args([
                "--log-level",
                "error",
                "--bootstrap-servers",
                broker.bootstrap_servers(),
                "--socket",
            ])
            .arg(&socket)
            .arg("--spool-dir")
            .arg(dir.path().join("spool"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));

    // max_clients (1) + 64 silent connections occupy every slot.
    let flood: Vec<UnixStream> = (0..65)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let extra = UnixStream::connect(&socket).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match recv_message::<DaemonMessage>(&extra).expect("an answer").0 {
        DaemonMessage::Refused(r) => {
            assert_eq!(r.reason, RefusalCode::TooManyClients, "{r:?}");
            assert!(r.message.contains("max_clients"), "{r:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The flood ends; a real client registers and delivers.
    drop(flood);
    drop(extra);
    let deadline = Instant::now() + Duration::from_secs(10);
    let producer = loop {
        match Producer::connect_with(ProducerOptions {
            socket_path: Some(socket.clone()),
            ring_capacity: 1 << 16,
            max_record_len: 1 << 12,
            ..ProducerOptions::default()
        }) {
            Ok(p) => break p,
            Err(e) => {
                assert!(Instant::now() < deadline, "not served after the flood: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let topic = producer.topic("flood").unwrap();
    producer
        .send(&topic, &Message::new().value(b"after the flood"))
        .unwrap();
    assert!(producer
        .flush(Duration::from_secs(20))
        .unwrap()
        .failures
        .is_empty());
    let records = shmkafka_testkit::consume_all(
        broker.bootstrap_servers(),
        "flood",
        1,
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"after the flood"[..]));

    drop(producer);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(daemon.child.wait().unwrap().success());
}
