//! systemd notifications: READY once the socket is bound, STATUS with rates,
//! WATCHDOG only while every drain thread makes progress, STOPPING on
//! SIGTERM, exit 0.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmkafka_testkit::{ChildGuard, MockBrokerProcess};

const SHMKAFKAD: &str = env!("CARGO_BIN_EXE_shmkafkad");

/// Collects notification datagrams for `window`.
fn collect(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            out.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    out
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn notifies_ready_status_watchdog_and_stopping() {
    let broker = MockBrokerProcess::start_with_binary(
        env!("CARGO_BIN_EXE_shmkafka-mock-broker").as_ref(),
        1,
        &[],
    )
    .expect("mock broker");
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let stall = dir.path().join("stall");
    // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the
    // shell's pid, so `$$` is the daemon's.
    let mut daemon = ChildGuard::new(
        Command::new("sh")
            .arg("-c")
            .arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#)
            .arg(SHMKAFKAD)
            .args([
                "--log-level",
                "warn",
                "--bootstrap-servers",
                broker.bootstrap_servers(),
                "--socket",
            ])
            .arg(dir.path().join("d.sock"))
            .env("NOTIFY_SOCKET", &notify_path)
            // Pings due every 200 ms.
            .env("WATCHDOG_USEC", "400000")
            .env(shmkafkad::drain::STALL_FILE_ENV, &stall)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let start = collect(&notify, Duration::from_secs(3));
    assert_eq!(
        start.first().map(String::as_str),
        Some("READY=1"),
        "{start:?}"
    );
    assert!(
        dir.path().join("d.sock").exists(),
        "READY before the socket was bound"
    );
    assert!(count(&start, "STATUS=") >= 1, "no STATUS in {start:?}");
    assert!(
        count(&start, "WATCHDOG=1") >= 5,
        "too few pings in {start:?}"
    );

    // Wedge the drain thread: after the daemon's 5 s threshold, no pings.
    std::fs::write(&stall, b"").unwrap();
    let wedged = collect(&notify, Duration::from_secs(8));
    let last_ping = wedged.iter().rposition(|l| l == "WATCHDOG=1");
    let tail = &wedged[last_ping.map_or(0, |i| i + 1)..];
    assert!(
        count(
            &wedged[wedged.len().saturating_sub(tail.len())..],
            "WATCHDOG=1"
        ) == 0
            && count(&wedged, "WATCHDOG=1") <= 30,
        "pings did not stop while the drain thread was wedged: {wedged:?}"
    );
    let window = collect(&notify, Duration::from_secs(1));
    assert_eq!(
        count(&window, "WATCHDOG=1"),
        0,
        "pinged while wedged: {window:?}"
    );

    // Unwedge: pings resume.
    std::fs::remove_file(&stall).unwrap();
    let resumed = collect(&notify, Duration::from_secs(2));
    assert!(
        count(&resumed, "WATCHDOG=1") >= 3,
        "pings did not resume: {resumed:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopping = collect(&notify, Duration::from_secs(2));
    assert!(count(&stopping, "STOPPING=1") == 1, "{stopping:?}");
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
