//! Hostile local processes against the control path and the daemon's
//! resource accounting (everything written *into* a ring is covered by
//! `fault_hostile`). Each test mounts one attack with real processes, real
//! sockets and real shared memory, then checks that the daemon is alive,
//! that a good client still delivers every record, and that the daemon's
//! memory, mapped bytes and open descriptors stay under stated bounds:
//!
//! 1. a Hello binding topic ids 4,000,000,000 and 50,000,000;
//! 2. a uid off the access list flooding the socket with connections;
//! 3. access granted through a supplementary group;
//! 4. sparse 256 MiB segments and a 64 MiB ring of 8-byte padding records;
//! 5. rings left claimed-but-unwritten by a process that closed its
//!    connections and lives on;
//! 6. permanently failing records against the spool's size bound, and a
//!    nearly full disk.
//!
//! Tests that need another uid or a mount run only as root (CI runs as
//! root); elsewhere they print why they were skipped.
//!
//! Each test prints a `HOSTILE-FIGURES` line with what it measured (the
//! README's fault table quotes them).

use shmkafkad_test_support::common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::uio::pwrite;
use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_protocol::{
    recv_message, send_message, ClientMessage, DaemonMessage, Hello, RegisterTopic, TopicBinding,
    PROTOCOL_VERSION,
};
use shmkafka_ringbuf::layout::*;
use shmkafka_testkit::MockBrokerProcess;
use shmkafka_testkit::{tail, wait_timeout, wait_until, DaemonProcess};

const ROLE_ENV: &str = "SHMKAFKA_HOSTILE_ROLE";
const RESULT_PREFIX: &str = "HOSTILE ";
const GOOD_TOPIC: &str = "hostile-control-good";
const JUNK_TOPIC: &str = "hostile-control-junk";
/// `nobody`: the other uid of the tests that need one.
const OTHER: u32 = 65534;
/// A group nobody has as its primary group.
const SUPPLEMENTARY_GID: u32 = 4242;
/// Records each good client sends.
const GOOD_RECORDS: usize = 500;
/// Bounds the daemon stays under in every test (mock broker aside: it is a
/// process of its own): resident memory and open descriptors. Measured at
/// about 20 MiB and 30 descriptors when idle.
const RSS_BOUND_KIB: u64 = 128 << 10;
const FD_BOUND: usize = 128;

#[test]
fn child_role_entry_point() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    match role.as_str() {
        "good" => good_child(),
        "flood" => flood_child(),
        "segments" => segments_child(),
        "orphans" => orphans_child(),
        "linger" => linger_child(),
        other => panic!("unknown role {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct Setup {
    dir: tempfile::TempDir,
    broker: MockBrokerProcess,
    daemon: DaemonProcess,
    socket: PathBuf,
    /// Tags whose good records are in the good topic by now.
    delivered: std::cell::RefCell<Vec<String>>,
}

impl Setup {
    fn start(config: &str) -> Setup {
        let dir = common::test_dir();
        Self::start_in(dir, config)
    }

    fn start_in(dir: tempfile::TempDir, config: &str) -> Setup {
        let broker = MockBrokerProcess::start_with_binary(
            mock_broker_bin(),
            1,
            &[(GOOD_TOPIC, 2), (JUNK_TOPIC, 1)],
        )
        .expect("mock broker");
        let socket = dir.path().join("shmkafkad.sock");
        // Sockets other uids can reach; who is admitted is the access list's
        // business, as in production.
        let config = format!("[daemon]\nsocket_mode = 0o666\n{config}");
        let daemon = daemon_options(&socket, broker.bootstrap_servers())
            .config(&config)
            .start();
        Setup {
            dir,
            broker,
            daemon,
            socket,
            delivered: Default::default(),
        }
    }

    /// The daemon is alive and answers `status`; its memory and descriptors
    /// are under the bounds.
    fn assert_healthy(&self) -> Mem {
        let pid = self.daemon.pid();
        assert!(
            process_alive(pid),
            "shmkafkad died; log:\n{}",
            tail(&self.daemon.log_text(), 40)
        );
        status(&self.socket);
        let mem = Mem::of(pid);
        assert!(
            mem.rss_kib < RSS_BOUND_KIB,
            "daemon RSS {} KiB over {RSS_BOUND_KIB} KiB: {mem:?}",
            mem.rss_kib
        );
        assert!(mem.fds < FD_BOUND, "daemon holds {} fds", mem.fds);
        mem
    }

    /// A good client in this process (root, admitted) sends
    /// [`GOOD_RECORDS`] records tagged `tag`; they must all arrive.
    fn good_client_delivers(&self, tag: &str) {
        let producer = Producer::connect_with(ProducerOptions {
            socket_path: Some(self.socket.clone()),
            ring_capacity: 1 << 20,
            max_record_len: 1 << 12,
            when_full: WhenFull::Block(Duration::from_secs(30)),
            client_name: format!("good-{tag}"),
            delivery_reports: false,
        })
        .unwrap_or_else(|e| panic!("good client {tag} refused: {e}"));
        send_good(&producer, tag);
        drop(producer);
        self.assert_delivered(&[tag]);
    }

    /// Every record of each tag in `tags` is in the good topic.
    fn assert_delivered(&self, tags: &[&str]) {
        let mut expected: Vec<String> = tags
            .iter()
            .flat_map(|tag| (0..GOOD_RECORDS).map(move |i| format!("{tag}-{i}")))
            .collect();
        let all = {
            let mut delivered = self.delivered.borrow_mut();
            delivered.extend(tags.iter().map(|t| (*t).to_owned()));
            delivered.len() * GOOD_RECORDS
        };
        let consumed = shmkafka_testkit::consume_all(
            self.broker.bootstrap_servers(),
            GOOD_TOPIC,
            all,
            Duration::from_secs(30),
        )
        .expect("consuming the good topic");
        let mut got: Vec<String> = consumed
            .iter()
            .filter_map(|r| r.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .filter(|v| tags.iter().any(|t| v.starts_with(&format!("{t}-"))))
            .collect();
        expected.sort();
        got.sort();
        assert_eq!(got.len(), expected.len(), "good records missing or doubled");
        assert_eq!(got, expected);
    }

    fn log(&self) -> String {
        strip_ansi(&self.daemon.log_text())
    }
}

fn send_good(producer: &Producer, tag: &str) {
    let topic = producer.topic(GOOD_TOPIC).expect("good topic");
    for i in 0..GOOD_RECORDS {
        producer
            .send(
                &topic,
                &Message::new().value(format!("{tag}-{i}").as_bytes()),
            )
            .expect("send");
    }
    let report = producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

/// The daemon's memory and descriptors, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss_kib: u64,
    /// Private (anonymous) resident memory.
    anon_kib: u64,
    /// Resident shared memory: the ring segments it has touched.
    shmem_kib: u64,
    fds: usize,
}

impl Mem {
    fn of(pid: u32) -> Mem {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Mem {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            shmem_kib: field("RssShmem:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0),
        }
    }
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn status(socket: &Path) -> serde_json::Value {
    let stream = UnixStream::connect(socket).expect("connect for status");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send_message(
        &stream,
        &ClientMessage::StatusRequest(shmkafka_protocol::StatusRequest { json: true }),
        None,
    )
    .expect("status request");
    match recv_message::<DaemonMessage>(&stream)
        .expect("status reply")
        .0
    {
        DaemonMessage::StatusReply(reply) => serde_json::from_str(&reply.body).expect("json"),
        other => panic!("expected a status reply, got {other:?}"),
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
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

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// Sends a Hello with `fd` and `topics` over a new connection; returns the
/// connection and the daemon's answer.
fn hello(
    socket: &Path,
    fd: impl AsFd,
    name: &str,
    topics: &[(u32, &str)],
) -> (UnixStream, DaemonMessage) {
    let stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let hello = ClientMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_pid: std::process::id(),
        client_name: name.to_owned(),
        topics: topics
            .iter()
            .map(|&(id, name)| TopicBinding {
                id,
                name: name.to_owned(),
            })
            .collect(),
    });
    send_message(&stream, &hello, Some(fd.as_fd())).expect("send hello");
    let answer = recv_message::<DaemonMessage>(&stream).expect("an answer").0;
    (stream, answer)
}

/// A sealed memfd segment of `capacity` bytes written by hand: header,
/// then `data` at the start of the data area (the rest is a hole, costing
/// nothing until touched), the tail at `tail`.
fn handmade_segment(capacity: u64, data: &[u8], tail: u64) -> OwnedFd {
    let fd = memfd_create(c"shmkafka:hostile", MemFdCreateFlag::MFD_ALLOW_SEALING).expect("memfd");
    let size = HEADER_SIZE as u64 + capacity;
    nix::unistd::ftruncate(&fd, size as i64).expect("ftruncate");
    let put = |off: usize, bytes: &[u8]| {
        assert_eq!(pwrite(&fd, bytes, off as i64).expect("pwrite"), bytes.len());
    };
    put(OFF_VERSION, &LAYOUT_VERSION.to_le_bytes());
    put(OFF_HEADER_SIZE, &(HEADER_SIZE as u32).to_le_bytes());
    put(OFF_CAPACITY, &capacity.to_le_bytes());
    put(OFF_MAX_RECORD, &((capacity / 2) as u32).to_le_bytes());
    put(OFF_SEGMENT_SIZE, &size.to_le_bytes());
    put(OFF_TAIL, &tail.to_le_bytes());
    if !data.is_empty() {
        put(HEADER_SIZE, data);
    }
    put(OFF_MAGIC, &MAGIC.to_le_bytes());
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )
    .expect("seal");
    fd
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Credentials a child runs with.
#[derive(Debug, Clone)]
struct Creds {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Creds {
    fn other(groups: &[u32]) -> Creds {
        Creds {
            uid: OTHER,
            gid: OTHER,
            groups: groups.to_vec(),
        }
    }
}

/// A child process running `role`; its `HOSTILE key=value` lines are
/// collected. SIGKILLed on drop.
struct RoleChild {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RoleChild {
    fn spawn(role: &str, creds: Option<Creds>, env: &[(&str, String)]) -> RoleChild {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "child_role_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let groups: Vec<nix::unistd::Gid> = creds
            .as_ref()
            .map(|c| {
                c.groups
                    .iter()
                    .map(|&g| nix::unistd::Gid::from_raw(g))
                    .collect()
            })
            .unwrap_or_default();
        // SAFETY: the closure runs in the forked child before exec and makes
        // only async-signal-safe system calls (setgroups, setgid, setuid,
        // prctl) on data prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if let Some(c) = &creds {
                    // Supplementary groups first, while still root; the
                    // parent-death signal last, as a uid change clears it.
                    nix::unistd::setgroups(&groups)?;
                    nix::unistd::setgid(nix::unistd::Gid::from_raw(c.gid))?;
                    nix::unistd::setuid(nix::unistd::Uid::from_raw(c.uid))?;
                }
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawning a child");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(RESULT_PREFIX) {
                    if tx
                        .send(line[at + RESULT_PREFIX.len()..].to_owned())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        RoleChild {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line whose `event` is `event`; returns its fields.
    fn wait_event(
        &mut self,
        event: &str,
        timeout: Duration,
    ) -> std::collections::BTreeMap<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.seen.iter().find_map(|l| {
                let fields = fields(l);
                (fields.get("event").map(String::as_str) == Some(event)).then_some(fields)
            }) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "child: no {event:?} event within {timeout:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// All events named `event` seen so far.
    fn events(&mut self, event: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .map(|l| fields(l))
            .filter(|f| f.get("event").map(String::as_str) == Some(event))
            .collect()
    }

    fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_timeout(&mut child, timeout).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("child still running after {timeout:?}")
        })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RoleChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key=value` fields of a line; `msg` takes the rest of the line.
fn fields(line: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let (head, msg) = match line.split_once(" msg=") {
        Some((h, m)) => (h, Some(m)),
        None => (line, None),
    };
    for pair in head.split_whitespace() {
        if let Some((k, v)) = pair.split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    if let Some(msg) = msg {
        out.insert("msg".to_owned(), msg.to_owned());
    }
    out
}

fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{RESULT_PREFIX}{line}").unwrap();
    out.flush().unwrap();
}

fn socket_env() -> PathBuf {
    std::env::var("HOSTILE_SOCKET")
        .expect("HOSTILE_SOCKET")
        .into()
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Sends the good records of `HOSTILE_TAG`; exits 0, or 3 if refused.
fn good_child() {
    let tag = std::env::var("HOSTILE_TAG").expect("HOSTILE_TAG");
    let producer = match Producer::connect_with(ProducerOptions {
        socket_path: Some(socket_env()),
        ring_capacity: 1 << 20,
        max_record_len: 1 << 12,
        when_full: WhenFull::Block(Duration::from_secs(30)),
        client_name: format!("good-{tag}"),
        delivery_reports: false,
    }) {
        Ok(p) => p,
        Err(e) => {
            emit(&format!("event=refused msg={e}"));
            std::process::exit(3);
        }
    };
    send_good(&producer, &tag);
    emit("event=sent");
}

/// Opens connection after connection for `HOSTILE_SECS`, holding up to
/// 2000 at once (the oldest are dropped), as a refused uid trying to take
/// every slot would.
fn flood_child() {
    let socket = socket_env();
    let secs: u64 = std::env::var("HOSTILE_SECS").unwrap().parse().unwrap();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    let mut held = std::collections::VecDeque::new();
    let (mut attempts, mut connected) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(secs);
    emit("event=started");
    while Instant::now() < deadline {
        attempts += 1;
        if let Ok(stream) = UnixStream::connect(&socket) {
            connected += 1;
            held.push_back(stream);
            if held.len() > 2000 {
                held.pop_front();
            }
        }
    }
    emit(&format!(
        "event=done attempts={attempts} connected={connected}"
    ));
}

/// Registers, as its own uid: a 64 MiB ring of 8-byte padding records,
/// then `HOSTILE_SPARSE` sparse segments of 256 MiB; reports each answer
/// and stays alive holding them.
fn segments_child() {
    let socket = socket_env();
    let sparse: usize = std::env::var("HOSTILE_SPARSE").unwrap().parse().unwrap();
    let mut held = Vec::new();
    let capacity: u64 = 64 << 20;
    let mut data = vec![0u8; capacity as usize];
    for record in data.chunks_exact_mut(RECORD_ALIGN) {
        record[..4].copy_from_slice(&(STATE_SKIP | RECORD_ALIGN as u32).to_le_bytes());
    }
    let padding = handmade_segment(capacity, &data, capacity);
    drop(data);
    let mut segments = vec![("padding", padding)];
    for i in 0..sparse {
        let name = if i == 0 { "sparse-0" } else { "sparse-n" };
        segments.push((name, handmade_segment(256 << 20, &[], 0)));
    }
    for (i, (name, fd)) in segments.into_iter().enumerate() {
        let (stream, answer) = hello(&socket, &fd, name, &[]);
        match answer {
            DaemonMessage::Welcome(_) => emit(&format!("event=segment index={i} accepted=1")),
            DaemonMessage::Refused(r) => emit(&format!(
                "event=segment index={i} accepted=0 msg={}",
                r.message
            )),
            other => panic!("unexpected answer {other:?}"),
        }
        held.push((stream, fd));
    }
    emit("event=done");
    hang();
}

/// Tries to register `HOSTILE_RINGS` rings; in each one that is admitted it
/// claims 64 bytes and never writes them, then closes the connection and
/// the client's own mapping. Stays alive.
fn orphans_child() {
    let socket = socket_env();
    let rings: usize = std::env::var("HOSTILE_RINGS").unwrap().parse().unwrap();
    let (mut registered, mut refused) = (0, 0);
    let mut first_refusal = String::new();
    for i in 0..rings {
        let producer = match Producer::connect_with(ProducerOptions {
            socket_path: Some(socket.clone()),
            ring_capacity: 64 << 10,
            max_record_len: 1 << 12,
            when_full: WhenFull::Fail,
            client_name: format!("orphan-{i}"),
            delivery_reports: false,
        }) {
            Ok(p) => p,
            Err(e) => {
                refused += 1;
                if first_refusal.is_empty() {
                    first_refusal = e.to_string();
                }
                continue;
            }
        };
        registered += 1;
        let topic = producer.topic(JUNK_TOPIC).expect("topic");
        let reservation = producer
            .reserve(&topic, None, Some(16), None)
            .expect("reserve");
        // Claimed, never committed, never aborted.
        std::mem::forget(reservation);
        drop(producer);
    }
    emit(&format!(
        "event=done registered={registered} refused={refused} msg={first_refusal}"
    ));
    hang();
}

// ---------------------------------------------------------------------------
// 1. Topic ids out of range
// ---------------------------------------------------------------------------

#[test]
fn topic_ids_out_of_range_are_refused_not_allocated() {
    let setup = Setup::start("");
    let before = setup.assert_healthy();
    let segment = shmkafka_ringbuf::Segment::create(
        &shmkafka_ringbuf::SegmentOptions::with_capacity(64 << 10),
    )
    .expect("segment");
    let (stream, answer) = hello(
        &setup.socket,
        segment.fd(),
        "huge-ids",
        &[
            (4_000_000_000, JUNK_TOPIC),
            (50_000_000, JUNK_TOPIC),
            (1, JUNK_TOPIC),
        ],
    );
    let DaemonMessage::Welcome(welcome) = answer else {
        panic!("expected a welcome, got {answer:?}");
    };
    let verdict = |id: u32| {
        welcome
            .topics
            .iter()
            .find(|v| v.id == id)
            .unwrap_or_else(|| panic!("no verdict for {id}"))
            .clone()
    };
    for id in [4_000_000_000, 50_000_000] {
        let v = verdict(id);
        assert!(!v.accepted, "{v:?}");
        assert!(v.message.contains("exceeds the limit of 4096"), "{v:?}");
    }
    assert!(verdict(1).accepted);
    // The same bound on the path that already had it, asked again and
    // again: answered every time, and logged once.
    let repeats = 2_000;
    for _ in 0..repeats {
        send_message(
            &stream,
            &ClientMessage::RegisterTopic(RegisterTopic {
                id: u32::MAX,
                name: JUNK_TOPIC.to_owned(),
            }),
            None,
        )
        .unwrap();
        match recv_message::<DaemonMessage>(&stream).unwrap().0 {
            DaemonMessage::TopicRefused(r) => assert!(r.message.contains("exceeds"), "{r:?}"),
            other => panic!("expected TopicRefused, got {other:?}"),
        }
    }
    // Each refused name is logged, though: an operator sees every topic an
    // application was refused.
    let others = ["junk-other-a", "junk-other-b", "junk-other-c"];
    for name in others {
        send_message(
            &stream,
            &ClientMessage::RegisterTopic(RegisterTopic {
                id: u32::MAX,
                name: name.to_owned(),
            }),
            None,
        )
        .unwrap();
        let answer = recv_message::<DaemonMessage>(&stream).unwrap().0;
        assert!(
            matches!(answer, DaemonMessage::TopicRefused(_)),
            "{answer:?}"
        );
    }
    let log = setup.log();
    let refusal_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("topic refused"))
        .collect();
    let of_junk = refusal_lines
        .iter()
        .filter(|l| !others.iter().any(|o| l.contains(o)))
        .count();
    assert!(
        (1..=2).contains(&of_junk),
        "{of_junk} log lines for {} refused registrations of one name:\n{}",
        repeats + 2,
        refusal_lines.join("\n")
    );
    for name in others {
        assert!(
            refusal_lines.iter().any(|l| l.contains(name)),
            "no log line names the refused topic {name}:\n{}",
            refusal_lines.join("\n")
        );
    }
    let after = setup.assert_healthy();
    assert!(
        after.anon_kib < before.anon_kib + (16 << 10),
        "daemon private memory grew from {} to {} KiB",
        before.anon_kib,
        after.anon_kib
    );
    drop(stream);
    setup.good_client_delivers("after-huge-ids");
    eprintln!(
        "HOSTILE-FIGURES topic-ids: daemon RssAnon {} -> {} KiB, VmRSS {} -> {} KiB",
        before.anon_kib, after.anon_kib, before.rss_kib, after.rss_kib
    );
}

// ---------------------------------------------------------------------------
// 2. A refused uid flooding the socket
// ---------------------------------------------------------------------------

#[test]
fn a_refused_uid_cannot_take_the_slots_or_flood_the_log() {
    if !is_root() {
        return skip(
            "a_refused_uid_cannot_take_the_slots_or_flood_the_log",
            "needs root to run the flood as another uid",
        );
    }
    let setup = Setup::start("max_clients = 16\n[access]\nallowed_uids = [0]\n");
    let before = setup.assert_healthy();
    let secs = 6;
    let mut flood = RoleChild::spawn(
        "flood",
        Some(Creds::other(&[])),
        &[
            ("HOSTILE_SOCKET", setup.socket.display().to_string()),
            ("HOSTILE_SECS", secs.to_string()),
        ],
    );
    flood.wait_event("started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    // While the flood runs, good clients register at the first attempt.
    let mut worst = Duration::ZERO;
    for i in 0..3 {
        let started = Instant::now();
        let producer = Producer::connect_with(ProducerOptions {
            socket_path: Some(setup.socket.clone()),
            ring_capacity: 1 << 20,
            max_record_len: 1 << 12,
            when_full: WhenFull::Block(Duration::from_secs(30)),
            client_name: format!("good-flood-{i}"),
            delivery_reports: false,
        })
        .unwrap_or_else(|e| panic!("good client refused during the flood: {e}"));
        worst = worst.max(started.elapsed());
        send_good(&producer, &format!("flood-{i}"));
    }
    let during = Mem::of(setup.daemon.pid());
    let done = flood.wait_event("done", Duration::from_secs(60));
    drop(flood);
    // The flood's connections end with it (those admitted to the small
    // budget within the handshake deadline).
    wait_until(
        "the flood's connections to close",
        Duration::from_secs(10),
        || Mem::of(setup.daemon.pid()).fds <= before.fds + 8,
    );
    let after = setup.assert_healthy();
    setup.assert_delivered(&["flood-0", "flood-1", "flood-2"]);
    let log = setup.log();
    let refusal_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection refused"))
        .collect();
    let refused = status(&setup.socket)["totals"]["refusals"]
        .as_u64()
        .expect("refusals in status");
    assert!(
        refusal_lines.len() <= 3 * (secs as usize / 10 + 2),
        "{} refusal lines for one uid in {secs} s:\n{}",
        refusal_lines.len(),
        refusal_lines[..refusal_lines.len().min(20)].join("\n")
    );
    assert!(
        refused > 100,
        "the flood was hardly refused ({refused}): {done:?}"
    );
    eprintln!(
        "HOSTILE-FIGURES flood: {} connects by uid {OTHER} in {secs} s, {} refused (counted in {} log lines); \
         good clients registered in at most {} ms; daemon fds {} -> {} (during) -> {}, VmRSS {} -> {} KiB",
        done["connected"],
        refused,
        refusal_lines.len(),
        worst.as_millis(),
        before.fds,
        during.fds,
        after.fds,
        before.rss_kib,
        after.rss_kib
    );
}

// ---------------------------------------------------------------------------
// 3. Supplementary groups
// ---------------------------------------------------------------------------

#[test]
fn a_supplementary_group_on_the_access_list_admits() {
    if !is_root() {
        return skip(
            "a_supplementary_group_on_the_access_list_admits",
            "needs root to set another uid's groups",
        );
    }
    let setup = Setup::start(&format!("[access]\nallowed_gids = [{SUPPLEMENTARY_GID}]\n"));
    let env = |tag: &str| {
        vec![
            ("HOSTILE_SOCKET", setup.socket.display().to_string()),
            ("HOSTILE_TAG", tag.to_owned()),
        ]
    };
    // Without the group: refused, with the groups it has named.
    let mut outsider = RoleChild::spawn("good", Some(Creds::other(&[])), &env("outsider"));
    let refused = outsider.wait_event("refused", Duration::from_secs(30));
    assert_eq!(outsider.wait_exit(Duration::from_secs(10)).code(), Some(3));
    assert!(refused["msg"].contains("not allowed"), "{refused:?}");
    // With it as a supplementary group (as `usermod -aG` gives it): admitted.
    let mut member = RoleChild::spawn(
        "good",
        Some(Creds::other(&[OTHER, SUPPLEMENTARY_GID])),
        &env("member"),
    );
    member.wait_event("sent", Duration::from_secs(60));
    assert!(member.wait_exit(Duration::from_secs(30)).success());
    setup.assert_delivered(&["member"]);
    setup.assert_healthy();
}

// ---------------------------------------------------------------------------
// 4. Memory amplification: sparse segments and padding rings
// ---------------------------------------------------------------------------

#[test]
fn sparse_and_padding_segments_cost_only_what_the_quota_allows() {
    if !is_root() {
        return skip(
            "sparse_and_padding_segments_cost_only_what_the_quota_allows",
            "needs root to run the attacker as another uid",
        );
    }
    // 600 MiB per uid: the padding ring (64 MiB) and two sparse 256 MiB
    // segments fit, the third does not.
    let quota: u64 = 600 << 20;
    let setup = Setup::start(&format!(
        "[access]\nallowed_uids = [0, {OTHER}]\n[limits]\nmax_mapped_bytes_per_uid = {quota}\n"
    ));
    let before = setup.assert_healthy();
    let mut attacker = RoleChild::spawn(
        "segments",
        Some(Creds::other(&[])),
        &[
            ("HOSTILE_SOCKET", setup.socket.display().to_string()),
            ("HOSTILE_SPARSE", "3".to_owned()),
        ],
    );
    attacker.wait_event("done", Duration::from_secs(60));
    let answers = attacker.events("segment");
    let accepted: Vec<bool> = answers.iter().map(|a| a["accepted"] == "1").collect();
    assert_eq!(accepted, [true, true, true, false], "{answers:?}");
    let refusal = &answers[3]["msg"];
    assert!(
        refusal.contains("limits.max_mapped_bytes_per_uid") && refusal.contains(&quota.to_string()),
        "{refusal}"
    );
    // The padding ring is drained (stepped over and released) meanwhile.
    wait_until(
        "the padding ring to be released",
        Duration::from_secs(30),
        || {
            status(&setup.socket)["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == "padding" && c["ring_fill_bytes"] == 0)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = setup.assert_healthy();
    let mapped: u64 = 3 * HEADER_SIZE as u64 + (64 << 20) + 2 * (256 << 20);
    // Private memory: the bookkeeping of 8 million padding records is one
    // entry, not 2 x 64 MiB.
    assert!(
        after.anon_kib < before.anon_kib + (16 << 10),
        "daemon private memory {} -> {} KiB",
        before.anon_kib,
        after.anon_kib
    );
    // Shared memory: the padding ring the daemon read and zeroed (64 MiB),
    // not the 512 MiB of sparse segments it was handed.
    assert!(
        after.shmem_kib < before.shmem_kib + (64 << 10) + (8 << 10),
        "daemon shared memory {} -> {} KiB",
        before.shmem_kib,
        after.shmem_kib
    );
    setup.good_client_delivers("after-segments");
    attacker.kill();
    wait_until(
        "the attacker's rings to be released",
        Duration::from_secs(20),
        || {
            status(&setup.socket)["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|c| c["uid"] != OTHER)
        },
    );
    setup.assert_healthy();
    eprintln!(
        "HOSTILE-FIGURES segments: {mapped} bytes mapped for uid {OTHER} (quota {quota}; a 4th segment of 256 MiB refused); \
         daemon RssAnon {} -> {} KiB, RssShmem {} -> {} KiB, VmRSS {} -> {} KiB",
        before.anon_kib, after.anon_kib, before.shmem_kib, after.shmem_kib, before.rss_kib, after.rss_kib
    );
}

// ---------------------------------------------------------------------------
// 5. Orphaned rings
// ---------------------------------------------------------------------------

#[test]
fn orphaned_rings_hold_only_their_uids_quota() {
    if !is_root() {
        return skip(
            "orphaned_rings_hold_only_their_uids_quota",
            "needs root to run the attacker as another uid",
        );
    }
    let setup = Setup::start(&format!(
        "max_clients = 16\n[access]\nallowed_uids = [0, {OTHER}]\n[limits]\nmax_rings_per_uid = 4\n"
    ));
    let before = setup.assert_healthy();
    let mut attacker = RoleChild::spawn(
        "orphans",
        Some(Creds::other(&[])),
        &[
            ("HOSTILE_SOCKET", setup.socket.display().to_string()),
            ("HOSTILE_RINGS", "16".to_owned()),
        ],
    );
    let done = attacker.wait_event("done", Duration::from_secs(60));
    assert_eq!(
        (done["registered"].as_str(), done["refused"].as_str()),
        ("4", "12"),
        "{done:?}"
    );
    assert!(done["msg"].contains("limits.max_rings_per_uid"), "{done:?}");
    wait_until(
        "status to show 4 orphaned rings",
        Duration::from_secs(10),
        || status(&setup.socket)["totals"]["orphaned"] == 4,
    );
    // Other uids are not affected: a good client registers and delivers.
    setup.good_client_delivers("beside-orphans");
    // Once the process is gone its rings are padded, drained and freed.
    attacker.kill();
    wait_until(
        "the orphaned rings to be freed",
        Duration::from_secs(20),
        || {
            let s = status(&setup.socket);
            s["totals"]["orphaned"] == 0
                && s["clients"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|c| c["uid"] != OTHER)
        },
    );
    let after = setup.assert_healthy();
    eprintln!(
        "HOSTILE-FIGURES orphans: 16 rings tried by one live uid, 4 kept (orphaned), 12 refused; \
         other uids served; all freed when the process exited; daemon fds {} -> {}",
        before.fds, after.fds
    );
}

/// A client process that exits while another process (here: a `sleep` it
/// started, which inherited the connection) keeps its control connection
/// open no longer keeps its ring.
#[test]
fn a_ring_whose_process_exited_is_freed_though_its_connection_lingers() {
    let setup = Setup::start("");
    let mut client = RoleChild::spawn(
        "linger",
        None,
        &[("HOSTILE_SOCKET", setup.socket.display().to_string())],
    );
    let handed = client.wait_event("handed", Duration::from_secs(30));
    let sleeper: i32 = handed["sleeper"].parse().unwrap();
    let _reap = KillOnDrop(sleeper);
    assert!(client.wait_exit(Duration::from_secs(10)).success());
    assert!(
        process_alive(sleeper as u32),
        "the connection holder is alive"
    );
    wait_until(
        "the ring of the exited process to be freed",
        Duration::from_secs(10),
        || {
            status(&setup.socket)["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|c| c["name"] != "lingering")
        },
    );
    setup.assert_healthy();
}

/// SIGKILLs a pid on drop.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Registers a ring, hands its connection to a `sleep` it starts (which
/// inherits the descriptor), reports the sleeper's pid and exits.
fn linger_child() {
    let segment = shmkafka_ringbuf::Segment::create(
        &shmkafka_ringbuf::SegmentOptions::with_capacity(64 << 10),
    )
    .expect("segment");
    let (stream, answer) = hello(&socket_env(), segment.fd(), "lingering", &[]);
    assert!(matches!(answer, DaemonMessage::Welcome(_)), "{answer:?}");
    // Inheritable, then left to the sleeper.
    fcntl(
        stream.as_raw_fd(),
        FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear FD_CLOEXEC");
    let sleeper = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("sleep");
    emit(&format!("event=handed sleeper={}", sleeper.id()));
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// 6. The spool's bounds
// ---------------------------------------------------------------------------

/// Sends 1 KiB records to a partition that does not exist (each fails
/// permanently) until the ring is full or `count` were sent; returns how
/// many were accepted into the ring.
fn send_failing(producer: &Producer, count: usize) -> usize {
    let topic = producer.topic(JUNK_TOPIC).expect("junk topic");
    let value = vec![b'x'; 1024];
    let mut sent = 0;
    for _ in 0..count {
        let message = Message::new().value(&value).partition(1_000_000);
        match producer.send(&topic, &message) {
            Ok(_) => sent += 1,
            Err(_) => break, // ring full: the back-pressure we want
        }
    }
    sent
}

fn spool_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "spool"))
                .map(|p| {
                    let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    (p, len)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_spool_stays_under_its_bound_and_failing_records_wait_in_their_ring() {
    let limit: u64 = 256 << 10;
    let setup = Setup::start(&format!(
        "[spool]\nmax_total_bytes = {limit}\nmax_file_bytes = 65536\n"
    ));
    let before = setup.assert_healthy();
    let attacker = Producer::connect_with(ProducerOptions {
        socket_path: Some(setup.socket.clone()),
        ring_capacity: 4 << 20,
        max_record_len: 1 << 12,
        when_full: WhenFull::Fail,
        client_name: "spool-filler".to_owned(),
        delivery_reports: false,
    })
    .expect("attacker registers");
    // 4 MiB of failing records in a 4 MiB ring: far more than the spool
    // may take. Keep sending for a while: the ring stays full.
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        sent += send_failing(&attacker, 8192);
        std::thread::sleep(Duration::from_millis(100));
    }
    let spool_dir = setup.dir.path().join("spool");
    let total: u64 = spool_files(&spool_dir).iter().map(|(_, n)| n).sum();
    assert!(total <= limit, "spool holds {total} bytes, bound {limit}");
    assert!(
        total > limit / 2,
        "spool should fill towards its bound, holds {total}"
    );
    assert!(
        sent < 8192,
        "the ring never filled ({sent} records accepted): failed records were released without being spooled"
    );
    let log = setup.log();
    assert!(
        log.contains("DEAD-LETTER SPOOL FULL"),
        "no alarm in the log"
    );
    let alarms = log
        .lines()
        .filter(|l| l.contains("DEAD-LETTER SPOOL FULL"))
        .count();
    assert!(alarms <= 2, "{alarms} alarm lines in a few seconds");
    // Other clients are not held back.
    setup.good_client_delivers("beside-full-spool");
    let after = setup.assert_healthy();
    drop(attacker);
    eprintln!(
        "HOSTILE-FIGURES spool-bound: {sent} failing 1 KiB records accepted (ring full after that), spool {total} bytes \
         (bound {limit}); daemon VmRSS {} -> {} KiB",
        before.rss_kib, after.rss_kib
    );
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_nearly_full_disk_takes_whole_records_and_keeps_no_empty_files() {
    if !is_root() {
        return skip(
            "a_nearly_full_disk_takes_whole_records_and_keeps_no_empty_files",
            "needs root to mount a small tmpfs",
        );
    }
    let dir = common::test_dir();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let disk: u64 = 64 << 10;
    // A tmpfs of 64 KiB as the spool directory: the nearly full disk.
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={disk},mode=0750"),
            "tmpfs",
        ])
        .arg(&spool_dir)
        .status();
    if !mounted.as_ref().is_ok_and(|s| s.success()) {
        return skip(
            "a_nearly_full_disk_takes_whole_records_and_keeps_no_empty_files",
            &format!("cannot mount a tmpfs: {mounted:?}"),
        );
    }
    let _mount = Mount(spool_dir.clone());
    let setup = Setup::start_in(dir, "");
    let attacker = Producer::connect_with(ProducerOptions {
        socket_path: Some(setup.socket.clone()),
        ring_capacity: 1 << 20,
        max_record_len: 1 << 12,
        when_full: WhenFull::Fail,
        client_name: "disk-filler".to_owned(),
        delivery_reports: false,
    })
    .expect("attacker registers");
    // Bursts of failures, each batch larger than what is left on the disk.
    let mut sent = 0;
    for _ in 0..10 {
        sent += send_failing(&attacker, 100);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    let files = spool_files(&spool_dir);
    let empty: Vec<_> = files.iter().filter(|(_, n)| *n <= 16).collect();
    assert!(
        empty.is_empty(),
        "files holding no record left behind: {empty:?}"
    );
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    assert!(
        total > disk / 2,
        "the disk had room for {disk} bytes; only {total} written ({} files)",
        files.len()
    );
    assert!(
        setup.log().contains("CANNOT WRITE THE DEAD-LETTER SPOOL"),
        "no alarm"
    );
    setup.good_client_delivers("beside-full-disk");
    setup.assert_healthy();
    drop(attacker);
    eprintln!(
        "HOSTILE-FIGURES full-disk: {sent} failing records on a {disk}-byte disk: {total} bytes in {} files, none empty",
        files.len()
    );
}
