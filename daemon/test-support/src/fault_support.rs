//! Plumbing of the `fault_*` tests (nothing committed is lost): client child
//! processes that report their commits as they go (so a test that kills one
//! knows what it had committed), a hostile child that scribbles on its own
//! ring, the daemon's status and the broker's watermarks, and the verdict
//! row every fault test prints.
//!
//! Records are those of `common::Workload` (identity in an `e2e-id`
//! header, everything else a function of it), checked by `common::verify`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use shmkafka_client::{Message, Producer, ProducerOptions, Topic, WhenFull};
use shmkafka_testkit::{consume_all_with, ChildRole, ConsumeOptions};

use crate::common::{self, env_num, shmkafkad_bin, Guarantee, RecordId, Workload};

/// How a `fault_*` binary re-executes itself as a child.
const ROLE: ChildRole = ChildRole {
    env: "SHMKAFKA_FAULT_ROLE",
    entry: CHILD_ENTRY,
};
/// Prefix of a child's progress line: `thread=T committed=N` says that the
/// thread's records 0..N are committed (each thread commits in order).
const PROGRESS: &str = "FAULT-PROGRESS ";
/// Prefix of other key=value lines a child prints.
const EVENT: &str = "FAULT-EVENT ";
/// Name of the test function each `fault_*` binary dispatches roles from.
pub const CHILD_ENTRY: &str = "child_role_entry_point";

// ---------------------------------------------------------------------------
// Streaming client children
// ---------------------------------------------------------------------------

/// What a streaming child does: `workload.threads` threads each sending
/// records `0..per_thread` of process `proc_id`, reporting every
/// `report_every` commits.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub socket: PathBuf,
    pub topic: String,
    pub proc_id: u32,
    pub workload: Workload,
    pub ring_capacity: usize,
    /// `WhenFull::Block` timeout: long, so a daemon restart never reaches
    /// the application as an error.
    pub block: Duration,
    pub report_every: u32,
    /// Sleep this long after every `report_every` records (0: full speed).
    pub pace: Duration,
    /// A separate thread reserves a record after this many commits of
    /// thread 0 and never commits it (the process is killed holding it).
    pub hold_reservation_after: Option<u32>,
    /// What the child does after its last commit.
    pub finish: Finish,
}

impl StreamSpec {
    pub fn new(socket: &Path, topic: &str, proc_id: u32, workload: Workload) -> Self {
        Self {
            socket: socket.to_owned(),
            topic: topic.to_owned(),
            proc_id,
            workload,
            ring_capacity: 1 << 20,
            block: Duration::from_secs(120),
            report_every: 1000,
            pace: Duration::ZERO,
            hold_reservation_after: None,
            finish: Finish::Flush,
        }
    }

    pub fn spawn(&self) -> FaultChild {
        let mut command = child_command("stream");
        command
            .env("FAULT_SOCKET", &self.socket)
            .env("FAULT_TOPIC", &self.topic)
            .env("FAULT_RING", self.ring_capacity.to_string())
            .env("FAULT_BLOCK_MS", self.block.as_millis().to_string())
            .env("FAULT_REPORT_EVERY", self.report_every.to_string())
            .env("FAULT_PACE_US", self.pace.as_micros().to_string())
            .env(
                "FAULT_HOLD_AFTER",
                self.hold_reservation_after
                    .map_or(String::new(), |n| n.to_string()),
            )
            .env("FAULT_FINISH", self.finish.as_str());
        self.workload.pass_to(&mut command, "FAULT", self.proc_id);
        FaultChild::spawn(command, self.proc_id)
    }
}

/// How a streaming child ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `flush` (must succeed), then exit 0.
    Flush,
    /// `exit(0)` right after the last commit: no flush, no destructors.
    Exit,
    /// Wait to be killed.
    Hang,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Flush => "flush",
            Finish::Exit => "exit",
            Finish::Hang => "hang",
        }
    }
}

/// The test binary re-executed in `role`.
pub fn child_command(role: &str) -> Command {
    ROLE.command(role)
}

/// What the parent has heard from a child so far.
#[derive(Debug, Default)]
pub struct ChildState {
    /// Per thread: records `0..n` committed.
    pub committed: BTreeMap<u32, u32>,
    /// `FAULT-EVENT` lines, as key=value maps, in order.
    pub events: Vec<BTreeMap<String, String>>,
    /// Every stdout line.
    pub lines: Vec<String>,
}

/// A child process; SIGKILLed on drop.
pub struct FaultChild {
    child: Option<std::process::Child>,
    pub proc_id: u32,
    state: Arc<Mutex<ChildState>>,
    reader: Option<JoinHandle<()>>,
}

fn parse_pairs(rest: &str) -> BTreeMap<String, String> {
    rest.split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl FaultChild {
    pub fn spawn(mut command: Command, proc_id: u32) -> FaultChild {
        let mut child = command.spawn().expect("spawning a fault child");
        let stdout = child.stdout.take().expect("piped stdout");
        let state = Arc::new(Mutex::new(ChildState::default()));
        let reader = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut state = state.lock().unwrap();
                    // libtest may have written "test ... " on the same line.
                    if let Some(at) = line.find(PROGRESS) {
                        let pairs = parse_pairs(&line[at + PROGRESS.len()..]);
                        let thread: u32 = pairs["thread"].parse().unwrap();
                        let n: u32 = pairs["committed"].parse().unwrap();
                        let entry = state.committed.entry(thread).or_default();
                        *entry = (*entry).max(n);
                    } else if let Some(at) = line.find(EVENT) {
                        let pairs = parse_pairs(&line[at + EVENT.len()..]);
                        state.events.push(pairs);
                    }
                    state.lines.push(line);
                }
            })
        };
        FaultChild {
            child: Some(child),
            proc_id,
            state,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Records committed so far, by the child's own account.
    pub fn committed_total(&self) -> u64 {
        let state = self.state.lock().unwrap();
        state.committed.values().map(|&n| u64::from(n)).sum()
    }

    /// The first event named `name` (its `event=` value), if seen.
    pub fn event(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let state = self.state.lock().unwrap();
        state
            .events
            .iter()
            .find(|e| e.get("event").map(String::as_str) == Some(name))
            .cloned()
    }

    /// Waits until `condition` holds on what the child reported; panics if
    /// it exits first or `timeout` passes.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                // The reader may not have caught up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                if condition(self) {
                    return;
                }
                panic!(
                    "child {} exited ({status}) before {what}; its stdout:\n{}",
                    self.proc_id,
                    shmkafka_testkit::tail(&self.state.lock().unwrap().lines.join("\n"), 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for child {} to {what}",
                self.proc_id
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the child; returns what it had reported (all of its output
    /// is read: the pipe closes when it dies).
    pub fn kill(mut self) -> ChildState {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
        self.collect()
    }

    /// Waits for a clean exit; panics on a failure or after `timeout`.
    pub fn wait_success(mut self, timeout: Duration) -> ChildState {
        let mut child = self.child.take().expect("running");
        let status: Option<ExitStatus> = shmkafka_testkit::wait_timeout(&mut child, timeout);
        let proc_id = self.proc_id;
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            let state = self.collect();
            panic!(
                "child {proc_id} still running after {timeout:?}; its stdout:\n{}",
                shmkafka_testkit::tail(&state.lines.join("\n"), 30)
            );
        };
        let state = self.collect();
        assert!(
            status.success(),
            "child {proc_id} failed with {status} (an error reached the application; \
             its panic is in the output above); stdout:\n{}",
            shmkafka_testkit::tail(&state.lines.join("\n"), 30)
        );
        state
    }

    fn collect(&mut self) -> ChildState {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *self.state.lock().unwrap())
    }
}

impl Drop for FaultChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ChildState {
    /// The ids of every record the child reported committed.
    pub fn committed_ids(&self, proc_id: u32) -> Vec<RecordId> {
        self.committed
            .iter()
            .flat_map(|(&thread, &n)| {
                (0..n).map(move |counter| RecordId {
                    proc: proc_id,
                    thread,
                    counter,
                })
            })
            .collect()
    }

    pub fn committed_total(&self) -> u64 {
        self.committed.values().map(|&n| u64::from(n)).sum()
    }

    pub fn event(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.events
            .iter()
            .find(|e| e.get("event").map(String::as_str) == Some(name))
    }
}

// ---------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------

/// Runs the role this process was started for, if it is one of ours, and
/// returns `None`; returns the role's name if the calling binary has to run
/// it. A no-op (`None`) in the parent. Called by `child_role_entry_point`
/// of each `fault_*` binary.
pub fn run_child_role() -> Option<String> {
    let role = ROLE.current()?;
    match role.as_str() {
        "stream" => {
            run_stream();
            None
        }
        _ => Some(role),
    }
}

/// Prints one line for the parent (stdout is line-buffered: one write).
pub fn say(prefix_event: bool, text: &str) {
    use std::io::Write;
    let prefix = if prefix_event { EVENT } else { PROGRESS };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{prefix}{text}").expect("stdout");
    out.flush().expect("stdout");
}

pub fn event(text: &str) {
    say(true, text);
}

fn run_stream() {
    let socket: PathBuf = std::env::var("FAULT_SOCKET").unwrap().into();
    let topic_name = std::env::var("FAULT_TOPIC").unwrap();
    let (workload, proc_id) = Workload::from_env("FAULT");
    let report_every: u32 = env_num("FAULT_REPORT_EVERY");
    let pace = Duration::from_micros(env_num("FAULT_PACE_US"));
    let hold_after: Option<u32> = std::env::var("FAULT_HOLD_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let finish = std::env::var("FAULT_FINISH").unwrap();
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket),
        ring_capacity: env_num("FAULT_RING"),
        max_record_len: 64 << 10,
        when_full: WhenFull::Block(Duration::from_millis(env_num("FAULT_BLOCK_MS"))),
        client_name: format!("fault-proc-{proc_id}"),
        delivery_reports: false,
    })
    .expect("connect");
    let topic = producer.topic(&topic_name).expect("topic");
    event(&format!("event=connected pid={}", std::process::id()));
    let thread0_progress = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        if let Some(after) = hold_after {
            let (producer, topic, progress) = (&producer, &topic, &thread0_progress);
            scope.spawn(move || {
                while progress.load(std::sync::atomic::Ordering::Relaxed) < after {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut slot = producer
                    .reserve(topic, Some(4), Some(64), None)
                    .expect("reserve");
                // Half written, never committed: the process dies holding it.
                slot.key_mut().copy_from_slice(b"hole");
                event(&format!("event=reserved seq={}", slot.seq()));
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            });
        }
        for thread in 0..workload.threads {
            let (producer, topic, workload, progress) =
                (&producer, &topic, &workload, &thread0_progress);
            scope.spawn(move || {
                for counter in 0..workload.per_thread {
                    let id = RecordId {
                        proc: proc_id,
                        thread,
                        counter,
                    };
                    send_record(producer, topic, &workload.record(id)).unwrap_or_else(|e| {
                        panic!("send of {id:?} failed: {e} (must never reach the application)")
                    });
                    let done = counter + 1;
                    if thread == 0 {
                        progress.store(done, std::sync::atomic::Ordering::Relaxed);
                    }
                    if done % report_every == 0 || done == workload.per_thread {
                        say(false, &format!("thread={thread} committed={done}"));
                        if !pace.is_zero() {
                            std::thread::sleep(pace);
                        }
                    }
                }
            });
        }
        // With a held reservation the scope never ends: the parent kills us.
    });
    let total = u64::from(workload.threads) * u64::from(workload.per_thread);
    if finish == "flush" {
        let report = producer
            .flush(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("flush failed: {e}; stats {:?}", producer.stats()));
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let stats = producer.stats();
        event(&format!(
            "event=flushed committed={total} acked={total} reconnects={}",
            stats.reconnects
        ));
    } else {
        event(&format!("event=sent committed={total}"));
        if finish == "exit" {
            std::process::exit(0);
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Sends one expected record; returns its sequence number.
pub fn send_record(
    producer: &Producer,
    topic: &Topic,
    record: &common::ExpectedRecord,
) -> Result<u64, shmkafka_client::Error> {
    let mut message = Message::new();
    message.key = record.key.as_deref();
    message.value = record.value.as_deref();
    message.partition = record.partition;
    message.timestamp_ms = record.timestamp_ms;
    for (name, value) in &record.headers {
        message = message.header(name, value.as_deref());
    }
    producer.send(topic, &message)
}

// ---------------------------------------------------------------------------
// Daemon and broker observations
// ---------------------------------------------------------------------------

/// `shmkafkad status --json`: the clients array; `None` if the daemon did
/// not answer.
pub fn status_clients(socket: &Path) -> Option<Vec<serde_json::Value>> {
    let out = Command::new(shmkafkad_bin())
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .env_remove("RUST_LOG")
        .output()
        .expect("running shmkafkad status");
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["clients"].as_array().cloned()
}

/// Per partition `(partition, low, high)` watermarks of `topic`.
pub fn watermarks(bootstrap: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("watermark consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    let mut out: Vec<(i32, i64, i64)> = t
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            (p.id(), low, high)
        })
        .collect();
    out.sort_unstable();
    out
}

/// What a fault test found at the broker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub committed: u64,
    pub acked: u64,
    pub consumed: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// Reads `topic` back and checks it with `common::verify`: every id of
/// `must` is there (none lost), byte-identical and in order; records not in
/// `must` are accepted only if `may` allows them (committed after the last
/// report of a killed child). Asserts that the broker trimmed nothing (low
/// watermarks 0) and that the consumer read everything the high watermarks
/// count. Returns (consumed, distinct, duplicates).
pub fn verify_topic(
    bootstrap: &str,
    topic: &str,
    workload: &Workload,
    must: &[RecordId],
    may: impl Fn(RecordId) -> bool,
    guarantee: Guarantee,
) -> common::Verdict {
    let marks = watermarks(bootstrap, topic);
    let trimmed: Vec<_> = marks.iter().filter(|(_, low, _)| *low != 0).collect();
    assert!(
        trimmed.is_empty(),
        "the broker dropped old records (low watermark > 0) in partitions {trimmed:?}: \
         spread the test over more partitions"
    );
    let stored: i64 = marks.iter().map(|(_, _, high)| high).sum();
    let options = ConsumeOptions::new(stored as usize, Duration::from_secs(120))
        .grace(Duration::from_millis(300));
    let consumed = consume_all_with(bootstrap, topic, &options).expect("consuming");
    assert_eq!(
        consumed.len() as i64,
        stored,
        "consumed {} records, the high watermarks count {stored}",
        consumed.len()
    );
    let wanted: HashSet<RecordId> = must.iter().copied().collect();
    let mut ids = must.to_vec();
    let mut extra: HashSet<RecordId> = HashSet::new();
    for record in &consumed {
        let id = record
            .headers
            .iter()
            .find(|(n, _)| n == common::ID_HEADER)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| {
                let mut p = s.split('/').map(|x| x.parse::<u32>().ok());
                Some(RecordId {
                    proc: p.next()??,
                    thread: p.next()??,
                    counter: p.next()??,
                })
            });
        if let Some(id) = id {
            if !wanted.contains(&id) && may(id) && extra.insert(id) {
                ids.push(id);
            }
        }
    }
    common::verify(&consumed, workload, &ids, guarantee)
}

/// Prints the verdict row of one fault (collected for the table).
pub fn report_row(fault: &str, t: Tally, elapsed: Duration) {
    eprintln!(
        "FAULT-TABLE | {fault:<44} | committed {:>9} | acked {:>9} | consumed {:>9} | lost {:>3} | duplicated {:>6} | {:>5.1}s",
        t.committed,
        t.acked,
        t.consumed,
        t.lost,
        t.duplicated,
        elapsed.as_secs_f64()
    );
}

/// Log lines of the daemon containing `needle`.
pub fn log_lines<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// `text` without ANSI colour sequences (the daemon's log is coloured).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
