//! The `shmkafkad` daemon in a child process, and the child-process helpers
//! the daemon's tests and benchmarks share: waiting for a condition,
//! re-executing a test binary in a child role.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::process::die_with_parent;
use crate::TestkitError;

/// The daemon binary's name.
pub const SHMKAFKAD_BIN: &str = "shmkafkad";
/// Environment variable overriding where the daemon binary is.
pub const SHMKAFKAD_BIN_ENV: &str = "SHMKAFKAD_BIN";

/// How long a daemon may take to bind its socket: well under a second, the
/// rest is slack for a loaded 2-core CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the daemon's log printed when a test fails while it runs.
const LOG_TAIL_LINES: usize = 60;

/// Where the daemon's log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogTo {
    /// A file next to the socket (tests read it back).
    File,
    /// This process's stderr (benchmarks).
    Inherit,
}

/// What dropping a [`DaemonProcess`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDrop {
    /// SIGKILL (tests: nothing may outlive them).
    Kill,
    /// SIGTERM, then SIGKILL after this long (benchmarks: a graceful stop).
    Terminate(Duration),
}

/// How to start a daemon; [`DaemonOptions::start`] starts it.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    binary: PathBuf,
    socket: PathBuf,
    bootstrap: String,
    spool_dir: PathBuf,
    config: Option<String>,
    properties: Vec<(String, String)>,
    log_level: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log_to: LogTo,
    on_drop: OnDrop,
}

impl DaemonOptions {
    /// The daemon `binary` listening on `socket` and producing to
    /// `bootstrap`; its log, config file and spool go into the socket's
    /// directory.
    pub fn new(binary: impl Into<PathBuf>, socket: &Path, bootstrap: &str) -> Self {
        let dir = socket.parent().unwrap_or(Path::new("."));
        Self {
            binary: binary.into(),
            socket: socket.to_owned(),
            bootstrap: bootstrap.to_owned(),
            spool_dir: dir.join("spool"),
            config: None,
            properties: Vec::new(),
            log_level: "info".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            log_to: LogTo::File,
            on_drop: OnDrop::Kill,
        }
    }

    /// Configuration file contents (written next to the log).
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_owned());
        self
    }

    /// A librdkafka property (`-X key=value`).
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `--log-level` (default `info`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// The dead-letter spool directory (default: `spool` next to the
    /// socket).
    pub fn spool_dir(mut self, dir: &Path) -> Self {
        self.spool_dir = dir.to_owned();
        self
    }

    /// Extra command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable (e.g. a test hook).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Log to this process's stderr instead of a file.
    pub fn inherit_log(mut self) -> Self {
        self.log_to = LogTo::Inherit;
        self
    }

    /// On drop, stop gracefully (SIGTERM), killing after `timeout`.
    pub fn terminate_on_drop(mut self, timeout: Duration) -> Self {
        self.on_drop = OnDrop::Terminate(timeout);
        self
    }

    /// The control socket the daemon will listen on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Starts the daemon and waits until its socket accepts connections.
    pub fn try_start(&self) -> Result<DaemonProcess, TestkitError> {
        let dir = self.socket.parent().unwrap_or(Path::new("."));
        let stamp = unique_suffix();
        let log = dir.join(format!("shmkafkad-{stamp}.log"));
        let mut command = Command::new(&self.binary);
        if let Some(text) = &self.config {
            let path = dir.join(format!("shmkafkad-{stamp}.toml"));
            std::fs::write(&path, text)
                .map_err(TestkitError::io(format!("writing {}", path.display())))?;
            command.arg("--config").arg(path);
        }
        command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--bootstrap-servers")
            .arg(&self.bootstrap)
            .arg("--log-level")
            .arg(&self.log_level)
            .arg("--spool-dir")
            .arg(&self.spool_dir);
        for (key, value) in &self.properties {
            command.arg("-X").arg(format!("{key}={value}"));
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        match self.log_to {
            LogTo::File => {
                let file = File::create(&log)
                    .map_err(TestkitError::io(format!("creating {}", log.display())))?;
                let copy = file
                    .try_clone()
                    .map_err(TestkitError::io("duplicating the log file"))?;
                command.stdout(copy).stderr(file);
            }
            LogTo::Inherit => {
                command.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        die_with_parent(&mut command);
        let child = command.spawn().map_err(TestkitError::io(format!(
            "spawning {}",
            self.binary.display()
        )))?;
        let mut daemon = DaemonProcess {
            child: Some(child),
            socket: self.socket.clone(),
            log: (self.log_to == LogTo::File).then_some(log),
            on_drop: self.on_drop,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// [`DaemonOptions::try_start`] for tests: panics with the daemon's log
    /// if it does not come up.
    pub fn start(&self) -> DaemonProcess {
        self.try_start()
            .unwrap_or_else(|e| panic!("starting shmkafkad: {e}"))
    }
}

/// A running `shmkafkad`. Dropping it kills the daemon (or stops it
/// gracefully, see [`DaemonOptions::terminate_on_drop`]) and, if the thread
/// is panicking, prints the tail of its log.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Option<Child>,
    socket: PathBuf,
    log: Option<PathBuf>,
    on_drop: OnDrop,
}

impl DaemonProcess {
    fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // A connection that sends nothing is dropped by the daemon as
            // soon as we close it.
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child_mut().try_wait().ok().flatten() {
                return Err(TestkitError::Child {
                    what: SHMKAFKAD_BIN.into(),
                    detail: format!(
                        "exited with {status} before listening on {}; log:\n{}",
                        self.socket.display(),
                        self.log_text()
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::NotReady {
                    what: format!(
                        "{SHMKAFKAD_BIN} on {} (log:\n{})",
                        self.socket.display(),
                        self.log_text()
                    ),
                    after: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon running")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Everything the daemon logged so far (empty when it logs to stderr).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// Graceful stop (SIGTERM); waits up to `timeout` for the exit.
    pub fn try_terminate(&mut self, timeout: Duration) -> Result<ExitStatus, TestkitError> {
        let mut child = self.child.take().expect("daemon running");
        terminate(&child);
        match wait_timeout(&mut child, timeout) {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(TestkitError::NotReady {
                    what: format!(
                        "{SHMKAFKAD_BIN} to exit after SIGTERM (log:\n{})",
                        tail(&self.log_text(), LOG_TAIL_LINES)
                    ),
                    after: timeout,
                })
            }
        }
    }

    /// [`DaemonProcess::try_terminate`] for tests: panics with the log if
    /// the daemon does not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.try_terminate(timeout)
            .unwrap_or_else(|e| panic!("stopping shmkafkad: {e}"))
    }

    /// Crash (SIGKILL); waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let (OnDrop::Terminate(timeout), Some(mut child)) = (self.on_drop, self.child.take()) {
            terminate(&child);
            if wait_timeout(&mut child, timeout).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.kill();
        if std::thread::panicking() {
            if let Some(log) = &self.log {
                eprintln!(
                    "---- {} (test failing) ----\n{}",
                    log.display(),
                    tail(&self.log_text(), LOG_TAIL_LINES)
                );
            }
        }
    }
}

/// SIGTERM to `child` (already gone is fine: the caller waits anyway).
fn terminate(child: &Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `condition` holds, polling; panics naming `what` on timeout.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Re-executing a test binary as a child process that plays one role: the
/// child runs only the test named `entry`, which calls [`ChildRole::current`]
/// and dispatches on the role.
#[derive(Debug, Clone, Copy)]
pub struct ChildRole {
    /// The environment variable carrying the role.
    pub env: &'static str,
    /// The test function every binary of the family dispatches roles from.
    pub entry: &'static str,
}

impl ChildRole {
    /// The role this process was started in, if it is a child.
    pub fn current(&self) -> Option<String> {
        std::env::var(self.env).ok()
    }

    /// This test binary, to be run as a child in `role`: only the entry
    /// test, its stdout piped, dying with the parent.
    pub fn command(&self, role: &str) -> Command {
        let exe = std::env::current_exe().expect("current exe");
        let mut command = Command::new(exe);
        command
            .args([self.entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(self.env, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut command);
        command
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
