//! `shmkafkad spool purge`: deletes spooled records for good.

use std::io::{self, Write};
use std::path::Path;

use super::compact::{ExclusiveFile, Rewritten};
use super::files;

/// Which records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeScope {
    /// Every record.
    All,
    /// Records that failed before this time (ms since the epoch).
    FailedBefore(i64),
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Records removed.
    pub records: usize,
    /// Records left.
    pub kept: usize,
    /// Files that could not be processed (reported on `warn`).
    pub problems: usize,
}

/// Removes the records of `dir` in `scope`.
pub fn purge(dir: &Path, scope: PurgeScope, warn: &mut dyn Write) -> io::Result<Purged> {
    let mut purged = Purged::default();
    for path in files::list(dir)? {
        let file = match ExclusiveFile::open(&path) {
            Ok(Some(file)) => file,
            Ok(None) => continue,
            Err(e) => {
                writeln!(warn, "warning: {e}")?;
                purged.problems += 1;
                continue;
            }
        };
        for damage in &file.scan.damage {
            writeln!(warn, "warning: {}: {damage}", path.display())?;
        }
        let goes = |failed_at_ms: i64| match scope {
            PurgeScope::All => true,
            PurgeScope::FailedBefore(limit) => failed_at_ms < limit,
        };
        let total = file.scan.records.len();
        let removing = file
            .scan
            .records
            .iter()
            .filter(|e| goes(e.record.failed_at_ms))
            .count();
        match file.retain(|e| !goes(e.record.failed_at_ms)) {
            Ok(Rewritten::Unchanged) => purged.kept += total,
            Ok(_) => {
                purged.records += removing;
                purged.kept += total - removing;
            }
            Err(e) => {
                writeln!(warn, "warning: cannot rewrite {}: {e}", path.display())?;
                purged.problems += 1;
                purged.kept += total;
            }
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::tests::sample;
    use crate::spool::reader;
    use crate::spool::writer::SpoolWriter;

    #[test]
    fn purge_before_and_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::new(dir.path(), 1 << 20, "t");
        for (seq, at) in [(0, 1000), (1, 2000), (2, 3000)] {
            let mut record = sample();
            record.seq = seq;
            record.failed_at_ms = at;
            writer.append(&record.as_ref());
        }
        writer.commit().unwrap();
        let mut warn = Vec::new();
        let purged = purge(dir.path(), PurgeScope::FailedBefore(2500), &mut warn).unwrap();
        assert_eq!((purged.records, purged.kept), (2, 1));
        let left: Vec<u64> = files::list(dir.path())
            .unwrap()
            .iter()
            .flat_map(|f| reader::read_file(f).unwrap().records)
            .map(|e| e.record.seq)
            .collect();
        assert_eq!(left, vec![2]);
        let purged = purge(dir.path(), PurgeScope::All, &mut warn).unwrap();
        assert_eq!((purged.records, purged.kept), (1, 0));
        assert!(files::list(dir.path()).unwrap().is_empty());
    }
}
