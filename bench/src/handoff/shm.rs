//! The shared-memory variants of `handoff`: the bare SPSC frame ring
//! ([`crate::spsc`], the least work any hand-off must do) and the shmkafka
//! ring.
//!
//! The producer child creates the memfd and passes it over the control
//! socket with `SCM_RIGHTS`, as a client does. The consumer spins when there
//! is nothing to read; for the shmkafka ring it marks each record delivered
//! and releases the space in batches, as the daemon does. Ring producers use
//! `WhenFull::Fail` and retry, like the baseline's spin on a full ring.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use shmkafka_ringbuf::layout::{HEADER_SIZE, RECORD_HEADER_SIZE};
use shmkafka_ringbuf::Outcome;
use shmkafka_ringbuf::{Record, ReserveError, Segment, SegmentOptions, WhenFull};

use super::common::{
    checksum, expected_sum, pin_producer, prefault, produce_each, wait_go, Backoff, Peer,
};
use super::ChildArgs;
use crate::fdpass;
use crate::spsc::SpscRing;

/// Records consumed before the consumer marks and releases them: the daemon
/// acknowledges in batches too (one delivery-report poll).
const ACK_BATCH: usize = 256;

/// Consumer of the baseline: drains frames, checksumming each payload.
pub fn consume_baseline(peer: &mut Peer, args: &ChildArgs) -> anyhow::Result<(u64, Duration)> {
    let fd = fdpass::recv_fd(&peer.socket)?;
    let ring = SpscRing::open(fd, args.capacity)?;
    let mut consumer = ring.consumer();
    let start = peer.go()?;
    let mut sum = 0u64;
    let mut got = 0;
    while got < args.records {
        let frames = consumer.drain(|payload| sum = sum.wrapping_add(checksum(payload)));
        if frames == 0 {
            peer.idle()?;
        }
        got += frames;
    }
    Ok((sum, start.elapsed()))
}

/// Producer of the baseline: one thread pushing frames.
pub fn produce_baseline(socket: &UnixStream, args: &ChildArgs) -> anyhow::Result<u64> {
    ensure!(args.threads == 1, "the baseline has one producer");
    let ring = SpscRing::create(args.capacity)?;
    prefault(ring.fd(), (4096 + args.capacity) as i64);
    fdpass::send_fd(socket, ring.fd().as_raw_fd())?;
    wait_go(socket)?;
    pin_producer(&args.cpus, 0)?;
    let mut producer = ring.producer();
    let index_sum = produce_each(args.size, 0, args.records, |payload| {
        producer.push(payload);
        Ok(())
    })?;
    producer.flush();
    Ok(expected_sum(index_sum, args.size, args.records))
}

/// Consumer of the shmkafka ring: the daemon's drain loop without Kafka.
pub fn consume_ring(peer: &mut Peer, args: &ChildArgs) -> anyhow::Result<(u64, Duration)> {
    let fd = fdpass::recv_fd(&peer.socket)?;
    let segment = Segment::open(fd).context("open the child's segment")?;
    let mut consumer = segment.consumer()?;
    let mut seqs = Vec::with_capacity(ACK_BATCH);
    let start = peer.go()?;
    let mut sum = 0u64;
    let mut got = 0;
    while got < args.records {
        let mut burst = 0;
        while let Some(record) = consumer.peek()? {
            sum = sum.wrapping_add(checksum(record.value().unwrap_or_default()));
            seqs.push(record.pos());
            consumer.advance();
            burst += 1;
            if seqs.len() == ACK_BATCH {
                break;
            }
        }
        for seq in seqs.drain(..) {
            consumer.mark(seq, &Outcome::delivered(0, 0, 0));
        }
        consumer.release();
        if burst == 0 {
            peer.idle()?;
        }
        got += burst;
    }
    Ok((sum, start.elapsed()))
}

/// Producer of the shmkafka ring: `args.threads` threads sharing one
/// segment, each sending an equal share.
pub fn produce_ring(socket: &UnixStream, args: &ChildArgs) -> anyhow::Result<u64> {
    let segment = Segment::create(&SegmentOptions::with_capacity(args.capacity))?;
    ensure!(
        args.size + RECORD_HEADER_SIZE <= segment.max_record_len(),
        "message too large for the ring"
    );
    prefault(segment.fd(), (HEADER_SIZE + args.capacity) as i64);
    fdpass::send_fd(socket, segment.fd().as_raw_fd())?;
    wait_go(socket)?;
    let per_thread = args.records / u64::from(args.threads);
    let sums = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let producer = segment.producer();
                s.spawn(move || -> anyhow::Result<u64> {
                    pin_producer(&args.cpus, t as usize)?;
                    let first = u64::from(t) * per_thread;
                    produce_each(args.size, first, per_thread, |payload| {
                        let record = Record {
                            value: Some(payload),
                            ..Record::default()
                        };
                        let mut backoff = Backoff::default();
                        loop {
                            match producer.send(&record, WhenFull::Fail) {
                                Ok(_) => return Ok(()),
                                Err(ReserveError::Full { .. }) => backoff.snooze(),
                                Err(e) => bail!("send: {e}"),
                            }
                        }
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("producer thread"))
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    let records = per_thread * u64::from(args.threads);
    let index_sum = sums.into_iter().fold(0u64, u64::wrapping_add);
    Ok(expected_sum(index_sum, args.size, records))
}
