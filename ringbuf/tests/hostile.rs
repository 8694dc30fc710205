//! The daemon's side against a hostile client: segments `Segment::open`
//! must refuse, and record content a scribbling producer can put in an
//! accepted segment. Every case must end in a typed error (or a harmless
//! `None`), never a panic, a hang or an out-of-bounds access.
//!
//! Segments are built by hand with `memfd_create`, `ftruncate` and `pwrite`;
//! the scribbling "producer" writes through `pwrite` on the memfd, which the
//! kernel keeps coherent with the daemon's shared mapping.

#![cfg(not(miri))] // memfds, fcntl and mmap: nothing here runs under miri

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::uio::pwrite;
use proptest::prelude::*;
use shmkafka_ringbuf::layout::*;
use shmkafka_ringbuf::Outcome;
use shmkafka_ringbuf::{HeaderIter, OpenError, RecordError, RingConsumer, Segment, MAX_IN_FLIGHT};

const CAP: u64 = 4096;
const ALL_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// A header page's description fields, valid by default.
#[derive(Debug, Clone)]
struct Header {
    magic: u64,
    version: u32,
    header_size: u32,
    capacity: u64,
    max_record: u32,
    segment_size: u64,
    tail: u64,
    released: u64,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            capacity: CAP,
            max_record: (CAP / 2) as u32,
            segment_size: HEADER_SIZE as u64 + CAP,
            tail: 0,
            released: 0,
        }
    }
}

fn put(fd: impl AsFd, off: u64, bytes: &[u8]) {
    assert_eq!(pwrite(fd, bytes, off as i64).expect("pwrite"), bytes.len());
}

/// A memfd of `file_len` bytes holding `header`, with `seals` added.
fn memfd(header: &Header, file_len: u64, seals: SealFlag) -> OwnedFd {
    let fd = memfd_create(c"hostile", MemFdCreateFlag::MFD_ALLOW_SEALING).expect("memfd");
    nix::unistd::ftruncate(&fd, file_len as i64).expect("ftruncate");
    let fields: [(usize, Vec<u8>); 8] = [
        (OFF_MAGIC, header.magic.to_le_bytes().to_vec()),
        (OFF_VERSION, header.version.to_le_bytes().to_vec()),
        (OFF_HEADER_SIZE, header.header_size.to_le_bytes().to_vec()),
        (OFF_CAPACITY, header.capacity.to_le_bytes().to_vec()),
        (OFF_MAX_RECORD, header.max_record.to_le_bytes().to_vec()),
        (OFF_SEGMENT_SIZE, header.segment_size.to_le_bytes().to_vec()),
        (OFF_TAIL, header.tail.to_le_bytes().to_vec()),
        (OFF_RELEASED, header.released.to_le_bytes().to_vec()),
    ];
    for (off, bytes) in fields {
        if off as u64 + bytes.len() as u64 <= file_len {
            put(&fd, off as u64, &bytes);
        }
    }
    if !seals.is_empty() {
        fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).expect("seal");
    }
    fd
}

fn open(header: &Header) -> Result<Segment, OpenError> {
    Segment::open(memfd(header, header.segment_size, ALL_SEALS))
}

// ---------------------------------------------------------------------------
// Segment::open refusals

#[test]
fn handmade_valid_segment_opens() {
    // The baseline every refusal below differs from in one field.
    let segment = open(&Header::default()).expect("valid");
    assert_eq!(segment.capacity(), CAP as usize);
    assert_eq!(segment.max_record_len(), CAP as usize / 2);
    assert!(segment.consumer().unwrap().peek().unwrap().is_none());
}

#[test]
fn refuses_bad_magic() {
    let header = Header {
        magic: u64::from_le_bytes(*b"SHMKRINH"),
        ..Header::default()
    };
    assert!(matches!(open(&header), Err(OpenError::BadMagic { found }) if found == header.magic));
}

#[test]
fn refuses_wrong_layout_version() {
    for version in [0, LAYOUT_VERSION + 1, u32::MAX] {
        let header = Header {
            version,
            ..Header::default()
        };
        assert!(matches!(
            open(&header),
            Err(OpenError::UnsupportedVersion { found }) if found == version
        ));
    }
}

#[test]
fn refuses_wrong_header_size() {
    for header_size in [0, 2048, 8192] {
        let header = Header {
            header_size,
            ..Header::default()
        };
        assert!(matches!(
            open(&header),
            Err(OpenError::HeaderSize { found }) if found == header_size
        ));
    }
}

#[test]
fn refuses_capacity_not_power_of_two_or_out_of_range() {
    for capacity in [
        0,
        CAP + 8,
        3 * 4096,
        MIN_CAPACITY as u64 / 2,
        MAX_CAPACITY as u64 * 2,
        1 << 63,
    ] {
        let header = Header {
            capacity,
            segment_size: (HEADER_SIZE as u64).wrapping_add(capacity),
            ..Header::default()
        };
        // Keep the file small: the capacity is refused before the size.
        let fd = memfd(&header, HEADER_SIZE as u64 + CAP, ALL_SEALS);
        assert!(
            matches!(Segment::open(fd), Err(OpenError::Capacity { found }) if found == capacity),
            "capacity {capacity}"
        );
    }
}

#[test]
fn refuses_max_record_out_of_range() {
    for max_record in [
        0,
        RECORD_HEADER_SIZE as u32 - 1,
        CAP as u32 / 2 + 1,
        u32::MAX,
    ] {
        let header = Header {
            max_record,
            ..Header::default()
        };
        assert!(matches!(
            open(&header),
            Err(OpenError::MaxRecord { found }) if found == max_record
        ));
    }
    // The bounds themselves are accepted.
    for max_record in [RECORD_HEADER_SIZE as u32, CAP as u32 / 2] {
        let header = Header {
            max_record,
            ..Header::default()
        };
        open(&header).expect("limit in range");
    }
}

#[test]
fn refuses_size_mismatch() {
    // The file is longer than the header says.
    let header = Header::default();
    let fd = memfd(&header, header.segment_size + 4096, ALL_SEALS);
    assert!(matches!(
        Segment::open(fd),
        Err(OpenError::SizeMismatch { declared, actual })
            if declared == header.segment_size && actual == header.segment_size + 4096
    ));
    // The file is shorter than the header says (mapping it would SIGBUS).
    let fd = memfd(&header, header.segment_size - 4096, ALL_SEALS);
    assert!(matches!(
        Segment::open(fd),
        Err(OpenError::SizeMismatch { .. })
    ));
    // Header and file agree, but not with the capacity.
    let header = Header {
        segment_size: HEADER_SIZE as u64 + 2 * CAP,
        ..Header::default()
    };
    assert!(matches!(open(&header), Err(OpenError::SizeMismatch { .. })));
}

#[test]
fn refuses_each_missing_seal() {
    let header = Header::default();
    for (missing, name) in [
        (SealFlag::F_SEAL_SHRINK, "F_SEAL_SHRINK"),
        (SealFlag::F_SEAL_GROW, "F_SEAL_GROW"),
        (SealFlag::F_SEAL_SEAL, "F_SEAL_SEAL"),
    ] {
        let fd = memfd(&header, header.segment_size, ALL_SEALS.difference(missing));
        match Segment::open(fd) {
            Err(OpenError::Unsealed { missing }) => assert!(missing.contains(name), "{missing}"),
            other => panic!("{name}: {:?}", other.err()),
        }
    }
    let fd = memfd(&header, header.segment_size, SealFlag::empty());
    assert!(matches!(Segment::open(fd), Err(OpenError::Unsealed { .. })));
}

#[test]
fn refuses_write_sealed() {
    let header = Header::default();
    let fd = memfd(
        &header,
        header.segment_size,
        ALL_SEALS.union(SealFlag::F_SEAL_WRITE),
    );
    assert!(matches!(Segment::open(fd), Err(OpenError::WriteSealed)));
}

#[test]
fn refuses_truncated() {
    let header = Header::default();
    for len in [0, 8, 100, HEADER_SIZE as u64 - 1] {
        let fd = memfd(&header, len, ALL_SEALS);
        assert!(
            matches!(Segment::open(fd), Err(OpenError::Truncated { size }) if size == len),
            "len {len}"
        );
    }
}

#[test]
fn refuses_what_is_not_a_memfd() {
    let path = std::env::temp_dir().join(format!("shmkafka-hostile-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(HEADER_SIZE as u64 + CAP).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        Segment::open(file.into()),
        Err(OpenError::NotMemfd(_))
    ));
    let (read, write) = nix::unistd::pipe().unwrap();
    assert!(matches!(Segment::open(read), Err(OpenError::NotMemfd(_))));
    assert!(matches!(Segment::open(write), Err(OpenError::NotMemfd(_))));
}

#[test]
fn refuses_inconsistent_cursors() {
    for (tail, released) in [
        (0, 8),                 // released beyond tail
        (CAP + 8, 0),           // more than a capacity claimed
        (u64::MAX, 0),          // wildly beyond
        (16, 4),                // released not on a record boundary
        (CAP * 5 + 8, CAP * 4), // more than a capacity, later lap
    ] {
        let header = Header {
            tail,
            released,
            ..Header::default()
        };
        assert!(
            matches!(
                open(&header),
                Err(OpenError::Cursors(RecordError::CursorsCorrupted { .. }))
            ),
            "tail {tail} released {released}"
        );
    }
    // Exactly full is consistent.
    let header = Header {
        tail: CAP * 3,
        released: CAP * 2,
        ..Header::default()
    };
    open(&header).expect("a full ring");
}

// ---------------------------------------------------------------------------
// Hostile records in an accepted segment

/// An accepted segment, a consumer on it, and raw write access to it.
struct Scribbler {
    fd: OwnedFd,
    segment: Segment,
}

/// A raw record header; the defaults describe a valid message at `pos`.
#[derive(Debug, Clone, Copy)]
struct Raw {
    state: u32,
    kind: u16,
    seq: u64,
    key_len: u32,
    value_len: u32,
    headers_len: u32,
}

impl Raw {
    /// A committed message at `pos` whose value is `value_len` bytes.
    fn message(pos: u64, value_len: u32) -> Raw {
        Raw {
            state: RECORD_HEADER_SIZE as u32 + value_len,
            kind: KIND_MESSAGE,
            seq: pos,
            key_len: NULL_LEN,
            value_len,
            headers_len: 0,
        }
    }
}

impl Scribbler {
    /// A segment whose cursors both start at `start`.
    fn new(start: u64) -> Scribbler {
        Self::with_cursors(start, start)
    }

    fn with_cursors(tail: u64, released: u64) -> Scribbler {
        let header = Header {
            tail,
            released,
            ..Header::default()
        };
        let fd = memfd(&header, header.segment_size, ALL_SEALS);
        let segment = Segment::open(fd.try_clone().unwrap()).expect("valid segment");
        Scribbler { fd, segment }
    }

    fn consumer(&self) -> RingConsumer {
        self.segment.consumer().expect("consistent cursors")
    }

    fn data(&self, pos: u64, bytes: &[u8]) {
        put(&self.fd, HEADER_SIZE as u64 + pos % CAP, bytes);
    }

    fn u32_at(&self, pos: u64, v: u32) {
        self.data(pos, &v.to_le_bytes());
    }

    fn tail(&self, tail: u64) {
        put(&self.fd, OFF_TAIL as u64, &tail.to_le_bytes());
    }

    fn record(&self, pos: u64, raw: Raw) {
        let mut bytes = [0u8; RECORD_HEADER_SIZE];
        bytes[REC_STATE..REC_STATE + 4].copy_from_slice(&raw.state.to_le_bytes());
        bytes[REC_KIND..REC_KIND + 2].copy_from_slice(&raw.kind.to_le_bytes());
        bytes[REC_SEQ..REC_SEQ + 8].copy_from_slice(&raw.seq.to_le_bytes());
        bytes[REC_KEY_LEN..REC_KEY_LEN + 4].copy_from_slice(&raw.key_len.to_le_bytes());
        bytes[REC_VALUE_LEN..REC_VALUE_LEN + 4].copy_from_slice(&raw.value_len.to_le_bytes());
        bytes[REC_HEADERS_LEN..REC_HEADERS_LEN + 4].copy_from_slice(&raw.headers_len.to_le_bytes());
        self.data(pos, &bytes);
    }
}

/// Peeks twice (the error must be stable: the position does not move) and
/// tries `unblock`, which must not pad over a record that claims to be
/// committed.
fn peek_err(consumer: &mut RingConsumer) -> RecordError {
    let pos = consumer.drain_pos();
    let err = consumer.peek().expect_err("hostile record accepted");
    assert_eq!(consumer.drain_pos(), pos);
    assert_eq!(consumer.peek().expect_err("stable"), err);
    let _ = consumer.unblock();
    consumer.release();
    err
}

#[test]
fn record_running_past_the_end() {
    let s = Scribbler::new(CAP - 64);
    let mut consumer = s.consumer();
    s.record(CAP - 64, Raw::message(CAP - 64, 152));
    s.tail(CAP - 64 + 256);
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::PastEnd {
            pos: CAP - 64,
            len: 200
        }
    );
}

#[test]
fn record_beyond_the_tail() {
    let s = Scribbler::new(0);
    let mut consumer = s.consumer();
    s.record(0, Raw::message(0, 8));
    s.tail(16);
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::BeyondTail {
            pos: 0,
            len: 56,
            tail: 16
        }
    );
    // Moving the tail on makes it readable.
    s.tail(56);
    assert_eq!(
        consumer.peek().unwrap().unwrap().value(),
        Some(&[0u8; 8][..])
    );
}

#[test]
fn record_too_short_or_too_long() {
    let s = Scribbler::new(0);
    s.tail(CAP);
    let mut consumer = s.consumer();
    s.u32_at(0, 4);
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::TooShort { pos: 0, len: 4 }
    );
    s.u32_at(0, STATE_SKIP);
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::TooShort { pos: 0, len: 0 }
    );
    s.record(0, Raw::message(0, 0));
    s.u32_at(0, 40);
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::TooShort { pos: 0, len: 40 }
    );
    s.record(0, Raw::message(0, 3000));
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::TooLarge {
            pos: 0,
            len: 3048,
            max: CAP as u32 / 2
        }
    );
}

#[test]
fn overflowing_field_lengths() {
    let s = Scribbler::new(0);
    s.tail(CAP);
    let mut consumer = s.consumer();
    let base = Raw::message(0, 8);
    let cases = [
        // Sums to the record length modulo 2^32.
        Raw {
            key_len: u32::MAX - 47,
            value_len: 56,
            ..base
        },
        Raw {
            value_len: u32::MAX - 1,
            ..base
        },
        Raw {
            headers_len: u32::MAX - 47,
            value_len: 56,
            ..base
        },
        Raw {
            key_len: 4,
            value_len: 8,
            ..base
        },
        Raw {
            headers_len: 1,
            ..base
        },
    ];
    for raw in cases {
        s.record(0, raw);
        assert_eq!(
            peek_err(&mut consumer),
            RecordError::FieldLengths { pos: 0, len: 56 },
            "{raw:?}"
        );
    }
}

#[test]
fn unknown_kind() {
    let s = Scribbler::new(0);
    s.tail(CAP);
    let mut consumer = s.consumer();
    for kind in [0, 2, KIND_ABORTED, u16::MAX] {
        s.record(
            0,
            Raw {
                kind,
                ..Raw::message(0, 8)
            },
        );
        assert_eq!(
            peek_err(&mut consumer),
            RecordError::UnknownKind { pos: 0, kind }
        );
    }
}

#[test]
fn committed_flag_on_an_unwritten_record() {
    let s = Scribbler::new(0);
    s.tail(CAP);
    let mut consumer = s.consumer();
    s.u32_at(0, 56);
    assert_eq!(
        peek_err(&mut consumer),
        RecordError::UnknownKind { pos: 0, kind: 0 }
    );
}

#[test]
fn hostile_header_blocks_decode_to_errors() {
    let s = Scribbler::new(0);
    s.tail(CAP);
    // One record of 2000 bytes of headers: 333 empty headers and 2 bytes
    // of garbage, then records with lengths that overrun the block.
    let mut block = Vec::new();
    for _ in 0..333 {
        block.extend_from_slice(&0u16.to_le_bytes());
        block.extend_from_slice(&NULL_LEN.to_le_bytes());
    }
    block.extend_from_slice(&[7, 7]);
    let overruns: [&[u8]; 3] = [
        &[0xFF, 0xFF, 0, 0, 0, 0],             // name of 65535 bytes
        &[0, 0, 0xF0, 0xFF, 0xFF, 0xFF],       // value of ~4 GiB
        &[1, 0, 0xFE, 0xFF, 0xFF, 0xFF, b'n'], // name fits, value overflows
    ];
    let mut pos = 0u64;
    let mut layout = vec![block];
    layout.extend(overruns.iter().map(|b| b.to_vec()));
    for bytes in &layout {
        let len = RECORD_HEADER_SIZE as u32 + bytes.len() as u32;
        s.record(
            pos,
            Raw {
                state: len,
                kind: KIND_MESSAGE,
                seq: pos,
                key_len: NULL_LEN,
                value_len: NULL_LEN,
                headers_len: bytes.len() as u32,
            },
        );
        s.data(pos + RECORD_HEADER_SIZE as u64, bytes);
        pos += align_record(len as usize) as u64;
    }
    let mut consumer = s.consumer();
    let record = consumer.peek().unwrap().unwrap();
    let results: Vec<_> = record.headers().collect();
    assert_eq!(results.len(), 334);
    assert!(results[..333]
        .iter()
        .all(|h| h.as_ref().unwrap().name.is_empty()));
    assert_eq!(results[333], Err(RecordError::BadHeaders));
    consumer.advance();
    for _ in overruns {
        let record = consumer.peek().unwrap().unwrap();
        let results: Vec<_> = record.headers().collect();
        assert_eq!(results, [Err(RecordError::BadHeaders)]);
        let owned = record.headers_to_vec();
        assert_eq!(HeaderIter::new(&owned).count(), 1);
        consumer.advance();
    }
}

#[test]
fn cursors_moved_backwards_or_beyond_capacity() {
    let s = Scribbler::new(0);
    let mut consumer = s.consumer();
    s.record(0, Raw::message(0, 8));
    s.tail(56);
    let seq = consumer.peek().unwrap().unwrap().seq();
    consumer.advance();
    // Tail moved backwards behind what the consumer already read.
    s.tail(0);
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(
        consumer.unblock(),
        Err(RecordError::CursorsCorrupted {
            tail: 0,
            released: 0
        })
    );
    // Tail more than a capacity ahead.
    s.tail(CAP * 2);
    assert!(matches!(
        consumer.unblock(),
        Err(RecordError::CursorsCorrupted { .. })
    ));
    assert!(matches!(
        s.segment.consumer(),
        Err(RecordError::CursorsCorrupted { .. })
    ));
    // The released cursor is the daemon's: a client moving it backwards
    // changes nothing the consumer relies on.
    put(&s.fd, OFF_RELEASED as u64, &(CAP * 7).to_le_bytes());
    s.tail(56);
    consumer.mark(seq, &Outcome::delivered(0, 0, 0));
    assert_eq!(consumer.release(), 56);
    assert_eq!(s.segment.cursors(), (56, 56));
}

#[test]
fn skip_records_beyond_one_lap_stop_at_the_lap() {
    // Padding records everywhere and a tail three laps ahead: the consumer
    // must neither walk into the next lap (re-reading the records it holds)
    // nor give back more than the data area.
    let s = Scribbler::new(0);
    let mut consumer = s.consumer();
    for i in 0..8 {
        s.u32_at(i * 512, STATE_SKIP | 512);
    }
    s.tail(CAP * 3);
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(consumer.drain_pos(), CAP);
    assert_eq!(consumer.release(), CAP);
    // The release zeroed the padding: nothing left to read.
    assert!(consumer.peek().unwrap().is_none());
    assert!(consumer.unblock().is_err());

    // A record that starts within the lap but ends beyond it.
    let s = Scribbler::new(1024);
    let mut consumer = s.consumer();
    s.u32_at(1024, STATE_SKIP | 3072);
    s.u32_at(0, STATE_SKIP | 2048);
    s.tail(CAP * 3);
    assert!(matches!(
        consumer.peek(),
        Err(RecordError::BeyondTail { pos, len: 2048, .. }) if pos == CAP
    ));
    assert_eq!(consumer.release(), 3072);
}

#[test]
fn positions_near_u64_max_do_not_overflow() {
    let top = !(RECORD_ALIGN as u64 - 1); // u64::MAX rounded down to a record boundary
    let s = Scribbler::new(top);
    let mut consumer = s.consumer();
    s.u32_at(top, STATE_SKIP | 8);
    assert!(matches!(
        consumer.peek(),
        Err(RecordError::BeyondTail { .. })
    ));
    assert!(consumer.peek().is_err());
    assert_eq!(consumer.unblock(), Ok(false));
    // A claimed hole there: padding it must not overflow either.
    s.u32_at(top, STATE_CLAIMED | 8);
    s.tail(top);
    let _ = consumer.unblock();
    let _ = consumer.peek();
    consumer.release();
}

#[test]
fn unblock_refuses_bogus_claimed_lengths() {
    let s = Scribbler::new(CAP - 64);
    let mut consumer = s.consumer();
    s.tail(CAP - 64 + 128);
    // Claimed, running past the end of the data area.
    s.u32_at(CAP - 64, STATE_CLAIMED | 200);
    assert!(consumer.peek().unwrap().is_none());
    assert!(matches!(
        consumer.unblock(),
        Err(RecordError::PastEnd { .. })
    ));
    // Claimed with length zero.
    s.u32_at(CAP - 64, STATE_CLAIMED);
    assert!(matches!(
        consumer.unblock(),
        Err(RecordError::PastEnd { .. })
    ));
    // Claimed with a sane length: padded over.
    s.u32_at(CAP - 64, STATE_CLAIMED | 56);
    assert_eq!(consumer.unblock(), Ok(true));
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(consumer.drain_pos(), CAP - 8);
    // Never written: the hole runs to the end of the area.
    assert_eq!(consumer.unblock(), Ok(true));
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(consumer.drain_pos(), CAP);
}

// ---------------------------------------------------------------------------
// Random garbage

#[derive(Debug, Clone)]
enum Step {
    Peek { read: bool },
    Mark { which: usize, failed: bool },
    Release,
    Unblock,
    Scribble { pos: u64, bytes: Vec<u8> },
    Tail { delta: i64 },
    NewConsumer,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<bool>().prop_map(|read| Step::Peek { read }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(which, failed)| Step::Mark { which, failed }),
        2 => Just(Step::Release),
        2 => Just(Step::Unblock),
        2 => ((0..CAP / 8).prop_map(|w| w * 8), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(pos, bytes)| Step::Scribble { pos, bytes }),
        1 => prop_oneof![-(2 * CAP as i64)..(2 * CAP as i64), any::<i64>()]
            .prop_map(|delta| Step::Tail { delta }),
        1 => Just(Step::NewConsumer),
    ]
}

/// A plausible record chain: state words that frame records one after the
/// other from `start`, with fields right or wrong at random.
fn chain() -> impl Strategy<Value = Vec<(u32, bool, bool, u32, u32)>> {
    prop::collection::vec(
        (
            prop_oneof![
                Just(0u32),
                Just(STATE_SKIP),
                Just(STATE_CLAIMED),
                any::<u32>()
            ],
            prop::bool::weighted(0.8),          // right sequence
            prop::bool::weighted(0.8),          // right kind
            0..200u32,                          // value length
            prop_oneof![0..8u32, any::<u32>()], // length error
        ),
        0..40,
    )
}

fn drive(
    start: u64,
    fill: Vec<u8>,
    links: Vec<(u32, bool, bool, u32, u32)>,
    tail: u64,
    steps: Vec<Step>,
) {
    let s = Scribbler::new(start);
    s.data(0, &fill);
    let mut pos = start;
    for (flags, right_seq, right_kind, value_len, noise) in links {
        let len = RECORD_HEADER_SIZE as u32 + value_len;
        let state = (flags & (STATE_CLAIMED | STATE_SKIP)) | (len ^ (noise & 7));
        if pos % CAP + align_record(len as usize) as u64 > CAP {
            break;
        }
        s.record(
            pos,
            Raw {
                state,
                kind: if right_kind {
                    KIND_MESSAGE
                } else {
                    noise as u16
                },
                seq: if right_seq { pos } else { u64::from(noise) },
                key_len: NULL_LEN,
                value_len: if noise < 8 { value_len } else { noise },
                headers_len: 0,
            },
        );
        pos += align_record(len as usize) as u64;
    }
    s.tail(tail);
    let mut tail = tail;
    let Ok(mut consumer) = s.segment.consumer() else {
        return;
    };
    let mut in_flight = Vec::new();
    for step in steps {
        match step {
            Step::Peek { read } => {
                if let Ok(Some(record)) = consumer.peek() {
                    if read {
                        let _ = (record.key(), record.value(), record.key_to_vec());
                        let _ = record.value_to_vec();
                        for header in record.headers() {
                            let _ = header;
                        }
                        let _ = record.headers_to_vec();
                    }
                    in_flight.push(record.seq());
                    consumer.advance();
                }
            }
            Step::Mark { which, failed } => {
                let seq = if in_flight.is_empty() {
                    which as u64
                } else {
                    in_flight[which % in_flight.len()]
                };
                let outcome = if failed {
                    Outcome::failed(1, 0, -1, 0)
                } else {
                    Outcome::delivered(0, 0, 0)
                };
                consumer.mark(seq, &outcome);
            }
            Step::Release => {
                let freed = consumer.release();
                assert!(freed <= CAP);
            }
            Step::Unblock => {
                let _ = consumer.unblock();
            }
            Step::Scribble { pos, bytes } => {
                let len = bytes.len().min((CAP - pos) as usize);
                s.data(pos, &bytes[..len]);
            }
            Step::Tail { delta } => {
                tail = tail.wrapping_add_signed(delta);
                s.tail(tail);
            }
            Step::NewConsumer => {
                if let Ok(fresh) = s.segment.consumer() {
                    consumer = fresh;
                    in_flight.clear();
                }
            }
        }
        assert!(consumer.drain_pos() - consumer.released_pos() <= CAP);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_garbage_never_panics(
        start in prop_oneof![Just(0u64), (0..CAP * 4).prop_map(|p| p & !7), Just((u64::MAX - CAP * 2 + 1) & !7)],
        fill in prop::collection::vec(any::<u8>(), CAP as usize),
        zero_fill in any::<bool>(),
        links in chain(),
        tail_ahead in prop_oneof![0..=CAP, any::<u64>()],
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let fill = if zero_fill { vec![0; CAP as usize] } else { fill };
        drive(start, fill, links, start.wrapping_add(tail_ahead), steps);
    }
}

/// A consumer killed between zeroing a finished span and moving `released`
/// past it (a daemon SIGKILLed mid-release) leaves zeroed space at
/// `released`. The next consumer must finish that release and deliver what
/// follows, not wait forever on zeroes no producer may overwrite.
#[test]
fn consumer_finishes_a_release_its_predecessor_died_in() {
    use shmkafka_ringbuf::{Record, SegmentOptions, WhenFull};
    let segment = Segment::create(&SegmentOptions::with_capacity(CAP as usize)).unwrap();
    let producer = segment.producer();
    let send = |value: &[u8]| {
        let record = Record {
            topic_id: 1,
            value: Some(value),
            ..Record::default()
        };
        producer.send(&record, WhenFull::Fail).unwrap()
    };
    send(b"first");
    send(b"second");
    let third = producer.tail(); // its position
    let third_seq = send(b"third");

    // The first consumer hands out and finishes two records, then "dies"
    // mid-release: the span is announced and zeroed, `released` not moved.
    let mut first = segment.consumer().unwrap();
    for _ in 0..2 {
        let pos = first.peek().unwrap().expect("record").pos();
        first.advance();
        assert!(first.mark(pos, &Outcome::delivered(0, 0, 0)));
    }
    drop(first);
    put(segment.fd(), OFF_RELEASING as u64, &third.to_le_bytes());
    put(segment.fd(), HEADER_SIZE as u64, &vec![0u8; third as usize]);
    assert_eq!(segment.cursors().1, 0, "released did not move");

    let mut next = segment.consumer().unwrap();
    let view = next.peek().unwrap().expect("the record after the span");
    assert_eq!(view.value(), Some(&b"third"[..]));
    assert_eq!((view.pos(), view.seq()), (third, third_seq));
    assert_eq!(segment.cursors().1, third, "the release was finished");
}

// ---------------------------------------------------------------------------
// Bookkeeping a hostile ring can make the consumer hold

/// An accepted segment of `cap` bytes whose data area starts with `data`,
/// the tail at the end of `data`.
fn filled(cap: u64, data: &[u8]) -> (OwnedFd, Segment) {
    let header = Header {
        capacity: cap,
        max_record: (cap / 2) as u32,
        segment_size: HEADER_SIZE as u64 + cap,
        tail: data.len() as u64,
        ..Header::default()
    };
    let fd = memfd(&header, header.segment_size, ALL_SEALS);
    put(&fd, HEADER_SIZE as u64, data);
    let segment = Segment::open(fd.try_clone().unwrap()).expect("valid segment");
    (fd, segment)
}

#[test]
fn a_ring_of_padding_costs_the_consumer_one_entry() {
    // 8-byte padding records only: one per state word, 131072 of them.
    const CAP: u64 = 1 << 20;
    let mut data = vec![0u8; CAP as usize];
    for record in data.chunks_exact_mut(RECORD_ALIGN) {
        record[..4].copy_from_slice(&(STATE_SKIP | RECORD_ALIGN as u32).to_le_bytes());
    }
    let (_fd, segment) = filled(CAP, &data);
    let mut consumer = segment.consumer().unwrap();
    assert!(consumer.peek().unwrap().is_none());
    assert_eq!(
        consumer.drain_pos(),
        CAP,
        "stepped over every padding record"
    );
    assert_eq!(consumer.tracked(), 1, "one entry for the whole run");
    assert_eq!(consumer.release(), CAP);
    assert_eq!(consumer.tracked(), 0);
}

#[test]
fn bookkeeping_stops_at_max_in_flight_until_released() {
    // Header-only messages (null key and value): 48 bytes each, more of
    // them than MAX_IN_FLIGHT.
    const CAP: u64 = 1 << 22;
    let len = RECORD_HEADER_SIZE;
    let count = (CAP as usize / len).min(MAX_IN_FLIGHT + 1000);
    assert!(count > MAX_IN_FLIGHT);
    let mut data = vec![0u8; count * len];
    for (i, record) in data.chunks_exact_mut(len).enumerate() {
        let pos = (i * len) as u64;
        record[REC_STATE..REC_STATE + 4].copy_from_slice(&(len as u32).to_le_bytes());
        record[REC_KIND..REC_KIND + 2].copy_from_slice(&KIND_MESSAGE.to_le_bytes());
        record[REC_SEQ..REC_SEQ + 8].copy_from_slice(&pos.to_le_bytes());
        record[REC_KEY_LEN..REC_KEY_LEN + 4].copy_from_slice(&NULL_LEN.to_le_bytes());
        record[REC_VALUE_LEN..REC_VALUE_LEN + 4].copy_from_slice(&NULL_LEN.to_le_bytes());
    }
    let (_fd, segment) = filled(CAP, &data);
    let mut consumer = segment.consumer().unwrap();
    let mut seqs = Vec::new();
    while let Some(view) = consumer.peek().unwrap() {
        seqs.push(view.seq());
        consumer.advance();
    }
    assert_eq!(seqs.len(), MAX_IN_FLIGHT, "reading stops at the bound");
    assert_eq!(consumer.tracked(), MAX_IN_FLIGHT);
    assert!(
        consumer.prepare_park(),
        "nothing counts as ready at the bound, so the drain may park"
    );
    consumer.finish_park();
    for &seq in &seqs[..500] {
        assert!(consumer.mark(seq, &Outcome::delivered(0, 0, 0)));
    }
    assert_eq!(consumer.release(), 500 * len as u64);
    let mut more = 0;
    while consumer.peek().unwrap().is_some() {
        consumer.advance();
        more += 1;
    }
    assert_eq!(more, 500, "as many again as were released");
}

#[test]
fn more_headers_than_the_limit_do_not_decode() {
    // Minimal headers: empty name, null value, 6 bytes each.
    let entry = [0u8, 0, 0xff, 0xff, 0xff, 0xff];
    let block: Vec<u8> = entry.repeat(MAX_HEADERS_PER_RECORD + 1);
    let decoded: Vec<_> = HeaderIter::new(&block).collect();
    assert_eq!(decoded.len(), MAX_HEADERS_PER_RECORD + 1);
    assert!(decoded[..MAX_HEADERS_PER_RECORD].iter().all(Result::is_ok));
    assert_eq!(
        decoded[MAX_HEADERS_PER_RECORD],
        Err(RecordError::BadHeaders)
    );
    // The producer refuses to write such a record in the first place.
    let (producer, _consumer) = shmkafka_ringbuf::heap_ring(1 << 16);
    let headers = vec![
        shmkafka_ringbuf::Header {
            name: "h",
            value: None
        };
        MAX_HEADERS_PER_RECORD + 1
    ];
    let record = shmkafka_ringbuf::Record {
        topic_id: 0,
        partition: 0,
        timestamp_ms: 0,
        key: None,
        value: None,
        headers: &headers,
    };
    assert!(matches!(
        producer.send(&record, shmkafka_ringbuf::WhenFull::Fail),
        Err(shmkafka_ringbuf::ReserveError::HeaderTooLarge)
    ));
}
