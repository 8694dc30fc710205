//! Shared plumbing of the `e2e_*` tests: the daemon in a child process,
//! client child processes (the test binary re-executed in a "role"), a
//! deterministic record workload, and the verifier that checks what the
//! broker stored against it.
//!
//! Every record carries its identity (producing process, thread, per-thread
//! counter) in an `e2e-id` header; everything else about it (key, value
//! bytes and size, headers, partition, timestamp) is a pure function of that
//! identity, so the verifier regenerates the expected record instead of
//! trusting anything the producers report.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_testkit::{
    consume_all_with, locate_binary, ChildRole, ConsumeOptions, ConsumedRecord, MOCK_BROKER_BIN,
    MOCK_BROKER_BIN_ENV, SHMKAFKAD_BIN, SHMKAFKAD_BIN_ENV,
};
use shmkafka_testkit::{wait_timeout, DaemonOptions};

/// The `shmkafkad` binary under test (built by cargo beside the test
/// executable, or `SHMKAFKAD_BIN`).
pub fn shmkafkad_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        locate_binary(SHMKAFKAD_BIN, SHMKAFKAD_BIN_ENV).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The `shmkafka-mock-broker` binary (beside the test executable, or
/// `SHMKAFKA_MOCK_BROKER_BIN`).
pub fn mock_broker_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        locate_binary(MOCK_BROKER_BIN, MOCK_BROKER_BIN_ENV).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// How an `e2e_*` binary re-executes itself as a client.
const ROLE: ChildRole = ChildRole {
    env: "SHMKAFKA_E2E_ROLE",
    entry: CHILD_ENTRY,
};
/// Prefix of the lines a child prints for its parent.
const RESULT_PREFIX: &str = "E2E-RESULT ";
/// The header carrying a record's identity.
pub const ID_HEADER: &str = "e2e-id";
/// Fixed create time for the records that carry an explicit one.
pub const FIXED_TS: i64 = 1_700_000_000_000;
/// Biggest value in the workloads; with key, headers and framing the record
/// stays under the default `message.max.bytes` (1 000 000) of librdkafka
/// and of the brokers.
pub const LARGEST_VALUE: usize = 512 * 1024;

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// The daemon built with these tests, listening on `socket` and producing
/// to `bootstrap` (logs, config and spool next to the socket).
pub fn daemon_options(socket: &Path, bootstrap: &str) -> DaemonOptions {
    DaemonOptions::new(shmkafkad_bin(), socket, bootstrap)
}

/// A temp dir for sockets and logs; world-traversable so that a client
/// running as another user can reach a socket in it.
pub fn test_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("shmkafka-e2e-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

// ---------------------------------------------------------------------------
// Client child processes
// ---------------------------------------------------------------------------

/// How a sender child ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `flush` (must succeed), then exit normally.
    Flush,
    /// `std::process::exit(0)` right after the last commit: no flush, no
    /// destructors.
    Exit,
    /// SIGKILL itself right after the last commit (a crash).
    Crash,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Flush => "flush",
            Finish::Exit => "exit",
            Finish::Crash => "crash",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "flush" => Finish::Flush,
            "exit" => Finish::Exit,
            "crash" => Finish::Crash,
            other => panic!("unknown finish {other:?}"),
        }
    }
}

/// What a sender child does: one producer, `workload.threads` threads each
/// sending its records of process `proc_id`.
#[derive(Debug, Clone)]
pub struct SenderSpec {
    pub socket: PathBuf,
    pub topic: String,
    pub proc_id: u32,
    pub workload: Workload,
    pub ring_capacity: usize,
    pub finish: Finish,
    /// Run as this (uid, gid); needs root.
    pub run_as: Option<(u32, u32)>,
}

/// A client child process; SIGKILLed on drop. Its stdout is collected by a
/// reader thread.
pub struct ClientChild {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    proc_id: u32,
}

/// Name of the test function that every `e2e_*` binary has to dispatch roles.
pub const CHILD_ENTRY: &str = "child_role_entry_point";

impl SenderSpec {
    pub fn spawn(&self) -> ClientChild {
        let mut command = ROLE.command("sender");
        command
            .env("E2E_SOCKET", &self.socket)
            .env("E2E_TOPIC", &self.topic)
            .env("E2E_RING", self.ring_capacity.to_string())
            .env("E2E_FINISH", self.finish.as_str());
        self.workload.pass_to(&mut command, "E2E", self.proc_id);
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups when it sets the uid.
            command.uid(uid).gid(gid);
        }
        let mut child = command.spawn().expect("spawning a client child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ClientChild {
            child: Some(child),
            lines: rx,
            proc_id: self.proc_id,
        }
    }
}

/// What a child reported.
#[derive(Debug, Clone, Default)]
pub struct ChildReport {
    /// `key=value` pairs from its result line.
    pub values: BTreeMap<String, String>,
    /// Everything it printed on stdout.
    pub stdout: Vec<String>,
    pub status: Option<ExitStatus>,
}

impl ChildReport {
    pub fn get(&self, key: &str) -> u64 {
        self.values
            .get(key)
            .unwrap_or_else(|| {
                panic!(
                    "child reported no {key:?} (status {:?}); its stdout:\n{}",
                    self.status,
                    self.stdout.join("\n")
                )
            })
            .parse()
            .expect("number")
    }
}

impl ClientChild {
    /// Waits for the child to exit; returns its report. Panics on timeout.
    pub fn wait(mut self, timeout: Duration) -> ChildReport {
        let mut child = self.child.take().expect("child running");
        let status = wait_timeout(&mut child, timeout);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "client child {} still running after {timeout:?}",
                self.proc_id
            );
        };
        let mut report = ChildReport {
            status: Some(status),
            ..ChildReport::default()
        };
        // The reader thread sees EOF once the child is gone.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            report.stdout.push(line.clone());
            // libtest may have written "test ... " on the same line first.
            if let Some(at) = line.find(RESULT_PREFIX) {
                let rest = &line[at + RESULT_PREFIX.len()..];
                for pair in rest.split_whitespace() {
                    if let Some((k, v)) = pair.split_once('=') {
                        report.values.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        report
    }

    /// Waits and asserts a clean exit.
    pub fn wait_success(self, timeout: Duration) -> ChildReport {
        let proc_id = self.proc_id;
        let report = self.wait(timeout);
        let status = report.status.expect("status");
        assert!(
            status.success(),
            "client child {proc_id} failed: {status} (its panic message is in the output above); report {:?}",
            report.values
        );
        report
    }
}

impl Drop for ClientChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the role this process was started for, if any. Called by the
/// `child_role_entry_point` test of each e2e binary; a no-op in the parent.
pub fn run_child_role() {
    let Some(role) = ROLE.current() else {
        return;
    };
    match role.as_str() {
        "sender" => run_sender(),
        other => panic!("unknown e2e role {other:?}"),
    }
}

/// A number from the environment variable `name`, which must be set.
pub fn env_num<T: std::str::FromStr>(name: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .expect(name)
}

fn report_result(pairs: &[(&str, u64)]) {
    let mut line = String::from(RESULT_PREFIX);
    for (k, v) in pairs {
        line.push_str(&format!("{k}={v} "));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

fn run_sender() {
    let socket: PathBuf = std::env::var("E2E_SOCKET").expect("E2E_SOCKET").into();
    let topic_name = std::env::var("E2E_TOPIC").expect("E2E_TOPIC");
    let (workload, proc_id) = Workload::from_env("E2E");
    let finish = Finish::parse(&std::env::var("E2E_FINISH").expect("E2E_FINISH"));
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket),
        ring_capacity: env_num("E2E_RING"),
        max_record_len: 1 << 20,
        when_full: WhenFull::Block(Duration::from_secs(60)),
        client_name: format!("e2e-proc-{proc_id}"),
        delivery_reports: false,
    })
    .expect("connect");
    let topic = producer.topic(&topic_name).expect("topic");
    std::thread::scope(|scope| {
        for thread in 0..workload.threads {
            let (producer, topic, workload) = (&producer, &topic, &workload);
            scope.spawn(move || {
                for counter in 0..workload.per_thread {
                    let id = RecordId {
                        proc: proc_id,
                        thread,
                        counter,
                    };
                    send_expected(producer, topic, &workload.record(id));
                }
            });
        }
    });
    let stats = producer.stats();
    let sent = u64::from(workload.threads) * u64::from(workload.per_thread);
    match finish {
        Finish::Flush => {
            let report = producer.flush(Duration::from_secs(60)).expect("flush");
            assert!(
                report.failures.is_empty(),
                "failures: {:?}",
                report.failures
            );
            report_result(&[("sent", sent), ("pending_at_exit", 0)]);
        }
        Finish::Exit => {
            report_result(&[
                ("sent", sent),
                ("pending_at_exit", stats.unacknowledged_bytes),
            ]);
            std::process::exit(0);
        }
        Finish::Crash => {
            report_result(&[
                ("sent", sent),
                ("pending_at_exit", stats.unacknowledged_bytes),
            ]);
            kill(Pid::this(), Signal::SIGKILL).expect("SIGKILL self");
        }
    }
}

/// Sends one expected record with the client library.
pub fn send_expected(producer: &Producer, topic: &shmkafka_client::Topic, record: &ExpectedRecord) {
    let mut message = Message::new();
    message.key = record.key.as_deref();
    message.value = record.value.as_deref();
    message.partition = record.partition;
    message.timestamp_ms = record.timestamp_ms;
    for (name, value) in &record.headers {
        message = message.header(name, value.as_deref());
    }
    producer.send(topic, &message).expect("send");
}

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

/// Identity of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub proc: u32,
    pub thread: u32,
    pub counter: u32,
}

impl RecordId {
    fn encode(self) -> Vec<u8> {
        format!("{}/{}/{}", self.proc, self.thread, self.counter).into_bytes()
    }
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split('/').map(|p| p.parse::<u32>().ok());
        let id = RecordId {
            proc: parts.next()??,
            thread: parts.next()??,
            counter: parts.next()??,
        };
        parts.next().is_none().then_some(id)
    }
    fn seed(self) -> u64 {
        (u64::from(self.proc) << 48) ^ (u64::from(self.thread) << 32) ^ u64::from(self.counter)
    }
}

/// What every producing process sends: `threads` x `per_thread` records
/// per process, values up to `max_value` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub procs: u32,
    pub threads: u32,
    pub per_thread: u32,
    pub partitions: i32,
    pub max_value: usize,
}

impl Workload {
    /// Hands the workload of process `proc_id` to a child process through
    /// `{prefix}_*` environment variables (read back by [`Workload::from_env`]).
    pub fn pass_to(&self, command: &mut Command, prefix: &str, proc_id: u32) {
        command
            .env(format!("{prefix}_PROC"), proc_id.to_string())
            .env(format!("{prefix}_THREADS"), self.threads.to_string())
            .env(format!("{prefix}_PER_THREAD"), self.per_thread.to_string())
            .env(format!("{prefix}_PARTITIONS"), self.partitions.to_string())
            .env(format!("{prefix}_MAX_VALUE"), self.max_value.to_string());
    }

    /// The child's side of [`Workload::pass_to`]: the workload (sized to
    /// include this process) and this process's id.
    pub fn from_env(prefix: &str) -> (Workload, u32) {
        let proc_id: u32 = env_num(&format!("{prefix}_PROC"));
        let workload = Workload {
            procs: proc_id + 1,
            threads: env_num(&format!("{prefix}_THREADS")),
            per_thread: env_num(&format!("{prefix}_PER_THREAD")),
            partitions: env_num(&format!("{prefix}_PARTITIONS")),
            max_value: env_num(&format!("{prefix}_MAX_VALUE")),
        };
        (workload, proc_id)
    }
}

/// A record as sent and as the broker must store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRecord {
    pub id: RecordId,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// `None`: left to the daemon's partitioner.
    pub partition: Option<i32>,
    /// `None`: the client stamps the current time.
    pub timestamp_ms: Option<i64>,
}

/// splitmix64: a cheap deterministic byte source.
fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sizes of ordinary values; every 100th record is large instead.
///
/// Keep a test's volume well under 5 MiB per partition on the mock broker:
/// librdkafka's mock cluster keeps only that much per partition
/// (`mpart->max_size` in rdkafka_mock.c) and silently deletes older records,
/// which the verifier would report as missing.
const SMALL_SIZES: [usize; 9] = [0, 1, 7, 8, 63, 100, 1000, 4099, 16 * 1024 + 5];

impl Workload {
    pub fn total(&self) -> usize {
        self.procs as usize * self.threads as usize * self.per_thread as usize
    }

    pub fn ids(&self) -> impl Iterator<Item = RecordId> + '_ {
        (0..self.procs).flat_map(move |proc| {
            (0..self.threads).flat_map(move |thread| {
                (0..self.per_thread).map(move |counter| RecordId {
                    proc,
                    thread,
                    counter,
                })
            })
        })
    }

    /// The record `id` sends: a pure function of `id` and the workload.
    // `u32::is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    pub fn record(&self, id: RecordId) -> ExpectedRecord {
        let c = id.counter;
        let seed = id.seed();
        let value_len = if c % 100 == 49 {
            // Large records, one in three exactly `max_value`.
            let large = [
                self.max_value / 4 + 3,
                self.max_value / 2 + 11,
                self.max_value,
            ];
            large[(c / 100) as usize % large.len()]
        } else {
            SMALL_SIZES[(seed.wrapping_mul(31) >> 3) as usize % SMALL_SIZES.len()]
        }
        .min(self.max_value);
        let value = if c % 17 == 5 {
            None // null value (tombstone)
        } else {
            Some(fill(seed, value_len))
        };
        let key = match c % 4 {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(format!("key-{}-{}", id.thread, c % 13).into_bytes()),
        };
        let mut headers = vec![(ID_HEADER.to_owned(), Some(id.encode()))];
        if c.is_multiple_of(3) {
            headers.push(("null-header".to_owned(), None));
        }
        if c.is_multiple_of(5) {
            headers.push(("empty-header".to_owned(), Some(Vec::new())));
        }
        if c.is_multiple_of(7) {
            headers.push(("binary".to_owned(), Some(fill(!seed, 33))));
        }
        if c.is_multiple_of(11) {
            headers.push(("dup".to_owned(), Some(b"first".to_vec())));
            headers.push(("dup".to_owned(), Some(b"second".to_vec())));
        }
        ExpectedRecord {
            id,
            key,
            value,
            headers,
            partition: (c % 3 == 1)
                .then(|| ((id.proc + id.thread + c) % self.partitions as u32) as i32),
            timestamp_ms: (c % 4 == 2).then(|| FIXED_TS + i64::from(c)),
        }
    }
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Delivery guarantee a test expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    ExactlyOnce,
    /// Duplicates allowed (daemon crash), none missing. Records the
    /// partitioner places at random (no explicit partition, null or empty
    /// key) are left out of the order check: a record in flight at the
    /// crash is partitioned again when the next daemon sends it, so it may
    /// land in a partition behind later records of its thread that the
    /// crashed daemon had already delivered there.
    AtLeastOnce,
}

/// What the verifier found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub consumed: usize,
    pub distinct: usize,
    pub duplicates: usize,
}

/// Reads `topic` back and checks it holds exactly the records of `ids`
/// (per `guarantee`), byte-identical, in per-thread order within each
/// partition.
pub fn consume_and_verify(
    bootstrap: &str,
    topic: &str,
    workload: &Workload,
    ids: &[RecordId],
    guarantee: Guarantee,
    timeout: Duration,
) -> Verdict {
    // The grace period catches duplicates arriving after the expected count.
    let options = ConsumeOptions::new(ids.len(), timeout).grace(Duration::from_millis(
        if guarantee == Guarantee::ExactlyOnce {
            500
        } else {
            1000
        },
    ));
    let consumed = consume_all_with(bootstrap, topic, &options).expect("consuming");
    verify(&consumed, workload, ids, guarantee)
}

/// Checks `consumed` (sorted by partition and offset) against `ids`.
pub fn verify(
    consumed: &[ConsumedRecord],
    workload: &Workload,
    ids: &[RecordId],
    guarantee: Guarantee,
) -> Verdict {
    let mut problems = Vec::new();
    let mut by_id: HashMap<RecordId, Vec<&ConsumedRecord>> = HashMap::new();
    for record in consumed {
        let id = record
            .headers
            .iter()
            .find(|(name, _)| name == ID_HEADER)
            .and_then(|(_, value)| value.as_deref())
            .and_then(RecordId::decode);
        match id {
            Some(id) => by_id.entry(id).or_default().push(record),
            None => problems.push(format!(
                "record at {}/{} has no valid {ID_HEADER} header: headers {:?}",
                record.partition, record.offset, record.headers
            )),
        }
    }
    let wanted: std::collections::HashSet<RecordId> = ids.iter().copied().collect();
    for id in by_id.keys().filter(|id| !wanted.contains(id)) {
        problems.push(format!("unexpected record {id:?}"));
    }
    let mut missing = Vec::new();
    let mut duplicates = 0;
    // First occurrence of each record, for the order check.
    let mut firsts: BTreeMap<(u32, u32, i32), Vec<(u32, i64)>> = BTreeMap::new();
    for &id in ids {
        let Some(found) = by_id.get(&id) else {
            missing.push(id);
            continue;
        };
        if found.len() > 1 {
            duplicates += found.len() - 1;
            if guarantee == Guarantee::ExactlyOnce {
                problems.push(format!(
                    "{id:?} stored {} times (at {:?})",
                    found.len(),
                    found
                        .iter()
                        .map(|r| (r.partition, r.offset))
                        .collect::<Vec<_>>()
                ));
            }
        }
        let expected = workload.record(id);
        for record in found {
            check_content(&expected, record, &mut problems);
        }
        let randomly_placed =
            expected.partition.is_none() && expected.key.as_deref().is_none_or(<[u8]>::is_empty);
        if guarantee == Guarantee::AtLeastOnce && randomly_placed {
            continue;
        }
        // Duplicates of a record whose partition is fixed are in that
        // partition; the first copy is the one that counts for order.
        let first = found
            .iter()
            .min_by_key(|r| (r.partition, r.offset))
            .expect("non-empty");
        firsts
            .entry((id.proc, id.thread, first.partition))
            .or_default()
            .push((id.counter, first.offset));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} records missing, first ones: {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    // Order: per producing thread and partition, offsets rise with the counter.
    for ((proc, thread, partition), mut entries) in firsts {
        entries.sort_unstable();
        for pair in entries.windows(2) {
            if pair[1].1 <= pair[0].1 {
                problems.push(format!(
                    "order broken in partition {partition} for proc {proc} thread {thread}: \
                     counter {} at offset {}, counter {} at offset {}",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ));
            }
        }
    }
    let mut partitions: BTreeMap<i32, (usize, i64, i64)> = BTreeMap::new();
    for r in consumed {
        let e = partitions
            .entry(r.partition)
            .or_insert((0, i64::MAX, i64::MIN));
        *e = (e.0 + 1, e.1.min(r.offset), e.2.max(r.offset));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {} consumed records (per partition: count, first and last offset {partitions:?}; \
         showing up to 20 problems):\n  {}",
        problems.len(),
        consumed.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    Verdict {
        consumed: consumed.len(),
        distinct: by_id.len(),
        duplicates,
    }
}

fn check_content(expected: &ExpectedRecord, got: &ConsumedRecord, problems: &mut Vec<String>) {
    let at = format!("{:?} at {}/{}", expected.id, got.partition, got.offset);
    if got.key != expected.key {
        problems.push(format!(
            "{at}: key {:?}, expected {:?}",
            got.key.as_deref().map(String::from_utf8_lossy),
            expected.key.as_deref().map(String::from_utf8_lossy)
        ));
    }
    if got.value != expected.value {
        let describe = |v: &Option<Vec<u8>>| match v {
            None => "null".to_owned(),
            Some(v) => format!("{} bytes", v.len()),
        };
        let first_diff = match (&got.value, &expected.value) {
            (Some(a), Some(b)) => a.iter().zip(b).position(|(x, y)| x != y),
            _ => None,
        };
        problems.push(format!(
            "{at}: value of {} differs from expected {} (first differing byte {first_diff:?})",
            describe(&got.value),
            describe(&expected.value)
        ));
    }
    if got.headers != expected.headers {
        problems.push(format!(
            "{at}: headers {:?}, expected {:?}",
            got.headers, expected.headers
        ));
    }
    if let Some(partition) = expected.partition {
        if got.partition != partition {
            problems.push(format!("{at}: expected explicit partition {partition}"));
        }
    }
    if let Some(ts) = expected.timestamp_ms {
        if got.timestamp_ms != Some(ts) {
            problems.push(format!(
                "{at}: timestamp {:?}, expected {ts}",
                got.timestamp_ms
            ));
        }
    }
}

/// Whether a child's status says it was killed by `signal`.
pub fn killed_by(status: ExitStatus, signal: Signal) -> bool {
    status.signal() == Some(signal as i32)
}
