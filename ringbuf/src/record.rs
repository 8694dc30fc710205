//! What a record is, as the producer describes it and as the consumer sees it,
//! and the encoding of Kafka headers inside a record.

use crate::error::RecordError;
use crate::layout::{MAX_HEADERS_PER_RECORD, NULL_LEN};

/// One Kafka record header: a string name and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header name (Kafka header keys are strings).
    pub name: &'a str,
    /// Header value; `None` is a null value, distinct from an empty one.
    pub value: Option<&'a [u8]>,
}

/// A record to copy into the ring with [`crate::RingProducer::send`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// Topic id the daemon assigned to this client's topic registration.
    pub topic_id: u32,
    /// Partition, or [`crate::PARTITION_UNASSIGNED`] to let the partitioner choose.
    pub partition: i32,
    /// Create time in milliseconds since the epoch; 0 lets the daemon stamp it.
    pub timestamp_ms: i64,
    /// Key; `None` is a Kafka null key.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is a Kafka null value (a tombstone on compacted topics).
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: &'a [Header<'a>],
}

/// The shape of a zero-copy reservation: lengths instead of bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordSpec<'a> {
    /// See [`Record::topic_id`].
    pub topic_id: u32,
    /// See [`Record::partition`].
    pub partition: i32,
    /// See [`Record::timestamp_ms`].
    pub timestamp_ms: i64,
    /// Key length; `None` for a null key.
    pub key_len: Option<usize>,
    /// Value length; `None` for a null value.
    pub value_len: Option<usize>,
    /// Headers, copied into the record at reservation time.
    pub headers: &'a [Header<'a>],
}

impl<'a> Record<'a> {
    /// The reservation shape of this record.
    #[inline]
    pub fn spec(&self) -> RecordSpec<'a> {
        RecordSpec {
            topic_id: self.topic_id,
            partition: self.partition,
            timestamp_ms: self.timestamp_ms,
            key_len: self.key.map(<[u8]>::len),
            value_len: self.value.map(<[u8]>::len),
            headers: self.headers,
        }
    }
}

/// Delivery outcome of a record, as the consumer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Delivery {
    /// Not yet acknowledged nor failed.
    Pending = 0,
    /// Acknowledged by the broker.
    Delivered = 1,
    /// Failed permanently; reported through the failure queue.
    Failed = 2,
}

impl Delivery {
    pub(crate) fn from_word(word: u32) -> Self {
        // The byte above the outcome holds the persistence of a failure.
        match word & 0xff {
            1 => Delivery::Delivered,
            2 => Delivery::Failed,
            // Garbage from a hostile producer reads as "not done", the
            // conservative choice: the record is sent rather than skipped.
            _ => Delivery::Pending,
        }
    }
}

/// What became of a record: its delivery state and the report the client
/// reads for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Delivered or failed (never [`Delivery::Pending`]).
    pub delivery: Delivery,
    /// Error code (librdkafka's `rd_kafka_resp_err_t`); 0 when delivered.
    pub error_code: i32,
    /// Whether a failed record may have been persisted anyway (0 no,
    /// 1 possibly, 2 yes); 2 when delivered.
    pub persistence: u8,
    /// Partition the record went to, or was meant for (-1 if none was chosen).
    pub partition: i32,
    /// Offset in the partition; -1 when failed or unknown.
    pub offset: i64,
    /// Timestamp the broker stored (ms since the epoch); the create time
    /// unless the topic uses log-append time.
    pub timestamp_ms: i64,
}

impl Outcome {
    /// Acknowledged by the broker at `partition` and `offset`.
    pub fn delivered(partition: i32, offset: i64, timestamp_ms: i64) -> Self {
        Self {
            delivery: Delivery::Delivered,
            error_code: 0,
            persistence: 2,
            partition,
            offset,
            timestamp_ms,
        }
    }

    /// Failed for good with `error_code`; `persistence` as in the field.
    pub fn failed(error_code: i32, persistence: u8, partition: i32, timestamp_ms: i64) -> Self {
        Self {
            delivery: Delivery::Failed,
            error_code,
            persistence,
            partition,
            offset: -1,
            timestamp_ms,
        }
    }

    /// The record's delivery word: the state, and the persistence above it.
    pub(crate) fn delivery_word(&self) -> u32 {
        self.delivery as u32 | u32::from(self.persistence) << 8
    }
}

// Header block encoding, repeated per header:
//   u16 name_len | u32 value_len (NULL_LEN = null) | name | value
const HEADER_ENTRY_PREFIX: usize = 6;

/// Bytes the encoded headers occupy inside a record.
#[inline]
pub(crate) fn encoded_headers_len(headers: &[Header<'_>]) -> usize {
    headers
        .iter()
        .map(|h| HEADER_ENTRY_PREFIX + h.name.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

/// Encodes `headers` into a new buffer (header names are limited to u16).
pub(crate) fn encode_headers(headers: &[Header<'_>], out: &mut Vec<u8>) {
    for h in headers {
        out.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
        let value_len = h.value.map_or(NULL_LEN, |v| v.len() as u32);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(h.name.as_bytes());
        if let Some(v) = h.value {
            out.extend_from_slice(v);
        }
    }
}

/// Checks that every header fits in the u16/u32 length fields.
pub(crate) fn headers_fit(headers: &[Header<'_>]) -> bool {
    headers.len() <= MAX_HEADERS_PER_RECORD
        && headers.iter().all(|h| {
            h.name.len() <= u16::MAX as usize
                && h.value.is_none_or(|v| (v.len() as u64) < NULL_LEN as u64)
        })
}

/// Iterates over an encoded header block, validating as it goes; more
/// than [`MAX_HEADERS_PER_RECORD`] headers is an error.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    /// Headers decoded so far.
    count: usize,
}

/// A decoded header; the name is bytes because the ring content is
/// untrusted and may not be UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// Header name bytes.
    pub name: &'a [u8],
    /// Header value, `None` for null.
    pub value: Option<&'a [u8]>,
}

impl<'a> HeaderIter<'a> {
    /// Iterates the header block `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            count: 0,
        }
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<RawHeader<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.count += 1;
        let count = self.count;
        let result = (|| {
            if count > MAX_HEADERS_PER_RECORD {
                return Err(RecordError::BadHeaders);
            }
            let prefix = self
                .rest
                .get(..HEADER_ENTRY_PREFIX)
                .ok_or(RecordError::BadHeaders)?;
            let name_len = u16::from_le_bytes([prefix[0], prefix[1]]) as usize;
            let value_len = u32::from_le_bytes([prefix[2], prefix[3], prefix[4], prefix[5]]);
            let body = &self.rest[HEADER_ENTRY_PREFIX..];
            let name = body.get(..name_len).ok_or(RecordError::BadHeaders)?;
            let (value, used) = if value_len == NULL_LEN {
                (None, name_len)
            } else {
                let end = name_len
                    .checked_add(value_len as usize)
                    .ok_or(RecordError::BadHeaders)?;
                (
                    Some(body.get(name_len..end).ok_or(RecordError::BadHeaders)?),
                    end,
                )
            };
            self.rest = &body[used..];
            Ok(RawHeader { name, value })
        })();
        if result.is_err() {
            // Stop after the first error: the rest cannot be framed.
            self.rest = &[];
        }
        Some(result)
    }
}
