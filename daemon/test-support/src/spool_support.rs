//! Plumbing of the `spool_*` tests: a daemon with a spool directory, the
//! `shmkafkad spool` CLI, and what was sent versus what the spool lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shmkafka_client::{Message, Producer, ProducerOptions, Topic, WhenFull};
use shmkafka_testkit::{DaemonOptions, DaemonProcess};

pub use crate::common::{mock_broker_bin, shmkafkad_bin};

/// Starts a daemon in `dir` producing to `bootstrap`, spooling to
/// `spool_dir`, with extra `-X` properties and config text.
pub fn start_daemon(
    dir: &Path,
    bootstrap: &str,
    spool_dir: &Path,
    properties: &[(&str, &str)],
    extra_config: &str,
) -> DaemonProcess {
    let mut options = DaemonOptions::new(shmkafkad_bin(), &dir.join("shmkafkad.sock"), bootstrap)
        .spool_dir(spool_dir)
        .config(extra_config);
    for (key, value) in properties {
        options = options.property(key, value);
    }
    options.start()
}

/// A client of `daemon`.
pub fn client(daemon: &DaemonProcess, ring_capacity: usize, when_full: WhenFull) -> Producer {
    Producer::connect_with(ProducerOptions {
        socket_path: Some(daemon.socket().to_owned()),
        ring_capacity,
        max_record_len: 16 * 1024,
        when_full,
        client_name: "spool-test".into(),
        delivery_reports: false,
    })
    .expect("client connects")
}

/// Runs `shmkafkad spool ARGS`.
pub fn spool_cli(args: &[&str]) -> Output {
    Command::new(shmkafkad_bin())
        .arg("spool")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run shmkafkad spool")
}

/// A record as sent, or as the spool lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A listed record with the fields the daemon adds.
#[derive(Debug, Clone)]
pub struct Listed {
    pub rec: Rec,
    pub seq: u64,
    pub error_code: i32,
    pub error_name: String,
    pub timestamp_ms: i64,
    /// `not_persisted`, `possibly_persisted` or `persisted`.
    pub persistence: String,
}

fn unhex(v: &serde_json::Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

/// `spool list --json --dir DIR`, parsed; panics unless it exits 0.
pub fn list_json(dir: &Path) -> Vec<Listed> {
    let out = spool_cli(&["list", "--json", "--dir", dir.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "spool list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_list(&out.stdout)
}

pub fn parse_list(stdout: &[u8]) -> Vec<Listed> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            let headers = v["headers"]
                .as_array()
                .expect("decodable headers")
                .iter()
                .map(|h| {
                    (
                        String::from_utf8(unhex(&h["name_hex"]).expect("name")).expect("utf-8"),
                        unhex(&h["value_hex"]),
                    )
                })
                .collect();
            Listed {
                rec: Rec {
                    topic: v["topic"].as_str().expect("topic").to_owned(),
                    key: unhex(&v["key_hex"]),
                    value: unhex(&v["value_hex"]),
                    headers,
                },
                seq: v["seq"].as_u64().expect("seq"),
                error_code: v["error_code"].as_i64().expect("code") as i32,
                error_name: v["error_name"].as_str().expect("name").to_owned(),
                timestamp_ms: v["timestamp_ms"].as_i64().expect("ts"),
                persistence: v["persistence"].as_str().expect("persistence").to_owned(),
            }
        })
        .collect()
}

/// The records of `listed` by sequence number.
pub fn by_seq(listed: &[Listed]) -> BTreeMap<u64, Listed> {
    listed.iter().map(|l| (l.seq, l.clone())).collect()
}

/// Spool files in `dir`.
pub fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "spool"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Sends `rec` (its key, value and headers) to `topic`; returns the
/// sequence number.
pub fn send(producer: &Producer, topic: &Topic, rec: &Rec) -> u64 {
    let mut message = Message::new();
    message.key = rec.key.as_deref();
    message.value = rec.value.as_deref();
    for (name, value) in &rec.headers {
        message = message.header(name, value.as_deref());
    }
    producer.send(topic, &message).expect("send")
}

/// The `expected` records of `topic` as the broker at `bootstrap` holds
/// them, sorted by their headers (which carry each record's index).
pub fn read_back(bootstrap: &str, topic: &str, expected: usize) -> Vec<Rec> {
    let got = shmkafka_testkit::consume_all(
        bootstrap,
        topic,
        expected,
        std::time::Duration::from_secs(60),
    )
    .expect("consume");
    let mut got: Vec<Rec> = got
        .into_iter()
        .map(|c| Rec {
            topic: topic.to_owned(),
            key: c.key,
            value: c.value,
            headers: c.headers,
        })
        .collect();
    got.sort_by(|a, b| a.headers.cmp(&b.headers));
    got
}
