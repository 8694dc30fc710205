//! The dead-letter spool: records that failed permanently (or that a gone
//! client left undelivered at shutdown) are written to disk before their
//! ring space is released, so nothing a client committed is ever dropped.
//!
//! - [`budget`]: the bound on the spool's total size.
//! - [`format`]: the file and frame layout (magic, version, crc32c frames).
//! - [`writer`]: batched append + `fdatasync`, file rotation.
//! - [`reader`]: reads files back, skipping torn tails and damage.
//! - [`dead_letter`]: the drain threads' hook: hold, spool, then release.
//! - [`list`], [`replay`], [`purge`]: the `shmkafkad spool` commands
//!   ([`cli`] parses them).
//! - [`compact`]: crash-safe rewrite of a file without some records.
//!
//! Files live in `[spool] dir` (`/var/lib/shmkafka/spool` by default), named
//! so that name order is creation order; see [`files`].

pub mod budget;
pub mod cli;
pub mod compact;
pub mod dead_letter;
pub mod files;
pub mod format;
pub mod list;
pub mod purge;
pub mod reader;
pub mod replay;
pub mod time;
pub mod writer;

use std::path::Path;

pub use dead_letter::{DeadLetters, PendingFailure};

/// Checks at startup that `dir` exists or can be created and is writable,
/// and warns if not: failures are held in the rings (back-pressure) until
/// it is, so an operator should know early.
pub fn probe_dir(dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    let result = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .and_then(|()| {
            let probe = tempfile_in(dir)?;
            std::fs::remove_file(probe)
        });
    match result {
        Ok(()) => tracing::info!(dir = %dir.display(), "dead-letter spool ready"),
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
            "dead-letter spool directory is not writable: permanently failed records will be held in the rings until it is"),
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&path, b"")?;
    Ok(path)
}
