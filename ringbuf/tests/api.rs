//! Unit tests of the public ring API on one thread (or a few), each checking
//! one documented behaviour.
//!
//! Tests that need a real segment (zeroing as seen through the memfd, a
//! consumer rebuilt after a restart) are ignored under miri, which cannot
//! map a memfd; everything else runs on `heap_ring` there too.

use std::thread;
use std::time::{Duration, Instant};

use shmkafka_ringbuf::layout::{align_record, HEADER_SIZE, RECORD_HEADER_SIZE};
use shmkafka_ringbuf::Outcome;
use shmkafka_ringbuf::{
    heap_ring, park_any, Delivery, Failure, Header, HeaderIter, RawHeader, Record, RecordSpec,
    ReserveError, RingConsumer, RingProducer, Segment, SegmentOptions, WhenFull,
};

const CAP: usize = 4096;

fn value_record(value: &[u8]) -> Record<'_> {
    Record {
        topic_id: 7,
        value: Some(value),
        ..Record::default()
    }
}

/// Aligned span of a record with a `value_len`-byte value and nothing else.
fn span_of_value(value_len: usize) -> u64 {
    align_record(RECORD_HEADER_SIZE + value_len) as u64
}

/// Reads, marks delivered and releases everything committed; returns the
/// values read, in order.
fn drain(consumer: &mut RingConsumer) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut seqs = Vec::new();
    while let Some(record) = consumer.peek().expect("valid ring") {
        out.push(record.value().map(<[u8]>::to_vec));
        seqs.push(record.pos());
        consumer.advance();
    }
    for seq in seqs {
        assert!(consumer.mark(seq, &Outcome::delivered(0, 0, 0)));
    }
    consumer.release();
    out
}

/// Sends `value_len`-byte records until the ring refuses one; returns how many fit.
fn fill(producer: &RingProducer, value_len: usize) -> usize {
    let value = vec![0xAB; value_len];
    let mut sent = 0;
    loop {
        match producer.send(&value_record(&value), WhenFull::Fail) {
            Ok(_) => sent += 1,
            Err(ReserveError::Full { .. }) => return sent,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Reads `len` bytes of a segment's data area at `off` through the memfd
/// itself, i.e. what the other process would see.
fn segment_bytes(segment: &Segment, off: usize, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = nix::sys::uio::pread(segment.fd(), &mut buf, (HEADER_SIZE + off) as i64)
        .expect("pread segment");
    assert_eq!(n, len);
    buf
}

#[test]
fn reserve_write_in_place_and_commit() {
    let (producer, mut consumer) = heap_ring(CAP);
    let headers = [
        Header {
            name: "trace",
            value: Some(b"abc"),
        },
        Header {
            name: "n",
            value: None,
        },
    ];
    let spec = RecordSpec {
        topic_id: 3,
        partition: 5,
        timestamp_ms: 1_700_000_000_123,
        key_len: Some(3),
        value_len: Some(5),
        headers: &headers,
    };
    let mut slot = producer.reserve(&spec, WhenFull::Fail).unwrap();
    let reserved_seq = slot.seq();
    slot.key_mut().copy_from_slice(b"key");
    slot.value_mut().copy_from_slice(b"value");
    // Not visible before commit.
    assert!(consumer.peek().unwrap().is_none());
    let seq = slot.commit();
    assert_eq!(seq, reserved_seq);
    assert_eq!(seq, 0);

    let record = consumer.peek().unwrap().expect("committed");
    assert_eq!(record.seq(), seq);
    assert_eq!(record.topic_id(), 3);
    assert_eq!(record.partition(), 5);
    assert_eq!(record.timestamp_ms(), 1_700_000_000_123);
    assert_eq!(record.key(), Some(&b"key"[..]));
    assert_eq!(record.value(), Some(&b"value"[..]));
    assert_eq!(record.key_to_vec(), Some(b"key".to_vec()));
    assert_eq!(record.value_to_vec(), Some(b"value".to_vec()));
    let decoded: Vec<RawHeader<'_>> = record.headers().map(Result::unwrap).collect();
    assert_eq!(
        decoded,
        [
            RawHeader {
                name: b"trace",
                value: Some(b"abc")
            },
            RawHeader {
                name: b"n",
                value: None
            },
        ]
    );
    let owned = record.headers_to_vec();
    assert_eq!(HeaderIter::new(&owned).count(), 2);
    consumer.advance();
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(producer.tail(), record_span(&spec));
}

fn record_span(spec: &RecordSpec<'_>) -> u64 {
    let headers: usize = spec
        .headers
        .iter()
        .map(|h| 6 + h.name.len() + h.value.map_or(0, <[u8]>::len))
        .sum();
    align_record(
        RECORD_HEADER_SIZE + spec.key_len.unwrap_or(0) + spec.value_len.unwrap_or(0) + headers,
    ) as u64
}

#[test]
fn write_key_and_value_by_copy() {
    let (producer, mut consumer) = heap_ring(CAP);
    let spec = RecordSpec {
        key_len: Some(2),
        value_len: Some(4),
        ..RecordSpec::default()
    };
    let mut slot = producer.reserve(&spec, WhenFull::Fail).unwrap();
    slot.write_key(b"k1");
    slot.write_value(b"v123");
    slot.commit();
    let record = consumer.peek().unwrap().unwrap();
    assert_eq!(record.key(), Some(&b"k1"[..]));
    assert_eq!(record.value(), Some(&b"v123"[..]));
}

#[test]
#[should_panic(expected = "value length differs")]
fn write_value_of_wrong_length_panics() {
    let (producer, _consumer) = heap_ring(CAP);
    let spec = RecordSpec {
        value_len: Some(4),
        ..RecordSpec::default()
    };
    let mut slot = producer.reserve(&spec, WhenFull::Fail).unwrap();
    slot.write_value(b"toolong");
}

/// Key, value and headers of one null-versus-empty case.
type NullCase<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a [Header<'a>]);

#[test]
fn null_and_empty_are_distinct() {
    let (producer, mut consumer) = heap_ring(CAP);
    let null_header = [Header {
        name: "h",
        value: None,
    }];
    let empty_header = [Header {
        name: "",
        value: Some(b""),
    }];
    let cases: [NullCase<'_>; 4] = [
        (None, None, &[]),
        (Some(b""), Some(b""), &[]),
        (None, Some(b""), &null_header),
        (Some(b""), None, &empty_header),
    ];
    for (key, value, headers) in cases {
        producer
            .send(
                &Record {
                    key,
                    value,
                    headers,
                    ..Record::default()
                },
                WhenFull::Fail,
            )
            .unwrap();
    }
    for (key, value, headers) in cases {
        let record = consumer.peek().unwrap().unwrap();
        assert_eq!(record.key(), key);
        assert_eq!(record.value(), value);
        assert_eq!(record.key_len(), key.map(<[u8]>::len));
        assert_eq!(record.value_len(), value.map(<[u8]>::len));
        assert_eq!(record.key_to_vec(), key.map(<[u8]>::to_vec));
        assert_eq!(record.value_to_vec(), value.map(<[u8]>::to_vec));
        let decoded: Vec<_> = record.headers().map(Result::unwrap).collect();
        let expected: Vec<_> = headers
            .iter()
            .map(|h| RawHeader {
                name: h.name.as_bytes(),
                value: h.value,
            })
            .collect();
        assert_eq!(decoded, expected);
        consumer.advance();
    }
}

#[test]
fn padding_at_the_wrap() {
    let (producer, mut consumer) = heap_ring(CAP);
    // Four records of span 1000 leave 96 bytes before the end.
    for _ in 0..4 {
        producer
            .send(&value_record(&[1; 952]), WhenFull::Fail)
            .unwrap();
    }
    assert_eq!(producer.tail(), 4000);
    assert_eq!(drain(&mut consumer).len(), 4);
    assert_eq!(producer.released(), 4000);

    // 152 bytes do not fit in the 96 left: padding, then the record at 0.
    let seq = producer
        .send(&value_record(&[2; 100]), WhenFull::Fail)
        .unwrap();
    assert_eq!(
        seq, 4,
        "numbered after the four before it; padding takes no number"
    );
    assert_eq!(producer.tail(), CAP as u64 + span_of_value(100));
    assert_eq!(drain(&mut consumer), [Some(vec![2; 100])]);
    // The padding was stepped over and released with the record.
    assert_eq!(producer.released(), producer.tail());
}

#[test]
fn record_that_exactly_fills_the_end_needs_no_padding() {
    let (producer, mut consumer) = heap_ring(CAP);
    for _ in 0..4 {
        producer
            .send(&value_record(&[1; 952]), WhenFull::Fail)
            .unwrap();
    }
    drain(&mut consumer);
    let seq = producer
        .send(&value_record(&[3; 48]), WhenFull::Fail)
        .unwrap();
    assert_eq!(seq, 4);
    assert_eq!(producer.tail(), CAP as u64);
    let next = producer
        .send(&value_record(&[4; 8]), WhenFull::Fail)
        .unwrap();
    assert_eq!(next, 5);
    assert_eq!(producer.tail(), CAP as u64 + span_of_value(8));
    assert_eq!(drain(&mut consumer), [Some(vec![3; 48]), Some(vec![4; 8])]);
}

#[test]
fn abort_on_drop_is_skipped_and_reclaimed() {
    let (producer, mut consumer) = heap_ring(CAP);
    let spec = RecordSpec {
        value_len: Some(100),
        ..RecordSpec::default()
    };
    {
        let mut slot = producer.reserve(&spec, WhenFull::Fail).unwrap();
        slot.value_mut().fill(9);
        // Dropped without commit.
    }
    assert_eq!(producer.aborted(), 1);
    // An aborted record alone yields nothing, but is stepped over...
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(consumer.drain_pos(), span_of_value(100));
    // ...and its space comes back without any mark.
    assert_eq!(consumer.release(), span_of_value(100));
    assert_eq!(producer.released(), producer.tail());
    assert!(consumer.is_idle());

    // Aborted between two committed records.
    producer.send(&value_record(b"a"), WhenFull::Fail).unwrap();
    drop(producer.reserve(&spec, WhenFull::Fail).unwrap());
    producer.send(&value_record(b"b"), WhenFull::Fail).unwrap();
    assert_eq!(
        drain(&mut consumer),
        [Some(b"a".to_vec()), Some(b"b".to_vec())]
    );
    assert_eq!(producer.aborted(), 2);
    assert_eq!(producer.released(), producer.tail());
}

#[test]
fn send_batch_claims_once() {
    let (producer, mut consumer) = heap_ring(CAP);
    for _ in 0..4 {
        producer
            .send(&value_record(&[1; 952]), WhenFull::Fail)
            .unwrap();
    }
    drain(&mut consumer);
    // 96 bytes remain before the end. The first record (48 bytes) would fit
    // there on its own; as one claim the whole batch moves past the wrap.
    let big = [5u8; 150];
    let batch = [
        Record::default(),
        value_record(&big),
        Record {
            key: Some(b"k"),
            ..Record::default()
        },
    ];
    let records_before = producer.next_seq();
    let first = producer.send_batch(&batch, WhenFull::Fail).unwrap();
    assert_eq!(first, records_before, "the batch's numbers follow on");
    let spans = [48u64, span_of_value(150), align_record(49) as u64];
    assert_eq!(producer.tail(), CAP as u64 + spans.iter().sum::<u64>());
    let mut expected_pos = CAP as u64;
    for (i, span) in spans.iter().enumerate() {
        let record = consumer.peek().unwrap().unwrap();
        assert_eq!(record.pos(), expected_pos);
        assert_eq!(record.seq(), first + i as u64);
        assert_eq!(record.value(), batch[i].value);
        assert_eq!(record.key(), batch[i].key);
        consumer.advance();
        expected_pos += span;
    }
}

#[test]
fn send_batch_is_all_or_nothing_when_full() {
    let (producer, mut consumer) = heap_ring(CAP);
    // Start 1024 bytes in, then 40 records of 96 bytes (32 up to the end
    // exactly, 8 from the start): 3840 used, 256 free between tail and
    // released, and no padding involved.
    for _ in 0..2 {
        producer
            .send(&value_record(&[1; 464]), WhenFull::Fail)
            .unwrap();
    }
    drain(&mut consumer);
    for _ in 0..40 {
        producer
            .send(&value_record(&[1; 48]), WhenFull::Fail)
            .unwrap();
    }
    let tail = producer.tail();
    let value = [2u8; 52]; // span 104: two fit in 256, three do not
    let batch = [value_record(&value); 3];
    let err = producer.send_batch(&batch, WhenFull::Fail).unwrap_err();
    assert!(
        matches!(
            err,
            ReserveError::Full {
                needed: 312,
                free: 256,
                capacity: CAP
            }
        ),
        "{err:?}"
    );
    assert_eq!(producer.tail(), tail, "nothing claimed");
    assert_eq!(drain(&mut consumer).len(), 40, "nothing written");
    // Two of them do fit.
    producer.send_batch(&batch[..2], WhenFull::Fail).unwrap();
    assert_eq!(drain(&mut consumer).len(), 2);
}

#[test]
fn send_batch_records_stay_contiguous_under_contention() {
    let rounds = if cfg!(miri) { 5 } else { 300 };
    let (producer, mut consumer) = heap_ring(1 << 16);
    thread::scope(|s| {
        for t in 0..2u8 {
            let producer = producer.clone();
            s.spawn(move || {
                for round in 0..rounds as u16 {
                    let values: Vec<[u8; 4]> = (0..3u8)
                        .map(|i| {
                            let r = round.to_le_bytes();
                            [t, r[0], r[1], i]
                        })
                        .collect();
                    let batch: Vec<Record<'_>> = values.iter().map(|v| value_record(v)).collect();
                    producer
                        .send_batch(&batch, WhenFull::Block(Duration::from_secs(30)))
                        .unwrap();
                }
            });
        }
        let mut got = 0;
        let mut last = None;
        while got < 2 * 3 * rounds {
            let Some(record) = consumer.peek().unwrap() else {
                thread::yield_now();
                continue;
            };
            let v = record.value().unwrap().to_vec();
            let seq = record.pos();
            if v[3] != 0 {
                // Batch members after the first directly follow their predecessor.
                let (prev_seq, prev_v): (u64, Vec<u8>) = last.clone().unwrap();
                assert_eq!(seq, prev_seq + span_of_value(4));
                assert_eq!(&prev_v[..3], &v[..3]);
                assert_eq!(prev_v[3] + 1, v[3]);
            }
            last = Some((seq, v));
            consumer.advance();
            consumer.mark(seq, &Outcome::delivered(0, 0, 0));
            consumer.release();
            got += 1;
        }
    });
}

#[test]
fn full_fails_fast_and_recovers_after_release() {
    let (producer, mut consumer) = heap_ring(CAP);
    let sent = fill(&producer, 200);
    assert_eq!(sent as u64, CAP as u64 / span_of_value(200));
    let err = producer
        .send(&value_record(&[0; 200]), WhenFull::Fail)
        .unwrap_err();
    let used = (producer.tail() - producer.released()) as usize;
    // 16 records of 248 leave 128 bytes at the end: the claim needs them as
    // padding plus a whole record at the start.
    assert_eq!(
        err,
        ReserveError::Full {
            needed: (CAP - used) + span_of_value(200) as usize,
            free: CAP - used,
            capacity: CAP
        }
    );
    assert!(producer.full_events() >= 2);
    // Releasing one record makes room for one more.
    let first = consumer.peek().unwrap().unwrap().pos();
    consumer.advance();
    consumer.mark(first, &Outcome::delivered(0, 0, 0));
    assert_eq!(consumer.release(), span_of_value(200));
    producer
        .send(&value_record(&[0; 200]), WhenFull::Fail)
        .unwrap();
}

#[test]
fn block_waits_for_a_release_from_another_thread() {
    let (producer, mut consumer) = heap_ring(CAP);
    fill(&producer, 200);
    let delay = Duration::from_millis(100);
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(delay);
            drain(&mut consumer);
        });
        let start = Instant::now();
        producer
            .send(
                &value_record(&[0; 200]),
                WhenFull::Block(Duration::from_secs(30)),
            )
            .expect("space freed by the consumer thread");
        let waited = start.elapsed();
        assert!(waited >= delay, "returned before the release: {waited:?}");
        assert!(waited < Duration::from_secs(10), "missed the wake-up");
    });
}

#[test]
fn block_times_out_without_a_release() {
    let (producer, _consumer) = heap_ring(CAP);
    fill(&producer, 200);
    let timeout = Duration::from_millis(150);
    let start = Instant::now();
    let err = producer
        .send(&value_record(&[0; 200]), WhenFull::Block(timeout))
        .unwrap_err();
    assert!(matches!(err, ReserveError::Full { .. }), "{err:?}");
    let waited = start.elapsed();
    assert!(waited >= timeout, "gave up early: {waited:?}");
    assert!(waited < timeout * 20, "overslept: {waited:?}");
}

#[test]
fn too_large_records_are_refused() {
    let (producer, _consumer) = heap_ring(CAP);
    let max = producer.max_record_len();
    assert_eq!(max, CAP / 2);
    let fits = vec![0u8; max - RECORD_HEADER_SIZE];
    producer.send(&value_record(&fits), WhenFull::Fail).unwrap();
    let over = vec![0u8; max - RECORD_HEADER_SIZE + 1];
    assert_eq!(
        producer.send(&value_record(&over), WhenFull::Fail),
        Err(ReserveError::TooLarge { len: max + 1, max })
    );
    // A key counts as much as a value.
    let key = vec![0u8; max];
    let err = producer
        .send(
            &Record {
                key: Some(&key),
                ..Record::default()
            },
            WhenFull::Fail,
        )
        .unwrap_err();
    assert!(matches!(err, ReserveError::TooLarge { .. }));
    // Lengths that overflow when added up.
    let spec = RecordSpec {
        key_len: Some(usize::MAX - 10),
        value_len: Some(100),
        ..RecordSpec::default()
    };
    assert!(matches!(
        producer.reserve(&spec, WhenFull::Fail),
        Err(ReserveError::TooLarge { .. })
    ));
    // A header name beyond u16.
    let name = "n".repeat(70_000);
    let headers = [Header {
        name: &name,
        value: None,
    }];
    assert_eq!(
        producer
            .send(
                &Record {
                    headers: &headers,
                    ..Record::default()
                },
                WhenFull::Fail
            )
            .unwrap_err(),
        ReserveError::HeaderTooLarge
    );
    // A batch of records that each fit but together exceed half the ring.
    let part = vec![0u8; 1000];
    let batch = [value_record(&part); 3];
    assert!(matches!(
        producer.send_batch(&batch, WhenFull::Fail),
        Err(ReserveError::TooLarge { .. })
    ));
    // Nothing was claimed by any refusal.
    assert_eq!(producer.tail(), max as u64);
}

#[test]
#[cfg_attr(miri, ignore = "maps a memfd")]
fn mark_in_any_order_releases_only_the_finished_prefix_and_zeroes_it() {
    let segment = Segment::create(&SegmentOptions::with_capacity(CAP)).unwrap();
    let producer = segment.producer();
    let mut consumer = segment.consumer().unwrap();
    // Positions (how the consumer names records), not sequence numbers.
    let seqs: Vec<u64> = (0..4u8)
        .map(|i| {
            let pos = producer.tail();
            producer
                .send(&value_record(&[i + 1; 100]), WhenFull::Fail)
                .unwrap();
            pos
        })
        .collect();
    for _ in 0..4 {
        consumer.peek().unwrap().unwrap();
        consumer.advance();
    }
    let span = span_of_value(100);
    assert_eq!(consumer.pending(), 4);

    assert!(consumer.mark(seqs[2], &Outcome::delivered(0, 0, 0)));
    assert!(consumer.mark(seqs[3], &Outcome::failed(1, 0, -1, 0)));
    assert_eq!(consumer.release(), 0, "record 0 is still pending");
    assert_eq!(producer.released(), 0);

    assert!(consumer.mark(seqs[0], &Outcome::delivered(0, 0, 0)));
    assert_eq!(consumer.release(), span, "record 1 is still pending");
    assert_eq!(producer.released(), span);
    assert!(segment_bytes(&segment, 0, span as usize)
        .iter()
        .all(|&b| b == 0));
    let rest = segment_bytes(&segment, span as usize, 3 * span as usize);
    assert!(rest.iter().any(|&b| b != 0), "unreleased records untouched");

    // Marking twice, marking Pending or an unknown sequence is refused.
    assert!(!consumer.mark(seqs[2], &Outcome::delivered(0, 0, 0)));
    let pending = Outcome {
        delivery: Delivery::Pending,
        ..Outcome::delivered(0, 0, 0)
    };
    assert!(!consumer.mark(seqs[1], &pending));
    assert!(!consumer.mark(seqs[1] + 8, &Outcome::delivered(0, 0, 0)));
    assert!(
        !consumer.mark(seqs[0], &Outcome::delivered(0, 0, 0)),
        "released"
    );

    assert!(consumer.mark(seqs[1], &Outcome::failed(1, 0, -1, 0)));
    assert_eq!(consumer.release(), 3 * span);
    assert_eq!(producer.released(), producer.tail());
    assert!(segment_bytes(&segment, 0, CAP).iter().all(|&b| b == 0));
    assert!(consumer.is_idle());
}

#[test]
fn failure_queue_is_fifo_and_bounded() {
    let (producer, consumer) = heap_ring(CAP);
    assert_eq!(producer.pop_failure(), None);
    let failure = |i: u64| Failure {
        seq: i * 8,
        code: -(i as i32),
        persistence: (i % 3) as u32,
    };
    let entries = shmkafka_ringbuf::layout::FAILQ_ENTRIES as u64;
    for i in 0..entries {
        assert!(consumer.push_failure(failure(i)));
    }
    assert!(!consumer.push_failure(failure(999)), "queue is full");
    assert!(!consumer.push_failure(failure(998)));
    for i in 0..entries {
        assert_eq!(producer.pop_failure(), Some(failure(i)));
    }
    assert_eq!(producer.pop_failure(), None);
    // The queue indices wrap around.
    for round in 0..3 {
        for i in 0..entries / 2 {
            assert!(consumer.push_failure(failure(round * 100 + i)));
        }
        for i in 0..entries / 2 {
            assert_eq!(producer.pop_failure(), Some(failure(round * 100 + i)));
        }
    }
}

#[test]
fn failure_queue_with_concurrent_poppers_hands_out_each_entry_once() {
    let (producer, consumer) = heap_ring(CAP);
    let total = if cfg!(miri) { 50 } else { 5_000 };
    let popped: Vec<Vec<u64>> = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let producer = producer.clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        match producer.pop_failure() {
                            Some(f) if f.seq == u64::MAX => break,
                            Some(f) => got.push(f.seq),
                            None => thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        for i in 0..total {
            let failure = Failure {
                seq: i,
                code: 1,
                persistence: 0,
            };
            while !consumer.push_failure(failure) {
                thread::yield_now();
            }
        }
        for _ in 0..2 {
            let stop = Failure {
                seq: u64::MAX,
                code: 0,
                persistence: 0,
            };
            while !consumer.push_failure(stop) {
                thread::yield_now();
            }
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for list in &popped {
        assert!(list.windows(2).all(|w| w[0] < w[1]), "FIFO per popper");
    }
    let mut all: Vec<u64> = popped.concat();
    all.sort_unstable();
    assert_eq!(all, (0..total).collect::<Vec<_>>());
}

#[test]
fn wait_released_waits_for_the_consumer() {
    let (producer, mut consumer) = heap_ring(CAP);
    producer.send(&value_record(b"x"), WhenFull::Fail).unwrap();
    let tail = producer.tail();
    let start = Instant::now();
    assert!(!producer.wait_released(tail, Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(producer.wait_released(0, Duration::ZERO), "already there");
    let delay = Duration::from_millis(50);
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(delay);
            drain(&mut consumer);
        });
        let start = Instant::now();
        assert!(producer.wait_released(tail, Duration::from_secs(30)));
        let waited = start.elapsed();
        assert!(waited >= delay && waited < Duration::from_secs(10));
    });
}

#[test]
#[cfg_attr(miri, ignore = "maps a memfd")]
fn restarted_consumer_rereads_unreleased_but_skips_delivered() {
    let segment = Segment::create(&SegmentOptions::with_capacity(CAP)).unwrap();
    let producer = segment.producer();
    // Positions (how the consumer names records), not sequence numbers.
    let seqs: Vec<u64> = (0..6u8)
        .map(|i| {
            let pos = producer.tail();
            producer.send(&value_record(&[i]), WhenFull::Fail).unwrap();
            pos
        })
        .collect();
    {
        let mut first = segment.consumer().unwrap();
        // Record 0 delivered and released, 2 and 4 delivered, 3 failed,
        // 1 and 5 in flight when the daemon "crashes".
        for _ in 0..6 {
            first.peek().unwrap().unwrap();
            first.advance();
        }
        assert!(first.mark(seqs[0], &Outcome::delivered(0, 0, 0)));
        assert_eq!(first.release(), span_of_value(1));
        assert!(first.mark(seqs[2], &Outcome::delivered(0, 0, 0)));
        assert!(first.mark(seqs[3], &Outcome::failed(1, 0, -1, 0)));
        assert!(first.mark(seqs[4], &Outcome::delivered(0, 0, 0)));
        assert_eq!(first.release(), 0);
    }
    let mut second = segment.consumer().unwrap();
    assert_eq!(second.drain_pos(), seqs[1]);
    let mut again = Vec::new();
    while let Some(record) = second.peek().unwrap() {
        again.push((record.pos(), record.value().unwrap()[0]));
        second.advance();
    }
    assert_eq!(again, [(seqs[1], 1), (seqs[5], 5)]);
    assert_eq!(second.pending(), 2);
    second.mark(seqs[5], &Outcome::delivered(0, 0, 0));
    assert_eq!(second.release(), 0);
    second.mark(seqs[1], &Outcome::delivered(0, 0, 0));
    assert_eq!(second.release(), 5 * span_of_value(1));
    assert_eq!(producer.released(), producer.tail());
}

#[test]
fn unblock_pads_over_a_dead_reservation() {
    let (producer, mut consumer) = heap_ring(CAP);
    assert!(!consumer.unblock().unwrap(), "nothing to unblock");
    let slot = producer
        .reserve(
            &RecordSpec {
                value_len: Some(30),
                ..RecordSpec::default()
            },
            WhenFull::Fail,
        )
        .unwrap();
    // The "dead" producer never commits nor aborts.
    std::mem::forget(slot);
    producer
        .send(&value_record(b"after"), WhenFull::Fail)
        .unwrap();
    assert!(consumer.peek().unwrap().is_none(), "blocked by the hole");
    assert!(consumer.unblock().unwrap());
    assert_eq!(drain(&mut consumer), [Some(b"after".to_vec())]);
    assert_eq!(producer.released(), producer.tail());
    assert!(!consumer.unblock().unwrap());
}

#[test]
fn park_returns_when_a_record_is_committed() {
    let (producer, consumer) = heap_ring(CAP);
    assert!(consumer.prepare_park());
    consumer.finish_park();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(50));
            producer
                .send(&value_record(b"wake"), WhenFull::Fail)
                .unwrap();
        });
        let start = Instant::now();
        while consumer.is_idle() && start.elapsed() < Duration::from_secs(20) {
            consumer.park(Duration::from_secs(20));
        }
        assert!(!consumer.is_idle());
        assert!(start.elapsed() < Duration::from_secs(10), "missed wake-up");
    });
    assert!(!consumer.prepare_park(), "a record is ready");
}

#[test]
#[cfg_attr(miri, ignore = "futex_waitv is not emulated")]
fn park_any_wakes_on_any_ring() {
    let (_p1, c1) = heap_ring(CAP);
    let (p2, c2) = heap_ring(CAP);
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(50));
            p2.send(&value_record(b"wake"), WhenFull::Fail).unwrap();
        });
        let start = Instant::now();
        while c2.is_idle() && start.elapsed() < Duration::from_secs(20) {
            park_any(&[&c1, &c2], Duration::from_secs(20));
        }
        assert!(!c2.is_idle());
        assert!(start.elapsed() < Duration::from_secs(10), "missed wake-up");
    });
}

#[test]
fn exactly_full_ring_all_in_flight_reads_as_empty() {
    let (producer, mut consumer) = heap_ring(CAP);
    // Spans of 128 fill the ring exactly: the tail then sits on the oldest
    // in-flight record's state word, one lap back.
    assert_eq!(span_of_value(80), 128);
    assert_eq!(fill(&producer, 80), CAP / 128);
    assert_eq!(producer.tail() - producer.released(), CAP as u64);
    let mut seqs = Vec::new();
    while let Some(record) = consumer.peek().expect("a full ring is not corrupt") {
        seqs.push(record.pos());
        consumer.advance();
    }
    assert_eq!(seqs.len(), CAP / 128);
    assert!(consumer.peek().unwrap().is_none());
    assert!(!consumer.unblock().unwrap());
    assert!(consumer.prepare_park(), "nothing new to read");
    consumer.finish_park();
    for seq in seqs {
        consumer.mark(seq, &Outcome::delivered(0, 0, 0));
    }
    assert_eq!(consumer.release(), CAP as u64);
    producer
        .send(&value_record(b"next lap"), WhenFull::Fail)
        .unwrap();
    assert_eq!(drain(&mut consumer), [Some(b"next lap".to_vec())]);
}
