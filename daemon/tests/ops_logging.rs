//! The log is plain text when stderr is not a terminal, and carries
//! journald priorities when systemd connects stderr to the journal
//! (`JOURNAL_STREAM`), so that `journalctl -p warning` finds the warnings.

use shmkafkad_test_support::common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{shmkafkad_bin, test_dir};
use shmkafka_testkit::wait_until;

/// Starts the daemon with its embedded broker (which it warns about),
/// stderr into `log`, with `env`; returns once it answers.
fn start(dir: &std::path::Path, log: &std::path::Path, env: &[(&str, String)]) -> Child {
    let socket = dir.join("d.sock");
    let child = Command::new(shmkafkad_bin())
        .arg("--socket")
        .arg(&socket)
        .arg("--embedded-broker")
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .append(true)
                .open(log)
                .expect("log file"),
        )
        .spawn()
        .expect("spawning shmkafkad");
    wait_until("the daemon answers", Duration::from_secs(30), || {
        UnixStream::connect(&socket).is_ok()
    });
    child
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn new_log(dir: &std::path::Path) -> std::path::PathBuf {
    let log = dir.join("shmkafkad.log");
    std::fs::File::create(&log).expect("creating the log");
    log
}

#[test]
fn a_log_file_has_no_colour_codes() {
    let dir = test_dir();
    let log = new_log(dir.path());
    stop(start(dir.path(), &log, &[]));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shmkafkad ready"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a file:\n{text}");
    let ready = text
        .lines()
        .find(|l| l.contains("shmkafkad ready"))
        .unwrap();
    assert!(ready.contains(" INFO "), "{ready}");
}

#[test]
fn under_systemd_lines_carry_journald_priorities() {
    let dir = test_dir();
    let log = new_log(dir.path());
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    stop(start(dir.path(), &log, &[("JOURNAL_STREAM", stream)]));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}'), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let unprefixed: Vec<&&str> = lines
        .iter()
        .filter(|l| !(l.starts_with('<') && l.as_bytes().get(2) == Some(&b'>')))
        .collect();
    assert!(
        unprefixed.is_empty(),
        "lines without a priority: {unprefixed:#?}"
    );
    let ready = lines
        .iter()
        .find(|l| l.contains("shmkafkad ready"))
        .unwrap();
    assert!(ready.starts_with("<6>"), "info: {ready}");
    let warning = lines
        .iter()
        .find(|l| l.contains("EMBEDDED TEST BROKER"))
        .unwrap();
    assert!(warning.starts_with("<4>"), "warning: {warning}");
    // The journal stamps entries itself.
    assert!(!ready.contains("Z "), "no timestamp: {ready}");
}

#[test]
fn journal_stream_of_another_file_is_ignored() {
    // A JOURNAL_STREAM inherited from a parent whose stderr went to the
    // journal does not describe this stderr: plain lines.
    let dir = test_dir();
    let log = new_log(dir.path());
    let other = dir.path().join("other");
    std::fs::write(&other, "").unwrap();
    let meta = std::fs::metadata(&other).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    stop(start(dir.path(), &log, &[("JOURNAL_STREAM", stream)]));
    let text = std::fs::read_to_string(&log).unwrap();
    let ready = text
        .lines()
        .find(|l| l.contains("shmkafkad ready"))
        .unwrap();
    assert!(!ready.starts_with('<'), "{ready}");
}
