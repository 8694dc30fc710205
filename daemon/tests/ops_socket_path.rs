//! The control socket's path: the daemon removes only a stale socket,
//! refuses every other existing file (and a live socket) with the path in
//! the message, and creates at most the socket's own directory.

use shmkafkad_test_support::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{daemon_options, shmkafkad_bin, test_dir};
use shmkafka_testkit::{wait_timeout, wait_until};

/// Nothing listens here; the daemon does not connect before a client comes.
const BOOTSTRAP: &str = "127.0.0.1:9";

/// Starts the daemon on `socket`, logging into `log`.
fn spawn(socket: &Path, dir: &Path, log: &Path) -> Child {
    command(socket, dir, log)
        .spawn()
        .expect("spawning shmkafkad")
}

/// The daemon on `socket`, logging into `log`.
fn command(socket: &Path, dir: &Path, log: &Path) -> Command {
    let mut command = Command::new(shmkafkad_bin());
    command
        .arg("--socket")
        .arg(socket)
        .arg("--bootstrap-servers")
        .arg(BOOTSTRAP)
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    command
}

/// Runs the daemon on `socket`, which must make it exit with an error;
/// returns the error it logged.
fn start_refused(socket: &Path) -> String {
    start_refused_as(socket, None)
}

/// [`start_refused`], as user `uid` if given.
fn start_refused_as(socket: &Path, uid: Option<u32>) -> String {
    let dir = test_dir();
    let log = dir.path().join("shmkafkad.log");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("spool dir");
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut command = command(socket, dir.path(), &log);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let mut child = command.spawn().expect("spawning shmkafkad");
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("shmkafkad started on {}: {text}", socket.display());
    };
    assert!(!status.success(), "{status}: {text}");
    assert!(!text.contains("shmkafkad ready"), "{text}");
    // The reason, without the start-up line (which names the socket path
    // whatever happens next).
    text.lines()
        .filter(|l| l.contains("ERROR") && l.contains("shmkafkad failed"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let dir = test_dir();
    let file = dir.path().join("important.txt");
    std::fs::write(&file, "keep me").expect("writing the file");
    let log = start_refused(&file);
    assert!(log.contains(&*file.to_string_lossy()), "{log}");
    assert!(log.contains("not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn a_directory_at_the_socket_path_is_refused_and_kept() {
    let dir = test_dir();
    let sub = dir.path().join("a-dir");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), "x").unwrap();
    let log = start_refused(&sub);
    assert!(log.contains(&*sub.to_string_lossy()), "{log}");
    assert!(sub.join("inside").is_file());
}

#[test]
fn a_missing_directory_tree_is_not_created() {
    let dir = test_dir();
    let missing = dir.path().join("nonexistent");
    let socket = missing.join("dir").join("x.sock");
    let log = start_refused(&socket);
    assert!(
        log.contains(&*missing.join("dir").to_string_lossy()),
        "{log}"
    );
    assert!(log.contains("does not exist"), "{log}");
    assert!(!missing.exists(), "nothing created: {log}");
}

#[test]
fn a_file_in_place_of_the_directory_is_named() {
    let dir = test_dir();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let log = start_refused(&file.join("x.sock"));
    assert!(log.contains(&*file.to_string_lossy()), "{log}");
    assert!(log.contains("Not a directory"), "{log}");
}

#[test]
fn a_live_socket_is_left_to_its_owner() {
    let dir = test_dir();
    let socket = dir.path().join("taken.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let log = start_refused(&socket);
    assert!(log.contains(&*socket.to_string_lossy()), "{log}");
    assert!(log.contains("another process is listening"), "{log}");
    UnixStream::connect(&socket).expect("the owner still answers");
    drop(listener);
}

#[test]
fn the_last_directory_level_is_created_and_a_stale_socket_replaced() {
    let dir = test_dir();
    let socket = dir.path().join("run").join("d.sock");
    let log = dir.path().join("first.log");
    let mut first = spawn(&socket, dir.path(), &log);
    wait_until("the daemon answers", Duration::from_secs(30), || {
        UnixStream::connect(&socket).is_ok()
    });
    assert!(dir.path().join("run").is_dir());
    first.kill().expect("kill");
    first.wait().expect("wait");

    // A killed daemon leaves its socket file; nobody answers on it.
    assert!(socket.exists(), "the killed daemon's socket stays");
    assert!(UnixStream::connect(&socket).is_err());
    let daemon = daemon_options(&socket, BOOTSTRAP).start();
    UnixStream::connect(daemon.socket()).expect("the new daemon answers");
}

#[test]
fn a_directory_the_daemon_may_not_write_is_named() {
    let dir = test_dir();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes anywhere: run as nobody then.
    let uid = nix::unistd::geteuid().is_root().then_some(NOBODY);
    let log = start_refused_as(&locked.join("x.sock"), uid);
    assert!(
        log.contains(&*locked.join("x.sock").to_string_lossy()),
        "{log}"
    );
    assert!(log.contains("Permission denied"), "{log}");
}

/// `nobody` on Debian.
const NOBODY: u32 = 65534;

#[test]
fn a_stop_removes_its_own_socket_and_nothing_that_replaced_it() {
    let dir = test_dir();
    let socket = dir.path().join("d.sock");
    let mut daemon = daemon_options(&socket, BOOTSTRAP).start();
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert!(!socket.exists(), "the daemon's own socket is removed");

    let mut daemon = daemon_options(&socket, BOOTSTRAP).start();
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "someone else's").unwrap();
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "someone else's");
}
