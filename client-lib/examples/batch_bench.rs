//! Enqueue cost of the three ways to write records, on one thread: `send`
//! in a loop, `send_batch` (one claim, copied in) and `reserve_batch` (one
//! claim, written in place), at several value sizes. Each mode gets a fresh
//! ring big enough for all its records, so no send waits for the daemon:
//! the figure is the client's own cost per record. Records are then flushed
//! (not timed) and must all be acknowledged.
//!
//! `batch_bench SOCKET TOPIC [BATCH]`, with a daemon at SOCKET.

use std::time::{Duration, Instant};

use shmkafka_client::{Message, Producer, ProducerOptions, RecordLayout, WhenFull};

const RING: usize = 256 << 20;
const SIZES: [usize; 3] = [16, 64, 1024];

fn connect(socket: &str) -> Result<Producer, Box<dyn std::error::Error>> {
    Ok(Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.into()),
        ring_capacity: RING,
        when_full: WhenFull::Fail,
        client_name: "batch-bench".into(),
        ..ProducerOptions::default()
    })?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (socket, topic) = match args.as_slice() {
        [socket, topic] | [socket, topic, _] => (socket.as_str(), topic.as_str()),
        _ => return Err("usage: batch_bench SOCKET TOPIC [BATCH]".into()),
    };
    let batch: usize = args.get(2).map_or(Ok(64), |b| b.parse())?;
    println!("| value B | mode | records | enqueue ns/record | records/s per thread | vs send |");
    println!("|---:|---|---:|---:|---:|---:|");
    for size in SIZES {
        // Key 8 B + value + 48 B of framing, rounded to 8; a quarter of the
        // ring, so every batch fits whatever the wrap.
        let span = (48 + 8 + size).next_multiple_of(8);
        let records = (RING / 4 / span).min(1_000_000) / batch * batch;
        let value = vec![b'v'; size];
        let mut send_ns = 0.0;
        for mode in ["send", "send_batch", "reserve_batch"] {
            let producer = connect(socket)?;
            let topic = producer.topic(topic)?;
            let keys: Vec<[u8; 8]> = (0..records as u64).map(u64::to_le_bytes).collect();
            let start = Instant::now();
            match mode {
                "send" => {
                    for key in &keys {
                        producer.send(&topic, &Message::new().key(key).value(&value))?;
                    }
                }
                "send_batch" => {
                    for chunk in keys.chunks(batch) {
                        let messages: Vec<Message<'_>> = chunk
                            .iter()
                            .map(|key| Message::new().key(key).value(&value))
                            .collect();
                        producer.send_batch(&topic, &messages)?;
                    }
                }
                _ => {
                    let layout = RecordLayout {
                        key_len: Some(8),
                        value_len: Some(size),
                        ..RecordLayout::default()
                    };
                    let layouts = vec![layout; batch];
                    for chunk in keys.chunks(batch) {
                        let mut reservation = producer.reserve_batch(&topic, &layouts)?;
                        for (i, key) in chunk.iter().enumerate() {
                            reservation.key_mut(i).copy_from_slice(key);
                            reservation.value_mut(i).copy_from_slice(&value);
                        }
                        reservation.commit();
                    }
                }
            }
            let ns = start.elapsed().as_nanos() as f64 / records as f64;
            let report = producer.flush(Duration::from_secs(300))?;
            if !report.failures.is_empty() {
                return Err(format!("{} records failed", report.failures.len()).into());
            }
            if mode == "send" {
                send_ns = ns;
            }
            println!(
                "| {size} | {mode} | {records} | {ns:.1} | {:.0} | {:.2}x |",
                1e9 / ns,
                send_ns / ns
            );
            producer.close(Duration::from_secs(60))?;
        }
    }
    Ok(())
}
