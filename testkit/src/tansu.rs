//! The tansu broker (Kafka protocol, SQLite storage) in a child process.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, is_file, wait_for_port, ChildGuard};
use crate::TestkitError;

/// Environment variable overriding where the tansu binary is.
pub const TANSU_BIN_ENV: &str = "TANSU_BIN";

/// Startup is a SQLite open and a bind; generous for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A free port can be taken between our probe and tansu's bind: retry.
const START_ATTEMPTS: usize = 3;
/// The database file, relative to the data directory: tansu resolves
/// `sqlite://` URLs against its working directory, so it runs inside `dir`.
const DB_FILE: &str = "tansu.db";
/// tansu's own output, kept out of the test output.
const LOG_FILE: &str = "tansu.log";

/// A running tansu broker on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct Tansu {
    child: ChildGuard,
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    bootstrap: String,
}

impl Tansu {
    /// Where the tansu binary is: `$TANSU_BIN`, else `$CARGO_HOME/bin/tansu`
    /// (`~/.cargo/bin/tansu`), else the `PATH`.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        if let Some(path) = std::env::var_os(TANSU_BIN_ENV) {
            let path = PathBuf::from(path);
            return if is_file(&path) {
                Ok(path)
            } else {
                Err(TestkitError::TansuNotInstalled {
                    path,
                    env: TANSU_BIN_ENV,
                })
            };
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
        let cargo_bin = cargo_home.map(|home| home.join("bin").join("tansu"));
        if let Some(path) = cargo_bin.as_deref().filter(|p| is_file(p)) {
            return Ok(path.to_owned());
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("tansu"))
            .find(|p| is_file(p));
        on_path.ok_or_else(|| TestkitError::TansuNotInstalled {
            path: cargo_bin.unwrap_or_else(|| PathBuf::from("tansu")),
            env: TANSU_BIN_ENV,
        })
    }

    /// Starts a broker storing its data (SQLite) in `dir`, on a free port of
    /// 127.0.0.1, and waits until it accepts connections. Fails with
    /// [`TestkitError::TansuNotInstalled`] (see
    /// [`TestkitError::is_not_installed`]) when the binary is missing.
    pub fn start(dir: &Path) -> Result<Self, TestkitError> {
        let binary = Self::binary()?;
        std::fs::create_dir_all(dir)
            .map_err(TestkitError::io(format!("creating {}", dir.display())))?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary, dir) {
                Ok(tansu) => return Ok(tansu),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Child {
            what: "tansu".into(),
            detail: "no start attempt made".into(),
        }))
    }

    fn start_once(binary: &Path, dir: &Path) -> Result<Self, TestkitError> {
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))
            .map_err(TestkitError::io("opening the tansu log"))?;
        let log_err = log
            .try_clone()
            .map_err(TestkitError::io("duplicating the tansu log"))?;
        let child = Command::new(binary)
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .arg("--storage-engine")
            .arg(format!("sqlite://{DB_FILE}"))
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(TestkitError::io(format!("spawning {}", binary.display())))?;
        let mut guard = ChildGuard { child };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(addr, &mut guard.child, "tansu broker", READY_TIMEOUT)
            .map_err(|e| with_log(e, dir))?;
        Ok(Self {
            child: guard,
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            port,
            bootstrap: format!("127.0.0.1:{port}"),
        })
    }

    /// The `bootstrap.servers` value.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Creates a topic with `tansu topic create`.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), TestkitError> {
        let output = Command::new(&self.binary)
            .current_dir(&self.dir)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string(), name])
            .stdin(Stdio::null())
            .output()
            .map_err(TestkitError::io("running tansu topic create"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(TestkitError::Child {
                what: format!("tansu topic create {name}"),
                detail: format!(
                    "{}: {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            })
        }
    }
}

/// Adds the end of tansu's log to a startup error.
fn with_log(error: TestkitError, dir: &Path) -> TestkitError {
    let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let tail: String = log
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    TestkitError::Child {
        what: "tansu broker".into(),
        detail: format!("{error}; log tail:\n{tail}"),
    }
}
