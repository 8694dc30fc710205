//! Rewrites a spool file to drop records (replayed or purged), crash-safely:
//! the survivors go to `<name>.tmp`, which is fsynced and renamed over the
//! original, and the directory is fsynced. A crash leaves either the old
//! file or the new one, never a mix (at worst a stray `.tmp`, ignored).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use super::files;
use super::format;
use super::reader::{self, Entry, FileScan, ReadError};

/// A spool file read under an exclusive lock, ready to be rewritten.
pub struct ExclusiveFile {
    locked: Flock<File>,
    bytes: Vec<u8>,
    /// What it holds.
    pub scan: FileScan,
}

/// What a rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Nothing to drop; the file is untouched.
    Unchanged,
    /// The file now holds only the kept records.
    Compacted {
        /// Records kept.
        kept: usize,
    },
    /// No record was kept: the file is gone.
    Removed,
}

impl ExclusiveFile {
    /// Opens and locks `path`, waiting for a writer's append to finish.
    /// `Ok(None)` if the file disappeared or was replaced meanwhile.
    pub fn open(path: &Path) -> Result<Option<Self>, ReadError> {
        let io_error = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let mut locked = files::lock_exclusive(file, true)
            .map_err(io_error)?
            .expect("a blocking lock is always taken");
        if !files::still_linked(&locked).map_err(io_error)? {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        locked.read_to_end(&mut bytes).map_err(io_error)?;
        let scan = reader::scan_file(path, &bytes)?;
        Ok(Some(Self {
            locked,
            bytes,
            scan,
        }))
    }

    /// Keeps the records for which `keep` is true and drops the rest.
    /// Damage in the middle of the file is preserved in a `.damaged` copy
    /// of the original before it is replaced; a torn tail is dropped.
    pub fn retain(self, mut keep: impl FnMut(&Entry) -> bool) -> io::Result<Rewritten> {
        let path = self.scan.path.clone();
        let kept: Vec<&Entry> = self.scan.records.iter().filter(|e| keep(e)).collect();
        let damaged = self.scan.damage.iter().any(|d| !d.torn_tail);
        if kept.len() == self.scan.records.len() {
            return Ok(Rewritten::Unchanged);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        if damaged {
            let copy = suffixed(&path, ".damaged");
            write_synced(&copy, &self.bytes)?;
        }
        let result = if kept.is_empty() {
            std::fs::remove_file(&path)?;
            Rewritten::Removed
        } else {
            let mut out = format::file_header().to_vec();
            for entry in &kept {
                let start = entry.offset as usize;
                out.extend_from_slice(&self.bytes[start..start + entry.len]);
            }
            let tmp = suffixed(&path, files::TMP_SUFFIX);
            write_synced(&tmp, &out)?;
            std::fs::rename(&tmp, &path)?;
            Rewritten::Compacted { kept: kept.len() }
        };
        files::sync_dir(dir)?;
        // Held to here: no writer appended to the old inode meanwhile, and
        // any that locks it later sees it unlinked and starts a new file.
        drop(self.locked);
        Ok(result)
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::tests::sample;
    use crate::spool::writer::SpoolWriter;

    fn spool_with(dir: &Path, n: u64) -> PathBuf {
        let mut writer = SpoolWriter::new(dir, 1 << 20, "t");
        for seq in 0..n {
            let mut record = sample();
            record.seq = seq;
            writer.append(&record.as_ref());
        }
        writer.commit().unwrap();
        files::list(dir).unwrap().remove(0)
    }

    #[test]
    fn retain_keeps_exactly_the_chosen_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = spool_with(dir.path(), 5);
        let file = ExclusiveFile::open(&path).unwrap().unwrap();
        let outcome = file.retain(|e| e.record.seq % 2 == 0).unwrap();
        assert_eq!(outcome, Rewritten::Compacted { kept: 3 });
        let seqs: Vec<u64> = reader::read_file(&path)
            .unwrap()
            .records
            .iter()
            .map(|e| e.record.seq)
            .collect();
        assert_eq!(seqs, vec![0, 2, 4]);
        assert_eq!(files::list(dir.path()).unwrap(), vec![path.clone()]);
        let file = ExclusiveFile::open(&path).unwrap().unwrap();
        assert_eq!(file.retain(|_| false).unwrap(), Rewritten::Removed);
        assert!(files::list(dir.path()).unwrap().is_empty());
    }
}
