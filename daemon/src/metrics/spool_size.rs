//! Size of the dead-letter spool on disk, measured when asked (a directory
//! listing and one `stat` per file; the spool holds few, large files).

use std::path::Path;

use crate::spool::files;

/// What the spool directory holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolSize {
    /// Spool files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Measures the spool files in `dir`; `None` if the directory cannot be
/// read (a missing directory holds nothing).
pub fn measure(dir: &Path) -> Option<SpoolSize> {
    let mut size = SpoolSize::default();
    for path in files::list(dir).ok()? {
        // A file may be compacted away between listing and stat.
        if let Ok(meta) = std::fs::metadata(&path) {
            size.files += 1;
            size.bytes += meta.len();
        }
    }
    Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_spool_files_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(measure(dir.path()), Some(SpoolSize::default()));
        std::fs::write(dir.path().join("dlq-1.spool"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("dlq-2.spool"), [0u8; 20]).unwrap();
        std::fs::write(dir.path().join("dlq-3.spool.tmp"), [0u8; 7]).unwrap();
        std::fs::write(dir.path().join(".probe-1"), b"").unwrap();
        assert_eq!(
            measure(dir.path()),
            Some(SpoolSize {
                files: 2,
                bytes: 120
            })
        );
        assert_eq!(
            measure(&dir.path().join("missing")),
            Some(SpoolSize::default())
        );
    }
}
