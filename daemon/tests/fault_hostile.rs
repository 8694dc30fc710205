//! Hostile clients: a child process registers rings normally
//! (through `shmkafka-client`) and then scribbles on them through a second
//! writable mapping of each ring's memfd (`/proc/self/fd`), one kind of
//! garbage per ring: random bytes, a length past the end of the data area,
//! key/value lengths that overflow a u32 sum, an unknown topic id, a
//! committed state word on a record nobody claimed, a wrong sequence
//! number, the tail moved backwards, the tail moved laps beyond capacity.
//! Meanwhile two well-behaved client processes stream.
//!
//! The daemon quarantines each garbage ring with the reason in its log (the
//! unknown topic is a per-record failure instead: spooled, and reported in
//! the client's failure queue), never crashes (still running, still
//! answering `status`), releases the hostile segments once their process is
//! gone, and the good clients' records all arrive, exactly once.

use rdkafka::error::RDKafkaErrorCode;
use shmkafkad_test_support::common;
use shmkafkad_test_support::fault_support;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{daemon_options, mock_broker_bin, Guarantee, Workload};
use fault_support::{event, log_lines, report_row, status_clients, StreamSpec, Tally};
use shmkafka_client::{Message, Producer, ProducerOptions, WhenFull};
use shmkafka_ringbuf::layout::*;
use shmkafka_testkit::MockBrokerProcess;

#[test]
fn child_role_entry_point() {
    match fault_support::run_child_role().as_deref() {
        None => {}
        Some("hostile") => hostile_child(),
        Some(role) => panic!("unknown role {role:?}"),
    }
}

const TOPIC: &str = "fault-hostile-good";
/// The hostile child's records (honest or not) go here, so they never mix
/// with the good clients' records the verifier checks.
const JUNK_TOPIC: &str = "fault-hostile-junk";
const HOSTILE_RING: usize = 64 << 10;
const WORKLOAD: Workload = Workload {
    procs: 2,
    threads: 2,
    per_thread: 10_000,
    partitions: 4,
    max_value: 300,
};
/// librdkafka's `_UNKNOWN_TOPIC`, what the daemon reports for a topic id
/// the client never registered.
const ERR_UNKNOWN_TOPIC: i32 = RDKafkaErrorCode::UnknownTopic as i32;

/// Each case, and the reason the daemon must log when it quarantines the
/// ring (`None`: not quarantined, see the case).
const CASES: &[(&str, Option<&str>)] = &[
    ("random", Some("")),
    ("past-end", Some("runs past the end of the ring")),
    ("overflow-lengths", Some("field lengths do not add up")),
    ("committed-unwritten", Some("extends beyond the tail")),
    // Any sequence number: it only names the record for its own client.
    ("foreign-seq", None),
    ("tail-backwards", Some("extends beyond the tail")),
    // A valid record under a tail moved 100 laps ahead: delivered (it is a
    // well-formed record); the ring is quarantined once the client is dead
    // and the daemon looks for a hole to pad (checked after the kill).
    ("tail-beyond", None),
    // Per-record failure, not a quarantine.
    ("unknown-topic", None),
];

#[test]
fn hostile_rings_are_quarantined_and_good_clients_keep_flowing() {
    let started = Instant::now();
    let dir = common::test_dir();
    let broker = MockBrokerProcess::start_with_binary(
        mock_broker_bin(),
        1,
        &[(TOPIC, WORKLOAD.partitions as u32), (JUNK_TOPIC, 1)],
    )
    .expect("mock broker");
    let socket = dir.path().join("shmkafkad.sock");
    let daemon = daemon_options(&socket, broker.bootstrap_servers()).start();

    let good: Vec<_> = (0..WORKLOAD.procs)
        .map(|proc_id| {
            let mut s = StreamSpec::new(&socket, TOPIC, proc_id, WORKLOAD);
            s.report_every = 500;
            // A few seconds of streaming, across the whole hostile phase.
            s.pace = Duration::from_millis(150);
            s.spawn()
        })
        .collect();

    let mut hostile = {
        let mut command = fault_support::child_command("hostile");
        command.env("FAULT_SOCKET", &socket);
        fault_support::FaultChild::spawn(command, 99)
    };
    hostile.wait_for("scribble on every ring", Duration::from_secs(60), |c| {
        c.event("done").is_some()
    });
    let failure = hostile
        .event("failure")
        .expect("the unknown-topic record reported in the failure queue");
    assert_eq!(
        failure["code"],
        ERR_UNKNOWN_TOPIC.to_string(),
        "{failure:?}"
    );

    let quarantine_line = |case: &str| -> Option<String> {
        let log = fault_support::strip_ansi(&daemon.log_text());
        log_lines(&log, "quarantined")
            .into_iter()
            .find(|l| l.contains(&format!("name=hostile-{case} ")))
            .map(str::to_owned)
    };
    for (case, reason) in CASES {
        let Some(reason) = reason else { continue };
        shmkafka_testkit::wait_until(
            &format!("the daemon to quarantine hostile-{case}"),
            Duration::from_secs(10),
            || quarantine_line(case).is_some(),
        );
        let line = quarantine_line(case).unwrap();
        assert!(
            line.contains(reason),
            "{case}: expected {reason:?} in {line}"
        );
        eprintln!(
            "{case}: {}",
            &line[line.find("ERROR").unwrap_or(0)..].trim()
        );
    }
    // Still alive and serving.
    assert!(process_alive(daemon.pid()), "shmkafkad died");
    let clients = status_clients(&socket).expect("shmkafkad answers status");
    let hostile_rows = clients
        .iter()
        .filter(|c| c["name"].as_str().unwrap_or("").starts_with("hostile-"))
        .count();
    assert_eq!(hostile_rows, CASES.len(), "{clients:?}");

    let hostile_state = hostile.kill();
    shmkafka_testkit::wait_until(
        "the hostile segments to be released",
        Duration::from_secs(15),
        || {
            status_clients(&socket)
                .expect("status")
                .iter()
                .all(|c| !c["name"].as_str().unwrap_or("").starts_with("hostile-"))
        },
    );
    let log = fault_support::strip_ansi(&daemon.log_text());
    let beyond = log_lines(&log, "name=hostile-tail-beyond")
        .into_iter()
        .find(|l| l.contains("quarantined"));
    assert!(
        beyond.is_some_and(|l| l.contains("cursors corrupted")),
        "tail-beyond: no quarantine logged after the client died:\n{}",
        shmkafka_testkit::tail(&log, 30)
    );

    let mut ids = Vec::new();
    for child in good {
        let proc_id = child.proc_id;
        ids.extend(
            child
                .wait_success(Duration::from_secs(60))
                .committed_ids(proc_id),
        );
    }
    let verdict = fault_support::verify_topic(
        broker.bootstrap_servers(),
        TOPIC,
        &WORKLOAD,
        &ids,
        |_| false,
        Guarantee::ExactlyOnce,
    );
    assert_eq!(verdict.duplicates, 0);
    assert!(process_alive(daemon.pid()), "shmkafkad died");
    assert!(
        log_lines(&log, "panicked").is_empty(),
        "{}",
        shmkafka_testkit::tail(&log, 30)
    );
    // The unknown-topic record is in the dead-letter spool.
    let spool = Command::new(common::shmkafkad_bin())
        .args(["spool", "list", "--json", "--dir"])
        .arg(dir.path().join("spool"))
        .env_remove("RUST_LOG")
        .output()
        .expect("spool list");
    let listed = String::from_utf8_lossy(&spool.stdout);
    assert!(
        listed.contains(&format!("\"error_code\":{ERR_UNKNOWN_TOPIC}")),
        "unknown-topic record not spooled: {listed}"
    );
    eprintln!(
        "{} hostile rings ({} scribble events), daemon alive; good clients: {} committed, {} consumed",
        CASES.len(),
        hostile_state.events.len(),
        ids.len(),
        verdict.consumed
    );
    report_row(
        "6 hostile rings x8 + 2 good clients",
        Tally {
            committed: ids.len() as u64,
            acked: ids.len() as u64,
            consumed: verdict.consumed as u64,
            lost: 0,
            duplicated: 0,
        },
        started.elapsed(),
    );
}

fn process_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as dead.
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

// ---------------------------------------------------------------------------
// The hostile child
// ---------------------------------------------------------------------------

/// A second shared, writable mapping of one of our own rings.
struct Scribbler {
    base: *mut u8,
    len: usize,
    capacity: u64,
}

impl Scribbler {
    /// Maps the memfd named `shmkafka:{name}` found in `/proc/self/fd`.
    fn find(name: &str) -> Scribbler {
        let wanted = format!("/memfd:shmkafka:{name} (deleted)");
        let fd = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| e.ok())
            .find(|e| {
                std::fs::read_link(e.path()).is_ok_and(|target| target.to_string_lossy() == wanted)
            })
            .unwrap_or_else(|| panic!("no fd for {wanted}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fd.path())
            .expect("opening the memfd again");
        let len = file.metadata().expect("fstat").len() as usize;
        // SAFETY: a fresh shared mapping of a sealed memfd of `len` bytes
        // (it cannot shrink); nothing else in this process aliases it as a
        // Rust reference: the client library uses its own mapping and only
        // atomics and raw copies.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap");
        Scribbler {
            base: base.cast(),
            len,
            capacity: (len - HEADER_SIZE) as u64,
        }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: in bounds and aligned (checked; the mapping is page
        // aligned); the word is shared memory accessed atomically by both
        // processes.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: as for `u64_at`.
        unsafe { &*self.base.add(off).cast::<AtomicU32>() }
    }

    fn tail(&self) -> u64 {
        self.u64_at(OFF_TAIL).load(Ordering::Acquire)
    }

    fn released(&self) -> u64 {
        self.u64_at(OFF_RELEASED).load(Ordering::Acquire)
    }

    fn set_tail(&self, tail: u64) {
        self.u64_at(OFF_TAIL).store(tail, Ordering::Release);
    }

    /// Offset in the mapping of the record field at stream position `pos`.
    fn rec(&self, pos: u64, field: usize) -> usize {
        HEADER_SIZE + (pos & (self.capacity - 1)) as usize + field
    }

    fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len);
        // SAFETY: in bounds (checked); the bytes are ring data the daemon
        // only ever copies or validates (and may find garbage: the point).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(off), bytes.len()) }
    }

    /// Writes a record header at `pos` (all fields but the state word).
    fn header(&self, pos: u64, topic: u32, seq: u64, key_len: u32, value_len: u32) {
        self.write(self.rec(pos, REC_KIND), &KIND_MESSAGE.to_le_bytes());
        self.write(self.rec(pos, REC_TOPIC), &topic.to_le_bytes());
        self.write(self.rec(pos, REC_SEQ), &seq.to_le_bytes());
        self.write(
            self.rec(pos, REC_TIMESTAMP),
            &1_700_000_000_000i64.to_le_bytes(),
        );
        self.write(
            self.rec(pos, REC_PARTITION),
            &PARTITION_UNASSIGNED.to_le_bytes(),
        );
        self.write(self.rec(pos, REC_KEY_LEN), &key_len.to_le_bytes());
        self.write(self.rec(pos, REC_VALUE_LEN), &value_len.to_le_bytes());
        self.write(self.rec(pos, REC_HEADERS_LEN), &0u32.to_le_bytes());
    }

    /// Publishes `state` at `pos`, as a producer's commit does.
    fn publish(&self, pos: u64, state: u32) {
        self.u32_at(self.rec(pos, REC_STATE))
            .store(state, Ordering::Release);
    }

    /// Writes a well-formed record with a 5-byte value at `pos`, all but
    /// its state word (the caller moves the tail, then publishes); returns
    /// its length.
    fn valid_record(&self, pos: u64, topic: u32) -> u32 {
        let len = (RECORD_HEADER_SIZE + 5) as u32;
        self.header(pos, topic, pos, NULL_LEN, 5);
        self.write(self.rec(pos, RECORD_HEADER_SIZE), b"junk!");
        len
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn scribble(case: &str, ring: &Scribbler) {
    let tail = ring.tail();
    let released = ring.released();
    assert_eq!(tail, released, "honest records flushed first");
    match case {
        "random" => {
            let mut seed = 0x5eed_u64;
            let bytes: Vec<u8> = (0..256).map(|_| splitmix(&mut seed) as u8).collect();
            ring.write(ring.rec(tail, 0), &bytes);
            ring.set_tail(tail + 256);
            // A committed state word (no claimed/skip bit) over the noise.
            let state = (splitmix(&mut seed) as u32) & LEN_MASK;
            ring.publish(tail, state);
        }
        "past-end" => {
            ring.set_tail(tail + 64);
            ring.publish(tail, ring.capacity as u32);
        }
        "overflow-lengths" => {
            // 0xffff_fff0 + 0x20 wraps to 0x10 in u32: with the header that
            // "adds up" to the record length 64 unless summed wide.
            ring.header(tail, 0, tail, 0xffff_fff0, 0x20);
            ring.set_tail(tail + 64);
            ring.publish(tail, 64);
        }
        "committed-unwritten" => {
            // Committed flag on a record nobody claimed: tail unchanged.
            ring.publish(tail, 64);
        }
        "foreign-seq" => {
            let len = ring.valid_record(tail, 0);
            ring.write(ring.rec(tail, REC_SEQ), &(tail + 4096).to_le_bytes());
            ring.set_tail(tail + u64::from(len).next_multiple_of(8));
            ring.publish(tail, len);
        }
        "tail-backwards" => {
            let len = ring.valid_record(tail, 0);
            ring.set_tail(tail - 64);
            ring.publish(tail, len);
        }
        "tail-beyond" => {
            let len = ring.valid_record(tail, 0);
            ring.set_tail(tail + 100 * ring.capacity);
            ring.publish(tail, len);
        }
        "unknown-topic" => {
            let len = ring.valid_record(tail, 999);
            ring.set_tail(tail + u64::from(len).next_multiple_of(8));
            ring.publish(tail, len);
        }
        other => panic!("unknown case {other}"),
    }
}

fn hostile_child() {
    let socket: std::path::PathBuf = std::env::var("FAULT_SOCKET").unwrap().into();
    let mut rings = Vec::new();
    for (case, _) in CASES {
        let producer = Producer::connect_with(ProducerOptions {
            socket_path: Some(socket.clone()),
            ring_capacity: HOSTILE_RING,
            max_record_len: 16 << 10,
            when_full: WhenFull::Fail,
            client_name: format!("hostile-{case}"),
            delivery_reports: false,
        })
        .expect("connect");
        let topic = producer.topic(JUNK_TOPIC).expect("topic");
        // Registered normally, and honest at first.
        for i in 0..5 {
            producer
                .send(
                    &topic,
                    &Message::new()
                        .key(b"honest")
                        .value(format!("{case} {i}").as_bytes()),
                )
                .expect("send");
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("honest records delivered");
        let ring = Scribbler::find(&format!("hostile-{case}"));
        scribble(case, &ring);
        event(&format!("event=scribbled case={case}"));
        rings.push((case, producer, ring));
    }
    // The unknown-topic record comes back through the failure queue.
    let (_, producer, _) = rings
        .iter()
        .find(|(case, _, _)| **case == "unknown-topic")
        .expect("case");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failure = loop {
        if let Some(f) = producer.failures().into_iter().next() {
            break f;
        }
        assert!(Instant::now() < deadline, "no failure reported");
        std::thread::sleep(Duration::from_millis(10));
    };
    event(&format!(
        "event=failure seq={} code={}",
        failure.seq, failure.code
    ));
    event("event=done");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
