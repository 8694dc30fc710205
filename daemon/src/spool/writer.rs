//! Appends frames to spool files and makes them durable in batches.
//!
//! [`SpoolWriter::append`] only encodes into memory; [`SpoolWriter::commit`]
//! writes everything appended since the last commit and `fdatasync`s it, so
//! a burst of failures costs one sync per file touched, not one per record.
//! Until `commit` returns `Ok`, nothing appended may be treated as spooled.
//! On an error the batch is discarded (the caller still holds the records
//! and appends them again on its next attempt), the partial write is cut off
//! the file where possible, and the next commit starts a new file: after a
//! failed `fsync` the state of the old one is unknown.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use thiserror::Error;

use super::files;
use super::format::{self, RecordRef, FILE_HEADER_LEN};

/// Permissions of spool files: records may hold anything the clients sent.
const FILE_MODE: u32 = 0o640;
/// Permissions of a spool directory the writer creates.
const DIR_MODE: u32 = 0o750;

/// Why a batch could not be made durable.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The spool directory is missing and cannot be created.
    #[error("cannot create spool directory {path}: {source}")]
    CreateDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A new spool file cannot be created or initialised.
    #[error("cannot create spool file {path}: {source}")]
    CreateFile {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Writing records failed (e.g. `ENOSPC`).
    #[error("cannot write spool file {path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// `fdatasync` failed: the records may not be on disk.
    #[error("cannot sync spool file {path}: {source}")]
    Sync {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

/// A commit that failed part-way: the first `durable` records of the batch
/// (in append order) are on disk, the rest are not.
#[derive(Debug, Error)]
#[error("{error} ({durable} records of the batch were written before)")]
pub struct CommitError {
    /// Records of the batch made durable before the error.
    pub durable: usize,
    /// What went wrong.
    #[source]
    pub error: WriteError,
}

/// What a successful commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Records made durable.
    pub records: usize,
    /// Bytes of records written.
    pub bytes: u64,
    /// Bytes the spool grew by: records plus the headers of new files.
    pub disk_bytes: u64,
    /// Files synced.
    pub files: usize,
}

/// The file being appended to, unlocked between commits.
struct Current {
    file: File,
    path: PathBuf,
    /// Bytes in the file that are ours and durable.
    len: u64,
}

/// Writes frames into a spool directory.
pub struct SpoolWriter {
    dir: PathBuf,
    max_file_bytes: u64,
    /// Distinguishes writers of one process in file names.
    tag: String,
    pid: u32,
    next_file: u32,
    /// Frames appended since the last commit, back to back.
    buf: Vec<u8>,
    /// End offset in `buf` of each frame.
    frame_ends: Vec<usize>,
    current: Option<Current>,
}

impl std::fmt::Debug for SpoolWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolWriter")
            .field("dir", &self.dir)
            .field("tag", &self.tag)
            .field("buffered", &self.frame_ends.len())
            .finish_non_exhaustive()
    }
}

impl SpoolWriter {
    /// A writer for `dir`, rotating files past `max_file_bytes`. Touches no
    /// file until the first commit.
    pub fn new(dir: impl Into<PathBuf>, max_file_bytes: u64, tag: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            max_file_bytes,
            tag: tag.into(),
            pid: std::process::id(),
            next_file: 0,
            buf: Vec::new(),
            frame_ends: Vec::new(),
            current: None,
        }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encodes `record` into the pending batch.
    pub fn append(&mut self, record: &RecordRef<'_>) {
        self.buf.reserve(format::frame_len(record));
        format::encode_frame(record, &mut self.buf);
        self.frame_ends.push(self.buf.len());
    }

    /// Records appended since the last commit.
    pub fn buffered_records(&self) -> usize {
        self.frame_ends.len()
    }

    /// Bytes appended since the last commit.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Forgets the pending batch.
    pub fn discard(&mut self) {
        self.buf.clear();
        self.frame_ends.clear();
    }

    /// Writes and `fdatasync`s the pending batch. On `Err`, only the first
    /// [`CommitError::durable`] records count as written; the batch is
    /// discarded either way.
    pub fn commit(&mut self) -> Result<Committed, CommitError> {
        self.commit_within(u64::MAX)
    }

    /// As [`SpoolWriter::commit`], but grows the spool by at most `limit`
    /// bytes (records and new file headers): the records that do not fit
    /// are left out, in append order, and `Committed::records` says how
    /// many made it.
    pub fn commit_within(&mut self, limit: u64) -> Result<Committed, CommitError> {
        if self.frame_ends.is_empty() {
            return Ok(Committed::default());
        }
        let result = self.write_batch(limit);
        self.discard();
        result
    }

    /// Closes the current file; the next commit starts a new one.
    pub fn close_file(&mut self) {
        self.current = None;
    }

    fn write_batch(&mut self, limit: u64) -> Result<Committed, CommitError> {
        let mut done = Committed::default();
        let failed = |done: &Committed, error| CommitError {
            durable: done.records,
            error,
        };
        let (mut from, mut next) = (0usize, 0usize);
        while next < self.frame_ends.len() {
            let first_frame = (self.frame_ends[next] - from) as u64;
            if done.disk_bytes + first_frame > limit {
                break;
            }
            let (locked, path, len, created) = self.lock_current().map_err(|e| failed(&done, e))?;
            let header = if created { FILE_HEADER_LEN as u64 } else { 0 };
            let room = limit.saturating_sub(done.disk_bytes + header);
            // As many frames as fit in the file and in `limit`; a fresh
            // file takes at least one, so a record larger than
            // max_file_bytes still gets a file.
            let mut to = next;
            let mut over_limit = false;
            while to < self.frame_ends.len() {
                let batch = (self.frame_ends[to] - from) as u64;
                if batch > room {
                    over_limit = true;
                    break;
                }
                if len + batch > self.max_file_bytes && (to > next || len > FILE_HEADER_LEN as u64)
                {
                    break;
                }
                to += 1;
            }
            if to == next {
                if created {
                    // Nothing goes in it: leave no empty file behind.
                    remove_empty(&path, &self.dir);
                } else if over_limit {
                    // Not ours to remove; kept for the next commit.
                    if let Ok(file) = files::unlock(locked) {
                        self.current = Some(Current { file, path, len });
                    }
                } // else: full; let it go (unlocks as `locked` drops).
                if over_limit {
                    break;
                }
                continue;
            }
            done.disk_bytes += header;
            let end = self.frame_ends[to - 1];
            let mut file = locked;
            if let Err(source) = file.write_all(&self.buf[from..end]) {
                // Cut off the partial frame; then, as on a nearly full disk,
                // write what fits frame by frame.
                let _ = file.set_len(len);
                let (records, written) = self.write_each(&mut file, len, from, next, to);
                let synced = records > 0 && file.sync_data().is_ok();
                if synced {
                    done.records += records;
                    done.bytes += written;
                    done.disk_bytes += written;
                    done.files += 1;
                } else if created {
                    remove_empty(&path, &self.dir);
                    done.disk_bytes -= header;
                }
                return Err(failed(&done, WriteError::Write { path, source }));
            }
            if let Err(source) = file.sync_data() {
                return Err(failed(&done, WriteError::Sync { path, source }));
            }
            let bytes = (end - from) as u64;
            done.records += to - next;
            done.bytes += bytes;
            done.disk_bytes += bytes;
            done.files += 1;
            let len = len + bytes;
            if let Ok(file) = files::unlock(file) {
                if len < self.max_file_bytes {
                    self.current = Some(Current { file, path, len });
                }
            }
            from = end;
            next = to;
            if over_limit {
                break;
            }
        }
        Ok(done)
    }

    /// Writes frames `next..to` (starting at `from` in the buffer) one by
    /// one into `file`, which holds `len` good bytes, until one fails; cuts
    /// the file back to the last whole frame. Returns the frames and bytes
    /// written (not yet synced).
    fn write_each(
        &self,
        file: &mut Flock<File>,
        len: u64,
        from: usize,
        next: usize,
        to: usize,
    ) -> (usize, u64) {
        let mut start = from;
        let mut records = 0;
        for &end in &self.frame_ends[next..to] {
            if file.write_all(&self.buf[start..end]).is_err() {
                let _ = file.set_len(len + (start - from) as u64);
                break;
            }
            records += 1;
            start = end;
        }
        (records, (start - from) as u64)
    }

    /// The file to append to, locked: the current one if it is still ours
    /// and has room for more than its header, else a new one (`true`: just
    /// created, holding only its header). Leaves `current` empty; the caller
    /// puts the file back after writing.
    fn lock_current(&mut self) -> Result<(Flock<File>, PathBuf, u64, bool), WriteError> {
        if let Some(current) = self.current.take() {
            // A replay or purge holding the lock, or having replaced the
            // file, sends us to a new file; so does a length we did not write.
            if let Ok(Some(locked)) = files::lock_exclusive(current.file, false) {
                let ours = files::still_linked(&locked).unwrap_or(false)
                    && locked.metadata().map(|m| m.len()).ok() == Some(current.len);
                if ours {
                    return Ok((locked, current.path, current.len, false));
                }
            }
        }
        let (locked, path, len) = self.create_file()?;
        Ok((locked, path, len, true))
    }

    fn create_file(&mut self) -> Result<(Flock<File>, PathBuf, u64), WriteError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
            .map_err(|source| WriteError::CreateDir {
                path: self.dir.clone(),
                source,
            })?;
        let created_ms = files::now_ms();
        loop {
            let path = self.dir.join(files::new_name(
                created_ms,
                self.pid,
                &self.tag,
                self.next_file,
            ));
            self.next_file = self.next_file.wrapping_add(1);
            let file = match OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(WriteError::CreateFile { path, source }),
            };
            let init = || -> io::Result<Flock<File>> {
                let mut locked = files::lock_exclusive(file, false)?
                    .ok_or_else(|| io::Error::other("new spool file locked by someone else"))?;
                locked.write_all(&format::file_header())?;
                locked.sync_data()?;
                // The new name must survive a crash as well as the records.
                files::sync_dir(&self.dir)?;
                Ok(locked)
            };
            return match init() {
                Ok(locked) => Ok((locked, path, FILE_HEADER_LEN as u64)),
                Err(source) => {
                    let _ = std::fs::remove_file(&path);
                    Err(WriteError::CreateFile { path, source })
                }
            };
        }
    }
}

/// Removes a file that holds only its header (best effort: a reader skips
/// an empty spool file anyway).
fn remove_empty(path: &Path, dir: &Path) {
    if std::fs::remove_file(path).is_ok() {
        let _ = files::sync_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::tests::sample;
    use crate::spool::reader;

    #[test]
    fn commits_rotate_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let record = sample();
        let frame = format::frame_len(&record.as_ref()) as u64;
        // Room for three frames per file.
        let mut writer = SpoolWriter::new(dir.path(), FILE_HEADER_LEN as u64 + 3 * frame, "t");
        for seq in 0..7 {
            let mut r = record.clone();
            r.seq = seq;
            writer.append(&r.as_ref());
        }
        let done = writer.commit().unwrap();
        assert_eq!(done.records, 7);
        assert_eq!(done.files, 3);
        let files = files::list(dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        let seqs: Vec<u64> = files
            .iter()
            .flat_map(|f| reader::read_file(f).unwrap().records)
            .map(|e| e.record.seq)
            .collect();
        assert_eq!(seqs, (0..7).collect::<Vec<_>>());
        // The last file had room left: the next commit appends to it.
        writer.append(&record.as_ref());
        assert_eq!(writer.commit().unwrap().files, 1);
        assert_eq!(files::list(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn a_record_larger_than_a_file_still_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::new(dir.path(), 64, "t");
        let mut record = sample();
        record.value = Some(vec![7; 1000]);
        writer.append(&record.as_ref());
        writer.append(&record.as_ref());
        assert_eq!(writer.commit().unwrap().files, 2);
    }

    #[test]
    fn unusable_directory_fails_and_keeps_nothing_half_done() {
        let dir = tempfile::tempdir().unwrap();
        // A path whose parent is a regular file cannot become a directory,
        // not even for root.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let mut writer = SpoolWriter::new(blocker.join("spool"), 1 << 20, "t");
        writer.append(&sample().as_ref());
        let err = writer.commit().unwrap_err();
        assert!(matches!(err.error, WriteError::CreateDir { .. }), "{err}");
        assert_eq!(err.durable, 0);
        assert_eq!(writer.buffered_records(), 0);
    }

    #[test]
    fn commit_within_writes_whole_records_up_to_the_limit_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let record = sample();
        let frame = format::frame_len(&record.as_ref()) as u64;
        let mut writer = SpoolWriter::new(dir.path(), 1 << 20, "t");
        for seq in 0..5 {
            let mut r = record.clone();
            r.seq = seq;
            writer.append(&r.as_ref());
        }
        // Room for the file header and two and a half records.
        let limit = FILE_HEADER_LEN as u64 + 2 * frame + frame / 2;
        let done = writer.commit_within(limit).unwrap();
        assert_eq!(done.records, 2);
        assert_eq!(done.disk_bytes, FILE_HEADER_LEN as u64 + 2 * frame);
        assert_eq!(writer.buffered_records(), 0);
        // Too little room for even one record: nothing written, no file made.
        writer.append(&record.as_ref());
        assert_eq!(writer.commit_within(frame - 1).unwrap().records, 0);
        let files = files::list(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        let seqs: Vec<u64> = reader::read_file(&files[0])
            .unwrap()
            .records
            .into_iter()
            .map(|e| e.record.seq)
            .collect();
        assert_eq!(seqs, vec![0, 1]);
        // A fresh file that gets no record is removed, not left empty.
        let other = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::new(other.path(), 1 << 20, "t");
        writer.append(&record.as_ref());
        assert_eq!(writer.commit_within(frame).unwrap().records, 0);
        assert!(files::list(other.path()).unwrap().is_empty());
    }

    #[test]
    fn a_replaced_file_is_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::new(dir.path(), 1 << 20, "t");
        writer.append(&sample().as_ref());
        writer.commit().unwrap();
        let first = files::list(dir.path()).unwrap().remove(0);
        std::fs::remove_file(&first).unwrap();
        writer.append(&sample().as_ref());
        writer.commit().unwrap();
        let files = files::list(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_ne!(files[0], first);
        assert_eq!(reader::read_file(&files[0]).unwrap().records.len(), 1);
    }
}
