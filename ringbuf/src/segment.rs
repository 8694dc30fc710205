//! Segments: a ring in a sealed memfd, created by a client and opened by the
//! daemon from a file descriptor received over a socket.
//!
//! Opening validates everything before mapping: the fd must be a memfd
//! sealed against shrinking and growing (so the mapping can never become
//! shorter than the file and SIGBUS the daemon), its size must match the
//! header, and the header must describe a layout this build understands.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use thiserror::Error;

use crate::consumer::RingConsumer;
use crate::error::RecordError;
use crate::layout::*;
use crate::memory::RingMemory;
use crate::producer::RingProducer;
use crate::ring::Ring;

/// How to create a segment.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Data area size in bytes: a power of two in [`MIN_CAPACITY`, `MAX_CAPACITY`].
    pub capacity: usize,
    /// Largest record (header, key, value, headers); at most half the capacity.
    pub max_record_len: usize,
    /// Name shown in `/proc/PID/fd` (memfd names are for debugging only).
    pub name: String,
    /// The client reads a delivery report for every record: the consumer
    /// keeps each record's space until its report has been read.
    pub delivery_reports: bool,
}

impl SegmentOptions {
    /// Options for a ring of `capacity` bytes accepting records up to half of it.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            max_record_len: capacity / 2,
            name: "shmkafka-ring".to_owned(),
            delivery_reports: false,
        }
    }
}

/// Why a segment could not be created.
#[derive(Debug, Error)]
pub enum CreateError {
    /// Capacity is not a power of two within the accepted range.
    #[error("ring capacity {0} must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}")]
    InvalidCapacity(usize),
    /// The record limit is too small for a header or larger than half the ring.
    #[error("max record length {len} must be between {RECORD_HEADER_SIZE} and half the capacity ({half})")]
    InvalidMaxRecord {
        /// Requested limit.
        len: usize,
        /// Half the capacity.
        half: usize,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The failing call.
        call: &'static str,
        /// Its error.
        source: std::io::Error,
    },
}

/// Why a segment received from a peer was refused.
#[derive(Debug, Error)]
pub enum OpenError {
    /// `F_GET_SEALS` failed: the fd is not a memfd (or shmem file).
    #[error("segment fd is not a sealable memfd: {0}")]
    NotMemfd(std::io::Error),
    /// Required seals are missing.
    #[error("segment is not sealed against {missing}; refusing to map it")]
    Unsealed {
        /// The missing seals.
        missing: &'static str,
    },
    /// The segment is sealed against writes, which the daemon needs.
    #[error("segment is sealed against writes")]
    WriteSealed,
    /// The file is too short to hold a header.
    #[error("segment of {size} bytes is shorter than its header ({HEADER_SIZE})")]
    Truncated {
        /// File size found.
        size: u64,
    },
    /// The magic number is wrong.
    #[error("bad magic {found:#018x}: not a shmkafka segment")]
    BadMagic {
        /// Magic found.
        found: u64,
    },
    /// The layout version is not the one this build speaks.
    #[error("segment layout version {found}, this daemon supports {LAYOUT_VERSION}")]
    UnsupportedVersion {
        /// Version found.
        found: u32,
    },
    /// The header carries option flags this build does not know.
    #[error("segment flags {found:#x} include options this daemon does not know")]
    UnknownFlags {
        /// Flags found.
        found: u32,
    },
    /// The header size field is not ours.
    #[error("segment header size {found}, expected {HEADER_SIZE}")]
    HeaderSize {
        /// Value found.
        found: u32,
    },
    /// The capacity is not a power of two in range.
    #[error(
        "segment capacity {found} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}"
    )]
    Capacity {
        /// Value found.
        found: u64,
    },
    /// The max record length is out of range.
    #[error("segment max record length {found} is out of range")]
    MaxRecord {
        /// Value found.
        found: u32,
    },
    /// The header's size does not match the file's.
    #[error("segment header says {declared} bytes, file has {actual}")]
    SizeMismatch {
        /// Size declared in the header.
        declared: u64,
        /// Size of the file.
        actual: u64,
    },
    /// The cursors are inconsistent.
    #[error(transparent)]
    Cursors(#[from] RecordError),
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The failing call.
        call: &'static str,
        /// Its error.
        source: std::io::Error,
    },
}

/// A ring in a sealed memfd, mapped into this process.
pub struct Segment {
    file: File,
    ring: Arc<Ring>,
    producer_pid: u32,
}

impl Segment {
    /// Creates, sizes, seals and maps a new segment with an empty ring.
    pub fn create(options: &SegmentOptions) -> Result<Segment, CreateError> {
        let capacity = options.capacity;
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(CreateError::InvalidCapacity(capacity));
        }
        if options.max_record_len < RECORD_HEADER_SIZE || options.max_record_len > capacity / 2 {
            return Err(CreateError::InvalidMaxRecord {
                len: options.max_record_len,
                half: capacity / 2,
            });
        }
        let err = |call| {
            move |e: nix::Error| CreateError::Sys {
                call,
                source: e.into(),
            }
        };
        let name =
            std::ffi::CString::new(options.name.replace('\0', "")).expect("nul bytes removed");
        let fd: OwnedFd = memfd_create(
            &name,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(err("memfd_create"))?;
        let file = File::from(fd);
        let size = (HEADER_SIZE + capacity) as u64;
        file.set_len(size).map_err(|source| CreateError::Sys {
            call: "ftruncate",
            source,
        })?;
        fcntl(
            file.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )
        .map_err(err("fcntl(F_ADD_SEALS)"))?;
        // Populate: fault every page in now rather than one per 4 KiB of
        // records on the producer's hot path during the first lap.
        let mapping = memmap2::MmapOptions::new()
            .len(size as usize)
            .populate()
            .map_raw(&file)
            .map_err(|source| CreateError::Sys {
                call: "mmap",
                source,
            })?;
        // SAFETY: the mapping covers HEADER_SIZE + capacity bytes and the file
        // is sealed against shrinking (done above).
        let mem = unsafe { RingMemory::mapped(mapping, capacity) };
        let pid = std::process::id();
        mem.header_write(OFF_VERSION, &LAYOUT_VERSION.to_le_bytes());
        mem.header_write(OFF_HEADER_SIZE, &(HEADER_SIZE as u32).to_le_bytes());
        mem.header_write(OFF_CAPACITY, &(capacity as u64).to_le_bytes());
        mem.header_write(
            OFF_MAX_RECORD,
            &(options.max_record_len as u32).to_le_bytes(),
        );
        mem.header_write(OFF_PRODUCER_PID, &pid.to_le_bytes());
        mem.header_write(OFF_SEGMENT_SIZE, &size.to_le_bytes());
        let flags = if options.delivery_reports {
            FLAG_DELIVERY_REPORTS
        } else {
            0
        };
        mem.header_write(OFF_FLAGS, &flags.to_le_bytes());
        // Magic last: a half-initialised header never looks valid.
        mem.header_write(OFF_MAGIC, &MAGIC.to_le_bytes());
        Ok(Segment {
            file,
            ring: Arc::new(Ring::new(
                mem,
                options.max_record_len as u32,
                options.delivery_reports,
            )),
            producer_pid: pid,
        })
    }

    /// Validates and maps a segment received from another process.
    pub fn open(fd: OwnedFd) -> Result<Segment, OpenError> {
        let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)
            .map_err(|e| OpenError::NotMemfd(e.into()))?;
        let seals = SealFlag::from_bits_truncate(seals);
        for (flag, name) in [
            (SealFlag::F_SEAL_SHRINK, "shrinking (F_SEAL_SHRINK)"),
            (SealFlag::F_SEAL_GROW, "growing (F_SEAL_GROW)"),
            (SealFlag::F_SEAL_SEAL, "further sealing (F_SEAL_SEAL)"),
        ] {
            if !seals.contains(flag) {
                return Err(OpenError::Unsealed { missing: name });
            }
        }
        if seals.contains(SealFlag::F_SEAL_WRITE) {
            return Err(OpenError::WriteSealed);
        }
        let file = File::from(fd);
        let actual = file
            .metadata()
            .map_err(|source| OpenError::Sys {
                call: "fstat",
                source,
            })?
            .len();
        if actual < HEADER_SIZE as u64 {
            return Err(OpenError::Truncated { size: actual });
        }
        // Read the description with pread, not through a mapping: nothing is
        // mapped until the sizes are known to be right.
        // The immutable description ends with the flags word.
        let mut header = [0u8; OFF_FLAGS + 4];
        nix::sys::uio::pread(file.as_fd(), &mut header, 0).map_err(|e| OpenError::Sys {
            call: "pread",
            source: e.into(),
        })?;
        let u32_at =
            |off: usize| u32::from_le_bytes(header[off..off + 4].try_into().expect("4 bytes"));
        let u64_at =
            |off: usize| u64::from_le_bytes(header[off..off + 8].try_into().expect("8 bytes"));
        let magic = u64_at(OFF_MAGIC);
        if magic != MAGIC {
            return Err(OpenError::BadMagic { found: magic });
        }
        let version = u32_at(OFF_VERSION);
        if version != LAYOUT_VERSION {
            return Err(OpenError::UnsupportedVersion { found: version });
        }
        let header_size = u32_at(OFF_HEADER_SIZE);
        if header_size as usize != HEADER_SIZE {
            return Err(OpenError::HeaderSize { found: header_size });
        }
        let capacity = u64_at(OFF_CAPACITY);
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY as u64..=MAX_CAPACITY as u64).contains(&capacity)
        {
            return Err(OpenError::Capacity { found: capacity });
        }
        let max_record = u32_at(OFF_MAX_RECORD);
        if (max_record as usize) < RECORD_HEADER_SIZE || max_record as u64 > capacity / 2 {
            return Err(OpenError::MaxRecord { found: max_record });
        }
        let declared = u64_at(OFF_SEGMENT_SIZE);
        if declared != HEADER_SIZE as u64 + capacity || declared != actual {
            return Err(OpenError::SizeMismatch { declared, actual });
        }
        let flags = u32_at(OFF_FLAGS);
        if flags & !FLAG_DELIVERY_REPORTS != 0 {
            return Err(OpenError::UnknownFlags { found: flags });
        }
        let producer_pid = u32_at(OFF_PRODUCER_PID);
        // Not populated: the creator populated its own mapping, so a
        // well-behaved segment is already in memory, while prefaulting a
        // sparse one would make this process allocate every page of it (a
        // client that never touched its ring could make the opener hold its
        // full size). Pages fault in as the ring is used, up to `declared`,
        // which the opener bounds before calling this.
        let mapping = memmap2::MmapOptions::new()
            .len(declared as usize)
            .map_raw(&file)
            .map_err(|source| OpenError::Sys {
                call: "mmap",
                source,
            })?;
        // SAFETY: the mapping is `declared` = HEADER_SIZE + capacity bytes, the
        // file has exactly that size and is sealed against shrinking (both
        // checked above), so every byte of the mapping stays backed.
        let mem = unsafe { RingMemory::mapped(mapping, capacity as usize) };
        let ring = Arc::new(Ring::new(
            mem,
            max_record,
            flags & FLAG_DELIVERY_REPORTS != 0,
        ));
        let (tail, released) = ring.cursors();
        if released > tail || tail - released > capacity || released % RECORD_ALIGN as u64 != 0 {
            return Err(RecordError::CursorsCorrupted { tail, released }.into());
        }
        Ok(Segment {
            file,
            ring,
            producer_pid,
        })
    }

    /// The memfd, to pass to the daemon.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Data area size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Largest record the ring accepts.
    pub fn max_record_len(&self) -> usize {
        self.ring.max_record as usize
    }

    /// Pid the creator wrote into the header (informational: the daemon
    /// trusts `SO_PEERCRED`, not this).
    pub fn producer_pid(&self) -> u32 {
        self.producer_pid
    }

    /// A producer handle; any number may exist.
    pub fn producer(&self) -> RingProducer {
        RingProducer::new(Arc::clone(&self.ring))
    }

    /// The consumer, positioned at the release cursor (after a daemon
    /// restart, records not yet released are read again). Create one per
    /// segment at a time.
    pub fn consumer(&self) -> Result<RingConsumer, RecordError> {
        RingConsumer::new(Arc::clone(&self.ring))
    }

    /// Whether the client reads a delivery report for every record.
    pub fn delivery_reports(&self) -> bool {
        self.ring.delivery_reports
    }

    /// `(tail, released)` cursors.
    pub fn cursors(&self) -> (u64, u64) {
        self.ring.cursors()
    }

    /// The ring's identity ([`OFF_RING_ID`]): `candidate` (non-zero) if the
    /// ring had none yet, else the one it has. Only the daemon calls this;
    /// a client may overwrite the field, which confuses only its own ring.
    pub fn identity_or(&self, candidate: u64) -> u64 {
        debug_assert_ne!(candidate, 0);
        let id = self.ring.mem.header_u64(OFF_RING_ID);
        // Relaxed: the identity guards no other memory; it is read back
        // only by daemons, each after mapping the segment anew.
        match id.compare_exchange(0, candidate, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => candidate,
            Err(existing) => existing,
        }
    }
}
