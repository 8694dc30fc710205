//! SIGTERM stops the daemon promptly with exit 0 even when its socket file
//! was removed from under it (by a cleanup job or an operator), so nothing
//! can connect to it any more.

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmkafka_testkit::{ChildGuard, MockBrokerProcess};

#[test]
fn sigterm_stops_the_daemon_after_its_socket_file_was_removed() {
    let broker = MockBrokerProcess::start_with_binary(
        env!("CARGO_BIN_EXE_shmkafka-mock-broker").as_ref(),
        1,
        &[],
    )
    .expect("mock broker");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let mut daemon = ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_shmkafkad"))
            .args([
                "--log-level",
                "warn",
                "--bootstrap-servers",
                broker.bootstrap_servers(),
            ])
            .arg("--socket")
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
    std::fs::remove_file(&socket).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stop = Instant::now();
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(5),
            "SIGTERM did not stop the daemon within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
