//! Loom models of the claim / commit / abort / pad / release protocol, the
//! failure queue, the park/wake handshake, and a consumer finishing a
//! release its predecessor died in: producer threads and the consumer on a
//! tiny ring, every 4-byte word a loom atomic (see `memory.rs`), so a
//! missing happens-before edge shows up as a stale or torn value that the
//! assertions below catch.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p shmkafka-ringbuf --release --test loom`
//! (`LOOM_MAX_PREEMPTIONS=N`, which CI sets, overrides the default bound
//! of 2.)
//!
//! Only `WhenFull::Fail` is used: blocking waits use `Instant` and futexes,
//! which loom does not model; a full ring is retried with a loom yield.

#![cfg(loom)]

use loom::thread;
use shmkafka_ringbuf::layout::{align_record, RECORD_HEADER_SIZE};
use shmkafka_ringbuf::{
    heap_ring, Failure, Record, RecordSpec, ReserveError, RingConsumer, RingProducer, WhenFull,
};
use shmkafka_ringbuf::{heap_ring_with, Outcome};

/// 128 bytes: two 56-byte records fit, a third needs a release (and, from
/// position 112, 16 bytes of padding at the wrap).
const CAP: usize = 128;
/// Value length of every record: 48 + 8 = 56 bytes, already aligned.
const VALUE: usize = 8;
const SPAN: u64 = align_record(RECORD_HEADER_SIZE + VALUE) as u64;

fn check(f: impl Fn() + Sync + Send + 'static) {
    // `Builder::new` reads loom's own variables (`LOOM_MAX_PREEMPTIONS`,
    // ...); keep what it found.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(2);
    builder.max_branches = 1_000_000;
    builder.check(f);
}

fn value(producer: u8, n: u8) -> [u8; VALUE] {
    [producer, n, 0xA5, 0x5A, producer ^ n, 1, 2, 3]
}

/// Sends, retrying (with a loom yield) while the ring is full.
fn send(producer: &RingProducer, v: &[u8; VALUE]) -> u64 {
    loop {
        let record = Record {
            topic_id: u32::from(v[0]),
            partition: i32::from(v[1]),
            timestamp_ms: 77,
            value: Some(v),
            ..Record::default()
        };
        match producer.send(&record, WhenFull::Fail) {
            Ok(seq) => return seq,
            Err(ReserveError::Full { .. }) => thread::yield_now(),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Consumes until `released_pos() == until`, marking every record
/// delivered and releasing after each one; returns the values in order.
fn consume_until(consumer: &mut RingConsumer, until: u64) -> Vec<(u64, [u8; VALUE])> {
    let mut got = Vec::new();
    while consumer.released_pos() < until {
        let record = match consumer.peek() {
            Ok(Some(record)) => record,
            Ok(None) => {
                consumer.release();
                thread::yield_now();
                continue;
            }
            Err(e) => panic!("consumer saw a corrupt ring: {e}"),
        };
        let (seq, pos) = (record.seq(), record.pos());
        let v: [u8; VALUE] = record
            .value_to_vec()
            .expect("non-null value")
            .try_into()
            .expect("value length");
        // Every header field is what the producer wrote, not a stale word.
        assert_eq!(record.topic_id(), u32::from(v[0]));
        assert_eq!(record.partition(), i32::from(v[1]));
        assert_eq!(record.timestamp_ms(), 77);
        assert_eq!(record.key_len(), None);
        assert_eq!(v, value(v[0], v[1]), "torn or stale payload");
        consumer.advance();
        assert!(consumer.mark(pos, &Outcome::delivered(0, 0, 0)));
        consumer.release();
        got.push((seq, v));
    }
    got
}

#[test]
fn two_producers_claim_and_commit() {
    check(|| {
        let (producer, mut consumer) = heap_ring(CAP);
        let handles: Vec<_> = (1..=2u8)
            .map(|p| {
                let producer = producer.clone();
                thread::spawn(move || send(&producer, &value(p, 0)))
            })
            .collect();
        let got = consume_until(&mut consumer, 2 * SPAN);
        let seqs: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got.len(), 2);
        for (seq, v) in got {
            assert_eq!(seqs[usize::from(v[0]) - 1], seq);
        }
        assert_eq!(producer.tail(), 2 * SPAN);
        assert_eq!(producer.released(), 2 * SPAN);
    });
}

#[test]
fn abort_is_skipped_and_reclaimed() {
    check(|| {
        let (producer, mut consumer) = heap_ring(CAP);
        let aborter = {
            let producer = producer.clone();
            thread::spawn(move || {
                let spec = RecordSpec {
                    value_len: Some(VALUE),
                    ..RecordSpec::default()
                };
                let mut slot = producer.reserve(&spec, WhenFull::Fail).unwrap();
                slot.write_value(&value(9, 9));
                // Dropped without commit: becomes an aborted record.
            })
        };
        let sender = {
            let producer = producer.clone();
            thread::spawn(move || send(&producer, &value(1, 0)))
        };
        let got = consume_until(&mut consumer, 2 * SPAN);
        aborter.join().unwrap();
        let seq = sender.join().unwrap();
        assert_eq!(got, [(seq, value(1, 0))]);
        assert_eq!(producer.aborted(), 1);
        assert_eq!(producer.released(), producer.tail());
    });
}

#[test]
fn padding_at_the_wrap_under_contention() {
    check(|| {
        let (producer, mut consumer) = heap_ring(CAP);
        // Move both cursors to 56: one of the next two claims fits before
        // the end (56..112), the other pads 112..128 and starts at 128.
        send(&producer, &value(0, 0));
        consume_until(&mut consumer, SPAN);
        let handles: Vec<_> = (1..=2u8)
            .map(|p| {
                let producer = producer.clone();
                thread::spawn(move || send(&producer, &value(p, 0)))
            })
            .collect();
        let end = SPAN + SPAN + (CAP as u64 - 2 * SPAN) + SPAN;
        let got = consume_until(&mut consumer, end);
        let mut seqs: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        seqs.sort_unstable();
        // Numbered after the first record. Across threads the numbers need
        // not follow ring order: each is taken after its claim.
        assert_eq!(seqs, [1, 2]);
        let mut read: Vec<u64> = got.iter().map(|g| g.0).collect();
        read.sort_unstable();
        assert_eq!(read, seqs);
        assert_eq!(producer.tail(), end);
    });
}

#[test]
fn released_space_is_reused() {
    check(|| {
        let (producer, mut consumer) = heap_ring(CAP);
        // Three records in a ring that holds two: the third one's claim
        // needs space the consumer released (and zeroed) concurrently.
        let first = {
            let producer = producer.clone();
            thread::spawn(move || {
                let a = send(&producer, &value(1, 0));
                let b = send(&producer, &value(1, 1));
                (a, b)
            })
        };
        let second = {
            let producer = producer.clone();
            thread::spawn(move || send(&producer, &value(2, 0)))
        };
        // 56 + 56, then the third needs 16 of padding + 56.
        let end = 3 * SPAN + (CAP as u64 - 2 * SPAN);
        let mut got = consume_until(&mut consumer, end);
        let (a, b) = first.join().unwrap();
        let c = second.join().unwrap();
        assert!(a < b, "per-producer order");
        let first_thread: Vec<u64> = got.iter().filter(|g| g.1[0] == 1).map(|g| g.0).collect();
        assert_eq!(first_thread, [a, b], "ring order within a thread");
        let mut expected = vec![(a, value(1, 0)), (b, value(1, 1)), (c, value(2, 0))];
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(producer.released(), producer.tail());
    });
}

/// Two threads each try once to claim while the consumer frees a full
/// ring. A claim that reads the tail another claim moved must judge it
/// against a release cursor at least as new as that claim's, never call the
/// ring corrupted; and the second claim may fit below the cursor the first
/// one read, then write into the freed space without reading the cursor
/// itself (`released_seen`): under loom every claim asserts that its space
/// reads as zeroed, which fails if that copy does not carry the consumer's
/// zeroes. Single attempts keep the model free of spin loops.
#[test]
fn claims_racing_a_release_see_a_consistent_cursor() {
    check(|| {
        let (producer, mut consumer) = heap_ring(CAP);
        send(&producer, &value(0, 0));
        send(&producer, &value(0, 1));
        let freeing = thread::spawn(move || {
            consume_until(&mut consumer, 2 * SPAN);
            consumer
        });
        let try_send = |producer: &RingProducer, v: [u8; VALUE]| {
            let record = Record {
                topic_id: u32::from(v[0]),
                partition: i32::from(v[1]),
                timestamp_ms: 77,
                value: Some(&v),
                ..Record::default()
            };
            match producer.send(&record, WhenFull::Fail) {
                Ok(seq) => Some((seq, v)),
                Err(ReserveError::Full { .. }) => None,
                Err(e) => panic!("unexpected {e}"),
            }
        };
        let first = {
            let producer = producer.clone();
            thread::spawn(move || try_send(&producer, value(1, 0)))
        };
        let second = try_send(&producer, value(2, 0));
        let first = first.join().unwrap();
        let mut consumer = freeing.join().unwrap();
        let mut expected: Vec<(u64, [u8; VALUE])> = first.into_iter().chain(second).collect();
        expected.sort_unstable();
        let mut got = consume_until(&mut consumer, producer.tail());
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(producer.released(), producer.tail());
    });
}

/// The daemon pushes two failures while two client threads pop: each is
/// read exactly once, with the fields the daemon wrote.
#[test]
fn failure_queue_hands_each_failure_to_one_reader_intact() {
    check(|| {
        let (producer, consumer) = heap_ring(CAP);
        let failures = [
            Failure {
                seq: 56,
                code: -192,
                persistence: 1,
            },
            Failure {
                seq: 112,
                code: 10,
                persistence: 0,
            },
        ];
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let producer = producer.clone();
                thread::spawn(move || producer.pop_failure())
            })
            .collect();
        for failure in failures {
            assert!(consumer.push_failure(failure));
        }
        let mut got: Vec<Failure> = readers
            .into_iter()
            .filter_map(|r| r.join().unwrap())
            .collect();
        // What the readers left (they may have looked before the pushes).
        while let Some(failure) = producer.pop_failure() {
            got.push(failure);
        }
        got.sort_unstable_by_key(|f| f.seq);
        assert_eq!(got, failures);
    });
}

/// Dekker handshake between a committing producer and a parking consumer:
/// if the consumer decides to sleep, the producer saw it parked and woke
/// it; otherwise the consumer saw the record. Never both missed.
#[test]
fn parking_consumer_never_sleeps_through_a_commit() {
    check(|| {
        let (producer, consumer) = heap_ring(CAP);
        let sender = thread::spawn(move || send(&producer, &value(1, 0)));
        let sleeps = consumer.prepare_park();
        sender.join().unwrap();
        if sleeps {
            assert!(
                shmkafka_ringbuf::futex_wakes() > 0,
                "the consumer sleeps on a committed record and nobody wakes it"
            );
            consumer.finish_park();
        }
    });
}

/// A consumer dies after zeroing a finished span and before publishing it
/// (a daemon killed mid-release). Its successor finishes the release while
/// a producer waits for that space: the producer's record, written into
/// the freed space, is read back intact and the ring drains completely.
#[test]
fn successor_finishes_a_release_its_predecessor_died_in() {
    check(|| {
        let (producer, mut consumer) = heap_ring(CAP);
        let first = send(&producer, &value(1, 0));
        let second = send(&producer, &value(1, 1));
        for seq in [first, second] {
            let record = consumer.peek().unwrap().expect("record");
            assert_eq!(record.seq(), seq);
            let pos = record.pos();
            consumer.advance();
            assert!(consumer.mark(pos, &Outcome::delivered(0, 0, 0)));
        }
        // A second handle on the ring, to outlive the dying consumer.
        let handle = consumer.successor().expect("cursors");
        consumer.die_mid_release();
        // The third record needs the space being released: 16 bytes of
        // padding at the wrap, then 56 from position 128.
        let sender = {
            let producer = producer.clone();
            thread::spawn(move || send(&producer, &value(2, 0)))
        };
        // The restarted daemon's consumer, built from the shared cursors.
        let mut successor = handle.successor().expect("cursors");
        drop(handle);
        let end = CAP as u64 + SPAN;
        let got = consume_until(&mut successor, end);
        let third = sender.join().unwrap();
        assert_eq!(got, [(third, value(2, 0))]);
        assert_eq!(producer.released(), producer.tail());
    });
}

/// Delivery reports: the consumer writes two records' outcomes and releases
/// while the client reads the reports and publishes its report cursor.
/// Each report is read intact (the fields the consumer wrote, never the
/// zeroes of a release), once, and the space comes back only after it was
/// read.
#[test]
fn reports_are_read_intact_before_their_space_is_released() {
    check(|| {
        let (producer, mut consumer) = heap_ring_with(CAP, true);
        let first = send(&producer, &value(1, 0));
        let second = send(&producer, &value(1, 1));
        let mut reader = producer.report_reader().expect("reports");
        let reading = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 2 {
                reader.read(usize::MAX, |r| got.push(r));
                thread::yield_now();
            }
            got
        });
        let mut positions = Vec::new();
        while let Some(record) = consumer.peek().unwrap() {
            positions.push(record.pos());
            consumer.advance();
        }
        assert_eq!(positions, [0, SPAN]);
        assert!(consumer.mark(positions[0], &Outcome::delivered(3, 10, 100)));
        assert!(consumer.mark(positions[1], &Outcome::failed(-192, 1, 4, 200)));
        while producer.released() < 2 * SPAN {
            consumer.release();
            thread::yield_now();
        }
        let got = reading.join().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].seq,
                got[0].delivered,
                got[0].partition,
                got[0].offset
            ),
            (first, true, 3, 10)
        );
        assert_eq!(
            (
                got[1].seq,
                got[1].error_code,
                got[1].partition,
                got[1].persistence
            ),
            (second, -192, 4, 1)
        );
    });
}
