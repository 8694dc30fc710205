//! Reads spool files back, skipping damage instead of failing on it.
//!
//! A crash in the middle of an append leaves a torn last frame; a bad disk
//! may flip bits anywhere. Either way the reader reports where and how many
//! bytes it skipped, resynchronises on the next frame whose marker, length
//! and checksum agree, and returns every intact record. It never panics on
//! any input (see the proptest below).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::files;
use super::format::{self, FrameError, HeaderError, SpoolRecord, FILE_HEADER_LEN, FRAME_MARKER};

/// An intact record and where it is.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Byte offset of its frame in the file.
    pub offset: u64,
    /// Frame length.
    pub len: usize,
    /// The record.
    pub record: SpoolRecord,
}

/// Bytes the reader had to skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the bad bytes start.
    pub offset: u64,
    /// How many bytes were skipped.
    pub skipped: u64,
    /// What was wrong at `offset`.
    pub error: FrameError,
    /// Nothing intact follows: a write cut short by a crash, most likely.
    pub torn_tail: bool,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes skipped at offset {} ({}{})",
            self.skipped,
            self.offset,
            self.error,
            if self.torn_tail { ", torn tail" } else { "" }
        )
    }
}

/// One file's intact records and damage.
#[derive(Debug, Clone)]
pub struct FileScan {
    /// The file.
    pub path: PathBuf,
    /// Intact records in file order.
    pub records: Vec<Entry>,
    /// Skipped ranges.
    pub damage: Vec<Damage>,
}

/// Why a file could not be read at all.
#[derive(Debug, Error)]
pub enum ReadError {
    /// Opening, locking or reading failed.
    #[error("cannot read spool file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Not a spool file of this format.
    #[error("{path}: {source}")]
    Header {
        /// File.
        path: PathBuf,
        /// Cause.
        source: HeaderError,
    },
}

/// Reads `path` under a shared lock (so no append is half-seen).
pub fn read_file(path: &Path) -> Result<FileScan, ReadError> {
    let io_error = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let mut locked = files::lock_shared(file).map_err(io_error)?;
    let mut bytes = Vec::new();
    locked.read_to_end(&mut bytes).map_err(io_error)?;
    drop(locked);
    scan_file(path, &bytes)
}

/// Scans the contents of a spool file.
pub fn scan_file(path: &Path, bytes: &[u8]) -> Result<FileScan, ReadError> {
    let (records, damage) = scan(bytes).map_err(|source| ReadError::Header {
        path: path.to_owned(),
        source,
    })?;
    Ok(FileScan {
        path: path.to_owned(),
        records,
        damage,
    })
}

/// Checks the header, then decodes every frame, skipping damage.
pub fn scan(bytes: &[u8]) -> Result<(Vec<Entry>, Vec<Damage>), HeaderError> {
    format::check_file_header(bytes)?;
    let mut records = Vec::new();
    let mut damage = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    while pos < bytes.len() {
        match format::decode_frame(&bytes[pos..]) {
            Ok((record, len)) => {
                records.push(Entry {
                    offset: pos as u64,
                    len,
                    record,
                });
                pos += len;
            }
            Err(error) => {
                let next = resync(bytes, pos + 1);
                damage.push(Damage {
                    offset: pos as u64,
                    skipped: (next - pos) as u64,
                    error,
                    torn_tail: next == bytes.len(),
                });
                pos = next;
            }
        }
    }
    Ok((records, damage))
}

/// The next position at or after `from` where an intact frame starts, or
/// the end.
fn resync(bytes: &[u8], from: usize) -> usize {
    let marker = FRAME_MARKER.to_le_bytes();
    let mut pos = from;
    while pos + marker.len() <= bytes.len() {
        if bytes[pos..pos + marker.len()] == marker && format::decode_frame(&bytes[pos..]).is_ok() {
            return pos;
        }
        pos += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::tests::sample;
    use proptest::prelude::*;

    fn file_of(n: u64) -> Vec<u8> {
        let mut bytes = format::file_header().to_vec();
        for seq in 0..n {
            let mut record = sample();
            record.seq = seq;
            record.value = Some(vec![seq as u8; seq as usize * 3]);
            format::encode_frame(&record.as_ref(), &mut bytes);
        }
        bytes
    }

    #[test]
    fn intact_file_reads_fully() {
        let (records, damage) = scan(&file_of(5)).unwrap();
        assert_eq!(records.len(), 5);
        assert!(damage.is_empty());
    }

    #[test]
    fn torn_tail_is_skipped_with_a_report() {
        let bytes = file_of(3);
        let cut = &bytes[..bytes.len() - 5];
        let (records, damage) = scan(cut).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(damage.len(), 1);
        assert!(damage[0].torn_tail);
        assert_eq!(damage[0].error, FrameError::Truncated);
    }

    #[test]
    fn damage_in_the_middle_is_skipped_and_the_rest_kept() {
        let mut bytes = file_of(4);
        let (records, _) = scan(&bytes).unwrap();
        let second = records[1].offset as usize;
        bytes[second + 20] ^= 0xff;
        let (records, damage) = scan(&bytes).unwrap();
        let seqs: Vec<u64> = records.iter().map(|e| e.record.seq).collect();
        assert_eq!(seqs, vec![0, 2, 3]);
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].error, FrameError::BadChecksum);
        assert!(!damage[0].torn_tail);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Truncated anywhere and with bits flipped anywhere: no panic, and
        /// every record returned is one that was written.
        #[test]
        fn reader_never_panics(
            n in 0u64..6,
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
        ) {
            let full = file_of(n);
            let (written, _) = scan(&full).unwrap();
            let mut bytes = full[..cut.index(full.len() + 1)].to_vec();
            for (at, bit) in flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= 1 << bit;
                }
            }
            if let Ok((records, damage)) = scan(&bytes) {
                for entry in &records {
                    prop_assert!(written.iter().any(|w| w.record == entry.record));
                }
                let covered: u64 = records.iter().map(|e| e.len as u64)
                    .chain(damage.iter().map(|d| d.skipped))
                    .sum();
                prop_assert_eq!(covered as usize, bytes.len() - FILE_HEADER_LEN);
            }
        }

        /// Arbitrary bytes after a valid header: no panic.
        #[test]
        fn garbage_never_panics(tail in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = format::file_header().to_vec();
            bytes.extend_from_slice(&tail);
            let _ = scan(&bytes);
        }
    }
}
