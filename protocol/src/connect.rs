//! Finding and connecting to the daemon's control socket, with errors that
//! tell the user what to do.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group};
use thiserror::Error;

use crate::limits::{DEFAULT_SOCKET_PATH, SOCKET_PATH_ENV};

/// Why connecting to the daemon failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// Nothing listens at the path: it does not exist, or it is a stale
    /// socket file left by a daemon that is gone.
    #[error("cannot connect to {}: {source}; is shmkafkad running?", path.display())]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// The underlying error (`ENOENT` or `ECONNREFUSED`).
        source: io::Error,
    },
    /// The socket or its directory is not accessible to this user.
    #[error("permission denied connecting to {}: {}", path.display(), access_hint(.group.as_deref()))]
    PermissionDenied {
        /// The socket path tried.
        path: PathBuf,
        /// Group that owns the socket (or its directory), if it could be
        /// found; membership in it grants access.
        group: Option<String>,
    },
    /// Any other failure.
    #[error("cannot connect to {}: {source}", path.display())]
    Io {
        /// The socket path tried.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl ConnectError {
    /// The socket path that was tried.
    pub fn path(&self) -> &Path {
        match self {
            ConnectError::NotRunning { path, .. }
            | ConnectError::PermissionDenied { path, .. }
            | ConnectError::Io { path, .. } => path,
        }
    }
}

fn access_hint(group: Option<&str>) -> String {
    match group {
        Some(group) => format!(
            "join group {group} (`usermod -aG {group} $USER`, then log in again) \
             or run as a user the daemon allows"
        ),
        None => "ask the administrator for access to the socket's group".to_owned(),
    }
}

/// The socket path to use: `explicit` if given, else `$SHMKAFKA_SOCKET` if set
/// and non-empty, else [`DEFAULT_SOCKET_PATH`].
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    resolve_socket_path(explicit, std::env::var_os(SOCKET_PATH_ENV))
}

/// [`socket_path`] with the environment value passed in, so the precedence
/// can be tested without touching the process environment.
pub fn resolve_socket_path(explicit: Option<&Path>, env_value: Option<OsString>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    match env_value {
        // An empty variable is treated as unset, as shells make it easy to
        // export one by accident.
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_SOCKET_PATH),
    }
}

/// Connects to the daemon at [`socket_path`]`(path)`.
///
/// The stream is blocking and close-on-exec, without timeouts; set them on
/// the stream as needed.
pub fn connect(path: Option<&Path>) -> Result<UnixStream, ConnectError> {
    let path = socket_path(path);
    UnixStream::connect(&path).map_err(|source| classify_connect_error(path, source))
}

/// Turns a `connect` failure into the error the user can act on.
pub fn classify_connect_error(path: PathBuf, source: io::Error) -> ConnectError {
    match source.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED) => ConnectError::NotRunning { path, source },
        Some(libc::EACCES | libc::EPERM) => {
            let group = owning_group(&path);
            ConnectError::PermissionDenied { path, group }
        }
        _ => ConnectError::Io { path, source },
    }
}

/// Name of the group owning the socket, or of its directory when the socket
/// itself cannot be examined (the directory is what denies access then).
fn owning_group(path: &Path) -> Option<String> {
    let gid = std::fs::metadata(path)
        .ok()
        .or_else(|| std::fs::metadata(path.parent()?).ok())?
        .gid();
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(group)) => Some(group.name),
        // A gid without a name is still something the administrator can use.
        _ => Some(gid.to_string()),
    }
}
