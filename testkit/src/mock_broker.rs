//! The `shmkafka-mock-broker` binary in a child process.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::process::{locate_binary, read_first_line, ChildGuard};
use crate::TestkitError;

/// The binary's name.
pub const MOCK_BROKER_BIN: &str = "shmkafka-mock-broker";
/// Environment variable overriding where the binary is.
pub const MOCK_BROKER_BIN_ENV: &str = "SHMKAFKA_MOCK_BROKER_BIN";

/// How long the child may take to print its bootstrap line; it needs well
/// under a second, the rest is slack for a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running mock cluster in a child process; killed on drop.
#[derive(Debug)]
pub struct MockBrokerProcess {
    // Declared first so the kill happens before the pipes close.
    child: ChildGuard,
    bootstrap: String,
    /// Held open: the child exits when its stdin closes, which is how it
    /// follows a test process that dies without running destructors.
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl MockBrokerProcess {
    /// Starts `brokers` brokers with `topics` (name, partitions) created,
    /// finding the binary next to the running test executable (or through
    /// `SHMKAFKA_MOCK_BROKER_BIN`).
    pub fn start(brokers: u32, topics: &[(&str, u32)]) -> Result<Self, TestkitError> {
        let binary = locate_binary(MOCK_BROKER_BIN, MOCK_BROKER_BIN_ENV)?;
        Self::start_with_binary(&binary, brokers, topics)
    }

    /// As [`MockBrokerProcess::start`] with an explicit binary, e.g.
    /// `env!("CARGO_BIN_EXE_shmkafka-mock-broker")` in the daemon's tests.
    pub fn start_with_binary(
        binary: &Path,
        brokers: u32,
        topics: &[(&str, u32)],
    ) -> Result<Self, TestkitError> {
        let mut command = Command::new(binary);
        command
            .arg("--brokers")
            .arg(brokers.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, partitions) in topics {
            command.arg("--topic").arg(format!("{name}:{partitions}"));
        }
        if std::env::var_os("RUST_LOG").is_none() {
            // Only the "test broker" warning, not librdkafka's info lines.
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .spawn()
            .map_err(TestkitError::io(format!("spawning {}", binary.display())))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let mut guard = ChildGuard { child };
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(TestkitError::Child {
                what: MOCK_BROKER_BIN.into(),
                detail: "spawned without stdio pipes".into(),
            });
        };
        let (line, stdout) = read_first_line(stdout, MOCK_BROKER_BIN, READY_TIMEOUT)?;
        let Some(bootstrap) = line.strip_prefix("bootstrap=") else {
            let status = guard.child.try_wait().ok().flatten();
            return Err(TestkitError::Child {
                what: MOCK_BROKER_BIN.into(),
                detail: format!("unexpected ready line {line:?} (exit status {status:?})"),
            });
        };
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            child: guard,
            stdin,
            stdout,
        })
    }

    /// The `bootstrap.servers` list.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The child's process id (for `kill -9` style tests).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends one fault-injection command (see the binary's docs) and waits
    /// for its answer.
    pub fn command(&mut self, line: &str) -> Result<(), TestkitError> {
        let fail = |detail: String| TestkitError::Child {
            what: MOCK_BROKER_BIN.into(),
            detail,
        };
        writeln!(self.stdin, "{line}").map_err(|e| fail(format!("writing {line:?}: {e}")))?;
        self.stdin
            .flush()
            .map_err(|e| fail(format!("writing {line:?}: {e}")))?;
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .map_err(|e| fail(format!("reading the answer to {line:?}: {e}")))?;
        match answer.trim() {
            "ok" => Ok(()),
            other => Err(fail(format!("{line:?} -> {other:?}"))),
        }
    }

    /// Takes broker `id` (1-based) down: connections refused until `set_broker_up`.
    pub fn set_broker_down(&mut self, id: i32) -> Result<(), TestkitError> {
        self.command(&format!("down {id}"))
    }

    /// Brings broker `id` back.
    pub fn set_broker_up(&mut self, id: i32) -> Result<(), TestkitError> {
        self.command(&format!("up {id}"))
    }

    /// Makes broker `id` answer every request `rtt` late.
    pub fn set_rtt(&mut self, id: i32, rtt: Duration) -> Result<(), TestkitError> {
        self.command(&format!("rtt {id} {}", rtt.as_millis()))
    }

    /// Fails the next requests of `api_key` with `codes`, one per request.
    pub fn push_request_errors(&mut self, api_key: i16, codes: &[i32]) -> Result<(), TestkitError> {
        let list: Vec<String> = codes.iter().map(i32::to_string).collect();
        self.command(&format!("errors {api_key} {}", list.join(",")))
    }

    /// Moves the leadership of `topic`/`partition` to broker `id`.
    pub fn set_partition_leader(
        &mut self,
        topic: &str,
        partition: i32,
        id: i32,
    ) -> Result<(), TestkitError> {
        self.command(&format!("leader {topic} {partition} {id}"))
    }

    /// Kills the broker now (SIGKILL); all its data is gone.
    pub fn kill(self) {
        drop(self);
    }
}
