//! The C ABI from C: builds `client-lib/tests/c/test_abi.c` and the C
//! example with gcc against `include/shmkafka.h` and the `libshmkafka` this
//! package just built, runs them against `shmkafkad --embedded-broker`, and
//! reads the topic back with an independent consumer (rust-rdkafka, in the
//! testkit).
//!
//! Needs gcc and the `shmkafkad` binary of the same profile and target dir
//! (`cargo test --workspace` builds it; alone: `cargo build -p shmkafkad`).
//! `SHMKAFKA_C_ABI_VALGRIND=1` runs the C test under valgrind and fails on
//! any valgrind error.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shmkafka_testkit::{
    consume_all_with, locate_binary, unique_name, ConsumeOptions, ConsumedRecord,
};

const BULK: usize = 2000;
/// The log-append time librdkafka's mock cluster puts in every produce
/// response.
const MOCK_LOG_APPEND_TIME: i64 = 1234;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `client-lib/`.
fn client_lib_dir() -> PathBuf {
    manifest_dir().parent().expect("client-lib").to_owned()
}

/// Where cargo put this package's cdylib and staticlib: next to the test
/// executable (`target/<profile>/deps/`), since the test depends on the lib.
fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir").to_owned();
    assert!(
        dir.join("libshmkafka.so").is_file(),
        "libshmkafka.so not found next to the test executable in {}",
        dir.display()
    );
    dir
}

/// A directory holding `libshmkafka.so.0` (the soname the linker records)
/// pointing at the freshly built library, for the C programs' rpath.
fn runtime_lib_dir(work: &Path) -> PathBuf {
    let dir = work.join("lib");
    std::fs::create_dir_all(&dir).expect("lib dir");
    let so = artifact_dir().join("libshmkafka.so");
    std::os::unix::fs::symlink(&so, dir.join("libshmkafka.so.0")).expect("soname link");
    std::os::unix::fs::symlink(&so, dir.join("libshmkafka.so")).expect("dev link");
    dir
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e} (is it installed?)"));
    assert!(
        output.status.success(),
        "{what} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Compiles C sources into `out`, linked against `libshmkafka.so`.
fn gcc_shared(sources: &[PathBuf], out: &Path, lib_dir: &Path) {
    let mut gcc = Command::new("gcc");
    gcc.args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-g", "-O1"])
        .args(["-Wall", "-Wextra", "-Wpedantic", "-Werror"])
        .arg("-I")
        .arg(client_lib_dir().join("include"))
        .args(sources)
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lshmkafka")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    run(&mut gcc, "gcc");
}

/// Compiles C sources into `out`, linked statically against `libshmkafka.a`
/// with the system libraries the pkg-config file lists in `Libs.private`.
fn gcc_static(sources: &[PathBuf], out: &Path) {
    let mut gcc = Command::new("gcc");
    gcc.args([
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-O1",
        "-Wall",
        "-Werror",
    ])
    .arg("-I")
    .arg(client_lib_dir().join("include"))
    .args(sources)
    .arg(artifact_dir().join("libshmkafka.a"))
    .args([
        "-lgcc_s",
        "-lutil",
        "-lrt",
        "-lpthread",
        "-lm",
        "-ldl",
        "-lc",
    ])
    .arg("-o")
    .arg(out);
    run(&mut gcc, "gcc (static)");
}

/// `shmkafkad --embedded-broker` in a child process, killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    bootstrap: String,
    log: PathBuf,
    /// Kept open so the daemon never writes to a closed stdout.
    _stdout: BufReader<ChildStdout>,
}

impl Daemon {
    fn start(dir: &Path, topics: &[(&str, u32)]) -> Daemon {
        Self::start_with(dir, topics, &[])
    }

    /// With librdkafka `properties` (`-X key=value`) for the daemon's producer.
    fn start_with(dir: &Path, topics: &[(&str, u32)], properties: &[&str]) -> Daemon {
        let binary = locate_binary("shmkafkad", "SHMKAFKAD_BIN").unwrap_or_else(|e| panic!("{e}"));
        let socket = dir.join("shmkafkad.sock");
        let log = dir.join("shmkafkad.log");
        let mut command = Command::new(binary);
        command
            .arg("--embedded-broker")
            .arg("--socket")
            .arg(&socket)
            // The test's own spool: permanent failures are written there.
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .args(["--log-level", "info"]);
        for (topic, partitions) in topics {
            command
                .arg("--embedded-topic")
                .arg(format!("{topic}:{partitions}"));
        }
        for property in properties {
            command.arg("-X").arg(property);
        }
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("daemon log"))
            .spawn()
            .expect("spawning shmkafkad");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading shmkafkad stdout");
        let bootstrap = line
            .trim()
            .strip_prefix("embedded-broker bootstrap=")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?} from shmkafkad; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        let daemon = Daemon {
            child,
            socket,
            bootstrap,
            log,
            _stdout: stdout,
        };
        daemon.wait_for_socket();
        daemon
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "shmkafkad socket not ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- shmkafkad log\n{}", self.log_text());
        }
    }
}

/// Reads `topic` until `expected` records arrived, then 2 s more so that
/// extra (duplicate or aborted) records would show up too.
fn consume(bootstrap: &str, topic: &str, expected: usize) -> Vec<ConsumedRecord> {
    let options =
        ConsumeOptions::new(expected, Duration::from_secs(60)).grace(Duration::from_secs(2));
    consume_all_with(bootstrap, topic, &options).expect("consuming")
}

fn text(bytes: &Option<Vec<u8>>) -> Option<&str> {
    bytes
        .as_deref()
        .map(|b| std::str::from_utf8(b).expect("utf-8"))
}

fn headers(record: &ConsumedRecord) -> Vec<(&str, Option<&str>)> {
    record
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), text(value)))
        .collect()
}

/// Checks what the C test wrote, record by record (see test_abi.c).
fn verify_content(records: &[ConsumedRecord]) {
    let by_value: HashMap<Option<&str>, &ConsumedRecord> =
        records.iter().map(|r| (text(&r.value), r)).collect();
    assert_eq!(
        by_value.len(),
        records.len(),
        "duplicate values among {} records",
        records.len()
    );

    let r0 = by_value.get(&Some("v0")).expect("record v0");
    assert_eq!(text(&r0.key), Some("k0"));
    assert_eq!(
        headers(r0),
        vec![("h1", Some("a")), ("h2", None), ("h3", Some(""))]
    );

    let r1 = by_value.get(&Some("v1")).expect("record v1");
    assert_eq!(r1.key, None, "null key");
    assert!(r1.headers.is_empty());

    let r2 = by_value.get(&None).expect("record with a null value");
    assert_eq!(r2.key.as_deref(), Some(&b""[..]), "empty, not null, key");

    let r3 = by_value.get(&Some("v3")).expect("record v3");
    assert_eq!(text(&r3.key), Some("k3"));
    assert_eq!(r3.partition, 0);
    assert_eq!(r3.timestamp_ms, Some(1_700_000_000_000));

    let r4 = by_value
        .get(&Some("v4-zero-copy"))
        .expect("zero-copy record");
    assert_eq!(text(&r4.key), Some("k4"));

    assert!(
        !by_value.contains_key(&Some("ABORTED")),
        "an aborted reservation was delivered"
    );

    for i in 0..BULK {
        let value = format!("value-{i}");
        let record = by_value
            .get(&Some(value.as_str()))
            .unwrap_or_else(|| panic!("bulk record {i} missing"));
        assert_eq!(text(&record.key), Some(format!("bulk-{i}").as_str()));
        let n = i.to_string();
        assert_eq!(headers(record), vec![("n", Some(n.as_str()))]);
    }
    assert_eq!(records.len(), 5 + BULK, "unexpected extra records");
}

#[test]
fn c_program_writes_what_the_broker_stores() {
    let work = tempfile::tempdir().expect("tempdir");
    let lib_dir = runtime_lib_dir(work.path());
    let test_bin = work.path().join("test_abi");
    gcc_shared(
        &[client_lib_dir().join("tests/c/test_abi.c")],
        &test_bin,
        &lib_dir,
    );

    let topic = unique_name("c-abi");
    let full_topic = format!("{topic}-full");
    let batch_topic = format!("{topic}-batch");
    let daemon = Daemon::start(
        work.path(),
        &[(&topic, 3), (&full_topic, 1), (&batch_topic, 1)],
    );

    let mut command = if std::env::var_os("SHMKAFKA_C_ABI_VALGRIND").is_some() {
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--track-origins=yes",
        ])
        .arg(&test_bin);
        c
    } else {
        Command::new(&test_bin)
    };
    command
        .arg(&daemon.socket)
        .arg(&topic)
        .arg(BULK.to_string());
    let output = run(&mut command, "the C ABI test program");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if std::env::var_os("SHMKAFKA_C_ABI_VALGRIND").is_some() {
        eprintln!("--- valgrind\n{stderr}");
    }
    let written: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("C-ABI-OK "))
        .unwrap_or_else(|| panic!("no C-ABI-OK line in {stdout:?}; stderr:\n{stderr}"))
        .parse()
        .expect("count");
    assert_eq!(written, 5 + BULK);

    let records = consume(&daemon.bootstrap, &topic, written);
    verify_content(&records);

    // The batches, in order on partition 0.
    let batch = consume(&daemon.bootstrap, &batch_topic, 5);
    let got: Vec<(Option<&str>, Option<&str>)> = batch
        .iter()
        .map(|r| (text(&r.key), text(&r.value)))
        .collect();
    assert_eq!(
        got,
        [
            (Some("b0"), Some("first")),
            (Some("b1"), Some("second")),
            (Some("b2"), Some("third")),
            (Some("z0"), Some("inline")),
            (Some("z1"), None),
        ]
    );
}

#[test]
fn c_example_builds_shared_and_static_and_delivers() {
    let work = tempfile::tempdir().expect("tempdir");
    let lib_dir = runtime_lib_dir(work.path());
    let example = client_lib_dir().join("examples/c/produce.c");
    let shared = work.path().join("produce");
    let fully_static = work.path().join("produce-static");
    gcc_shared(std::slice::from_ref(&example), &shared, &lib_dir);
    gcc_static(&[example], &fully_static);

    let topic = unique_name("c-example");
    let daemon = Daemon::start(work.path(), &[(&topic, 2)]);
    for binary in [&shared, &fully_static] {
        let output = run(
            Command::new(binary)
                .arg(&topic)
                .arg("500")
                .arg(&daemon.socket),
            "the C example",
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("500 records"), "{stdout}");
        assert!(stdout.contains(", 0 failed"), "{stdout}");
    }
    let records = consume(&daemon.bootstrap, &topic, 1000);
    assert_eq!(records.len(), 1000);
    assert!(records
        .iter()
        .all(|r| headers(r) == vec![("source", Some("c-example"))]));
}

/// Builds `tests/c/test_reports.c` and runs it in `mode` against `daemon`;
/// returns its stdout after checking its final `<ok_marker> <count>` line.
fn run_reports_program(
    work: &Path,
    daemon: &Daemon,
    mode: &str,
    topic: &str,
    count: usize,
    ok_marker: &str,
) -> String {
    let lib_dir = runtime_lib_dir(work);
    let test_bin = work.join("test_reports");
    gcc_shared(
        &[client_lib_dir().join("tests/c/test_reports.c")],
        &test_bin,
        &lib_dir,
    );
    let output = run(
        Command::new(&test_bin)
            .arg(mode)
            .arg(&daemon.socket)
            .arg(topic)
            .arg(count.to_string()),
        "the C delivery-report test program",
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let done = format!("{ok_marker} {count}");
    assert!(
        stdout.lines().any(|l| l == done),
        "no {done:?} line; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn c_program_reads_a_delivery_report_per_record_matching_the_broker() {
    const COUNT: usize = 3000;
    let work = tempfile::tempdir().expect("tempdir");
    let topic = unique_name("c-reports");
    let daemon = Daemon::start(work.path(), &[(&topic, 3)]);
    let stdout = run_reports_program(
        work.path(),
        &daemon,
        "delivered",
        &topic,
        COUNT,
        "REPORTS-OK",
    );

    // "D <seq> <partition> <offset> <timestamp>": the C program checked
    // each seq came once, in order, with its opaque; here the places must
    // be the broker's.
    let reported: HashMap<usize, (i32, i64, i64)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("D "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let field = |i: usize| f[i].parse::<i64>().expect("number");
            (field(0) as usize, (field(1) as i32, field(2), field(3)))
        })
        .collect();
    assert_eq!(reported.len(), COUNT);

    let records = consume(&daemon.bootstrap, &topic, COUNT);
    assert_eq!(
        records.len(),
        COUNT,
        "unexpected record count at the broker"
    );
    for record in &records {
        let value = text(&record.value).expect("value");
        let i: usize = value
            .strip_prefix("rv-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected value {value}"));
        assert_eq!(text(&record.key), Some(format!("rk-{i}").as_str()));
        // The program sent record i as the ring's record i (seq i).
        let (partition, offset, timestamp_ms) = reported[&i];
        assert_eq!(
            (partition, offset),
            (record.partition, record.offset),
            "report of seq {i} differs from where the broker stored it"
        );
        // librdkafka reports the broker's log-append time when the produce
        // response has one; the mock cluster always answers 1234 there, a
        // real broker -1 for create-time topics (then the create time).
        assert!(
            Some(timestamp_ms) == record.timestamp_ms || timestamp_ms == MOCK_LOG_APPEND_TIME,
            "seq {i}: reported timestamp {timestamp_ms}, stored {:?}",
            record.timestamp_ms
        );
    }
}

#[test]
fn c_program_gets_every_permanent_failure_by_report_and_by_flush() {
    const COUNT: usize = 10_000;
    let work = tempfile::tempdir().expect("tempdir");
    let topic = unique_name("c-report-failures");
    // Records over 1000 bytes are refused by the daemon's producer
    // (MSG_SIZE_TOO_LARGE): a permanent failure for each.
    let daemon = Daemon::start_with(work.path(), &[(&topic, 1)], &["message.max.bytes=1000"]);
    run_reports_program(
        work.path(),
        &daemon,
        "failures",
        &topic,
        COUNT,
        "FAILURES-OK",
    );
}
