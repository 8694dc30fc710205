//! The on-disk format of a spool file: a file header, then checksummed,
//! length-prefixed frames, one per dead-lettered record.
//!
//! All integers are little-endian.
//!
//! ```text
//! file header (16 bytes)
//!   0  magic        8  b"SHMKDLQ\0"
//!   8  version      u32  FORMAT_VERSION
//!  12  reserved     u32  0
//! frame (12 bytes + body), repeated
//!   0  marker       u32  FRAME_MARKER: lets a reader find the next frame
//!                        after a damaged one
//!   4  body_len     u32  at most MAX_BODY_LEN
//!   8  crc          u32  crc32c (Castagnoli) of body_len's 4 bytes, then body
//!  12  body
//! body
//!   0  seq          u64  ring sequence number the client got from `send`
//!   8  failed_at_ms i64  when the daemon gave up on it (ms since the epoch)
//!  16  timestamp_ms i64  the record's own timestamp
//!  24  partition    i32  as the client asked (-1: partitioner's choice)
//!  28  error_code   i32  librdkafka's rd_kafka_resp_err_t
//!  32  topic_id     u32  the client's topic id
//!  36  client_pid   u32
//!  40  persistence  u8   0 not persisted, 1 possibly persisted, 2 persisted
//!  41  flags        u8   FLAG_CONTENT_LOST: key, value and headers unknown
//!  42  topic        u16 length + bytes ("" when the topic id was never bound)
//!      error_name   u16 length + bytes (librdkafka's name, e.g. MSG_SIZE_TOO_LARGE)
//!      client_name  u16 length + bytes
//!      key          u32 length (NULL_LEN = null) + bytes
//!      value        u32 length (NULL_LEN = null) + bytes
//!      headers      u32 length + the ring's header encoding, repeated per
//!                   header: u16 name_len, u32 value_len (NULL_LEN = null),
//!                   name, value
//! ```
//!
//! A frame is only trusted when its marker, length and checksum agree and its
//! body decodes exactly; anything else is reported as damage and skipped.

use std::fmt;

use thiserror::Error;

/// First bytes of every spool file.
pub const MAGIC: [u8; 8] = *b"SHMKDLQ\0";
/// Version written by this build; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 16;
/// Start of every frame (`"DLQ1"` read as little-endian bytes).
pub const FRAME_MARKER: u32 = u32::from_le_bytes(*b"DLQ1");
/// Bytes before a frame's body.
pub const FRAME_HEADER_LEN: usize = 12;
/// Fixed-size part of a body.
const BODY_FIXED_LEN: usize = 42;
/// Largest body: a 1 GiB ring record (the ring's limit) plus our fields with
/// their longest strings. Guards readers against a flipped length.
pub const MAX_BODY_LEN: u32 = (1 << 30) + 4 * 65_536;
/// Length value of a null key or value (as in the ring).
pub const NULL_LEN: u32 = u32::MAX;
/// Flag: the record's bytes could not be read back from the ring (its
/// producer overwrote them); only the metadata is kept.
pub const FLAG_CONTENT_LOST: u8 = 1;

/// Whether the broker may hold the record despite the failure; replaying a
/// possibly persisted record may duplicate it. One byte on disk
/// ([`Persistence::as_byte`]).
pub use crate::kafka::Persistence;

/// A record to spool, borrowing its bytes (from a ring, or from a record
/// read back).
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Ring sequence number.
    pub seq: u64,
    /// When it failed, ms since the epoch.
    pub failed_at_ms: i64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
    /// Requested partition.
    pub partition: i32,
    /// librdkafka error code.
    pub error_code: i32,
    /// The client's topic id.
    pub topic_id: u32,
    /// Client process id.
    pub client_pid: u32,
    /// See [`Persistence`].
    pub persistence: Persistence,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Topic name; empty when unknown.
    pub topic: &'a str,
    /// librdkafka's error name.
    pub error_name: &'a str,
    /// Client label.
    pub client_name: &'a str,
    /// Key; `None` is null.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is null.
    pub value: Option<&'a [u8]>,
    /// Encoded header block (see the module docs).
    pub headers: &'a [u8],
}

/// A record read back from a spool file.
#[derive(Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Ring sequence number.
    pub seq: u64,
    /// When it failed, ms since the epoch.
    pub failed_at_ms: i64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
    /// Requested partition.
    pub partition: i32,
    /// librdkafka error code.
    pub error_code: i32,
    /// The client's topic id.
    pub topic_id: u32,
    /// Client process id.
    pub client_pid: u32,
    /// See [`Persistence`].
    pub persistence: Persistence,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Topic name; empty when unknown.
    pub topic: String,
    /// librdkafka's error name.
    pub error_name: String,
    /// Client label.
    pub client_name: String,
    /// Key; `None` is null.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is null.
    pub value: Option<Vec<u8>>,
    /// Encoded header block.
    pub headers: Vec<u8>,
}

impl fmt::Debug for SpoolRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolRecord")
            .field("seq", &self.seq)
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("error_name", &self.error_name)
            .field("key_len", &self.key.as_ref().map(Vec::len))
            .field("value_len", &self.value.as_ref().map(Vec::len))
            .field("headers_len", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl SpoolRecord {
    /// Borrows the record, e.g. to encode it again.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            failed_at_ms: self.failed_at_ms,
            timestamp_ms: self.timestamp_ms,
            partition: self.partition,
            error_code: self.error_code,
            topic_id: self.topic_id,
            client_pid: self.client_pid,
            persistence: self.persistence,
            flags: self.flags,
            topic: &self.topic,
            error_name: &self.error_name,
            client_name: &self.client_name,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
        }
    }

    /// Whether the record's bytes are missing (see [`FLAG_CONTENT_LOST`]).
    pub fn content_lost(&self) -> bool {
        self.flags & FLAG_CONTENT_LOST != 0
    }

    /// The decoded headers, or `None` if the block does not decode (it is
    /// kept byte for byte as the client wrote it).
    pub fn decoded_headers(&self) -> Option<Vec<OwnedHeader>> {
        shmkafka_ringbuf::HeaderIter::new(&self.headers)
            .map(|h| {
                h.ok()
                    .map(|h| (h.name.to_vec(), h.value.map(<[u8]>::to_vec)))
            })
            .collect()
    }
}

/// A decoded header: name bytes and a value (`None` is null).
pub type OwnedHeader = (Vec<u8>, Option<Vec<u8>>);

/// Encodes `(name, value)` headers in the ring's header encoding.
pub fn encode_headers<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let name = &name[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&value.map_or(NULL_LEN, |v| v.len() as u32).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(value.unwrap_or_default());
    }
    out
}

/// The file header this build writes.
pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Why a file header was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Shorter than a header.
    #[error("shorter than the {FILE_HEADER_LEN}-byte file header")]
    Truncated,
    /// Not a spool file.
    #[error("not a shmkafka spool file (bad magic)")]
    BadMagic,
    /// Written by another format version.
    #[error("spool format version {0}, this build reads {FORMAT_VERSION}")]
    UnsupportedVersion(u32),
}

/// Checks the file header at the start of `bytes`.
pub fn check_file_header(bytes: &[u8]) -> Result<(), HeaderError> {
    let header = bytes.get(..FILE_HEADER_LEN).ok_or(HeaderError::Truncated)?;
    if header[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Longer strings are cut at a character boundary; topic names (<= 249)
    // and error names are far shorter.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    out.extend_from_slice(&b.map_or(NULL_LEN, |b| b.len() as u32).to_le_bytes());
    out.extend_from_slice(b.unwrap_or_default());
}

/// Length of `record`'s frame.
pub fn frame_len(record: &RecordRef<'_>) -> usize {
    let opt = |b: Option<&[u8]>| 4 + b.map_or(0, <[u8]>::len);
    let s = |s: &str| 2 + s.len().min(u16::MAX as usize);
    FRAME_HEADER_LEN
        + BODY_FIXED_LEN
        + s(record.topic)
        + s(record.error_name)
        + s(record.client_name)
        + opt(record.key)
        + opt(record.value)
        + 4
        + record.headers.len()
}

/// Appends `record`'s frame to `out`.
pub fn encode_frame(record: &RecordRef<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&FRAME_MARKER.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // body_len and crc, filled in below
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.failed_at_ms.to_le_bytes());
    out.extend_from_slice(&record.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&record.partition.to_le_bytes());
    out.extend_from_slice(&record.error_code.to_le_bytes());
    out.extend_from_slice(&record.topic_id.to_le_bytes());
    out.extend_from_slice(&record.client_pid.to_le_bytes());
    out.push(record.persistence.as_byte());
    out.push(record.flags);
    put_str(out, record.topic);
    put_str(out, record.error_name);
    put_str(out, record.client_name);
    put_opt(out, record.key);
    put_opt(out, record.value);
    put_opt(out, Some(record.headers));
    let body_len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    out[start + 4..start + 8].copy_from_slice(&body_len.to_le_bytes());
    let crc = frame_crc(body_len, &out[start + FRAME_HEADER_LEN..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn frame_crc(body_len: u32, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&body_len.to_le_bytes()), body)
}

/// What is wrong with the bytes at a frame position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Fewer bytes left than the frame needs: a write cut short (torn tail).
    #[error("truncated frame")]
    Truncated,
    /// No frame marker here.
    #[error("no frame marker")]
    BadMarker,
    /// A length beyond any record.
    #[error("frame length {0} out of range")]
    BadLength(u32),
    /// The checksum does not match.
    #[error("checksum mismatch")]
    BadChecksum,
    /// Checksum right, body malformed (written by a broken writer).
    #[error("malformed record body")]
    BadBody,
}

/// Decodes the frame at the start of `bytes`; returns the record and the
/// frame's length.
pub fn decode_frame(bytes: &[u8]) -> Result<(SpoolRecord, usize), FrameError> {
    let header = bytes.get(..FRAME_HEADER_LEN).ok_or(FrameError::Truncated)?;
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if u32_at(0) != FRAME_MARKER {
        return Err(FrameError::BadMarker);
    }
    let body_len = u32_at(4);
    if body_len > MAX_BODY_LEN || (body_len as usize) < BODY_FIXED_LEN {
        return Err(FrameError::BadLength(body_len));
    }
    let end = FRAME_HEADER_LEN + body_len as usize;
    let body = bytes
        .get(FRAME_HEADER_LEN..end)
        .ok_or(FrameError::Truncated)?;
    if frame_crc(body_len, body) != u32_at(8) {
        return Err(FrameError::BadChecksum);
    }
    let record = decode_body(body).ok_or(FrameError::BadBody)?;
    Ok((record, end))
}

/// A cursor over a body that fails (`None`) instead of reading past it.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|b| b.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn optional(&mut self) -> Option<Option<Vec<u8>>> {
        match self.u32()? {
            NULL_LEN => Some(None),
            len => Some(Some(self.take(len as usize)?.to_vec())),
        }
    }
}

fn decode_body(body: &[u8]) -> Option<SpoolRecord> {
    let mut c = Cursor(body);
    let record = SpoolRecord {
        seq: c.u64()?,
        failed_at_ms: c.u64()? as i64,
        timestamp_ms: c.u64()? as i64,
        partition: c.u32()? as i32,
        error_code: c.u32()? as i32,
        topic_id: c.u32()?,
        client_pid: c.u32()?,
        persistence: Persistence::from_byte(c.u8()?)?,
        flags: c.u8()?,
        topic: c.string()?,
        error_name: c.string()?,
        client_name: c.string()?,
        key: c.optional()?,
        value: c.optional()?,
        headers: c.optional()??,
    };
    // Every byte must be accounted for.
    c.0.is_empty().then_some(record)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> SpoolRecord {
        SpoolRecord {
            seq: 4096,
            failed_at_ms: 1_700_000_000_123,
            timestamp_ms: 1_700_000_000_000,
            partition: -1,
            error_code: 10,
            topic_id: 3,
            client_pid: 4242,
            persistence: Persistence::NotPersisted,
            flags: 0,
            topic: "orders".into(),
            error_name: "MSG_SIZE_TOO_LARGE".into(),
            client_name: "app".into(),
            key: Some(b"k1".to_vec()),
            value: None,
            headers: encode_headers([(&b"h"[..], Some(&b"v"[..])), (&b"n"[..], None)]),
        }
    }

    #[test]
    fn frames_round_trip() {
        let record = sample();
        let mut out = Vec::new();
        encode_frame(&record.as_ref(), &mut out);
        assert_eq!(out.len(), frame_len(&record.as_ref()));
        let (back, len) = decode_frame(&out).unwrap();
        assert_eq!(len, out.len());
        assert_eq!(back, record);
        assert_eq!(
            back.decoded_headers().unwrap(),
            vec![(b"h".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)]
        );
    }

    #[test]
    fn empty_and_null_are_distinct() {
        let mut record = sample();
        record.key = Some(Vec::new());
        record.value = None;
        let mut out = Vec::new();
        encode_frame(&record.as_ref(), &mut out);
        let (back, _) = decode_frame(&out).unwrap();
        assert_eq!(back.key, Some(Vec::new()));
        assert_eq!(back.value, None);
    }

    #[test]
    fn damage_is_detected() {
        let mut out = Vec::new();
        encode_frame(&sample().as_ref(), &mut out);
        assert_eq!(
            decode_frame(&out[..out.len() - 1]),
            Err(FrameError::Truncated)
        );
        let mut flipped = out.clone();
        flipped[30] ^= 0x10;
        assert_eq!(decode_frame(&flipped), Err(FrameError::BadChecksum));
        let mut marker = out.clone();
        marker[0] ^= 1;
        assert_eq!(decode_frame(&marker), Err(FrameError::BadMarker));
    }

    #[test]
    fn file_header_is_checked() {
        assert_eq!(check_file_header(&file_header()), Ok(()));
        assert_eq!(check_file_header(&[0; 4]), Err(HeaderError::Truncated));
        let mut h = file_header();
        h[8] = 9;
        assert_eq!(
            check_file_header(&h),
            Err(HeaderError::UnsupportedVersion(9))
        );
        h[0] = b'X';
        assert_eq!(check_file_header(&h), Err(HeaderError::BadMagic));
    }
}
