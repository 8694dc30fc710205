//! Producer and consumer in different processes, as in production: the
//! test binary re-executes itself as the client (the env var
//! `SHMKAFKA_RING_CHILD` selects the child role inside the same `#[test]`),
//! the child creates the segment and passes the memfd to the parent over a
//! Unix socketpair with `SCM_RIGHTS`, and the parent opens it as the daemon
//! does. The same socket carries the child's progress reports.

#![cfg(not(miri))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use shmkafka_ringbuf::Outcome;
use shmkafka_ringbuf::{
    Header, Record, RecordView, RingConsumer, Segment, SegmentOptions, WhenFull,
};

const CHILD_ROLE: &str = "SHMKAFKA_RING_CHILD";
const CHILD_SOCKET: &str = "SHMKAFKA_RING_SOCKET";
const THREADS: u32 = 4;
const TOTAL: u64 = 200_000;
const BLOCK: WhenFull = WhenFull::Block(Duration::from_secs(120));

// ---------------------------------------------------------------------------
// Process plumbing

/// Starts this test binary again, running only `test` in the child `role`,
/// with one end of a socketpair inherited; returns the child and our end.
fn spawn_child(test: &str, role: &str) -> (Child, UnixStream) {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    // Let exactly this end survive the exec.
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).expect("clear CLOEXEC");
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .env(CHILD_SOCKET, theirs.as_raw_fd().to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    drop(theirs);
    (child, UnixStream::from(ours))
}

/// The child's end of the socketpair.
fn child_socket() -> UnixStream {
    let fd: RawFd = std::env::var(CHILD_SOCKET)
        .expect("socket fd")
        .parse()
        .expect("fd number");
    // SAFETY: the parent created this fd for us (a socketpair end without
    // CLOEXEC) and nothing else in this process knows or owns it.
    UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_fd(socket: &UnixStream, fd: RawFd) {
    let fds = [fd];
    let iov = [IoSlice::new(b"S")];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg SCM_RIGHTS");
}

fn recv_fd(socket: &UnixStream) -> OwnedFd {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg");
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed this fd in our table for us;
            // we are its only owner.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received");
}

/// Forwards the child's report lines to a channel.
fn reports(socket: UnixStream) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(socket).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// Record content: every byte derives from (thread, index)

fn value_len(thread: u32, i: u64) -> usize {
    12 + ((i * 7 + u64::from(thread) * 13) % 150) as usize
}

fn make_value(thread: u32, i: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(value_len(thread, i));
    v.extend_from_slice(&thread.to_le_bytes());
    v.extend_from_slice(&i.to_le_bytes());
    while v.len() < value_len(thread, i) {
        v.push((i as u8).wrapping_mul(31) ^ (v.len() as u8) ^ (thread as u8));
    }
    v
}

fn send_numbered(producer: &shmkafka_ringbuf::RingProducer, thread: u32, i: u64) -> u64 {
    let value = make_value(thread, i);
    let index = i.to_le_bytes();
    let headers = [Header {
        name: "i",
        value: Some(&index),
    }];
    let key = thread.to_le_bytes();
    producer
        .send(
            &Record {
                topic_id: thread,
                partition: (i % 16) as i32,
                timestamp_ms: i as i64,
                key: Some(&key),
                value: Some(&value),
                headers: if i.is_multiple_of(3) { &headers } else { &[] },
            },
            BLOCK,
        )
        .expect("send")
}

/// Checks a record byte for byte; returns its (thread, index).
fn check_record(record: &RecordView<'_>) -> (u32, u64) {
    let value = record.value().expect("value");
    let thread = u32::from_le_bytes(value[..4].try_into().unwrap());
    let i = u64::from_le_bytes(value[4..12].try_into().unwrap());
    assert_eq!(value, make_value(thread, i), "content of ({thread}, {i})");
    assert_eq!(record.key(), Some(&thread.to_le_bytes()[..]));
    assert_eq!(record.topic_id(), thread);
    assert_eq!(record.partition(), (i % 16) as i32);
    assert_eq!(record.timestamp_ms(), i as i64);
    let headers: Vec<_> = record.headers().map(Result::unwrap).collect();
    if i % 3 == 0 {
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].name, b"i");
        assert_eq!(headers[0].value, Some(&i.to_le_bytes()[..]));
    } else {
        assert!(headers.is_empty());
    }
    (thread, i)
}

/// The parent's consumer: reads, checks per-thread order, marks, releases.
struct Daemon {
    consumer: RingConsumer,
    next: HashMap<u32, u64>,
    received: u64,
    seqs: Vec<u64>,
    last_seq: u64,
}

impl Daemon {
    fn new(consumer: RingConsumer) -> Self {
        Daemon {
            consumer,
            next: HashMap::new(),
            received: 0,
            seqs: Vec::new(),
            last_seq: 0,
        }
    }

    /// Drains what is committed; returns how many records it read.
    fn drain(&mut self) -> u64 {
        let mut n = 0;
        while let Some(record) = self.consumer.peek().expect("valid records") {
            let (thread, i) = check_record(&record);
            let expected = self.next.entry(thread).or_insert(0);
            assert_eq!(i, *expected, "thread {thread}: order or gap");
            *expected += 1;
            self.last_seq = record.pos();
            self.seqs.push(record.pos());
            self.consumer.advance();
            n += 1;
            if self.seqs.len() >= 64 {
                self.ack();
            }
        }
        self.ack();
        self.received += n;
        n
    }

    /// Marks in reverse order (any order is allowed), then releases.
    fn ack(&mut self) {
        for seq in self.seqs.drain(..).rev() {
            assert!(self.consumer.mark(seq, &Outcome::delivered(0, 0, 0)));
        }
        self.consumer.release();
    }
}

// ---------------------------------------------------------------------------
// (a) four writer threads in the child, the parent consuming concurrently

#[test]
fn four_threads_in_a_child_process() {
    if std::env::var(CHILD_ROLE).is_ok() {
        return writer_child();
    }
    let (mut child, socket) = spawn_child("four_threads_in_a_child_process", "writer");
    let segment = Segment::open(recv_fd(&socket)).expect("open the child's segment");
    let rx = reports(socket);
    let mut daemon = Daemon::new(segment.consumer().unwrap());
    let deadline = Instant::now() + Duration::from_secs(300);
    while daemon.received < TOTAL {
        assert!(Instant::now() < deadline, "stalled at {}", daemon.received);
        if daemon.drain() == 0 {
            daemon.consumer.park(Duration::from_millis(10));
        }
    }
    eprintln!(
        "{} records from {THREADS} threads in another process",
        daemon.received
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "done");
    assert_eq!(daemon.drain(), 0, "nothing beyond the expected records");
    for t in 0..THREADS {
        assert_eq!(daemon.next[&t], TOTAL / u64::from(THREADS));
    }
    let (tail, released) = segment.cursors();
    assert_eq!(tail, released);
}

fn writer_child() {
    let socket = child_socket();
    let segment = Segment::create(&SegmentOptions::with_capacity(1 << 18)).unwrap();
    send_fd(&socket, segment.fd().as_raw_fd());
    thread::scope(|s| {
        for t in 0..THREADS {
            let producer = segment.producer();
            s.spawn(move || {
                for i in 0..TOTAL / u64::from(THREADS) {
                    send_numbered(&producer, t, i);
                }
            });
        }
    });
    (&socket).write_all(b"done\n").unwrap();
}

// ---------------------------------------------------------------------------
// (b) the child is killed while one thread holds an open reservation

#[test]
fn child_killed_holding_a_reservation() {
    if std::env::var(CHILD_ROLE).is_ok() {
        return holder_child();
    }
    let (mut child, socket) = spawn_child("child_killed_holding_a_reservation", "holder");
    let segment = Segment::open(recv_fd(&socket)).expect("open the child's segment");
    let rx = reports(socket);
    let mut daemon = Daemon::new(segment.consumer().unwrap());
    let mut reported: HashMap<u32, u64> = HashMap::new();
    let mut held_seq = None;
    let mut after_hold = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Consume concurrently until the hole has been held for a while and
    // more records were committed behind it (or the ring filled up).
    loop {
        assert!(Instant::now() < deadline, "child never held a reservation");
        daemon.drain();
        while let Ok(line) = rx.try_recv() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[0] {
                "R" => held_seq = Some(parts[1].parse::<u64>().unwrap()),
                "P" => {
                    let t: u32 = parts[1].parse().unwrap();
                    let i: u64 = parts[2].parse().unwrap();
                    reported.insert(t, i);
                    if held_seq.is_some() {
                        after_hold += 1;
                    }
                }
                other => panic!("unexpected report {other}"),
            }
        }
        if held_seq.is_some()
            && (after_hold >= 20 || segment.cursors().0 - segment.cursors().1 > (1 << 16) - 512)
        {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let held_seq = held_seq.unwrap();
    // Claims made before the hold complete; the consumer then waits at it.
    let settle = Instant::now() + Duration::from_secs(10);
    while daemon.consumer.drain_pos() < held_seq && Instant::now() < settle {
        daemon.drain();
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(daemon.consumer.drain_pos(), held_seq, "stuck at the hole");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Late reports written before the kill.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] == "P" && parts.len() == 3 {
            if let (Ok(t), Ok(i)) = (parts[1].parse::<u32>(), parts[2].parse::<u64>()) {
                reported.insert(t, i);
            }
        }
    }

    // The client is gone: drain, padding over every hole it left.
    let mut holes = 0;
    loop {
        daemon.drain();
        let (tail, _) = segment.cursors();
        if daemon.consumer.drain_pos() == tail {
            break;
        }
        assert!(
            daemon.consumer.unblock().expect("a hole"),
            "stuck without a hole"
        );
        holes += 1;
        assert!(holes < 100, "too many holes");
    }
    eprintln!(
        "killed child: {} records read, {holes} hole(s) padded, hole at {held_seq}, last record at {}",
        daemon.received, daemon.last_seq
    );
    assert!(holes >= 1);
    assert!(
        daemon.last_seq > held_seq,
        "records behind the hole were read"
    );
    // Every record a thread reported committed arrived (the per-thread
    // order check in `drain` already rules out gaps and duplicates).
    for (t, i) in &reported {
        assert!(
            daemon.next.get(t).copied().unwrap_or(0) > *i,
            "thread {t} lost {i}"
        );
    }
    assert!(
        daemon.next.keys().all(|&t| t < COMMITTERS),
        "the held record never commits"
    );
    let (tail, released) = segment.cursors();
    assert_eq!(tail, released, "every byte given back");
}

const COMMITTERS: u32 = 3;
/// How long a child may live if its parent never kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

fn holder_child() {
    let socket = Mutex::new(child_socket());
    let segment = Segment::create(&SegmentOptions::with_capacity(1 << 16)).unwrap();
    send_fd(&socket.lock().unwrap(), segment.fd().as_raw_fd());
    let committed = Arc::new(AtomicU64::new(0));
    let report = |line: String| {
        let _ = socket.lock().unwrap().write_all(line.as_bytes());
    };
    thread::scope(|s| {
        let deadline = Instant::now() + CHILD_LIFETIME;
        for t in 0..COMMITTERS {
            let producer = segment.producer();
            let committed = Arc::clone(&committed);
            let report = &report;
            s.spawn(move || {
                for i in 0.. {
                    if Instant::now() > deadline {
                        std::process::exit(1);
                    }
                    send_numbered(&producer, t, i);
                    committed.fetch_add(1, Ordering::Relaxed);
                    if i % 16 == 0 {
                        report(format!("P {t} {i}\n"));
                    }
                }
            });
        }
        let producer = segment.producer();
        while committed.load(Ordering::Relaxed) < 1000 {
            thread::yield_now();
        }
        let mut slot = producer
            .reserve(
                &shmkafka_ringbuf::RecordSpec {
                    topic_id: COMMITTERS,
                    value_len: Some(64),
                    ..Default::default()
                },
                BLOCK,
            )
            .unwrap();
        slot.value_mut()[..32].fill(0xEE);
        report(format!("R {}\n", slot.pos()));
        // Hold it until killed.
        thread::sleep(CHILD_LIFETIME);
        std::process::exit(1);
    });
}
