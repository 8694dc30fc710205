//! Getting the control socket's path ready to bind without harming what is
//! already there.
//!
//! A path from the configuration or the command line may point anywhere, and
//! the daemon often runs as root: it removes only a stale socket (a socket
//! file nobody answers on), refuses every other existing file, and creates at
//! most the last directory level (`/run/shmkafka` under an existing `/run`),
//! so a typo cannot build a directory tree or delete a file. Every error
//! names the path it concerns.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why the socket path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    /// Another process accepts connections on the socket.
    #[error("{}: another process is listening on this socket (another shmkafkad?); stop it or choose another daemon.socket_path", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket is at the path.
    #[error("{}: exists and is {kind}, not a socket; refusing to replace it (remove it yourself or choose another daemon.socket_path)", path.display())]
    NotASocket {
        /// The file.
        path: PathBuf,
        /// What it is ("a regular file", "a directory", ...).
        kind: &'static str,
    },
    /// The directory of the socket is missing, and so is its parent.
    #[error("{}: directory does not exist, and neither does its parent {}; only the socket's own directory is created", dir.display(), parent.display())]
    NoParentDirectory {
        /// The socket's directory.
        dir: PathBuf,
        /// Its missing parent.
        parent: PathBuf,
    },
    /// A file-system call on `path` failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The path the call was about.
        path: PathBuf,
        /// What the daemon tried ("create the directory", "bind", ...).
        action: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl SocketPathError {
    /// An error of `action` on `path`.
    pub fn io(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> SocketPathError {
        let path = path.to_owned();
        move |source| SocketPathError::Io {
            path,
            action,
            source,
        }
    }
}

/// Makes `path` free to bind: creates its directory if only that level is
/// missing, removes a stale socket, refuses anything else.
pub fn prepare(path: &Path) -> Result<(), SocketPathError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_directory(dir)?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SocketPathError::io(path, "examine the socket path")(e)),
    };
    let file_type = meta.file_type();
    if !file_type.is_socket() {
        return Err(SocketPathError::NotASocket {
            path: path.to_owned(),
            kind: describe(&file_type),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketPathError::InUse {
            path: path.to_owned(),
        }),
        // Nobody listens: a daemon that was killed left it behind.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing the stale socket of an earlier run");
            std::fs::remove_file(path).map_err(SocketPathError::io(path, "remove the stale socket"))
        }
        Err(e) => Err(SocketPathError::io(
            path,
            "tell whether the existing socket is in use",
        )(e)),
    }
}

/// Creates `dir` if it is missing and its parent exists.
fn ensure_directory(dir: &Path) -> Result<(), SocketPathError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(SocketPathError::Io {
                path: dir.to_owned(),
                action: "use it as the socket's directory",
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(SocketPathError::io(dir, "examine the socket's directory")(
                e,
            ))
        }
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SocketPathError::Io {
                path: parent.to_owned(),
                action: "create the socket's directory in it",
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SocketPathError::NoParentDirectory {
                dir: dir.to_owned(),
                parent: parent.to_owned(),
            })
        }
        Err(e) => return Err(SocketPathError::io(parent, "examine the directory")(e)),
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), "created the socket's directory");
            Ok(())
        }
        // Created meanwhile (a second daemon starting at once): fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(SocketPathError::io(dir, "create the socket's directory")(e)),
    }
}

fn describe(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_stale_socket_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dropped listener leaves its file");
        prepare(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let err = prepare(&path).unwrap_err();
        assert!(matches!(err, SocketPathError::InUse { .. }), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn other_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("important.txt");
        std::fs::write(&file, "data").unwrap();
        let err = prepare(&file).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        assert!(err.to_string().contains("a regular file"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = prepare(&sub).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        assert!(sub.is_dir());
    }

    #[test]
    fn only_the_last_directory_level_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one").join("s.sock");
        prepare(&one).unwrap();
        assert!(dir.path().join("one").is_dir());

        let deep = dir.path().join("a").join("b").join("s.sock");
        let err = prepare(&deep).unwrap_err();
        assert!(
            matches!(err, SocketPathError::NoParentDirectory { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&*dir.path().join("a").join("b").to_string_lossy()),
            "{err}"
        );
        assert!(!dir.path().join("a").exists(), "nothing created");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = prepare(&file.join("s.sock")).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
    }
}
