//! Child-process plumbing shared by the brokers: finding binaries, reading a
//! ready line with a deadline, waiting for a port, killing on drop.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::TestkitError;

/// Finds a binary of this workspace: `$env_var` if set, else next to the
/// running executable. Test and bench executables live in
/// `target/<profile>/deps/`, the workspace's binaries one level up in
/// `target/<profile>/`.
pub fn locate_binary(name: &str, env_var: &str) -> Result<PathBuf, TestkitError> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(path);
    }
    let exe =
        std::env::current_exe().map_err(TestkitError::io("locating the current executable"))?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(TestkitError::BinaryNotFound {
        name: name.to_owned(),
        searched,
        hint: format!(
            "build it first with the same profile and CARGO_TARGET_DIR \
             (`cargo build -p shmkafkad --bin {name}`), or set {env_var}"
        ),
    })
}

/// A name no other test in this run (or a concurrent run) uses, for topics.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process may
/// take it before the caller binds it; brokers started on it are checked.
pub fn free_port() -> Result<u16, TestkitError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(TestkitError::io("binding 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(TestkitError::io("reading the bound address"))?
        .port();
    Ok(port)
}

/// Waits until `addr` accepts TCP connections, failing early if `child`
/// exits.
pub(crate) fn wait_for_port(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
    timeout: Duration,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child
            .try_wait()
            .map_err(TestkitError::io(format!("polling {what}")))?
        {
            return Err(TestkitError::Child {
                what: what.to_owned(),
                detail: format!("exited with {status} before listening on {addr}"),
            });
        }
        if Instant::now() >= deadline {
            return Err(TestkitError::NotReady {
                what: format!("{what} on {addr}"),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the first line of `stdout` within `timeout` (a reader thread, since
/// pipes have no read deadline). Returns the line and the stream, which the
/// caller keeps open so the child never sees a closed stdout.
pub(crate) fn read_first_line(
    stdout: ChildStdout,
    what: &str,
    timeout: Duration,
) -> Result<(String, BufReader<ChildStdout>), TestkitError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| (line, reader));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok((line, reader))) if !line.is_empty() => Ok((line.trim_end().to_owned(), reader)),
        Ok(Ok(_)) => Err(TestkitError::Child {
            what: what.to_owned(),
            detail: "closed stdout without printing its ready line".into(),
        }),
        Ok(Err(e)) => Err(TestkitError::io(format!("reading {what}'s stdout"))(e)),
        Err(_) => Err(TestkitError::NotReady {
            what: format!("{what}'s ready line"),
            after: timeout,
        }),
    }
}

/// A child process killed (SIGKILL) and reaped on drop, so a failing test
/// leaves nothing running.
#[derive(Debug)]
pub struct ChildGuard {
    /// The process.
    pub child: Child,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already exited is fine; nothing else can fail in a useful way here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `command`'s child die (SIGKILL) when the thread that spawned it
/// exits, so a test killed without running destructors leaves nothing
/// running. Spawn from the test's own thread: a helper thread that ends
/// early would take the child with it.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the prctl system call, which is async-signal-safe; it touches no memory
    // shared with the parent.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// Whether `path` exists as a file.
pub(crate) fn is_file(path: &Path) -> bool {
    path.is_file()
}

/// Tells the person running the tests that `test` did not really run.
/// Written to the process's stderr directly: libtest captures `eprintln!` of
/// passing tests, and a silent skip reads as a pass.
pub fn report_skip(test: &str, reason: impl Display) {
    let line = format!("\n!!!!!!!! SKIPPED {test}: {reason}\n\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(unique_name("orders").starts_with("orders-"));
    }

    #[test]
    fn free_port_is_bindable_on_loopback() {
        let port = free_port().expect("port");
        TcpListener::bind(("127.0.0.1", port)).expect("port taken");
    }

    #[test]
    fn missing_binary_error_says_how_to_build_it() {
        let err = locate_binary("no-such-binary-xyz", "SHMKAFKA_TESTKIT_UNSET")
            .expect_err("found a ghost");
        let text = err.to_string();
        assert!(
            text.contains("cargo build -p shmkafkad --bin no-such-binary-xyz"),
            "{text}"
        );
        assert!(text.contains("SHMKAFKA_TESTKIT_UNSET"), "{text}");
    }
}
