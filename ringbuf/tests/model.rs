//! Randomised operation sequences on a heap ring, checked step by step
//! against a plain model of the same ring.
//!
//! Several logical producers interleave reserve / write / commit / abort /
//! send / send_batch, holding slots open across other operations; one
//! consumer peeks, advances, marks in any order and releases. The model
//! predicts every position, every Full, every byte the consumer reads and
//! every byte released, so the properties checked are:
//! - every committed record comes out exactly once, in claim order (hence in
//!   per-producer order), byte-identical in every field;
//! - aborted records never come out, and their space comes back;
//! - the ring reports Full exactly when the model has no room (padding at
//!   the wrap included), never when there is room.

use std::collections::VecDeque;

use proptest::prelude::*;
use shmkafka_ringbuf::layout::{align_record, RECORD_HEADER_SIZE};
use shmkafka_ringbuf::Outcome;
use shmkafka_ringbuf::{
    heap_ring, Header, RawHeader, Record, RecordSpec, ReserveError, RingConsumer, RingProducer,
    Slot, WhenFull,
};

const CAP: u64 = 4096;
const PRODUCERS: usize = 3;

/// The shape of a record to generate; its bytes derive from a unique id.
#[derive(Debug, Clone)]
struct Shape {
    key: Option<usize>,
    value: Option<usize>,
    /// (name length, value length or null)
    headers: Vec<(usize, Option<usize>)>,
    topic: u32,
    partition: i32,
    timestamp: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { p: usize, shape: Shape },
    Write { p: usize, which: usize },
    Commit { p: usize, which: usize },
    Abort { p: usize, which: usize },
    Send { p: usize, shape: Shape },
    Batch { p: usize, shapes: Vec<Shape> },
    Consume { n: usize },
    Mark { which: usize, delivered: bool },
    Release,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::option::of(0..40usize),
        prop::option::weighted(0.9, 0..400usize),
        prop::collection::vec((0..8usize, prop::option::of(0..12usize)), 0..3),
        any::<u32>(),
        prop_oneof![Just(-1), 0..64i32],
        any::<i64>(),
    )
        .prop_map(|(key, value, headers, topic, partition, timestamp)| Shape {
            key,
            value,
            headers,
            topic,
            partition,
            timestamp,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PRODUCERS;
    prop_oneof![
        3 => (p.clone(), shape()).prop_map(|(p, shape)| Op::Reserve { p, shape }),
        2 => (p.clone(), any::<usize>()).prop_map(|(p, which)| Op::Write { p, which }),
        3 => (p.clone(), any::<usize>()).prop_map(|(p, which)| Op::Commit { p, which }),
        1 => (p.clone(), any::<usize>()).prop_map(|(p, which)| Op::Abort { p, which }),
        3 => (p.clone(), shape()).prop_map(|(p, shape)| Op::Send { p, shape }),
        1 => (p, prop::collection::vec(shape(), 0..4)).prop_map(|(p, shapes)| Op::Batch { p, shapes }),
        3 => (1..6usize).prop_map(|n| Op::Consume { n }),
        3 => (any::<usize>(), prop::bool::weighted(0.8))
            .prop_map(|(which, delivered)| Op::Mark { which, delivered }),
        2 => Just(Op::Release),
    ]
}

/// The bytes of one record, owned, as the consumer must see them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Content {
    producer: usize,
    /// Reservation index within its producer: the per-producer order.
    nth: u64,
    topic: u32,
    partition: i32,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes(id: u64, salt: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (id.wrapping_mul(131) ^ salt.wrapping_mul(17) ^ i.wrapping_mul(7)) as u8)
        .collect()
}

impl Content {
    fn new(producer: usize, nth: u64, id: u64, shape: &Shape) -> Self {
        Content {
            producer,
            nth,
            topic: shape.topic,
            partition: shape.partition,
            timestamp: shape.timestamp,
            key: shape.key.map(|l| bytes(id, 1, l)),
            value: shape.value.map(|l| bytes(id, 2, l)),
            headers: shape
                .headers
                .iter()
                .enumerate()
                .map(|(i, &(name_len, value_len))| {
                    let name = (0..name_len)
                        .map(|j| char::from(b'a' + ((id as usize + i + j) % 26) as u8))
                        .collect();
                    (name, value_len.map(|l| bytes(id, 3 + i as u64, l)))
                })
                .collect(),
        }
    }

    fn with_headers<R>(&self, f: impl FnOnce(&[Header<'_>]) -> R) -> R {
        let headers: Vec<Header<'_>> = self
            .headers
            .iter()
            .map(|(name, value)| Header {
                name,
                value: value.as_deref(),
            })
            .collect();
        f(&headers)
    }

    fn span(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| 6 + n.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let len = RECORD_HEADER_SIZE
            + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers;
        align_record(len) as u64
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Padding,
    Open,
    Committed(Box<Content>),
    Aborted,
}

#[derive(Debug, Clone)]
struct Entry {
    pos: u64,
    span: u64,
    kind: Kind,
    /// Only meaningful for entries the consumer has passed.
    done: bool,
}

/// The model ring: positions, the claimed entries from `released` to
/// `tail`, and how far the consumer has read.
#[derive(Debug, Default)]
struct Model {
    tail: u64,
    released: u64,
    entries: VecDeque<Entry>,
    /// Entries before this index are in flight (passed by the consumer).
    drained: usize,
}

impl Model {
    /// Claims `need` bytes as the ring must: padding first if the record
    /// would straddle the end, Full if the ring lacks the room.
    fn claim(&mut self, need: u64) -> Result<u64, (u64, u64)> {
        let used = self.tail - self.released;
        let to_end = CAP - self.tail % CAP;
        let (start, total) = if need <= to_end {
            (self.tail, need)
        } else {
            (self.tail + to_end, to_end + need)
        };
        if used + total > CAP {
            return Err((total, CAP - used));
        }
        if start != self.tail {
            self.entries.push_back(Entry {
                pos: self.tail,
                span: to_end,
                kind: Kind::Padding,
                done: false,
            });
        }
        self.tail += total;
        Ok(start)
    }

    fn entry(&mut self, pos: u64) -> &mut Entry {
        self.entries
            .iter_mut()
            .find(|e| e.pos == pos)
            .expect("model entry")
    }

    /// What `peek` must return, stepping over padding and aborted records.
    fn peek(&mut self) -> Option<&Content> {
        loop {
            let entry = self.entries.get_mut(self.drained)?;
            match &entry.kind {
                Kind::Padding | Kind::Aborted => {
                    entry.done = true;
                    self.drained += 1;
                }
                Kind::Open => return None,
                Kind::Committed(_) => break,
            }
        }
        match &self.entries[self.drained].kind {
            Kind::Committed(c) => Some(c),
            _ => unreachable!(),
        }
    }

    fn drain_pos(&self) -> u64 {
        self.entries.get(self.drained).map_or(self.tail, |e| e.pos)
    }

    fn release(&mut self) -> u64 {
        let mut freed = 0;
        while self.drained > 0 && self.entries[0].done {
            let e = self.entries.pop_front().unwrap();
            freed += e.span;
            self.drained -= 1;
        }
        self.released += freed;
        freed
    }
}

struct OpenSlot<'a> {
    slot: Slot<'a>,
    content: Content,
    written: bool,
}

fn write_slot(open: &mut OpenSlot<'_>, in_place: bool) {
    if let Some(key) = &open.content.key {
        if in_place {
            open.slot.key_mut().copy_from_slice(key);
        } else {
            open.slot.write_key(key);
        }
    }
    if let Some(value) = &open.content.value {
        if in_place {
            open.slot.value_mut().copy_from_slice(value);
        } else {
            open.slot.write_value(value);
        }
    }
    open.written = true;
}

fn spec_of<'a>(c: &Content, headers: &'a [Header<'a>]) -> RecordSpec<'a> {
    RecordSpec {
        topic_id: c.topic,
        partition: c.partition,
        timestamp_ms: c.timestamp,
        key_len: c.key.as_ref().map(Vec::len),
        value_len: c.value.as_ref().map(Vec::len),
        headers,
    }
}

fn check_full<T>(real: Result<T, ReserveError>, model: Result<u64, (u64, u64)>) -> Option<T> {
    match (real, model) {
        (Ok(v), Ok(_)) => Some(v),
        (
            Err(ReserveError::Full {
                needed,
                free,
                capacity,
            }),
            Err((m_needed, m_free)),
        ) => {
            assert_eq!(
                (needed as u64, free as u64, capacity as u64),
                (m_needed, m_free, CAP)
            );
            None
        }
        (real, model) => panic!("ring said {:?}, model said {model:?}", real.map(|_| ())),
    }
}

struct Harness<'a> {
    producers: &'a [RingProducer],
    consumer: RingConsumer,
    model: Model,
    open: Vec<Vec<OpenSlot<'a>>>,
    reserved: [u64; PRODUCERS],
    next_id: u64,
    /// Last reservation index seen per producer (per-producer order).
    last_seen: [Option<u64>; PRODUCERS],
    delivered: u64,
    committed: u64,
    /// The sequence number the next claim gets (claims are numbered in
    /// order here: one thread drives every producer).
    next_seq: u64,
}

impl<'a> Harness<'a> {
    fn new(producers: &'a [RingProducer], consumer: RingConsumer) -> Self {
        Harness {
            producers,
            consumer,
            model: Model::default(),
            open: (0..PRODUCERS).map(|_| Vec::new()).collect(),
            reserved: [0; PRODUCERS],
            next_id: 0,
            last_seen: [None; PRODUCERS],
            delivered: 0,
            committed: 0,
            next_seq: 0,
        }
    }

    fn content(&mut self, p: usize, shape: &Shape) -> Content {
        self.next_id += 1;
        self.reserved[p] += 1;
        Content::new(p, self.reserved[p], self.next_id, shape)
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Reserve { p, shape } => {
                let content = self.content(*p, shape);
                let expected = self.model.claim(content.span());
                let producer: &'a RingProducer = &self.producers[*p];
                let real = content
                    .with_headers(|h| producer.reserve(&spec_of(&content, h), WhenFull::Fail));
                if let Some(slot) = check_full(real, expected) {
                    assert_eq!(slot.pos(), expected.unwrap());
                    assert_eq!(slot.seq(), self.next_seq);
                    self.next_seq += 1;
                    self.model.entries.push_back(Entry {
                        pos: slot.pos(),
                        span: content.span(),
                        kind: Kind::Open,
                        done: false,
                    });
                    self.open[*p].push(OpenSlot {
                        slot,
                        content,
                        written: false,
                    });
                }
            }
            Op::Write { p, which } => {
                let n = self.open[*p].len();
                if n > 0 {
                    write_slot(&mut self.open[*p][which % n], which % 2 == 0);
                }
            }
            Op::Commit { p, which } => {
                let n = self.open[*p].len();
                if n > 0 {
                    let mut open = self.open[*p].remove(which % n);
                    if !open.written {
                        write_slot(&mut open, which % 2 == 1);
                    }
                    let (pos, seq) = (open.slot.pos(), open.slot.seq());
                    assert_eq!(open.slot.commit(), seq);
                    self.model.entry(pos).kind = Kind::Committed(Box::new(open.content));
                    self.committed += 1;
                }
            }
            Op::Abort { p, which } => {
                let n = self.open[*p].len();
                if n > 0 {
                    let mut open = self.open[*p].remove(which % n);
                    if which % 3 == 0 {
                        write_slot(&mut open, true);
                    }
                    let pos = open.slot.pos();
                    drop(open);
                    self.model.entry(pos).kind = Kind::Aborted;
                }
            }
            Op::Send { p, shape } => {
                let content = self.content(*p, shape);
                let expected = self.model.claim(content.span());
                let real = content.with_headers(|h| {
                    self.producers[*p].send(
                        &Record {
                            topic_id: content.topic,
                            partition: content.partition,
                            timestamp_ms: content.timestamp,
                            key: content.key.as_deref(),
                            value: content.value.as_deref(),
                            headers: h,
                        },
                        WhenFull::Fail,
                    )
                });
                if let Some(seq) = check_full(real, expected) {
                    assert_eq!(seq, self.next_seq);
                    self.next_seq += 1;
                    self.model.entries.push_back(Entry {
                        pos: expected.unwrap(),
                        span: content.span(),
                        kind: Kind::Committed(Box::new(content)),
                        done: false,
                    });
                    self.committed += 1;
                }
            }
            Op::Batch { p, shapes } => {
                let contents: Vec<Content> = shapes.iter().map(|s| self.content(*p, s)).collect();
                let total: u64 = contents.iter().map(Content::span).sum();
                let header_sets: Vec<Vec<Header<'_>>> = contents
                    .iter()
                    .map(|c| {
                        c.headers
                            .iter()
                            .map(|(name, value)| Header {
                                name,
                                value: value.as_deref(),
                            })
                            .collect()
                    })
                    .collect();
                let records: Vec<Record<'_>> = contents
                    .iter()
                    .zip(&header_sets)
                    .map(|(c, h)| Record {
                        topic_id: c.topic,
                        partition: c.partition,
                        timestamp_ms: c.timestamp,
                        key: c.key.as_deref(),
                        value: c.value.as_deref(),
                        headers: h,
                    })
                    .collect();
                let real = self.producers[*p].send_batch(&records, WhenFull::Fail);
                if total > CAP / 2 {
                    assert!(
                        matches!(real, Err(ReserveError::TooLarge { .. })),
                        "{real:?}"
                    );
                    return;
                }
                let expected = self.model.claim(total);
                if let Some(first) = check_full(real, expected) {
                    assert_eq!(first, self.next_seq, "the batch is numbered in a row");
                    self.next_seq += contents.len() as u64;
                    let mut pos = expected.unwrap();
                    for content in contents {
                        let span = content.span();
                        self.model.entries.push_back(Entry {
                            pos,
                            span,
                            kind: Kind::Committed(Box::new(content)),
                            done: false,
                        });
                        self.committed += 1;
                        pos += span;
                    }
                }
            }
            Op::Consume { n } => {
                for _ in 0..*n {
                    if !self.consume_one() {
                        break;
                    }
                }
            }
            Op::Mark { which, delivered } => {
                let outcome = &if *delivered {
                    Outcome::delivered(0, 0, 0)
                } else {
                    Outcome::failed(1, 0, -1, 0)
                };
                let candidates: Vec<usize> = (0..self.model.drained)
                    .filter(|&i| {
                        matches!(self.model.entries[i].kind, Kind::Committed(_))
                            && !self.model.entries[i].done
                    })
                    .collect();
                if candidates.is_empty() {
                    // Nothing pending: marking anything must be refused.
                    if let Some(e) = self.model.entries.get(which % 8) {
                        assert!(!self.consumer.mark(e.pos, outcome));
                    }
                    return;
                }
                let i = candidates[which % candidates.len()];
                let pos = self.model.entries[i].pos;
                assert!(self.consumer.mark(pos, outcome), "mark in-flight {pos}");
                assert!(!self.consumer.mark(pos, outcome), "second mark of {pos}");
                self.model.entries[i].done = true;
                self.delivered += 1;
            }
            Op::Release => {
                let freed = self.model.release();
                assert_eq!(self.consumer.release(), freed);
                assert_eq!(self.producers[0].released(), self.model.released);
            }
        }
        assert_eq!(self.producers[0].tail(), self.model.tail);
        assert_eq!(self.consumer.released_pos(), self.model.released);
    }

    /// Peeks and advances once; checks the record against the model.
    fn consume_one(&mut self) -> bool {
        let real = self
            .consumer
            .peek()
            .expect("a well-behaved ring never errors");
        let expected = self.model.peek().cloned();
        match (real, expected) {
            (None, None) => {
                assert_eq!(self.consumer.drain_pos(), self.model.drain_pos());
                false
            }
            (Some(record), Some(c)) => {
                let pos = self.model.drain_pos();
                assert_eq!(record.pos(), pos);
                assert_eq!(record.topic_id(), c.topic);
                assert_eq!(record.partition(), c.partition);
                assert_eq!(record.timestamp_ms(), c.timestamp);
                assert_eq!(record.key(), c.key.as_deref());
                assert_eq!(record.value(), c.value.as_deref());
                let headers: Vec<RawHeader<'_>> = record
                    .headers()
                    .collect::<Result<_, _>>()
                    .expect("headers decode");
                let expected: Vec<RawHeader<'_>> = c
                    .headers
                    .iter()
                    .map(|(n, v)| RawHeader {
                        name: n.as_bytes(),
                        value: v.as_deref(),
                    })
                    .collect();
                assert_eq!(headers, expected);
                if let Some(last) = self.last_seen[c.producer] {
                    assert!(last < c.nth, "per-producer order");
                }
                self.last_seen[c.producer] = Some(c.nth);
                self.consumer.advance();
                self.model.drained += 1;
                assert_eq!(self.consumer.drain_pos(), self.model.drain_pos());
                true
            }
            (real, expected) => panic!(
                "ring gave {:?}, model expected {:?}",
                real.map(|r| r.pos()),
                expected
            ),
        }
    }

    /// Commits what is open, drains and releases everything: the ring ends
    /// empty with every committed record delivered exactly once.
    fn finish(&mut self) {
        for p in 0..PRODUCERS {
            while !self.open[p].is_empty() {
                self.apply(&Op::Commit { p, which: 0 });
            }
        }
        while self.consume_one() {}
        loop {
            let before = self.delivered;
            self.apply(&Op::Mark {
                which: 0,
                delivered: true,
            });
            if self.delivered == before {
                break;
            }
        }
        self.apply(&Op::Release);
        assert_eq!(self.delivered, self.committed);
        assert_eq!(self.producers[0].released(), self.producers[0].tail());
        assert!(self.consumer.is_idle());
    }
}

fn run(ops: &[Op]) {
    let (producer, consumer) = heap_ring(CAP as usize);
    let producers: Vec<RingProducer> = (0..PRODUCERS).map(|_| producer.clone()).collect();
    let mut harness = Harness::new(&producers, consumer);
    for op in ops {
        harness.apply(op);
    }
    harness.finish();
    drop(harness);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn ring_matches_model(ops in prop::collection::vec(op(), 1..300)) {
        run(&ops);
    }
}

/// A long fixed sequence that wraps the ring many times with slots held
/// open across the wrap (a deterministic complement to the random cases).
#[test]
fn many_laps_with_open_slots() {
    let shape = |value| Shape {
        key: Some(3),
        value: Some(value),
        headers: vec![(2, Some(1))],
        topic: 1,
        partition: 2,
        timestamp: 3,
    };
    let mut ops = Vec::new();
    for i in 0..400usize {
        ops.push(Op::Reserve {
            p: i % PRODUCERS,
            shape: shape(i * 37 % 300),
        });
        ops.push(Op::Send {
            p: (i + 1) % PRODUCERS,
            shape: shape(i * 11 % 200),
        });
        ops.push(Op::Commit {
            p: (i + 2) % PRODUCERS,
            which: i,
        });
        if i % 5 == 0 {
            ops.push(Op::Abort {
                p: i % PRODUCERS,
                which: i,
            });
        }
        ops.push(Op::Consume { n: 3 });
        ops.push(Op::Mark {
            which: i * 7,
            delivered: i % 4 != 0,
        });
        ops.push(Op::Release);
    }
    run(&ops);
}
