//! Plumbing of the `spool_*` tests: a daemon child process with a spool
//! directory, the `shmkafkad spool` CLI, and what was sent versus what the
//! spool lists.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmkafka_client::{Producer, ProducerOptions, WhenFull};

pub const SHMKAFKAD: &str = env!("CARGO_BIN_EXE_shmkafkad");
pub const MOCK_BROKER: &str = env!("CARGO_BIN_EXE_shmkafka-mock-broker");

/// A `shmkafkad` child; SIGKILLed on drop, its log printed if the test fails.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts a daemon in `dir` producing to `bootstrap`, spooling to
    /// `spool_dir`, with extra `-X` properties and config text.
    pub fn start(
        dir: &Path,
        bootstrap: &str,
        spool_dir: &Path,
        properties: &[(&str, &str)],
        extra_config: &str,
    ) -> Daemon {
        let socket = dir.join("shmkafkad.sock");
        let log = dir.join("shmkafkad.log");
        let config = dir.join("shmkafkad.toml");
        std::fs::write(
            &config,
            format!(
                "{extra_config}\n[spool]\ndir = \"{}\"\n",
                spool_dir.display()
            ),
        )
        .expect("config");
        let mut command = Command::new(SHMKAFKAD);
        command
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--bootstrap-servers")
            .arg(bootstrap)
            .arg("--log-level")
            .arg("info");
        for (key, value) in properties {
            command.arg("-X").arg(format!("{key}={value}"));
        }
        let log_file = File::create(&log).expect("log");
        command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup"))
            .stderr(log_file);
        let child = command.spawn().expect("spawn shmkafkad");
        let mut daemon = Daemon {
            child: Some(child),
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&daemon.socket).is_err() {
            if let Some(status) = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "shmkafkad exited with {status}; log:\n{}",
                    daemon.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "shmkafkad not ready; log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait for the exit (graceful stop).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shmkafkad ignored SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client of this daemon.
    pub fn client(&self, ring_capacity: usize, when_full: WhenFull) -> Producer {
        Producer::connect_with(ProducerOptions {
            socket_path: Some(self.socket.clone()),
            ring_capacity,
            max_record_len: 16 * 1024,
            when_full,
            client_name: "spool-test".into(),
        })
        .expect("client connects")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- shmkafkad log ----\n{}", self.log_text());
        }
    }
}

/// Runs `shmkafkad spool ARGS`.
pub fn spool_cli(args: &[&str]) -> Output {
    Command::new(SHMKAFKAD)
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

/// Waits until `f` holds or panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
