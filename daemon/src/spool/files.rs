//! Spool files in a directory: names, listing, locking, directory fsync.
//!
//! Files are named `dlq-<ms>-<pid>-<writer>-<n>.spool`, so sorting names
//! sorts them by creation time. Rewrites go through `<name>.tmp` and a
//! rename. A writer holds an exclusive `flock` on a file only while it
//! appends and fsyncs; `replay` and `purge` hold it while they rewrite, so
//! a daemon never appends to a file that is being replaced (it checks the
//! link count after locking and starts a new file if it lost the race).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Extension of spool files.
pub const EXTENSION: &str = "spool";
/// Suffix of a rewrite in progress (left behind only by a crash; ignored).
pub const TMP_SUFFIX: &str = ".tmp";

/// Name of a new spool file.
pub fn new_name(created_ms: i64, pid: u32, writer: &str, n: u32) -> String {
    format!("dlq-{created_ms:013}-{pid}-{writer}-{n:04}.{EXTENSION}")
}

/// The spool files in `dir`, sorted by name (creation time). A missing
/// directory holds none.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == EXTENSION) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Makes `dir`'s entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether the open file still has a name (was not replaced by a rewrite or
/// removed).
pub fn still_linked(file: &File) -> io::Result<bool> {
    Ok(file.metadata()?.nlink() > 0)
}

/// Takes an exclusive lock; `Ok(None)` when another holder has it and
/// `wait` is false.
pub fn lock_exclusive(file: File, wait: bool) -> io::Result<Option<Flock<File>>> {
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    match Flock::lock(file, arg) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// Takes a shared lock, waiting for an appending writer to finish.
pub fn lock_shared(file: File) -> io::Result<Flock<File>> {
    Flock::lock(file, FlockArg::LockShared).map_err(|(_, errno)| errno.into())
}

/// Releases a lock, keeping the file open.
pub fn unlock(locked: Flock<File>) -> io::Result<File> {
    locked.unlock().map_err(|(_, errno)| errno.into())
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
