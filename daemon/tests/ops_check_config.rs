//! `--check-config` refuses what start-up refuses, with the same message
//! naming the property: properties the daemon sets itself
//! (`transactional.id`), exactly-once settings that would break its
//! guarantee, SASL mechanisms this build lacks, and what
//! librdkafka checks only when it creates a producer. A complete SASL
//! configuration still passes, and the check connects to no broker.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shmkafka_testkit::{wait_timeout, ChildGuard};

fn shmkafkad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmkafkad"))
}

/// The daemon's verdict line: what `main` prints before exiting 2.
fn refusal_line(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    stderr
        .lines()
        .find(|line| line.starts_with("shmkafkad: "))
        .unwrap_or_else(|| panic!("no refusal in:\n{stderr}"))
        .to_owned()
}

/// `--check-config` with `args`; asserts exit code 2 and returns the
/// refusal.
fn check_refuses(dir: &Path, args: &[&str]) -> String {
    let output = shmkafkad()
        .arg("--check-config")
        .args(["--spool-dir"])
        .arg(dir.join("spool"))
        .args(args)
        .output()
        .expect("shmkafkad --check-config");
    assert_eq!(
        output.status.code(),
        Some(2),
        "--check-config {args:?} did not refuse:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("configuration OK"),
        "{output:?}"
    );
    refusal_line(&output.stderr)
}

/// Starts the daemon with `args`; asserts it exits 2 without serving and
/// returns the refusal.
fn start_refuses(dir: &Path, args: &[&str]) -> String {
    let socket = dir.join("d.sock");
    let mut daemon = ChildGuard::new(
        shmkafkad()
            .args(["--log-level", "warn", "--socket"])
            .arg(&socket)
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmkafkad"),
    );
    let status = wait_timeout(&mut daemon.child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("shmkafkad {args:?} started instead of refusing"));
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(daemon.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&stderr)
    );
    assert!(!socket.exists(), "it must not have served");
    refusal_line(&stderr)
}

/// Refused by both, with the same line, which names `property`.
fn refused_alike(args: &[&str], property: &str, reason: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let checked = check_refuses(dir.path(), args);
    let started = start_refuses(dir.path(), args);
    assert_eq!(checked, started, "--check-config and start-up disagree");
    assert!(
        checked.contains(&format!("{property}: ")) && checked.contains(reason),
        "{checked}"
    );
    checked
}

#[test]
fn transactional_id_is_refused_from_the_file_and_from_x() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shmkafkad.toml");
    std::fs::write(
        &config,
        "[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:1\"\n\"transactional.id\" = \"orders\"\n",
    )
    .unwrap();
    let line = refused_alike(
        &["--config", config.to_str().unwrap()],
        "transactional.id",
        "transactions are not set by hand",
    );
    assert!(line.contains("remove the property"), "{line}");

    refused_alike(
        &[
            "--bootstrap-servers",
            "127.0.0.1:1",
            "-X",
            "transactional.id=orders",
        ],
        "transactional.id",
        "transactions are not set by hand",
    );
}

#[test]
fn exactly_once_settings_that_break_the_guarantee_are_refused_by_name() {
    let cases = [
        ("[exactly_once]\nenabled = true\n", "exactly_once.daemon_id is not set"),
        (
            "[exactly_once]\nenabled = true\ndaemon_id = \"host a\"\n",
            "exactly_once.daemon_id = \"host a\" must be",
        ),
        (
            "[exactly_once]\nenabled = true\ndaemon_id = \"a\"\n[kafka]\nacks = \"1\"\n",
            // librdkafka refuses it first, idempotence being on.
            "`acks` must be set to `all`",
        ),
        (
            "[exactly_once]\nenabled = true\ndaemon_id = \"a\"\n[kafka]\n\"enable.idempotence\" = \"false\"\n",
            "exactly_once needs [kafka] enable.idempotence = true",
        ),
        (
            "[exactly_once]\nenabled = true\ndaemon_id = \"a\"\ncommit_interval_ms = 40000\n",
            "exactly_once.commit_interval_ms = 40000 must be 1..=30000",
        ),
    ];
    for (text, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("shmkafkad.toml");
        std::fs::write(&config, text).unwrap();
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--bootstrap-servers",
            "127.0.0.1:1",
        ];
        let checked = check_refuses(dir.path(), &args);
        let started = start_refuses(dir.path(), &args);
        assert_eq!(checked, started, "--check-config and start-up disagree");
        assert!(checked.contains(reason), "{text:?}: {checked}");
    }
}

#[test]
fn a_sasl_mechanism_this_build_lacks_is_refused_by_name() {
    let line = refused_alike(
        &[
            "--bootstrap-servers",
            "127.0.0.1:1",
            "-X",
            "security.protocol=sasl_ssl",
            "-X",
            "sasl.mechanism=AWS_MSK_IAM",
            "-X",
            "sasl.username=u",
            "-X",
            "sasl.password=p",
        ],
        "sasl.mechanism",
        "Unsupported SASL mechanism: AWS_MSK_IAM",
    );
    // What to use instead.
    assert!(line.contains("SCRAM-SHA-512"), "{line}");
}

#[test]
fn what_librdkafka_checks_only_when_creating_a_producer_is_refused() {
    // The daemon's idempotence allows at most 5 requests in flight.
    refused_alike(
        &[
            "--bootstrap-servers",
            "127.0.0.1:1",
            "-X",
            "max.in.flight=6",
        ],
        "librdkafka refuses the configuration",
        "`max.in.flight` must be set <= 5",
    );
    // PLAIN without its credentials.
    refused_alike(
        &[
            "--bootstrap-servers",
            "127.0.0.1:1",
            "-X",
            "security.protocol=sasl_plaintext",
            "-X",
            "sasl.mechanisms=PLAIN",
        ],
        "librdkafka refuses the configuration",
        "sasl.username and sasl.password must be set",
    );
}

#[test]
fn a_complete_sasl_configuration_passes_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("sasl-password");
    std::fs::write(&password, "not-shown\n").unwrap();
    // A broker address that records any connection attempt.
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    broker.set_nonblocking(true).unwrap();
    let config = dir.path().join("shmkafkad.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\n\"bootstrap.servers\" = \"{}\"\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
             \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"shmkafkad\"\n\
             \"sasl.password_file\" = \"{}\"\n",
            broker.local_addr().unwrap(),
            password.display()
        ),
    )
    .unwrap();
    let output: Output = shmkafkad()
        .arg("--config")
        .arg(&config)
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--check-config")
        .output()
        .expect("shmkafkad --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(!text.contains("not-shown"), "the password leaked:\n{text}");
    // librdkafka's broker threads connect as soon as an instance with
    // brokers exists; the check's instance has none.
    match broker.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("--check-config connected to the broker: {other:?}"),
    }
}
