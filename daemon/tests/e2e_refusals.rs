//! End to end: the daemon refuses clients it must not serve, with a reason
//! the client can act on, and keeps serving good clients afterwards
//! (checked at the broker).

use shmkafkad_test_support::common;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::{
    consume_and_verify, daemon_options, mock_broker_bin, test_dir, Finish, Guarantee, RecordId,
    SenderSpec, Workload,
};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use shmkafka_client::{Error, Producer, ProducerOptions};
use shmkafka_protocol::{
    recv_message, send_message, ClientMessage, DaemonMessage, Hello, RefusalCode, Refused,
    PROTOCOL_VERSION,
};
use shmkafka_testkit::{report_skip, MockBrokerProcess};

/// Dispatches re-executed client processes (see `common::run_child_role`).
#[test]
fn child_role_entry_point() {
    common::run_child_role();
}

/// `nobody`/`nogroup`: the "other" user the access-list test admits.
const OTHER_ID: u32 = 65534;

fn small_workload(proc_id: u32, per_thread: u32) -> Workload {
    Workload {
        procs: proc_id + 1,
        threads: 1,
        per_thread,
        partitions: 2,
        max_value: 4096,
    }
}

fn options(socket: &Path) -> ProducerOptions {
    ProducerOptions {
        socket_path: Some(socket.to_owned()),
        ring_capacity: 1 << 20,
        max_record_len: 64 * 1024,
        client_name: "e2e-refusals".into(),
        ..ProducerOptions::default()
    }
}

/// A good in-process client (proc id `proc_id`) sends `per_thread` records
/// and flushes; returns their ids.
fn good_client_delivers(
    socket: &Path,
    topic: &str,
    proc_id: u32,
    per_thread: u32,
) -> Vec<RecordId> {
    let workload = small_workload(proc_id, per_thread);
    let producer = Producer::connect_with(options(socket)).expect("good client connects");
    let handle = producer.topic(topic).expect("allowed topic");
    let ids: Vec<RecordId> = (0..per_thread)
        .map(|counter| RecordId {
            proc: proc_id,
            thread: 0,
            counter,
        })
        .collect();
    for &id in &ids {
        common::send_expected(&producer, &handle, &workload.record(id));
    }
    let report = producer.flush(Duration::from_secs(30)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    ids
}

/// Sends `hello` with `fd` on a raw connection and returns the daemon's answer.
fn raw_hello(socket: &Path, hello: Hello, fd: &impl AsFd) -> DaemonMessage {
    let stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    send_message(&stream, &ClientMessage::Hello(hello), Some(fd.as_fd())).expect("send hello");
    recv_message::<DaemonMessage>(&stream)
        .expect("daemon answers")
        .0
}

fn hello(version: u16) -> Hello {
    Hello {
        protocol_version: version,
        client_pid: std::process::id(),
        client_name: "e2e-raw".into(),
        topics: Vec::new(),
    }
}

fn memfd(size: u64, seals: Option<SealFlag>, header: &[u8]) -> OwnedFd {
    let fd = memfd_create(
        c"e2e-bad-segment",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .expect("memfd_create");
    let file = File::from(fd);
    file.set_len(size).expect("ftruncate");
    nix::sys::uio::pwrite(file.as_fd(), header, 0).expect("pwrite");
    if let Some(seals) = seals {
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).expect("seal");
    }
    file.into()
}

fn expect_refused(answer: DaemonMessage, code: RefusalCode, needle: &str) -> String {
    match answer {
        DaemonMessage::Refused(Refused { reason, message }) => {
            assert_eq!(reason, code, "{message}");
            assert!(
                message.contains(needle),
                "refusal {message:?} does not mention {needle:?}"
            );
            message
        }
        other => panic!("expected Refused({code:?}), got {other:?}"),
    }
}

/// Topic, segment and version refusals, each followed by a good client of
/// the same daemon whose records must reach the broker.
#[test]
fn bad_topics_segments_and_versions_are_refused_and_good_clients_still_deliver() {
    let dir = test_dir();
    let topic = "e2e-allowed";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 2)])
        .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let _daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config("[topics]\nallow = [\"e2e-allowed\", \"e2e-prefix.*\"]\n")
        .start();
    let mut delivered = Vec::new();

    // A topic off the allow list: refused, connection still usable.
    let producer = Producer::connect_with(options(&socket)).expect("connect");
    match producer.topic("e2e-forbidden") {
        Err(Error::TopicRefused {
            topic: t,
            reason,
            message,
        }) => {
            assert_eq!(t, "e2e-forbidden");
            assert_eq!(reason, RefusalCode::NotAuthorized);
            assert!(
                message.contains("e2e-forbidden") && message.contains("allow"),
                "{message}"
            );
        }
        other => panic!("expected TopicRefused, got {other:?}"),
    }
    // The same connection goes on: a prefix-allowed topic is accepted.
    producer
        .topic("e2e-prefix.ok")
        .expect("prefix-allowed topic");
    drop(producer);
    delivered.extend(good_client_delivers(&socket, topic, 0, 50));

    // A memfd without seals could be shrunk under the daemon (SIGBUS).
    let answer = raw_hello(&socket, hello(PROTOCOL_VERSION), &memfd(1 << 20, None, &[]));
    let message = expect_refused(answer, RefusalCode::BadSegment, "F_SEAL_SHRINK");
    eprintln!("unsealed memfd refused: {message}");
    delivered.extend(good_client_delivers(&socket, topic, 1, 50));

    // A regular file is not a memfd at all.
    let file = tempfile::tempfile_in(dir.path()).expect("temp file");
    file.set_len(1 << 20).expect("size");
    let answer = raw_hello(&socket, hello(PROTOCOL_VERSION), &file);
    let message = expect_refused(answer, RefusalCode::BadSegment, "not a sealable memfd");
    eprintln!("regular file refused: {message}");
    delivered.extend(good_client_delivers(&socket, topic, 2, 50));

    // Sealed, but garbage where the header should be.
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    let answer = raw_hello(
        &socket,
        hello(PROTOCOL_VERSION),
        &memfd(1 << 20, Some(seals), b"garbage!garbage!"),
    );
    expect_refused(answer, RefusalCode::BadSegment, "magic");
    // Sealed but shorter than a header.
    let answer = raw_hello(
        &socket,
        hello(PROTOCOL_VERSION),
        &memfd(64, Some(seals), &[]),
    );
    expect_refused(answer, RefusalCode::BadSegment, "shorter than its header");
    delivered.extend(good_client_delivers(&socket, topic, 3, 50));

    // A protocol version the daemon does not speak.
    let answer = raw_hello(
        &socket,
        hello(PROTOCOL_VERSION + 1),
        &memfd(1 << 20, Some(seals), &[]),
    );
    let message = expect_refused(
        answer,
        RefusalCode::UnsupportedVersion,
        &(PROTOCOL_VERSION + 1).to_string(),
    );
    eprintln!("wrong version refused: {message}");
    delivered.extend(good_client_delivers(&socket, topic, 4, 50));

    let workload = small_workload(4, 50);
    consume_and_verify(
        broker.bootstrap_servers(),
        topic,
        &workload,
        &delivered,
        Guarantee::ExactlyOnce,
        Duration::from_secs(30),
    );
}

/// A peer whose uid and gid are not on `[access]` is refused with a message
/// naming its uid; a peer that is on it (a child running as `nobody`, when
/// this test runs as root) still delivers through the same daemon.
#[test]
fn peers_off_the_access_list_are_refused() {
    let dir = test_dir();
    let topic = "e2e-access";
    let broker = MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(topic, 2)])
        .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let me = nix::unistd::getuid().as_raw();
    let my_gid = nix::unistd::getgid().as_raw();
    // Root cannot be "other" than nobody; anyone else is "other" than root.
    let other = if me == OTHER_ID { 0 } else { OTHER_ID };
    assert_ne!(
        my_gid, other,
        "test needs a primary gid different from {other}"
    );
    // 0o666 so that the admitted peer (another user) can connect at all.
    let _daemon = daemon_options(&socket, broker.bootstrap_servers())
        .config(&format!(
            "[daemon]\nsocket_mode = 0o666\n[access]\nallowed_uids = [{other}]\nallowed_gids = [{other}]\n"
        ))
        .start();

    match Producer::connect_with(options(&socket)) {
        Err(Error::Refused {
            reason, message, ..
        }) => {
            assert_eq!(reason, RefusalCode::NotAuthorized, "{message}");
            assert!(
                message.contains(&format!("uid {me}")),
                "refusal does not name uid {me}: {message}"
            );
        }
        Err(other) => panic!("expected Refused(NotAuthorized), got {other}"),
        Ok(_) => panic!("uid {me} was admitted although only uid/gid {other} are allowed"),
    }

    if !nix::unistd::geteuid().is_root() {
        report_skip(
            "peers_off_the_access_list_are_refused (admitted-peer half)",
            "not root: cannot run a client as another user to show the daemon still serves admitted peers",
        );
        return;
    }
    let workload = small_workload(0, 200);
    SenderSpec {
        socket: socket.clone(),
        topic: topic.to_owned(),
        proc_id: 0,
        workload,
        ring_capacity: 1 << 20,
        finish: Finish::Flush,
        run_as: Some((other, other)),
    }
    .spawn()
    .wait_success(Duration::from_secs(60));
    let ids: Vec<RecordId> = workload.ids().collect();
    consume_and_verify(
        broker.bootstrap_servers(),
        topic,
        &workload,
        &ids,
        Guarantee::ExactlyOnce,
        Duration::from_secs(30),
    );
}
