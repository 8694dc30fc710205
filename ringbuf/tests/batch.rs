//! Batch reservation: one claim for many records, filled in place,
//! committed together or one by one; what is dropped uncommitted is aborted
//! and its space comes back.

use shmkafka_ringbuf::layout::{align_record, RECORD_HEADER_SIZE};
use shmkafka_ringbuf::{heap_ring, Outcome, RecordSpec, ReserveError, RingConsumer, WhenFull};

const CAP: usize = 1 << 12;

fn spec(value_len: usize) -> RecordSpec<'static> {
    RecordSpec {
        topic_id: 1,
        value_len: Some(value_len),
        key_len: Some(2),
        ..RecordSpec::default()
    }
}

/// Reads, marks delivered and releases what is committed; returns
/// (sequence number, key, value) in ring order.
fn drain(consumer: &mut RingConsumer) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut got = Vec::new();
    let mut positions = Vec::new();
    while let Some(record) = consumer.peek().unwrap() {
        got.push((
            record.seq(),
            record.key().unwrap_or_default().to_vec(),
            record.value().unwrap_or_default().to_vec(),
        ));
        positions.push(record.pos());
        consumer.advance();
    }
    for pos in positions {
        assert!(consumer.mark(pos, &Outcome::delivered(0, 0, 0)));
    }
    consumer.release();
    got
}

#[test]
fn one_claim_filled_in_place_and_committed_together() {
    let (producer, mut consumer) = heap_ring(CAP);
    producer
        .send(&shmkafka_ringbuf::Record::default(), WhenFull::Fail)
        .unwrap();
    drain(&mut consumer);
    let specs: Vec<_> = (0..5).map(|i| spec(10 + i)).collect();
    let tail = producer.tail();
    let mut batch = producer.reserve_batch(&specs, WhenFull::Fail).unwrap();
    let claimed: u64 = specs
        .iter()
        .map(|s| align_record(RECORD_HEADER_SIZE + 2 + s.value_len.unwrap()) as u64)
        .sum();
    assert_eq!(producer.tail(), tail + claimed, "one claim for all");
    assert_eq!(batch.len(), 5);
    for i in 0..5 {
        batch.key_mut(i).copy_from_slice(&[b'k', i as u8]);
        batch.value_mut(i).fill(i as u8);
    }
    assert!(
        drain(&mut consumer).is_empty(),
        "nothing visible before commit"
    );
    let first = batch.commit();
    assert_eq!(first, 1, "numbered after the record before");
    let got = drain(&mut consumer);
    assert_eq!(got.len(), 5);
    for (i, (seq, key, value)) in got.into_iter().enumerate() {
        assert_eq!(seq, first + i as u64);
        assert_eq!(key, [b'k', i as u8]);
        assert_eq!(value, vec![i as u8; 10 + i]);
    }
    assert_eq!(producer.released(), producer.tail());
}

#[test]
fn committed_one_by_one_and_the_rest_aborted_on_drop() {
    let (producer, mut consumer) = heap_ring(CAP);
    let specs = [spec(8), spec(8), spec(8)];
    {
        let mut batch = producer.reserve_batch(&specs, WhenFull::Fail).unwrap();
        batch.write_key(0, b"k0");
        batch.write_value(0, &[1; 8]);
        batch.commit_one(0);
        // The first record is visible while the others are being written.
        let got = drain(&mut consumer);
        assert_eq!(got, [(0, b"k0".to_vec(), vec![1; 8])]);
        batch.write_key(2, b"k2");
        batch.write_value(2, &[3; 8]);
        batch.commit_one(2);
        // Record 1 is dropped uncommitted.
    }
    assert_eq!(producer.aborted(), 1);
    let got = drain(&mut consumer);
    assert_eq!(got, [(2, b"k2".to_vec(), vec![3; 8])]);
    assert_eq!(
        producer.released(),
        producer.tail(),
        "the aborted space came back"
    );
}

#[test]
fn a_batch_over_half_the_ring_is_refused_and_a_full_ring_reported() {
    let (producer, mut consumer) = heap_ring(CAP);
    let big: Vec<_> = (0..40).map(|_| spec(50)).collect();
    assert!(matches!(
        producer.reserve_batch(&big, WhenFull::Fail),
        Err(ReserveError::TooLarge { .. })
    ));
    assert_eq!(producer.tail(), 0, "nothing claimed");
    let half: Vec<_> = (0..15).map(|_| spec(64)).collect();
    let first = producer.reserve_batch(&half, WhenFull::Fail).unwrap();
    first.commit();
    let second = producer.reserve_batch(&half, WhenFull::Fail).unwrap();
    assert!(matches!(
        producer.reserve_batch(&half, WhenFull::Fail),
        Err(ReserveError::Full { .. })
    ));
    drop(second);
    assert_eq!(drain(&mut consumer).len(), 15);
}
