//! Delivery reports through the ring: the client reads every record's
//! outcome in commit order, and the space stays held until it has.

use std::time::Duration;

use shmkafka_ringbuf::{
    heap_ring, heap_ring_with, DeliveryReport, Outcome, Record, RingConsumer, RingProducer,
    WhenFull,
};

const CAP: usize = 4096;

fn send(producer: &RingProducer, value: &[u8]) -> (u64, u64) {
    let pos = producer.tail();
    let seq = producer
        .send(
            &Record {
                value: Some(value),
                topic_id: 7,
                ..Record::default()
            },
            WhenFull::Fail,
        )
        .unwrap();
    (seq, pos)
}

fn take_all(consumer: &mut RingConsumer) {
    while consumer.peek().unwrap().is_some() {
        consumer.advance();
    }
}

fn read_all(reader: &mut shmkafka_ringbuf::ReportReader) -> Vec<DeliveryReport> {
    let mut out = Vec::new();
    reader.read(usize::MAX, |r| out.push(r));
    out
}

#[test]
fn reports_arrive_in_commit_order_with_partition_offset_and_error() {
    let (producer, mut consumer) = heap_ring_with(CAP, true);
    let mut reader = producer.report_reader().expect("ring has reports");
    let records: Vec<(u64, u64)> = (0..3u8).map(|i| send(&producer, &[i; 10])).collect();
    assert_eq!(
        records.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "sequence numbers count records"
    );
    take_all(&mut consumer);
    // Acknowledged out of order: the second first.
    assert!(consumer.mark(records[1].1, &Outcome::delivered(4, 1001, 77)));
    consumer.release();
    assert!(
        read_all(&mut reader).is_empty(),
        "record 0 has no outcome yet"
    );
    assert!(consumer.mark(records[0].1, &Outcome::delivered(3, 500, 66)));
    assert!(consumer.mark(records[2].1, &Outcome::failed(-192, 1, 2, 88)));
    consumer.release();
    assert_eq!(
        producer.released(),
        0,
        "nothing released before it was read"
    );
    assert!(reader.wait(Duration::ZERO));
    let reports = read_all(&mut reader);
    let expected = [
        (0, true, 0, 3, 500, 66, 2),
        (1, true, 0, 4, 1001, 77, 2),
        (2, false, -192, 2, -1, 88, 1),
    ];
    assert_eq!(reports.len(), 3);
    for (report, (seq, delivered, code, partition, offset, ts, persistence)) in
        reports.iter().zip(expected)
    {
        assert_eq!(
            *report,
            DeliveryReport {
                seq,
                topic_id: 7,
                delivered,
                error_code: code,
                persistence,
                partition,
                offset,
                timestamp_ms: ts,
            }
        );
    }
    // The reports read, the space goes back on the consumer's next pass.
    consumer.release();
    assert_eq!(producer.released(), producer.tail());
    assert!(read_all(&mut reader).is_empty(), "each report once");
}

#[test]
fn unread_reports_hold_the_ring_until_read() {
    let (producer, mut consumer) = heap_ring_with(CAP, true);
    let mut sent = Vec::new();
    loop {
        let pos = producer.tail();
        match producer.send(
            &Record {
                value: Some(&[1; 200]),
                ..Record::default()
            },
            WhenFull::Fail,
        ) {
            Ok(_) => sent.push(pos),
            Err(_) => break,
        }
    }
    take_all(&mut consumer);
    for pos in &sent {
        consumer.mark(*pos, &Outcome::delivered(0, 0, 0));
    }
    consumer.release();
    let same = Record {
        value: Some(&[1; 200]),
        ..Record::default()
    };
    assert!(
        producer
            .send(&same, WhenFull::Block(Duration::from_millis(20)))
            .is_err(),
        "acknowledged but unread: still full"
    );
    let mut reader = producer.report_reader().unwrap();
    let mut read = 0;
    // Read half: half the space comes back.
    read += reader.read(sent.len() / 2, |_| {});
    consumer.release();
    assert!(producer.released() > 0);
    read += reader.read(usize::MAX, |_| {});
    assert_eq!(read, sent.len());
    consumer.release();
    assert_eq!(producer.released(), producer.tail());
    producer.send(&same, WhenFull::Fail).expect("space again");
}

#[test]
fn a_gone_reader_no_longer_holds_the_space() {
    let (producer, mut consumer) = heap_ring_with(CAP, true);
    let (_, pos) = send(&producer, b"x");
    take_all(&mut consumer);
    consumer.mark(pos, &Outcome::delivered(0, 0, 0));
    consumer.release();
    assert_eq!(producer.released(), 0);
    consumer.report_reader_gone();
    consumer.release();
    assert_eq!(producer.released(), producer.tail());
}

#[test]
fn rings_without_reports_release_at_once_and_publish_outcomes() {
    let (producer, mut consumer) = heap_ring(CAP);
    assert!(producer.report_reader().is_none());
    let (_, pos) = send(&producer, b"x");
    take_all(&mut consumer);
    assert!(!producer.wait_outcomes(producer.tail(), Duration::ZERO));
    consumer.mark(pos, &Outcome::delivered(0, 0, 0));
    consumer.release();
    assert_eq!(producer.released(), producer.tail());
    assert!(producer.wait_outcomes(producer.tail(), Duration::ZERO));
}

#[test]
fn a_restarted_consumer_keeps_what_the_reader_has_not_read() {
    let segment = shmkafka_ringbuf::Segment::create(&shmkafka_ringbuf::SegmentOptions {
        delivery_reports: true,
        ..shmkafka_ringbuf::SegmentOptions::with_capacity(CAP)
    })
    .unwrap();
    let producer = segment.producer();
    let (_, first) = send(&producer, b"a");
    let (_, second) = send(&producer, b"b");
    {
        let mut consumer = segment.consumer().unwrap();
        take_all(&mut consumer);
        consumer.mark(first, &Outcome::delivered(0, 10, 0));
        consumer.mark(second, &Outcome::delivered(0, 11, 0));
        consumer.release();
        // The daemon dies here, reports unread.
    }
    let mut consumer = segment.consumer().unwrap();
    assert!(
        consumer.peek().unwrap().is_none(),
        "delivered records are not produced again"
    );
    consumer.release();
    let mut reader = producer.report_reader().unwrap();
    let offsets: Vec<i64> = read_all(&mut reader).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [10, 11]);
    consumer.release();
    assert_eq!(producer.released(), producer.tail());
}
