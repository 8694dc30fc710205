//! Send-path cost through the Rust API: the baseline for the C ABI and
//! Python numbers (`client-lib/bench/send_bench.c`, `send_bench.py`); same
//! records and output format. `client-lib/bench/run.sh` runs all three.
//!
//! `send_bench SOCKET TOPIC N VALUE_LEN RING_CAPACITY`

use std::time::{Duration, Instant};

use shmkafka_client::{Message, Producer, ProducerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, topic, n, value_len, ring] = args.as_slice() else {
        return Err("usage: send_bench SOCKET TOPIC N VALUE_LEN RING_CAPACITY".into());
    };
    let (n, value_len): (usize, usize) = (n.parse()?, value_len.parse()?);
    let producer = Producer::connect_with(ProducerOptions {
        socket_path: Some(socket.into()),
        ring_capacity: ring.parse()?,
        client_name: "bench-rust".into(),
        ..ProducerOptions::default()
    })?;
    let topic = producer.topic(topic)?;
    let value = vec![b'v'; value_len];
    let mut latencies = vec![0u32; n];
    let start = Instant::now();
    for (i, latency) in latencies.iter_mut().enumerate() {
        let key = (i as u64).to_le_bytes();
        let t0 = Instant::now();
        producer.send(&topic, &Message::new().key(&key).value(&value))?;
        *latency = t0.elapsed().as_nanos() as u32;
    }
    let enqueued = start.elapsed();
    let report = producer.flush(Duration::from_secs(120))?;
    let acked = start.elapsed();
    latencies.sort_unstable();
    println!(
        "api=rust records={n} enqueue_per_s={:.0} delivered_per_s={:.0} mean_ns={:.0} p50_ns={} p99_ns={} p999_ns={} failed={}",
        n as f64 / enqueued.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        enqueued.as_nanos() as f64 / n as f64,
        latencies[n / 2],
        latencies[n * 99 / 100],
        latencies[n * 999 / 1000],
        report.failures.len()
    );
    producer.close(Duration::from_secs(10))?;
    Ok(())
}
