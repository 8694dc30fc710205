//! Sends records to a topic through shmkafkad and waits for acknowledgement.
//!
//! `cargo run -p shmkafka-client --example produce -- [TOPIC] [COUNT] [SOCKET]`

use std::time::{Duration, Instant};

use shmkafka_client::{Message, Producer, ProducerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic_name = args.next().unwrap_or_else(|| "shmkafka-example".to_owned());
    let count: u64 = args.next().map_or(Ok(100_000), |c| c.parse())?;
    let options = ProducerOptions {
        socket_path: args.next().map(Into::into),
        ..ProducerOptions::default()
    };
    let producer = Producer::connect_with(options)?;
    let topic = producer.topic(&topic_name)?;
    let start = Instant::now();
    for i in 0..count {
        let key = i.to_le_bytes();
        let value = format!("record {i}");
        producer.send(&topic, &Message::new().key(&key).value(value.as_bytes()))?;
    }
    let enqueued = start.elapsed();
    let report = producer.flush(Duration::from_secs(60))?;
    let acked = start.elapsed();
    println!(
        "{count} records: written to the ring in {enqueued:?}, acknowledged by the broker after {acked:?} ({:.0} records/s delivered), {} failed",
        count as f64 / acked.as_secs_f64(),
        report.failures.len()
    );
    Ok(())
}
