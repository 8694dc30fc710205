//! Reads a topic back with the testkit's independent consumer (rust-rdkafka)
//! and prints one JSON object per record, bytes as hex, nulls as `null`:
//!
//! `{"partition":0,"offset":0,"key":"6b30","value":"7630","headers":[["h1","61"]],"timestamp_ms":1700000000000}`
//!
//! The Python binding's tests verify delivery with it, so that they check
//! what the broker stored without trusting our own code or depending on a
//! Python Kafka client.
//!
//! `consume-json BOOTSTRAP TOPIC EXPECTED [TIMEOUT_S] [GRACE_S]`

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};
use shmkafka_testkit::{consume_all_with, ConsumeOptions};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn opt_hex(bytes: &Option<Vec<u8>>) -> Value {
    bytes
        .as_deref()
        .map_or(Value::Null, |b| Value::String(hex(b)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, expected, rest @ ..] = args.as_slice() else {
        return Err("usage: consume-json BOOTSTRAP TOPIC EXPECTED [TIMEOUT_S] [GRACE_S]".into());
    };
    let seconds = |i: usize, default: f64| -> Result<Duration, Box<dyn std::error::Error>> {
        let s = rest.get(i).map_or(Ok(default), |s| s.parse::<f64>())?;
        Ok(Duration::from_secs_f64(s))
    };
    let options = ConsumeOptions::new(expected.parse()?, seconds(0, 30.0)?).grace(seconds(1, 0.0)?);
    let records = consume_all_with(bootstrap, topic, &options)?;
    let mut out = std::io::stdout().lock();
    for r in records {
        let headers: Vec<Value> = r
            .headers
            .iter()
            .map(|(name, value)| json!([name, opt_hex(value)]))
            .collect();
        let line = json!({
            "partition": r.partition,
            "offset": r.offset,
            "key": opt_hex(&r.key),
            "value": opt_hex(&r.value),
            "headers": headers,
            "timestamp_ms": r.timestamp_ms,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
